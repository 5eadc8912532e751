/* test_cuda_ops.c: every operation of the compute interface (ops.h) on the
 * CUDA backend against the CPU backend, the specification, on random data
 * in small odd shapes and in the real shapes of all-MiniLM-L6-v2 (H 384,
 * I 1536, 12 heads of 32) and BERT-base (heads of 64), packed batches of
 * queries and documents of NFCorpus-like lengths.
 *
 * Tolerances (the error is ||gpu - cpu||_2 / ||cpu||_2 over the tensor):
 *   fp32   1e-5 for every op (both sides fp32; only the order of additions
 *          and the last bits of expf/erff differ);
 *   bf16   the matmuls round their inputs to bf16 (unit roundoff u = 2^-9):
 *          the error of a product of random data is about u sqrt(2/3) =
 *          1.6e-3; the bound is 2^-8 = 3.9e-3. The other ops are fp32 in
 *          both precisions and are tested once, in fp32.
 * Exact where the backend says so: dropout masks, the embedding
 * scatter-add (word and position rows), the MaxSim backward, AdamW and the
 * loss are bit for bit the CPU's; and every reduction gives the same bits
 * when run twice (determinism).
 *
 * bf16 is checked to be bf16: on shapes cuBLASLt has bf16 kernels for, no
 * product falls back to fp32 (cb_cuda_matmul_stats), the result equals the
 * CPU's on inputs rounded to bf16 (1e-4) and differs from the fp32 one.
 * Every GPU output starts as NaN (0xff bytes), so an element a kernel never
 * writes fails the comparison. A sequence whose every key is masked gives
 * 0, as on the CPU.
 *
 * Runs on the device COLBERT_DEVICE names (default "cuda"); exits 2 when it
 * cannot be opened. `--small`: the small shapes only (a few seconds; for
 * compute-sanitizer, which runs kernels 10-100 times slower). Prints one
 * line per check, line-buffered (a crash keeps the lines before it), and a
 * closing "test_cuda_ops: N passed, N failed". */
#include "test.h"
#include "ops.h"
#include "rng.h"
#include "cuda/cuda.h"

#include <stdint.h>

static ops_device *G;          /* the GPU under test, current precision */
static ops_device *C;          /* the CPU */
static int verbose = 1;
static int small;              /* --small */

/* ---- helpers ----------------------------------------------------------------- */

static float *hrand(size_t n, float amp, uint64_t seed) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    rng r;
    cb_rng_init(&r, seed, 7);
    for (size_t i = 0; i < n; i++) x[i] = amp * (float)((double)(cb_rng_next(&r) >> 11) * 0x1.0p-53 * 2.0 - 1.0);
    return x;
}

static float *hcopy(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

/* A device buffer holding h's bytes; with h NULL, an output: 0xff bytes
 * (NaN as floats, -1 as integers), so what no kernel writes shows. */
static void *gup(const void *h, size_t bytes) {
    cb_err err = {{0}};
    void *p = cb_ops_alloc(G, bytes ? bytes : 4, "a test buffer", &err);
    if (!p) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    if (h) {
        cb_ops_upload(G, p, h, bytes);
    } else if (bytes) {
        void *nan = malloc(bytes);
        memset(nan, 0xff, bytes);
        cb_ops_upload(G, p, nan, bytes);
        free(nan);
    }
    return p;
}

/* x rounded to bf16 (to nearest, ties to even), as the GPU's inputs */
static float *hbf16(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        u += 0x7fffu + ((u >> 16) & 1u);
        u &= 0xffff0000u;
        memcpy(&y[i], &u, 4);
    }
    return y;
}

static void *gdown(const void *d, size_t bytes) {
    void *h = malloc(bytes ? bytes : 1);
    cb_ops_download(G, h, d, bytes);
    return h;
}

static double rel_l2(const float *a, const float *b, size_t n, double *max_rel) {
    double num = 0, den = 0, mx = 0, mb = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
        if (!(fabs(d) <= mx)) mx = fabs(d);
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    if (max_rel) *max_rel = mx / (mb > 0 ? mb : 1);
    double e = sqrt(num) / (sqrt(den) + 1e-30);
    return e == e ? e : INFINITY;
}

/* compare the GPU buffer g (n floats) with the CPU's host array c */
static double cmp(const char *what, const float *g, const float *c, size_t n, double tol) {
    float *h = gdown(g, n * sizeof(float));
    double mr;
    double e = rel_l2(h, c, n, &mr);
    CHECK_MSG(e <= tol, "%s: rel err %.3g > %.3g", what, e, tol);
    if (verbose) printf("  %-52s rel err %.2e  max %.2e  (tol %.0e)\n", what, e, mr, tol);
    free(h);
    return e;
}

static void cmp_bits(const char *what, const void *g, const void *c, size_t bytes) {
    void *h = gdown(g, bytes);
    int same = memcmp(h, c, bytes) == 0;
    CHECK_MSG(same, "%s: not bit for bit the CPU's", what);
    if (verbose) printf("  %-52s %s\n", what, same ? "bit for bit" : "DIFFERS");
    free(h);
}

/* run twice on the GPU, same bits? (a and b: device buffers of bytes) */
static void cmp_runs(const char *what, const void *a, const void *b, size_t bytes) {
    void *ha = gdown(a, bytes), *hb = gdown(b, bytes);
    int same = memcmp(ha, hb, bytes) == 0;
    CHECK_MSG(same, "%s: two runs differ", what);
    if (verbose) printf("  %-52s %s\n", what, same ? "same bits twice" : "NOT DETERMINISTIC");
    free(ha);
    free(hb);
}

/* ---- matmul --------------------------------------------------------------- */

/* bf16: the GPU's products against the CPU's on inputs rounded to bf16
 * (equal up to the order of fp32 additions), and unlike the fp32 ones */
static void check_bf16_rounding(int T, int Cc, int OC, const float *inp, const float *w, const float *b,
                                const float *dout, const float *g_inp, const float *g_w, const float *g_b,
                                const float *g_dout) {
    char name[160];
    size_t ni = (size_t)T * Cc, nw = (size_t)OC * Cc, no = (size_t)T * OC;
    float *ir = hbf16(inp, ni), *wr = hbf16(w, nw), *dr = hbf16(dout, no);
    float *out_r = malloc(no * 4), *out_f = malloc(no * 4), *g_out = gup(NULL, no * 4);
    cb_ops_linear_forward(C, out_r, ir, wr, b, T, Cc, OC);
    cb_ops_linear_forward(C, out_f, inp, w, b, T, Cc, OC);
    cb_ops_linear_forward(G, g_out, g_inp, g_w, g_b, T, Cc, OC);
    snprintf(name, sizeof name, "linear fwd bf16 T%d C%d OC%d vs CPU on bf16 inputs", T, Cc, OC);
    cmp(name, g_out, out_r, no, 1e-4);
    float *h = gdown(g_out, no * 4);
    double e = rel_l2(h, out_f, no, NULL);
    CHECK_MSG(e >= 2e-4, "linear fwd bf16 T%d C%d OC%d: rel err to fp32 %.3g: were the inputs rounded?", T, Cc, OC, e);
    if (verbose) printf("  %-52s rel err %.2e (>= 2e-4: bf16 ran)\n", "  ... vs the fp32 product", e);
    float *dinp = malloc(ni * 4), *dw = calloc(nw, 4), *g_dinp = gup(NULL, ni * 4), *g_dw = gup(dw, nw * 4);
    cb_ops_linear_backward(C, dinp, dw, NULL, dr, ir, wr, T, Cc, OC, 0);
    cb_ops_linear_backward(G, g_dinp, g_dw, NULL, g_dout, g_inp, g_w, T, Cc, OC, 0);
    snprintf(name, sizeof name, "linear bwd bf16 T%d C%d OC%d dinp vs CPU on bf16 inputs", T, Cc, OC);
    cmp(name, g_dinp, dinp, ni, 1e-4);
    snprintf(name, sizeof name, "linear bwd bf16 T%d C%d OC%d dw vs CPU on bf16 inputs", T, Cc, OC);
    cmp(name, g_dw, dw, nw, 1e-4);
    free(ir); free(wr); free(dr); free(out_r); free(out_f); free(h); free(dinp); free(dw);
    cb_ops_free(G, g_out); cb_ops_free(G, g_dinp); cb_ops_free(G, g_dw);
}

