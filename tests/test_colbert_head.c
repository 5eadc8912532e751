/* test_colbert_head.c: ColBERT's training step after the encoder equals
 * colbert-ai's formulas in PyTorch (tests/ref/gen_colbert_head.py).
 *
 *   1. token layout: query / document ids, attention masks and the
 *      punctuation mask of real NFCorpus texts equal colbert-ai's tensorize
 *   2. from the real MiniLM last hidden states of 8 triplets (nway 2) and a
 *      seeded linear: scores, loss (rel. err <= 1e-5), d_hidden and
 *      d_linear (rel. err <= 1e-3) for CE, in-batch negatives, ReLU, KL
 *      distillation with and without ib, accumsteps 2; and accumsteps 2
 *      equal to 1 when there is no in-batch loss
 *   3. 10 steps of clipping + AdamW + warmup/decay schedule equal to
 *      clip_grad_norm_ + torch.optim.AdamW + LambdaLR (rel. 1e-6)
 *   4. finite differences for every backward kernel on small random shapes
 *   5. dropout masks (cb_ops_dropout_keep, ops.h) keep 1 - p of the elements
 *   6. a new projection is a reproducible Normal(0, std)
 * rel. err of a tensor = max |c - ref| / max |ref|. */
#include "test.h"
#include "ref.h"
#include "bert.h"
#include "colbert.h"
#include "loss.h"
#include "optim.h"
#include "safetensors.h"
#include "tokenizer.h"

/* ---- reference file ------------------------------------------------------ */

static st_file ref;

static const void *raw(const char *name, size_t *n, size_t esize) {
    const st_tensor *t = cb_st_find(&ref, name);
    CHECK_MSG(!t || cb_st_dtype_size(t->dtype) == esize, "%s: element size %zu, expected %zu", name,
              cb_st_dtype_size(t->dtype), esize);
    return ref_raw(&ref, name, n);
}
static const float *rf(const char *name, size_t *n) { return raw(name, n, 4); }
static const int32_t *ri(const char *name, size_t *n) { return raw(name, n, 4); }
static double rd(const char *name, size_t i) { return ((const double *)raw(name, NULL, 8))[i]; }

static float rel_err(const float *a, const float *b, size_t n) { return (float)ref_rel_max(a, b, n); }

/* The CPU backend runs every op of this test; its device memory is host
 * memory, so the buffers here are plain arrays. */
#define CPU cb_ops_cpu()

static void maxsim_forward(float *S, int32_t *am, float *sim, const float *qv, const float *dv, const int *doff,
                           const uint8_t *keep, int group, int nq, int nd, int Lq, int D) {
    int G = group > 0 ? group : nd;
    size_t rows = 0;
    for (int q = 0; q < nq; q++) {
        int lo = group > 0 ? q * group : 0;
        size_t r = (size_t)(doff[lo + G] - doff[lo]);
        if (r > rows) rows = r;
    }
    ops_work w = {sim, (size_t)Lq * rows * sizeof(float)};
    cb_ops_maxsim_forward(CPU, S, am, qv, dv, doff, doff, keep, group, nq, nd, Lq, D, &w);
}

/* ---- 1. token layout ----------------------------------------------------- */

