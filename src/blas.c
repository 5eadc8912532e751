/* blas.c: see blas.h. */
#include "blas.h"
#include "common.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

char *openblas_get_corename(void);
char *openblas_get_config(void);
int openblas_get_num_threads(void);

const char *cb_blas_corename(void) { return openblas_get_corename(); }

static int ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

/* Cores OpenBLAS 0.3.21 falls back to on CPUs it does not know. */
static int weak_core(const char *core) {
    static const char *weak[] = {"prescott", "core2", "penryn", "dunnington", "nehalem",
                                 "atom", "unknown", "katmai", "northwood", "banias",
                                 "opteron", "barcelona", "bobcat", NULL};
    for (int i = 0; weak[i]; i++) if (ieq(core, weak[i])) return 1;
    return 0;
}

const char *cb_blas_best_coretype(void) {
    const char *core = cb_blas_corename();
    if (!core) return NULL;
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int intel = __builtin_cpu_is("intel");
    if (avx512 && intel && !ieq(core, "skylakex") && !ieq(core, "cooperlake") &&
        !ieq(core, "sapphirerapids"))
        return "SkylakeX";
    if (avx2 && (weak_core(core) || ieq(core, "sandybridge")))
        return intel ? "Haswell" : "Zen";
    return NULL;
}

void cb_blas_init(int argc, char **argv) {
    (void)argc;
    if (getenv("OPENBLAS_CORETYPE") || getenv("COLBERT_BLAS_REEXEC")) return;
    const char *best = cb_blas_best_coretype();
    if (!best) return;
    setenv("OPENBLAS_CORETYPE", best, 1);
    setenv("COLBERT_BLAS_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on with the kernels we have. */
    unsetenv("OPENBLAS_CORETYPE");
}

/* OpenBLAS's DYNAMIC_ARCH set-up (absent from other builds: weak). */
void gotoblas_dynamic_init(void) __attribute__((weak));
void gotoblas_dynamic_quit(void) __attribute__((weak));

const char *cb_blas_init_inprocess(void) {
    if (getenv("OPENBLAS_CORETYPE") || !gotoblas_dynamic_init || !gotoblas_dynamic_quit)
        return cb_blas_corename();
    const char *best = cb_blas_best_coretype();
    if (best) {
        setenv("OPENBLAS_CORETYPE", best, 1);
        gotoblas_dynamic_quit();
        gotoblas_dynamic_init();
    }
    return cb_blas_corename();
}

void cb_blas_print_info(FILE *f) {
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    fprintf(f, "blas: %s\nkernels: %s\nthreads: %d\n", openblas_get_config(),
            cb_blas_corename(), threads);
}
