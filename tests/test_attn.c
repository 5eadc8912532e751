/* test_attn.c: the attention kernels (src/cpu/attn.c) against a
 * double-precision reference, on every row count 1..6, sequence lengths
 * 1..70 and head sizes that are and are not multiples of 8 (and of 16);
 * every SIMD kernel set this CPU runs (AVX2, AVX-512) against the portable
 * kernels bit for bit (each element adds its terms in the same order, one
 * fused multiply-add each); padding columns of K^T zero. The whole attention
 * (forward and backward) is compared with PyTorch in test_bert and
 * test_bert_grad. */
#include "../src/cpu/attn.h"
#include "test.h"

#include <stdint.h>

static uint64_t rng = 88172645463325252ULL;
static float frand(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* The kernels of set isa (now in use) on every shape; returns the cases run. */
static int check_kernels(attn_isa isa, double *worst_s, double *worst_c) {
    static const int Ds[] = {8, 16, 24, 32, 40, 48, 64, 5, 13, 21, 37};
    const int ld_extra = 3;  /* rows strided wider than D, as in qkv */
    int n_cases = 0;
    const char *name = cb_attn_isa_name(isa);
    for (size_t di = 0; di < sizeof Ds / sizeof *Ds; di++) {
        int D = Ds[di], lda = D + ld_extra;
        for (int n = 1; n <= 70; n += (n < 20 ? 1 : 7)) {
            int n8 = cb_attn_pad(n);
            CHECK(n8 % 8 == 0 && n8 >= n && n8 < n + 8);
            float *K = malloc(sizeof(float) * n * lda), *A = malloc(sizeof(float) * ATTN_ROWS * lda);
            float *KT = malloc(sizeof(float) * D * n8), *V = malloc(sizeof(float) * n * D);
            float *S = malloc(sizeof(float) * ATTN_ROWS * n8), *S2 = malloc(sizeof(float) * ATTN_ROWS * n8);
            float *P = malloc(sizeof(float) * ATTN_ROWS * n8);
            int ldc = D + 5;
            float *C = malloc(sizeof(float) * ATTN_ROWS * ldc), *C2 = malloc(sizeof(float) * ATTN_ROWS * ldc);
            for (int i = 0; i < n * lda; i++) K[i] = frand();
            for (int i = 0; i < ATTN_ROWS * lda; i++) A[i] = frand();
            for (int i = 0; i < n * D; i++) V[i] = frand();
            for (int i = 0; i < ATTN_ROWS * n8; i++) P[i] = frand();
            for (int i = 0; i < D * n8; i++) KT[i] = 99.0f;
            cb_attn_pack_t(KT, n8, K, lda, n, D);
            int pack_ok = 1;
            for (int d = 0; d < D; d++)
                for (int j = 0; j < n8; j++)
                    pack_ok &= KT[d * n8 + j] == (j < n ? K[j * lda + d] : 0.0f);
            CHECK_MSG(pack_ok, "cb_attn_pack_t n %d D %d", n, D);
            for (int i = 0; i < ATTN_ROWS * n8; i++) S[i] = S2[i] = -7.0f;   /* every column gets written */
            for (int R = 1; R <= ATTN_ROWS; R++) {
                float alpha = 0.125f + 0.01f * R;
                cb_attn_scores(S, n8, A, lda, R, KT, n8, D, alpha);
                cb_attn_scores_generic(S2, n8, A, lda, R, KT, n8, D, alpha);
                cb_attn_context(C, ldc, P, n8, R, V, n, D);
                cb_attn_context_generic(C2, ldc, P, n8, R, V, n, D);
                int same_s = 1, same_c = 1;
                double es = 0, ec = 0;
                for (int r = 0; r < R; r++) {
                    for (int j = 0; j < n8; j++) {
                        double ref = 0, mag = 0;
                        for (int d = 0; d < D; d++) {
                            double t = (double)A[r * lda + d] * (j < n ? K[j * lda + d] : 0.0);
                            ref += t;
                            mag += fabs(t);
                        }
                        ref *= alpha;
                        mag *= alpha;
                        double e = fabs(S[r * n8 + j] - ref) / (mag + 1e-30);
                        if (e > es) es = e;
                        same_s &= S[r * n8 + j] == S2[r * n8 + j];
                    }
                    for (int c = 0; c < D; c++) {
                        double ref = 0, mag = 0;
                        for (int j = 0; j < n; j++) {
                            double t = (double)P[r * n8 + j] * V[j * D + c];
                            ref += t;
                            mag += fabs(t);
                        }
                        double e = fabs(C[r * ldc + c] - ref) / (mag + 1e-30);
                        if (e > ec) ec = e;
                        same_c &= C[r * ldc + c] == C2[r * ldc + c];
                    }
                }
                /* error relative to the sum of |terms|: a few ulps times the count */
                CHECK_MSG(es < 1e-6 * (1 + D / 8), "%s scores R %d n %d D %d: rel err %.3g", name, R, n, D, es);
                CHECK_MSG(ec < 1e-6 * (1 + n / 8), "%s context R %d n %d D %d: rel err %.3g", name, R, n, D, ec);
                CHECK_MSG(same_s, "scores R %d n %d D %d: %s and portable kernels differ", R, n, D, name);
                CHECK_MSG(same_c, "context R %d n %d D %d: %s and portable kernels differ", R, n, D, name);
                if (es > *worst_s) *worst_s = es;
                if (ec > *worst_c) *worst_c = ec;
                n_cases++;
            }
            free(K); free(A); free(KT); free(V); free(S); free(S2); free(P); free(C); free(C2);
        }
    }
    return n_cases;
}

int main(void) {
    attn_isa chosen = cb_attn_isa();
    CHECK_MSG(cb_attn_isa_available(chosen), "the kernels chosen at load time (%s) are not available",
              cb_attn_isa_name(chosen));
    for (int k = 0; k < ATTN_N_ISA; k++) {
        attn_isa isa = (attn_isa)k;
        if (!cb_attn_isa_available(isa)) {
            printf("test_attn: %s kernels: not on this CPU or build, skipped\n", cb_attn_isa_name(isa));
            continue;
        }
        CHECK(cb_attn_set_isa(isa) == 0 && cb_attn_isa() == isa);
        double worst_s = 0, worst_c = 0;
        int n = check_kernels(isa, &worst_s, &worst_c);
        printf("test_attn: %s kernels: %d cases, worst rel err scores %.2g, context %.2g\n", cb_attn_isa_name(isa), n,
               worst_s, worst_c);
    }
    CHECK(cb_attn_set_isa(ATTN_N_ISA) == -1);
    cb_attn_set_isa(chosen);
    printf("test_attn: in use: %s\n", cb_attn_isa_name(cb_attn_isa()));
    return test_finish("test_attn");
}
