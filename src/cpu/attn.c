/* cpu/attn.c: the attention tiles; see attn.h.
 *
 * Three versions of the two products, bit-identical to one another (every
 * element adds its terms in order, one fused multiply-add each):
 *   portable  plain loops the compiler vectorises for the build's -march;
 *   AVX2      6 x 16 register tiles (x86-64 with AVX2 and FMA);
 *   AVX-512   6 x 32 register tiles, masked at the edges (AVX-512F).
 * The SIMD versions are compiled with target attributes whatever the build's
 * -march, so a portable build (the Python package's) carries them too; the
 * one to run is chosen once, when the library is loaded, from what the CPU
 * has. COLBERT_SIMD=portable|avx2|avx512 caps the choice (benchmarks). */
#include "attn.h"

#include <stdlib.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <immintrin.h>
#define ATTN_X86 1
#else
#define ATTN_X86 0
#endif

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

/* R as a constant in each case, so the tiles unroll into registers */
#define ATTN_BY_ROWS(call_R)                                                                             \
    switch (R) {                                                                                         \
    case 6: call_R(6); break;                                                                            \
    case 5: call_R(5); break;                                                                            \
    case 4: call_R(4); break;                                                                            \
    case 3: call_R(3); break;                                                                            \
    case 2: call_R(2); break;                                                                            \
    default: call_R(1); break;                                                                           \
    }

#if ATTN_X86
#define AVX2_FN static inline __attribute__((always_inline, target("avx2,fma")))
#define AVX512_FN static inline __attribute__((always_inline, target("avx512f,avx2,fma")))

/* ------------------------------------------------------------------ */
/* AVX2: R x (8 w) tiles of accumulators in registers (R <= 6, w <= 2: at
 * most 12 of the 16 ymm registers), the other operand broadcast. */

