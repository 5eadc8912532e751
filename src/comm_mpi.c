/* comm_mpi.c: the MPI backend of comm.h (built with -DCB_MPI): the ranks of
 * MPI_COMM_WORLD. Errors come back to us (MPI_ERRORS_RETURN) so that a
 * failed collective ends the job with our message instead of a hang or a
 * stack trace; a watchdog thread ends a rank that waits for peers that
 * are gone (comm.h). Only the main thread calls MPI (MPI_THREAD_FUNNELED);
 * OpenMP threads compute between the calls. */
#include "comm.h"

#ifdef CB_MPI
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct mpi_impl {
    MPI_Comm comm;
    _Atomic long long enter_ms;     /* when the current collective began; 0: none */
    const char *_Atomic what;       /* its name */
    long long stop_ms;              /* when the watchdog saw the stop signal */
    double stop_timeout, timeout;   /* seconds (timeout 0: off) */
    pthread_t watchdog;
    int have_watchdog;
    atomic_int quit;
    int *ic;                        /* [2 * size]: int counts, then displacements, of the v-collectives */
} mpi_impl;

static cb_comm mpi_world;
static mpi_impl impl;

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void enter(mpi_impl *m, const char *what) {
    atomic_store(&m->what, what);
    atomic_store(&m->enter_ms, now_ms());
}
static void leave(mpi_impl *m) { atomic_store(&m->enter_ms, 0); }

/* A failed MPI call: the job cannot go on. */
static void check(cb_comm *c, int rc, const char *what) {
    if (rc == MPI_SUCCESS) return;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
    fprintf(stderr, "colbert: error: rank %d of %d: %s failed: %s (HINT: another rank has probably died; "
            "its own error comes first)\n", c->rank, c->size, what, msg);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    _exit(1);   /* deliberate: a rank that went on would leave its peers waiting; MPI_Abort should not return */
}

static void *watchdog(void *arg) {
    cb_comm *c = arg;
    mpi_impl *m = c->impl;
    while (!atomic_load(&m->quit)) {
        usleep(200 * 1000);
        long long e = atomic_load(&m->enter_ms), now = now_ms();
        if (cb_comm_stop_flag && !m->stop_ms) m->stop_ms = now;
        if (!e || c->patient > 0) continue;
        double blocked = (double)(now - e) / 1000;
        double since_stop = m->stop_ms ? (double)(now - (e > m->stop_ms ? e : m->stop_ms)) / 1000 : 0;
        const char *why = NULL;
        if (m->stop_ms && since_stop > m->stop_timeout) why = "after the stop signal";
        else if (m->timeout > 0 && blocked > m->timeout) why = "(COLBERT_COMM_TIMEOUT)";
        if (!why) continue;
        fprintf(stderr, "colbert: error: rank %d of %d: no answer from the other ranks for %.0f s in %s %s; "
                "ending (HINT: a rank died or hangs; the last complete checkpoint is intact)\n", c->rank,
                c->size, blocked, atomic_load(&m->what), why);
        fflush(stderr);
        /* deliberate: the peers are gone and this rank would wait forever; not
         * MPI_Abort: only the main thread calls MPI; mpirun ends the others */
        _exit(1);
    }
    return NULL;
}

static MPI_Datatype dtype(comm_type t) {
    switch (t) {
    case COMM_F32: return MPI_FLOAT;
    case COMM_F64: return MPI_DOUBLE;
    case COMM_I32: return MPI_INT32_T;
    case COMM_I64: return MPI_INT64_T;
    case COMM_U8: return MPI_UINT8_T;
    }
    CB_ASSERT(0);
    return MPI_BYTE;
}
static size_t tsize(comm_type t) { return t == COMM_F64 || t == COMM_I64 ? 8 : t == COMM_U8 ? 1 : 4; }
static MPI_Op mop(comm_op op) { return op == COMM_SUM ? MPI_SUM : op == COMM_MAX ? MPI_MAX : MPI_MIN; }

/* MPI counts are int: large buffers go in chunks */
#define CHUNK ((size_t)1 << 30)

static void mpi_allreduce(cb_comm *c, void *buf, size_t n, comm_type t, comm_op op) {
    mpi_impl *m = c->impl;
    enter(m, "MPI_Allreduce");
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        check(c, MPI_Allreduce(MPI_IN_PLACE, (char *)buf + i * tsize(t), (int)k, dtype(t), mop(op), m->comm),
              "MPI_Allreduce");
    }
    leave(m);
}

static void mpi_bcast(cb_comm *c, void *buf, size_t n, comm_type t, int root) {
    mpi_impl *m = c->impl;
    enter(m, "MPI_Bcast");
    for (size_t i = 0; i < n; i += CHUNK) {
        size_t k = n - i < CHUNK ? n - i : CHUNK;
        check(c, MPI_Bcast((char *)buf + i * tsize(t), (int)k, dtype(t), root, m->comm), "MPI_Bcast");
    }
    leave(m);
}

/* counts and displacements as int, or 0 when they do not fit */
static int int_counts(const cb_comm *c, const size_t *counts, int *ic, int *id) {
    size_t off = 0;
    for (int r = 0; r < c->size; r++) {
        if (counts[r] > INT_MAX || off > INT_MAX) return 0;
        ic[r] = (int)counts[r];
        id[r] = (int)off;
        off += counts[r];
    }
    return 1;
}