static void test_linear(int T, int Cc, int OC, double tol, uint64_t seed) {
    char name[128];
    const char *pr = cb_ops_precision_name(G->precision);
    long bf0 = 0, fb0 = 0, bf1 = 0, fb1 = 0;
    cb_cuda_matmul_stats(G, &bf0, &fb0);
    size_t ni = (size_t)T * Cc, nw = (size_t)OC * Cc, no = (size_t)T * OC;
    float *inp = hrand(ni, 1.0f, seed), *w = hrand(nw, 0.1f, seed + 1), *b = hrand(OC, 0.5f, seed + 2);
    float *dout = hrand(no, 1.0f, seed + 3), *dinp0 = hrand(ni, 1.0f, seed + 4);
    float *dw0 = hrand(nw, 1.0f, seed + 5), *db0 = hrand(OC, 1.0f, seed + 6);
    float *g_inp = gup(inp, ni * 4), *g_w = gup(w, nw * 4), *g_b = gup(b, OC * 4), *g_dout = gup(dout, no * 4);
    float *out = malloc(no * 4), *g_out = gup(NULL, no * 4);
    for (int bias = 0; bias < 2; bias++) {
        cb_ops_linear_forward(C, out, inp, w, bias ? b : NULL, T, Cc, OC);
        cb_ops_linear_forward(G, g_out, g_inp, g_w, bias ? g_b : NULL, T, Cc, OC);
        snprintf(name, sizeof name, "linear fwd %s T%d C%d OC%d%s", pr, T, Cc, OC, bias ? " +b" : "");
        cmp(name, g_out, out, no, tol);
    }
    for (int acc = 0; acc < 2; acc++) {
        float *dinp = hcopy(dinp0, ni), *dw = hcopy(dw0, nw), *db = hcopy(db0, OC);
        float *g_dinp = gup(dinp0, ni * 4), *g_dw = gup(dw0, nw * 4), *g_db = gup(db0, OC * 4);
        cb_ops_linear_backward(C, dinp, dw, acc ? db : NULL, dout, inp, w, T, Cc, OC, acc);
        cb_ops_linear_backward(G, g_dinp, g_dw, acc ? g_db : NULL, g_dout, g_inp, g_w, T, Cc, OC, acc);
        snprintf(name, sizeof name, "linear bwd %s T%d C%d OC%d acc%d dinp", pr, T, Cc, OC, acc);
        cmp(name, g_dinp, dinp, ni, tol);
        snprintf(name, sizeof name, "linear bwd %s T%d C%d OC%d acc%d dw", pr, T, Cc, OC, acc);
        cmp(name, g_dw, dw, nw, tol);
        snprintf(name, sizeof name, "linear bwd %s T%d C%d OC%d db", pr, T, Cc, OC);
        if (acc) cmp(name, g_db, db, OC, 1e-5);   /* a plain column sum: fp32 in both precisions */
        if (acc && T >= 512) {
            /* determinism: db and dw again from the same start */
            float *g_dw2 = gup(dw0, nw * 4), *g_db2 = gup(db0, OC * 4), *g_dinp2 = gup(dinp0, ni * 4);
            cb_ops_linear_backward(G, g_dinp2, g_dw2, g_db2, g_dout, g_inp, g_w, T, Cc, OC, acc);
            snprintf(name, sizeof name, "linear bwd %s T%d dw, db twice", pr, T);
            cmp_runs(name, g_dw, g_dw2, nw * 4);
            cmp_runs(name, g_db, g_db2, (size_t)OC * 4);
            cb_ops_free(G, g_dw2);
            cb_ops_free(G, g_db2);
            cb_ops_free(G, g_dinp2);
        }
        free(dinp); free(dw); free(db);
        cb_ops_free(G, g_dinp); cb_ops_free(G, g_dw); cb_ops_free(G, g_db);
    }
    if (G->precision == OPS_BF16) {
        /* leading dimensions C and OC multiples of 8: cuBLASLt has bf16
         * kernels, and none of these products may run in fp32 */
        int aligned = Cc % 8 == 0 && OC % 8 == 0;
        cb_cuda_matmul_stats(G, &bf1, &fb1);
        snprintf(name, sizeof name, "linear bf16 T%d C%d OC%d: products in fp32", T, Cc, OC);
        if (aligned) CHECK_MSG(fb1 == fb0 && bf1 > bf0, "%s: %ld of %ld", name, fb1 - fb0, bf1 - bf0);
        if (verbose) printf("  %-52s %ld of %ld%s\n", name, fb1 - fb0, bf1 - bf0, aligned ? " (want 0)" : " (odd: allowed)");
        if (aligned) check_bf16_rounding(T, Cc, OC, inp, w, b, dout, g_inp, g_w, g_b, g_dout);
    }
    free(inp); free(w); free(b); free(dout); free(dinp0); free(dw0); free(db0); free(out);
    cb_ops_free(G, g_inp); cb_ops_free(G, g_w); cb_ops_free(G, g_b); cb_ops_free(G, g_dout); cb_ops_free(G, g_out);
}

/* ---- embeddings ------------------------------------------------------------ */