AVX2_FN void scores_tile_avx2(float *S, int lds, const float *A, int lda, int R, const float *KT, int ldt, int D,
                              __m256 va, int j, int w) {
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

AVX2_FN void scores_rows_avx2(float *S, int lds, const float *A, int lda, int R, const float *KT, int ldt, int D,
                              float alpha) {
    __m256 va = _mm256_set1_ps(alpha);
    int j = 0;
    for (; j + 16 <= ldt; j += 16) scores_tile_avx2(S, lds, A, lda, R, KT, ldt, D, va, j, 2);
    if (j < ldt) scores_tile_avx2(S, lds, A, lda, R, KT, ldt, D, va, j, 1);
}

__attribute__((target("avx2,fma"))) static void scores_avx2(float *S, int lds, const float *A, int lda, int R,
                                                            const float *KT, int ldt, int D, float alpha) {
#define SCORES_AVX2(r) scores_rows_avx2(S, lds, A, lda, r, KT, ldt, D, alpha)
    ATTN_BY_ROWS(SCORES_AVX2)
}

AVX2_FN void context_tile_avx2(float *C, int ldc, const float *P, int ldp, int R, const float *V, int n, int D,
                               int c, int w) {
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

AVX2_FN void context_rows_avx2(float *C, int ldc, const float *P, int ldp, int R, const float *V, int n, int D) {
    int c = 0;
    for (; c + 16 <= D; c += 16) context_tile_avx2(C, ldc, P, ldp, R, V, n, D, c, 2);
    if (c + 8 <= D) {
        context_tile_avx2(C, ldc, P, ldp, R, V, n, D, c, 1);
        c += 8;
    }
    for (; c < D; c++)  /* D not a multiple of 8: the last columns one by one */
        for (int r = 0; r < R; r++) {
            float s = 0.0f;
            for (int j = 0; j < n; j++) s = __builtin_fmaf(P[(size_t)r * ldp + j], V[(size_t)j * D + c], s);
            C[(size_t)r * ldc + c] = s;
        }
}

__attribute__((target("avx2,fma"))) static void context_avx2(float *C, int ldc, const float *P, int ldp, int R,
                                                             const float *V, int n, int D) {
#define CONTEXT_AVX2(r) context_rows_avx2(C, ldc, P, ldp, r, V, n, D)
    ATTN_BY_ROWS(CONTEXT_AVX2)
}

/* ------------------------------------------------------------------ */
/* AVX-512: the same tiles 16 wide (R <= 6, w <= 2: 12 of the 32 zmm
 * registers); the last vector of a row is masked (`last`), so any width
 * needs no scalar tail. Masked-out lanes load zeros and are not stored. */

static inline __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

AVX512_FN void scores_tile_avx512(float *S, int lds, const float *A, int lda, int R, const float *KT, int ldt,
                                  int D, __m512 va, int j, int w, __mmask16 last) {
    __m512 acc[ATTN_ROWS][2];
    for (int r = 0; r < R; r++)
        for (int x = 0; x < w; x++) acc[r][x] = _mm512_setzero_ps();
    for (int d = 0; d < D; d++) {
        const float *kt = KT + (size_t)d * ldt + j;
        __m512 b0 = w > 1 ? _mm512_loadu_ps(kt) : _mm512_maskz_loadu_ps(last, kt);
        __m512 b1 = w > 1 ? _mm512_maskz_loadu_ps(last, kt + 16) : b0;
        for (int r = 0; r < R; r++) {
            __m512 a = _mm512_set1_ps(A[(size_t)r * lda + d]);
            acc[r][0] = _mm512_fmadd_ps(a, b0, acc[r][0]);
            if (w > 1) acc[r][1] = _mm512_fmadd_ps(a, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        float *s = S + (size_t)r * lds + j;
        if (w > 1) _mm512_storeu_ps(s, _mm512_mul_ps(acc[r][0], va));
        _mm512_mask_storeu_ps(s + 16 * (w - 1), last, _mm512_mul_ps(acc[r][w - 1], va));
    }
}

AVX512_FN void scores_rows_avx512(float *S, int lds, const float *A, int lda, int R, const float *KT, int ldt,
                                  int D, float alpha) {
    __m512 va = _mm512_set1_ps(alpha);
    int j = 0;
    for (; j + 32 <= ldt; j += 32) scores_tile_avx512(S, lds, A, lda, R, KT, ldt, D, va, j, 2, lanes(16));
    int rest = ldt - j;
    if (rest > 16) scores_tile_avx512(S, lds, A, lda, R, KT, ldt, D, va, j, 2, lanes(rest - 16));
    else if (rest > 0) scores_tile_avx512(S, lds, A, lda, R, KT, ldt, D, va, j, 1, lanes(rest));
}

__attribute__((target("avx512f,avx2,fma"))) static void scores_avx512(float *S, int lds, const float *A, int lda,
                                                                      int R, const float *KT, int ldt, int D,
                                                                      float alpha) {
#define SCORES_AVX512(r) scores_rows_avx512(S, lds, A, lda, r, KT, ldt, D, alpha)
    ATTN_BY_ROWS(SCORES_AVX512)
}

AVX512_FN void context_tile_avx512(float *C, int ldc, const float *P, int ldp, int R, const float *V, int n, int D,
                                   int c, int w, __mmask16 last) {
    __m512 acc[ATTN_ROWS][2];
    for (int r = 0; r < R; r++)
        for (int x = 0; x < w; x++) acc[r][x] = _mm512_setzero_ps();
    for (int j = 0; j < n; j++) {
        const float *v = V + (size_t)j * D + c;
        __m512 b0 = w > 1 ? _mm512_loadu_ps(v) : _mm512_maskz_loadu_ps(last, v);
        __m512 b1 = w > 1 ? _mm512_maskz_loadu_ps(last, v + 16) : b0;
        for (int r = 0; r < R; r++) {
            __m512 p = _mm512_set1_ps(P[(size_t)r * ldp + j]);
            acc[r][0] = _mm512_fmadd_ps(p, b0, acc[r][0]);
            if (w > 1) acc[r][1] = _mm512_fmadd_ps(p, b1, acc[r][1]);
        }
    }
    for (int r = 0; r < R; r++) {
        float *o = C + (size_t)r * ldc + c;
        if (w > 1) _mm512_storeu_ps(o, acc[r][0]);
        _mm512_mask_storeu_ps(o + 16 * (w - 1), last, acc[r][w - 1]);
    }
}

AVX512_FN void context_rows_avx512(float *C, int ldc, const float *P, int ldp, int R, const float *V, int n,
                                   int D) {
    int c = 0;
    for (; c + 32 <= D; c += 32) context_tile_avx512(C, ldc, P, ldp, R, V, n, D, c, 2, lanes(16));
    int rest = D - c;
    if (rest > 16) context_tile_avx512(C, ldc, P, ldp, R, V, n, D, c, 2, lanes(rest - 16));
    else if (rest > 0) context_tile_avx512(C, ldc, P, ldp, R, V, n, D, c, 1, lanes(rest));
}

__attribute__((target("avx512f,avx2,fma"))) static void context_avx512(float *C, int ldc, const float *P, int ldp,
                                                                       int R, const float *V, int n, int D) {
#define CONTEXT_AVX512(r) context_rows_avx512(C, ldc, P, ldp, r, V, n, D)
    ATTN_BY_ROWS(CONTEXT_AVX512)
}
#endif /* ATTN_X86 */

/* ------------------------------------------------------------------ */
/* choosing the kernels */

typedef void (*scores_fn)(float *, int, const float *, int, int, const float *, int, int, float);
typedef void (*context_fn)(float *, int, const float *, int, int, const float *, int, int);

static const struct attn_kernels {
    const char *name;
    scores_fn scores;
    context_fn context;
} KERNELS[ATTN_N_ISA] = {
    [ATTN_PORTABLE] = {"portable", cb_attn_scores_generic, cb_attn_context_generic},
#if ATTN_X86
    [ATTN_AVX2] = {"avx2", scores_avx2, context_avx2},
    [ATTN_AVX512] = {"avx512", scores_avx512, context_avx512},
#else
    [ATTN_AVX2] = {"avx2", NULL, NULL},
    [ATTN_AVX512] = {"avx512", NULL, NULL},
#endif
};

static attn_isa current = ATTN_PORTABLE;

const char *cb_attn_isa_name(attn_isa isa) { return isa >= 0 && isa < ATTN_N_ISA ? KERNELS[isa].name : "?"; }

int cb_attn_isa_available(attn_isa isa) {
    if (isa == ATTN_PORTABLE) return 1;
#if ATTN_X86
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (isa == ATTN_AVX2) return avx2;
    if (isa == ATTN_AVX512) return avx2 && __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

attn_isa cb_attn_isa(void) { return current; }

int cb_attn_set_isa(attn_isa isa) {
    if (isa < 0 || isa >= ATTN_N_ISA || !cb_attn_isa_available(isa)) return -1;
    current = isa;
    return 0;
}

/* At load time: the best the CPU has, at most what COLBERT_SIMD names. */
__attribute__((constructor)) static void attn_choose(void) {
    const char *cap = getenv("COLBERT_SIMD");
    attn_isa best = ATTN_PORTABLE;
    for (int k = ATTN_N_ISA - 1; k > ATTN_PORTABLE; k--)
        if (cb_attn_isa_available((attn_isa)k)) { best = (attn_isa)k; break; }
    if (cap)
        for (int k = 0; k < ATTN_N_ISA; k++)
            if (!strcmp(cap, KERNELS[k].name) && k < (int)best) best = (attn_isa)k;
    current = best;
}

void cb_attn_scores(float *S, int lds, const float *A, int lda, int R, const float *KT, int ldt, int D,
                 float alpha) {
    KERNELS[current].scores(S, lds, A, lda, R, KT, ldt, D, alpha);
}

void cb_attn_context(float *C, int ldc, const float *P, int ldp, int R, const float *V, int n, int D) {
    KERNELS[current].context(C, ldc, P, ldp, R, V, n, D);
}
