/* cuda/cuda.h: the CUDA backend of the compute interface (ops.h), tested op
 * by op against the CPU backend (src/cpu/, the specification). One file per
 * family of operations, mirroring src/cpu/:
 *   backend.cu    the ops_backend table, devices, buffers (cudaMalloc), one
 *                 stream per device, the scratch arena
 *   matmul.cu     linear layers through cuBLASLt (loaded with dlopen):
 *                 fp32 without TF32, or bf16 inputs with fp32 accumulation
 *   embed.cu      embeddings; the scatter-add of their gradient as a
 *                 segmented sum over tokens sorted by row (no atomics)
 *   layernorm.cu  LayerNorm forward and backward
 *   activation.cu GELU, GeGLU, residual add, dropout (the hash of ops.h)
 *   attention.cu  fused attention over packed sequences (nothing n x n in
 *                 global memory), its backward recomputing probabilities;
 *                 sliding windows
 *   rope.cu       rotary position embeddings on the queries and keys
 *   head.cu       the ColBERT head: punctuation mask / ReLU, L2 norm
 *   maxsim.cu     MaxSim scores and their backward
 *   loss.cu       the losses: the tiny score matrix goes to the host, the
 *                 CPU's formulas run there, the gradient comes back
 *   optim.cu      gradient-norm clipping and AdamW, deterministic
 * Every reduction has a fixed order: the same inputs give the same bits on
 * every run (no floating-point atomics).
 *
 * This header is what ops.c sees (C); the kernels share common.cuh.
 * Built only with CB_CUDA (the Makefile's CUDA=1, the default where nvcc
 * is found).
 */
#ifndef CB_CUDA_H
#define CB_CUDA_H
#include "../ops.h"

#ifdef __cplusplus
extern "C" {
#endif

const ops_backend *cb_cuda_backend(void);

/* Open GPU `index` into d (fn, kind, index, precision, desc, impl). Returns
 * 0, or -1 with err: "cuda: no usable GPU (<why>)" when there is no driver
 * or no device, "cuda:N: ..." when that one cannot be used. */
int cb_cuda_device_open(ops_device *d, int index, ops_precision precision, cb_err *err);
void cb_cuda_device_close(ops_device *d);

/* Number of GPUs this build can use (0 with `why` filled when none);
 * *first (may be NULL): the index of the first of them, -1 when none. */
int cb_cuda_usable_count(int *first, char *why, size_t why_bytes);

/* bf16 products d has run through cuBLASLt, and of those the ones that ran
 * in fp32 because cuBLASLt had no bf16 algorithm for them (matmul.cu). */
void cb_cuda_matmul_stats(const ops_device *d, long *bf16_products, long *fp32_fallbacks);

/* A few lines for `colbert info`: the CUDA runtime, the driver, cuBLASLt,
 * the kernels built in and every GPU. Returns the characters written. */
size_t cb_cuda_info(char *buf, size_t bytes);

#ifdef __cplusplus
}
#endif
#endif
