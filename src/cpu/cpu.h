/* cpu/cpu.h: the CPU backend of the compute interface (ops.h), the
 * specification every other backend is tested against. One file per
 * family of operations, as src/cuda/ mirrors it:
 *   backend.c    the ops_backend table, buffers (plain host memory)
 *   matmul.c     linear layers through OpenBLAS sgemm
 *   embed.c      embeddings and their deterministic scatter-add
 *   layernorm.c  LayerNorm forward and backward
 *   activation.c GELU, GeGLU, residual add, dropout
 *   attention.c  attention over packed sequences (attn.c: AVX2 tiles)
 *   rope.c       rotary position embeddings on the queries and keys
 *   head.c       the ColBERT head: punctuation mask / ReLU, L2 norm
 *   maxsim.c     MaxSim scores and their backward
 *   loss.c       colbert-ai's losses and PyLate's contrastive loss
 *   optim.c      gradient-norm clipping and AdamW
 * Every function has the contract of its ops_* wrapper in ops.h; the
 * ops_device argument is unused on the CPU. Threads: OpenMP.
 */
#ifndef CB_CPU_H
#define CB_CPU_H
#include "../ops.h"

/* CB_SIMD_CLONES before a hot elementwise loop's function: in a build for a
 * baseline x86-64 (the Python package's, -march=x86-64-v2) GCC compiles it
 * also for AVX2/FMA (x86-64-v3) and AVX-512 (x86-64-v4) and picks the best
 * when the library is loaded. The loops' results are the same in every
 * version (no reassociation; -std=c11 keeps a * b + c unfused). A build for
 * a CPU with AVX2 or more (the default -march=native) needs no clones. The
 * function must not be inlined into an OpenMP region's body, which is
 * outlined before cloning: call it from there. -DCB_NO_SIMD_CLONES turns
 * the clones off (to measure what they bring). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX2__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(CB_NO_SIMD_CLONES)
#define CB_SIMD_CLONES __attribute__((target_clones("default", "arch=x86-64-v3", "arch=x86-64-v4"), noinline))
#else
#define CB_SIMD_CLONES
#endif

const ops_backend *cb_cpu_backend(void);

void cb_cpu_linear_forward(ops_device *d, float *out, const float *inp, const float *w, const float *b, int T,
                        int C, int OC);
void cb_cpu_linear_backward(ops_device *d, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                         const float *w, int T, int C, int OC, int acc);

void cb_cpu_embed_forward(ops_device *d, float *out, const int32_t *ids, const int32_t *pos, const int32_t *types,
                       const float *word, const float *pos_emb, const float *type_emb, int T, int H);
void cb_cpu_embed_backward(ops_device *d, float *dword, float *dpos, float *dtype, const float *dout,
                        const int32_t *ids, const int32_t *pos, const int32_t *types, int T, int H);

void cb_cpu_layernorm_forward(ops_device *d, float *out, float *mean, float *rstd, const float *inp,
                           const float *w, const float *b, int T, int C, float eps);
void cb_cpu_layernorm_backward(ops_device *d, float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const float *mean, const float *rstd, int T,
                            int C);

void cb_cpu_gelu_forward(ops_device *d, float *out, const float *inp, size_t n);
void cb_cpu_gelu_backward(ops_device *d, float *dinp, const float *inp, const float *dout, size_t n);
void cb_cpu_geglu_forward(ops_device *d, float *out, const float *inp, int T, int I);
void cb_cpu_geglu_backward(ops_device *d, float *dinp, const float *dout, const float *inp, int T, int I);
void cb_cpu_add(ops_device *d, float *out, const float *a, const float *b, size_t n);
void cb_cpu_dropout_forward(ops_device *d, float *x, uint8_t *mask, const ops_seqs *s, int H, float p,
                         uint64_t seed, uint64_t stream);
void cb_cpu_dropout_backward(ops_device *d, float *dx, const uint8_t *mask, size_t n, float p);

size_t cb_cpu_attention_workspace(ops_device *d, int max_len, int head_dim, int train);
void cb_cpu_attention_forward(ops_device *d, float *ctx, const float *qkv, const uint8_t *mask, const ops_seqs *s,
                           int H, int NH, int window, float p, uint64_t seed, uint64_t stream,
                           const ops_work *work);
void cb_cpu_attention_backward(ops_device *d, float *d_qkv, const float *d_ctx, const float *qkv,
                            const uint8_t *mask, const ops_seqs *s, int H, int NH, int window, float p,
                            uint64_t seed, uint64_t stream, const ops_work *work);
void cb_cpu_rope_forward(ops_device *d, float *qkv, const ops_seqs *s, int H, int NH, float theta);
void cb_cpu_rope_backward(ops_device *d, float *d_qkv, const ops_seqs *s, int H, int NH, float theta);

void cb_cpu_keep_relu_forward(ops_device *d, float *x, const uint8_t *keep, int relu, int T, int D);
void cb_cpu_keep_relu_backward(ops_device *d, float *dx, const float *x, const uint8_t *keep, int relu, int T,
                            int D);
void cb_cpu_l2norm_forward(ops_device *d, float *out, float *norm, const float *inp, int T, int D);
void cb_cpu_l2norm_backward(ops_device *d, float *dinp, const float *dout, const float *out, const float *norm,
                         int T, int D);

size_t cb_cpu_maxsim_workspace(ops_device *d, int Lq, size_t doc_rows);
void cb_cpu_maxsim_forward(ops_device *d, float *scores, int32_t *argmax, const float *qv, const float *dv,
                        const int *d_off, const int *d_off_host, const uint8_t *d_keep, int group, int nq,
                        int nd, int Lq, int D, const ops_work *work);
void cb_cpu_maxsim_backward(ops_device *d, float *d_qv, float *d_dv, const float *d_scores, const int32_t *argmax,
                         const float *qv, const float *dv, int group, int nq, int nd, int Lq, int D);

float cb_cpu_loss(ops_device *d, float *d_scores, loss_parts *parts, const float *scores, const float *teacher,
               const loss_config *c, int B);
/* The row kernels of the losses (for finite-difference tests): gradients
 * add (+=) scale times the derivative into dx. */
/* scale * CE(x restricted to the columns outside [skip_lo, skip_hi), target) */
double cb_cpu_loss_ce_row(float *dx, const float *x, int target, int skip_lo, int skip_hi, double scale, int C);
/* scale * KL(p_t || softmax(x)), p_t = softmax(alpha * teacher) */
double cb_cpu_loss_kl_row(float *dx, const float *x, const float *teacher, float alpha, double scale, int C);

float cb_cpu_clip_grad_norm(ops_device *d, float *grads, size_t n, float max_norm);
void cb_cpu_adamw(ops_device *d, float *params, const float *grads, float *m, float *v, size_t n,
               const adamw_config *c, long t);
#endif
