/* cuda/embed.cu: BERT's embeddings (word + position + token type) and the
 * scatter-add of their gradient.
 *
 * The backward has no atomics. For each table the token indices are sorted
 * by the row they read (cub's radix sort is stable, so tokens of one row
 * stay in token order); the first token of each run of equal rows then
 * owns that row and adds the run's gradients into it in token order. That
 * is the CPU's order of additions (cpu/embed.c walks the tokens in order),
 * so dword and dpos come out bit for bit equal to the CPU's. Without token
 * types every token reads type row 0: that one long run is a deterministic
 * column sum instead (common.cuh), equal to the CPU's up to rounding. */
#include "common.cuh"
#include "kernels.cuh"

#include <cub/cub.cuh>

static __global__ void embed_fwd_kernel(float *out, const int32_t *ids, const int32_t *pos, const int32_t *types,
                                 const float *word, const float *pos_emb, const float *type_emb, int T, int H) {
    size_t n = (size_t)T * H;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i / (size_t)H, c = i % (size_t)H;
        int tt = types ? types[t] : 0;
        float e = word[(size_t)ids[t] * H + c];
        if (pos_emb) e = __fadd_rn(e, pos_emb[(size_t)pos[t] * H + c]);
        if (type_emb) e = __fadd_rn(e, type_emb[(size_t)tt * H + c]);
        out[i] = e;
    }
}

/* out: [T, H]; ids, pos, types: [T] (types NULL: all 0); pos_emb / type_emb
 * NULL: no such term (ModernBERT) */
void cb_cuda_embed_forward(ops_device *d, float *out, const int32_t *ids, const int32_t *pos, const int32_t *types,
                        const float *word, const float *pos_emb, const float *type_emb, int T, int H) {
    cuda_state *s = cb_cuda_enter(d);
    if (T <= 0) return;
    embed_fwd_kernel<<<grid_for((size_t)T * H, 256), 256, 0, s->stream>>>(out, ids, pos, types, word, pos_emb,
                                                                           type_emb, T, H);
    CU_LAUNCHED();
}

static __global__ void iota_kernel(int32_t *v, int T) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < T; i += gridDim.x * blockDim.x) v[i] = i;
}

/* One block per sorted position i; the first position of a run owns the
 * row key[i] and adds dout of the run's tokens (tok[i], tok[i+1], ...) into
 * it, in that order. */
static __global__ void segment_add_kernel(float *table, const int32_t *key, const int32_t *tok, const float *dout, int T,
                                   int H) {
    int i = blockIdx.x;
    int row = key[i];
    if (i > 0 && key[i - 1] == row) return;
    /* the run's end: first position after i with another key (sorted) */
    int lo = i + 1, hi = T;
    while (lo < hi) {
        int mid = (lo + hi) >> 1;
        if (key[mid] == row) lo = mid + 1;
        else hi = mid;
    }
    int end = lo;
    float *g = table + (size_t)row * H;
    for (int c = threadIdx.x; c < H; c += blockDim.x) {
        float acc = g[c];
        int j = i;
        for (; j + 4 <= end; j += 4) {
            float v0 = dout[(size_t)tok[j] * H + c], v1 = dout[(size_t)tok[j + 1] * H + c];
            float v2 = dout[(size_t)tok[j + 2] * H + c], v3 = dout[(size_t)tok[j + 3] * H + c];
            acc = __fadd_rn(acc, v0);
            acc = __fadd_rn(acc, v1);
            acc = __fadd_rn(acc, v2);
            acc = __fadd_rn(acc, v3);
        }
        for (; j < end; j++) acc = __fadd_rn(acc, dout[(size_t)tok[j] * H + c]);
        g[c] = acc;
    }
}

struct col_of_dout {
    const float *x;
    int H;
    __device__ void operator()(int r, int c, float *v) const { v[0] = x[(size_t)r * H + c]; }
};

/* Sorted segmented sums of one table: keys_in [T] (dev), through the
 * scratch pieces. */
static void scatter_table(cuda_state *s, float *table, const int32_t *keys_in, const float *dout, int T, int H,
                          const int32_t *iota, int32_t *keys_out, int32_t *tok, void *cub_tmp, size_t cub_bytes) {
    size_t tmp = cub_bytes;
    CU_CHECK(cub::DeviceRadixSort::SortPairs(cub_tmp, tmp, keys_in, keys_out, iota, tok, T, 0, 32, s->stream));
    int threads = H < 256 ? ((H + 31) / 32) * 32 : 256;
    segment_add_kernel<<<T, threads, 0, s->stream>>>(table, keys_out, tok, dout, T, H);
    CU_LAUNCHED();
}

void cb_cuda_embed_backward(ops_device *d, float *dword, float *dpos, float *dtype, const float *dout,
                         const int32_t *ids, const int32_t *pos, const int32_t *types, int T, int H) {
    cuda_state *s = cb_cuda_enter(d);
    if (T <= 0) return;
    size_t cub_bytes = 0;
    CU_CHECK(cub::DeviceRadixSort::SortPairs(NULL, cub_bytes, (const int32_t *)NULL, (int32_t *)NULL,
                                             (const int32_t *)NULL, (int32_t *)NULL, T, 0, 32, s->stream));
    size_t vec = scratch_round((size_t)T * sizeof(int32_t));
    int type_sum = dtype && !types;   /* every token on type row 0: a column sum */
    size_t need = 3 * vec + scratch_round(cub_bytes) + (type_sum ? colsum_scratch(T, H, 1) : 0);
    char *cur = (char *)cb_cuda_scratch(s, need);
    int32_t *iota = (int32_t *)scratch_take(&cur, vec), *keys = (int32_t *)scratch_take(&cur, vec);
    int32_t *tok = (int32_t *)scratch_take(&cur, vec);
    void *tmp = scratch_take(&cur, cub_bytes);
    float *partial = type_sum ? (float *)scratch_take(&cur, colsum_scratch(T, H, 1)) : NULL;
    iota_kernel<<<grid_for((size_t)T, 256), 256, 0, s->stream>>>(iota, T);
    CU_LAUNCHED();
    scatter_table(s, dword, ids, dout, T, H, iota, keys, tok, tmp, cub_bytes);
    if (dpos) scatter_table(s, dpos, pos, dout, T, H, iota, keys, tok, tmp, cub_bytes);
    if (!dtype) {
        /* no token-type table (ModernBERT) */
    } else if (types) {
        scatter_table(s, dtype, types, dout, T, H, iota, keys, tok, tmp, cub_bytes);
    } else {
        colsum_out<1> o = {{dtype}};
        colsum<1>(s, o, col_of_dout{dout, H}, T, H, partial);
    }
}