static void test_embed(int T, int H, int V, int P, int with_types, uint64_t seed) {
    char name[128];
    int NT = 2;
    int32_t *ids = malloc(T * 4), *pos = malloc(T * 4), *types = malloc(T * 4);
    rng r;
    cb_rng_init(&r, seed, 1);
    for (int t = 0; t < T; t++) {
        /* many repeats: a few frequent ids (as [CLS], [SEP], [MASK]) */
        ids[t] = cb_rng_below(&r, 4) == 0 ? (int32_t)cb_rng_below(&r, 5) : (int32_t)cb_rng_below(&r, (uint64_t)V);
        pos[t] = (int32_t)(t % 97 < P ? t % 97 : 0);
        types[t] = (int32_t)cb_rng_below(&r, (uint64_t)NT);
    }
    size_t nwd = (size_t)V * H, npd = (size_t)P * H, ntd = (size_t)NT * H, no = (size_t)T * H;
    float *word = hrand(nwd, 1.0f, seed + 1), *pe = hrand(npd, 1.0f, seed + 2), *te = hrand(ntd, 1.0f, seed + 3);
    float *g_word = gup(word, nwd * 4), *g_pe = gup(pe, npd * 4), *g_te = gup(te, ntd * 4);
    int32_t *g_ids = gup(ids, T * 4), *g_pos = gup(pos, T * 4), *g_types = gup(types, T * 4);
    float *out = malloc(no * 4), *g_out = gup(NULL, no * 4);
    cb_ops_embed_forward(C, out, ids, pos, with_types ? types : NULL, word, pe, te, T, H);
    cb_ops_embed_forward(G, g_out, g_ids, g_pos, with_types ? g_types : NULL, g_word, g_pe, g_te, T, H);
    snprintf(name, sizeof name, "embed fwd T%d H%d%s", T, H, with_types ? " types" : "");
    cmp_bits(name, g_out, out, no * 4);
    float *dout = hrand(no, 1.0f, seed + 4);
    float *g_dout = gup(dout, no * 4);
    /* gradients start non-zero: they accumulate */
    float *dw = hrand(nwd, 0.1f, seed + 5), *dp = hrand(npd, 0.1f, seed + 6), *dt = hrand(ntd, 0.1f, seed + 7);
    float *g_dw = gup(dw, nwd * 4), *g_dp = gup(dp, npd * 4), *g_dt = gup(dt, ntd * 4);
    float *g_dw2 = gup(dw, nwd * 4), *g_dp2 = gup(dp, npd * 4), *g_dt2 = gup(dt, ntd * 4);
    cb_ops_embed_backward(C, dw, dp, dt, dout, ids, pos, with_types ? types : NULL, T, H);
    cb_ops_embed_backward(G, g_dw, g_dp, g_dt, g_dout, g_ids, g_pos, with_types ? g_types : NULL, T, H);
    cb_ops_embed_backward(G, g_dw2, g_dp2, g_dt2, g_dout, g_ids, g_pos, with_types ? g_types : NULL, T, H);
    snprintf(name, sizeof name, "embed bwd T%d H%d dword", T, H);
    cmp_bits(name, g_dw, dw, nwd * 4);
    snprintf(name, sizeof name, "embed bwd T%d H%d dpos", T, H);
    cmp_bits(name, g_dp, dp, npd * 4);
    snprintf(name, sizeof name, "embed bwd T%d H%d dtype%s", T, H, with_types ? " (types)" : " (all 0)");
    if (with_types) cmp_bits(name, g_dt, dt, ntd * 4);
    else cmp(name, g_dt, dt, ntd, 1e-5);
    snprintf(name, sizeof name, "embed bwd T%d H%d, all tables", T, H);
    cmp_runs(name, g_dw, g_dw2, nwd * 4);
    cmp_runs(name, g_dt, g_dt2, ntd * 4);
    free(ids); free(pos); free(types); free(word); free(pe); free(te); free(out); free(dout);
    free(dw); free(dp); free(dt);
    cb_ops_free(G, g_word); cb_ops_free(G, g_pe); cb_ops_free(G, g_te); cb_ops_free(G, g_ids); cb_ops_free(G, g_pos);
    cb_ops_free(G, g_types); cb_ops_free(G, g_out); cb_ops_free(G, g_dout); cb_ops_free(G, g_dw); cb_ops_free(G, g_dp);
    cb_ops_free(G, g_dt); cb_ops_free(G, g_dw2); cb_ops_free(G, g_dp2); cb_ops_free(G, g_dt2);
}

/* ---- elementwise --------------------------------------------------------------- */

static void test_layernorm(int T, int Cc, uint64_t seed) {
    char name[128];
    size_t n = (size_t)T * Cc;
    float *x = hrand(n, 2.0f, seed), *w = hrand(Cc, 1.0f, seed + 1), *b = hrand(Cc, 1.0f, seed + 2);
    for (size_t i = 0; i < n; i++) x[i] += 0.5f;   /* a non-zero mean */
    float *out = malloc(n * 4), *mean = malloc(T * 4), *rstd = malloc(T * 4);
    float *g_x = gup(x, n * 4), *g_w = gup(w, Cc * 4), *g_b = gup(b, Cc * 4);
    float *g_out = gup(NULL, n * 4), *g_mean = gup(NULL, T * 4), *g_rstd = gup(NULL, T * 4);
    cb_ops_layernorm_forward(C, out, mean, rstd, x, w, b, T, Cc, 1e-12f);
    cb_ops_layernorm_forward(G, g_out, g_mean, g_rstd, g_x, g_w, g_b, T, Cc, 1e-12f);
    snprintf(name, sizeof name, "layernorm fwd T%d C%d out", T, Cc);
    cmp(name, g_out, out, n, 1e-5);
    snprintf(name, sizeof name, "layernorm fwd T%d C%d mean", T, Cc);
    cmp(name, g_mean, mean, T, 1e-5);
    snprintf(name, sizeof name, "layernorm fwd T%d C%d rstd", T, Cc);
    cmp(name, g_rstd, rstd, T, 1e-5);
    float *dout = hrand(n, 1.0f, seed + 3), *dw = hrand(Cc, 1.0f, seed + 4), *db = hrand(Cc, 1.0f, seed + 5);
    float *dinp = malloc(n * 4);
    float *g_dout = gup(dout, n * 4), *g_dinp = gup(NULL, n * 4), *g_dw = gup(dw, Cc * 4), *g_db = gup(db, Cc * 4);
    float *g_dinp2 = gup(NULL, n * 4), *g_dw2 = gup(dw, Cc * 4), *g_db2 = gup(db, Cc * 4);
    /* the same statistics on both sides (the CPU's) */
    cb_ops_upload(G, g_mean, mean, T * 4);
    cb_ops_upload(G, g_rstd, rstd, T * 4);
    cb_ops_layernorm_backward(C, dinp, dw, db, dout, x, w, mean, rstd, T, Cc);
    cb_ops_layernorm_backward(G, g_dinp, g_dw, g_db, g_dout, g_x, g_w, g_mean, g_rstd, T, Cc);
    cb_ops_layernorm_backward(G, g_dinp2, g_dw2, g_db2, g_dout, g_x, g_w, g_mean, g_rstd, T, Cc);
    snprintf(name, sizeof name, "layernorm bwd T%d C%d dinp", T, Cc);
    cmp(name, g_dinp, dinp, n, 1e-5);
    snprintf(name, sizeof name, "layernorm bwd T%d C%d dw", T, Cc);
    cmp(name, g_dw, dw, Cc, 1e-5);
    snprintf(name, sizeof name, "layernorm bwd T%d C%d db", T, Cc);
    cmp(name, g_db, db, Cc, 1e-5);
    snprintf(name, sizeof name, "layernorm bwd T%d C%d dw, db", T, Cc);
    cmp_runs(name, g_dw, g_dw2, Cc * 4);
    cmp_runs(name, g_db, g_db2, Cc * 4);
    free(x); free(w); free(b); free(out); free(mean); free(rstd); free(dout); free(dw); free(db); free(dinp);
    cb_ops_free(G, g_x); cb_ops_free(G, g_w); cb_ops_free(G, g_b); cb_ops_free(G, g_out); cb_ops_free(G, g_mean);
    cb_ops_free(G, g_rstd); cb_ops_free(G, g_dout); cb_ops_free(G, g_dinp); cb_ops_free(G, g_dw); cb_ops_free(G, g_db);
    cb_ops_free(G, g_dinp2); cb_ops_free(G, g_dw2); cb_ops_free(G, g_db2);
}

