/* cpu/attention.c: multi-head self-attention over packed sequences.
 *
 * Per (sequence, head) job, in blocks of ATTN_ROWS query rows: scores
 * against K^T (packed once per job), softmax, dropout and P V, all in this
 * thread's slice of the workspace (attn.c's AVX2 tiles do the products).
 * The probabilities never leave that slice; the backward recomputes them
 * through the same attention_rows, so it sees bit-identical numbers.
 */
#include "cpu.h"
#include "attn.h"
#include "../blas.h"
#include "../fastmath.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static int n_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Per-thread workspace, in floats, for sequences up to ms tokens and head
 * size D. Forward: K^T packed [D, pad(ms)], V packed [ms, D], one block of
 * score rows. Backward: three [ms, pad(ms)] blocks (probabilities, dropped
 * probabilities, their gradient) and K^T or V^T packed [D, pad(ms)]. */
static size_t per_thread(int ms, int D, int train) {
    size_t m8 = (size_t)cb_attn_pad(ms);
    size_t fwd = (size_t)D * m8 + (size_t)ms * D + ATTN_ROWS * m8;
    size_t bwd = 3 * (size_t)ms * m8 + (size_t)D * m8;
    return train && bwd > fwd ? bwd : fwd;
}

size_t cb_cpu_attention_workspace(ops_device *d, int max_len, int head_dim, int train) {
    (void)d;
    return (size_t)n_threads() * per_thread(max_len, head_dim, train) * sizeof(float);
}

/* This thread's slice of the workspace. */
static float *thread_slice(const ops_work *w, size_t per) {
    int t = 0;
#ifdef _OPENMP
    t = omp_get_thread_num();
#endif
    CB_ASSERT(((size_t)t + 1) * per * sizeof(float) <= w->bytes);
    return (float *)w->p + (size_t)t * per;
}

/* Softmax of one row of n scores in place; keys j with kmask[j] == 0 or
 * outside [lo, hi) (a sliding window) get probability exactly 0 (as -inf
 * scores would). A row of a windowed attention (windowed != 0) that sees no
 * key at all gets 1/n everywhere, as transformers' eager attention gives
 * a row whose every score has finfo.min added (ModernBERT's local layers
 * on ColBERT's [MASK] query padding far from any kept token); the softmax
 * backward, from these P, is then PyTorch's autograd through it.
 * The sum of the exponentials has one fixed order, whatever the instruction
 * set: element j adds into lane j % 16 (the last n % 16 elements into lane
 * 0), then the lanes add up in order. It is the order the `omp simd`
 * reduction this replaced had in a 16-wide (AVX-512) build, so those builds
 * keep their numbers, and a portable build (the Python package) or an AVX2
 * one now gets the same bits. */
#define SOFTMAX_LANES 16
CB_SIMD_CLONES static void softmax_row(float *row, const uint8_t *kmask, int n, int lo, int hi, int windowed) {
    if (kmask)
        for (int j = 0; j < n; j++) if (!kmask[j]) row[j] = -INFINITY;
    for (int j = 0; j < lo; j++) row[j] = -INFINITY;
    for (int j = hi; j < n; j++) row[j] = -INFINITY;
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    if (mx == -INFINITY && windowed) {
        /* a window row with no visible key: transformers' additive mask
         * (finfo.min on every key) makes it uniform over all n keys */
        for (int j = 0; j < n; j++) row[j] = 1.0f / (float)n;
        return;
    }
    float lane[SOFTMAX_LANES] = {0};
    int i = 0;
    for (; i + SOFTMAX_LANES <= n; i += SOFTMAX_LANES)
        for (int k = 0; k < SOFTMAX_LANES; k++) {
            float e = cb_fast_expf(row[i + k] - mx);  /* -inf -> ~1e-38, zeroed below */
            row[i + k] = e;
            lane[k] += e;
        }
    for (; i < n; i++) {
        float e = cb_fast_expf(row[i] - mx);
        row[i] = e;
        lane[0] += e;
    }
    float sum = 0;
    for (int k = 0; k < SOFTMAX_LANES; k++) sum += lane[k];
    float inv = 1.0f / sum;
    for (int j = 0; j < n; j++) row[j] *= inv;
    if (kmask)
        for (int j = 0; j < n; j++) if (!kmask[j]) row[j] = 0.0f;
    for (int j = 0; j < lo; j++) row[j] = 0.0f;
    for (int j = hi; j < n; j++) row[j] = 0.0f;
}

