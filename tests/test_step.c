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
#include "ref_step.h"
#include "safetensors.h"

static st_file ref;
static const void *raw(const char *name, size_t *n) { return ref_raw(&ref, name, n); }

static int make_step(step_state *s, const char *model_dir, const float *linear, const refbatch *r,
                     int ib, int relu, int accum, float alpha, double lr) {
    step_config c;
    ref_step_config(&c, r, ib, accum);
    c.cc.relu = relu;
    c.lc.distillation_alpha = alpha;
    c.lr = lr;
    return ref_step_init(s, model_dir, linear, &c);
}

static void run_case(const char *model_dir, const refbatch *r, const char *name, int ib, int relu,
                     int teacher, float alpha, int accum, const float *linear, const char *ref_name) {
    step_state s;
    if (make_step(&s, model_dir, linear, r, ib, relu, accum, alpha, 1e-4)) { CHECK(0); return; }
    double loss = 0;
    int mb = r->B / accum;
    for (int k = 0; k < accum; k++) {
        step_batch b = ref_batch_slice(r, k * mb, mb, teacher);
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
    ref_compare_block(&s, &ref, STEP_GRADS, key, 1e-3, 1, 1e-4, 1);
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
    ref_batch_open(&r, &ref);

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
            step_batch b = ref_batch_slice(&r, 0, r.B, 0);
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
        ref_compare_block(&s, &ref, STEP_PARAMS, "adam.param.", 1e-4, 0, 10 * 1e-4 * 1.5, 1);
        printf("test_step: memory: %.1f MiB in parameters, gradients, AdamW moments, activations "
               "and scratch for %d triplets\n", (double)s.bytes / (1 << 20), r.B);
        cb_step_free(&s);
    } else {
        CHECK(0);
    }
    ref_batch_free(&r);
    cb_st_close(&ref);
    return test_finish("test_step");
}
