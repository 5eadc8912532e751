/* bench_sgemm: SGEMM GFLOP/s at the shapes of a BERT encoder layer.
 * Built once per BLAS (see Makefile target bench-sgemm) so the libraries can
 * be compared on the same machine in the same run. Row-major, C = A * B^T as
 * in a linear layer (weights stored [out, in], as Hugging Face stores them). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <cblas.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    const char *label = argc > 1 ? argv[1] : "blas";
    /* M = tokens in a packed batch, N = out features, K = in features */
    int shapes[][3] = {
        {4096, 1152, 384},  /* MiniLM fused QKV */
        {4096, 384, 384},   /* MiniLM attention output */
        {4096, 1536, 384},  /* MiniLM FFN up */
        {4096, 384, 1536},  /* MiniLM FFN down */
        {4096, 2304, 768},  /* BERT-base fused QKV */
        {4096, 3072, 768},  /* BERT-base FFN up */
        {4096, 768, 3072},  /* BERT-base FFN down */
    };
    int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    for (int s = 0; s < nshapes; s++) {
        int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        float *A = malloc(sizeof(float) * (size_t)M * K);
        float *B = malloc(sizeof(float) * (size_t)N * K);
        float *C = malloc(sizeof(float) * (size_t)M * N);
        for (size_t i = 0; i < (size_t)M * K; i++) A[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
        for (size_t i = 0; i < (size_t)N * K; i++) B[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
        int reps = 0;
        double t0 = now_s(), t;
        do {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
            reps++;
            t = now_s() - t0;
        } while (t < 0.5);
        double gflops = 2.0 * M * N * K * reps / t / 1e9;
        printf("%-10s M=%5d N=%5d K=%5d  %7.1f GFLOP/s\n", label, M, N, K, gflops);
        free(A); free(B); free(C);
    }
    return 0;
}