/* A LayerNorm without bias (ModernBERT's): b and db NULL */
static void test_layernorm_nobias(int T, int Cc, uint64_t seed) {
    char name[128];
    size_t n = (size_t)T * Cc;
    float *x = hrand(n, 2.0f, seed), *w = hrand(Cc, 1.0f, seed + 1), *dout = hrand(n, 1.0f, seed + 2);
    float *dw = hrand(Cc, 1.0f, seed + 3), *out = malloc(n * 4), *mean = malloc(T * 4), *rstd = malloc(T * 4);
    float *dinp = malloc(n * 4);
    float *g_x = gup(x, n * 4), *g_w = gup(w, Cc * 4), *g_out = gup(NULL, n * 4), *g_mean = gup(NULL, T * 4);
    float *g_rstd = gup(NULL, T * 4), *g_dout = gup(dout, n * 4), *g_dinp = gup(NULL, n * 4), *g_dw = gup(dw, Cc * 4);
    cb_ops_layernorm_forward(C, out, mean, rstd, x, w, NULL, T, Cc, 1e-5f);
    cb_ops_layernorm_forward(G, g_out, g_mean, g_rstd, g_x, g_w, NULL, T, Cc, 1e-5f);
    snprintf(name, sizeof name, "layernorm (no bias) fwd T%d C%d out", T, Cc);
    cmp(name, g_out, out, n, 1e-5);
    cb_ops_upload(G, g_mean, mean, T * 4);
    cb_ops_upload(G, g_rstd, rstd, T * 4);
    cb_ops_layernorm_backward(C, dinp, dw, NULL, dout, x, w, mean, rstd, T, Cc);
    cb_ops_layernorm_backward(G, g_dinp, g_dw, NULL, g_dout, g_x, g_w, g_mean, g_rstd, T, Cc);
    snprintf(name, sizeof name, "layernorm (no bias) bwd T%d C%d dinp", T, Cc);
    cmp(name, g_dinp, dinp, n, 1e-5);
    snprintf(name, sizeof name, "layernorm (no bias) bwd T%d C%d dw", T, Cc);
    cmp(name, g_dw, dw, Cc, 1e-5);
    free(x); free(w); free(dout); free(dw); free(out); free(mean); free(rstd); free(dinp);
    cb_ops_free(G, g_x); cb_ops_free(G, g_w); cb_ops_free(G, g_out); cb_ops_free(G, g_mean); cb_ops_free(G, g_rstd);
    cb_ops_free(G, g_dout); cb_ops_free(G, g_dinp); cb_ops_free(G, g_dw);
}

/* Embeddings of the word rows alone (ModernBERT: no position or type table) */
static void test_embed_word_only(int T, int H, int V, uint64_t seed) {
    char name[128];
    int32_t *ids = malloc(T * 4);
    rng r;
    cb_rng_init(&r, seed, 1);
    for (int t = 0; t < T; t++)
        ids[t] = cb_rng_below(&r, 4) == 0 ? (int32_t)cb_rng_below(&r, 5) : (int32_t)cb_rng_below(&r, (uint64_t)V);
    size_t nwd = (size_t)V * H, no = (size_t)T * H;
    float *word = hrand(nwd, 1.0f, seed + 1), *out = malloc(no * 4), *dout = hrand(no, 1.0f, seed + 2);
    float *dw = hrand(nwd, 0.1f, seed + 3);
    float *g_word = gup(word, nwd * 4), *g_out = gup(NULL, no * 4), *g_dout = gup(dout, no * 4), *g_dw = gup(dw, nwd * 4);
    int32_t *g_ids = gup(ids, T * 4);
    cb_ops_embed_forward(C, out, ids, NULL, NULL, word, NULL, NULL, T, H);
    cb_ops_embed_forward(G, g_out, g_ids, NULL, NULL, g_word, NULL, NULL, T, H);
    snprintf(name, sizeof name, "embed (word only) fwd T%d H%d", T, H);
    cmp_bits(name, g_out, out, no * 4);
    cb_ops_embed_backward(C, dw, NULL, NULL, dout, ids, NULL, NULL, T, H);
    cb_ops_embed_backward(G, g_dw, NULL, NULL, g_dout, g_ids, NULL, NULL, T, H);
    snprintf(name, sizeof name, "embed (word only) bwd T%d H%d dword", T, H);
    cmp_bits(name, g_dw, dw, nwd * 4);
    free(ids); free(word); free(out); free(dout); free(dw);
    cb_ops_free(G, g_word); cb_ops_free(G, g_out); cb_ops_free(G, g_dout); cb_ops_free(G, g_dw); cb_ops_free(G, g_ids);
}

/* Rotary embeddings on the q and k parts of qkv rows, forward and backward,
 * over S sequences of the given lengths */
static void test_rope(const int *len, int S, int H, int NH, float theta, uint64_t seed) {
    char name[128];
    int *off = malloc((S + 1) * sizeof(int)), maxl = 0;
    off[0] = 0;
    for (int q = 0; q < S; q++) {
        off[q + 1] = off[q] + len[q];
        if (len[q] > maxl) maxl = len[q];
    }
    int T = off[S];
    size_t n = (size_t)T * 3 * H;
    float *x = hrand(n, 2.0f, seed), *dy = hrand(n, 1.0f, seed + 1);
    int *g_off = gup(off, (S + 1) * sizeof(int));
    ops_seqs cs = {.n_seq = S, .n_tok = T, .max_len = maxl, .off = off};
    ops_seqs gs = {.n_seq = S, .n_tok = T, .max_len = maxl, .off = g_off};
    float *g_x = gup(x, n * 4), *g_dy = gup(dy, n * 4);
    cb_ops_rope_forward(C, x, &cs, H, NH, theta);
    cb_ops_rope_forward(G, g_x, &gs, H, NH, theta);
    snprintf(name, sizeof name, "rope fwd S%d T%d H%d NH%d theta %g", S, T, H, NH, theta);
    cmp(name, g_x, x, n, 1e-5);
    cb_ops_rope_backward(C, dy, &cs, H, NH, theta);
    cb_ops_rope_backward(G, g_dy, &gs, H, NH, theta);
    snprintf(name, sizeof name, "rope bwd S%d T%d H%d NH%d theta %g", S, T, H, NH, theta);
    cmp(name, g_dy, dy, n, 1e-5);
    free(off); free(x); free(dy);
    cb_ops_free(G, g_off); cb_ops_free(G, g_x); cb_ops_free(G, g_dy);
}

/* GeGLU: out [T, I] from (input, gate) rows [T, 2I], and its backward */
static void test_geglu(int T, int I, uint64_t seed) {
    char name[128];
    size_t n = (size_t)T * I;
    float *x = hrand(2 * n, 4.0f, seed), *dout = hrand(n, 1.0f, seed + 1), *out = malloc(n * 4), *dx = malloc(2 * n * 4);
    float *g_x = gup(x, 2 * n * 4), *g_dout = gup(dout, n * 4), *g_out = gup(NULL, n * 4), *g_dx = gup(NULL, 2 * n * 4);
    cb_ops_geglu_forward(C, out, x, T, I);
    cb_ops_geglu_forward(G, g_out, g_x, T, I);
    snprintf(name, sizeof name, "geglu fwd T%d I%d", T, I);
    cmp(name, g_out, out, n, 1e-5);
    cb_ops_geglu_backward(C, dx, dout, x, T, I);
    cb_ops_geglu_backward(G, g_dx, g_dout, g_x, T, I);
    snprintf(name, sizeof name, "geglu bwd T%d I%d", T, I);
    cmp(name, g_dx, dx, 2 * n, 1e-5);
    free(x); free(dout); free(out); free(dx);
    cb_ops_free(G, g_x); cb_ops_free(G, g_dout); cb_ops_free(G, g_out); cb_ops_free(G, g_dx);
}

