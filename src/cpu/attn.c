/* cpu/attn.c: the AVX2 attention tiles; see attn.h. */
#include "attn.h"

#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ATTN_AVX2 1
#else
#define ATTN_AVX2 0
#endif

int cb_attn_simd(void) { return ATTN_AVX2; }

void cb_attn_pack_t(float *KT, int ldt, const float *K, int ldk, int n, int D) {
    for (int d = 0; d < D; d++) {
        float *row = KT + (size_t)d * ldt;
        for (int j = 0; j < n; j++) row[j] = K[(size_t)j * ldk + d];
        for (int j = n; j < ldt; j++) row[j] = 0.0f;
    }
}

/* ------------------------------------------------------------------ */
/* portable: loops over the contiguous index, which the compiler turns
 * into vector FMAs; each element's terms still add in order */

void cb_attn_scores_generic(float *S, int lds, const float *A, int lda, int R, const float *KT, int ldt, int D,
                         float alpha) {
    for (int r = 0; r < R; r++) {
        float *s = S + (size_t)r * lds;
        const float *a = A + (size_t)r * lda;
        for (int j = 0; j < ldt; j++) s[j] = 0.0f;
        for (int d = 0; d < D; d++) {
            const float *kt = KT + (size_t)d * ldt;
            float x = a[d];
            for (int j = 0; j < ldt; j++) s[j] = __builtin_fmaf(x, kt[j], s[j]);
        }
        for (int j = 0; j < ldt; j++) s[j] *= alpha;
    }
}

void cb_attn_context_generic(float *C, int ldc, const float *P, int ldp, int R, const float *V, int n, int D) {
    for (int r = 0; r < R; r++) {
        float *c = C + (size_t)r * ldc;
        const float *p = P + (size_t)r * ldp;
        for (int x = 0; x < D; x++) c[x] = 0.0f;
        for (int j = 0; j < n; j++) {
            const float *v = V + (size_t)j * D;
            float w = p[j];
            for (int x = 0; x < D; x++) c[x] = __builtin_fmaf(w, v[x], c[x]);
        }
    }
}

#if ATTN_AVX2
/* ------------------------------------------------------------------ */
/* AVX2: R x (8 w) tiles of accumulators in registers (R <= 6, w <= 2: at
 * most 12 of the 16 ymm registers), the other operand broadcast. */

