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
    .linear_forward = cb_cpu_linear_forward,
    .linear_backward = cb_cpu_linear_backward,
    .embed_forward = cb_cpu_embed_forward,
    .embed_backward = cb_cpu_embed_backward,
    .layernorm_forward = cb_cpu_layernorm_forward,
    .layernorm_backward = cb_cpu_layernorm_backward,
    .gelu_forward = cb_cpu_gelu_forward,
    .gelu_backward = cb_cpu_gelu_backward,
    .geglu_forward = cb_cpu_geglu_forward,
    .geglu_backward = cb_cpu_geglu_backward,
    .add = cb_cpu_add,
    .dropout_forward = cb_cpu_dropout_forward,
    .dropout_backward = cb_cpu_dropout_backward,
    .attention_workspace = cb_cpu_attention_workspace,
    .attention_forward = cb_cpu_attention_forward,
    .attention_backward = cb_cpu_attention_backward,
    .rope_forward = cb_cpu_rope_forward,
    .rope_backward = cb_cpu_rope_backward,
    .keep_relu_forward = cb_cpu_keep_relu_forward,
    .keep_relu_backward = cb_cpu_keep_relu_backward,
    .l2norm_forward = cb_cpu_l2norm_forward,
    .l2norm_backward = cb_cpu_l2norm_backward,
    .maxsim_workspace = cb_cpu_maxsim_workspace,
    .maxsim_forward = cb_cpu_maxsim_forward,
    .maxsim_backward = cb_cpu_maxsim_backward,
    .loss = cb_cpu_loss,
    .clip_grad_norm = cb_cpu_clip_grad_norm,
    .adamw = cb_cpu_adamw,
};

const ops_backend *cb_cpu_backend(void) { return &table; }