static void test_layout(const char *model_dir, const colbert_config *cc) {
    cb_err err = {{0}};
    tokenizer *tok = cb_tokenizer_load(model_dir, &err);
    if (!tok) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    colbert_vocab v;
    CHECK_MSG(cb_colbert_vocab_init(&v, tok, &err) == 0, "%s", err.msg);
    size_t nq, nd, n;
    const uint8_t *qt = raw("q_text", NULL, 1), *dt = raw("d_text", NULL, 1);
    const int32_t *qo = ri("q_text_off", &nq), *dof = ri("d_text_off", &nd);
    const int32_t *q_ids = ri("q_ids", NULL), *q_mask = ri("q_mask", NULL);
    const int32_t *d_len = ri("d_len", NULL), *d_ids = ri("d_ids", &n), *d_keep = ri("d_keep", NULL);
    nq--, nd--;
    int Lq = cc->query_maxlen, bad = 0, truncated = 0, masked = 0;
    int32_t ids[512];
    uint8_t mask[512];
    for (size_t q = 0; q < nq; q++) {
        cb_colbert_query_ids(ids, mask, &v, tok, (const char *)qt + qo[q], (size_t)(qo[q + 1] - qo[q]), cc);
        for (int i = 0; i < Lq; i++)
            bad += ids[i] != q_ids[q * Lq + i] || mask[i] != q_mask[q * Lq + i];
        truncated += mask[Lq - 1];
    }
    CHECK_MSG(bad == 0, "%d query ids / mask bytes differ from colbert-ai's", bad);
    CHECK_MSG(truncated >= 1, "no query long enough to be truncated");
    size_t off = 0;
    bad = 0;
    for (size_t d = 0; d < nd; d++) {
        int len = cb_colbert_doc_ids(ids, &v, tok, (const char *)dt + dof[d], (size_t)(dof[d + 1] - dof[d]), cc);
        cb_colbert_doc_keep(mask, ids, len, &v, cc->mask_punctuation);
        if (len != d_len[d]) { bad++; continue; }
        for (int i = 0; i < len; i++) {
            bad += ids[i] != d_ids[off + i] || mask[i] != d_keep[off + i];
            masked += !mask[i];
        }
        truncated += len == cc->doc_maxlen;
        off += (size_t)d_len[d];
    }
    CHECK_MSG(bad == 0, "%d document ids / lengths / keep bytes differ from colbert-ai's", bad);
    CHECK_MSG(masked > 0, "no punctuation masked in the documents");
    printf("test_colbert_head: layout of %zu queries and %zu documents (%d punctuation tokens masked) "
           "equals colbert-ai's\n", nq, nd, masked);
    cb_tokenizer_free(tok);
}

/* ---- 2. training step after the encoder ---------------------------------- */

typedef struct step_bufs {
    int B, nway, Lq, D, H, Tq, Td, T, nd;
    const float *hidden;        /* [T, H] queries then documents */
    const float *linear;        /* [D, H] */
    const uint8_t *keep;        /* [T] */
    const int *d_off;           /* [nd + 1] rows into the document part */
    float *out, *proj, *norm, *d_out, *d_hidden, *d_linear, *S, *dS, *sim;
    int32_t *argmax;
} step_bufs;

/* One optimizer step's forward and backward after the encoder, with
 * accumsteps micro-batches; returns the summed loss and writes the nway
 * scores [B, nway] and the ib score matrices (micro-batch after
 * micro-batch). */
static float run_step(step_bufs *s, float *scores, float *ib_scores, int relu, int ib, const float *teacher,
                      float alpha, int accum) {
    int Lq = s->Lq, D = s->D, nway = s->nway, mb = s->B / accum, nd = mb * nway;
    loss_config lc = {.nway = nway, .use_ib_negatives = ib, .distillation_alpha = alpha, .accumsteps = accum};
    memset(s->d_out, 0, (size_t)s->T * D * sizeof(float));
    memset(s->d_hidden, 0, (size_t)s->T * s->H * sizeof(float));
    memset(s->d_linear, 0, (size_t)D * s->H * sizeof(float));
    cb_colbert_head_forward(CPU, s->out, s->proj, s->norm, s->hidden, s->linear, s->keep, relu, s->T, s->H, D);
    const float *dv = s->out + (size_t)s->Tq * D;
    float total = 0;
    int cols = cb_loss_score_cols(&lc, mb), group = ib ? 0 : nway;
    for (int m = 0; m < accum; m++) {
        const float *qv = s->out + (size_t)m * mb * Lq * D;
        const int *doff = s->d_off + m * nd;
        maxsim_forward(s->S, s->argmax, s->sim, qv, dv, doff, s->keep + s->Tq, group, mb, nd, Lq, D);
        total += cb_ops_loss(CPU, s->dS, NULL, s->S, teacher ? teacher + m * nd : NULL, &lc, mb);
        cb_ops_maxsim_backward(CPU, s->d_out + (size_t)m * mb * Lq * D, s->d_out + (size_t)s->Tq * D, s->dS,
                                s->argmax, qv, dv, group, mb, nd, Lq, D);
        for (int b = 0; b < mb; b++)
            for (int k = 0; k < nway; k++)
                scores[(m * mb + b) * nway + k] = s->S[b * cols + (ib ? b * nway : 0) + k];
        if (ib) memcpy(ib_scores + (size_t)m * mb * cols, s->S, (size_t)mb * cols * sizeof(float));
    }
    cb_colbert_head_backward(CPU, s->d_hidden, s->d_linear, s->d_out, s->out, s->proj, s->norm, s->hidden, s->linear,
                          s->keep, relu, s->T, s->H, D);
    return total;
}

