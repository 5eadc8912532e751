/* hostdev.h: CB_HOSTDEV marks the small inline functions that host code
 * and CUDA kernels share (the mixing hash of rng.h, the dropout keep bits
 * of ops.h), so that both compute the same bits from one definition. In C
 * it is empty; under nvcc it is __host__ __device__. */
#ifndef CB_HOSTDEV_H
#define CB_HOSTDEV_H
#ifdef __CUDACC__
#define CB_HOSTDEV __host__ __device__
#else
#define CB_HOSTDEV
#endif
#endif
