/* cuda/attention.cu: multi-head self-attention over packed sequences.
 *
 * Nothing n x n ever reaches global memory, and no thread works on padding
 * (there is none: sequences are packed back to back, and blocks past a
 * sequence's end return at once). fp32 throughout, in both precisions.
 *
 * Forward (one thread per query row, BQ rows per block, grid (sequence x
 * head, query tiles)): key and value tiles of BK rows go through shared
 * memory; each thread keeps its query row, an online softmax (running max
 * m, sum l) and its output row in registers:
 *   ctx_i = sum_j z_ij e^(s_ij - m) v_j / l,  s_ij = scale <q_i, k_j>,
 * z_ij the dropout factor (0, or 1/(1-p)) of element (i, j), from ops.h's
 * hash: element h n^2 + i n + j of the sequence's id, as on the CPU.
 *
 * Backward, two kernels, both recomputing the probabilities:
 *   1. per query row (as the forward): one pass for m, l and o_i, so
 *      lse_i = m + log l and D_i = <do_i, o_i> (= sum_j P_ij dP_ij, dropout
 *      included); a second pass for dq_i = scale sum_j dS_ij k_j with
 *      dS_ij = P_ij (z_ij <do_i, v_j> - D_i). It leaves lse_i and D_i in
 *      the first two floats of row i's dk slot of d_qkv, which is
 *      overwritten only later, by the block that reads them.
 *   2. one block per (sequence, head): first it copies the sequence's
 *      lse and D into shared memory; then, one thread per key row and
 *      tile by tile, dv_j = sum_i P_ij z_ij do_i and
 *      dk_j = scale sum_i dS_ij q_i over every query tile.
 * Every sum has a fixed order (no atomics): the same bits on every run.
 * A sliding window (window > 0, ModernBERT's local layers) hides the keys
 * with |i - j| > window; a windowed row that sees no key at all is
 * uniform over all n keys (its scores count as 0), as on the CPU: its
 * backward pass leaves a flag in the third float of the statistics.
 * Head sizes 16, 32 and 64 (MiniLM, BERT-base and -large, bge, e5) are
 * built; others abort with a message.
 */
#include "common.cuh"
#include "kernels.cuh"

#define BQ 64   /* query rows per block (forward, backward 1) */
#define BK 64   /* key rows per shared-memory tile */

size_t cb_cuda_attention_workspace(ops_device *d, int max_len, int head_dim, int train) { return 256; }

struct attn_args {
    const float *qkv;
    const uint8_t *mask;
    const int *off;
    const uint64_t *id;         /* the sequences' dropout ids (NULL without dropout) */
    int H, NH;
    int window;                 /* 0: every key; w > 0: |i - j| <= w */
    float scale, dscale;
    uint64_t seed, stream;
    uint32_t thr;
    int drop;
};

/* rows [r0, r0 + nr) of one head's D columns, row stride ld, into S[nr][D] */
template <int D>
__device__ __forceinline__ void load_tile(float *S, const float *src, size_t ld, int nr, int tid, int nthreads) {
    for (int e = tid; e < nr * (D / 4); e += nthreads) {
        int r = e / (D / 4), c = e % (D / 4);
        float4 v = *(const float4 *)(src + (size_t)r * ld + 4 * c);
        *(float4 *)(S + r * D + 4 * c) = v;
    }
}

/* Whether query row i sees key j (mask bit mj): the window, if any. */
__device__ __forceinline__ bool sees(const attn_args &a, int i, int j, uint8_t mj) {
    return mj && (a.window <= 0 || abs(i - j) <= a.window);
}

/* The forward of one query row i (every thread of the block calls it: the
 * key/value tiles are loaded together): the online softmax over the
 * sequence's keys, acc = sum_j p_ij z_ij v_j with p unnormalised, *m the
 * running maximum and *l the running sum of p. uniform: every key, with
 * score 0 (a windowed row that sees none). The forward kernel and the
 * first pass of the backward both come here, so both see the same numbers. */
