/* test_cuda_model.c: the real all-MiniLM-L6-v2 ($COLBERT_MODEL) on real
 * NFCorpus texts ($COLBERT_DATASETS/nfcorpus, test split), CUDA against the
 * CPU backend.
 *   Inference: sentence embeddings (encoder.h, mean pooling) and ColBERT
 *     query and document vectors (colmodel.h) of 64 queries and 256
 *     documents: cosine of every vector with the CPU's >= 0.99999 in fp32;
 *     in bf16 sentence embeddings >= 0.999 and token vectors >= 0.999 on
 *     average (>= 0.99 each).
 *   Training (step.h), fp32: one step of 8 real triplets (a query, a
 *     relevant document, a non-relevant one), in the cases test_step.c
 *     covers (ce, ce with accumsteps 2, ib, kl with teacher scores, relu,
 *     contrastive) plus ib with dropout on (the CPU's masks): loss within
 *     1e-5 relative, every parameter gradient within 1e-4 (relative L2;
 *     key.bias, analytically zero, within 1e-4 absolute); 10 AdamW steps
 *     (warmup 3, decay to 0 at 12): every step's loss within 1e-4 and the
 *     final parameters within 1e-4 (key.bias within the 1.5e-3 AdamW's
 *     steps allow, as test_step.c).
 *   Training, bf16: every gradient's cosine with the CPU fp32 one >= 0.999
 *     (ib case; key.bias left out: rounding noise on both sides).
 * Prints "test_cuda_model: N passed, N failed", line-buffered. */
#include "test.h"
#include "colmodel.h"
#include "encoder.h"
#include "eval.h"
#include "model.h"
#include "step.h"

#define NQ 64
#define ND 256
#define B 8
#define NWAY 2

static const char *model_dir;
static eval_data ev;

static ops_device *open_gpu(ops_precision pr) {
    const char *spec = getenv("COLBERT_DEVICE");
    if (!spec || !*spec || !strcmp(spec, "cpu") || !strcmp(spec, "auto")) spec = "cuda";
    cb_err err = {{0}};
    ops_device *d = cb_ops_open(spec, pr, &err);
    if (!d || !strcmp(d->kind, "cpu")) {
        fprintf(stderr, "test_cuda_model: cannot open %s: %s\n", spec, err.msg);
        exit(2);
    }
    return d;
}

static double cosine(const float *a, const float *b, size_t n) {
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    if (aa == 0 && bb == 0) return 1.0;
    return ab / (sqrt(aa * bb) + 1e-300);
}

/* min and mean cosine of n vectors of size D */
static void cosines(const float *a, const float *b, size_t n, int D, double *mn, double *mean) {
    double lo = 1, s = 0;
    for (size_t i = 0; i < n; i++) {
        double c = cosine(a + i * D, b + i * D, (size_t)D);
        if (!(c >= lo)) lo = c;
        s += c;
    }
    *mn = lo;
    *mean = n ? s / (double)n : 1;
}

/* ---- inference ------------------------------------------------------------- */