/* Probabilities of query rows i0 .. i0 + R - 1 of one head into P (rows
 * strided by ldp): scores against the packed K^T, softmax, then dropout
 * (element (i, j) keeps by hash (key, base + i n + j): key the sequence's,
 * base = h n^2, ops.h) into Pd when Pd is
 * not NULL (Pd may be P). window > 0: row i sees keys |i - j| <= window.
 * Forward and backward both come here, so both see the same numbers. */
static void attention_rows(float *P, float *Pd, int ldp, const float *q, int ldq, int i0, int R, const float *KT,
                           const uint8_t *kmask, int n, int D, int window, float scale, uint64_t key, uint32_t thr,
                           size_t base, float dscale) {
    cb_attn_scores(P, ldp, q + (size_t)i0 * ldq, ldq, R, KT, cb_attn_pad(n), D, scale);
    for (int r = 0; r < R; r++) {
        float *row = P + (size_t)r * ldp;
        int i = i0 + r, lo = 0, hi = n;
        if (window > 0) {
            lo = i - window > 0 ? i - window : 0;
            hi = i + window + 1 < n ? i + window + 1 : n;
        }
        softmax_row(row, kmask, n, lo, hi, window > 0);
        if (Pd) {
            float *out = Pd + (size_t)r * ldp;
            size_t b = base + (size_t)(i0 + r) * n;
            for (int j = 0; j < n; j++) out[j] = cb_ops_keep_bit(key, b + (size_t)j, thr) ? row[j] * dscale : 0.0f;
        }
    }
}

void cb_cpu_attention_forward(ops_device *d, float *ctx, const float *qkv, const uint8_t *mask, const ops_seqs *s,
                           int H, int NH, int window, float p_att, uint64_t seed, uint64_t stream, const ops_work *work) {
    (void)d;
    int D = H / NH, S = s->n_seq;
    float scale = 1.0f / sqrtf((float)D), dscale = p_att > 0 ? 1.0f / (1.0f - p_att) : 1.0f;
    uint32_t thr = cb_ops_dropout_thr(p_att);
    size_t per = per_thread(s->max_len, D, 0);
    CB_ASSERT(p_att <= 0 || s->id);
#pragma omp parallel for schedule(dynamic, 1)
    for (int job = 0; job < S * NH; job++) {
        int sq = job / NH, h = job % NH;
        int o = s->off[sq], n = s->off[sq + 1] - o, n8 = cb_attn_pad(n);
        CB_ASSERT(n <= s->max_len);
        const float *q = qkv + (size_t)o * 3 * H + (size_t)h * D, *k = q + H, *v = q + 2 * H;
        float *KT = thread_slice(work, per), *V = KT + (size_t)D * n8, *P = V + (size_t)n * D;
        cb_attn_pack_t(KT, n8, k, 3 * H, n, D);
        for (int j = 0; j < n; j++) memcpy(V + (size_t)j * D, v + (size_t)j * 3 * H, (size_t)D * sizeof(float));
        size_t base = (size_t)h * n * n;
        uint64_t key = p_att > 0 ? cb_ops_dropout_key(seed, stream, s->id[sq]) : 0;
        for (int i0 = 0; i0 < n; i0 += ATTN_ROWS) {
            int R = n - i0 < ATTN_ROWS ? n - i0 : ATTN_ROWS;
            attention_rows(P, p_att > 0 ? P : NULL, n8, q, 3 * H, i0, R, KT, mask ? mask + o : NULL, n, D, window,
                           scale, key, thr, base, dscale);
            cb_attn_context(ctx + (size_t)(o + i0) * H + (size_t)h * D, H, P, n8, R, V, n, D);
        }
    }
}

