/* bert.h: the BERT architecture, forward and backward on packed
 * variable-length batches. It is one arch of the encoder interface
 * (backbone.h: cb_bert_arch), serving every family whose encoder is BERT's
 * post-norm transformer; callers outside the tests go through backbone.h.
 *
 * Packing. A batch of S sequences of lengths n_0..n_{S-1} is laid out as
 * T = sum n_s rows, one per token, with no padding anywhere: every linear
 * layer is one GEMM over the T rows, and attention runs per sequence and
 * head over its own n_s x n_s block. A per-token attention mask (0 = this
 * token is computed but no other token attends to it, as Hugging Face's
 * attention_mask does for ColBERT's [MASK] query padding) is optional.
 * Results equal transformers' BertModel on the unpadded tokens.
 *
 * Compute. Every operation runs on an ops_device (ops.h): this file lays
 * out memory and orders the operations; it never touches a number itself.
 * Pointers marked [dev] are device memory.
 *
 * Memory. Parameters live in one device allocation (bert_model.params) laid
 * out as the BP_* tensors say; Q, K and V are stored fused as one [3H, H]
 * matrix per layer. Activations live in one device allocation sized for the
 * largest batch (bert_acts); in inference mode all layers share one set of
 * buffers, in training mode every layer keeps its own for the backward pass.
 * Attention probabilities are never stored: each (sequence, head) block
 * lives in the attention workspace while it is used, and the backward pass
 * recomputes it (one extra n x n x D product per head), which saves
 * heads * sum n_s^2 floats per layer (1.2 GB for MiniLM at bsize 32).
 * Dropout masks of the attention probabilities are recomputed too: every
 * mask is a pure hash of (seed, stream, sequence id, element), ops.h.
 */
#ifndef CB_BERT_H
#define CB_BERT_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "backbone.h"
#include "model.h"
#include "ops.h"

/* Parameter tensors, in the order they lie in memory. L = layers,
 * H = hidden, I = intermediate, V = vocab, P = positions, TV = token types. */
enum {
    BP_WORD_EMB,   /* [V, H] */
    BP_POS_EMB,    /* [P, H] */
    BP_TYPE_EMB,   /* [TV, H] */
    BP_EMB_LN_W,   /* [H] */
    BP_EMB_LN_B,   /* [H] */
    BP_QKV_W,      /* [L, 3H, H]  rows: query, key, value */
    BP_QKV_B,      /* [L, 3H] */
    BP_ATTO_W,     /* [L, H, H]   attention.output.dense */
    BP_ATTO_B,     /* [L, H] */
    BP_LN1_W,      /* [L, H]      attention.output.LayerNorm */
    BP_LN1_B,      /* [L, H] */
    BP_FFU_W,      /* [L, I, H]   intermediate.dense */
    BP_FFU_B,      /* [L, I] */
    BP_FFD_W,      /* [L, H, I]   output.dense */
    BP_FFD_B,      /* [L, H] */
    BP_LN2_W,      /* [L, H]      output.LayerNorm */
    BP_LN2_B,      /* [L, H] */
    BP_COUNT
};

typedef struct bert_model {
    bert_config cfg;
    ops_device *dev;            /* where params live */
    float *params;              /* [dev] one allocation, n_params floats */
    size_t n_params;
    size_t sizes[BP_COUNT];     /* floats per tensor */
    float *t[BP_COUNT];         /* [dev] pointers into params */
    int owned;                  /* params allocated by cb_bert_load */
} bert_model;

/* Sizes (in floats) of every parameter tensor for a config. */
void cb_bert_param_sizes(const bert_config *c, size_t sizes[BP_COUNT]);

/* Load config.json and model.safetensors from a model directory (keys with
 * or without the family's prefix, "bert." or "roberta."; pooler, lm_head
 * and cls.* tensors are ignored) onto dev. Returns 0, or -1 with err naming
 * the file and the problem. */
int cb_bert_load(bert_model *m, ops_device *dev, const char *dir, cb_err *err);
void cb_bert_free(bert_model *m);
/* Point the tensors of m into `mem` ([dev], n_params floats, the same
 * layout), freeing what cb_bert_load allocated. Used to move the parameters
 * into a larger block; m no longer owns them. */
void cb_bert_bind(bert_model *m, float *mem);

/* The arch of backbone.h: its functions over a bert_model. */
extern const backbone_arch cb_bert_arch;
/* A backbone over a bert_model made by hand (benchmarks, tests): m moves
 * into b (the caller must not free it). 0, or -1 with err (out of memory;
 * m is then still the caller's). */
int cb_bert_to_backbone(backbone *b, bert_model *m, cb_err *err);

/* A packed batch, in host memory. ids, type_ids, mask are [T]; seq_len and
 * seq_id are [S]. type_ids and mask may be NULL (all 0, all 1). Every
 * sequence must have at least one token with mask 1. seq_id names each
 * sequence for the dropout masks (ops.h); NULL: 0 .. S-1. */
typedef struct bert_batch {
    int n_seq;
    const int *seq_len;
    const int32_t *ids;
    const int32_t *type_ids;
    const uint8_t *mask;
    const uint64_t *seq_id;
} bert_batch;

/* Activations, on the model's device. Sized by cb_bert_acts_init for at most
 * max_tokens tokens in a batch; max_att bounds sum over sequences of n_s^2
 * (its square root, capped at the model's positions, sizes the attention
 * workspace). */