static void test_elementwise(size_t n, uint64_t seed) {
    char name[128];
    float *x = hrand(n, 4.0f, seed), *y = hrand(n, 1.0f, seed + 1), *out = malloc(n * 4);
    float *g_x = gup(x, n * 4), *g_y = gup(y, n * 4), *g_out = gup(NULL, n * 4);
    cb_ops_gelu_forward(C, out, x, n);
    cb_ops_gelu_forward(G, g_out, g_x, n);
    snprintf(name, sizeof name, "gelu fwd n%zu", n);
    cmp(name, g_out, out, n, 1e-5);
    float *dx = hcopy(y, n), *g_dx = gup(y, n * 4);
    cb_ops_gelu_backward(C, dx, x, dx, n);           /* in place, as bert.c */
    cb_ops_gelu_backward(G, g_dx, g_x, g_dx, n);
    snprintf(name, sizeof name, "gelu bwd n%zu (in place)", n);
    cmp(name, g_dx, dx, n, 1e-5);
    cb_ops_add(C, out, x, y, n);
    cb_ops_add(G, g_out, g_x, g_y, n);
    snprintf(name, sizeof name, "add n%zu", n);
    cmp_bits(name, g_out, out, n * 4);
    /* dropout: the same keep bits as the CPU, hence the same values */
    for (int k = 0; k < 2; k++) {
        float p = k ? 0.5f : 0.1f;
        float *xc = hcopy(x, n), *g_xc = gup(x, n * 4);
        uint8_t *m = malloc(n), *g_m = gup(NULL, n);
        /* three sequences of tokens of one element each, ids out of order */
        int off[4] = {0, (int)(n / 3), (int)(2 * n / 3), (int)n};
        uint64_t id[3] = {5, 17, 2};
        ops_seqs cs = {.n_seq = 3, .n_tok = (int)n, .max_len = (int)n, .off = off, .id = id};
        int *g_off = gup(off, sizeof off);
        uint64_t *g_id = gup(id, sizeof id);
        ops_seqs gs = {.n_seq = 3, .n_tok = (int)n, .max_len = (int)n, .off = g_off, .id = g_id};
        cb_ops_dropout_forward(C, xc, m, &cs, 1, p, 12345 + k, 3 + k);
        cb_ops_dropout_forward(G, g_xc, g_m, &gs, 1, p, 12345 + k, 3 + k);
        cb_ops_free(G, g_off);
        cb_ops_free(G, g_id);
        snprintf(name, sizeof name, "dropout p%.1f fwd mask n%zu", p, n);
        cmp_bits(name, g_m, m, n);
        snprintf(name, sizeof name, "dropout p%.1f fwd x n%zu", p, n);
        cmp_bits(name, g_xc, xc, n * 4);
        float *d = hcopy(y, n), *g_d = gup(y, n * 4);
        cb_ops_dropout_backward(C, d, m, n, p);
        cb_ops_dropout_backward(G, g_d, g_m, n, p);
        snprintf(name, sizeof name, "dropout p%.1f bwd n%zu", p, n);
        cmp_bits(name, g_d, d, n * 4);
        free(xc); free(m); free(d);
        cb_ops_free(G, g_xc); cb_ops_free(G, g_m); cb_ops_free(G, g_d);
    }
    free(x); free(y); free(out); free(dx);
    cb_ops_free(G, g_x); cb_ops_free(G, g_y); cb_ops_free(G, g_out); cb_ops_free(G, g_dx);
}

/* ---- attention ------------------------------------------------------------------ */

/* S packed sequences of the given lengths; mask: the last `pad` tokens of
 * every sequence of length >= pad_len masked (queries' [MASK] padding) */
static void test_attention(const int *len, int S, int H, int NH, int window, float p, int masked, int dead,
                           uint64_t seed) {
    char name[160];
    int *off = malloc((S + 1) * sizeof(int)), maxl = 0;
    size_t *att = malloc((S + 1) * sizeof(size_t));
    off[0] = 0;
    att[0] = 0;
    for (int s = 0; s < S; s++) {
        off[s + 1] = off[s] + len[s];
        att[s + 1] = att[s] + (size_t)len[s] * len[s];
        if (len[s] > maxl) maxl = len[s];
    }
    int T = off[S], D = H / NH;
    uint8_t *mask = malloc(T);
    for (int s = 0; s < S; s++)
        for (int i = 0; i < len[s]; i++)
            mask[off[s] + i] = (uint8_t)(s != dead && (!masked || i < 3 || i < len[s] - len[s] / 3));
    size_t nq = (size_t)T * 3 * H, nc = (size_t)T * H;
    float *qkv = hrand(nq, 2.0f, seed), *ctx = malloc(nc * 4);
    uint64_t *ids = malloc((size_t)S * sizeof(uint64_t));
    for (int s = 0; s < S; s++) ids[s] = (uint64_t)(3 * s + 7);
    ops_seqs cs = {.n_seq = S, .n_tok = T, .max_len = maxl, .off = off, .att_off = att, .id = ids};
    int *g_off = gup(off, (S + 1) * sizeof(int));
    size_t *g_att = gup(att, (S + 1) * sizeof(size_t));
    uint64_t *g_ids = gup(ids, (size_t)S * sizeof(uint64_t));
    ops_seqs gs = {.n_seq = S, .n_tok = T, .max_len = maxl, .off = g_off, .att_off = g_att, .id = g_ids};
    float *g_qkv = gup(qkv, nq * 4), *g_ctx = gup(NULL, nc * 4);
    uint8_t *g_mask = gup(mask, T);
    cb_err err = {{0}};
    ops_work cw = {.bytes = cb_ops_attention_workspace(C, maxl, D, 1)}, gw = {.bytes = cb_ops_attention_workspace(G, maxl, D, 1)};
    cw.p = cb_ops_alloc(C, cw.bytes, "workspace", &err);
    gw.p = cb_ops_alloc(G, gw.bytes, "workspace", &err);
    if (!cw.p || !gw.p) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    cb_ops_attention_forward(C, ctx, qkv, masked ? mask : NULL, &cs, H, NH, window, p, 99, 5, &cw);
    cb_ops_attention_forward(G, g_ctx, g_qkv, masked ? g_mask : NULL, &gs, H, NH, window, p, 99, 5, &gw);
    snprintf(name, sizeof name, "attention fwd S%d T%d max%d H%d NH%d win%d p%.1f%s%s", S, T, maxl, H, NH, window, p,
             masked ? " mask" : "", dead >= 0 ? " (one all masked)" : "");
    cmp(name, g_ctx, ctx, nc, 1e-5);
    float *dctx = hrand(nc, 1.0f, seed + 1), *dqkv = malloc(nq * 4);
    float *g_dctx = gup(dctx, nc * 4), *g_dqkv = gup(NULL, nq * 4), *g_dqkv2 = gup(NULL, nq * 4);
    cb_ops_attention_backward(C, dqkv, dctx, qkv, masked ? mask : NULL, &cs, H, NH, window, p, 99, 5, &cw);
    cb_ops_attention_backward(G, g_dqkv, g_dctx, g_qkv, masked ? g_mask : NULL, &gs, H, NH, window, p, 99, 5, &gw);
    cb_ops_attention_backward(G, g_dqkv2, g_dctx, g_qkv, masked ? g_mask : NULL, &gs, H, NH, window, p, 99, 5, &gw);
    snprintf(name, sizeof name, "attention bwd S%d T%d max%d H%d NH%d win%d p%.1f%s%s", S, T, maxl, H, NH, window, p,
             masked ? " mask" : "", dead >= 0 ? " (one all masked)" : "");
    cmp(name, g_dqkv, dqkv, nq, 1e-5);
    /* the three parts apart: dq, dk, dv */
    float *h = gdown(g_dqkv, nq * 4);
    const char *part[3] = {"dq", "dk", "dv"};
    for (int k = 0; k < 3; k++) {
        float *a = malloc(nc * 4), *b = malloc(nc * 4);
        for (int t = 0; t < T; t++) {
            memcpy(a + (size_t)t * H, h + (size_t)t * 3 * H + (size_t)k * H, H * 4);
            memcpy(b + (size_t)t * H, dqkv + (size_t)t * 3 * H + (size_t)k * H, H * 4);
        }
        double mr, e = rel_l2(a, b, nc, &mr);
        CHECK_MSG(e <= 1e-5, "attention bwd %s: rel err %.3g", part[k], e);
        if (verbose) printf("    %s rel err %.2e\n", part[k], e);
        free(a);
        free(b);
    }
    free(h);
    snprintf(name, sizeof name, "attention bwd S%d H%d p%.1f", S, H, p);
    cmp_runs(name, g_dqkv, g_dqkv2, nq * 4);
    free(off); free(att); free(ids); free(mask); free(qkv); free(ctx); free(dctx); free(dqkv);
    cb_ops_free(C, cw.p); cb_ops_free(G, gw.p);
    cb_ops_free(G, g_off); cb_ops_free(G, g_att); cb_ops_free(G, g_ids); cb_ops_free(G, g_qkv); cb_ops_free(G, g_ctx); cb_ops_free(G, g_mask);
    cb_ops_free(G, g_dctx); cb_ops_free(G, g_dqkv); cb_ops_free(G, g_dqkv2);
}