static void test_inference(ops_device *g) {
    const char *pr = cb_ops_precision_name(g->precision);
    double need_min = g->precision == OPS_FP32 ? 0.99999 : 0.99, need_mean = g->precision == OPS_FP32 ? 0.99999 : 0.999;
    cb_err err = {{0}};
    /* sentence embeddings */
    encoder ec, eg;
    if (cb_encoder_load(&ec, cb_ops_cpu(), model_dir, 0, &err) || cb_encoder_load(&eg, g, model_dir, 0, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(2);
    }
    ec.quiet = eg.quiet = 1;
    int H = ec.enc.info.hidden;
    float *sc = malloc((size_t)ND * H * 4), *sg = malloc((size_t)ND * H * 4);
    CHECK(cb_encoder_embed(&ec, ev.doc_text, ev.doc_len, ND, sc, &err) == 0);
    CHECK(cb_encoder_embed(&eg, ev.doc_text, ev.doc_len, ND, sg, &err) == 0);
    double mn, mean;
    cosines(sg, sc, ND, H, &mn, &mean);
    double need = g->precision == OPS_FP32 ? 0.99999 : 0.999;
    CHECK_MSG(mn >= need, "sentence embeddings %s: min cosine %.7f < %g", pr, mn, need);
    printf("  sentence embeddings, %d documents, %s: cosine min %.7f mean %.7f (>= %g)\n", ND, pr, mn, mean, need);
    free(sc);
    free(sg);
    cb_encoder_free(&ec);
    cb_encoder_free(&eg);

    /* ColBERT vectors: a new ColBERT on MiniLM, the same seeded projection */
    colmodel mc, mg;
    if (cb_colmodel_load(&mc, cb_ops_cpu(), model_dir, 128, 12345, &err) || cb_colmodel_load(&mg, g, model_dir, 128, 12345, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(2);
    }
    mc.quiet = mg.quiet = 1;
    int Lq = mc.cc.query_maxlen, D = mc.cc.dim;
    float *qc = malloc((size_t)NQ * Lq * D * 4), *qg = malloc((size_t)NQ * Lq * D * 4);
    CHECK(cb_colmodel_encode_queries(&mc, ev.query_text, ev.query_len, NQ, qc, &err) == 0);
    CHECK(cb_colmodel_encode_queries(&mg, ev.query_text, ev.query_len, NQ, qg, &err) == 0);
    cosines(qg, qc, (size_t)NQ * Lq, D, &mn, &mean);
    CHECK_MSG(mn >= need_min && mean >= need_mean, "query vectors %s: cosine min %.7f mean %.7f", pr, mn, mean);
    printf("  ColBERT query vectors, %d x %d, %s: cosine min %.7f mean %.7f (>= %g, mean >= %g)\n", NQ, Lq, pr, mn,
           mean, need_min, need_mean);
    int *lc = NULL, *lg = NULL;
    float *dc = NULL, *dg = NULL;
    CHECK(cb_colmodel_encode_docs(&mc, ev.doc_text, ev.doc_len, ND, &lc, &dc, &err) == 0);
    CHECK(cb_colmodel_encode_docs(&mg, ev.doc_text, ev.doc_len, ND, &lg, &dg, &err) == 0);
    size_t rows = 0;
    int same_len = 1;
    for (int i = 0; i < ND; i++) {
        same_len &= lc[i] == lg[i];
        rows += (size_t)lc[i];
    }
    CHECK_MSG(same_len, "document vectors %s: kept lengths differ", pr);
    if (same_len) {
        cosines(dg, dc, rows, D, &mn, &mean);
        CHECK_MSG(mn >= need_min && mean >= need_mean, "document vectors %s: cosine min %.7f mean %.7f", pr, mn, mean);
        printf("  ColBERT document vectors, %zu rows, %s: cosine min %.7f mean %.7f\n", rows, pr, mn, mean);
    }
    free(qc); free(qg); free(lc); free(lg); free(dc); free(dg);
    cb_colmodel_free(&mc);
    cb_colmodel_free(&mg);
}

/* ---- training ------------------------------------------------------------------ */

typedef struct batch {
    int32_t *q_ids;     /* [B, Lq] */
    uint8_t *q_mask;
    int32_t *d_ids;     /* packed */
    int d_len[B * NWAY];
    size_t d_off[B * NWAY + 1];
    float teacher[B * NWAY];
} batch;

/* 8 triplets: query q of the test split, its first judged-relevant
 * document, a document it has no judgement for */
static void make_batch(batch *b, const tokenizer *tok, const colbert_config *cc) {
    colbert_vocab v;
    cb_err err = {{0}};
    if (cb_colbert_vocab_init(&v, tok, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    int Lq = cc->query_maxlen, Ld = cc->doc_maxlen;
    b->q_ids = malloc((size_t)B * Lq * 4);
    b->q_mask = malloc((size_t)B * Lq);
    b->d_ids = malloc((size_t)B * NWAY * Ld * 4);
    b->d_off[0] = 0;
    for (int q = 0; q < B; q++) {
        cb_colbert_query_ids(b->q_ids + (size_t)q * Lq, b->q_mask + (size_t)q * Lq, &v, tok, ev.query_text[q],
                          ev.query_len[q], cc);
        size_t pos = ev.rel_doc[ev.rel_off[q]];
        size_t neg = (pos + 1000 + 37 * (size_t)q) % ev.n_docs;
        for (size_t r = ev.rel_off[q]; r < ev.rel_off[q + 1]; r++)
            if (ev.rel_doc[r] == neg) neg = (neg + 1) % ev.n_docs;
        size_t docs[NWAY] = {pos, neg};
        for (int k = 0; k < NWAY; k++) {
            int i = q * NWAY + k;
            b->d_len[i] = cb_colbert_doc_ids(b->d_ids + b->d_off[i], &v, tok, ev.doc_text[docs[k]], ev.doc_len[docs[k]], cc);
            b->d_off[i + 1] = b->d_off[i] + (size_t)b->d_len[i];
            b->teacher[i] = k == 0 ? 12.5f - 0.3f * q : 7.0f + 0.2f * q;
        }
    }
}

static step_batch slice(const batch *b, int Lq, int q0, int nq, int teacher) {
    step_batch s = {.nq = nq, .q_ids = b->q_ids + (size_t)q0 * Lq, .q_mask = b->q_mask + (size_t)q0 * Lq,
                    .d_ids = b->d_ids + b->d_off[q0 * NWAY], .d_len = b->d_len + q0 * NWAY,
                    .teacher = teacher ? b->teacher + q0 * NWAY : NULL};
    return s;
}

typedef struct tcase {
    const char *name;
    int ib, relu, teacher, accum, dropout;
} tcase;

static int make_step(step_state *s, ops_device *d, const tcase *tc, const float *linear_host, int D) {
    cb_err err = {{0}};
    backbone enc;
    if (cb_backbone_load(&enc, d, model_dir, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    tokenizer *tok = cb_tokenizer_load(model_dir, &err);
    if (!tok) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    colbert_vocab v;
    if (cb_colbert_vocab_init(&v, tok, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    step_config c;
    memset(&c, 0, sizeof c);
    cb_colbert_config_default(&c.cc);
    c.cc.dim = D;
    c.cc.doc_maxlen = 180;
    c.cc.relu = tc->relu;
    c.lc.nway = NWAY;
    c.lc.use_ib_negatives = tc->ib == 1;
    c.lc.contrastive = tc->ib == 2;
    c.lc.distillation_alpha = 0.5f;
    c.lc.accumsteps = tc->accum;
    c.bsize = B;
    c.lr = 1e-4;
    c.warmup = 3;
    c.maxsteps = 12;
    c.dropout = tc->dropout;
    c.seed = 777;
    /* the projection: the same host values on both devices */
    float *lin = cb_ops_alloc(d, (size_t)D * enc.info.hidden * 4, "linear", &err);
    cb_ops_upload(d, lin, linear_host, (size_t)D * enc.info.hidden * 4);
    int rc = cb_step_init(s, &enc, &v, lin, 0, &c, &err);
    if (rc) fprintf(stderr, "%s\n", err.msg);
    cb_ops_free(d, lin);
    cb_tokenizer_free(tok);
    return rc;
}

static float run_micro(step_state *s, const batch *b, int Lq, const tcase *tc) {
    float loss = 0;
    int mb = B / tc->accum;
    for (int k = 0; k < tc->accum; k++) {
        step_batch sb = slice(b, Lq, k * mb, mb, tc->teacher);
        loss += cb_step_micro(s, &sb, NULL);
    }
    return loss;
}

/* Compare every tensor of one block. mode 0: rel L2 <= tol (key.bias: max
 * abs <= kb_abs); mode 1: cosine >= tol (key.bias skipped). */
static void compare_block(const step_state *sg, const step_state *sc, step_block which, int mode, double tol,
                          double kb_abs, const char *what) {
    const backbone *enc = cb_step_backbone(sc);
    int nt = cb_backbone_named_count(enc);
    backbone_named *names = malloc((size_t)nt * sizeof *names);
    cb_backbone_named_tensors(enc, names);
    float *hg = malloc(sc->n * 4), *hc = malloc(sc->n * 4);
    cb_step_get(sg, which, hg);
    cb_step_get(sc, which, hc);
    double worst = mode ? 1.0 : 0.0;
    char worst_name[128] = "";
    int bad = 0;
    for (int i = 0; i <= nt; i++) {
        const char *nm = i < nt ? names[i].name : "linear";
        size_t off = i < nt ? names[i].offset : cb_step_linear_offset(sc), n = i < nt ? names[i].n : (size_t)sc->D * sc->H;
        if (strstr(nm, "self.key.bias")) {
            if (mode) continue;
            double big = 0;
            for (size_t j = 0; j < n; j++) big = fmax(big, fabs((double)hg[off + j] - hc[off + j]));
            if (!(big <= kb_abs)) { bad++; fprintf(stderr, "  %s %s: key.bias diff %.3g > %.3g\n", what, nm, big, kb_abs); }
            continue;
        }
        double e;
        if (mode) {
            e = cosine(hg + off, hc + off, n);
            if (!(e >= tol)) { bad++; fprintf(stderr, "  %s %s: cosine %.6f < %g\n", what, nm, e, tol); }
            if (!(e >= worst)) { worst = e; snprintf(worst_name, sizeof worst_name, "%s", nm); }
        } else {
            double num = 0, den = 0;
            for (size_t j = 0; j < n; j++) {
                double dd = (double)hg[off + j] - hc[off + j];
                num += dd * dd;
                den += (double)hc[off + j] * hc[off + j];
            }
            e = sqrt(num) / (sqrt(den) + 1e-30);
            if (!(e <= tol)) { bad++; fprintf(stderr, "  %s %s: rel err %.3g > %g\n", what, nm, e, tol); }
            if (!(e <= worst)) { worst = e; snprintf(worst_name, sizeof worst_name, "%s", nm); }
        }
    }
    CHECK_MSG(bad == 0, "%s: %d tensors out of tolerance", what, bad);
    printf("    %s: worst tensor %s %s %.3g (%s %g)\n", what, worst_name, mode ? "cosine" : "rel err", worst,
           mode ? ">=" : "<=", tol);
    free(names);
    free(hg);
    free(hc);
}

static void test_training(ops_device *g32, ops_device *g16) {
    cb_err err = {{0}};
    tokenizer *tok = cb_tokenizer_load(model_dir, &err);
    if (!tok) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    colbert_config cc;
    cb_colbert_config_default(&cc);
    cc.doc_maxlen = 180;
    batch b;
    make_batch(&b, tok, &cc);
    cb_tokenizer_free(tok);
    int D = 128, H = 384, Lq = cc.query_maxlen;
    float *lin = malloc((size_t)D * H * 4);
    cb_colbert_linear_init(lin, 12345, 0.02f, D, H);

    const tcase cases[] = {
        {"ce", 0, 0, 0, 1, 0},   {"ce-acc2", 0, 0, 0, 2, 0}, {"ib", 1, 0, 0, 1, 0},
        {"kl", 0, 0, 1, 1, 0},   {"relu", 1, 1, 0, 1, 0},    {"contrastive", 2, 0, 0, 1, 0},
        {"ib-dropout", 1, 0, 0, 1, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const tcase *tc = &cases[k];
        step_state sc, sg;
        if (make_step(&sc, cb_ops_cpu(), tc, lin, D) || make_step(&sg, g32, tc, lin, D)) { CHECK(0); continue; }
        double t0 = cb_now();
        float lcpu = run_micro(&sc, &b, Lq, tc);
        double t1 = cb_now();
        float lgpu = run_micro(&sg, &b, Lq, tc);
        cb_ops_sync(g32);
        double t2 = cb_now();
        double rel = fabs((double)lgpu - lcpu) / fabs((double)lcpu);
        CHECK_MSG(rel <= 1e-5, "%s fp32: loss %.7f vs %.7f", tc->name, lgpu, lcpu);
        printf("  step %-12s fp32: loss %.7f vs CPU %.7f, rel %.1e (CPU %.2f s, GPU %.3f s)\n", tc->name, lgpu, lcpu,
               rel, t1 - t0, t2 - t1);
        compare_block(&sg, &sc, STEP_GRADS, 0, 1e-4, 1e-4, "gradients fp32");
        cb_step_free(&sc);
        cb_step_free(&sg);
    }

    /* bf16: gradients' cosines with the CPU's (fp32) */
    {
        const tcase *tc = &cases[2];
        step_state sc, sg;
        if (make_step(&sc, cb_ops_cpu(), tc, lin, D) || make_step(&sg, g16, tc, lin, D)) {
            CHECK(0);
        } else {
            float lcpu = run_micro(&sc, &b, Lq, tc), lgpu = run_micro(&sg, &b, Lq, tc);
            double rel = fabs((double)lgpu - lcpu) / fabs((double)lcpu);
            CHECK_MSG(rel <= 1e-2, "ib bf16: loss %.6f vs %.6f", lgpu, lcpu);
            printf("  step %-12s bf16: loss %.6f vs CPU %.6f, rel %.1e (<= 1e-2)\n", tc->name, lgpu, lcpu, rel);
            compare_block(&sg, &sc, STEP_GRADS, 1, 0.999, 0, "gradients bf16");
            cb_step_free(&sc);
            cb_step_free(&sg);
        }
    }

    /* 10 AdamW steps, fp32, in-batch negatives */
    {
        const tcase *tc = &cases[2];
        step_state sc, sg;
        if (make_step(&sc, cb_ops_cpu(), tc, lin, D) || make_step(&sg, g32, tc, lin, D)) {
            CHECK(0);
        } else {
            double worst = 0, first = 0, last = 0;
            for (int k = 0; k < 10; k++) {
                float lc = run_micro(&sc, &b, Lq, tc), lg = run_micro(&sg, &b, Lq, tc);
                float nc = cb_step_update(&sc, NULL), ng = cb_step_update(&sg, NULL);
                double dl = fabs((double)lg - lc);
                if (dl > worst) worst = dl;
                if (!k) first = lc;
                last = lc;
                CHECK_MSG(dl <= 1e-4, "AdamW step %d: loss %.6f vs %.6f", k, lg, lc);
                CHECK_MSG(fabs((double)ng - nc) <= 1e-4 * nc, "AdamW step %d: grad norm %.6f vs %.6f", k, ng, nc);
            }
            printf("  10 AdamW steps fp32: CPU losses %.4f .. %.4f, worst step loss diff %.2g (<= 1e-4)\n", first, last,
                   worst);
            compare_block(&sg, &sc, STEP_PARAMS, 0, 1e-4, 10 * 1e-4 * 1.5, "parameters after 10 steps");
            compare_block(&sg, &sc, STEP_ADAM_V, 0, 1e-3, 1e30, "AdamW v after 10 steps");
            cb_step_free(&sc);
            cb_step_free(&sg);
        }
    }
    free(lin);
    free(b.q_ids);
    free(b.q_mask);
    free(b.d_ids);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);    /* through a pipe too: a crash keeps the lines before it */
    model_dir = test_env("COLBERT_MODEL");
    const char *datasets = test_env("COLBERT_DATASETS");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/nfcorpus", datasets);
    cb_err err = {{0}};
    if (cb_eval_data_load(&ev, dir, "test", NQ, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    CB_ASSERT(ev.n_docs >= ND && ev.n_queries >= B);
    ops_device *g32 = open_gpu(OPS_FP32), *g16 = open_gpu(OPS_BF16);
    printf("test_cuda_model: %s\n  model %s\n", g32->desc, model_dir);
    double t0 = cb_now();
    printf("-- inference, fp32\n");
    test_inference(g32);
    printf("-- inference, bf16\n");
    test_inference(g16);
    printf("-- training steps\n");
    test_training(g32, g16);
    printf("test_cuda_model: %.1f s\n", cb_now() - t0);
    cb_ops_close(g32);
    cb_ops_close(g16);
    cb_eval_data_free(&ev);
    return test_finish("test_cuda_model");
}
