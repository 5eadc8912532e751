/* ref_step.h: what the training-step tests (test_step.c, mpi_step.c) share:
 * the reference batch of tests/ref/gen_train_step.py, a step set up on it,
 * and the comparison of a whole parameter or gradient block with PyTorch's
 * tensors, tensor by tensor. */
#ifndef CB_TEST_REF_STEP_H
#define CB_TEST_REF_STEP_H
#include <stdint.h>
#include <string.h>
#include "test.h"
#include "ref.h"
#include "model.h"
#include "step.h"

/* The reference batch: B queries, nway documents each, as token ids. */
typedef struct refbatch {
    const int32_t *q_ids, *q_mask32, *d_ids, *d_len;
    const float *teacher, *linear;
    int B, nway, qmax, dmax, dim;
    uint8_t *q_mask;    /* owned: q_mask32 as bytes */
    size_t *d_off;      /* owned: document k starts at d_ids + d_off[k] */
} refbatch;

/* The batch of tensors "<prefix>config", "<prefix>q_ids", ...; teacher
 * scores only when the file has them. */
static inline void ref_batch_open_prefixed(refbatch *r, const st_file *f, const char *prefix) {
    char k[128];
#define REF_KEY(name) (snprintf(k, sizeof k, "%s%s", prefix, name), k)
    const int32_t *cfg = ref_raw(f, REF_KEY("config"), NULL);
    r->B = cfg[0]; r->nway = cfg[1]; r->qmax = cfg[2]; r->dmax = cfg[3]; r->dim = cfg[4];
    size_t nq_tok, nd;
    r->q_ids = ref_raw(f, REF_KEY("q_ids"), &nq_tok);
    r->q_mask32 = ref_raw(f, REF_KEY("q_mask"), NULL);
    r->d_ids = ref_raw(f, REF_KEY("d_ids"), NULL);
    r->d_len = ref_raw(f, REF_KEY("d_len"), &nd);
    r->teacher = cb_st_find(f, REF_KEY("teacher")) ? ref_raw(f, k, NULL) : NULL;
    r->linear = ref_raw(f, REF_KEY("linear"), NULL);
#undef REF_KEY
    r->q_mask = malloc(nq_tok);
    r->d_off = malloc((nd + 1) * sizeof(size_t));
    if (!r->q_mask || !r->d_off) { fprintf(stderr, "ref_batch_open: out of memory\n"); exit(2); }
    for (size_t i = 0; i < nq_tok; i++) r->q_mask[i] = (uint8_t)r->q_mask32[i];
    r->d_off[0] = 0;
    for (size_t i = 0; i < nd; i++) r->d_off[i + 1] = r->d_off[i] + (size_t)r->d_len[i];
}

static inline void ref_batch_open(refbatch *r, const st_file *f) { ref_batch_open_prefixed(r, f, ""); }

static inline void ref_batch_free(refbatch *r) {
    free(r->q_mask);
    free(r->d_off);
}

/* The batch of queries [q0, q0 + nq), with their teacher scores or not. */
static inline step_batch ref_batch_slice(const refbatch *r, int q0, int nq, int teacher) {
    step_batch b = {.nq = nq, .q_ids = r->q_ids + (size_t)q0 * r->qmax,
                    .q_mask = r->q_mask + (size_t)q0 * r->qmax,
                    .d_ids = r->d_ids + r->d_off[q0 * r->nway],
                    .d_len = (const int *)r->d_len + q0 * r->nway,
                    .teacher = teacher ? r->teacher + q0 * r->nway : NULL};
    return b;
}

/* The configuration both references train with: r's shapes, loss ib (0
 * n-way cross-entropy only, 1 plus in-batch negatives, 2 PyLate's
 * contrastive), accum micro-batches, lr 1e-4 with 3 warmup steps and linear
 * decay to 0 at step 12, dropout off. Callers change what their case needs,
 * then call ref_step_init. */
static inline void ref_step_config(step_config *c, const refbatch *r, int ib, int accum) {
    memset(c, 0, sizeof *c);
    cb_colbert_config_default(&c->cc);
    c->cc.dim = r->dim;
    c->cc.query_maxlen = r->qmax;
    c->cc.doc_maxlen = r->dmax;
    c->lc.nway = r->nway;
    c->lc.use_ib_negatives = ib == 1;
    c->lc.contrastive = ib == 2;
    c->lc.distillation_alpha = 1.0f;
    c->lc.accumsteps = accum;
    c->bsize = r->B;
    c->lr = 1e-4;
    c->warmup = 3;
    c->maxsteps = 12;
}

/* A step on model_dir's encoder (CPU) and tokenizer, with projection linear. */
static inline int ref_step_init(step_state *s, const char *model_dir, const float *linear, const step_config *c) {
    cb_err err = {{0}};
    backbone enc;
    if (cb_backbone_load(&enc, cb_ops_cpu(), model_dir, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    tokenizer *tok = cb_tokenizer_load(model_dir, &err);
    if (!tok) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    colbert_vocab v;
    if (cb_colbert_vocab_init(&v, tok, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    int rc = cb_step_init(s, &enc, &v, linear, 0, c, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    cb_tokenizer_free(tok);
    return rc;
}

/* Every tensor of the step's block `which` (gradients or parameters) against
 * the reference tensors "<prefix><HF name>" and "<prefix>linear" of f, each
 * within rel err tol. key.bias is checked apart: its gradient is
 * analytically zero (softmax ignores a constant per row), so with
 * key_bias_zero both sides must be within key_bias_abs of 0; without, the
 * two must be within key_bias_abs of each other. Prints the worst tensor
 * when verbose; returns its rel err. */
static inline double ref_compare_block(const step_state *s, const st_file *f, step_block which, const char *prefix,
                                       double tol, int key_bias_zero, double key_bias_abs, int verbose) {
    const backbone *enc = cb_step_backbone(s);
    int nt = cb_backbone_named_count(enc);
    backbone_named *names = malloc((size_t)nt * sizeof *names);
    float *block = malloc(s->n * sizeof(float));
    if (!names || !block) { fprintf(stderr, "ref_compare_block: out of memory\n"); exit(2); }
    cb_backbone_named_tensors(enc, names);
    cb_step_get(s, which, block);
    double worst = 0;
    char worst_name[128] = "";
    for (int i = 0; i <= nt; i++) {
        const char *nm = i < nt ? names[i].name : "linear";
        size_t off = i < nt ? names[i].offset : cb_step_linear_offset(s);
        size_t cnt = i < nt ? names[i].n : (size_t)s->D * s->H;
        char key[256];
        snprintf(key, sizeof key, "%s%s", prefix, nm);
        size_t n;
        const float *r = ref_raw(f, key, &n);
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
    if (verbose) printf("    worst tensor %s rel err %.3g\n", worst_name, worst);
    free(names);
    free(block);
    return worst;
}
#endif