/* a training micro-batch's layout: nq queries of 32, 2 nq documents */
static void attention_batches(void) {
    int len[200], S = 0;
    rng r;
    cb_rng_init(&r, 4242, 0);
    /* small and odd: 1-token sequences, tile edges 63/64/65, one long */
    int odd[] = {1, 2, 7, 31, 32, 33, 63, 64, 65, 127, 129, 300};
    if (small) {
        /* tile edges and a sequence with every key masked (its output 0) */
        int few[] = {1, 7, 33, 65, 70};
        test_attention(few, 5, 48, 3, 0, 0.0f, 1, 3, 13);
        test_attention(few, 5, 64, 2, 0, 0.1f, 1, -1, 14);   /* heads of 32 */
        test_attention(few, 5, 48, 3, 4, 0.1f, 1, -1, 15);   /* a sliding window */
        return;
    }
    test_attention(odd, 12, 48, 3, 0, 0.0f, 0, -1, 11);     /* heads of 16 */
    test_attention(odd, 12, 48, 3, 0, 0.1f, 1, -1, 12);
    test_attention(odd, 12, 48, 3, 0, 0.0f, 1, 4, 13);      /* sequence 4: every key masked */
    /* MiniLM: 16 queries (32 tokens, masked padding), 32 documents */
    for (int q = 0; q < 16; q++) len[S++] = 32;
    for (int d = 0; d < 32; d++) len[S++] = 20 + (int)cb_rng_below(&r, 237);
    test_attention(len, S, 384, 12, 0, 0.0f, 1, -1, 21);
    test_attention(len, S, 384, 12, 0, 0.1f, 1, -1, 22);
    /* BERT-base heads of 64, documents up to 512 */
    S = 0;
    for (int q = 0; q < 4; q++) len[S++] = 32;
    for (int d = 0; d < 8; d++) len[S++] = 50 + (int)cb_rng_below(&r, 463);
    test_attention(len, S, 768, 12, 0, 0.0f, 1, -1, 31);
    test_attention(len, S, 768, 12, 0, 0.1f, 0, -1, 32);
    /* ModernBERT's local layers: sliding windows; with the queries' masked
     * padding some rows see no key (uniform over the sequence) */
    test_attention(odd, 12, 48, 3, 4, 0.0f, 0, -1, 41);
    test_attention(odd, 12, 48, 3, 4, 0.1f, 1, -1, 42);
    test_attention(odd, 12, 64, 2, 1, 0.0f, 1, -1, 43);
    S = 0;
    for (int q = 0; q < 4; q++) len[S++] = 32;
    for (int d = 0; d < 8; d++) len[S++] = 50 + (int)cb_rng_below(&r, 463);
    test_attention(len, S, 768, 12, 64, 0.0f, 1, -1, 44);   /* ModernBERT-base: local_attention 128 */
    test_attention(len, S, 768, 12, 3, 0.1f, 1, -1, 45);
}

/* ---- the ColBERT head ----------------------------------------------------------- */

static void test_head(int T, int D, uint64_t seed) {
    char name[128];
    size_t n = (size_t)T * D;
    float *x = hrand(n, 1.0f, seed);
    uint8_t *keep = malloc(T);
    for (int t = 0; t < T; t++) keep[t] = (uint8_t)(t % 5 != 3);
    memset(x + (size_t)(T / 2) * D, 0, D * 4);     /* a zero row: the norm clamps */
    keep[T / 2] = 1;
    float *g_x = gup(x, n * 4);
    uint8_t *g_keep = gup(keep, T);
    for (int relu = 0; relu < 2; relu++) {
        float *xc = hcopy(x, n), *g_xc = gup(x, n * 4);
        cb_ops_keep_relu_forward(C, xc, keep, relu, T, D);
        cb_ops_keep_relu_forward(G, g_xc, g_keep, relu, T, D);
        snprintf(name, sizeof name, "keep/relu%d fwd T%d D%d", relu, T, D);
        cmp_bits(name, g_xc, xc, n * 4);
        float *dx = hrand(n, 1.0f, seed + 1), *g_dx = gup(dx, n * 4);
        cb_ops_keep_relu_backward(C, dx, xc, keep, relu, T, D);
        cb_ops_keep_relu_backward(G, g_dx, g_xc, g_keep, relu, T, D);
        snprintf(name, sizeof name, "keep/relu%d bwd T%d D%d", relu, T, D);
        cmp_bits(name, g_dx, dx, n * 4);
        free(xc); free(dx);
        cb_ops_free(G, g_xc); cb_ops_free(G, g_dx);
    }
    float *out = malloc(n * 4), *norm = malloc(T * 4), *g_out = gup(NULL, n * 4), *g_norm = gup(NULL, T * 4);
    cb_ops_l2norm_forward(C, out, norm, x, T, D);
    cb_ops_l2norm_forward(G, g_out, g_norm, g_x, T, D);
    snprintf(name, sizeof name, "l2norm fwd T%d D%d out", T, D);
    cmp(name, g_out, out, n, 1e-5);
    snprintf(name, sizeof name, "l2norm fwd T%d D%d norm", T, D);
    cmp(name, g_norm, norm, T, 1e-5);
    float *dy = hrand(n, 1.0f, seed + 2), *g_dy = gup(dy, n * 4);
    cb_ops_upload(G, g_out, out, n * 4);     /* the CPU's forward on both sides */
    cb_ops_upload(G, g_norm, norm, T * 4);
    cb_ops_l2norm_backward(C, dy, dy, out, norm, T, D);      /* in place, as colbert.c */
    cb_ops_l2norm_backward(G, g_dy, g_dy, g_out, g_norm, T, D);
    /* the clamped zero row's gradient is dy / 1e-12: huge; compare the rest */
    float *h = gdown(g_dy, n * 4);
    size_t z0 = (size_t)(T / 2) * D;
    double e1 = rel_l2(h, dy, z0, NULL), e2 = rel_l2(h + z0 + D, dy + z0 + D, n - z0 - D, NULL);
    double ez = rel_l2(h + z0, dy + z0, D, NULL);
    CHECK_MSG(e1 <= 1e-5 && e2 <= 1e-5, "l2norm bwd: rel err %.3g / %.3g", e1, e2);
    CHECK_MSG(ez <= 1e-6, "l2norm bwd, clamped row: rel err %.3g", ez);
    if (verbose) printf("  %-52s rel err %.2e, clamped row %.2e\n", "l2norm bwd (in place)", e1 > e2 ? e1 : e2, ez);
    free(h); free(x); free(keep); free(out); free(norm); free(dy);
    cb_ops_free(G, g_x); cb_ops_free(G, g_keep); cb_ops_free(G, g_out); cb_ops_free(G, g_norm); cb_ops_free(G, g_dy);
}

/* ---- MaxSim ------------------------------------------------------------------------- */

