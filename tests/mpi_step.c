/* mpi_step.c: the data-parallel training step (step.h, comm.h), run by
 * tests/test_mpi.py under `mpirun -np 2` (one thread per rank) on the real
 * all-MiniLM-L6-v2 weights and the 8 NFCorpus triplets of
 * tests/ref/gen_train_step.py, each rank holding 4 of them:
 *   - ib scope global (in-batch negatives, and PyLate's contrastive loss):
 *     the loss summed over the ranks and the summed gradients equal the
 *     ONE-process PyTorch reference (gen_train_step.py: loss rel err 1e-5,
 *     every gradient 1e-3, as test_step.c); 10 AdamW steps follow its
 *     losses and final parameters;
 *   - ib scope local: colbert-ai's per-GPU loss under DDP, against
 *     gen_mpi_step.py (loss, gradients, 3 AdamW steps);
 *   - dropout on, accumsteps 2: the ranks together give the losses and
 *     gradients of a one-process step run on each rank (rel 1e-5): the
 *     dropout masks follow the triples, not the ranks.
 * Not a test_* program: tests/run.sh would start it without mpirun. */
#include "ref_step.h"
#include "comm.h"
#include "safetensors.h"

static st_file ref, mref;
static cb_comm *comm;

/* ib: 1 in-batch negatives, 2 contrastive; local: --ib-scope local */
static int make_step(step_state *s, const char *model_dir, const refbatch *r, cb_comm *c, int ib, int local,
                     int dropout, int accum) {
    step_config sc;
    ref_step_config(&sc, r, ib, accum);
    sc.dropout = dropout;
    sc.seed = 12345;
    sc.comm = c;
    sc.ib_local = local;
    return ref_step_init(s, model_dir, r->linear, &sc);
}

/* One step's micro-batches on this rank's share; returns the loss summed
 * over the ranks (the global batch's loss). */
static double run_micro(step_state *s, const refbatch *r, int accum) {
    int per = r->B / accum / comm->size;
    double loss = 0;
    for (int a = 0; a < accum; a++) {
        step_batch b = ref_batch_slice(r, a * per * comm->size + comm->rank * per, per, 0);
        loss += cb_step_micro(s, &b, NULL);
    }
    cb_comm_allreduce(comm, &loss, 1, COMM_F64, COMM_SUM);
    return loss;
}

/* The gradients summed over the ranks, back into the step (what
 * cb_step_update does before clipping). */
static void sum_grads(step_state *s) {
    float *g = malloc(s->n * sizeof(float));
    cb_step_get(s, STEP_GRADS, g);
    cb_comm_allreduce(comm, g, s->n, COMM_F32, COMM_SUM);
    cb_step_set(s, STEP_GRADS, g);
    free(g);
}

static void gradient_case(const char *model_dir, const refbatch *r, const char *name, int ib, int local,
                          const st_file *f, const char *ref_name) {
    step_state s;
    if (make_step(&s, model_dir, r, comm, ib, local, 0, 1)) { CHECK(0); return; }
    double loss = run_micro(&s, r, 1);
    char key[96];
    snprintf(key, sizeof key, "%s.loss", ref_name);
    double want = *(const double *)ref_raw(f, key, NULL), e = fabs(loss - want) / fabs(want);
    if (!comm->rank)
        printf("mpi_step: %-12s %d ranks: loss %.6f vs PyTorch %.6f, rel err %.2g\n", name, comm->size, loss, want, e);
    CHECK_MSG(e <= 1e-5, "%s: loss rel err %g", name, e);
    sum_grads(&s);
    snprintf(key, sizeof key, "%s.grad.", ref_name);
    ref_compare_block(&s, f, STEP_GRADS, key, 1e-3, 0, 1e-4, !comm->rank);
    cb_step_free(&s);
}

