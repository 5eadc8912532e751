/* comm.h: communication between the processes of a data-parallel run
 * (llm.c's design). One process per rank; every rank holds the whole model
 * and runs a share of each batch; the collectives below keep them in step.
 *
 * Backends. A communicator is a struct of function pointers, as a compute
 * device is (ops.h):
 *   - serial: one process (rank 0 of 1); every collective is a copy or
 *     nothing. What colbert.c is without mpirun, and in builds without MPI.
 *   - MPI (comm_mpi.c, built with -DCB_MPI when `make` finds mpicc): the
 *     ranks mpirun started (MPI_COMM_WORLD).
 * NCCL will later carry the same calls between GPUs.
 *
 * Buffers are host memory here (the CPU backend's device memory is host
 * memory); a GPU backend will pass device pointers to a NCCL communicator.
 * Counts are elements of the given type; `counts` arrays have one entry per
 * rank. Ranks call every collective in the same order with the same counts.
 *
 * Errors. A collective cannot fail and return: when MPI reports an error
 * (a rank died, the network broke) the rank prints a clear message and ends
 * the whole job (MPI_Abort); mpirun itself ends every rank when one dies.
 * A watchdog thread ends a rank that stays blocked in a collective after a
 * stop signal (COLBERT_COMM_STOP_TIMEOUT seconds, default 30: its peers are
 * gone) or, when COLBERT_COMM_TIMEOUT is set, longer than that many seconds
 * in any collective (a hung peer).
 */
#ifndef CB_COMM_H
#define CB_COMM_H
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include "common.h"

typedef enum { COMM_F32, COMM_F64, COMM_I32, COMM_I64, COMM_U8 } comm_type;
typedef enum { COMM_SUM, COMM_MAX, COMM_MIN } comm_op;

typedef struct cb_comm cb_comm;

/* One function pointer per collective; see the cb_comm_* wrappers. */
typedef struct comm_backend {
    const char *name;
    void (*allreduce)(cb_comm *c, void *buf, size_t n, comm_type t, comm_op op);
    void (*allgatherv)(cb_comm *c, void *recv, const void *send, const size_t *counts, comm_type t);
    void (*reduce_scatterv)(cb_comm *c, void *recv, const void *send, const size_t *counts, comm_type t);
    void (*bcast)(cb_comm *c, void *buf, size_t n, comm_type t, int root);
    void (*barrier)(cb_comm *c);
    void (*abort)(cb_comm *c, int status);
    void (*finalize)(cb_comm *c);
} comm_backend;

struct cb_comm {
    const comm_backend *fn;
    int rank, size;
    int local_size;             /* ranks on this machine (threads are shared among them) */
    volatile int patient;       /* > 0: the watchdog allows long waits (rank 0 is writing) */
    char desc[160];             /* one line: what this communicator is */
    void *impl;
};

/* The process's communicator: MPI when this build has it and the process
 * was started by mpirun (or another MPI launcher), else the serial one.
 * Call once, early in main (it may call MPI_Init_thread); later calls
 * return the same. NULL + err when MPI cannot start. */
cb_comm *cb_comm_init(int *argc, char ***argv, cb_err *err);
/* The communicator cb_comm_init returned, or the serial one before it. */
cb_comm *cb_comm_world(void);
/* The single-process communicator (rank 0 of 1). */
cb_comm *cb_comm_serial(void);
/* End MPI (MPI_Finalize) if it was started; the serial one ignores it. */
void cb_comm_finalize(cb_comm *c);
/* 1 when this build can run under mpirun. */
int cb_comm_have_mpi(void);
/* Tell the watchdog that a stop signal (SIGINT, SIGTERM) arrived: from
 * now on a collective blocked longer than COLBERT_COMM_STOP_TIMEOUT means
 * the other ranks are gone. Async-signal-safe. */
void cb_comm_signal_received(void);

/* ---- collectives --------------------------------------------------------- */

/* In place: buf[n] = op over the ranks of buf[n] */
static inline void cb_comm_allreduce(cb_comm *c, void *buf, size_t n, comm_type t, comm_op op) {
    if (n) c->fn->allreduce(c, buf, n, t, op);
}
/* recv = the ranks' send buffers back to back in rank order; rank r sends
 * counts[r] elements (send may point into recv at rank r's place) */
static inline void cb_comm_allgatherv(cb_comm *c, void *recv, const void *send, const size_t *counts, comm_type t) {
    c->fn->allgatherv(c, recv, send, counts, t);
}
/* send [sum counts] on every rank; recv [counts[rank]] = the sum over the
 * ranks of their send's block for this rank (blocks in rank order) */
static inline void cb_comm_reduce_scatterv(cb_comm *c, void *recv, const void *send, const size_t *counts,
                                        comm_type t) {
    c->fn->reduce_scatterv(c, recv, send, counts, t);
}
/* buf[n] = root's buf[n] */
static inline void cb_comm_bcast(cb_comm *c, void *buf, size_t n, comm_type t, int root) {
    if (n) c->fn->bcast(c, buf, n, t, root);
}
static inline void cb_comm_barrier(cb_comm *c) { c->fn->barrier(c); }
/* End every rank of the job with exit status `status` (MPI_Abort). */
static inline void cb_comm_abort(cb_comm *c, int status) { c->fn->abort(c, status); }

/* ---- helpers ------------------------------------------------------------- */

/* The largest of x over the ranks (an agreement: any rank's 1 makes 1). */
long cb_comm_max_long(cb_comm *c, long x);
/* Whether any rank failed (rc != 0), every rank calling it with its own
 * rc and err. A rank that failed with its own message prints it unless it
 * is rank 0's (rank 0 keeps it in err, the caller's to print); on the
 * others err becomes rank 0's message, or "another rank failed" when rank
 * 0 did not fail. Returns 0 when none failed, else -1 on every rank. One
 * process: rc. */
int cb_comm_agree(cb_comm *c, int rc, cb_err *err);
/* Rank r's share of n items, in whole units of `unit` items (the last rank
 * may get a partial unit): [*lo, *hi). Contiguous, in rank order, covering
 * 0 .. n. */
void cb_comm_share(const cb_comm *c, int r, size_t n, size_t unit, size_t *lo, size_t *hi);

/* ---- for the backends ---------------------------------------------------- */

/* comm_mpi.c: MPI_COMM_WORLD of a process mpirun started (MPI_Init_thread
 * here), or NULL + err. Only in builds with CB_MPI. */
cb_comm *cb_comm_mpi_open(int *argc, char ***argv, cb_err *err);
/* Set by cb_comm_signal_received; read by the MPI watchdog. */
extern volatile sig_atomic_t cb_comm_stop_flag;
#endif