static void test_step(void) {
    size_t n;
    const int32_t *cfg = ri("config", NULL);
    step_bufs s = {.B = cfg[0], .nway = cfg[1], .Lq = cfg[2], .D = cfg[4]};
    size_t nhq, nhd, nlin;
    const float *hq = rf("hq", &nhq), *hd = rf("hd", &nhd);
    s.linear = rf("linear", &nlin);
    s.H = (int)(nlin / s.D);
    s.Tq = (int)(nhq / s.H);
    s.Td = (int)(nhd / s.H);
    s.T = s.Tq + s.Td;
    s.nd = s.B * s.nway;
    CHECK(s.Tq == s.B * s.Lq);
    const int32_t *d_len = ri("d_len", &n), *d_keep = ri("d_keep", NULL);
    CHECK(n == (size_t)s.nd);
    float *hidden = malloc((size_t)s.T * s.H * sizeof(float));
    memcpy(hidden, hq, nhq * sizeof(float));
    memcpy(hidden + nhq, hd, nhd * sizeof(float));
    s.hidden = hidden;
    uint8_t *keep = malloc((size_t)s.T);
    for (int t = 0; t < s.T; t++) keep[t] = t < s.Tq ? 1 : (uint8_t)d_keep[t - s.Tq];
    s.keep = keep;
    int *d_off = malloc((size_t)(s.nd + 1) * sizeof(int));
    d_off[0] = 0;
    for (int d = 0; d < s.nd; d++) d_off[d + 1] = d_off[d] + d_len[d];
    CHECK(d_off[s.nd] == s.Td);
    s.d_off = d_off;
    size_t TD = (size_t)s.T * s.D, TH = (size_t)s.T * s.H, DH = (size_t)s.D * s.H;
    s.out = malloc(TD * sizeof(float));
    s.proj = malloc(TD * sizeof(float));
    s.d_out = malloc(TD * sizeof(float));
    s.norm = malloc((size_t)s.T * sizeof(float));
    s.d_hidden = malloc(TH * sizeof(float));
    s.d_linear = malloc(DH * sizeof(float));
    s.S = malloc((size_t)s.B * s.nd * sizeof(float));
    s.dS = malloc((size_t)s.B * s.nd * sizeof(float));
    s.sim = malloc((size_t)s.Lq * s.Td * sizeof(float));
    s.argmax = malloc((size_t)s.B * s.nd * s.Lq * sizeof(int32_t));
    float *scores = malloc((size_t)s.nd * sizeof(float)), *ib_scores = malloc((size_t)s.B * s.nd * sizeof(float));
    const float *teacher = rf("teacher", NULL);

    static const char *cases[] = {"ce", "ib", "relu", "kl", "kl_ib", "acc2"};
    char key[64];
    float worst_g = 0;
    const char *worst_name = "";
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *name = cases[c];
#define KEY(x) (snprintf(key, sizeof key, "%s.%s", name, x), key)
        const int32_t *cs = ri(KEY("case"), NULL);
        int relu = cs[0], ib = cs[1], kl = cs[2], accum = cs[3];
        float alpha = rf(KEY("alpha"), NULL)[0];
        double ref_loss = rd(KEY("loss"), 0);
        float loss = run_step(&s, scores, ib_scores, relu, ib, kl ? teacher : NULL, alpha, accum);
        float e_loss = (float)(fabs(loss - ref_loss) / fabs(ref_loss));
        float e_sc = rel_err(scores, rf(KEY("scores"), NULL), (size_t)s.nd);
        size_t n_ib;
        const float *ref_ib = rf(KEY("ib_scores"), &n_ib);
        float e_ib = ib ? rel_err(ib_scores, ref_ib, n_ib) : 0;
        float e_dh = rel_err(s.d_hidden, rf(KEY("d_hidden"), &n), TH);
        CHECK(n == TH);
        float e_dl = rel_err(s.d_linear, rf(KEY("d_linear"), &n), DH);
        CHECK(n == DH);
        printf("test_colbert_head: %-6s loss %.6f (ref %.6f, rel err %.2g), scores %.2g, ib scores %.2g, "
               "d_hidden %.2g, d_linear %.2g\n", name, loss, ref_loss, e_loss, e_sc, e_ib, e_dh, e_dl);
        CHECK_MSG(e_loss <= 1e-5f, "%s: loss rel err %g > 1e-5", name, e_loss);
        CHECK_MSG(e_sc <= 1e-5f && e_ib <= 1e-5f, "%s: scores rel err %g / %g > 1e-5", name, e_sc, e_ib);
        CHECK_MSG(e_dh <= 1e-3f, "%s: d_hidden rel err %g > 1e-3", name, e_dh);
        CHECK_MSG(e_dl <= 1e-3f, "%s: d_linear rel err %g > 1e-3", name, e_dl);
        if (!(e_dh <= worst_g)) { worst_g = e_dh; worst_name = "d_hidden"; }
        if (!(e_dl <= worst_g)) { worst_g = e_dl; worst_name = "d_linear"; }
    }
    printf("test_colbert_head: worst gradient: %s, rel err %.3g\n", worst_name, worst_g);

    /* without the in-batch loss, two micro-batches of 4 give the gradients
     * of one batch of 8 */
    float loss2 = run_step(&s, scores, ib_scores, 0, 0, NULL, 1.0f, 2);
    float e_dh = rel_err(s.d_hidden, rf("ce.d_hidden", NULL), TH);
    float e_dl = rel_err(s.d_linear, rf("ce.d_linear", NULL), DH);
    float e_l = (float)fabs(loss2 - rd("ce.loss", 0)) / (float)rd("ce.loss", 0);
    printf("test_colbert_head: accumsteps 2 vs 1 (no ib): loss %.2g, d_hidden %.2g, d_linear %.2g\n", e_l, e_dh, e_dl);
    CHECK(e_l <= 1e-5f && e_dh <= 1e-3f && e_dl <= 1e-3f);

    free(hidden); free(keep); free(d_off); free(s.out); free(s.proj); free(s.d_out); free(s.norm);
    free(s.d_hidden); free(s.d_linear); free(s.S); free(s.dS); free(s.argmax); free(s.sim); free(scores); free(ib_scores);
}

