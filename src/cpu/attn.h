/* attn.h: the small dense kernels of self-attention, one sequence and one
 * head at a time.
 *
 * A head's scores are S = alpha Q K^T with Q, K: [n, D] (D = 32 for MiniLM,
 * 64 for BERT-base) and its context is C = P V. BLAS runs these shapes (inner
 * dimension D, thousands of small calls per batch) far below its peak, and
 * the n x n scores make a round trip through memory between the two
 * products. These kernels work on blocks of at most ATTN_ROWS query rows:
 * bert.c computes a block's scores into an L1-sized buffer, does the softmax
 * there and multiplies by V at once.
 *
 * Every output element is accumulated in the order d = 0, 1, ... (or
 * j = 0, 1, ...) with one fused multiply-add per term, whatever the blocking,
 * so the forward pass and the backward pass (which recomputes the
 * probabilities a whole matrix at a time) get bit-identical scores.
 *
 * On x86-64 the kernels are register tiles, 6 x 16 with AVX2 and FMA, 6 x 32
 * with AVX-512, compiled whatever the build's -march and chosen at load time
 * from what the CPU has (a portable build runs them too); elsewhere, or on an
 * older CPU, the same loops use the compiler's portable vectors. All give
 * bit-identical results. cb_attn_*_generic are the portable versions under
 * their own names, for the tests.
 */
#ifndef CB_ATTN_H
#define CB_ATTN_H
#include <stddef.h>

#define ATTN_ROWS 6   /* query rows per block */

/* n rounded up to a multiple of 8: the row stride of packed and score
 * buffers. */
static inline int cb_attn_pad(int n) { return (n + 7) & ~7; }

/* KT[d * ldt + j] = K[j * ldk + d] for d < D, j < n; zero for n <= j < ldt. */
void cb_attn_pack_t(float *KT, int ldt, const float *K, int ldk, int n, int D);

/* S[r * lds + j] = alpha * sum_d A[r * lda + d] * KT[d * ldt + j]
 * for r < R (1 <= R <= ATTN_ROWS) and j < ldt (a multiple of 8). */
void cb_attn_scores(float *S, int lds, const float *A, int lda, int R, const float *KT, int ldt, int D,
                 float alpha);

/* C[r * ldc + c] = sum_{j < n} P[r * ldp + j] * V[j * D + c] for r < R
 * (1 <= R <= ATTN_ROWS), c < D; V is packed [n, D]. */
void cb_attn_context(float *C, int ldc, const float *P, int ldp, int R, const float *V, int n, int D);

void cb_attn_scores_generic(float *S, int lds, const float *A, int lda, int R, const float *KT, int ldt, int D,
                         float alpha);
void cb_attn_context_generic(float *C, int ldc, const float *P, int ldp, int R, const float *V, int n, int D);

/* The kernel sets cb_attn_scores and cb_attn_context run. */
typedef enum { ATTN_PORTABLE = 0, ATTN_AVX2, ATTN_AVX512, ATTN_N_ISA } attn_isa;

/* 1 when this build has the kernels of isa and this CPU runs them. */
int cb_attn_isa_available(attn_isa isa);
/* The set in use: the best available, chosen when the library is loaded;
 * the environment variable COLBERT_SIMD=portable|avx2|avx512 caps it. */
attn_isa cb_attn_isa(void);
/* Use isa from now on (tests, benchmarks; not while kernels run). Returns
 * 0, or -1 when it is not available. */
int cb_attn_set_isa(attn_isa isa);
const char *cb_attn_isa_name(attn_isa isa);   /* "portable", "avx2", "avx512" */

#endif
