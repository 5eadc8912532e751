/* ops.h: the compute interface. Every number the encoder, the ColBERT
 * head, the losses and the optimizer compute goes through these calls;
 * bert.c, modernbert.c, colbert.c, step.c (and encoder.c, colmodel.c for inference) call
 * nothing else that computes. A backend implements them: src/cpu/ (OpenBLAS
 * and our AVX2 attention tiles) is the specification; another backend
 * (src/cuda/) mirrors it file for file and is tested against it op by op
 * (tests/test_ops.c).
 *
 * Devices. cb_ops_open("auto" | "cpu" | "cuda" | "cuda:N") picks a backend at
 * run time; every call takes the ops_device it runs on. A program may open
 * several.
 *
 * Buffers. cb_ops_alloc returns backend memory ("device pointers", marked
 * [dev] below). Callers may do pointer arithmetic on them and pass them to
 * ops, but never read or write through them: data goes in with cb_ops_upload
 * and out with cb_ops_download. (On the CPU backend device memory is host
 * memory, so tests may also pass host arrays to the CPU device directly.)
 * Scalars and the [host] arguments are plain host values.
 *
 * Shapes: T tokens of a packed batch (sequences back to back, no padding),
 * H hidden size, I intermediate size, NH heads, D a vector size. Matrices
 * are row-major. Outputs come first, then inputs, then sizes; parameter
 * gradients accumulate (+=) unless a comment says otherwise.
 *
 * Errors: what can fail because of the world (allocating, opening a device)
 * returns an error through cb_err; the ops themselves cannot fail on valid
 * arguments (invalid ones are bugs: CB_ASSERT).
 */
#ifndef CB_OPS_H
#define CB_OPS_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "loss.h"
#include "optim.h"
#include "rng.h"

typedef struct ops_device ops_device;

/* Precision of the matmuls: fp32 everywhere (the CPU backend, and
 * `--precision fp32` on a GPU), or bf16 inputs with fp32 accumulation. */
typedef enum { OPS_FP32 = 0, OPS_BF16 = 1 } ops_precision;

/* Sequences of a packed batch, as attention and dropout need them:
 * sequence s holds tokens off[s] .. off[s+1]-1; att_off[s] is the sum of
 * n^2 over the sequences before it (where a backend may lay out
 * per-sequence score blocks); id[s] names the sequence for the dropout
 * masks (see "Dropout masks" below). off, att_off and id are [dev]; id may
 * be NULL when no op runs with dropout. */
typedef struct ops_seqs {
    int n_seq;                  /* S */
    int n_tok;                  /* T = off[S] */
    int max_len;                /* longest sequence, <= the workspace's */
    const int *off;             /* [S + 1] dev */
    const size_t *att_off;      /* [S] dev: sum of n^2 of the sequences before */
    const uint64_t *id;         /* [S] dev: dropout id of each sequence, or NULL */
} ops_seqs;

/* Scratch memory an op works in: [dev], sized once by the op's
 * ops_*_workspace (for the largest batch) and allocated with cb_ops_alloc. */
typedef struct ops_work {
    void *p;
    size_t bytes;
} ops_work;

/* The operations, one function pointer each; see the ops_* wrappers below
 * for their contracts. A backend fills one of these. */
