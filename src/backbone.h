/* backbone.h: the encoder interface. Every transformer encoder colbert.c
 * runs, under ColBERT's head (step, colmodel) and under the sentence
 * embeddings (encoder), is reached through this header only: those modules
 * never see a family's own types.
 *
 * Families. A model directory's config.json names its model_type; one row
 * of the family table (backbone.c) says what that type means to us:
 *   - the prefix of its weights in a checkpoint ("bert.", "roberta."), which
 *     is transformers' base_model_prefix, the attribute colbert-ai's
 *     HF_ColBERT stores the encoder under;
 *   - how position ids come from the token ids: BERT counts 0, 1, 2, ...;
 *     RoBERTa counts from pad_token_id + 1 over the non-padding tokens
 *     (transformers' create_position_ids_from_input_ids:
 *     cumsum(id != pad) * (id != pad) + pad);
 *   - the longest sequence it can encode (info.max_len): BERT
 *     max_position_embeddings; RoBERTa max_position_embeddings -
 *     pad_token_id - 1 (514 - 2 = 512), the positions below pad + 1 being
 *     never used;
 *   - the architecture that computes it (a backbone_arch). bert.c's
 *     post-norm encoder (GELU, absolute positions, token types) serves
 *     BERT, RoBERTa, XLM-RoBERTa and CamemBERT: they differ in data, not in
 *     code. modernbert.c's pre-norm encoder (rotary positions, GeGLU,
 *     local/global attention, no biases) serves ModernBERT ("model.").
 * Every other model_type is refused at load, naming the file, the type and
 * the supported ones.
 *
 * Memory (llm.c): the parameters are one device allocation in the arch's
 * layout; cb_backbone_bind moves them into a caller's block (the training
 * step keeps parameters, gradients and AdamW moments as four blocks of the
 * same layout, the encoder's first, then ColBERT's linear). Gradients are a
 * block of info.n_params floats in that layout. Activations are one
 * allocation sized for the largest batch (backbone_acts); nothing is
 * allocated by forward or backward.
 *
 * Batches are packed: S sequences of lengths n_0..n_{S-1} are T = sum n_s
 * rows with no padding; a per-token attention mask (0: nobody attends to
 * this token, as ColBERT's [MASK] query augmentation) is optional.
 */
#ifndef CB_BACKBONE_H
#define CB_BACKBONE_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "ops.h"

/* How a family derives position ids from a sequence's token ids. */
typedef enum backbone_positions {
    POS_FROM_ZERO,     /* BERT: 0 .. n-1 */
    POS_AFTER_PAD,     /* RoBERTa: pad + cumsum(id != pad) on non-pad ids, pad on pad ids */
} backbone_positions;

typedef struct backbone_arch backbone_arch;

/* One row of the family table. */
typedef struct backbone_family {
    const char *model_type;     /* config.json's model_type: "bert", "xlm-roberta", ... */
    const char *prefix;         /* checkpoint key prefix: "bert.", "roberta." */
    const char *hf_model;       /* transformers' encoder class: "BertModel", "XLMRobertaModel" */
    backbone_positions positions;
    int default_pad_id;         /* pad_token_id when config.json has none (transformers' default) */
    const backbone_arch *arch;
} backbone_family;

/* What callers may know about a loaded encoder. */
typedef struct backbone_info {
    const char *family;         /* fam->model_type */
    const char *prefix;         /* fam->prefix */
    int hidden;                 /* H: hidden size, the width of every output row */
    int layers;
    int intermediate;           /* feed-forward width (for FLOP counts) */
    int vocab;                  /* rows of the word embeddings (grows with cb_backbone_grow_vocab) */
    int max_len;                /* the longest sequence it encodes (the one max-position number) */
    int pad_id;                 /* config.json's pad_token_id */
    float initializer_range;    /* config.json's; new ColBERT projections use it */
    float hidden_dropout, attention_dropout;   /* the training-mode dropout of config.json */
    size_t n_params;            /* floats of the parameter block */
} backbone_info;

typedef struct backbone {
    const backbone_family *fam;
    backbone_info info;
    ops_device *dev;            /* where the parameters live */
    float *params;              /* [dev] info.n_params floats */
    void *impl;                 /* the arch's model */
} backbone;

/* A packed batch, in host memory. ids and mask are [T]; seq_len and seq_id
 * are [S]. mask may be NULL (all 1). Every sequence has at least one token
 * with mask 1 and at most info.max_len tokens. seq_id names each sequence
 * for the dropout masks (ops.h); NULL: 0 .. S-1. */
typedef struct backbone_batch {
    int n_seq;
    const int *seq_len;
    const int32_t *ids;
    const uint8_t *mask;
    const uint64_t *seq_id;
} backbone_batch;

/* Activations for batches of at most max_tokens tokens whose sum over
 * sequences of n_s^2 is at most max_att. train: every layer keeps what the
 * backward pass needs, and dropout applies (p_hidden, p_att; 0 turns it
 * off; the masks derive from seed, set per step). */