static double dot_d(const float *a, const float *b, int D) {
    double s = 0;
    for (int c = 0; c < D; c++) s += (double)a[c] * b[c];
    return s;
}

static void test_maxsim(int nq, int nway, int ib, int Lq, int D, uint64_t seed) {
    char name[160];
    int nd = nq * nway, group = ib ? 0 : nway, G_ = ib ? nd : nway;
    int *d_off = malloc((nd + 1) * sizeof(int));
    rng r;
    cb_rng_init(&r, seed, 3);
    d_off[0] = 0;
    for (int k = 0; k < nd; k++) d_off[k + 1] = d_off[k] + 3 + (int)cb_rng_below(&r, 200);
    size_t Td = (size_t)d_off[nd];
    uint8_t *keep = malloc(Td);
    for (size_t j = 0; j < Td; j++) keep[j] = (uint8_t)(cb_rng_below(&r, 7) != 0);
    for (int j = d_off[1]; j < d_off[2]; j++) keep[j] = 0;      /* document 1: no kept row */
    size_t nqv = (size_t)nq * Lq * D, ndv = Td * D, ns = (size_t)nq * G_;
    float *qv = hrand(nqv, 1.0f, seed + 1), *dv = hrand(ndv, 1.0f, seed + 2);
    float *sc = malloc(ns * 4);
    int32_t *am = malloc(ns * Lq * 4);
    cb_err err = {{0}};
    ops_work cw = {.bytes = cb_ops_maxsim_workspace(C, Lq, Td)}, gw = {.bytes = cb_ops_maxsim_workspace(G, Lq, Td)};
    cw.p = cb_ops_alloc(C, cw.bytes, "workspace", &err);
    gw.p = cb_ops_alloc(G, gw.bytes, "workspace", &err);
    float *g_qv = gup(qv, nqv * 4), *g_dv = gup(dv, ndv * 4), *g_sc = gup(NULL, ns * 4);
    int32_t *g_am = gup(NULL, ns * Lq * 4);
    int *g_off = gup(d_off, (nd + 1) * sizeof(int));
    uint8_t *g_keep = gup(keep, Td);
    cb_ops_maxsim_forward(C, sc, am, qv, dv, d_off, d_off, keep, group, nq, nd, Lq, D, &cw);
    cb_ops_maxsim_forward(G, g_sc, g_am, g_qv, g_dv, g_off, d_off, g_keep, group, nq, nd, Lq, D, &gw);
    snprintf(name, sizeof name, "maxsim fwd nq%d nd%d Lq%d D%d %s", nq, nd, Lq, D, ib ? "all docs" : "group");
    cmp(name, g_sc, sc, ns, 1e-5);
    /* argmax: the CPU's, unless the two rows' similarities tie within 1e-6 */
    int32_t *h_am = gdown(g_am, ns * Lq * 4);
    size_t bad = 0, differ = 0;
    for (int q = 0; q < nq; q++)
        for (int k = 0; k < G_; k++)
            for (int i = 0; i < Lq; i++) {
                size_t e = ((size_t)q * G_ + k) * Lq + i;
                if (h_am[e] == am[e]) continue;
                differ++;
                const float *qq = qv + ((size_t)q * Lq + i) * D;
                if (h_am[e] < 0 || am[e] < 0 ||
                    fabs(dot_d(qq, dv + (size_t)h_am[e] * D, D) - dot_d(qq, dv + (size_t)am[e] * D, D)) > 1e-6)
                    bad++;
            }
    CHECK_MSG(bad == 0, "maxsim argmax: %zu of %zu differ beyond ties", bad, ns * Lq);
    if (verbose) printf("  %-52s %zu of %zu argmax differ (ties), %zu beyond\n", "maxsim argmax", differ, ns * Lq, bad);
    free(h_am);
    /* backward from the CPU's argmax on both sides */
    float *dsc = hrand(ns, 1.0f, seed + 3);
    dsc[1] = 0.0f;
    float *dq = hrand(nqv, 0.1f, seed + 4), *dd = hrand(ndv, 0.1f, seed + 5);
    float *g_dsc = gup(dsc, ns * 4), *g_dq = gup(dq, nqv * 4), *g_dd = gup(dd, ndv * 4);
    float *g_dq2 = gup(dq, nqv * 4), *g_dd2 = gup(dd, ndv * 4);
    cb_ops_upload(G, g_am, am, ns * Lq * 4);
    cb_ops_maxsim_backward(C, dq, dd, dsc, am, qv, dv, group, nq, nd, Lq, D);
    cb_ops_maxsim_backward(G, g_dq, g_dd, g_dsc, g_am, g_qv, g_dv, group, nq, nd, Lq, D);
    cb_ops_maxsim_backward(G, g_dq2, g_dd2, g_dsc, g_am, g_qv, g_dv, group, nq, nd, Lq, D);
    snprintf(name, sizeof name, "maxsim bwd nq%d nd%d %s d_qv", nq, nd, ib ? "all docs" : "group");
    cmp_bits(name, g_dq, dq, nqv * 4);
    snprintf(name, sizeof name, "maxsim bwd nq%d nd%d %s d_dv", nq, nd, ib ? "all docs" : "group");
    cmp_bits(name, g_dd, dd, ndv * 4);
    snprintf(name, sizeof name, "maxsim bwd %s", ib ? "all docs" : "group");
    cmp_runs(name, g_dd, g_dd2, ndv * 4);
    free(d_off); free(keep); free(qv); free(dv); free(sc); free(am); free(dsc); free(dq); free(dd);
    cb_ops_free(C, cw.p); cb_ops_free(G, gw.p);
    cb_ops_free(G, g_qv); cb_ops_free(G, g_dv); cb_ops_free(G, g_sc); cb_ops_free(G, g_am); cb_ops_free(G, g_off);
    cb_ops_free(G, g_keep); cb_ops_free(G, g_dsc); cb_ops_free(G, g_dq); cb_ops_free(G, g_dd); cb_ops_free(G, g_dq2);
    cb_ops_free(G, g_dd2);
}

/* ---- losses ------------------------------------------------------------------------- */

static void test_loss(int B, int nway, int ib, int teacher, int contrastive, int accum) {
    char name[160];
    loss_config c = {.nway = nway, .use_ib_negatives = ib, .distillation_alpha = 0.5f, .accumsteps = accum,
                     .contrastive = contrastive};
    int cols = cb_loss_score_cols(&c, B);
    size_t n = (size_t)B * cols;
    float *sc = hrand(n, 10.0f, 77 + (uint64_t)B), *t = hrand((size_t)B * nway, 5.0f, 78);
    float *ds = malloc(n * 4);
    float *g_sc = gup(sc, n * 4), *g_t = gup(t, (size_t)B * nway * 4), *g_ds = gup(NULL, n * 4);
    loss_parts pc, pg;
    float lc = cb_ops_loss(C, ds, &pc, sc, teacher ? t : NULL, &c, B);
    float lg = cb_ops_loss(G, g_ds, &pg, g_sc, teacher ? g_t : NULL, &c, B);
    snprintf(name, sizeof name, "loss B%d nway%d ib%d kl%d contrastive%d accum%d", B, nway, ib, teacher,
             contrastive, accum);
    CHECK_MSG(lc == lg && pc.main == pg.main && pc.ib == pg.ib, "%s: %.9g vs %.9g", name, lg, lc);
    if (verbose) printf("  %-52s %.7g vs %.7g\n", name, lg, lc);
    cmp_bits("  its gradient", g_ds, ds, n * 4);
    free(sc); free(t); free(ds);
    cb_ops_free(G, g_sc); cb_ops_free(G, g_t); cb_ops_free(G, g_ds);
}