typedef struct ops_backend {
    const char *name;
    /* buffers */
    void *(*alloc)(ops_device *d, size_t bytes, const char *what, cb_err *err);
    void (*free)(ops_device *d, void *p);
    void (*upload)(ops_device *d, void *dst, const void *src, size_t bytes);
    void (*download)(ops_device *d, void *dst, const void *src, size_t bytes);
    void (*copy)(ops_device *d, void *dst, const void *src, size_t bytes);
    void (*zero)(ops_device *d, void *p, size_t bytes);
    void (*sync)(ops_device *d);
    /* matmul */
    void (*linear_forward)(ops_device *d, float *out, const float *inp, const float *w, const float *b, int T,
                           int C, int OC);
    void (*linear_backward)(ops_device *d, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int T, int C, int OC, int acc);
    /* embeddings */
    void (*embed_forward)(ops_device *d, float *out, const int32_t *ids, const int32_t *pos,
                          const int32_t *types, const float *word, const float *pos_emb, const float *type_emb,
                          int T, int H);
    void (*embed_backward)(ops_device *d, float *dword, float *dpos, float *dtype, const float *dout,
                           const int32_t *ids, const int32_t *pos, const int32_t *types, int T, int H);
    /* elementwise */
    void (*layernorm_forward)(ops_device *d, float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int T, int C, float eps);
    void (*layernorm_backward)(ops_device *d, float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *w, const float *mean, const float *rstd, int T,
                               int C);
    void (*gelu_forward)(ops_device *d, float *out, const float *inp, size_t n);
    void (*gelu_backward)(ops_device *d, float *dinp, const float *inp, const float *dout, size_t n);
    void (*geglu_forward)(ops_device *d, float *out, const float *inp, int T, int I);
    void (*geglu_backward)(ops_device *d, float *dinp, const float *dout, const float *inp, int T, int I);
    void (*add)(ops_device *d, float *out, const float *a, const float *b, size_t n);
    void (*dropout_forward)(ops_device *d, float *x, uint8_t *mask, const ops_seqs *s, int H, float p,
                            uint64_t seed, uint64_t stream);
    void (*dropout_backward)(ops_device *d, float *dx, const uint8_t *mask, size_t n, float p);
    /* attention */
    size_t (*attention_workspace)(ops_device *d, int max_len, int head_dim, int train);
    void (*attention_forward)(ops_device *d, float *ctx, const float *qkv, const uint8_t *mask,
                              const ops_seqs *s, int H, int NH, int window, float p, uint64_t seed,
                              uint64_t stream, const ops_work *work);
    void (*attention_backward)(ops_device *d, float *d_qkv, const float *d_ctx, const float *qkv,
                               const uint8_t *mask, const ops_seqs *s, int H, int NH, int window, float p,
                               uint64_t seed, uint64_t stream, const ops_work *work);
    void (*rope_forward)(ops_device *d, float *qkv, const ops_seqs *s, int H, int NH, float theta);
    void (*rope_backward)(ops_device *d, float *d_qkv, const ops_seqs *s, int H, int NH, float theta);
    /* ColBERT head */
    void (*keep_relu_forward)(ops_device *d, float *x, const uint8_t *keep, int relu, int T, int D);
    void (*keep_relu_backward)(ops_device *d, float *dx, const float *x, const uint8_t *keep, int relu, int T,
                               int D);
    void (*l2norm_forward)(ops_device *d, float *out, float *norm, const float *inp, int T, int D);
    void (*l2norm_backward)(ops_device *d, float *dinp, const float *dout, const float *out, const float *norm,
                            int T, int D);
    /* MaxSim */
    size_t (*maxsim_workspace)(ops_device *d, int Lq, size_t doc_rows);
    void (*maxsim_forward)(ops_device *d, float *scores, int32_t *argmax, const float *qv, const float *dv,
                           const int *d_off, const int *d_off_host, const uint8_t *d_keep, int group, int nq,
                           int nd, int Lq, int D, const ops_work *work);
    void (*maxsim_backward)(ops_device *d, float *d_qv, float *d_dv, const float *d_scores,
                            const int32_t *argmax, const float *qv, const float *dv, int group, int nq, int nd,
                            int Lq, int D);
    /* losses */
    float (*loss)(ops_device *d, float *d_scores, loss_parts *parts, const float *scores, const float *teacher,
                  const loss_config *c, int B);
    /* optimizer */
    float (*clip_grad_norm)(ops_device *d, float *grads, size_t n, float max_norm);
    void (*adamw)(ops_device *d, float *params, const float *grads, float *m, float *v, size_t n,
                  const adamw_config *c, long t);
} ops_backend;

struct ops_device {
    const ops_backend *fn;
    const char *kind;           /* "cpu", "cuda" */
    int index;                  /* GPU number; 0 on the CPU */
    ops_precision precision;
    char desc[256];             /* one line: what this device is */
    void *impl;                 /* the backend's own state */
};

/* Open a device: "cpu", "cuda", "cuda:N" or "auto" (a usable GPU, else the
 * CPU). NULL + err when the backend is not built in or no such device can
 * be used ("cuda: no usable GPU (...)"). "auto" never fails: when it falls
 * back to the CPU, err (may be NULL) says why no GPU was taken. precision:
 * OPS_FP32, or OPS_BF16 (ignored by the CPU, which is always fp32). */
ops_device *cb_ops_open(const char *spec, ops_precision precision, cb_err *err);
/* Close a device from cb_ops_open (the CPU singleton is left alone). Every
 * buffer allocated on it must be freed first. */
void cb_ops_close(ops_device *d);
/* The CPU device (always available; a process-wide singleton that
 * cb_ops_close leaves alone). */