template <int D>
__device__ __forceinline__ void online_row(float *acc, float *mp, float *lp, const float *q, const attn_args &a,
                                           float *Ks, float *Vs, uint8_t *Ms, int o, int n, int h, bool active,
                                           uint64_t key, size_t base, int i, bool uniform) {
    int H = a.H;
    size_t ld = 3 * (size_t)H;
    float m = *mp, l = *lp;
    for (int j0 = 0; j0 < n; j0 += BK) {
        int nk = min(BK, n - j0);
        __syncthreads();
        load_tile<D>(Ks, a.qkv + (size_t)(o + j0) * ld + H + (size_t)h * D, ld, nk, threadIdx.x, BQ);
        load_tile<D>(Vs, a.qkv + (size_t)(o + j0) * ld + 2 * H + (size_t)h * D, ld, nk, threadIdx.x, BQ);
        for (int r = threadIdx.x; r < nk; r += BQ) Ms[r] = a.mask ? a.mask[o + j0 + r] : 1;
        __syncthreads();
        if (!active) continue;
        for (int r = 0; r < nk; r++) {
            if (!uniform && !sees(a, i, j0 + r, Ms[r])) continue;
            const float *kr = Ks + r * D, *vr = Vs + r * D;
            float sd = 0.0f;
#pragma unroll
            for (int d = 0; d < D; d++) sd = fmaf(q[d], kr[d], sd);
            float sc = uniform ? 0.0f : sd * a.scale;
            if (sc > m) {
                float corr = expf(m - sc);
                l *= corr;
#pragma unroll
                for (int d = 0; d < D; d++) acc[d] *= corr;
                m = sc;
            }
            float p = expf(sc - m);
            l += p;
            if (a.drop) p = cb_ops_keep_bit(key, base + (size_t)(j0 + r), a.thr) ? p * a.dscale : 0.0f;
#pragma unroll
            for (int d = 0; d < D; d++) acc[d] = fmaf(p, vr[d], acc[d]);
        }
    }
    *mp = m;
    *lp = l;
}

