/* cuda/common.cuh: what the CUDA backend's files share: the device state,
 * error checks, the scratch arena, launch helpers and the deterministic
 * column sums. Internal to src/cuda/ (ops.c sees cuda.h only). */
#ifndef CB_CUDA_COMMON_CUH
#define CB_CUDA_COMMON_CUH
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

extern "C" {
#include "cuda.h"
#include "../cpu/cpu.h"
}

/* One per opened GPU, in ops_device.impl. Every op runs on `stream`, so
 * ops on one device run in the order they were issued. */
struct cuda_state {
    int index;
    cudaStream_t stream;
    cudaDeviceProp prop;
    /* cuBLASLt (matmul.cu) */
    void *lt;                   /* cublasLtHandle_t */
    void *lt_ws;                /* its workspace */
    size_t lt_ws_bytes;
    void *mm_cache;             /* matmul.cu's algorithm cache */
    /* the scratch arena (cb_cuda_scratch) */
    void *scratch;
    size_t scratch_bytes;
    /* host staging for the loss (loss.cu) */
    float *h_buf;
    size_t h_bytes;
    /* optim.cu: [dev] the reduction's partial sums and results */
    double *norm_partial;
    float *norm_out;            /* [2]: total, coefficient */
    /* matmul.cu: bf16 products run, and those run in fp32 instead because
     * cuBLASLt had no bf16 algorithm for them (cb_cuda_matmul_stats) */
    long mm_bf16;
    long mm_fallback;
    int mm_fallback_said;       /* the one stderr note was printed */
};

/* Abort with file, line, the call and CUDA's message: the ops cannot fail
 * on valid arguments (ops.h), so a CUDA error inside one is a bug or a
 * broken device. stdout is flushed first (a test's last lines say which op
 * ran) and no core is dumped (a CUDA process's core is gigabytes). An
 * error a kernel raised shows at the next call that synchronises, which
 * may belong to another op: the message then says so, and
 * COLBERT_CUDA_SYNC=1 (cb_cuda_sync_each) checks after every launch. */