ops_device *cb_ops_cpu(void);
/* 1 when a backend of that kind is compiled into this build. */
int cb_ops_have(const char *kind);
/* "fp32" / "bf16" <-> ops_precision; parse returns -1 on anything else */
int cb_ops_precision_parse(const char *s, ops_precision *out);
const char *cb_ops_precision_name(ops_precision p);
/* Lines for `colbert info` on the GPU backends: the CUDA runtime, driver,
 * cuBLASLt, the kernels built in and every GPU (or why there is none, or
 * that CUDA is not built in). Returns the characters written to buf. */
size_t cb_ops_info(char *buf, size_t bytes);

/* ---- buffers ------------------------------------------------------------- */

/* bytes of device memory, uninitialised; NULL + err naming `what` */
static inline void *cb_ops_alloc(ops_device *d, size_t bytes, const char *what, cb_err *err) {
    return d->fn->alloc(d, bytes, what, err);
}
static inline void cb_ops_free(ops_device *d, void *p) { if (p) d->fn->free(d, p); }
/* host -> device, device -> host, device -> device; cb_ops_download waits for
 * the work before it */
static inline void cb_ops_upload(ops_device *d, void *dst, const void *src, size_t bytes) {
    if (bytes) d->fn->upload(d, dst, src, bytes);
}
static inline void cb_ops_download(ops_device *d, void *dst, const void *src, size_t bytes) {
    if (bytes) d->fn->download(d, dst, src, bytes);
}
static inline void cb_ops_copy(ops_device *d, void *dst, const void *src, size_t bytes) {
    if (bytes) d->fn->copy(d, dst, src, bytes);
}
static inline void cb_ops_zero(ops_device *d, void *p, size_t bytes) { if (bytes) d->fn->zero(d, p, bytes); }
/* wait until every op issued so far has finished (for timing) */
static inline void cb_ops_sync(ops_device *d) { d->fn->sync(d); }

/* ---- matmul -------------------------------------------------------------- */

/* out[T, OC] = inp[T, C] @ w[OC, C]^T + b[OC]   (b may be NULL) */
static inline void cb_ops_linear_forward(ops_device *d, float *out, const float *inp, const float *w,
                                      const float *b, int T, int C, int OC) {
    d->fn->linear_forward(d, out, inp, w, b, T, C, OC);
}
/* forward: out = inp @ w^T + b.
 * dinp[T, C] = dout @ w (acc = 1: +=); dw[OC, C] += dout^T @ inp;
 * db[OC] += column sums of dout (db may be NULL). */
static inline void cb_ops_linear_backward(ops_device *d, float *dinp, float *dw, float *db, const float *dout,
                                       const float *inp, const float *w, int T, int C, int OC, int acc) {
    d->fn->linear_backward(d, dinp, dw, db, dout, inp, w, T, C, OC, acc);
}

/* ---- embeddings ---------------------------------------------------------- */

/* out[t] = word[ids[t]] + pos_emb[pos[t]] + type_emb[types[t]]
 * out [T, H]; ids, pos, types [T] (types may be NULL: all 0). pos_emb NULL:
 * no position term (pos unused, may be NULL); type_emb NULL: no token-type
 * term (ModernBERT's embeddings are the word rows alone). */
static inline void cb_ops_embed_forward(ops_device *d, float *out, const int32_t *ids, const int32_t *pos,
                                     const int32_t *types, const float *word, const float *pos_emb,
                                     const float *type_emb, int T, int H) {
    d->fn->embed_forward(d, out, ids, pos, types, word, pos_emb, type_emb, T, H);
}
/* scatter-add of dout [T, H] into the rows the forward read; deterministic
 * (the same sums in the same order whatever the threads). dpos / dtype
 * NULL: that table had no term in the forward. */
static inline void cb_ops_embed_backward(ops_device *d, float *dword, float *dpos, float *dtype, const float *dout,
                                      const int32_t *ids, const int32_t *pos, const int32_t *types, int T,
                                      int H) {
    d->fn->embed_backward(d, dword, dpos, dtype, dout, ids, pos, types, T, H);
}

/* ---- elementwise --------------------------------------------------------- */

/* out, inp [T, C]; mean, rstd [T]; w, b [C]:
 * out = (inp - mean) * rstd * w + b, rstd = 1 / sqrt(var + eps);
 * b may be NULL (no bias: nn.LayerNorm(bias=False)) */