/* ---- 3. optimizer -------------------------------------------------------- */

static void test_adamw(void) {
    size_t n, ng;
    const float *p0 = rf("adam_p0", &n), *grads = rf("adam_grads", &ng), *after = rf("adam_params", NULL);
    const float *norms = rf("adam_norm", NULL);
    int steps = (int)(ng / n);
    float *p = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
    float *m = calloc(n, sizeof(float)), *v = calloc(n, sizeof(float));
    memcpy(p, p0, n * sizeof(float));
    float worst = 0;
    int clipped = 0;
    for (int s = 0; s < steps; s++) {
        memcpy(g, grads + (size_t)s * n, n * sizeof(float));
        float norm = cb_ops_clip_grad_norm(CPU, g, n, 2.0f);
        clipped += norm > 2.0f;
        CHECK_MSG(fabsf(norm - norms[s]) <= 1e-5f * norms[s], "step %d: grad norm %g, torch %g", s, norm, norms[s]);
        double lr = cb_optim_lr(1e-3, s, 3, 12);
        CHECK_MSG(fabs(lr - rd("adam_lr", (size_t)s)) <= 1e-15, "step %d: lr %g, torch %g", s, lr, rd("adam_lr", (size_t)s));
        adamw_config c = cb_adamw_default(lr);
        cb_ops_adamw(CPU, p, g, m, v, n, &c, s + 1);
        const float *r = after + (size_t)s * n;
        for (size_t i = 0; i < n; i++) {
            float e = fabsf(p[i] - r[i]) / fmaxf(fabsf(r[i]), 1e-3f);
            if (!(e <= worst)) worst = e;
        }
    }
    printf("test_colbert_head: %d AdamW steps (%d clipped, warmup 3): params rel err %.3g\n", steps, clipped, worst);
    CHECK_MSG(worst <= 1e-6f, "AdamW params rel err %g > 1e-6", worst);
    CHECK(clipped > 0 && clipped < steps);
    free(p); free(g); free(m); free(v);
}