[[noreturn]] void cb_cuda_fatal(const char *file, int line, const char *what, const char *msg);
[[noreturn]] void cb_cuda_fatal_err(const char *file, int line, const char *what, cudaError_t e);
/* The same for errors that are not CUDA's (a shape the kernels lack). */
[[noreturn]] __attribute__((format(printf, 1, 2))) void cb_cuda_die(const char *fmt, ...);
#define CU_CHECK(call)                                                         \
    do {                                                                       \
        cudaError_t e_ = (call);                                               \
        if (e_ != cudaSuccess) cb_cuda_fatal_err(__FILE__, __LINE__, #call, e_); \
    } while (0)

/* 1 when COLBERT_CUDA_SYNC is set (not "0") at the first device open: every
 * launch is followed by a synchronisation and a check, so a faulting kernel
 * is reported at its own launch, by file, line and op (slow: for
 * debugging and the device check). */
extern int cb_cuda_sync_each;
/* after a kernel launch (or a library call that launches) in op `op` */
void cb_cuda_check_launch(const char *file, int line, const char *op);
#define CU_LAUNCHED() cb_cuda_check_launch(__FILE__, __LINE__, __func__)

/* 1 for the errors a kernel leaves behind (illegal address, launch
 * failure, ...): sticky, the context is unusable afterwards. */
int cb_cuda_error_is_sticky(cudaError_t e);

/* The state of d, made current on this thread (cudaSetDevice when needed). */
cuda_state *cb_cuda_enter(ops_device *d);

/* Device scratch of at least `bytes` (256-byte aligned), valid until the
 * next call on the same device. It grows on demand (sync, free, malloc:
 * the first step of a training run sizes it; later steps allocate nothing)
 * and is shared by the ops, which run one after another on the stream. */
void *cb_cuda_scratch(cuda_state *s, size_t bytes);

/* Carve aligned pieces from a scratch block: p = take(&cur, bytes). */
static inline void *scratch_take(char **cur, size_t bytes) {
    void *p = *cur;
    *cur += (bytes + 255) & ~(size_t)255;
    return p;
}
static inline size_t scratch_round(size_t bytes) { return (bytes + 255) & ~(size_t)255; }

/* Blocks for a grid-stride loop over n elements. */
static inline unsigned grid_for(size_t n, int threads) {
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    if (b > 65536) b = 65536;
    return b ? (unsigned)b : 1;
}

/* matmul.cu */
int cb_cuda_matmul_init(cuda_state *s, cb_err *err);
void cb_cuda_matmul_free(cuda_state *s);
/* "cuBLASLt 13.1.0 (/path/libcublasLt.so.13)" or why it cannot be loaded;
 * returns 0 when loaded */
int cb_cuda_lt_describe(char *buf, size_t bytes);
/* bf16 copy of n floats (round to nearest even) */
void cb_cuda_to_bf16(cuda_state *s, __nv_bfloat16 *dst, const float *src, size_t n);

/* ---- deterministic column sums --------------------------------------------
 * out_k[c] += sum_t F(t, c)_k over t < T, c < C, for k < NV: the rows are
 * cut into chunks of COLSUM_ROWS; each chunk's sums (rows in a fixed
 * order) land in partial[chunk][k][c]; a second kernel adds the chunks in
 * order. The same bits on every run, whatever the GPU's scheduling. */
#define COLSUM_ROWS 256
#define COLSUM_TY 8

template <int NV>
struct colsum_out {
    float *p[NV];
};

template <int NV, class F>
__global__ void colsum_chunks(float *partial, F f, int T, int C) {
    __shared__ float sh[COLSUM_TY][NV][32];
    int c = blockIdx.x * 32 + threadIdx.x;
    int chunk = blockIdx.y;
    int r0 = chunk * COLSUM_ROWS, r1 = min(r0 + COLSUM_ROWS, T);
    float acc[NV];
    for (int k = 0; k < NV; k++) acc[k] = 0.0f;
    if (c < C)
        for (int r = r0 + threadIdx.y; r < r1; r += COLSUM_TY) {
            float v[NV];
            f(r, c, v);
            for (int k = 0; k < NV; k++) acc[k] += v[k];
        }
    for (int k = 0; k < NV; k++) sh[threadIdx.y][k][threadIdx.x] = acc[k];
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int k = 0; k < NV; k++) {
            float s = 0.0f;
            for (int y = 0; y < COLSUM_TY; y++) s += sh[y][k][threadIdx.x];
            partial[((size_t)chunk * NV + k) * C + c] = s;
        }
    }
}

template <int NV>
__global__ void colsum_finish(colsum_out<NV> out, const float *partial, int nchunks, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    int k = blockIdx.y;
    if (c >= C || !out.p[k]) return;
    float s = 0.0f;
    for (int ch = 0; ch < nchunks; ch++) s += partial[((size_t)ch * NV + k) * C + c];
    out.p[k][c] += s;
}

/* Scratch bytes colsum needs for T rows, C columns, NV sums. */
static inline size_t colsum_scratch(int T, int C, int NV) {
    size_t chunks = (size_t)(T + COLSUM_ROWS - 1) / COLSUM_ROWS;
    return scratch_round((chunks ? chunks : 1) * (size_t)NV * (size_t)C * sizeof(float));
}

/* Run both kernels; partial is scratch of colsum_scratch(T, C, NV) bytes. */
template <int NV, class F>
static void colsum(cuda_state *s, colsum_out<NV> out, F f, int T, int C, float *partial) {
    if (T <= 0 || C <= 0) return;
    int chunks = (T + COLSUM_ROWS - 1) / COLSUM_ROWS;
    dim3 g1((C + 31) / 32, chunks), b1(32, COLSUM_TY);
    colsum_chunks<NV, F><<<g1, b1, 0, s->stream>>>(partial, f, T, C);
    CU_LAUNCHED();
    dim3 g2((C + 127) / 128, NV);
    colsum_finish<NV><<<g2, 128, 0, s->stream>>>(out, partial, chunks, C);
    CU_LAUNCHED();
}

/* ---- warp reductions (a fixed butterfly: deterministic) ------------------ */
template <class V>
__device__ __forceinline__ V warp_sum(V v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

#endif
