/* test_step.c: whole ColBERT training steps against PyTorch
 * (tests/ref/gen_train_step.py): the real all-MiniLM-L6-v2 weights, 8 real
 * NFCorpus triplets, nway 2, dropout off on both sides.
 *   - loss rel err <= 1e-5 and every parameter gradient (101 BERT tensors +
 *     linear) rel err <= 1e-3, for: no in-batch negatives, in-batch
 *     negatives, KL with teacher scores, ReLU, and a fine-tune start from a
 *     ColBERT checkpoint written by the reference;
 *   - accumsteps 2 gives the gradients of accumsteps 1 (no in-batch
 *     negatives, where colbert-ai's micro-batches do not change the loss);
 *   - 10 AdamW steps with warmup: every step's loss within 1e-4, the final
 *     parameters within 1e-4 relative. */
#include "test.h"
#include "ref.h"
#include "model.h"
#include "safetensors.h"
#include "step.h"

static st_file ref;
static const void *raw(const char *name, size_t *n) { return ref_raw(&ref, name, n); }

/* Compare every tensor of the step's block `which` (gradients or parameters)
 * with reference tensors "<prefix><HF name>" and "<prefix>linear". key.bias
 * gradients are analytically zero (softmax ignores a constant per row):
 * they are checked to be ~0 instead. Returns the worst rel err. */
static double compare_block(const step_state *s, step_block which, const char *prefix, double tol,
                            int key_bias_zero, double key_bias_abs) {
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
        const float *r = raw(key, &n);
        CHECK_MSG(n == cnt, "%s: %zu elements, reference %zu", key, cnt, n);
        if (n != cnt) continue;
        if (strstr(nm, "self.key.bias")) {
            float big = 0;
            for (size_t j = 0; j < n; j++)
                big = fmaxf(big, key_bias_zero ? fmaxf(fabsf(block[off + j]), fabsf(r[j]))
                                               : fabsf(block[off + j] - r[j]));
            CHECK_MSG(big <= key_bias_abs, "%s: %.3g > %.3g", key, big, key_bias_abs);
            continue;
        }
        double e = ref_rel_l2(block + off, r, n, NULL);
        CHECK_MSG(e <= tol, "%s: rel err %.3g > %.3g", key, e, tol);
        if (e > worst || e != e) { worst = e; snprintf(worst_name, sizeof worst_name, "%s", nm); }
    }
    printf("    worst tensor %s rel err %.3g\n", worst_name, worst);
    free(names);
    free(block);
    return worst;
}

typedef struct refbatch {
    const int32_t *q_ids, *q_mask32, *d_ids, *d_len;
    const float *teacher, *linear;
    int B, nway, qmax, dmax, dim;
    uint8_t *q_mask;
    size_t *d_off;
} refbatch;

/* The batch of queries [q0, q0 + nq). */
static step_batch slice(const refbatch *r, int q0, int nq, int teacher) {
    step_batch b = {.nq = nq, .q_ids = r->q_ids + (size_t)q0 * r->qmax,
                    .q_mask = r->q_mask + (size_t)q0 * r->qmax,
                    .d_ids = r->d_ids + r->d_off[q0 * r->nway],
                    .d_len = (const int *)r->d_len + q0 * r->nway,
                    .teacher = teacher ? r->teacher + q0 * r->nway : NULL};
    return b;
}