static void adam_case(const char *model_dir, const refbatch *r, const char *name, int local, const st_file *f,
                      const char *prefix) {
    step_state s;
    if (make_step(&s, model_dir, r, comm, 1, local, 0, 1)) { CHECK(0); return; }
    char key[96];
    snprintf(key, sizeof key, "%s.losses", prefix);
    size_t nl;
    const double *losses = ref_raw(f, key, &nl);
    double worst = 0;
    for (size_t k = 0; k < nl; k++) {
        double loss = run_micro(&s, r, 1);
        cb_step_update(&s, NULL);
        double d = fabs(loss - losses[k]);
        if (d > worst) worst = d;
        CHECK_MSG(d <= 1e-4, "%s AdamW step %zu: loss %.6f vs %.6f", name, k, loss, losses[k]);
    }
    if (!comm->rank)
        printf("mpi_step: %-12s %zu AdamW steps on %d ranks: losses %.4f .. %.6f, worst step loss diff %.2g\n", name,
               nl, comm->size, losses[0], losses[nl - 1], worst);
    snprintf(key, sizeof key, "%s.param.", prefix);
    ref_compare_block(&s, f, STEP_PARAMS, key, 1e-4, 0, (double)nl * 1e-4 * 1.5, !comm->rank);
    cb_step_free(&s);
}

/* Dropout on, accumsteps 2, two optimizer steps: the ranks against one
 * process (the serial communicator, on every rank). */
static void dropout_case(const char *model_dir, const refbatch *r) {
    step_state par, one;
    if (make_step(&par, model_dir, r, comm, 1, 0, 1, 2) || make_step(&one, model_dir, r, cb_comm_serial(), 1, 0, 1, 2)) {
        CHECK(0);
        return;
    }
    float *a = malloc(par.n * sizeof(float)), *b = malloc(par.n * sizeof(float));
    double worst_l = 0, worst_g = 0;
    for (int step = 0; step < 2; step++) {
        double lp = run_micro(&par, r, 2), l1 = 0;
        for (int m = 0; m < 2; m++) {
            step_batch bt = ref_batch_slice(r, m * r->B / 2, r->B / 2, 0);
            l1 += cb_step_micro(&one, &bt, NULL);
        }
        sum_grads(&par);
        cb_step_get(&par, STEP_GRADS, a);
        cb_step_get(&one, STEP_GRADS, b);
        double e = fabs(lp - l1) / fabs(l1), g = ref_rel_l2(a, b, par.n, NULL);
        worst_l = fmax(worst_l, e);
        worst_g = fmax(worst_g, g);
        CHECK_MSG(e <= 1e-5 && g <= 1e-5, "dropout step %d: loss %.7f vs %.7f (rel %g), gradients rel %g", step, lp,
                  l1, e, g);
        /* the gradients are summed already: update both alike */
        cb_comm *keep = par.comm;
        par.comm = cb_comm_serial();
        cb_step_update(&par, NULL);
        par.comm = keep;
        cb_step_update(&one, NULL);
    }
    if (!comm->rank)
        printf("mpi_step: dropout on, accumsteps 2, %d ranks vs one process: loss rel err %.2g, gradients rel err "
               "%.2g\n", comm->size, worst_l, worst_g);
    free(a);
    free(b);
    cb_step_free(&par);
    cb_step_free(&one);
}

int main(int argc, char **argv) {
    cb_err err = {{0}};
    comm = cb_comm_init(&argc, &argv, &err);
    if (!comm) { fprintf(stderr, "%s\n", err.msg); return 2; }
    const char *model_dir = test_env("COLBERT_MODEL");
    ref_open(&ref, test_env("COLBERT_REF"), "train_step_ref.safetensors");
    ref_open(&mref, test_env("COLBERT_REF"), "mpi_step_ref.safetensors");
    refbatch r;
    ref_batch_open(&r, &ref);
    if (!comm->rank) printf("mpi_step: %s\n", comm->desc);

    gradient_case(model_dir, &r, "ib global", 1, 0, &ref, "ib");
    gradient_case(model_dir, &r, "contrastive", 2, 0, &ref, "contrastive");
    gradient_case(model_dir, &r, "ib local", 1, 1, &mref, "local");
    adam_case(model_dir, &r, "ib global", 0, &ref, "adam");
    adam_case(model_dir, &r, "ib local", 1, &mref, "local.adam");
    dropout_case(model_dir, &r);

    ref_batch_free(&r);
    cb_st_close(&ref);
    cb_st_close(&mref);
    char name[64];
    snprintf(name, sizeof name, "mpi_step (rank %d of %d)", comm->rank, comm->size);
    int rc = test_finish(name);
    cb_comm_finalize(comm);
    return rc;
}
