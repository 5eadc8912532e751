/* cuda/layernorm.cu: LayerNorm forward and backward. One warp per row;
 * the forward's statistics sum in double as the CPU's do; dw and db are
 * deterministic column sums (common.cuh). */
#include "common.cuh"
#include "kernels.cuh"

#define LN_WARPS 4

/* out, inp: [T, C]; mean, rstd: [T]; w, b: [C] (b NULL: no bias) */
static __global__ void ln_fwd_kernel(float *out, float *mean, float *rstd, const float *inp, const float *w,
                              const float *b, int T, int C, float eps) {
    int t = blockIdx.x * LN_WARPS + threadIdx.y, lane = threadIdx.x;
    if (t >= T) return;
    const float *x = inp + (size_t)t * C;
    float *o = out + (size_t)t * C;
    double sd = 0;
    for (int i = lane; i < C; i += 32) sd += x[i];
    sd = warp_sum(sd);
    float m = (float)(sd / C);
    double v = 0;
    for (int i = lane; i < C; i += 32) {
        float dd = __fsub_rn(x[i], m);
        v += (double)dd * dd;
    }
    v = warp_sum(v);
    float r = 1.0f / sqrtf((float)(v / C) + eps);
    for (int i = lane; i < C; i += 32)
        o[i] = b ? __fadd_rn(__fmul_rn(__fmul_rn(__fsub_rn(x[i], m), r), w[i]), b[i])
                 : __fmul_rn(__fmul_rn(__fsub_rn(x[i], m), r), w[i]);
    if (lane == 0) {
        mean[t] = m;
        rstd[t] = r;
    }
}

void cb_cuda_layernorm_forward(ops_device *d, float *out, float *mean, float *rstd, const float *inp, const float *w,
                            const float *b, int T, int C, float eps) {
    cuda_state *s = cb_cuda_enter(d);
    if (T <= 0) return;
    dim3 blk(32, LN_WARPS);
    ln_fwd_kernel<<<(T + LN_WARPS - 1) / LN_WARPS, blk, 0, s->stream>>>(out, mean, rstd, inp, w, b, T, C, eps);
    CU_LAUNCHED();
}

/* dinp = rstd (dy w - mean(dy w) - norm mean(dy w norm)), per row */
static __global__ void ln_bwd_kernel(float *dinp, const float *dout, const float *inp, const float *w, const float *mean,
                              const float *rstd, int T, int C) {
    int t = blockIdx.x * LN_WARPS + threadIdx.y, lane = threadIdx.x;
    if (t >= T) return;
    const float *x = inp + (size_t)t * C, *dy = dout + (size_t)t * C;
    float *dx = dinp + (size_t)t * C;
    float m = mean[t], r = rstd[t];
    float s1 = 0, s2 = 0;
    for (int i = lane; i < C; i += 32) {
        float dn = dy[i] * w[i];
        s1 += dn;
        s2 += dn * ((x[i] - m) * r);
    }
    s1 = warp_sum(s1) / (float)C;
    s2 = warp_sum(s2) / (float)C;
    for (int i = lane; i < C; i += 32) {
        float norm = (x[i] - m) * r;
        dx[i] = r * (dy[i] * w[i] - s1 - norm * s2);
    }
}

struct ln_wb_terms {
    const float *dout, *inp, *mean, *rstd;
    int C;
    __device__ void operator()(int t, int c, float *v) const {
        float dy = dout[(size_t)t * C + c];
        v[0] = dy * ((inp[(size_t)t * C + c] - mean[t]) * rstd[t]);
        v[1] = dy;
    }
};

/* dw's terms alone (a LayerNorm without bias) */
struct ln_w_terms {
    const float *dout, *inp, *mean, *rstd;
    int C;
    __device__ void operator()(int t, int c, float *v) const {
        v[0] = dout[(size_t)t * C + c] * ((inp[(size_t)t * C + c] - mean[t]) * rstd[t]);
    }
};

/* forward: out = (inp - mean) * rstd * w + b, per row of C.
 * dinp: [T, C] (overwritten); dw, db: [C] (+=; db NULL: no bias) */
void cb_cuda_layernorm_backward(ops_device *d, float *dinp, float *dw, float *db, const float *dout,
                             const float *inp, const float *w, const float *mean, const float *rstd, int T, int C) {
    cuda_state *s = cb_cuda_enter(d);
    if (T <= 0) return;
    float *partial = (float *)cb_cuda_scratch(s, colsum_scratch(T, C, db ? 2 : 1));
    dim3 blk(32, LN_WARPS);
    ln_bwd_kernel<<<(T + LN_WARPS - 1) / LN_WARPS, blk, 0, s->stream>>>(dinp, dout, inp, w, mean, rstd, T, C);
    CU_LAUNCHED();
    if (db) {
        colsum_out<2> o = {{dw, db}};
        colsum<2>(s, o, ln_wb_terms{dout, inp, mean, rstd, C}, T, C, partial);
    } else {
        colsum_out<1> o = {{dw}};
        colsum<1>(s, o, ln_w_terms{dout, inp, mean, rstd, C}, T, C, partial);
    }
}