/* ---- 4. finite differences ----------------------------------------------- */

static uint64_t fd_state = 42;
static float urand(void) {  /* uniform in [-1, 1) */
    fd_state = fd_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((fd_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}
static void fill(float *x, size_t n, float scale) { for (size_t i = 0; i < n; i++) x[i] = urand() * scale; }

/* A scalar function of a float array: L(x) = sum w * f(x). */
typedef double (*fd_fn)(void *ctx);

/* Compare analytic g[n] with central differences of fn over x[n] (every
 * element, or a sample of 64 when more). Returns the worst error relative
 * to max |g|. */
static float fd_check(const char *name, fd_fn fn, void *ctx, float *x, const float *g, size_t n, float h) {
    double gmax = 0, worst = 0;
    for (size_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i]));
    size_t stride = n > 64 ? n / 64 : 1;
    for (size_t i = 0; i < n; i += stride) {
        float x0 = x[i], xp = x0 + h, xm = x0 - h;
        x[i] = xp; double lp = fn(ctx);
        x[i] = xm; double lm = fn(ctx);
        x[i] = x0;
        double fd = (lp - lm) / ((double)xp - (double)xm);
        worst = fmax(worst, fabs(fd - g[i]));
    }
    float e = (float)(worst / (gmax > 0 ? gmax : 1));
    printf("test_colbert_head: finite differences %-18s rel err %.2g\n", name, e);
    CHECK_MSG(e <= 2e-2f && gmax > 0, "%s: finite-difference rel err %g (max |g| %g)", name, e, gmax);
    return e;
}

enum { FT = 7, FH = 12, FD = 5, FLQ = 4, FNQ = 3, FNW = 2 };

typedef struct fd_ctx {
    float hidden[FT * FH], linear[FD * FH], w[FT * FD];
    float out[FT * FD], proj[FT * FD], norm[FT];
    uint8_t keep[FT];
    int relu;
    /* maxsim */
    float qv[FNQ * FLQ * FD], dv[FT * FD], sim[FLQ * FT], S[FNQ * FNQ * FNW], wS[FNQ * FNQ * FNW];
    int32_t am[FNQ * FNQ * FNW * FLQ];
    int d_off[FNQ * FNW + 1], group;
    /* losses */
    float x[24], t[24], dx[24];
    int B, ib, kl;
} fd_ctx;

static double dot_d(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}
static double fn_normalize(void *p) {
    fd_ctx *c = p;
    cb_ops_l2norm_forward(CPU, c->out, c->norm, c->proj, FT, FD);
    return dot_d(c->w, c->out, FT * FD);
}
static double fn_head(void *p) {
    fd_ctx *c = p;
    cb_colbert_head_forward(CPU, c->out, c->proj, c->norm, c->hidden, c->linear, c->keep, c->relu, FT, FH, FD);
    return dot_d(c->w, c->out, FT * FD);
}
static double fn_maxsim(void *p) {
    fd_ctx *c = p;
    int nd = FNQ * FNW, G = c->group ? c->group : nd;
    maxsim_forward(c->S, c->am, c->sim, c->qv, c->dv, c->d_off, c->keep, c->group, FNQ, nd, FLQ, FD);
    return dot_d(c->wS, c->S, (size_t)FNQ * G);
}
static double fn_loss(void *p) {
    fd_ctx *c = p;
    loss_config lc = {.nway = FNW + 1, .use_ib_negatives = c->ib, .distillation_alpha = 0.7f, .accumsteps = 2};
    return cb_ops_loss(CPU, c->dx, NULL, c->x, c->kl ? c->t : NULL, &lc, c->B);
}