typedef struct bert_acts {
    ops_device *dev;
    int max_tokens;
    size_t max_att;             /* sum of n_s^2 the buffers hold */
    int max_seq;                /* longest sequence the workspace holds */
    int train;                  /* 1: each layer keeps its activations */
    float *memory;              /* [dev] the one allocation of floats */
    size_t n_floats;
    size_t bytes;               /* device bytes of everything here */
    /* embeddings */
    float *emb;                 /* [T, H] word + pos + type, before LN */
    float *emb_mean, *emb_rstd; /* [T] */
    float *emb_out;             /* [T, H] after LN: input of layer 0 */
    /* per layer (layer l at + l * stride; stride 0 in inference) */
    float *qkv;                 /* [T, 3H] */
    float *ctx;                 /* [T, H] attention context, heads side by side */
    float *res1;                /* [T, H] x + attention output, before LN1 */
    float *ln1_mean, *ln1_rstd; /* [T] */
    float *ln1;                 /* [T, H] */
    float *ffh;                 /* [T, I] before GELU */
    float *ffg;                 /* [T, I] after GELU; one layer only (the
                                 * backward recomputes it from ffh) */
    float *res2;                /* [T, H] ln1 + FFN output, before LN2 */
    float *ln2_mean, *ln2_rstd; /* [T] */
    float *ln2;                 /* [T, H] layer output */
    size_t stride_TH, stride_T3H, stride_TI, stride_T;
    /* the batch's layout, filled by cb_bert_forward: on the host, then
     * uploaded into one device allocation */
    void *lay;                  /* [dev] the allocation */
    int32_t *ids, *types, *pos; /* [dev] [T] */
    uint8_t *mask;              /* [dev] [T] attention mask */
    int *seq_off;               /* [dev] [S + 1] token offset of each sequence */
    size_t *att_off;            /* [dev] [S] offset of each sequence's scores */
    uint64_t *seq_id;           /* [dev] [S] dropout id of each sequence */
    void *h_lay;                /* host mirror of lay, same layout */
    size_t lay_bytes;
    ops_seqs seqs;              /* the last batch's sequences ([dev] arrays) */
    int has_types, has_mask;
    /* dropout (training mode only; p = 0 turns it off). Masks are 1 where an
     * element is kept; the kept ones are scaled by 1 / (1 - p). */
    float p_hidden, p_att;      /* config's hidden / attention dropout */
    uint64_t seed;              /* set per step: the masks derive from it */
    uint8_t *m_emb;             /* [dev] [T, H] after the embeddings' LayerNorm */
    uint8_t *m_atto;            /* [dev] per layer [T, H] on the attention output */
    uint8_t *m_ffd;             /* [dev] per layer [T, H] on the feed-forward output */
    /* backward scratch (training mode only) */
    float *d_x, *d_y;           /* [dev] [T, H] */
    float *d_qkv;               /* [dev] [T, 3H] */
    float *d_ff;                /* [dev] [T, I] */
    float *d_ctx;               /* [dev] [T, H] */
    ops_work work;              /* attention workspace */
    /* seconds spent in attention (scores, softmax, context and their
     * backward), accumulated by cb_bert_forward / cb_bert_backward; the caller
     * resets it. For benchmarks: the rest of a pass is mostly dense GEMMs. */
    double t_attn;
} bert_acts;

/* Returns 0, or -1 with err (out of device memory). */
int cb_bert_acts_init(bert_acts *a, ops_device *dev, const bert_config *c, int max_tokens, size_t max_att,
                   int train, cb_err *err);
void cb_bert_acts_free(bert_acts *a);

/* Forward pass. Output: the last hidden states, cb_bert_output(m, a), [T, H]
 * [dev]. In training mode with a->p_hidden / a->p_att > 0, dropout is
 * applied as in transformers' BertModel.train() (after the embeddings'
 * LayerNorm, on the attention probabilities, on the attention output and
 * the feed-forward output before their residual LayerNorms), from masks
 * derived from a->seed and the batch's seq_id. */
void cb_bert_forward(const bert_model *m, bert_acts *a, const bert_batch *b);
float *cb_bert_output(const bert_model *m, const bert_acts *a);

/* The Hugging Face name of every parameter tensor (without the "bert."
 * prefix), its shape and where it lies in our layout: element `offset` of
 * the parameter block (or of any block with the same layout, such as the
 * gradients). Q, K and V come out as separate tensors. Used to write
 * checkpoints and to compare with PyTorch by name. */
typedef backbone_named bert_named;
/* Number of named tensors: 5 + 16 * layers. */
int cb_bert_named_count(const bert_config *c);
/* Fill out[cb_bert_named_count(c)]. */
void cb_bert_named_tensors(const bert_config *c, bert_named *out);

/* Parameter gradients: one device allocation, the same layout as the
 * parameters. */
typedef struct bert_grads {
    ops_device *dev;
    float *memory;              /* [dev] */
    size_t n;
    float *t[BP_COUNT];         /* [dev] */
    int owned;
} bert_grads;
int cb_bert_grads_init(bert_grads *g, const bert_model *m, cb_err *err);  /* zeroed */
/* Point g into caller-owned device memory of m->n_params floats. */
void cb_bert_grads_bind(bert_grads *g, const bert_model *m, float *mem);
void cb_bert_grads_zero(bert_grads *g);
void cb_bert_grads_free(bert_grads *g);

/* Backward pass of the last cb_bert_forward (training-mode activations).
 * d_out: [T, H] [dev] gradient of the last hidden states (overwritten as
 * scratch). Parameter gradients accumulate (+=) into g. */
void cb_bert_backward(const bert_model *m, bert_acts *a, bert_grads *g, float *d_out);
#endif
