/* cuda/kernels.cuh: the CUDA backend's operations, one per ops_backend
 * entry, each with the contract of its ops_* wrapper in ops.h. Defined in
 * the file of their family (cuda.h lists them). */
#ifndef CB_CUDA_KERNELS_CUH
#define CB_CUDA_KERNELS_CUH
#include "common.cuh"

void cb_cuda_linear_forward(ops_device *d, float *out, const float *inp, const float *w, const float *b, int T, int C,
                         int OC);
void cb_cuda_linear_backward(ops_device *d, float *dinp, float *dw, float *db, const float *dout, const float *inp,
                          const float *w, int T, int C, int OC, int acc);

void cb_cuda_embed_forward(ops_device *d, float *out, const int32_t *ids, const int32_t *pos, const int32_t *types,
                        const float *word, const float *pos_emb, const float *type_emb, int T, int H);
void cb_cuda_embed_backward(ops_device *d, float *dword, float *dpos, float *dtype, const float *dout,
                         const int32_t *ids, const int32_t *pos, const int32_t *types, int T, int H);

void cb_cuda_layernorm_forward(ops_device *d, float *out, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, int T, int C, float eps);
void cb_cuda_layernorm_backward(ops_device *d, float *dinp, float *dw, float *db, const float *dout,
                             const float *inp, const float *w, const float *mean, const float *rstd, int T, int C);

void cb_cuda_gelu_forward(ops_device *d, float *out, const float *inp, size_t n);
void cb_cuda_gelu_backward(ops_device *d, float *dinp, const float *inp, const float *dout, size_t n);
void cb_cuda_geglu_forward(ops_device *d, float *out, const float *inp, int T, int I);
void cb_cuda_geglu_backward(ops_device *d, float *dinp, const float *dout, const float *inp, int T, int I);
void cb_cuda_add(ops_device *d, float *out, const float *a, const float *b, size_t n);
void cb_cuda_dropout_forward(ops_device *d, float *x, uint8_t *mask, const ops_seqs *sq, int H, float p,
                             uint64_t seed, uint64_t stream);
void cb_cuda_dropout_backward(ops_device *d, float *dx, const uint8_t *mask, size_t n, float p);

size_t cb_cuda_attention_workspace(ops_device *d, int max_len, int head_dim, int train);
void cb_cuda_attention_forward(ops_device *d, float *ctx, const float *qkv, const uint8_t *mask, const ops_seqs *s,
                            int H, int NH, int window, float p, uint64_t seed, uint64_t stream,
                            const ops_work *work);
void cb_cuda_attention_backward(ops_device *d, float *d_qkv, const float *d_ctx, const float *qkv,
                             const uint8_t *mask, const ops_seqs *s, int H, int NH, int window, float p,
                             uint64_t seed, uint64_t stream, const ops_work *work);
void cb_cuda_rope_forward(ops_device *d, float *qkv, const ops_seqs *s, int H, int NH, float theta);
void cb_cuda_rope_backward(ops_device *d, float *d_qkv, const ops_seqs *s, int H, int NH, float theta);

void cb_cuda_keep_relu_forward(ops_device *d, float *x, const uint8_t *keep, int relu, int T, int D);
void cb_cuda_keep_relu_backward(ops_device *d, float *dx, const float *x, const uint8_t *keep, int relu, int T,
                             int D);
void cb_cuda_l2norm_forward(ops_device *d, float *out, float *norm, const float *inp, int T, int D);
void cb_cuda_l2norm_backward(ops_device *d, float *dinp, const float *dout, const float *out, const float *norm,
                          int T, int D);

size_t cb_cuda_maxsim_workspace(ops_device *d, int Lq, size_t doc_rows);
void cb_cuda_maxsim_forward(ops_device *d, float *scores, int32_t *argmax, const float *qv, const float *dv,
                         const int *d_off, const int *d_off_host, const uint8_t *d_keep, int group, int nq, int nd,
                         int Lq, int D, const ops_work *work);
void cb_cuda_maxsim_backward(ops_device *d, float *d_qv, float *d_dv, const float *d_scores, const int32_t *argmax,
                          const float *qv, const float *dv, int group, int nq, int nd, int Lq, int D);

float cb_cuda_loss(ops_device *d, float *d_scores, loss_parts *parts, const float *scores, const float *teacher,
                const loss_config *c, int B);

float cb_cuda_clip_grad_norm(ops_device *d, float *grads, size_t n, float max_norm);
void cb_cuda_adamw(ops_device *d, float *params, const float *grads, float *m, float *v, size_t n,
                const adamw_config *c, long t);
#endif