/* ---- optimizer ----------------------------------------------------------------------- */

static void test_optim(size_t n) {
    char name[128];
    float *g = hrand(n, 1e-3f, 5), *p = hrand(n, 0.1f, 6), *m = calloc(n, 4), *v = calloc(n, 4);
    for (int k = 0; k < 2; k++) {
        float mx = k ? 1e9f : 1e-3f;     /* k 0 clips, k 1 does not */
        float *gc = hcopy(g, n), *g_g = gup(g, n * 4), *g_g2 = gup(g, n * 4);
        float tc = cb_ops_clip_grad_norm(C, gc, n, mx);
        float tg = cb_ops_clip_grad_norm(G, g_g, n, mx);
        float tg2 = cb_ops_clip_grad_norm(G, g_g2, n, mx);
        double rel = fabs((double)tg - tc) / tc;
        snprintf(name, sizeof name, "clip_grad_norm n%zu max %g: total", n, mx);
        CHECK_MSG(rel <= 1e-6 && tg == tg2, "%s: %.9g vs %.9g (again %.9g)", name, tg, tc, tg2);
        if (verbose) printf("  %-52s %.9g vs %.9g, rel %.1e\n", name, tg, tc, rel);
        snprintf(name, sizeof name, "clip_grad_norm n%zu max %g: grads", n, mx);
        cmp(name, g_g, gc, n, 1e-6);
        cmp_runs(name, g_g, g_g2, n * 4);
        free(gc);
        cb_ops_free(G, g_g);
        cb_ops_free(G, g_g2);
    }
    /* 3 AdamW steps from the same gradients: bit for bit */
    float *g_p = gup(p, n * 4), *g_m = gup(m, n * 4), *g_v = gup(v, n * 4), *g_gr = gup(g, n * 4);
    for (long t = 1; t <= 3; t++) {
        adamw_config ac = cb_adamw_default(1e-4 * (double)t);
        cb_ops_adamw(C, p, g, m, v, n, &ac, t);
        cb_ops_adamw(G, g_p, g_gr, g_m, g_v, n, &ac, t);
    }
    snprintf(name, sizeof name, "adamw n%zu, 3 steps: params", n);
    cmp_bits(name, g_p, p, n * 4);
    cmp_bits("  m", g_m, m, n * 4);
    cmp_bits("  v", g_v, v, n * 4);
    free(g); free(p); free(m); free(v);
    cb_ops_free(G, g_p); cb_ops_free(G, g_m); cb_ops_free(G, g_v); cb_ops_free(G, g_gr);
}

/* ---- main ------------------------------------------------------------------------------- */

static ops_device *open_gpu(const char *spec, ops_precision pr) {
    cb_err err = {{0}};
    ops_device *d = cb_ops_open(spec, pr, &err);
    if (!d || strcmp(d->kind, "cpu") == 0) {
        fprintf(stderr, "test_cuda_ops: cannot open %s: %s\n", spec, err.msg[0] ? err.msg : "not a GPU");
        exit(2);
    }
    return d;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);    /* through a pipe too: a crash keeps the lines before it */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--small")) small = 1;
        else { fprintf(stderr, "usage: test_cuda_ops [--small]\n"); return 2; }
    }
    const char *spec = getenv("COLBERT_DEVICE");
    if (!spec || !*spec || !strcmp(spec, "cpu") || !strcmp(spec, "auto")) spec = "cuda";
    C = cb_ops_cpu();
    ops_device *g32 = open_gpu(spec, OPS_FP32), *g16 = open_gpu(spec, OPS_BF16);
    printf("test_cuda_ops%s: %s\n  against %s\n", small ? " --small" : "", g32->desc, C->desc);
    double t0 = cb_now();

    G = g32;
    printf("-- matmul, fp32 (tolerance 1e-5)\n");
    test_linear(37, 13, 7, 1e-5, 1);          /* odd: unaligned rows */
    if (small) test_linear(33, 64, 48, 1e-5, 6);
    if (!small) {
        test_linear(1, 384, 128, 1e-5, 2);
        test_linear(2048, 384, 1152, 1e-5, 3);    /* MiniLM qkv */
        test_linear(2048, 1536, 384, 1e-5, 4);    /* MiniLM ffn down */
        test_linear(600, 768, 128, 1e-5, 5);      /* BERT-base head */
    }
    G = g16;
    printf("-- matmul, bf16 inputs, fp32 accumulation (tolerance 2^-8 = 3.9e-3)\n");
    test_linear(37, 13, 7, 0x1p-8, 1);
    if (small) test_linear(33, 64, 48, 0x1p-8, 6);
    if (!small) {
        test_linear(2048, 384, 1152, 0x1p-8, 3);
        test_linear(2048, 1536, 384, 0x1p-8, 4);
        test_linear(600, 768, 128, 0x1p-8, 5);
        test_linear(301, 384, 128, 0x1p-8, 7);    /* an odd number of tokens */
    }
    G = g32;
    printf("-- embeddings\n");
    test_embed(5, 8, 11, 4, 1, 10);
    if (!small) {
        test_embed(4096, 384, 30522, 512, 0, 11);
        test_embed(3000, 768, 30522, 512, 1, 12);
    } else {
        test_embed(300, 32, 1000, 64, 0, 11);
    }
    test_embed_word_only(5, 8, 11, 13);
    test_embed_word_only(small ? 300 : 4096, small ? 32 : 768, small ? 1000 : 50368, 14);
    printf("-- layernorm, gelu, add, dropout\n");
    test_layernorm(3, 5, 20);
    test_layernorm_nobias(3, 5, 23);
    test_layernorm_nobias(small ? 300 : 4096, small ? 64 : 768, 24);
    if (!small) {
        test_layernorm(4096, 384, 21);
        test_layernorm(1000, 768, 22);
    } else {
        test_layernorm(300, 64, 21);
    }
    test_elementwise(1001, 30);
    if (!small) test_elementwise((size_t)4096 * 1536, 31);
    printf("-- rotary embeddings, GeGLU (ModernBERT)\n");
    {
        int lens[] = {1, 7, 32, 65, 300};
        test_rope(lens, 5, 48, 3, 10000.0f, 60);
        test_rope(lens, 5, 768, 12, 160000.0f, 61);
        test_geglu(3, 7, 62);
        test_geglu(small ? 300 : 4096, small ? 96 : 1152, 63);
    }
    printf("-- attention\n");
    attention_batches();
    printf("-- head\n");
    test_head(37, 5, 40);
    if (!small) test_head(5000, 128, 41);
    printf("-- maxsim\n");
    test_maxsim(3, 2, 0, 8, 16, 50);
    if (small) test_maxsim(2, 2, 1, 32, 32, 52);
    if (!small) {
        test_maxsim(16, 2, 0, 32, 128, 51);
        test_maxsim(16, 2, 1, 32, 128, 52);
        test_maxsim(4, 3, 1, 32, 96, 53);
    }
    printf("-- losses\n");
    test_loss(8, 2, 0, 0, 0, 1);
    test_loss(8, 2, 1, 1, 0, 1);
    if (!small) {
        test_loss(8, 2, 1, 0, 0, 2);
        test_loss(8, 2, 0, 1, 0, 1);
        test_loss(8, 2, 0, 0, 1, 1);
        test_loss(32, 4, 1, 0, 0, 1);
    }
    printf("-- optimizer\n");
    test_optim(1000);
    if (!small) test_optim((size_t)22713728 + 128 * 384);   /* MiniLM + linear */

    printf("test_cuda_ops: %.1f s\n", cb_now() - t0);
    cb_ops_close(g32);
    cb_ops_close(g16);
    return test_finish("test_cuda_ops");
}