template <int D>
static __global__ void __launch_bounds__(BQ) attn_fwd_kernel(float *ctx, attn_args a) {
    __shared__ __align__(16) float Ks[BK * D];
    __shared__ __align__(16) float Vs[BK * D];
    __shared__ uint8_t Ms[BK];
    int sq = blockIdx.x / a.NH, h = blockIdx.x % a.NH;
    int o = a.off[sq], n = a.off[sq + 1] - o;
    int i = blockIdx.y * BQ + threadIdx.x;
    if ((int)(blockIdx.y * BQ) >= n) return;
    int H = a.H;
    size_t ld = 3 * (size_t)H;
    bool active = i < n;
    float q[D], acc[D];
#pragma unroll
    for (int d = 0; d < D; d++) {
        q[d] = active ? a.qkv[(size_t)(o + i) * ld + (size_t)h * D + d] : 0.0f;
        acc[d] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    size_t base = (size_t)h * n * n + (size_t)i * n;
    uint64_t key = a.drop ? cb_ops_dropout_key(a.seed, a.stream, a.id[sq]) : 0;
    online_row<D>(acc, &m, &l, q, a, Ks, Vs, Ms, o, n, h, active, key, base, i, false);
    bool uni = a.window > 0 && active && l == 0.0f;
    if (__syncthreads_or(uni)) {   /* again, over every key, for the rows that saw none */
        if (uni) m = -INFINITY, l = 0.0f;
        online_row<D>(acc, &m, &l, q, a, Ks, Vs, Ms, o, n, h, active && uni, key, base, i, true);
    }
    if (!active) return;
    /* every key masked: no term, l = 0; the CPU's softmax gives every
     * probability 0, so the output is 0 (not 0 / 0) */
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float *out = ctx + (size_t)(o + i) * H + (size_t)h * D;
#pragma unroll
    for (int d = 0; d < D; d++) out[d] = acc[d] * inv;
}

/* backward 1: dq and the row statistics (see the top of the file) */
template <int D>
static __global__ void __launch_bounds__(BQ) attn_bwd_q_kernel(float *d_qkv, const float *d_ctx, attn_args a) {
    __shared__ __align__(16) float Ks[BK * D];
    __shared__ __align__(16) float Vs[BK * D];
    __shared__ uint8_t Ms[BK];
    int sq = blockIdx.x / a.NH, h = blockIdx.x % a.NH;
    int o = a.off[sq], n = a.off[sq + 1] - o;
    int i = blockIdx.y * BQ + threadIdx.x;
    if ((int)(blockIdx.y * BQ) >= n) return;
    int H = a.H;
    size_t ld = 3 * (size_t)H;
    bool active = i < n;
    float q[D], acc[D];
#pragma unroll
    for (int d = 0; d < D; d++) {
        q[d] = active ? a.qkv[(size_t)(o + i) * ld + (size_t)h * D + d] : 0.0f;
        acc[d] = 0.0f;
    }
    size_t base = (size_t)h * n * n + (size_t)i * n;
    uint64_t key = a.drop ? cb_ops_dropout_key(a.seed, a.stream, a.id[sq]) : 0;
    /* pass 1: m, l, o_i (the forward, again) */
    float m = -INFINITY, l = 0.0f;
    online_row<D>(acc, &m, &l, q, a, Ks, Vs, Ms, o, n, h, active, key, base, i, false);
    bool uni = a.window > 0 && active && l == 0.0f;
    if (__syncthreads_or(uni)) {
        if (uni) m = -INFINITY, l = 0.0f;
        online_row<D>(acc, &m, &l, q, a, Ks, Vs, Ms, o, n, h, active && uni, key, base, i, true);
    }
    float dO[D];
    float lse = m + logf(l), Di = 0.0f;
    if (active) {
        float inv = l > 0.0f ? 1.0f / l : 0.0f;   /* every key masked: P = 0, as the forward */
        const float *dc = d_ctx + (size_t)(o + i) * H + (size_t)h * D;
#pragma unroll
        for (int d = 0; d < D; d++) {
            dO[d] = dc[d];
            Di = fmaf(dO[d], acc[d] * inv, Di);
        }
    } else {
#pragma unroll
        for (int d = 0; d < D; d++) dO[d] = 0.0f;
    }
    /* pass 2: dq (acc holds it now) */
#pragma unroll
    for (int d = 0; d < D; d++) acc[d] = 0.0f;
    for (int j0 = 0; j0 < n; j0 += BK) {
        int nk = min(BK, n - j0);
        __syncthreads();
        load_tile<D>(Ks, a.qkv + (size_t)(o + j0) * ld + H + (size_t)h * D, ld, nk, threadIdx.x, BQ);
        load_tile<D>(Vs, a.qkv + (size_t)(o + j0) * ld + 2 * H + (size_t)h * D, ld, nk, threadIdx.x, BQ);
        for (int r = threadIdx.x; r < nk; r += BQ) Ms[r] = a.mask ? a.mask[o + j0 + r] : 1;
        __syncthreads();
        if (!active) continue;
        for (int r = 0; r < nk; r++) {
            if (!uni && !sees(a, i, j0 + r, Ms[r])) continue;
            const float *kr = Ks + r * D, *vr = Vs + r * D;
            float sd = 0.0f, dp = 0.0f;
#pragma unroll
            for (int d = 0; d < D; d++) {
                sd = fmaf(q[d], kr[d], sd);
                dp = fmaf(dO[d], vr[d], dp);
            }
            float p = expf((uni ? 0.0f : sd * a.scale) - lse);
            if (a.drop) dp = cb_ops_keep_bit(key, base + (size_t)(j0 + r), a.thr) ? dp * a.dscale : 0.0f;
            float ds = p * (dp - Di);
#pragma unroll
            for (int d = 0; d < D; d++) acc[d] = fmaf(ds, kr[d], acc[d]);
        }
    }
    if (!active) return;
    float *dq = d_qkv + (size_t)(o + i) * ld + (size_t)h * D;
#pragma unroll
    for (int d = 0; d < D; d++) dq[d] = acc[d] * a.scale;
    float *stats = d_qkv + (size_t)(o + i) * ld + H + (size_t)h * D;
    stats[0] = lse;
    stats[1] = Di;
    stats[2] = uni ? 1.0f : 0.0f;
}

/* backward 2: dk and dv, one block per (sequence, head), one thread per
 * key row of the current key tile. Dynamic shared memory:
 *   Qs, dOs [BQ][D] (the query tile), Kown, Vown [BK][D + 1] (the threads'
 *   own key and value rows), lse, Dst, Ust [n] (Ust: the uniform rows) */
template <int D>
static __global__ void __launch_bounds__(BK) attn_bwd_kv_kernel(float *d_qkv, const float *d_ctx, attn_args a) {
    extern __shared__ __align__(16) float sm[];
    float *Qs = sm, *dOs = Qs + BQ * D, *Kown = dOs + BQ * D, *Vown = Kown + BK * (D + 1);
    float *lse = Vown + BK * (D + 1);
    int sq = blockIdx.x / a.NH, h = blockIdx.x % a.NH;
    int o = a.off[sq], n = a.off[sq + 1] - o;
    float *Dst = lse + n, *Ust = Dst + n;
    int H = a.H;
    size_t ld = 3 * (size_t)H;
    /* the statistics backward 1 left in the dk slots, before any dk write */
    for (int r = threadIdx.x; r < n; r += BK) {
        const float *st = d_qkv + (size_t)(o + r) * ld + H + (size_t)h * D;
        lse[r] = st[0];
        Dst[r] = st[1];
        Ust[r] = st[2];
    }
    size_t base = (size_t)h * n * n;
    uint64_t key = a.drop ? cb_ops_dropout_key(a.seed, a.stream, a.id[sq]) : 0;
    for (int j0 = 0; j0 < n; j0 += BK) {
        int nk = min(BK, n - j0);
        int j = j0 + threadIdx.x;
        bool active = threadIdx.x < nk;
        uint8_t mj = active && (!a.mask || a.mask[o + j]) ? 1 : 0;
        __syncthreads();
        if (threadIdx.x < nk) {
            const float *kr = a.qkv + (size_t)(o + j) * ld + H + (size_t)h * D;
            float *ko = Kown + threadIdx.x * (D + 1), *vo = Vown + threadIdx.x * (D + 1);
            for (int d = 0; d < D; d++) {
                ko[d] = kr[d];
                vo[d] = kr[H + d];
            }
        }
        float dk[D], dv[D];
#pragma unroll
        for (int d = 0; d < D; d++) dk[d] = dv[d] = 0.0f;
        const float *ko = Kown + threadIdx.x * (D + 1), *vo = Vown + threadIdx.x * (D + 1);
        for (int i0 = 0; i0 < n; i0 += BQ) {
            int nq = min(BQ, n - i0);
            __syncthreads();
            load_tile<D>(Qs, a.qkv + (size_t)(o + i0) * ld + (size_t)h * D, ld, nq, threadIdx.x, BK);
            load_tile<D>(dOs, d_ctx + (size_t)(o + i0) * H + (size_t)h * D, (size_t)H, nq, threadIdx.x, BK);
            __syncthreads();
            if (!active) continue;
            for (int r = 0; r < nq; r++) {
                const float *qr = Qs + r * D, *dor = dOs + r * D;
                float sd = 0.0f, dp = 0.0f;
#pragma unroll
                for (int d = 0; d < D; d++) {
                    sd = fmaf(qr[d], ko[d], sd);
                    dp = fmaf(dor[d], vo[d], dp);
                }
                int i = i0 + r;
                bool uni = Ust[i] != 0.0f;
                if (!uni && !sees(a, i, j, mj)) continue;
                float p = expf((uni ? 0.0f : sd * a.scale) - lse[i]);
                float pz = p;
                if (a.drop) {
                    float z = cb_ops_keep_bit(key, base + (size_t)i * n + j, a.thr) ? a.dscale : 0.0f;
                    pz = p * z;
                    dp = dp * z;
                }
                float ds = p * (dp - Dst[i]);
#pragma unroll
                for (int d = 0; d < D; d++) {
                    dv[d] = fmaf(pz, dor[d], dv[d]);
                    dk[d] = fmaf(ds, qr[d], dk[d]);
                }
            }
        }
        if (threadIdx.x < nk) {
            float *dkr = d_qkv + (size_t)(o + j) * ld + H + (size_t)h * D, *dvr = dkr + H;
#pragma unroll
            for (int d = 0; d < D; d++) {
                dkr[d] = dk[d] * a.scale;
                dvr[d] = dv[d];
            }
        }
    }
}

static attn_args make_args(const float *qkv, const uint8_t *mask, const ops_seqs *s, int H, int NH, int window,
                           float p, uint64_t seed, uint64_t stream) {
    int D = H / NH;
    attn_args a;
    a.qkv = qkv;
    a.mask = mask;
    a.off = s->off;
    a.id = s->id;
    a.H = H;
    a.NH = NH;
    a.window = window;
    a.scale = 1.0f / sqrtf((float)D);
    a.dscale = p > 0 ? 1.0f / (1.0f - p) : 1.0f;
    a.seed = seed;
    a.stream = stream;
    a.thr = cb_ops_dropout_thr(p);
    a.drop = p > 0;
    CB_ASSERT(!a.drop || s->id);
    return a;
}

static void check_shape(const float *qkv, int H, int NH) {
    int D = H / NH;
    if (D * NH != H || (D != 16 && D != 32 && D != 64)) {
        cb_cuda_die("attention: head size %d (hidden %d / %d heads) is not implemented (16, 32 and 64 are)",
                    H / NH, H, NH);
    }
    CB_ASSERT(((uintptr_t)qkv & 15) == 0);
}

#define DISPATCH(D, call)                                                      \
    switch (D) {                                                               \
    case 16: call(16); break;                                                  \
    case 32: call(32); break;                                                  \
    default: call(64); break;                                                  \
    }

void cb_cuda_attention_forward(ops_device *d, float *ctx, const float *qkv, const uint8_t *mask, const ops_seqs *s,
                            int H, int NH, int window, float p, uint64_t seed, uint64_t stream,
                            const ops_work *work) {
    cuda_state *st = cb_cuda_enter(d);
    if (s->n_seq <= 0 || s->n_tok <= 0) return;
    check_shape(qkv, H, NH);
    attn_args a = make_args(qkv, mask, s, H, NH, window, p, seed, stream);
    dim3 grid((unsigned)((size_t)s->n_seq * NH), (unsigned)((s->max_len + BQ - 1) / BQ));
#define FWD(DD) attn_fwd_kernel<DD><<<grid, BQ, 0, st->stream>>>(ctx, a)
    DISPATCH(H / NH, FWD);
#undef FWD
    CU_LAUNCHED();
}

template <int D>
static void launch_bwd_kv(cuda_state *st, float *d_qkv, const float *d_ctx, const attn_args &a, const ops_seqs *s) {
    size_t smem = ((size_t)2 * BQ * D + (size_t)2 * BK * (D + 1) + 3 * (size_t)s->max_len) * sizeof(float);
    if (smem > (size_t)st->prop.sharedMemPerBlockOptin) {
        cb_cuda_die("attention: sequences of %d tokens need %zu bytes of shared memory in the backward; this GPU "
                    "has %zu", s->max_len, smem, (size_t)st->prop.sharedMemPerBlockOptin);
    }
    if (smem > 48 * 1024)
        CU_CHECK(cudaFuncSetAttribute(attn_bwd_kv_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    attn_bwd_kv_kernel<D><<<(unsigned)((size_t)s->n_seq * a.NH), BK, smem, st->stream>>>(d_qkv, d_ctx, a);
}

void cb_cuda_attention_backward(ops_device *d, float *d_qkv, const float *d_ctx, const float *qkv,
                             const uint8_t *mask, const ops_seqs *s, int H, int NH, int window, float p,
                             uint64_t seed, uint64_t stream, const ops_work *work) {
    cuda_state *st = cb_cuda_enter(d);
    if (s->n_seq <= 0 || s->n_tok <= 0) return;
    check_shape(qkv, H, NH);
    CB_ASSERT(((uintptr_t)d_ctx & 15) == 0);
    attn_args a = make_args(qkv, mask, s, H, NH, window, p, seed, stream);
    dim3 grid((unsigned)((size_t)s->n_seq * NH), (unsigned)((s->max_len + BQ - 1) / BQ));
#define BWD_Q(DD) attn_bwd_q_kernel<DD><<<grid, BQ, 0, st->stream>>>(d_qkv, d_ctx, a)
    DISPATCH(H / NH, BWD_Q);
#undef BWD_Q
    CU_LAUNCHED();
#define BWD_KV(DD) launch_bwd_kv<DD>(st, d_qkv, d_ctx, a, s)
    DISPATCH(H / NH, BWD_KV);
#undef BWD_KV
    CU_LAUNCHED();
}