typedef struct backbone_acts {
    int max_tokens;
    size_t max_att;
    int train;
    size_t bytes;               /* device bytes of everything here */
    float p_hidden, p_att;      /* set from info by init; callers may change them */
    uint64_t seed;
    double t_attn;              /* seconds in attention, accumulated; the caller resets it */
    const backbone_arch *arch;  /* whose activations impl holds */
    void *impl;                 /* the arch's activations */
} backbone_acts;

/* A parameter tensor by its Hugging Face name (without the family prefix),
 * its shape and where it lies in the parameter block (or any block of the
 * same layout, such as the gradients). */
typedef struct backbone_named {
    char name[96];
    size_t offset, n;
    int ndim;
    int64_t shape[2];
} backbone_named;

/* The operations an architecture provides (backbone.c dispatches). */
struct backbone_arch {
    const char *name;
    int (*load)(backbone *b, ops_device *dev, const char *dir, cb_err *err);
    void (*free)(backbone *b);
    void (*bind)(backbone *b, float *mem);
    int (*acts_init)(backbone_acts *a, const backbone *b, int max_tokens, size_t max_att, int train, cb_err *err);
    void (*acts_free)(backbone_acts *a);
    void (*forward)(const backbone *b, backbone_acts *a, const backbone_batch *batch);
    float *(*output)(const backbone *b, const backbone_acts *a);
    void (*backward)(const backbone *b, backbone_acts *a, float *grads, float *d_out);
    int (*named_count)(const backbone *b);
    void (*named_tensors)(const backbone *b, backbone_named *out);
    int (*grow_vocab)(backbone *b, int n_new, uint64_t seed, cb_err *err);
};

/* The family of a config.json model_type, or NULL. */
const backbone_family *cb_backbone_family_find(const char *model_type);
/* "bert, roberta, xlm-roberta, camembert, modernbert": the model types that load. */
const char *cb_backbone_families(void);

/* Load <dir>/config.json and <dir>/model.safetensors (keys with or without
 * the family's prefix; pooler, LM-head and cls.* tensors are ignored) onto
 * dev. 0, or -1 with err naming the file and the problem (an unsupported
 * model_type names the supported ones). */
int cb_backbone_load(backbone *b, ops_device *dev, const char *dir, cb_err *err);
void cb_backbone_free(backbone *b);

/* Point the parameters into mem ([dev], info.n_params floats, the same
 * layout), freeing what the load allocated; b no longer owns them. */
void cb_backbone_bind(backbone *b, float *mem);

int cb_backbone_acts_init(backbone_acts *a, const backbone *b, int max_tokens, size_t max_att, int train,
                          cb_err *err);
void cb_backbone_acts_free(backbone_acts *a);

/* Forward pass; the last hidden states are cb_backbone_output(b, a), [T, H]
 * [dev]. In training mode with p_hidden / p_att > 0, dropout as the
 * family's transformers model in train() mode. */
void cb_backbone_forward(const backbone *b, backbone_acts *a, const backbone_batch *batch);
float *cb_backbone_output(const backbone *b, const backbone_acts *a);

/* Backward pass of the last forward (training-mode activations). d_out
 * [T, H] [dev]: gradient of the last hidden states (overwritten as
 * scratch). Parameter gradients accumulate (+=) into grads ([dev],
 * info.n_params floats, the parameters' layout). */
void cb_backbone_backward(const backbone *b, backbone_acts *a, float *grads, float *d_out);

/* The named tensors: cb_backbone_named_count(b) of them into out. Used to
 * write checkpoints (under info.prefix) and to compare with PyTorch. */
int cb_backbone_named_count(const backbone *b);
void cb_backbone_named_tensors(const backbone *b, backbone_named *out);

/* Add n_new rows to the word embeddings, for added tokens (ColBERT's
 * "[Q] " / "[D] " markers where the vocabulary has no [unused0] /
 * [unused1]). The new rows are initialised as transformers'
 * resize_token_embeddings does by default (mean_resizing, the same for
 * every family): drawn from a normal distribution with the mean of the old
 * rows and 1e-9 times their covariance, or the mean itself when that
 * covariance is not positive definite; the draws come from seed. Only
 * while b owns its parameters (before cb_backbone_bind). 0, or -1 with err
 * (out of memory). */
int cb_backbone_grow_vocab(backbone *b, int n_new, uint64_t seed, cb_err *err);

/* For the archs: rows V .. V+n-1 of emb [V + n, H] (host) from rows 0 ..
 * V-1, as cb_backbone_grow_vocab says. 0, or -1 with err (out of memory). */
int cb_backbone_init_rows(float *emb, int V, int n, int H, uint64_t seed, cb_err *err);

/* For the archs whose parameter block starts with the word embeddings
 * [V, H]: a new block on dev of n_old + n * H floats, the old block (params,
 * n_old floats on dev) with n rows inserted after its first V * H floats,
 * the new rows as cb_backbone_init_rows. The caller frees the old block.
 * NULL with err (out of memory). */
float *cb_backbone_grow_rows(ops_device *dev, const float *params, size_t n_old, int V, int n, int H, uint64_t seed,
                             cb_err *err);
#endif