static inline void cb_ops_layernorm_forward(ops_device *d, float *out, float *mean, float *rstd, const float *inp,
                                         const float *w, const float *b, int T, int C, float eps) {
    d->fn->layernorm_forward(d, out, mean, rstd, inp, w, b, T, C, eps);
}
/* dinp [T, C] (overwritten); dw, db [C] (+=); db NULL when the forward had
 * no bias */
static inline void cb_ops_layernorm_backward(ops_device *d, float *dinp, float *dw, float *db, const float *dout,
                                          const float *inp, const float *w, const float *mean,
                                          const float *rstd, int T, int C) {
    d->fn->layernorm_backward(d, dinp, dw, db, dout, inp, w, mean, rstd, T, C);
}
/* exact GELU: out = 0.5 x (1 + erf(x / sqrt 2)), n elements */
static inline void cb_ops_gelu_forward(ops_device *d, float *out, const float *inp, size_t n) {
    d->fn->gelu_forward(d, out, inp, n);
}
/* dinp = dout * GELU'(inp) (dinp may alias dout) */
static inline void cb_ops_gelu_backward(ops_device *d, float *dinp, const float *inp, const float *dout, size_t n) {
    d->fn->gelu_backward(d, dinp, inp, dout, n);
}
/* GeGLU: inp [T, 2I] holds (input, gate) side by side per row (the
 * chunk(2, dim=-1) of transformers' ModernBertMLP); out [T, I] =
 * gelu(input) * gate, exact GELU */
static inline void cb_ops_geglu_forward(ops_device *d, float *out, const float *inp, int T, int I) {
    d->fn->geglu_forward(d, out, inp, T, I);
}
/* dinp [T, 2I] (overwritten): d input = dout * gate * GELU'(input),
 * d gate = dout * gelu(input); dout [T, I] */
static inline void cb_ops_geglu_backward(ops_device *d, float *dinp, const float *dout, const float *inp, int T,
                                         int I) {
    d->fn->geglu_backward(d, dinp, dout, inp, T, I);
}
/* out = a + b (out may alias a or b) */
static inline void cb_ops_add(ops_device *d, float *out, const float *a, const float *b, size_t n) {
    d->fn->add(d, out, a, b, n);
}
/* In place on x [T, H] (T = s->n_tok): mask [T, H] = the keep bit of each
 * element, x = mask ? x / (1 - p) : 0. Element j of token t of sequence q
 * is element (t - off[q]) * H + j of that sequence: kept when
 * cb_ops_dropout_keep(seed, stream, id[q], (t - off[q]) * H + j, p). */
static inline void cb_ops_dropout_forward(ops_device *d, float *x, uint8_t *mask, const ops_seqs *s, int H,
                                       float p, uint64_t seed, uint64_t stream) {
    d->fn->dropout_forward(d, x, mask, s, H, p, seed, stream);
}
/* dx = mask ? dx / (1 - p) : 0 */
static inline void cb_ops_dropout_backward(ops_device *d, float *dx, const uint8_t *mask, size_t n, float p) {
    d->fn->dropout_backward(d, dx, mask, n, p);
}

/* ---- attention ----------------------------------------------------------- */

/* Bytes of workspace attention needs for sequences up to max_len tokens
 * and heads of head_dim (train: the backward's too), with the threads the
 * process has now. Allocate once. */
static inline size_t cb_ops_attention_workspace(ops_device *d, int max_len, int head_dim, int train) {
    return d->fn->attention_workspace(d, max_len, head_dim, train);
}
/* Multi-head self-attention of each packed sequence over itself.
 * ctx [T, H] (heads side by side); qkv [T, 3H] (query, key, value); mask
 * [T] or NULL: keys with mask 0 get probability exactly 0. window 0: every
 * key; window w > 0 (a sliding window, ModernBERT's local layers): query i
 * sees key j only when |i - j| <= w, the others get probability exactly 0;
 * with a window, a row that sees no key (its keys in reach all masked) is
 * uniform, 1/n on every key of its sequence, as transformers' additive
 * finfo.min mask makes it, and its backward is the softmax's through those
 * probabilities (PyTorch's autograd). With p > 0,
 * dropout on the probabilities: the probability of query token i and key
 * token j in head h of sequence s (n_s tokens) is element h * n_s^2 + i *
 * n_s + j of that sequence: kept when cb_ops_dropout_keep(seed, stream,
 * id[s], h * n_s^2 + i * n_s + j, p), scaled by 1 / (1 - p). Never stores
 * the n x n probabilities outside the workspace. Without a window, a
 * sequence whose keys are all masked gets ctx = 0 (ColBERT never makes one:
 * [CLS] is always kept). */
