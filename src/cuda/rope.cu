/* cuda/rope.cu: rotary position embeddings (NeoX style) on the query and
 * key parts of the fused qkv rows, and their backward (the inverse
 * rotation), as cpu/rope.c: one thread per (token, frequency), looping
 * over the heads of both parts. The angle is float32 pos * (1 / theta^(2i /
 * D)), as the CPU's and transformers'; cosf / sinf may differ from the
 * CPU's in the last bit. */
#include "common.cuh"
#include "kernels.cuh"

/* The sequence of token t: the last q with off[q] <= t (binary search). */
static __device__ __forceinline__ int seq_of(const int *off, int S, int t) {
    int lo = 0, hi = S - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (off[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* x: [T, 3H]; sign +1 forward, -1 backward */
static __global__ void rope_kernel(float *x, const int *off, int S, int T, int H, int NH, float theta, float sign) {
    int D = H / NH, half = D / 2;
    size_t n = (size_t)T * half;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n; e += (size_t)gridDim.x * blockDim.x) {
        int t = (int)(e / (size_t)half), i = (int)(e % (size_t)half);
        int pos = t - off[seq_of(off, S, t)];
        float inv = __fdiv_rn(1.0f, powf(theta, __fdiv_rn((float)(2 * i), (float)D)));
        float a = __fmul_rn((float)pos, inv);
        float c = cosf(a), sn = sign * sinf(a);
        float *row = x + (size_t)t * 3 * H;
        for (int part = 0; part < 2; part++)
            for (int h = 0; h < NH; h++) {
                float *v = row + (size_t)part * H + (size_t)h * D;
                float x1 = v[i], x2 = v[i + half];
                v[i] = __fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, sn));
                v[i + half] = __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, sn));
            }
    }
}

static void rope(ops_device *d, float *x, const ops_seqs *s, int H, int NH, float theta, float sign) {
    cuda_state *st = cb_cuda_enter(d);
    if (s->n_seq <= 0 || s->n_tok <= 0) return;
    CB_ASSERT((H / NH) % 2 == 0);
    size_t n = (size_t)s->n_tok * (size_t)(H / NH / 2);
    rope_kernel<<<grid_for(n, 256), 256, 0, st->stream>>>(x, s->off, s->n_seq, s->n_tok, H, NH, theta, sign);
    CU_LAUNCHED();
}

/* qkv: [T, 3H], in place */
void cb_cuda_rope_forward(ops_device *d, float *qkv, const ops_seqs *s, int H, int NH, float theta) {
    rope(d, qkv, s, H, NH, theta, 1.0f);
}

/* d_qkv: [T, 3H], in place: the rotation by -angle */
void cb_cuda_rope_backward(ops_device *d, float *d_qkv, const ops_seqs *s, int H, int NH, float theta) {
    rope(d, d_qkv, s, H, NH, theta, -1.0f);
}
