/* colbert.h: ColBERT on top of the encoder: token layout, the projection
 * head, MaxSim scores, and their backward pass.
 *
 * Token layout (colbert-ai's QueryTokenizer / DocTokenizer), for BERT:
 *   query  [CLS] [Q] pieces[:query_maxlen-3] [SEP] [MASK]... (exactly
 *          query_maxlen ids); attention mask 1 on the real tokens and the
 *          markers, 0 on the [MASK] padding unless attend_to_mask_tokens.
 *          Every one of the query_maxlen output vectors is kept.
 *   doc    [CLS] [D] pieces[:doc_maxlen-3] [SEP], no padding (packed).
 *          Punctuation tokens (the first word piece of each character of
 *          Python's string.punctuation) get a zero vector and take no part
 *          in MaxSim when mask_punctuation is set.
 *   [Q] is "[unused0]", [D] is "[unused1]"; in vocabularies without them,
 *   the tokens "[Q] " and "[D] " that PyLate adds (cb_tokenizer_add_tokens).
 * [CLS] ... [SEP] is the tokenizer's template (tokenizer.h): <s> ... </s>
 * for RoBERTa and XLM-R; the marker follows its first token. The padding
 * is the tokenizer's mask token (<mask> for RoBERTa).
 *
 * Head, per token t of the packed batch (colbert-ai's ColBERT.query/doc):
 *   proj[t] = keep[t] * act(hidden[t] @ linear^T)     act = ReLU or identity
 *   out[t]  = proj[t] / max(||proj[t]||, 1e-12)      (F.normalize)
 * MaxSim (colbert_score with cosine similarity):
 *   score(q, d) = sum_i max_{j in d, keep[j]} <Q[q, i], D[j]>
 * whose gradient reaches only the arg-max document vector of each i.
 *
 * The head and MaxSim run on a device (ops.h); the layout is host code.
 * Memory: every kernel writes into buffers the caller sized once; nothing
 * here allocates per step.
 */
#ifndef CB_COLBERT_H
#define CB_COLBERT_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "ops.h"
#include "tokenizer.h"

typedef struct colbert_config {
    int dim;                    /* projection size (128) */
    int query_maxlen;           /* 32 */
    int doc_maxlen;             /* 220 */
    int mask_punctuation;       /* 1 */
    int attend_to_mask_tokens;  /* 0 */
    int relu;                   /* 0; see cb_colbert_head_forward */
    /* The marker tokens put after [CLS] (artifact.metadata's query_token_id /
     * doc_token_id, PyLate's query_prefix / document_prefix). "": as the
     * vocabulary has them, colbert-ai's [unused0] / [unused1], else PyLate's
     * added "[Q] " / "[D] " (cb_colbert_default_markers). */
    char query_token[64], doc_token[64];
} colbert_config;

/* colbert-ai's defaults (ColBERTConfig). */
void cb_colbert_config_default(colbert_config *c);

/* The ids the layout needs, looked up once in the vocabulary. */
#define COLBERT_MAX_PUNCT 32
typedef struct colbert_vocab {
    int32_t cls, sep, mask, pad, q_marker, d_marker;
    tokenizer_template tmpl;            /* the specials around the pieces */
    int n_punct;
    int32_t punct[COLBERT_MAX_PUNCT];   /* sorted, distinct */
} colbert_vocab;

/* Look the template, markers and punctuation ids up. -1 + err when the
 * vocabulary lacks a mask token, or both [unused0] and "[Q] " (or both
 * [unused1] and "[D] "). */
int cb_colbert_vocab_init(colbert_vocab *v, const tokenizer *tok, cb_err *err);
/* The same with the markers named (NULL or "": as cb_colbert_vocab_init
 * picks them); -1 + err when the vocabulary lacks a named one. */
int cb_colbert_vocab_init_marked(colbert_vocab *v, const tokenizer *tok, const char *query_token,
                                 const char *doc_token, cb_err *err);
/* The markers cb_colbert_vocab_init picks: "[unused0]" where tok has it,
 * else "[Q] "; "[unused1]", else "[D] ". */
void cb_colbert_default_markers(const tokenizer *tok, const char **query_token, const char **doc_token);

/* Query ids: writes exactly c->query_maxlen ids and attention-mask bytes. */
void cb_colbert_query_ids(int32_t *ids /* [query_maxlen] */, uint8_t *mask /* [query_maxlen] */,
                       const colbert_vocab *v, const tokenizer *tok, const char *text, size_t len,
                       const colbert_config *c);

/* Document ids: writes n <= c->doc_maxlen ids and returns n. */
int cb_colbert_doc_ids(int32_t *ids /* [doc_maxlen] */, const colbert_vocab *v, const tokenizer *tok,
                    const char *text, size_t len, const colbert_config *c);

/* keep[i] = 0 for a punctuation id (when mask_punctuation) or [PAD], else 1. */
void cb_colbert_doc_keep(uint8_t *keep /* [n] */, const int32_t *ids /* [n] */, int n,
                      const colbert_vocab *v, int mask_punctuation);

/* A new projection: linear[D, H] ~ Normal(0, std) from a seeded
 * splitmix64 + Box-Muller stream (the same numbers on every machine). */
void cb_colbert_linear_init(float *linear /* [D, H] */, uint64_t seed, float std, int D, int H);

/* ---- head ---------------------------------------------------------------- */

/* out = normalize(keep * act(hidden @ linear^T)), on device d (every
 * pointer [dev]). keep may be NULL (all 1). proj keeps the
 * pre-normalisation vectors and norm the clamped norms, for the backward
 * pass. relu: colbert-ai has the `relu` setting but its current code never
 * applies it; ours applies it after the projection. */
void cb_colbert_head_forward(ops_device *d, float *out /* [T, D] */, float *proj /* [T, D] */,
                          float *norm /* [T] */, const float *hidden /* [T, H] */,
                          const float *linear /* [D, H] */, const uint8_t *keep /* [T] */, int relu, int T,
                          int H, int D);

/* d_hidden += dL/dhidden; d_linear += dL/dlinear. d_out is overwritten
 * (used as scratch for dL/dproj). */
void cb_colbert_head_backward(ops_device *d, float *d_hidden /* [T, H] */, float *d_linear /* [D, H] */,
                           float *d_out /* [T, D] */, const float *out /* [T, D] */,
                           const float *proj /* [T, D] */, const float *norm /* [T] */,
                           const float *hidden /* [T, H] */, const float *linear /* [D, H] */,
                           const uint8_t *keep /* [T] */, int relu, int T, int H, int D);

/* MaxSim (score, argmax, backward) is cb_ops_maxsim_forward/backward (ops.h). */
#endif