static inline void cb_ops_attention_forward(ops_device *d, float *ctx, const float *qkv, const uint8_t *mask,
                                         const ops_seqs *s, int H, int NH, int window, float p, uint64_t seed,
                                         uint64_t stream, const ops_work *work) {
    d->fn->attention_forward(d, ctx, qkv, mask, s, H, NH, window, p, seed, stream, work);
}
/* d_qkv [T, 3H] (overwritten) from d_ctx [T, H]; recomputes the
 * probabilities (and their dropout) from qkv. */
static inline void cb_ops_attention_backward(ops_device *d, float *d_qkv, const float *d_ctx, const float *qkv,
                                          const uint8_t *mask, const ops_seqs *s, int H, int NH, int window,
                                          float p, uint64_t seed, uint64_t stream, const ops_work *work) {
    d->fn->attention_backward(d, d_qkv, d_ctx, qkv, mask, s, H, NH, window, p, seed, stream, work);
}
/* Rotary position embeddings (NeoX style, rotate_half, over the whole head
 * of D = H / NH), in place on the query and key parts of qkv [T, 3H]; the
 * value part is left alone. Token t of sequence q has position t - off[q].
 * For i < D/2: f_i = 1 / theta^(2i / D) (float32, as transformers'
 * inv_freq), a = pos * f_i (float32), and each head's (x_i, x_{i+D/2})
 * becomes (x_i cos a - x_{i+D/2} sin a, x_{i+D/2} cos a + x_i sin a). */
static inline void cb_ops_rope_forward(ops_device *d, float *qkv, const ops_seqs *s, int H, int NH, float theta) {
    d->fn->rope_forward(d, qkv, s, H, NH, theta);
}
/* In place on d_qkv [T, 3H]: the gradient through the rotation of the
 * query and key parts (the inverse rotation); the value part unchanged. */
static inline void cb_ops_rope_backward(ops_device *d, float *d_qkv, const ops_seqs *s, int H, int NH,
                                        float theta) {
    d->fn->rope_backward(d, d_qkv, s, H, NH, theta);
}

/* ---- the ColBERT head ---------------------------------------------------- */

/* In place on x [T, D]: rows with keep[t] == 0 become 0 (punctuation,
 * padding); with relu, max(x, 0). keep may be NULL (all kept). */
static inline void cb_ops_keep_relu_forward(ops_device *d, float *x, const uint8_t *keep, int relu, int T, int D) {
    d->fn->keep_relu_forward(d, x, keep, relu, T, D);
}
/* In place on dx [T, D]: zero where the forward zeroed (x is its output) */
static inline void cb_ops_keep_relu_backward(ops_device *d, float *dx, const float *x, const uint8_t *keep,
                                          int relu, int T, int D) {
    d->fn->keep_relu_backward(d, dx, x, keep, relu, T, D);
}
/* out[t] = inp[t] / max(||inp[t]||, 1e-12) (F.normalize); norm[t] = that max */
static inline void cb_ops_l2norm_forward(ops_device *d, float *out, float *norm, const float *inp, int T, int D) {
    d->fn->l2norm_forward(d, out, norm, inp, T, D);
}
/* dinp = (dout - out <out, dout>) / norm, or dout / 1e-12 where clamped;
 * dinp may alias dout */
static inline void cb_ops_l2norm_backward(ops_device *d, float *dinp, const float *dout, const float *out,
                                       const float *norm, int T, int D) {
    d->fn->l2norm_backward(d, dinp, dout, out, norm, T, D);
}

/* ---- MaxSim -------------------------------------------------------------- */

/* Bytes of workspace for queries of Lq vectors against at most doc_rows
 * document rows (the rows one query meets: all of them when group = 0). */
static inline size_t cb_ops_maxsim_workspace(ops_device *d, int Lq, size_t doc_rows) {
    return d->fn->maxsim_workspace(d, Lq, doc_rows);
}
/* scores [nq, G] of nq queries (qv [nq, Lq, D], every vector kept) against
 * packed documents (document k = rows d_off[k] .. d_off[k+1]-1 of dv [Td,
 * D]; rows with d_keep 0 skipped): score = sum_i max_j <q_i, d_j>.
 * group > 0: query q meets documents q*group .. q*group+group-1, G = group;
 * group = 0: query q meets every document, G = nd.
 * argmax [nq, G, Lq]: the dv row each query vector matched (-1 when the
 * document has no kept row: that max counts as -9999, as colbert-ai's).
 * d_off is given twice, [dev] and [host] (nd + 1 each). */
