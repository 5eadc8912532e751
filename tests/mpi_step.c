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
#include "test.h"
#include "ref.h"
#include "comm.h"
#include "model.h"
#include "safetensors.h"
#include "step.h"

static st_file ref, mref;
static cb_comm *comm;

typedef struct refbatch {
    const int32_t *q_ids, *q_mask32, *d_ids, *d_len;
    const float *linear;
    int B, nway, qmax, dmax, dim;
    uint8_t *q_mask;
    size_t *d_off;
} refbatch;

/* The batch of queries [q0, q0 + nq). */
static step_batch slice(const refbatch *r, int q0, int nq) {
    step_batch b = {.nq = nq, .q_ids = r->q_ids + (size_t)q0 * r->qmax, .q_mask = r->q_mask + (size_t)q0 * r->qmax,
                    .d_ids = r->d_ids + r->d_off[q0 * r->nway], .d_len = (const int *)r->d_len + q0 * r->nway};
    return b;
}

/* ib: 1 in-batch negatives, 2 contrastive; local: --ib-scope local */
static int make_step(step_state *s, const char *model_dir, const refbatch *r, cb_comm *c, int ib, int local,
                     int dropout, int accum) {
    cb_err err = {{0}};
    bert_model bert;
    if (cb_bert_load(&bert, cb_ops_cpu(), model_dir, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    tokenizer *tok = cb_tokenizer_load(model_dir, &err);
    if (!tok) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    step_config sc;
    memset(&sc, 0, sizeof sc);
    cb_colbert_config_default(&sc.cc);
    sc.cc.dim = r->dim;
    sc.cc.query_maxlen = r->qmax;
    sc.cc.doc_maxlen = r->dmax;
    sc.lc.nway = r->nway;
    sc.lc.use_ib_negatives = ib == 1;
    sc.lc.contrastive = ib == 2;
    sc.lc.distillation_alpha = 1.0f;
    sc.lc.accumsteps = accum;
    sc.bsize = r->B;
    sc.lr = 1e-4;
    sc.warmup = 3;
    sc.maxsteps = 12;
    sc.dropout = dropout;
    sc.seed = 12345;
    sc.comm = c;
    sc.ib_local = local;
    int rc = cb_step_init(s, &bert, tok, r->linear, 0, &sc, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    cb_tokenizer_free(tok);
    return rc;
}

/* One step's micro-batches on this rank's share; returns the loss summed
 * over the ranks (the global batch's loss). */
static double run_micro(step_state *s, const refbatch *r, int accum) {
    int per = r->B / accum / comm->size;
    double loss = 0;
    for (int a = 0; a < accum; a++) {
        step_batch b = slice(r, a * per * comm->size + comm->rank * per, per);
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

/* Every tensor of block `which` against "<prefix><HF name>" / "<prefix>linear"
 * of f (key.bias: its gradient is rounding noise, checked to be tiny, or
 * its parameter within key_bias_abs). Returns the worst rel err. */
static double compare_block(const step_state *s, const st_file *f, step_block which, const char *prefix, double tol,
                            double key_bias_abs) {
    const bert_config *bc = cb_step_bert_config(s);
    int nt = cb_bert_named_count(bc);
    bert_named *names = malloc((size_t)nt * sizeof *names);
    cb_bert_named_tensors(bc, names);
    float *block = malloc(s->n * sizeof(float));
    cb_step_get(s, which, block);
    double worst = 0;
    char worst_name[128] = "";
    for (int i = 0; i <= nt; i++) {
        const char *nm = i < nt ? names[i].name : "linear";
        size_t off = i < nt ? names[i].offset : cb_step_linear_offset(s);
        size_t cnt = i < nt ? names[i].n : (size_t)s->D * s->H;
        char key[160];
        snprintf(key, sizeof key, "%s%s", prefix, nm);
        size_t n;
        const float *rv = ref_raw(f, key, &n);
        CHECK_MSG(n == cnt, "%s: %zu elements, reference %zu", key, cnt, n);
        if (n != cnt) continue;
        if (strstr(nm, "self.key.bias")) {
            float big = 0;
            for (size_t j = 0; j < n; j++) big = fmaxf(big, fabsf(block[off + j] - rv[j]));
            CHECK_MSG(big <= key_bias_abs, "%s: %.3g > %.3g", key, big, key_bias_abs);
            continue;
        }
        double e = ref_rel_l2(block + off, rv, n, NULL);
        CHECK_MSG(e <= tol, "%s: rel err %.3g > %.3g", key, e, tol);
        if (e > worst || e != e) { worst = e; snprintf(worst_name, sizeof worst_name, "%s", nm); }
    }
    if (!comm->rank) printf("    worst tensor %s rel err %.3g\n", worst_name, worst);
    free(names);
    free(block);
    return worst;
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
    compare_block(&s, f, STEP_GRADS, key, 1e-3, 1e-4);
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
    compare_block(&s, f, STEP_PARAMS, key, 1e-4, (double)nl * 1e-4 * 1.5);
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
            step_batch bt = slice(r, m * r->B / 2, r->B / 2);
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
    const int32_t *cfg = ref_raw(&ref, "config", NULL);
    r.B = cfg[0]; r.nway = cfg[1]; r.qmax = cfg[2]; r.dmax = cfg[3]; r.dim = cfg[4];
    size_t nq_tok, nd;
    r.q_ids = ref_raw(&ref, "q_ids", &nq_tok);
    r.q_mask32 = ref_raw(&ref, "q_mask", NULL);
    r.d_ids = ref_raw(&ref, "d_ids", NULL);
    r.d_len = ref_raw(&ref, "d_len", &nd);
    r.linear = ref_raw(&ref, "linear", NULL);
    r.q_mask = malloc(nq_tok);
    for (size_t i = 0; i < nq_tok; i++) r.q_mask[i] = (uint8_t)r.q_mask32[i];
    r.d_off = malloc((nd + 1) * sizeof(size_t));
    r.d_off[0] = 0;
    for (size_t i = 0; i < nd; i++) r.d_off[i + 1] = r.d_off[i] + (size_t)r.d_len[i];
    if (!comm->rank) printf("mpi_step: %s\n", comm->desc);

    gradient_case(model_dir, &r, "ib global", 1, 0, &ref, "ib");
    gradient_case(model_dir, &r, "contrastive", 2, 0, &ref, "contrastive");
    gradient_case(model_dir, &r, "ib local", 1, 1, &mref, "local");
    adam_case(model_dir, &r, "ib global", 0, &ref, "adam");
    adam_case(model_dir, &r, "ib local", 1, &mref, "local.adam");
    dropout_case(model_dir, &r);

    free(r.q_mask);
    free(r.d_off);
    cb_st_close(&ref);
    cb_st_close(&mref);
    char name[64];
    snprintf(name, sizeof name, "mpi_step (rank %d of %d)", comm->rank, comm->size);
    int rc = test_finish(name);
    cb_comm_finalize(comm);
    return rc;
}
