/* blas.h: the linear algebra under colbert.c (OpenBLAS, OpenMP build).
 *
 * Debian's OpenBLAS 0.3.21 picks its kernels at load time from the CPU model
 * and misreads newer CPUs (Intel model 207 runs as "Prescott", 5-10x slower
 * than its SkylakeX kernels). cb_blas_init checks the kernels in use against
 * what the CPU supports and, when they are weaker, re-runs the program once
 * with OPENBLAS_CORETYPE set to the best matching kernels, so users never
 * have to set anything. A user's own OPENBLAS_CORETYPE is respected.
 */
#ifndef CB_BLAS_H
#define CB_BLAS_H
#include <stdio.h>
#include <cblas.h>
/* OpenBLAS's cblas.h pulls in <complex.h>, whose macro I would shadow every
 * variable named I (our intermediate size). We use no complex numbers. */
#undef I

/* Call first thing in main(): may re-exec the program (argv unchanged). */
void cb_blas_init(int argc, char **argv);
/* For a program that cannot re-exec (a Python process): the same check,
 * and when OpenBLAS runs weaker kernels than the CPU supports (and
 * OPENBLAS_CORETYPE is unset), switch them in this process through
 * OpenBLAS's own dynamic-arch set-up. Call before any BLAS call. Returns
 * the kernels in use afterwards. */
const char *cb_blas_init_inprocess(void);
/* The kernels OpenBLAS runs ("Haswell", "SkylakeX", ...) */
const char *cb_blas_corename(void);
/* The kernels this CPU should run, by its features; NULL if no better. */
const char *cb_blas_best_coretype(void);
void cb_blas_print_info(FILE *f);
#endif