void cb_cpu_attention_backward(ops_device *d, float *d_qkv, const float *d_ctx, const float *qkv,
                            const uint8_t *mask, const ops_seqs *s, int H, int NH, int window, float p_att,
                            uint64_t seed, uint64_t stream, const ops_work *work) {
    (void)d;
    int D = H / NH, S = s->n_seq;
    float scale = 1.0f / sqrtf((float)D), dscale = p_att > 0 ? 1.0f / (1.0f - p_att) : 1.0f;
    uint32_t thr = cb_ops_dropout_thr(p_att);
    size_t per = per_thread(s->max_len, D, 1);
    CB_ASSERT(p_att <= 0 || s->id);
    size_t blk = (size_t)s->max_len * cb_attn_pad(s->max_len);
#pragma omp parallel for schedule(dynamic, 1)
    for (int job = 0; job < S * NH; job++) {
        int sq = job / NH, h = job % NH;
        int o = s->off[sq], n = s->off[sq + 1] - o, n8 = cb_attn_pad(n);
        CB_ASSERT(n <= s->max_len);
        const float *q = qkv + (size_t)o * 3 * H + (size_t)h * D, *k = q + H, *v = q + 2 * H;
        float *dq = d_qkv + (size_t)o * 3 * H + (size_t)h * D, *dk = dq + H, *dv = dq + 2 * H;
        const float *dc = d_ctx + (size_t)o * H + (size_t)h * D;
        float *P = thread_slice(work, per), *Pd = P + blk, *dP = Pd + blk, *KT = dP + blk;
        size_t base = (size_t)h * n * n;
        uint64_t key = p_att > 0 ? cb_ops_dropout_key(seed, stream, s->id[sq]) : 0;
        cb_attn_pack_t(KT, n8, k, 3 * H, n, D);
        for (int i0 = 0; i0 < n; i0 += ATTN_ROWS) {
            int R = n - i0 < ATTN_ROWS ? n - i0 : ATTN_ROWS;
            attention_rows(P + (size_t)i0 * n8, p_att > 0 ? Pd + (size_t)i0 * n8 : NULL, n8, q, 3 * H, i0, R, KT,
                           mask ? mask + o : NULL, n, D, window, scale, key, thr, base, dscale);
        }
        const float *Pv = p_att > 0 ? Pd : P;
        /* forward: ctx = Pv @ v  ->  dv = Pv^T @ dctx ; dPv = dctx @ v^T */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, n, 1.0f, Pv, n8, dc, H, 0.0f, dv, 3 * H);
        cb_attn_pack_t(KT, n8, v, 3 * H, n, D);
        for (int i0 = 0; i0 < n; i0 += ATTN_ROWS) {
            int R = n - i0 < ATTN_ROWS ? n - i0 : ATTN_ROWS;
            cb_attn_scores(dP + (size_t)i0 * n8, n8, dc + (size_t)i0 * H, H, R, KT, n8, D, 1.0f);
        }
        /* through dropout: dropped elements (Pd == 0) get no gradient; where
         * P itself is 0 the softmax backward below zeroes it anyway */
        if (p_att > 0)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                    size_t e = (size_t)i * n8 + j;
                    dP[e] = Pd[e] != 0.0f ? dP[e] * dscale : 0.0f;
                }
        /* softmax: dS = P * (dP - sum_j dP * P) (masked keys have P = 0) */
        for (int i = 0; i < n; i++) {
            const float *pr = P + (size_t)i * n8;
            float *dr = dP + (size_t)i * n8;
            float dot = 0;
            for (int j = 0; j < n; j++) dot += pr[j] * dr[j];
            for (int j = 0; j < n; j++) dr[j] = pr[j] * (dr[j] - dot);
        }
        /* forward: S = scale q @ k^T  ->  dq = scale dS @ k ; dk = scale dS^T @ q */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, n, scale, dP, n8, k, 3 * H, 0.0f, dq, 3 * H);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, n, scale, dP, n8, q, 3 * H, 0.0f, dk, 3 * H);
    }
}