static void test_finite_differences(void) {
    static fd_ctx c;
    float g[FT * FH], gl[FD * FH], dout[FT * FD];
    /* normalize */
    fill(c.proj, FT * FD, 1.0f);
    fill(c.w, FT * FD, 1.0f);
    fn_normalize(&c);
    memcpy(dout, c.w, sizeof dout);
    cb_ops_l2norm_backward(CPU, g, dout, c.out, c.norm, FT, FD);
    fd_check("normalize", fn_normalize, &c, c.proj, g, FT * FD, 1e-3f);

    /* head: projection, ReLU, keep mask, normalize; wrt hidden and linear */
    for (int relu = 0; relu <= 1; relu++) {
        c.relu = relu;
        fill(c.hidden, FT * FH, 1.0f);
        fill(c.linear, FD * FH, 0.5f);
        for (int t = 0; t < FT; t++) c.keep[t] = t != 2;
        fn_head(&c);
        memcpy(dout, c.w, sizeof dout);
        memset(g, 0, sizeof g);
        memset(gl, 0, sizeof gl);
        cb_colbert_head_backward(CPU, g, gl, dout, c.out, c.proj, c.norm, c.hidden, c.linear, c.keep, relu, FT, FH, FD);
        fd_check(relu ? "head+relu d_hidden" : "head d_hidden", fn_head, &c, c.hidden, g, FT * FH, 1e-3f);
        fd_check(relu ? "head+relu d_linear" : "head d_linear", fn_head, &c, c.linear, gl, FD * FH, 1e-3f);
        float gmasked = 0;
        for (int i = 0; i < FH; i++) gmasked = fmaxf(gmasked, fabsf(g[2 * FH + i]));
        CHECK_MSG(gmasked == 0.0f, "masked token got a gradient %g", gmasked);
    }

    /* MaxSim, nway groups and all pairs; 6 documents over 7 rows, one row
     * masked */
    int lens[FNQ * FNW] = {1, 1, 2, 1, 1, 1};
    c.d_off[0] = 0;
    for (int d = 0; d < FNQ * FNW; d++) c.d_off[d + 1] = c.d_off[d] + lens[d];
    for (int t = 0; t < FT; t++) c.keep[t] = t != 3;
    for (int group = 0; group <= FNW; group += FNW) {
        c.group = group;
        fill(c.qv, sizeof c.qv / 4, 1.0f);
        fill(c.dv, sizeof c.dv / 4, 1.0f);
        fill(c.wS, sizeof c.wS / 4, 1.0f);
        fn_maxsim(&c);
        float gq[FNQ * FLQ * FD] = {0}, gd[FT * FD] = {0};
        cb_ops_maxsim_backward(CPU, gq, gd, c.wS, c.am, c.qv, c.dv, group, FNQ, FNQ * FNW, FLQ, FD);
        fd_check(group ? "maxsim nway d_q" : "maxsim all d_q", fn_maxsim, &c, c.qv, gq, sizeof gq / 4, 1e-3f);
        fd_check(group ? "maxsim nway d_d" : "maxsim all d_d", fn_maxsim, &c, c.dv, gd, sizeof gd / 4, 1e-3f);
        float gm = 0;
        for (int i = 0; i < FD; i++) gm = fmaxf(gm, fabsf(gd[3 * FD + i]));
        CHECK_MSG(gm == 0.0f, "masked document row got a gradient %g", gm);
    }

    /* losses: CE, CE + ib, KL, KL + ib; B 2, nway 3 */
    static const char *names[] = {"loss ce", "loss ce+ib", "loss kl", "loss kl+ib"};
    for (int v = 0; v < 4; v++) {
        c.B = 2;
        c.ib = v & 1;
        c.kl = v >> 1;
        int cols = c.ib ? c.B * (FNW + 1) : FNW + 1;
        fill(c.x, 24, 3.0f);
        fill(c.t, 24, 3.0f);
        float gx[24] = {0};
        fn_loss(&c);
        memcpy(gx, c.dx, sizeof gx);
        fd_check(names[v], fn_loss, &c, c.x, gx, (size_t)c.B * cols, 1e-2f);
        if (c.ib) {  /* query 0's own negatives (columns 1, 2) only enter its nway loss */
            float only_main[24];
            memcpy(only_main, gx, sizeof gx);
            loss_config lc = {.nway = FNW + 1, .use_ib_negatives = 0, .distillation_alpha = 0.7f, .accumsteps = 2};
            float xs[6] = {c.x[0], c.x[1], c.x[2], c.x[9], c.x[10], c.x[11]}, ds[6];
            cb_ops_loss(CPU, ds, NULL, xs, c.kl ? c.t : NULL, &lc, 2);
            CHECK_MSG(fabsf(only_main[1] - ds[1]) < 1e-6f && fabsf(only_main[2] - ds[2]) < 1e-6f,
                      "%s: own negatives of query 0 take part in the ib loss", names[v]);
        }
    }
}