static int make_step(step_state *s, const char *model_dir, const float *linear, const refbatch *r,
                     int ib, int relu, int accum, float alpha, double lr) {
    cb_err err = {{0}};
    bert_model bert;
    if (cb_bert_load(&bert, cb_ops_cpu(), model_dir, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    tokenizer *tok = cb_tokenizer_load(model_dir, &err);
    if (!tok) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    step_config c;
    memset(&c, 0, sizeof c);
    cb_colbert_config_default(&c.cc);
    c.cc.dim = r->dim;
    c.cc.query_maxlen = r->qmax;
    c.cc.doc_maxlen = r->dmax;
    c.cc.relu = relu;
    c.lc.nway = r->nway;
    c.lc.use_ib_negatives = ib == 1;
    c.lc.contrastive = ib == 2;   /* PyLate's loss */
    c.lc.distillation_alpha = alpha;
    c.lc.accumsteps = accum;
    c.bsize = r->B;
    c.lr = lr;
    c.warmup = 3;
    c.maxsteps = 12;
    c.dropout = 0;
    int rc = cb_step_init(s, &bert, tok, linear, 0, &c, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    cb_tokenizer_free(tok);
    return rc;
}

static void run_case(const char *model_dir, const refbatch *r, const char *name, int ib, int relu,
                     int teacher, float alpha, int accum, const float *linear, const char *ref_name) {
    step_state s;
    if (make_step(&s, model_dir, linear, r, ib, relu, accum, alpha, 1e-4)) { CHECK(0); return; }
    double loss = 0;
    int mb = r->B / accum;
    for (int k = 0; k < accum; k++) {
        step_batch b = slice(r, k * mb, mb, teacher);
        loss += cb_step_micro(&s, &b, NULL);
    }
    char key[64];
    snprintf(key, sizeof key, "%s.loss", ref_name);
    double want = *(const double *)raw(key, NULL);
    double lerr = fabs(loss - want) / fabs(want);
    printf("test_step: %-8s (ib %d relu %d kl %d accum %d): loss %.6f vs PyTorch %.6f, rel err %.2g\n",
           name, ib, relu, teacher, accum, loss, want, lerr);
    CHECK_MSG(lerr <= 1e-5, "%s: loss rel err %g", name, lerr);
    snprintf(key, sizeof key, "%s.grad.", ref_name);
    compare_block(&s, STEP_GRADS, key, 1e-3, 1, 1e-4);
    cb_step_free(&s);
}

int main(void) {
    const char *model_dir = test_env("COLBERT_MODEL");
    const char *ref_dir = test_env("COLBERT_REF");
    char path[4096];
    snprintf(path, sizeof path, "%s/train_step_ref.safetensors", ref_dir);
    cb_err err = {{0}};
    if (cb_st_open(&ref, path, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    refbatch r;
    const int32_t *cfg = raw("config", NULL);
    r.B = cfg[0]; r.nway = cfg[1]; r.qmax = cfg[2]; r.dmax = cfg[3]; r.dim = cfg[4];
    size_t nq_tok, nd;
    r.q_ids = raw("q_ids", &nq_tok);
    r.q_mask32 = raw("q_mask", NULL);
    r.d_ids = raw("d_ids", NULL);
    r.d_len = raw("d_len", &nd);
    r.teacher = raw("teacher", NULL);
    r.linear = raw("linear", NULL);
    r.q_mask = malloc(nq_tok);
    for (size_t i = 0; i < nq_tok; i++) r.q_mask[i] = (uint8_t)r.q_mask32[i];
    r.d_off = malloc((nd + 1) * sizeof(size_t));
    r.d_off[0] = 0;
    for (size_t i = 0; i < nd; i++) r.d_off[i + 1] = r.d_off[i] + (size_t)r.d_len[i];

    run_case(model_dir, &r, "ce", 0, 0, 0, 1.0f, 1, r.linear, "ce");
    run_case(model_dir, &r, "ce-acc2", 0, 0, 0, 1.0f, 2, r.linear, "ce");
    run_case(model_dir, &r, "ib", 1, 0, 0, 1.0f, 1, r.linear, "ib");
    run_case(model_dir, &r, "kl", 0, 0, 1, 0.5f, 1, r.linear, "kl");
    run_case(model_dir, &r, "relu", 1, 1, 0, 1.0f, 1, r.linear, "relu");
    run_case(model_dir, &r, "contrastive", 2, 0, 0, 1.0f, 1, r.linear, "contrastive");

    /* fine-tune start from the reference's ColBERT checkpoint: its encoder
     * (bert.* keys) and its own linear.weight */
    char ckpt[4096], st_path[4200];
    snprintf(ckpt, sizeof ckpt, "%s/colbert_ckpt", ref_dir);
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", ckpt);
    st_file cf;
    if (cb_st_open(&cf, st_path, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    float *lin = malloc((size_t)r.dim * 384 * sizeof(float));
    int64_t lshape[2] = {r.dim, 384};
    CHECK(cb_st_read_f32(&cf, "linear.weight", lin, 2, lshape, &err) == 0);
    cb_st_close(&cf);
    run_case(ckpt, &r, "finetune", 1, 0, 0, 1.0f, 1, lin, "finetune");
    free(lin);

    /* 10 AdamW steps, warmup 3, decay to 0 at 12, in-batch negatives */
    step_state s;
    if (make_step(&s, model_dir, r.linear, &r, 1, 0, 1, 1.0f, 1e-4) == 0) {
        size_t nl;
        const double *losses = raw("adam.losses", &nl);
        double worst = 0;
        for (size_t k = 0; k < nl; k++) {
            step_batch b = slice(&r, 0, r.B, 0);
            double loss = cb_step_micro(&s, &b, NULL);
            double lr;
            cb_step_update(&s, &lr);
            double d = fabs(loss - losses[k]);
            if (d > worst) worst = d;
            CHECK_MSG(d <= 1e-4, "AdamW step %zu: loss %.6f vs %.6f", k, loss, losses[k]);
        }
        printf("test_step: 10 AdamW steps: losses %.4f .. %.6f, worst step loss diff %.2g\n", losses[0],
               losses[nl - 1], worst);
        /* key.bias: its gradient is rounding noise, which AdamW turns into
         * steps of up to lr each; it cannot change any output, so it is
         * checked against that bound instead. */
        compare_block(&s, STEP_PARAMS, "adam.param.", 1e-4, 0, 10 * 1e-4 * 1.5);
        printf("test_step: memory: %.1f MiB in parameters, gradients, AdamW moments, activations "
               "and scratch for %d triplets\n", (double)s.bytes / (1 << 20), r.B);
        cb_step_free(&s);
    } else {
        CHECK(0);
    }
    free(r.q_mask);
    free(r.d_off);
    cb_st_close(&ref);
    return test_finish("test_step");
}
