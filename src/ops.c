/* ops.c: choosing a device (ops.h). The CPU backend is always built in;
 * others register here when their build flag is on. */
#include "ops.h"
#include "blas.h"
#include "cpu/cpu.h"

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

int cb_ops_have(const char *kind) { return strcmp(kind, "cpu") == 0; }

ops_device *cb_ops_open(const char *spec, ops_precision precision, cb_err *err) {
    (void)precision;
    if (!spec || !*spec || strcmp(spec, "auto") == 0 || strcmp(spec, "cpu") == 0) return cb_ops_cpu();
    if (strncmp(spec, "cuda", 4) == 0 && (spec[4] == '\0' || spec[4] == ':')) {
        cb_err_set(err, "device %s: this build of colbert.c has no CUDA backend (build it where nvcc is "
                        "found, or use --device cpu)", spec);
        return NULL;
    }
    cb_err_set(err, "device '%s': expected auto, cpu, cuda or cuda:N", spec);
    return NULL;
}

void cb_ops_close(ops_device *d) {
    (void)d;  /* the CPU device is a singleton */
}
