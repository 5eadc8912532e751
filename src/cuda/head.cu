/* cuda/head.cu: the ColBERT head after its projection (a linear layer,
 * matmul.cu): the punctuation/padding mask, optional ReLU, and the L2
 * normalisation of every token vector (one warp per row, the sum of
 * squares in double as on the CPU). */
#include "common.cuh"
#include "kernels.cuh"

#define NORM_EPS 1e-12f     /* F.normalize's eps */
#define HEAD_WARPS 4

static __global__ void keep_relu_fwd_kernel(float *x, const uint8_t *keep, int relu, int T, int D) {
    size_t n = (size_t)T * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i / (size_t)D;
        if (keep && !keep[t]) x[i] = 0.0f;
        else if (relu) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
    }
}

/* x: [T, D] in place; keep: [T] or NULL */
void cb_cuda_keep_relu_forward(ops_device *d, float *x, const uint8_t *keep, int relu, int T, int D) {
    cuda_state *s = cb_cuda_enter(d);
    if ((!relu && !keep) || T <= 0) return;
    keep_relu_fwd_kernel<<<grid_for((size_t)T * D, 256), 256, 0, s->stream>>>(x, keep, relu, T, D);
    CU_LAUNCHED();
}

static __global__ void keep_relu_bwd_kernel(float *dx, const float *x, const uint8_t *keep, int relu, int T, int D) {
    size_t n = (size_t)T * D;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i / (size_t)D;
        if (keep && !keep[t]) dx[i] = 0.0f;
        else if (relu && !(x[i] > 0.0f)) dx[i] = 0.0f;
    }
}

/* forward: x = keep * relu(x0); x > 0 is relu's derivative */
void cb_cuda_keep_relu_backward(ops_device *d, float *dx, const float *x, const uint8_t *keep, int relu, int T,
                             int D) {
    cuda_state *s = cb_cuda_enter(d);
    if ((!relu && !keep) || T <= 0) return;
    keep_relu_bwd_kernel<<<grid_for((size_t)T * D, 256), 256, 0, s->stream>>>(dx, x, keep, relu, T, D);
    CU_LAUNCHED();
}

static __global__ void l2norm_fwd_kernel(float *out, float *norm, const float *inp, int T, int D) {
    int t = blockIdx.x * HEAD_WARPS + threadIdx.y, lane = threadIdx.x;
    if (t >= T) return;
    const float *x = inp + (size_t)t * D;
    float *y = out + (size_t)t * D;
    double ss = 0;
    for (int i = lane; i < D; i += 32) ss += (double)x[i] * x[i];
    ss = warp_sum(ss);
    float nrm = fmaxf((float)sqrt(ss), NORM_EPS);
    for (int i = lane; i < D; i += 32) y[i] = __fdiv_rn(x[i], nrm);
    if (lane == 0) norm[t] = nrm;
}

void cb_cuda_l2norm_forward(ops_device *d, float *out, float *norm, const float *inp, int T, int D) {
    cuda_state *s = cb_cuda_enter(d);
    if (T <= 0) return;
    dim3 blk(32, HEAD_WARPS);
    l2norm_fwd_kernel<<<(T + HEAD_WARPS - 1) / HEAD_WARPS, blk, 0, s->stream>>>(out, norm, inp, T, D);
    CU_LAUNCHED();
}

/* Each lane reads its dy elements before writing the same dx elements, so
 * dinp may alias dout. */
static __global__ void l2norm_bwd_kernel(float *dinp, const float *dout, const float *out, const float *norm, int T,
                                  int D) {
    int t = blockIdx.x * HEAD_WARPS + threadIdx.y, lane = threadIdx.x;
    if (t >= T) return;
    const float *y = out + (size_t)t * D, *dy = dout + (size_t)t * D;
    float *dx = dinp + (size_t)t * D;
    float nrm = norm[t];
    double ydy = 0;
    for (int i = lane; i < D; i += 32) ydy += (double)y[i] * dy[i];
    ydy = warp_sum(ydy);
    float dot = nrm > NORM_EPS ? (float)ydy : 0.0f;
    for (int i = lane; i < D; i += 32) dx[i] = __fdiv_rn(__fsub_rn(dy[i], __fmul_rn(y[i], dot)), nrm);
}

/* forward: y = x / n, n = max(||x||, eps); see cpu/head.c */
void cb_cuda_l2norm_backward(ops_device *d, float *dinp, const float *dout, const float *out, const float *norm, int T,
                          int D) {
    cuda_state *s = cb_cuda_enter(d);
    if (T <= 0) return;
    dim3 blk(32, HEAD_WARPS);
    l2norm_bwd_kernel<<<(T + HEAD_WARPS - 1) / HEAD_WARPS, blk, 0, s->stream>>>(dinp, dout, out, norm, T, D);
    CU_LAUNCHED();
}
