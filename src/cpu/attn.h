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
 * With AVX2 and FMA (x86-64) the kernels are 6 x 16 register tiles; elsewhere
 * the same loops use the compiler's portable vectors. attn_*_generic are the
 * portable versions under their own names, for the tests.
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

/* 1 when this build uses the AVX2/FMA kernels. */
int cb_attn_simd(void);

#endif
