/* cuda/activation.cu: exact-erf GELU, GeGLU, the residual add and dropout, with
 * the keep bits of ops.h's hash (the CPU's masks, bit for bit). Products
 * and sums use the _rn intrinsics where the CPU's C (no FMA contraction)
 * rounds each step, so the elementwise results match it exactly but for
 * erff/expf, whose last bits may differ. */
#include "common.cuh"
#include "kernels.cuh"

#define GRID_STRIDE(i, n) \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

static __global__ void gelu_fwd_kernel(float *out, const float *inp, size_t n) {
    GRID_STRIDE(i, n) {
        float x = inp[i];
        float cdf = __fadd_rn(1.0f, erff(__fmul_rn(x, 0.70710678118654752f)));
        out[i] = __fmul_rn(__fmul_rn(0.5f, x), cdf);
    }
}

/* out, inp: [n]; exact GELU 0.5 x (1 + erf(x / sqrt 2)) */
void cb_cuda_gelu_forward(ops_device *d, float *out, const float *inp, size_t n) {
    cuda_state *s = cb_cuda_enter(d);
    if (!n) return;
    gelu_fwd_kernel<<<grid_for(n, 256), 256, 0, s->stream>>>(out, inp, n);
    CU_LAUNCHED();
}

static __global__ void gelu_bwd_kernel(float *dinp, const float *inp, const float *dout, size_t n) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    GRID_STRIDE(i, n) {
        float x = inp[i];
        float cdf = __fmul_rn(0.5f, __fadd_rn(1.0f, erff(__fmul_rn(x, 0.70710678118654752f))));
        float pdf = __fmul_rn(inv_sqrt_2pi, expf(__fmul_rn(__fmul_rn(-0.5f, x), x)));
        dinp[i] = __fmul_rn(dout[i], __fadd_rn(cdf, __fmul_rn(x, pdf)));
    }
}

/* forward: out = 0.5 x (1 + erf(x / sqrt 2)); dinp may alias dout */
void cb_cuda_gelu_backward(ops_device *d, float *dinp, const float *inp, const float *dout, size_t n) {
    cuda_state *s = cb_cuda_enter(d);
    if (!n) return;
    gelu_bwd_kernel<<<grid_for(n, 256), 256, 0, s->stream>>>(dinp, inp, dout, n);
    CU_LAUNCHED();
}

/* out [T, I] = gelu(inp[:, :I]) * inp[:, I:]; n = T * I */
static __global__ void geglu_fwd_kernel(float *out, const float *inp, int I, size_t n) {
    GRID_STRIDE(e, n) {
        size_t t = e / (size_t)I, i = e % (size_t)I;
        const float *row = inp + t * 2 * (size_t)I;
        float x = row[i], g = row[I + i];
        float cdf = __fadd_rn(1.0f, erff(__fmul_rn(x, 0.70710678118654752f)));
        out[e] = __fmul_rn(__fmul_rn(__fmul_rn(0.5f, x), cdf), g);
    }
}

void cb_cuda_geglu_forward(ops_device *d, float *out, const float *inp, int T, int I) {
    cuda_state *s = cb_cuda_enter(d);
    size_t n = (size_t)T * I;
    if (!n) return;
    geglu_fwd_kernel<<<grid_for(n, 256), 256, 0, s->stream>>>(out, inp, I, n);
    CU_LAUNCHED();
}

/* forward: out = gelu(x) g. dx = dout g GELU'(x); dg = dout gelu(x) */
static __global__ void geglu_bwd_kernel(float *dinp, const float *dout, const float *inp, int I, size_t n) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
    GRID_STRIDE(e, n) {
        size_t t = e / (size_t)I, i = e % (size_t)I;
        const float *row = inp + t * 2 * (size_t)I;
        float *drow = dinp + t * 2 * (size_t)I;
        float x = row[i], g = row[I + i], dy = dout[e];
        float cdf = __fmul_rn(0.5f, __fadd_rn(1.0f, erff(__fmul_rn(x, 0.70710678118654752f))));
        float pdf = __fmul_rn(inv_sqrt_2pi, expf(__fmul_rn(__fmul_rn(-0.5f, x), x)));
        drow[i] = __fmul_rn(__fmul_rn(dy, g), __fadd_rn(cdf, __fmul_rn(x, pdf)));
        drow[I + i] = __fmul_rn(dy, __fmul_rn(x, cdf));
    }
}

void cb_cuda_geglu_backward(ops_device *d, float *dinp, const float *dout, const float *inp, int T, int I) {
    cuda_state *s = cb_cuda_enter(d);
    size_t n = (size_t)T * I;
    if (!n) return;
    geglu_bwd_kernel<<<grid_for(n, 256), 256, 0, s->stream>>>(dinp, dout, inp, I, n);
    CU_LAUNCHED();
}

static __global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    GRID_STRIDE(i, n) out[i] = __fadd_rn(a[i], b[i]);
}

void cb_cuda_add(ops_device *d, float *out, const float *a, const float *b, size_t n) {
    cuda_state *s = cb_cuda_enter(d);
    if (!n) return;
    add_kernel<<<grid_for(n, 256), 256, 0, s->stream>>>(out, a, b, n);
    CU_LAUNCHED();
}

/* One block per sequence: element e of sequence q (token off[q] + e / H)
 * keeps by the hash of (seed, stream, id[q], e), as ops.h says. */
static __global__ void dropout_fwd_kernel(float *x, uint8_t *mask, const int *off, const uint64_t *id, int H,
                                          float scale, uint64_t seed, uint64_t stream, uint32_t thr) {
    int q = blockIdx.x;
    uint64_t key = cb_ops_dropout_key(seed, stream, id[q]);
    size_t a = (size_t)off[q] * H, n = (size_t)(off[q + 1] - off[q]) * H;
    for (size_t e = threadIdx.x; e < n; e += blockDim.x) {
        int k = cb_ops_keep_bit(key, (uint64_t)e, thr);
        mask[a + e] = (uint8_t)k;
        x[a + e] = k ? __fmul_rn(x[a + e], scale) : 0.0f;
    }
}

/* mask [T, H] = keep bits; x [T, H] = x * mask / (1 - p) */
void cb_cuda_dropout_forward(ops_device *d, float *x, uint8_t *mask, const ops_seqs *sq, int H, float p,
                             uint64_t seed, uint64_t stream) {
    cuda_state *s = cb_cuda_enter(d);
    if (!sq->n_seq || !sq->n_tok) return;
    CB_ASSERT(sq->id);
    float scale = 1.0f / (1.0f - p);
    dropout_fwd_kernel<<<sq->n_seq, 256, 0, s->stream>>>(x, mask, sq->off, sq->id, H, scale, seed, stream,
                                                         cb_ops_dropout_thr(p));
    CU_LAUNCHED();
}

static __global__ void dropout_bwd_kernel(float *dx, const uint8_t *mask, size_t n, float scale) {
    GRID_STRIDE(i, n) dx[i] = mask[i] ? __fmul_rn(dx[i], scale) : 0.0f;
}

void cb_cuda_dropout_backward(ops_device *d, float *dx, const uint8_t *mask, size_t n, float p) {
    cuda_state *s = cb_cuda_enter(d);
    if (!n) return;
    float scale = 1.0f / (1.0f - p);
    dropout_bwd_kernel<<<grid_for(n, 256), 256, 0, s->stream>>>(dx, mask, n, scale);
    CU_LAUNCHED();
}