static inline void cb_ops_maxsim_forward(ops_device *d, float *scores, int32_t *argmax, const float *qv,
                                      const float *dv, const int *d_off, const int *d_off_host,
                                      const uint8_t *d_keep, int group, int nq, int nd, int Lq, int D,
                                      const ops_work *work) {
    d->fn->maxsim_forward(d, scores, argmax, qv, dv, d_off, d_off_host, d_keep, group, nq, nd, Lq, D, work);
}
/* d_qv [nq, Lq, D] +=, d_dv [Td, D] +=: each query vector's gradient flows
 * to its argmax row only */
static inline void cb_ops_maxsim_backward(ops_device *d, float *d_qv, float *d_dv, const float *d_scores,
                                       const int32_t *argmax, const float *qv, const float *dv, int group, int nq,
                                       int nd, int Lq, int D) {
    d->fn->maxsim_backward(d, d_qv, d_dv, d_scores, argmax, qv, dv, group, nq, nd, Lq, D);
}

/* ---- losses -------------------------------------------------------------- */

/* The loss of loss.h on scores [B, cb_loss_score_cols] (teacher [B, nway] or
 * NULL); d_scores (same shape) is overwritten with its gradient. Returns
 * the loss [host]; parts [host] may be NULL. In a data-parallel run
 * (loss_config's q_first, q_global, ib_global) the means are over the
 * global batch: this is the rank's share of them. */
static inline float cb_ops_loss(ops_device *d, float *d_scores, loss_parts *parts, const float *scores,
                             const float *teacher, const loss_config *c, int B) {
    return d->fn->loss(d, d_scores, parts, scores, teacher, c, B);
}

/* ---- optimizer ----------------------------------------------------------- */

/* clip_grad_norm_: total = ||grads||_2 (summed in double), grads *= max_norm
 * / (total + 1e-6) when that is < 1. Returns total. */
static inline float cb_ops_clip_grad_norm(ops_device *d, float *grads, size_t n, float max_norm) {
    return d->fn->clip_grad_norm(d, grads, n, max_norm);
}
/* One AdamW step over n parameters (optim.h has the formula); t 1-based */
static inline void cb_ops_adamw(ops_device *d, float *params, const float *grads, float *m, float *v, size_t n,
                             const adamw_config *c, long t) {
    d->fn->adamw(d, params, grads, m, v, n, c, t);
}

/* ---- shared definitions -------------------------------------------------- */

/* Dropout masks. Every backend drops exactly the same elements: an element
 * is named by (seed, stream, id, e): the op's seed and stream, the id of
 * its sequence (ops_seqs.id) and its index e within that sequence (the ops
 * above say how they number it). It is kept when the top 32 bits of
 * mix64(key ^ e) reach p * 2^32 (truncated to an integer), with
 *     key = mix64(mix64(seed ^ stream * 0xd1342543de82ef95) ^ id * 0x9e3779b97f4a7c15)
 * (mix64 = cb_rng_mix64, the splitmix64 finaliser; products modulo 2^64).
 * A pure function of (seed, stream, id, e): the same in any thread order,
 * and the same for a sequence wherever it lies in a packed batch. The
 * training step (step.c) gives each sequence an id from its position in
 * the step's global batch (query of triple g: g * (1 + nway); its k-th
 * document: g * (1 + nway) + 1 + k), so one process and N processes that
 * each run a share of the batch drop the same elements. CB_HOSTDEV
 * (hostdev.h): CUDA kernels call these same definitions. */
static inline CB_HOSTDEV uint64_t cb_ops_dropout_key(uint64_t seed, uint64_t stream, uint64_t id) {
    return cb_rng_mix64(cb_rng_mix64(seed ^ (stream * 0xd1342543de82ef95ULL)) ^ (id * 0x9e3779b97f4a7c15ULL));
}
static inline CB_HOSTDEV uint32_t cb_ops_dropout_thr(float p) { return (uint32_t)((double)p * 4294967296.0); }
static inline CB_HOSTDEV int cb_ops_keep_bit(uint64_t key, uint64_t e, uint32_t thr) {
    return (uint32_t)(cb_rng_mix64(key ^ e) >> 32) >= thr;
}
static inline CB_HOSTDEV int cb_ops_dropout_keep(uint64_t seed, uint64_t stream, uint64_t id, uint64_t e, float p) {
    return cb_ops_keep_bit(cb_ops_dropout_key(seed, stream, id), e, cb_ops_dropout_thr(p));
}

#endif
