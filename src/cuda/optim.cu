/* cuda/optim.cu: gradient clipping and AdamW over the one flat parameter
 * block. The norm is a two-pass reduction in double with a fixed grid (the
 * same bits on every run); AdamW is one fused kernel whose rounding steps
 * are the CPU's (the _rn intrinsics: no FMA contraction), so with equal
 * gradients it gives the CPU's parameters bit for bit. */
#include "common.cuh"
#include "kernels.cuh"

#include <math.h>

#define NORM_BLOCKS 1024
#define NORM_THREADS 256

static __global__ void sumsq_partial_kernel(double *partial, const float *g, size_t n) {
    __shared__ double sh[NORM_THREADS / 32];
    double ss = 0;
    for (size_t i = blockIdx.x * (size_t)NORM_THREADS + threadIdx.x; i < n; i += (size_t)NORM_BLOCKS * NORM_THREADS)
        ss += (double)g[i] * g[i];
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int w = 0; w < NORM_THREADS / 32; w++) t += sh[w];
        partial[blockIdx.x] = t;
    }
}

/* out[0] = total (float), out[1] = coefficient */
static __global__ void sumsq_finish_kernel(float *out, const double *partial, float max_norm) {
    __shared__ double sh[NORM_BLOCKS / 32];
    double ss = 0;
    for (int i = threadIdx.x; i < NORM_BLOCKS; i += blockDim.x) ss += partial[i];
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x == 0) {
        double t = 0;
        for (int w = 0; w < (int)(blockDim.x >> 5); w++) t += sh[w];
        float total = (float)sqrt(t);
        out[0] = total;
        out[1] = max_norm / (total + 1e-6f);
    }
}

static __global__ void scale_kernel(float *g, size_t n, const float *coef_p) {
    float coef = *coef_p;
    if (!(coef < 1.0f)) return;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        g[i] = __fmul_rn(g[i], coef);
}

float cb_cuda_clip_grad_norm(ops_device *d, float *grads, size_t n, float max_norm) {
    cuda_state *s = cb_cuda_enter(d);
    sumsq_partial_kernel<<<NORM_BLOCKS, NORM_THREADS, 0, s->stream>>>(s->norm_partial, grads, n);
    CU_LAUNCHED();
    sumsq_finish_kernel<<<1, 1024, 0, s->stream>>>(s->norm_out, s->norm_partial, max_norm);
    CU_LAUNCHED();
    if (n) {
        scale_kernel<<<grid_for(n, 256), 256, 0, s->stream>>>(grads, n, s->norm_out + 1);
        CU_LAUNCHED();
    }
    float total;
    CU_CHECK(cudaMemcpyAsync(&total, s->norm_out, sizeof total, cudaMemcpyDeviceToHost, s->stream));
    CU_CHECK(cudaStreamSynchronize(s->stream));
    return total;
}

struct adamw_scalars {
    float decay, w1, b2, w2, step_size, bc2_sqrt, eps;
};

static __global__ void adamw_kernel(float *params, const float *grads, float *m, float *v, size_t n, adamw_scalars a) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float g = grads[i], mo = m[i];
        float p = __fmul_rn(params[i], a.decay);
        float mi = __fadd_rn(mo, __fmul_rn(a.w1, __fsub_rn(g, mo)));      /* lerp, weight < 0.5 */
        float vi = __fadd_rn(__fmul_rn(v[i], a.b2), __fmul_rn(__fmul_rn(a.w2, g), g));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), a.bc2_sqrt), a.eps);
        params[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(-a.step_size, mi), denom));   /* addcdiv */
        m[i] = mi;
        v[i] = vi;
    }
}

void cb_cuda_adamw(ops_device *d, float *params, const float *grads, float *m, float *v, size_t n,
                const adamw_config *c, long t) {
    cuda_state *s = cb_cuda_enter(d);
    CB_ASSERT(t >= 1);
    if (!n) return;
    /* the scalars torch computes in Python floats, then applies as fp32 (as cpu/optim.c) */
    adamw_scalars a;
    a.decay = (float)(1.0 - c->lr * c->weight_decay);
    a.w1 = (float)(1.0 - c->beta1);
    a.b2 = (float)c->beta2;
    a.w2 = (float)(1.0 - c->beta2);
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    a.step_size = (float)(c->lr / bc1);
    a.bc2_sqrt = (float)sqrt(bc2);
    a.eps = (float)c->eps;
    adamw_kernel<<<grid_for(n, 256), 256, 0, s->stream>>>(params, grads, m, v, n, a);
    CU_LAUNCHED();
}