static inline __attribute__((always_inline)) void scores_tile(float *S, int lds, const float *A, int lda, int R,
                                                              const float *KT, int ldt, int D, __m256 va, int j,
                                                              int w) {
    __m256 acc[ATTN_ROWS][2];
    for (int r = 0; r < R; r++)
        for (int x = 0; x < w; x++) acc[r][x] = _mm256_setzero_ps();
    for (int d = 0; d < D; d++) {
        const float *kt = KT + (size_t)d * ldt + j;
        __m256 b0 = _mm256_loadu_ps(kt);
        __m256 b1 = w > 1 ? _mm256_loadu_ps(kt + 8) : b0;
        for (int r = 0; r < R; r++) {
            __m256 a = _mm256_broadcast_ss(A + (size_t)r * lda + d);
            acc[r][0] = _mm256_fmadd_ps(a, b0, acc[r][0]);
            if (w > 1) acc[r][1] = _mm256_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int x = 0; x < w; x++) _mm256_storeu_ps(S + (size_t)r * lds + j + 8 * x, _mm256_mul_ps(acc[r][x], va));
}

static inline __attribute__((always_inline)) void scores_rows(float *S, int lds, const float *A, int lda, int R,
                                                              const float *KT, int ldt, int D, float alpha) {
    __m256 va = _mm256_set1_ps(alpha);
    int j = 0;
    for (; j + 16 <= ldt; j += 16) scores_tile(S, lds, A, lda, R, KT, ldt, D, va, j, 2);
    if (j < ldt) scores_tile(S, lds, A, lda, R, KT, ldt, D, va, j, 1);
}

void cb_attn_scores(float *S, int lds, const float *A, int lda, int R, const float *KT, int ldt, int D,
                 float alpha) {
    switch (R) {  /* a constant R each, so the tiles unroll into registers */
    case 6: scores_rows(S, lds, A, lda, 6, KT, ldt, D, alpha); break;
    case 5: scores_rows(S, lds, A, lda, 5, KT, ldt, D, alpha); break;
    case 4: scores_rows(S, lds, A, lda, 4, KT, ldt, D, alpha); break;
    case 3: scores_rows(S, lds, A, lda, 3, KT, ldt, D, alpha); break;
    case 2: scores_rows(S, lds, A, lda, 2, KT, ldt, D, alpha); break;
    default: scores_rows(S, lds, A, lda, 1, KT, ldt, D, alpha); break;
    }
}

static inline __attribute__((always_inline)) void context_tile(float *C, int ldc, const float *P, int ldp, int R,
                                                               const float *V, int n, int D, int c, int w) {
    __m256 acc[ATTN_ROWS][2];
    for (int r = 0; r < R; r++)
        for (int x = 0; x < w; x++) acc[r][x] = _mm256_setzero_ps();
    for (int j = 0; j < n; j++) {
        const float *v = V + (size_t)j * D + c;
        __m256 b0 = _mm256_loadu_ps(v);
        __m256 b1 = w > 1 ? _mm256_loadu_ps(v + 8) : b0;
        for (int r = 0; r < R; r++) {
            __m256 p = _mm256_broadcast_ss(P + (size_t)r * ldp + j);
            acc[r][0] = _mm256_fmadd_ps(p, b0, acc[r][0]);
            if (w > 1) acc[r][1] = _mm256_fmadd_ps(p, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++)
        for (int x = 0; x < w; x++) _mm256_storeu_ps(C + (size_t)r * ldc + c + 8 * x, acc[r][x]);
}

static inline __attribute__((always_inline)) void context_rows(float *C, int ldc, const float *P, int ldp, int R,
                                                               const float *V, int n, int D) {
    int c = 0;
    for (; c + 16 <= D; c += 16) context_tile(C, ldc, P, ldp, R, V, n, D, c, 2);
    if (c + 8 <= D) {
        context_tile(C, ldc, P, ldp, R, V, n, D, c, 1);
        c += 8;
    }
    for (; c < D; c++)  /* D not a multiple of 8: the last columns one by one */
        for (int r = 0; r < R; r++) {
            float s = 0.0f;
            for (int j = 0; j < n; j++) s = __builtin_fmaf(P[(size_t)r * ldp + j], V[(size_t)j * D + c], s);
            C[(size_t)r * ldc + c] = s;
        }
}

void cb_attn_context(float *C, int ldc, const float *P, int ldp, int R, const float *V, int n, int D) {
    switch (R) {
    case 6: context_rows(C, ldc, P, ldp, 6, V, n, D); break;
    case 5: context_rows(C, ldc, P, ldp, 5, V, n, D); break;
    case 4: context_rows(C, ldc, P, ldp, 4, V, n, D); break;
    case 3: context_rows(C, ldc, P, ldp, 3, V, n, D); break;
    case 2: context_rows(C, ldc, P, ldp, 2, V, n, D); break;
    default: context_rows(C, ldc, P, ldp, 1, V, n, D); break;
    }
}

#else

void cb_attn_scores(float *S, int lds, const float *A, int lda, int R, const float *KT, int ldt, int D,
                 float alpha) {
    cb_attn_scores_generic(S, lds, A, lda, R, KT, ldt, D, alpha);
}

void cb_attn_context(float *C, int ldc, const float *P, int ldp, int R, const float *V, int n, int D) {
    cb_attn_context_generic(C, ldc, P, ldp, R, V, n, D);
}

#endif
