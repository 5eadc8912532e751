/* comm.c: the process's communicator (comm.h), the serial backend (one
 * process: every collective is a copy or nothing) and the helpers. */
#include "comm.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

volatile sig_atomic_t cb_comm_stop_flag;

static size_t type_size(comm_type t) {
    switch (t) {
    case COMM_F32: case COMM_I32: return 4;
    case COMM_F64: case COMM_I64: return 8;
    case COMM_U8: return 1;
    }
    CB_ASSERT(0);
    return 0;
}

static void serial_allreduce(cb_comm *c, void *buf, size_t n, comm_type t, comm_op op) {
    (void)c; (void)buf; (void)n; (void)t; (void)op;
}
static void serial_allgatherv(cb_comm *c, void *recv, const void *send, const size_t *counts, comm_type t) {
    (void)c;
    if (recv != send) memmove(recv, send, counts[0] * type_size(t));
}
static void serial_reduce_scatterv(cb_comm *c, void *recv, const void *send, const size_t *counts, comm_type t) {
    (void)c;
    if (recv != send) memmove(recv, send, counts[0] * type_size(t));
}
static void serial_bcast(cb_comm *c, void *buf, size_t n, comm_type t, int root) {
    (void)c; (void)buf; (void)n; (void)t;
    CB_ASSERT(root == 0);
}
static void serial_barrier(cb_comm *c) { (void)c; }
static void serial_abort(cb_comm *c, int status) {
    (void)c;
    exit(status);   /* deliberate: cb_comm_abort ends the job (comm.h), here a job of one process */
}
static void serial_finalize(cb_comm *c) { (void)c; }

static const comm_backend serial_backend = {
    .name = "serial",
    .allreduce = serial_allreduce,
    .allgatherv = serial_allgatherv,
    .reduce_scatterv = serial_reduce_scatterv,
    .bcast = serial_bcast,
    .barrier = serial_barrier,
    .abort = serial_abort,
    .finalize = serial_finalize,
};

static cb_comm serial = {.fn = &serial_backend, .rank = 0, .size = 1, .local_size = 1,
                         .desc = "one process (no MPI)"};
static cb_comm *world;

cb_comm *cb_comm_serial(void) { return &serial; }
cb_comm *cb_comm_world(void) { return world ? world : &serial; }

int cb_comm_have_mpi(void) {
#ifdef CB_MPI
    return 1;
#else
    return 0;
#endif
}

/* Started by an MPI launcher: Open MPI's mpirun, or a PMI/PMIx one (MPICH's
 * hydra, Slurm's srun). */
static int launched(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i])) return 1;
    return 0;
}

cb_comm *cb_comm_init(int *argc, char ***argv, cb_err *err) {
    if (world) return world;
    if (!launched()) return world = &serial;
#ifdef CB_MPI
    world = cb_comm_mpi_open(argc, argv, err);
    return world;
#else
    (void)argc; (void)argv;
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (n && atoi(n) > 1) {
        cb_err_set(err, "started by mpirun with %s ranks, but this colbert was built without MPI "
                   "(HINT: install Open MPI (libopenmpi-dev, openmpi-bin) and rebuild with make)", n);
        return NULL;
    }
    return world = &serial;
#endif
}

void cb_comm_finalize(cb_comm *c) {
    if (c) c->fn->finalize(c);
}

void cb_comm_signal_received(void) { cb_comm_stop_flag = 1; }

long cb_comm_max_long(cb_comm *c, long x) {
    int64_t v = x;
    cb_comm_allreduce(c, &v, 1, COMM_I64, COMM_MAX);
    return (long)v;
}

int cb_comm_agree(cb_comm *c, int rc, cb_err *err) {
    if (c->size == 1) return rc;
    int64_t v[2] = {rc != 0, c->rank == 0 && rc != 0};
    cb_comm_allreduce(c, v, 2, COMM_I64, COMM_MAX);
    if (!v[0]) return 0;
    /* each distinct message once: rank 0's is the caller's to print */
    char root[sizeof err->msg];
    memcpy(root, err->msg, sizeof root);
    cb_comm_bcast(c, root, sizeof root, COMM_U8, 0);
    root[sizeof root - 1] = 0;
    if (c->rank != 0 && rc && (!v[1] || strcmp(root, err->msg)))
        fprintf(stderr, "colbert: error: rank %d of %d: %s\n", c->rank, c->size, err->msg);
    if (!rc || c->rank != 0) cb_err_set(err, "%s", v[1] ? root : "another rank failed (its error is above)");
    return -1;
}

void cb_comm_share(const cb_comm *c, int r, size_t n, size_t unit, size_t *lo, size_t *hi) {
    if (unit < 1) unit = 1;
    size_t units = (n + unit - 1) / unit, P = (size_t)c->size, R = (size_t)r;
    size_t a = units * R / P, b = units * (R + 1) / P;
    *lo = a * unit < n ? a * unit : n;
    *hi = b * unit < n ? b * unit : n;
}