static void mpi_allgatherv(cb_comm *c, void *recv, const void *send, const size_t *counts, comm_type t) {
    mpi_impl *m = c->impl;
    int *ic = m->ic, *id = ic + c->size;
    size_t es = tsize(t), mine = 0;
    for (int r = 0; r < c->rank; r++) mine += counts[r];
    char *at = (char *)recv + mine * es;
    if (int_counts(c, counts, ic, id)) {
        enter(m, "MPI_Allgatherv");
        check(c, MPI_Allgatherv(send == at ? MPI_IN_PLACE : send, ic[c->rank], dtype(t), recv, ic, id, dtype(t),
                                m->comm), "MPI_Allgatherv");
        leave(m);
    } else {   /* over 2^31 elements: each rank's part broadcast in chunks */
        if (send != at) memmove(at, send, counts[c->rank] * es);
        size_t off = 0;
        for (int r = 0; r < c->size; r++) {
            mpi_bcast(c, (char *)recv + off * es, counts[r], t, r);
            off += counts[r];
        }
    }
}

static void mpi_reduce_scatterv(cb_comm *c, void *recv, const void *send, const size_t *counts, comm_type t) {
    mpi_impl *m = c->impl;
    int *ic = m->ic, *id = ic + c->size;
    size_t es = tsize(t), total = 0;
    for (int r = 0; r < c->size; r++) total += counts[r];
    if (int_counts(c, counts, ic, id) && total <= INT_MAX) {
        enter(m, "MPI_Reduce_scatter");
        check(c, MPI_Reduce_scatter(send, recv, ic, dtype(t), MPI_SUM, m->comm), "MPI_Reduce_scatter");
        leave(m);
    } else {   /* over 2^31 elements: block r reduced onto rank r in chunks */
        size_t off = 0;
        enter(m, "MPI_Reduce");
        for (int r = 0; r < c->size; r++) {
            for (size_t i = 0; i < counts[r]; i += CHUNK) {
                size_t k = counts[r] - i < CHUNK ? counts[r] - i : CHUNK;
                check(c, MPI_Reduce((const char *)send + (off + i) * es, (char *)recv + i * es, (int)k, dtype(t),
                                    MPI_SUM, r, m->comm), "MPI_Reduce");
            }
            off += counts[r];
        }
        leave(m);
    }
}

static void mpi_barrier(cb_comm *c) {
    mpi_impl *m = c->impl;
    enter(m, "MPI_Barrier");
    check(c, MPI_Barrier(m->comm), "MPI_Barrier");
    leave(m);
}

static void mpi_abort(cb_comm *c, int status) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(((mpi_impl *)c->impl)->comm, status);
    _exit(status);   /* deliberate: cb_comm_abort ends the job (comm.h); MPI_Abort should not return */
}

static void mpi_finalize(cb_comm *c) {
    mpi_impl *m = c->impl;
    if (m->have_watchdog) {
        atomic_store(&m->quit, 1);
        pthread_join(m->watchdog, NULL);
        m->have_watchdog = 0;
    }
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
    free(m->ic);
    m->ic = NULL;
}

static const comm_backend mpi_backend = {
    .name = "mpi",
    .allreduce = mpi_allreduce,
    .allgatherv = mpi_allgatherv,
    .reduce_scatterv = mpi_reduce_scatterv,
    .bcast = mpi_bcast,
    .barrier = mpi_barrier,
    .abort = mpi_abort,
    .finalize = mpi_finalize,
};

static double env_seconds(const char *name, double dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end;
    double x = strtod(v, &end);
    return *end || !(x >= 0) ? dflt : x;
}

cb_comm *cb_comm_mpi_open(int *argc, char ***argv, cb_err *err) {
    int provided = 0, rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) {
        cb_err_set(err, "MPI_Init_thread failed (error %d)", rc);
        return NULL;
    }
    cb_comm *c = &mpi_world;
    mpi_impl *m = &impl;
    m->comm = MPI_COMM_WORLD;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(m->comm, &c->rank);
    MPI_Comm_size(m->comm, &c->size);
    MPI_Comm local;
    c->local_size = 1;
    if (MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
        MPI_Comm_size(local, &c->local_size);
        MPI_Comm_free(&local);
    }
    char lib[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(lib, &len);
    lib[strcspn(lib, ",\n")] = 0;
    snprintf(c->desc, sizeof c->desc, "MPI: rank %d of %d, %d on this machine (%.80s)", c->rank, c->size,
             c->local_size, lib);
    /* The collectives' scratch, allocated here where running out of memory
     * is an error the caller reports: a collective has no way to return
     * one, and a rank that left it would leave the others waiting. (On
     * this error the process ends without MPI_Finalize; mpirun then ends
     * the other ranks.) */
    if (!(m->ic = cb_malloc(2 * (size_t)c->size * sizeof(int), "MPI's counts", err))) return NULL;
    c->fn = &mpi_backend;
    c->impl = m;
    m->stop_timeout = env_seconds("COLBERT_COMM_STOP_TIMEOUT", 30);
    m->timeout = env_seconds("COLBERT_COMM_TIMEOUT", 0);
    if (c->size > 1 && pthread_create(&m->watchdog, NULL, watchdog, c) == 0) m->have_watchdog = 1;
    return c;
}

#else
/* Built without MPI: comm.c never calls this. */
cb_comm *cb_comm_mpi_open(int *argc, char ***argv, cb_err *err) {
    (void)argc; (void)argv;
    cb_err_set(err, "this build has no MPI");
    return NULL;
}
#endif
