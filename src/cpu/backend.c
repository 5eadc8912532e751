/* cpu/backend.c: the CPU backend's table and its buffers. Device memory is
 * host memory from malloc (64-byte aligned for the SIMD kernels); uploads
 * and downloads are memcpy; everything runs synchronously. */
#include "cpu.h"
#include "../blas.h"

#include <stdlib.h>
#include <string.h>

static void *cpu_alloc(ops_device *d, size_t bytes, const char *what, cb_err *err) {
    (void)d;
    void *p = NULL;
    size_t n = (bytes + 63) & ~(size_t)63;
    if (n < bytes || posix_memalign(&p, 64, n ? n : 64)) {
        cb_err_set(err, "out of memory: %s needs %zu bytes (%.2f GiB)", what ? what : "a buffer", bytes,
                   (double)bytes / (1024.0 * 1024.0 * 1024.0));
        return NULL;
    }
    return p;
}

static void cpu_free(ops_device *d, void *p) {
    (void)d;
    free(p);
}

static void cpu_memcpy(ops_device *d, void *dst, const void *src, size_t bytes) {
    (void)d;
    if (dst != src) memmove(dst, src, bytes);
}

static void cpu_zero(ops_device *d, void *p, size_t bytes) {
    (void)d;
    memset(p, 0, bytes);
}

static void cpu_sync(ops_device *d) { (void)d; }

static const ops_backend table = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .linear_forward = cpu_linear_forward,
    .linear_backward = cpu_linear_backward,
    .embed_forward = cpu_embed_forward,
    .embed_backward = cpu_embed_backward,
    .layernorm_forward = cpu_layernorm_forward,
    .layernorm_backward = cpu_layernorm_backward,
    .gelu_forward = cpu_gelu_forward,
    .gelu_backward = cpu_gelu_backward,
    .add = cpu_add,
    .dropout_forward = cpu_dropout_forward,
    .dropout_backward = cpu_dropout_backward,
    .attention_workspace = cpu_attention_workspace,
    .attention_forward = cpu_attention_forward,
    .attention_backward = cpu_attention_backward,
    .keep_relu_forward = cpu_keep_relu_forward,
    .keep_relu_backward = cpu_keep_relu_backward,
    .l2norm_forward = cpu_l2norm_forward,
    .l2norm_backward = cpu_l2norm_backward,
    .maxsim_workspace = cpu_maxsim_workspace,
    .maxsim_forward = cpu_maxsim_forward,
    .maxsim_backward = cpu_maxsim_backward,
    .loss = cpu_loss,
    .clip_grad_norm = cpu_clip_grad_norm,
    .adamw = cpu_adamw,
};

const ops_backend *cpu_backend(void) { return &table; }
