/* ops.c: choosing a device (ops.h). The CPU backend is always built in;
 * the CUDA backend (src/cuda/) registers here when built with CB_CUDA. */
#include "ops.h"
#include "blas.h"
#include "cpu/cpu.h"
#ifdef CB_CUDA
#include "cuda/cuda.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static ops_device cpu_device;

ops_device *cb_ops_cpu(void) {
    if (!cpu_device.fn) {
        cpu_device.fn = cb_cpu_backend();
        cpu_device.kind = "cpu";
        cpu_device.precision = OPS_FP32;
        int threads = 1;
#ifdef _OPENMP
        threads = omp_get_max_threads();
#endif
        snprintf(cpu_device.desc, sizeof cpu_device.desc, "cpu (OpenBLAS %s kernels, %d threads)",
                 cb_blas_corename(), threads);
    }
    return &cpu_device;
}

int cb_ops_have(const char *kind) {
    if (strcmp(kind, "cpu") == 0) return 1;
#ifdef CB_CUDA
    if (strcmp(kind, "cuda") == 0) return 1;
#endif
    return 0;
}

/* "cuda" -> 0, "cuda:N" -> N; -1 when spec is neither */
static int cuda_index(const char *spec) {
    if (strncmp(spec, "cuda", 4) != 0) return -1;
    if (spec[4] == '\0') return 0;
    if (spec[4] != ':' || !spec[5]) return -1;
    int n = 0;
    for (const char *p = spec + 5; *p; p++) {
        if (*p < '0' || *p > '9' || n > 99999) return -1;
        n = n * 10 + (*p - '0');
    }
    return n;
}

ops_device *cb_ops_open(const char *spec, ops_precision precision, cb_err *err) {
    if (!spec || !*spec) spec = "auto";
    if (strcmp(spec, "cpu") == 0) return cb_ops_cpu();
    int is_auto = strcmp(spec, "auto") == 0;
    int index = is_auto ? 0 : cuda_index(spec);
    if (index < 0) {
        cb_err_set(err, "device '%s': expected auto, cpu, cuda or cuda:N", spec);
        return NULL;
    }
#ifdef CB_CUDA
    char why[512];
    /* auto: the first GPU that is usable (cuda:0 may be an older one) */
    if (is_auto && cb_cuda_usable_count(&index, why, sizeof why) <= 0) {
        cb_err_set(err, "no usable GPU (%s)", why);
        return cb_ops_cpu();
    }
    ops_device *d = calloc(1, sizeof *d);
    if (!d) {
        cb_err_set(err, "out of memory: a device");
        return NULL;
    }
    cb_err e2 = {{0}};
    if (cb_cuda_device_open(d, index, precision, &e2)) {
        free(d);
        cb_err_set(err, "%s", e2.msg);
        return is_auto ? cb_ops_cpu() : NULL;
    }
    return d;
#else
    (void)precision;
    if (is_auto) {
        cb_err_set(err, "no usable GPU (this build of colbert.c has no CUDA backend)");
        return cb_ops_cpu();
    }
    cb_err_set(err, "device %s: this build of colbert.c has no CUDA backend (build it where nvcc is "
                    "found, or use --device cpu)", spec);
    return NULL;
#endif
}

void cb_ops_close(ops_device *d) {
    if (!d || d == &cpu_device) return;   /* the CPU device is a singleton */
#ifdef CB_CUDA
    cb_cuda_device_close(d);
#endif
    free(d);
}

int cb_ops_precision_parse(const char *s, ops_precision *out) {
    if (strcmp(s, "fp32") == 0) *out = OPS_FP32;
    else if (strcmp(s, "bf16") == 0) *out = OPS_BF16;
    else return -1;
    return 0;
}

const char *cb_ops_precision_name(ops_precision p) { return p == OPS_BF16 ? "bf16" : "fp32"; }

size_t cb_ops_info(char *buf, size_t bytes) {
    if (!bytes) return 0;
    buf[0] = '\0';
#ifdef CB_CUDA
    return cb_cuda_info(buf, bytes);
#else
    int k = snprintf(buf, bytes, "cuda: not built in (make CUDA=1 where nvcc is found)\n");
    return k < 0 ? 0 : (size_t)k < bytes ? (size_t)k : bytes - 1;
#endif
}