/* ---- 5. dropout ---------------------------------------------------------- */

static void test_dropout(void) {
    const float ps[] = {0.1f, 0.5f};
    for (int k = 0; k < 2; k++) {
        size_t n = 1 << 20, kept = 0, same = 0;
        /* the dropout op keeps exactly the elements the hash says, scaled:
         * 4096 sequences of 256 tokens, H = 1, ids 0 .. 4095 */
        float *x = malloc(n * sizeof(float));
        uint8_t *mk = malloc(n);
        int S = 4096, *off = malloc((size_t)(S + 1) * sizeof(int));
        uint64_t *id = malloc((size_t)S * sizeof(uint64_t));
        for (int q = 0; q <= S; q++) off[q] = q * 256;
        for (int q = 0; q < S; q++) id[q] = (uint64_t)q;
        ops_seqs sq = {.n_seq = S, .n_tok = (int)n, .max_len = 256, .off = off, .id = id};
        for (size_t i = 0; i < n; i++) x[i] = 1.0f;
        cb_ops_dropout_forward(CPU, x, mk, &sq, 1, ps[k], 1234, 7);
        for (size_t i = 0; i < n; i++) {
            int a = cb_ops_dropout_keep(1234, 7, i / 256, i % 256, ps[k]);
            kept += a;
            same += a == mk[i] && x[i] == (a ? 1.0f / (1.0f - ps[k]) : 0.0f);
        }
        free(off);
        free(id);
        free(x);
        free(mk);
        double frac = 1.0 - (double)kept / n, sd = sqrt(ps[k] * (1 - ps[k]) / n);
        printf("test_colbert_head: dropout p %.2f drops %.4f of %zu\n", ps[k], frac, n);
        CHECK_MSG(fabs(frac - ps[k]) <= 5 * sd, "dropout p %g dropped %g", ps[k], frac);
        CHECK(same == n);
    }
}

/* ---- 6. a new projection ------------------------------------------------- */

static void test_linear_init(void) {
    int D = 128, H = 384;
    size_t n = (size_t)D * H;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    cb_colbert_linear_init(a, 12345, 0.02f, D, H);
    cb_colbert_linear_init(b, 12345, 0.02f, D, H);
    double s = 0, ss = 0;
    size_t beyond3 = 0;
    for (size_t i = 0; i < n; i++) {
        s += a[i];
        ss += (double)a[i] * a[i];
        beyond3 += fabsf(a[i]) > 0.06f;
    }
    double mean = s / n, sd = sqrt(ss / n - mean * mean);
    printf("test_colbert_head: linear init mean %.2g std %.5f, %.4f beyond 3 std\n", mean, sd, (double)beyond3 / n);
    CHECK(memcmp(a, b, n * sizeof(float)) == 0);
    CHECK_MSG(fabs(mean) < 3 * 0.02 / sqrt((double)n) && fabs(sd - 0.02) < 0.0003, "mean %g std %g", mean, sd);
    CHECK_MSG(fabs((double)beyond3 / n - 0.0027) < 0.001, "tail %g", (double)beyond3 / n);
    cb_colbert_linear_init(b, 12346, 0.02f, D, H);
    CHECK(memcmp(a, b, n * sizeof(float)) != 0);
    free(a);
    free(b);
}

int main(void) {
    const char *model_dir = test_env("COLBERT_MODEL");
    const char *ref_dir = test_env("COLBERT_REF");
    char path[4096];
    snprintf(path, sizeof path, "%s/colbert_head_ref.safetensors", ref_dir);
    cb_err err = {{0}};
    if (cb_st_open(&ref, path, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    const int32_t *cfg = ri("config", NULL);
    colbert_config cc;
    cb_colbert_config_default(&cc);
    cc.query_maxlen = cfg[2];
    cc.doc_maxlen = cfg[3];
    cc.dim = cfg[4];
    test_layout(model_dir, &cc);
    test_step();
    test_adamw();
    test_finite_differences();
    test_dropout();
    test_linear_init();
    cb_st_close(&ref);
    return test_finish("test_colbert_head");
}
