/* info.c: `colbert info`: the linear-algebra library, its kernels and the
 * threads in use; the GPUs, the driver and the CUDA kernels; whether this
 * build runs under mpirun; whether it draws curve.png (cairo). */
#include "args.h"
#include "blas.h"
#include "cli.h"
#include "comm.h"
#include "plot.h"

#include <stdio.h>

static const char *INFO_HELP =
    "usage: colbert info\n"
    "\n"
    "Print the linear-algebra library (the OpenBLAS build), the kernels it\n"
    "runs on this CPU and the threads in use; then the CUDA backend: the\n"
    "runtime, the driver, cuBLASLt, the GPU kernels built in and every GPU\n"
    "(or why none can be used); and whether this build runs data-parallel\n"
    "under mpirun (MPI) and whether it draws the training curve as a PNG\n"
    "(cairo) beside the SVG.\n"
    "\n"
    "options:\n"
    "  -h, --help   this help\n";

static const struct option INFO_OPTS[] = {
    {"help", no_argument, NULL, 'h'},
    {0, 0, 0, 0}};

int cli_info(int argc, char **argv) {
    cli_args a;
    cli_args_init(&a, "info", argc, argv, INFO_OPTS);
    for (int c; (c = cli_args_next(&a)) != -1;) {
        if (c != 'h') return CLI_USAGE;
        fputs(INFO_HELP, stdout);
        return 0;
    }
    if (cli_args_positional(&a, NULL, 0) < 0) return CLI_USAGE;
    cb_blas_print_info(stdout);
    char buf[4096];
    cb_ops_info(buf, sizeof buf);
    fputs(buf, stdout);
    printf("mpi: %s\n", cb_comm_have_mpi() ? "yes (mpirun -np N colbert train|prepare|eval)"
                                            : "no (built without MPI: one process)");
    printf("curve png: %s\n", cb_plot_have_png() ? "yes (RUN/curve.png beside RUN/curve.svg)"
                                                 : "no (built without cairo: RUN/curve.svg only)");
    return 0;
}
