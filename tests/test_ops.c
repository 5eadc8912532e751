/* test_ops.c: every operation of the compute interface (src/ops.h), forward
 * and backward, against a float64 reference written here, on seeded random
 * shapes (sizes 1, odd sizes, sequences longer than 64). It runs unchanged
 * on every backend:
 *   COLBERT_DEVICE     the device under test (default "cpu"; "cuda", "cuda:N")
 *   COLBERT_PRECISION  fp32 (default) or bf16; a precision needs a row in
 *                      tol_table below
 * Device memory is touched only through cb_ops_alloc / cb_ops_upload /
 * cb_ops_download; overwritten outputs start as 0x7f bytes (3.4e38, an
 * impossible index) so that an element an op forgets to write shows. When
 * the device is not the CPU, every output is also compared with the CPU
 * backend's (the specification) on the same inputs.
 *
 * Error of a tensor a against r: max_i |a_i - r_i| / max_i |r_i| (the worst
 * element against the tensor's scale; NaN or inf anywhere: infinite). Where
 * an output can be much smaller than the terms it is computed from, the
 * scale is at least the terms' size: sums that may cancel (matmuls, column
 * sums, scatter-adds, MaxSim) sqrt(sum of squared terms); GELU |x|;
 * LayerNorm's dinp rstd |dout w|; L2 norm's dinp |dout| / norm per row.
 * Backward: every gradient against a float64 reference derivative (the
 * whole tensor), and against central finite differences of the float64
 * forward (up to FD_PROBES elements per tensor, against the reference
 * gradient's scale) on trials whose accumulators start at zero.
 * Tolerances (fp32), per class of output:
 *   exact   0     buffers, dropout masks, keep/ReLU, argmax, -9999 scores
 *   elem    1e-5  elementwise ops, embeddings, LayerNorm, L2 norm, loss,
 *                 clipping, AdamW
 *   matmul  1e-4  linear, attention, MaxSim (sums of up to 1536 products)
 *   vs cpu  1e-5  every class but exact (0)
 * Finite differences use the class's tolerance (elem's for exact). The CPU
 * backend's worst errors are all below 1e-6. Prints one line per op and
 * class with the worst error of each comparison.
 */
#include "test.h"
#include "ops.h"
#include "rng.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ---- tolerances ---------------------------------------------------------- */

enum { EXACT, ELEM, MATMUL, N_CLASS };
static const char *const class_name[N_CLASS] = {"exact", "elem", "matmul"};

typedef struct tolerances {
    ops_precision precision;
    const char *name;
    double ref[N_CLASS];        /* against float64 (and finite differences) */
    double cpu[N_CLASS];        /* against the CPU backend */
} tolerances;

/* One row per precision the test accepts. */
static const tolerances tol_table[] = {
    {OPS_FP32, "fp32", {0, 1e-5, 1e-4}, {0, 1e-5, 1e-5}},
};
static const tolerances *tol;

#define FD_PROBES 48

/* ---- state --------------------------------------------------------------- */

static ops_device *dut, *cpu;   /* the device under test; the CPU */
static int vs_cpu;              /* dut is not the CPU: compare with it too */
static char trial[200];         /* the current trial, for failure messages */

/* ---- random numbers (fixed seed) ---------------------------------------- */

static uint64_t rng_ctr = 0x7e57095eedULL;
static uint64_t rnd(void) { return cb_rng_mix64(rng_ctr++); }
static double unif(double lo, double hi) { return lo + (hi - lo) * (double)(rnd() >> 11) * 0x1.0p-53; }
static int irand(int lo, int hi) { return lo + (int)(rnd() % (uint64_t)(hi - lo + 1)); }

/* ---- host scratch, freed at the end of each trial ------------------------ */

static void *tmp_p[256];
static int tmp_n;

static void *tmp(size_t bytes) {
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p || tmp_n == (int)(sizeof tmp_p / sizeof *tmp_p)) { fprintf(stderr, "test_ops: out of scratch\n"); exit(2); }
    return tmp_p[tmp_n++] = p;
}
static void tmp_free(void) { while (tmp_n) free(tmp_p[--tmp_n]); }
#define NEW(type, n) ((type *)tmp(sizeof(type) * (size_t)(n)))
#define FB(n) ((size_t)(n) * sizeof(float))

static float *rand_f(size_t n, double lo, double hi) {
    float *x = NEW(float, n);
    for (size_t i = 0; i < n; i++) x[i] = (float)unif(lo, hi);
    return x;
}
static float *copy_f(const float *x, size_t n) {
    float *y = NEW(float, n);
    memcpy(y, x, FB(n));
    return y;
}
static double *dbl(const float *x, size_t n) {
    double *y = NEW(double, n);
    for (size_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

/* ---- device buffers, freed at the end of each op call -------------------- */

typedef struct dmem {
    ops_device *d;
    void *p[24];
    int n;
} dmem;

/* bytes on m's device holding host's bytes (host NULL: 0x7f poison) */
static void *dput(dmem *m, const void *host, size_t bytes) {
    cb_err err = {{0}};
    void *p = cb_ops_alloc(m->d, bytes ? bytes : 1, "a test buffer", &err);
    if (!p) { fprintf(stderr, "test_ops: %s\n", err.msg); exit(2); }
    CB_ASSERT(m->n < (int)(sizeof m->p / sizeof *m->p));
    m->p[m->n++] = p;
    if (host) cb_ops_upload(m->d, p, host, bytes);
    else {
        void *junk = malloc(bytes ? bytes : 1);
        memset(junk, 0x7f, bytes);
        cb_ops_upload(m->d, p, junk, bytes);
        free(junk);
    }
    return p;
}
static void dfree(dmem *m) { while (m->n) cb_ops_free(m->d, m->p[--m->n]); }

/* ---- errors and the table of worst errors -------------------------------- */

/* max |a - r| / max(max |r|, min_scale) */
static double err_floor(const float *a, const double *r, size_t n, double min_scale) {
    double diff = 0, mag = min_scale;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - r[i]);
        if (!isfinite(d)) return INFINITY;
        if (d > diff) diff = d;
        if (fabs(r[i]) > mag) mag = fabs(r[i]);
    }
    return diff / (mag > 0 ? mag : 1);
}
static double err_ref(const float *a, const double *r, size_t n) { return err_floor(a, r, n, 0); }
/* A sum of terms t_k that cancels has a rounding error of about eps
 * sqrt(sum t_k^2), whatever its size: sums (matmuls, column sums, the
 * scatter-adds) are compared against max(|r|, sq_floor(sq)), sq[i] the sum
 * of the squares of element i's terms. */
static double sq_floor(const double *sq, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, sq[i]);
    return sqrt(m);
}
/* max |a - r| / max(max |r|, min_scale), r from the CPU */
static double err_f(const float *a, const float *r, size_t n, double min_scale) {
    double diff = 0, mag = min_scale;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - r[i]);
        if (!isfinite(d)) return INFINITY;
        if (d > diff) diff = d;
        if (fabs((double)r[i]) > mag) mag = fabs((double)r[i]);
    }
    return diff / (mag > 0 ? mag : 1);
}

enum { COL_REF, COL_FD, COL_CPU, N_COL };
static const char *const col_name[N_COL] = {"vs float64", "vs finite diff", "vs cpu"};

/* One line of the table: an op and a class of its outputs (an op whose
 * outputs are of two classes, e.g. dropout's mask and x, has two lines). */
typedef struct opstat {
    const char *op;
    int cls;
    double worst[N_COL];        /* -1: not measured */
} opstat;
static opstat stats[48];
static int n_stats;

/* The tolerance of a column for a class; finite differences are never
 * exact, so the exact class gets elem's there. */
static double tol_of(int cls, int col) {
    if (col == COL_CPU) return tol->cpu[cls];
    return tol->ref[col == COL_FD && cls == EXACT ? ELEM : cls];
}

/* Record error e of output `what` of op in column col; fail above the
 * tolerance. */
static void record(const char *op, int cls, int col, const char *what, double e) {
    opstat *s = NULL;
    for (int i = 0; i < n_stats && !s; i++)
        if (strcmp(stats[i].op, op) == 0 && stats[i].cls == cls) s = &stats[i];
    if (!s) {
        CB_ASSERT(n_stats < (int)(sizeof stats / sizeof *stats));
        s = &stats[n_stats++];
        *s = (opstat){op, cls, {-1, -1, -1}};
    }
    if (!(e <= s->worst[col])) s->worst[col] = e;
    double t = tol_of(cls, col);
    CHECK_MSG(e <= t, "%s %s %s: error %.3g > %.0g (%s)", op, what, col_name[col], e, t, trial);
}
static void cmp_ref(const char *op, int cls, const char *what, const float *a, const double *r, size_t n) {
    record(op, cls, COL_REF, what, err_ref(a, r, n));
}
static void cmp_cpu(const char *op, int cls, const char *what, const float *a, const float *c, size_t n) {
    record(op, cls, COL_CPU, what, err_f(a, c, n, 0));
}
/* the same against max(max |r|, min_scale): outputs whose natural scale can
 * exceed their size (sums that cancel, see sq_floor) */
static void cmp_ref_floor(const char *op, int cls, const char *what, const float *a, const double *r, size_t n,
                          double min_scale) {
    record(op, cls, COL_REF, what, err_floor(a, r, n, min_scale));
}
static void cmp_cpu_floor(const char *op, int cls, const char *what, const float *a, const float *c, size_t n,
                          double min_scale) {
    record(op, cls, COL_CPU, what, err_f(a, c, n, min_scale));
}
/* exact comparisons count mismatches */
static size_t mismatch_u8(const uint8_t *a, const uint8_t *b, size_t n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += a[i] != b[i];
    return bad;
}

static void print_table(void) {
    printf("%-20s %-7s %-20s %-20s %-20s\n", "op", "class", col_name[0], col_name[1], col_name[2]);
    for (int i = 0; i < n_stats; i++) {
        const opstat *s = &stats[i];
        char cell[N_COL][32];
        for (int c = 0; c < N_COL; c++) {
            double t = tol_of(s->cls, c);
            if (s->worst[c] < 0) snprintf(cell[c], sizeof cell[c], "-");
            else snprintf(cell[c], sizeof cell[c], "%.2e (tol %.0e)", s->worst[c], t);
        }
        printf("%-20s %-7s %-20s %-20s %-20s\n", s->op, class_name[s->cls], cell[0], cell[1], cell[2]);
    }
}

/* ---- finite differences -------------------------------------------------- */

/* A float64 scalar function of some arrays, one of which is perturbed. */
typedef double (*objective)(const void *ctx);

/* Worst |g_i - (f(x + h e_i) - f(x - h e_i)) / 2h| over up to FD_PROBES
 * elements i of x [n] (all of them when n <= FD_PROBES, else the first,
 * the last and random ones), against max(max |gref|, min_scale) (gref the
 * reference gradient). */
static double fd_err(const float *g, const double *gref, double *x, size_t n, objective f, const void *ctx,
                     double h, double min_scale) {
    double scale = min_scale, worst = 0;
    for (size_t i = 0; i < n; i++) if (fabs(gref[i]) > scale) scale = fabs(gref[i]);
    size_t np = n <= FD_PROBES ? n : FD_PROBES;
    for (size_t k = 0; k < np; k++) {
        size_t i = n <= FD_PROBES ? k : k == 0 ? 0 : k == 1 ? n - 1 : (size_t)(rnd() % n);
        double x0 = x[i];
        x[i] = x0 + h;
        double fp = f(ctx);
        x[i] = x0 - h;
        double fm = f(ctx);
        x[i] = x0;
        double e = fabs((double)g[i] - (fp - fm) / (2 * h));
        if (!isfinite(e)) return INFINITY;
        if (e > worst) worst = e;
    }
    return worst / (scale > 0 ? scale : 1);
}
/* the same for an elementwise op: fd[i] computed by the caller; the scale
 * at least min_scale */
static double fd_err_elem(const float *g, const double *fd, const double *gref, size_t n, double min_scale) {
    double scale = min_scale, worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (fabs(gref[i]) > scale) scale = fabs(gref[i]);
        double e = fabs((double)g[i] - fd[i]);
        if (!isfinite(e)) return INFINITY;
        if (e > worst) worst = e;
    }
    return worst / (scale > 0 ? scale : 1);
}

/* ---- buffers ------------------------------------------------------------- */

static void test_buffers(void) {
    static const size_t sizes[] = {1, 3, 64, 1000, 4097, 65537};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        size_t n = sizes[k], bad = 0, h = n / 2, lo = n / 3, len = n - lo - n / 5;
        snprintf(trial, sizeof trial, "%zu bytes", n);
        uint8_t *a = NEW(uint8_t, n), *b = NEW(uint8_t, n), *got = NEW(uint8_t, n), *want = NEW(uint8_t, n);
        for (size_t i = 0; i < n; i++) a[i] = (uint8_t)rnd(), b[i] = (uint8_t)rnd();
        dmem m = {.d = dut};
        uint8_t *x = dput(&m, a, n), *y = dput(&m, b, n);
        cb_ops_download(dut, got, x, n);
        bad += memcmp(got, a, n) != 0;
        cb_ops_download(dut, got, y, n);
        bad += memcmp(got, b, n) != 0;
        cb_ops_copy(dut, y, x, n);                         /* y = a */
        cb_ops_download(dut, got, y, n);
        bad += memcmp(got, a, n) != 0;
        cb_ops_zero(dut, x + lo, len);                     /* x = a, zeros in [lo, lo + len) */
        memcpy(want, a, n);
        memset(want + lo, 0, len);
        cb_ops_download(dut, got, x, n);
        bad += memcmp(got, want, n) != 0;
        cb_ops_upload(dut, y + h, b, n - h);               /* y = a[0, h) b[0, n - h) */
        cb_ops_copy(dut, x, y + h, n - h);                 /* x = b[0, n - h) then x's tail */
        memcpy(want, b, n - h);
        cb_ops_download(dut, got + 1, x + 1, n - 1);
        bad += memcmp(got + 1, want + 1, n - 1) != 0;
        cb_ops_upload(dut, x, a, 0);                       /* zero bytes: nothing happens */
        cb_ops_copy(dut, x, y, 0);
        cb_ops_zero(dut, x, 0);
        cb_ops_download(dut, got, x, 0);
        cb_ops_sync(dut);
        cb_ops_download(dut, got, x, n);
        bad += memcmp(got, want, n) != 0;
        record("buffers", EXACT, COL_REF, "round trips", (double)bad);
        dfree(&m);
        tmp_free();
    }
}

/* ---- linear -------------------------------------------------------------- */

static void run_linear_forward(ops_device *d, float *out, const float *inp, const float *w, const float *b, int T,
                               int C, int OC) {
    dmem m = {.d = d};
    float *o = dput(&m, NULL, FB(T * OC));
    cb_ops_linear_forward(d, o, dput(&m, inp, FB(T * C)), dput(&m, w, FB(OC * C)), b ? dput(&m, b, FB(OC)) : NULL, T,
                       C, OC);
    cb_ops_download(d, out, o, FB(T * OC));
    dfree(&m);
}

/* dinp (read when acc), dw, db (NULL: none) are in/out */
static void run_linear_backward(ops_device *d, float *dinp, float *dw, float *db, const float *dout,
                                const float *inp, const float *w, int T, int C, int OC, int acc) {
    dmem m = {.d = d};
    float *gi = dput(&m, acc ? dinp : NULL, FB(T * C)), *gw = dput(&m, dw, FB(OC * C));
    float *gb = db ? dput(&m, db, FB(OC)) : NULL;
    cb_ops_linear_backward(d, gi, gw, gb, dput(&m, dout, FB(T * OC)), dput(&m, inp, FB(T * C)),
                        dput(&m, w, FB(OC * C)), T, C, OC, acc);
    cb_ops_download(d, dinp, gi, FB(T * C));
    cb_ops_download(d, dw, gw, FB(OC * C));
    if (db) cb_ops_download(d, db, gb, FB(OC));
    dfree(&m);
}

/* out = inp @ w^T + b; sq (may be NULL): the sums of the squared terms */
static void ref_linear(double *out, double *sq, const double *inp, const double *w, const double *b, int T, int C,
                       int OC) {
    for (int t = 0; t < T; t++)
        for (int o = 0; o < OC; o++) {
            double s = b ? b[o] : 0, s2 = s * s;
            for (int c = 0; c < C; c++) {
                double x = inp[(size_t)t * C + c] * w[(size_t)o * C + c];
                s += x, s2 += x * x;
            }
            out[(size_t)t * OC + o] = s;
            if (sq) sq[(size_t)t * OC + o] = s2;
        }
}

typedef struct lin_ctx {
    const double *inp, *w, *b, *dout;
    double *out;
    int T, C, OC;
} lin_ctx;

/* sum dout * linear(inp, w, b) */
static double lin_objective(const void *p) {
    const lin_ctx *c = p;
    ref_linear(c->out, NULL, c->inp, c->w, c->b, c->T, c->C, c->OC);
    double f = 0;
    for (size_t i = 0; i < (size_t)c->T * c->OC; i++) f += c->dout[i] * c->out[i];
    return f;
}

static void test_linear(void) {
    static const int fixed[][3] = {{1, 1, 1}, {1, 7, 3}, {5, 1, 9}, {3, 5, 1}, {33, 384, 1152}, {17, 1536, 384},
                                   {9, 384, 1536}};
    int n_fixed = (int)(sizeof fixed / sizeof *fixed);
    for (int k = 0; k < n_fixed + 6; k++) {
        int T = k < n_fixed ? fixed[k][0] : irand(1, 70);
        int C = k < n_fixed ? fixed[k][1] : irand(1, 100);
        int OC = k < n_fixed ? fixed[k][2] : irand(1, 100);
        int bias = k % 2 == 0;
        size_t nI = (size_t)T * C, nW = (size_t)OC * C, nO = (size_t)T * OC;
        float *inp = rand_f(nI, -1, 1), *w = rand_f(nW, -1, 1), *b = bias ? rand_f(OC, -1, 1) : NULL;
        double *inp_d = dbl(inp, nI), *w_d = dbl(w, nW), *b_d = b ? dbl(b, OC) : NULL;

        snprintf(trial, sizeof trial, "T %d C %d OC %d, %s", T, C, OC, bias ? "bias" : "no bias");
        float *out = NEW(float, nO), *out_c = NEW(float, nO);
        double *out_r = NEW(double, nO), *sq = NEW(double, nO);
        run_linear_forward(dut, out, inp, w, b, T, C, OC);
        ref_linear(out_r, sq, inp_d, w_d, b_d, T, C, OC);
        cmp_ref_floor("linear_forward", MATMUL, "out", out, out_r, nO, sq_floor(sq, nO));
        if (vs_cpu) {
            run_linear_forward(cpu, out_c, inp, w, b, T, C, OC);
            cmp_cpu_floor("linear_forward", MATMUL, "out", out, out_c, nO, sq_floor(sq, nO));
        }

        /* acc 0 with zero accumulators (and finite differences), then acc 1
         * with random ones, db NULL on odd trials */
        float *dout = rand_f(nO, -1, 1);
        double *dout_d = dbl(dout, nO);
        for (int acc = 0; acc <= 1; acc++) {
            int with_db = !acc || k % 2 == 0;
            snprintf(trial, sizeof trial, "T %d C %d OC %d, acc %d, db %s", T, C, OC, acc, with_db ? "yes" : "NULL");
            float *gi0 = acc ? rand_f(nI, -1, 1) : NEW(float, nI), *gw0 = acc ? rand_f(nW, -1, 1) : NEW(float, nW);
            float *gb0 = !with_db ? NULL : acc ? rand_f(OC, -1, 1) : NEW(float, OC);
            float *gi = copy_f(gi0, nI), *gw = copy_f(gw0, nW), *gb = gb0 ? copy_f(gb0, OC) : NULL;
            run_linear_backward(dut, gi, gw, gb, dout, inp, w, T, C, OC, acc);

            double *ri = acc ? dbl(gi0, nI) : NEW(double, nI), *rw = dbl(gw0, nW);
            double *rb = gb0 ? dbl(gb0, OC) : NEW(double, OC);
            double *si = NEW(double, nI), *sw = NEW(double, nW), *sb = NEW(double, OC);
            for (size_t i = 0; i < nI; i++) si[i] = ri[i] * ri[i];
            for (size_t i = 0; i < nW; i++) sw[i] = rw[i] * rw[i];
            for (int o = 0; o < OC; o++) sb[o] = rb[o] * rb[o];
            for (int t = 0; t < T; t++)
                for (int o = 0; o < OC; o++) {
                    double g = dout_d[(size_t)t * OC + o];
                    for (int c = 0; c < C; c++) {
                        double xi = g * w_d[(size_t)o * C + c], xw = g * inp_d[(size_t)t * C + c];
                        ri[(size_t)t * C + c] += xi, si[(size_t)t * C + c] += xi * xi;
                        rw[(size_t)o * C + c] += xw, sw[(size_t)o * C + c] += xw * xw;
                    }
                    rb[o] += g, sb[o] += g * g;
                }
            cmp_ref_floor("linear_backward", MATMUL, "dinp", gi, ri, nI, sq_floor(si, nI));
            cmp_ref_floor("linear_backward", MATMUL, "dw", gw, rw, nW, sq_floor(sw, nW));
            if (gb) cmp_ref_floor("linear_backward", MATMUL, "db", gb, rb, OC, sq_floor(sb, OC));
            if (!acc && (double)T * C * OC <= 3e5) {
                lin_ctx c = {inp_d, w_d, b_d, dout_d, NEW(double, nO), T, C, OC};
                record("linear_backward", MATMUL, COL_FD, "dinp",
                       fd_err(gi, ri, inp_d, nI, lin_objective, &c, 1e-3, sq_floor(si, nI)));
                record("linear_backward", MATMUL, COL_FD, "dw",
                       fd_err(gw, rw, w_d, nW, lin_objective, &c, 1e-3, sq_floor(sw, nW)));
                if (b_d)
                    record("linear_backward", MATMUL, COL_FD, "db",
                           fd_err(gb, rb, b_d, OC, lin_objective, &c, 1e-3, sq_floor(sb, OC)));
            }
            if (vs_cpu) {
                float *ci = copy_f(gi0, nI), *cw = copy_f(gw0, nW), *cb = gb0 ? copy_f(gb0, OC) : NULL;
                run_linear_backward(cpu, ci, cw, cb, dout, inp, w, T, C, OC, acc);
                cmp_cpu_floor("linear_backward", MATMUL, "dinp", gi, ci, nI, sq_floor(si, nI));
                cmp_cpu_floor("linear_backward", MATMUL, "dw", gw, cw, nW, sq_floor(sw, nW));
                if (cb) cmp_cpu_floor("linear_backward", MATMUL, "db", gb, cb, OC, sq_floor(sb, OC));
            }
        }
        tmp_free();
    }
}

/* ---- embeddings ---------------------------------------------------------- */

typedef struct emb_case {
    int T, H, V, P, NTY;
    const int32_t *ids, *pos, *types;   /* types may be NULL */
} emb_case;

static void run_embed_forward(ops_device *d, float *out, const emb_case *e, const float *word, const float *pe,
                              const float *te) {
    dmem m = {.d = d};
    size_t ib = sizeof(int32_t) * (size_t)e->T;
    float *o = dput(&m, NULL, FB(e->T * e->H));
    cb_ops_embed_forward(d, o, dput(&m, e->ids, ib), dput(&m, e->pos, ib), e->types ? dput(&m, e->types, ib) : NULL,
                      dput(&m, word, FB(e->V * e->H)), dput(&m, pe, FB(e->P * e->H)),
                      dput(&m, te, FB(e->NTY * e->H)), e->T, e->H);
    cb_ops_download(d, out, o, FB(e->T * e->H));
    dfree(&m);
}

/* dword, dpos, dtype are in/out */
static void run_embed_backward(ops_device *d, float *dword, float *dpos, float *dtype, const float *dout,
                               const emb_case *e) {
    dmem m = {.d = d};
    size_t ib = sizeof(int32_t) * (size_t)e->T;
    float *gw = dput(&m, dword, FB(e->V * e->H)), *gp = dput(&m, dpos, FB(e->P * e->H));
    float *gt = dput(&m, dtype, FB(e->NTY * e->H));
    cb_ops_embed_backward(d, gw, gp, gt, dput(&m, dout, FB(e->T * e->H)), dput(&m, e->ids, ib), dput(&m, e->pos, ib),
                       e->types ? dput(&m, e->types, ib) : NULL, e->T, e->H);
    cb_ops_download(d, dword, gw, FB(e->V * e->H));
    cb_ops_download(d, dpos, gp, FB(e->P * e->H));
    cb_ops_download(d, dtype, gt, FB(e->NTY * e->H));
    dfree(&m);
}

typedef struct emb_ctx {
    const emb_case *e;
    const double *word, *pe, *te, *dout;
} emb_ctx;

/* sum dout * (word[ids] + pos_emb[pos] + type_emb[types]) */
static double emb_objective(const void *p) {
    const emb_ctx *c = p;
    const emb_case *e = c->e;
    double f = 0;
    for (int t = 0; t < e->T; t++)
        for (int i = 0; i < e->H; i++)
            f += c->dout[(size_t)t * e->H + i] *
                 (c->word[(size_t)e->ids[t] * e->H + i] + c->pe[(size_t)e->pos[t] * e->H + i] +
                  c->te[(size_t)(e->types ? e->types[t] : 0) * e->H + i]);
    return f;
}

static void test_embed(void) {
    static const int Hs[] = {1, 7, 32, 37, 130, 3, 64, 9};
    for (int k = 0; k < 8; k++) {
        emb_case e = {.T = k == 0 ? 1 : irand(1, 80), .H = Hs[k], .V = irand(1, 12), .P = irand(1, 40), .NTY = 2};
        int32_t *ids = NEW(int32_t, e.T), *pos = NEW(int32_t, e.T), *types = NEW(int32_t, e.T);
        for (int t = 0; t < e.T; t++) ids[t] = irand(0, e.V - 1), pos[t] = irand(0, e.P - 1), types[t] = irand(0, 1);
        e.ids = ids, e.pos = pos, e.types = k % 2 ? NULL : types;
        int zero_init = k % 4 < 2;
        snprintf(trial, sizeof trial, "T %d H %d vocab %d positions %d, types %s, %s accumulators", e.T, e.H, e.V,
                 e.P, e.types ? "given" : "NULL", zero_init ? "zero" : "random");
        size_t nO = (size_t)e.T * e.H, nWd = (size_t)e.V * e.H, nP = (size_t)e.P * e.H, nTy = (size_t)e.NTY * e.H;
        float *word = rand_f(nWd, -1, 1), *pe = rand_f(nP, -1, 1), *te = rand_f(nTy, -1, 1);
        double *word_d = dbl(word, nWd), *pe_d = dbl(pe, nP), *te_d = dbl(te, nTy);

        float *out = NEW(float, nO), *out_c = NEW(float, nO);
        double *out_r = NEW(double, nO);
        run_embed_forward(dut, out, &e, word, pe, te);
        for (int t = 0; t < e.T; t++)
            for (int i = 0; i < e.H; i++)
                out_r[(size_t)t * e.H + i] = word_d[(size_t)ids[t] * e.H + i] + pe_d[(size_t)pos[t] * e.H + i] +
                                             te_d[(size_t)(e.types ? types[t] : 0) * e.H + i];
        cmp_ref("embed_forward", ELEM, "out", out, out_r, nO);
        if (vs_cpu) {
            run_embed_forward(cpu, out_c, &e, word, pe, te);
            cmp_cpu("embed_forward", ELEM, "out", out, out_c, nO);
        }

        float *dout = rand_f(nO, -1, 1);
        double *dout_d = dbl(dout, nO);
        float *gw0 = zero_init ? NEW(float, nWd) : rand_f(nWd, -1, 1);
        float *gp0 = zero_init ? NEW(float, nP) : rand_f(nP, -1, 1);
        float *gt0 = zero_init ? NEW(float, nTy) : rand_f(nTy, -1, 1);
        float *gw = copy_f(gw0, nWd), *gp = copy_f(gp0, nP), *gt = copy_f(gt0, nTy);
        run_embed_backward(dut, gw, gp, gt, dout, &e);
        double *rw = dbl(gw0, nWd), *rp = dbl(gp0, nP), *rt = dbl(gt0, nTy);
        double *sw = NEW(double, nWd), *sp = NEW(double, nP), *st = NEW(double, nTy);
        for (size_t i = 0; i < nWd; i++) sw[i] = rw[i] * rw[i];
        for (size_t i = 0; i < nP; i++) sp[i] = rp[i] * rp[i];
        for (size_t i = 0; i < nTy; i++) st[i] = rt[i] * rt[i];
        for (int t = 0; t < e.T; t++)
            for (int i = 0; i < e.H; i++) {
                double g = dout_d[(size_t)t * e.H + i];
                size_t jw = (size_t)ids[t] * e.H + i, jp = (size_t)pos[t] * e.H + i;
                size_t jt = (size_t)(e.types ? types[t] : 0) * e.H + i;
                rw[jw] += g, sw[jw] += g * g;
                rp[jp] += g, sp[jp] += g * g;
                rt[jt] += g, st[jt] += g * g;
            }
        cmp_ref_floor("embed_backward", ELEM, "dword", gw, rw, nWd, sq_floor(sw, nWd));
        cmp_ref_floor("embed_backward", ELEM, "dpos", gp, rp, nP, sq_floor(sp, nP));
        cmp_ref_floor("embed_backward", ELEM, "dtype", gt, rt, nTy, sq_floor(st, nTy));
        if (zero_init) {
            emb_ctx c = {&e, word_d, pe_d, te_d, dout_d};
            record("embed_backward", ELEM, COL_FD, "dword",
                   fd_err(gw, rw, word_d, nWd, emb_objective, &c, 1e-3, sq_floor(sw, nWd)));
            record("embed_backward", ELEM, COL_FD, "dpos",
                   fd_err(gp, rp, pe_d, nP, emb_objective, &c, 1e-3, sq_floor(sp, nP)));
            record("embed_backward", ELEM, COL_FD, "dtype",
                   fd_err(gt, rt, te_d, nTy, emb_objective, &c, 1e-3, sq_floor(st, nTy)));
        }
        if (vs_cpu) {
            float *cw = copy_f(gw0, nWd), *cp = copy_f(gp0, nP), *ct = copy_f(gt0, nTy);
            run_embed_backward(cpu, cw, cp, ct, dout, &e);
            cmp_cpu_floor("embed_backward", ELEM, "dword", gw, cw, nWd, sq_floor(sw, nWd));
            cmp_cpu_floor("embed_backward", ELEM, "dpos", gp, cp, nP, sq_floor(sp, nP));
            cmp_cpu_floor("embed_backward", ELEM, "dtype", gt, ct, nTy, sq_floor(st, nTy));
        }
        tmp_free();
    }
}

/* ---- LayerNorm ----------------------------------------------------------- */

static void run_layernorm_forward(ops_device *d, float *out, float *mean, float *rstd, const float *inp,
                                  const float *w, const float *b, int T, int C, float eps) {
    dmem m = {.d = d};
    float *o = dput(&m, NULL, FB(T * C)), *mu = dput(&m, NULL, FB(T)), *rs = dput(&m, NULL, FB(T));
    cb_ops_layernorm_forward(d, o, mu, rs, dput(&m, inp, FB(T * C)), dput(&m, w, FB(C)), b ? dput(&m, b, FB(C)) : NULL,
                          T, C, eps);
    cb_ops_download(d, out, o, FB(T * C));
    cb_ops_download(d, mean, mu, FB(T));
    cb_ops_download(d, rstd, rs, FB(T));
    dfree(&m);
}

/* dinp out; dw, db in/out */
static void run_layernorm_backward(ops_device *d, float *dinp, float *dw, float *db, const float *dout,
                                   const float *inp, const float *w, const float *mean, const float *rstd, int T,
                                   int C) {
    dmem m = {.d = d};
    float *gi = dput(&m, NULL, FB(T * C)), *gw = dput(&m, dw, FB(C)), *gb = db ? dput(&m, db, FB(C)) : NULL;
    cb_ops_layernorm_backward(d, gi, gw, gb, dput(&m, dout, FB(T * C)), dput(&m, inp, FB(T * C)), dput(&m, w, FB(C)),
                           dput(&m, mean, FB(T)), dput(&m, rstd, FB(T)), T, C);
    cb_ops_download(d, dinp, gi, FB(T * C));
    cb_ops_download(d, dw, gw, FB(C));
    if (db) cb_ops_download(d, db, gb, FB(C));
    dfree(&m);
}

static void ref_layernorm(double *out, double *mean, double *rstd, const double *x, const double *w,
                          const double *b, int T, int C, double eps) {
    for (int t = 0; t < T; t++) {
        const double *r = x + (size_t)t * C;
        double mu = 0, var = 0;
        for (int i = 0; i < C; i++) mu += r[i];
        mu /= C;
        for (int i = 0; i < C; i++) var += (r[i] - mu) * (r[i] - mu);
        double rs = 1 / sqrt(var / C + eps);
        for (int i = 0; i < C; i++) out[(size_t)t * C + i] = (r[i] - mu) * rs * w[i] + b[i];
        mean[t] = mu;
        rstd[t] = rs;
    }
}

typedef struct ln_ctx {
    const double *x, *w, *b, *dout;
    double *out, *mean, *rstd, eps;
    int T, C;
} ln_ctx;

static double ln_objective(const void *p) {
    const ln_ctx *c = p;
    ref_layernorm(c->out, c->mean, c->rstd, c->x, c->w, c->b, c->T, c->C, c->eps);
    double f = 0;
    for (size_t i = 0; i < (size_t)c->T * c->C; i++) f += c->dout[i] * c->out[i];
    return f;
}

static void test_layernorm(void) {
    /* not C = 2: LayerNorm of 2 elements is +-1 whatever x, its dinp 0 up
     * to rounding, which no relative error measures */
    static const int Cs[] = {1, 3, 37, 384, 5, 130, 64, 768};
    /* trials 8 .. 11: without bias (b, db NULL; ModernBERT's), the
     * reference with b = 0 */
    for (int k = 0; k < 12; k++) {
        int C = Cs[k % 8], T = k == 1 ? 1 : irand(1, 40), zero_init = k % 2 == 0, nobias = k >= 8;
        float eps = k == 3 || nobias ? 1e-5f : 1e-12f;
        snprintf(trial, sizeof trial, "T %d C %d eps %g, %s accumulators%s", T, C, eps, zero_init ? "zero" : "random",
                 nobias ? ", no bias" : "");
        size_t n = (size_t)T * C;
        float *x = rand_f(n, -1, 1);
        double off = unif(-2, 2), sc = unif(0.5, 3);
        for (size_t i = 0; i < n; i++) x[i] = (float)(off + sc * x[i]);
        float *w = rand_f(C, 0.5, 1.5), *b = nobias ? NEW(float, C) : rand_f(C, -0.5, 0.5);
        double *x_d = dbl(x, n), *w_d = dbl(w, C), *b_d = dbl(b, C);
        float *b_op = nobias ? NULL : b;

        float *out = NEW(float, n), *mean = NEW(float, T), *rstd = NEW(float, T);
        double *out_r = NEW(double, n), *mean_r = NEW(double, T), *rstd_r = NEW(double, T);
        run_layernorm_forward(dut, out, mean, rstd, x, w, b_op, T, C, eps);
        ref_layernorm(out_r, mean_r, rstd_r, x_d, w_d, b_d, T, C, eps);
        cmp_ref("layernorm_forward", ELEM, "out", out, out_r, n);
        cmp_ref("layernorm_forward", ELEM, "mean", mean, mean_r, T);
        cmp_ref("layernorm_forward", ELEM, "rstd", rstd, rstd_r, T);
        if (vs_cpu) {
            float *oc = NEW(float, n), *mc = NEW(float, T), *rc = NEW(float, T);
            run_layernorm_forward(cpu, oc, mc, rc, x, w, b_op, T, C, eps);
            cmp_cpu("layernorm_forward", ELEM, "out", out, oc, n);
            cmp_cpu("layernorm_forward", ELEM, "mean", mean, mc, T);
            cmp_cpu("layernorm_forward", ELEM, "rstd", rstd, rc, T);
        }

        /* the backward gets the device's own mean and rstd */
        float *dout = rand_f(n, -1, 1);
        double *dout_d = dbl(dout, n);
        float *gw0 = zero_init ? NEW(float, C) : rand_f(C, -1, 1), *gb0 = zero_init ? NEW(float, C) : rand_f(C, -1, 1);
        float *gi = NEW(float, n), *gw = copy_f(gw0, C), *gb = copy_f(gb0, C);
        run_layernorm_backward(dut, gi, gw, nobias ? NULL : gb, dout, x, w, mean, rstd, T, C);
        /* xhat = (x - mean) rstd; g = dout w: dx = rstd (g - mean(g) - xhat
         * mean(g xhat)), compared against its terms' size rstd |g| (for
         * small C the three cancel) */
        double *ri = NEW(double, n), *rw = dbl(gw0, C), *rb = dbl(gb0, C), *sw = NEW(double, C), *sb = NEW(double, C);
        double fi = 0;
        for (int i = 0; i < C; i++) sw[i] = rw[i] * rw[i], sb[i] = rb[i] * rb[i];
        for (int t = 0; t < T; t++) {
            double m1 = 0, m2 = 0;
            for (int i = 0; i < C; i++) {
                size_t j = (size_t)t * C + i;
                double xh = (x_d[j] - mean_r[t]) * rstd_r[t], g = dout_d[j] * w_d[i];
                m1 += g / C;
                m2 += g * xh / C;
                fi = fmax(fi, rstd_r[t] * fabs(g));
                rw[i] += dout_d[j] * xh;
                rb[i] += dout_d[j];
                sw[i] += dout_d[j] * xh * dout_d[j] * xh;
                sb[i] += dout_d[j] * dout_d[j];
            }
            for (int i = 0; i < C; i++) {
                size_t j = (size_t)t * C + i;
                double xh = (x_d[j] - mean_r[t]) * rstd_r[t];
                ri[j] = rstd_r[t] * (dout_d[j] * w_d[i] - m1 - xh * m2);
            }
        }
        cmp_ref_floor("layernorm_backward", ELEM, "dinp", gi, ri, n, fi);
        cmp_ref_floor("layernorm_backward", ELEM, "dw", gw, rw, C, sq_floor(sw, C));
        if (!nobias) cmp_ref_floor("layernorm_backward", ELEM, "db", gb, rb, C, sq_floor(sb, C));
        if (zero_init) {
            ln_ctx c = {x_d, w_d, b_d, dout_d, NEW(double, n), NEW(double, T), NEW(double, T), eps, T, C};
            record("layernorm_backward", ELEM, COL_FD, "dinp", fd_err(gi, ri, x_d, n, ln_objective, &c, 1e-5, fi));
            record("layernorm_backward", ELEM, COL_FD, "dw",
                   fd_err(gw, rw, w_d, C, ln_objective, &c, 1e-5, sq_floor(sw, C)));
            if (!nobias)
                record("layernorm_backward", ELEM, COL_FD, "db",
                       fd_err(gb, rb, b_d, C, ln_objective, &c, 1e-5, sq_floor(sb, C)));
        }
        if (vs_cpu) {
            float *ci = NEW(float, n), *cw = copy_f(gw0, C), *cb = copy_f(gb0, C);
            run_layernorm_backward(cpu, ci, cw, nobias ? NULL : cb, dout, x, w, mean, rstd, T, C);
            cmp_cpu_floor("layernorm_backward", ELEM, "dinp", gi, ci, n, fi);
            cmp_cpu_floor("layernorm_backward", ELEM, "dw", gw, cw, C, sq_floor(sw, C));
            if (!nobias) cmp_cpu_floor("layernorm_backward", ELEM, "db", gb, cb, C, sq_floor(sb, C));
        }
        tmp_free();
    }
}

/* ---- GELU, add, dropout -------------------------------------------------- */

static double gelu_d(double x) { return 0.5 * x * (1 + erf(x / sqrt(2.0))); }
static double gelu_grad_d(double x) { return 0.5 * (1 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2 * M_PI); }

static void run_gelu_forward(ops_device *d, float *out, const float *inp, size_t n) {
    dmem m = {.d = d};
    float *o = dput(&m, NULL, FB(n));
    cb_ops_gelu_forward(d, o, dput(&m, inp, FB(n)), n);
    cb_ops_download(d, out, o, FB(n));
    dfree(&m);
}

/* alias: dinp is dout's buffer */
static void run_gelu_backward(ops_device *d, float *dinp, const float *inp, const float *dout, size_t n, int alias) {
    dmem m = {.d = d};
    float *g = dput(&m, dout, FB(n)), *gi = alias ? g : dput(&m, NULL, FB(n));
    cb_ops_gelu_backward(d, gi, dput(&m, inp, FB(n)), g, n);
    cb_ops_download(d, dinp, gi, FB(n));
    dfree(&m);
}

/* alias 1: out is a's buffer; 2: b's */
static void run_add(ops_device *d, float *out, const float *a, const float *b, size_t n, int alias) {
    dmem m = {.d = d};
    float *da = dput(&m, a, FB(n)), *db = dput(&m, b, FB(n));
    float *o = alias == 1 ? da : alias == 2 ? db : dput(&m, NULL, FB(n));
    cb_ops_add(d, o, da, db, n);
    cb_ops_download(d, out, o, FB(n));
    dfree(&m);
}

static void test_elementwise(void) {
    static const size_t sizes[] = {1, 7, 1000, 4099};
    for (int k = 0; k < 8; k++) {
        size_t n = sizes[k % 4];
        int alias = k / 4;
        snprintf(trial, sizeof trial, "n %zu, %s", n, alias ? "in place" : "out of place");
        float *x = rand_f(n, -6, 6);
        if (n > 2) x[1] = 0.0f;
        double *x_d = dbl(x, n);
        float *out = NEW(float, n), *oc = NEW(float, n);
        double *ref = NEW(double, n);
        /* GELU against max(|ref|, |x|) and its gradient against max(|ref|,
         * |dout|): in fp32, 1 + erf(x / sqrt 2) cancels for x << 0 (in any
         * implementation), so GELU(x) there has an absolute, not a
         * relative, error of a few 1e-8 |x| */
        double xmax = 0, dmax = 0;
        for (size_t i = 0; i < n; i++) xmax = fmax(xmax, fabs(x_d[i]));
        run_gelu_forward(dut, out, x, n);
        for (size_t i = 0; i < n; i++) ref[i] = gelu_d(x_d[i]);
        cmp_ref_floor("gelu_forward", ELEM, "out", out, ref, n, xmax);
        if (vs_cpu) {
            run_gelu_forward(cpu, oc, x, n);
            cmp_cpu_floor("gelu_forward", ELEM, "out", out, oc, n, xmax);
        }

        float *dout = rand_f(n, -1, 1);
        double *fd = NEW(double, n), h = 1e-5;
        for (size_t i = 0; i < n; i++) dmax = fmax(dmax, fabs(dout[i]));
        run_gelu_backward(dut, out, x, dout, n, alias);
        for (size_t i = 0; i < n; i++) {
            ref[i] = dout[i] * gelu_grad_d(x_d[i]);
            fd[i] = dout[i] * (gelu_d(x_d[i] + h) - gelu_d(x_d[i] - h)) / (2 * h);
        }
        cmp_ref_floor("gelu_backward", ELEM, "dinp", out, ref, n, dmax);
        record("gelu_backward", ELEM, COL_FD, "dinp", fd_err_elem(out, fd, ref, n, dmax));
        if (vs_cpu) {
            run_gelu_backward(cpu, oc, x, dout, n, alias);
            cmp_cpu_floor("gelu_backward", ELEM, "dinp", out, oc, n, dmax);
        }

        /* add, out of place / out = a / out = b */
        for (int al = 0; al < 3; al++) {
            snprintf(trial, sizeof trial, "n %zu, alias %d", n, al);
            run_add(dut, out, x, dout, n, al);
            for (size_t i = 0; i < n; i++) ref[i] = x_d[i] + dout[i];
            cmp_ref("add", ELEM, "out", out, ref, n);
            if (vs_cpu) {
                run_add(cpu, oc, x, dout, n, al);
                cmp_cpu("add", ELEM, "out", out, oc, n);
            }
        }
        tmp_free();
    }
}

/* x, mask [T, H] of the sequences off [S + 1] (host) with dropout ids id [S] */
static void run_dropout_forward(ops_device *d, float *x, uint8_t *mask, const int *off, const uint64_t *id, int S,
                                int H, float p, uint64_t seed, uint64_t stream) {
    dmem m = {.d = d};
    size_t n = (size_t)off[S] * H;
    float *dx = dput(&m, x, FB(n));
    uint8_t *dm = dput(&m, NULL, n);
    ops_seqs s = {.n_seq = S, .n_tok = off[S], .off = dput(&m, off, sizeof(int) * (size_t)(S + 1)),
                  .id = dput(&m, id, sizeof(uint64_t) * (size_t)S)};
    for (int q = 0; q < S; q++)
        if (off[q + 1] - off[q] > s.max_len) s.max_len = off[q + 1] - off[q];
    cb_ops_dropout_forward(d, dx, dm, &s, H, p, seed, stream);
    cb_ops_download(d, x, dx, FB(n));
    cb_ops_download(d, mask, dm, n);
    dfree(&m);
}

static void run_dropout_backward(ops_device *d, float *dx, const uint8_t *mask, size_t n, float p) {
    dmem m = {.d = d};
    float *g = dput(&m, dx, FB(n));
    cb_ops_dropout_backward(d, g, dput(&m, mask, n), n, p);
    cb_ops_download(d, dx, g, FB(n));
    dfree(&m);
}

static void test_dropout(void) {
    static const size_t sizes[] = {1, 7, 1000, 100003};
    static const float ps[] = {0.0f, 0.1f, 0.5f, 0.9f};
    for (int k = 0; k < 16; k++) {
        float p = ps[k / 4];
        uint64_t seed = rnd(), stream = (uint64_t)k * 3 + 1;
        /* about sizes[k % 4] elements: sequences of 1 .. 40 tokens of H
         * elements each, with unrelated ids */
        int H = k % 2 ? 1 : 3, S = 0, *off = NEW(int, sizes[k % 4] + 1);
        uint64_t *id = NEW(uint64_t, sizes[k % 4]);
        off[0] = 0;
        while ((size_t)off[S] * H < sizes[k % 4]) {
            off[S + 1] = off[S] + irand(1, 40);
            id[S] = k % 3 ? rnd() : (uint64_t)S;
            S++;
        }
        size_t n = (size_t)off[S] * H;
        snprintf(trial, sizeof trial, "n %zu (S %d, H %d) p %g seed %llx stream %llu", n, S, H, p,
                 (unsigned long long)seed, (unsigned long long)stream);
        float *x0 = rand_f(n, -2, 2), *x = copy_f(x0, n);
        uint8_t *mask = NEW(uint8_t, n), *want = NEW(uint8_t, n);
        double *ref = NEW(double, n), *fd = NEW(double, n);
        run_dropout_forward(dut, x, mask, off, id, S, H, p, seed, stream);
        size_t kept = 0;
        for (int q = 0; q < S; q++)
            for (size_t e = 0; e < (size_t)(off[q + 1] - off[q]) * H; e++) {
                size_t i = (size_t)off[q] * H + e;
                want[i] = (uint8_t)cb_ops_dropout_keep(seed, stream, id[q], e, p);
                kept += want[i];
                ref[i] = want[i] ? x0[i] / (1.0 - p) : 0.0;
            }
        record("dropout_forward", EXACT, COL_REF, "mask", (double)mismatch_u8(mask, want, n));
        cmp_ref("dropout_forward", ELEM, "x", x, ref, n);
        if (n >= 1000) {   /* the hash keeps 1 - p of the elements (6 sigma) */
            double f = (double)kept / n;
            CHECK_MSG(fabs(f - (1 - p)) <= 6 * sqrt(p * (1 - p) / n) + 1e-9, "dropout keeps %g, expected %g (%s)",
                      f, 1 - p, trial);
        }
        if (vs_cpu) {
            float *xc = copy_f(x0, n);
            uint8_t *mc = NEW(uint8_t, n);
            run_dropout_forward(cpu, xc, mc, off, id, S, H, p, seed, stream);
            record("dropout_forward", EXACT, COL_CPU, "mask", (double)mismatch_u8(mask, mc, n));
            cmp_cpu("dropout_forward", ELEM, "x", x, xc, n);
        }

        /* backward through the device's own mask; forward as a function of
         * x: keep ? x / (1 - p) : 0 */
        float *d0 = rand_f(n, -1, 1), *dx = copy_f(d0, n);
        run_dropout_backward(dut, dx, mask, n, p);
        double h = 1e-3;
        for (size_t i = 0; i < n; i++) {
            ref[i] = want[i] ? d0[i] / (1.0 - p) : 0.0;
            double fp = want[i] ? (x0[i] + h) / (1.0 - p) : 0, fm = want[i] ? (x0[i] - h) / (1.0 - p) : 0;
            fd[i] = d0[i] * (fp - fm) / (2 * h);
        }
        cmp_ref("dropout_backward", ELEM, "dx", dx, ref, n);
        record("dropout_backward", ELEM, COL_FD, "dx", fd_err_elem(dx, fd, ref, n, 0));
        if (vs_cpu) {
            float *dc = copy_f(d0, n);
            run_dropout_backward(cpu, dc, mask, n, p);
            cmp_cpu("dropout_backward", ELEM, "dx", dx, dc, n);
        }
        tmp_free();
    }
}

/* ---- attention ----------------------------------------------------------- */

typedef struct att_case {
    int S, T, H, NH, max_len;
    const int *off;             /* [S + 1] host */
    const size_t *att_off;      /* [S] host */
    const uint64_t *id;         /* [S] host: dropout ids */
    const uint8_t *mask;        /* [T] or NULL */
    float p;
    uint64_t seed, stream;
    int window;                 /* 0: every key; w: |i - j| <= w */
} att_case;

/* ctx out; with dqkv (out), also the backward from dctx. Workspaces for
 * sequences up to ws_len tokens. */
static void run_attention(ops_device *d, float *ctx, float *dqkv, const float *dctx, const float *qkv,
                          const att_case *a, int ws_len) {
    dmem m = {.d = d};
    int T = a->T, H = a->H, NH = a->NH, D = H / NH;
    ops_seqs s = {.n_seq = a->S, .n_tok = T, .max_len = a->max_len,
                  .off = dput(&m, a->off, sizeof(int) * (size_t)(a->S + 1)),
                  .att_off = dput(&m, a->att_off, sizeof(size_t) * (size_t)a->S),
                  .id = dput(&m, a->id, sizeof(uint64_t) * (size_t)a->S)};
    const uint8_t *mask = a->mask ? dput(&m, a->mask, (size_t)T) : NULL;
    float *q = dput(&m, qkv, FB((size_t)T * 3 * H)), *c = dput(&m, NULL, FB((size_t)T * H));
    ops_work wf = {.bytes = cb_ops_attention_workspace(d, ws_len, D, 0)};
    wf.p = dput(&m, NULL, wf.bytes);
    cb_ops_attention_forward(d, c, q, mask, &s, H, NH, a->window, a->p, a->seed, a->stream, &wf);
    cb_ops_download(d, ctx, c, FB((size_t)T * H));
    if (dqkv) {
        ops_work wb = {.bytes = cb_ops_attention_workspace(d, ws_len, D, 1)};
        wb.p = dput(&m, NULL, wb.bytes);
        float *g = dput(&m, NULL, FB((size_t)T * 3 * H));
        cb_ops_attention_backward(d, g, dput(&m, dctx, FB((size_t)T * H)), q, mask, &s, H, NH, a->window, a->p, a->seed,
                               a->stream, &wb);
        cb_ops_download(d, dqkv, g, FB((size_t)T * 3 * H));
    }
    dfree(&m);
}

/* Whether dropout keeps probability (i, j) of sequence s, head h (n tokens). */
static int att_keep(const att_case *a, int s, int h, int n, int i, int j) {
    if (a->p <= 0) return 1;
    size_t e = (size_t)h * n * n + (size_t)i * n + j;
    return cb_ops_dropout_keep(a->seed, a->stream, a->id[s], e, a->p);
}

/* Naive attention in float64, as ops.h documents it: per sequence s and
 * head h, P = softmax(q k^T / sqrt(D)) over the keys with mask 1 (and
 * within the window: |i - j| <= window; a windowed row that sees no key is
 * 1/n everywhere, its backward the softmax's through those P); with
 * p > 0, element (i, j) kept by cb_ops_dropout_keep(seed, stream, id[s],
 * h n^2 + i n + j) and scaled by 1 / (1 - p); ctx = P v. With dqkv, also
 * the backward of sum dctx * ctx. */
static void ref_attention(double *ctx, double *dqkv, const double *dctx, const double *qkv, const att_case *a) {
    int H = a->H, NH = a->NH, D = H / NH;
    size_t ld = (size_t)3 * H, mm = (size_t)a->max_len * a->max_len;
    double scale = 1 / sqrt((double)D);
    double *P = malloc(mm * sizeof(double)), *Pd = malloc(mm * sizeof(double)), *dP = malloc(mm * sizeof(double));
    if (dqkv) memset(dqkv, 0, sizeof(double) * (size_t)a->T * ld);
    for (int s = 0; s < a->S; s++)
        for (int h = 0; h < NH; h++) {
            int o = a->off[s], n = a->off[s + 1] - o;
            const double *q = qkv + (size_t)o * ld + (size_t)h * D, *k = q + H, *v = q + 2 * H;
            for (int i = 0; i < n; i++) {
                double mx = -INFINITY, sum = 0;
                double *pr = P + (size_t)i * n;
                for (int j = 0; j < n; j++) {
                    double sc = 0;
                    for (int c = 0; c < D; c++) sc += q[(size_t)i * ld + c] * k[(size_t)j * ld + c];
                    int hidden = (a->mask && !a->mask[o + j]) || (a->window > 0 && abs(i - j) > a->window);
                    pr[j] = hidden ? -INFINITY : sc * scale;
                    if (pr[j] > mx) mx = pr[j];
                }
                if (mx == -INFINITY && a->window > 0) {   /* uniform: every score the same */
                    for (int j = 0; j < n; j++) pr[j] = 0;
                    mx = 0;
                }
                for (int j = 0; j < n; j++) sum += pr[j] = pr[j] == -INFINITY ? 0 : exp(pr[j] - mx);
                for (int j = 0; j < n; j++) {
                    pr[j] /= sum;
                    Pd[(size_t)i * n + j] = att_keep(a, s, h, n, i, j) ? pr[j] / (1.0 - a->p) : 0;
                }
                for (int c = 0; c < D; c++) {
                    double acc = 0;
                    for (int j = 0; j < n; j++) acc += Pd[(size_t)i * n + j] * v[(size_t)j * ld + c];
                    ctx[(size_t)(o + i) * H + (size_t)h * D + c] = acc;
                }
            }
            if (!dqkv) continue;
            double *dq = dqkv + (size_t)o * ld + (size_t)h * D, *dk = dq + H, *dv = dq + 2 * H;
            const double *dc = dctx + (size_t)o * H + (size_t)h * D;
            for (int i = 0; i < n; i++) {
                double dot = 0;
                for (int j = 0; j < n; j++) {
                    size_t e = (size_t)i * n + j;
                    double g = 0;    /* d Pd(i, j) */
                    for (int c = 0; c < D; c++) {
                        g += dc[(size_t)i * H + c] * v[(size_t)j * ld + c];
                        dv[(size_t)j * ld + c] += Pd[e] * dc[(size_t)i * H + c];
                    }
                    dP[e] = att_keep(a, s, h, n, i, j) ? g / (1.0 - a->p) : 0;
                    dot += P[e] * dP[e];
                }
                for (int j = 0; j < n; j++) {
                    size_t e = (size_t)i * n + j;
                    double ds = P[e] * (dP[e] - dot) * scale;   /* d score(i, j), score = q k / sqrt(D) */
                    for (int c = 0; c < D; c++) {
                        dq[(size_t)i * ld + c] += ds * k[(size_t)j * ld + c];
                        dk[(size_t)j * ld + c] += ds * q[(size_t)i * ld + c];
                    }
                }
            }
        }
    free(P);
    free(Pd);
    free(dP);
}

typedef struct att_ctx {
    const att_case *a;
    const double *qkv, *dctx;
    double *ctx;
} att_ctx;

static double att_objective(const void *p) {
    const att_ctx *c = p;
    ref_attention(c->ctx, NULL, NULL, c->qkv, c->a);
    double f = 0;
    for (size_t i = 0; i < (size_t)c->a->T * c->a->H; i++) f += c->dctx[i] * c->ctx[i];
    return f;
}

static void test_attention(void) {
    static const struct {
        int NH, D, S, len[5], masked, fd;
        float p;
        int window;
    } fixed[] = {
        {2, 8, 4, {1, 70, 5, 17}, 1, 1, 0.0f, 0},
        {2, 8, 4, {1, 70, 5, 17}, 1, 1, 0.1f, 0},
        {3, 5, 4, {2, 65, 1, 9}, 1, 1, 0.5f, 0},
        {1, 13, 1, {33}, 0, 1, 0.0f, 0},
        {1, 1, 3, {1, 1, 2}, 1, 1, 0.3f, 0},
        {4, 16, 2, {100, 3}, 0, 1, 0.2f, 0},
        {12, 32, 3, {32, 80, 7}, 1, 0, 0.1f, 0},   /* MiniLM's heads */
        /* sliding windows (ModernBERT's local layers); masked: the first
         * third of each sequence kept, so that later rows see no key */
        {2, 8, 3, {40, 9, 1}, 0, 1, 0.0f, 4},
        {1, 8, 1, {33}, 0, 1, 0.3f, 1},
        {4, 16, 2, {70, 20}, 1, 0, 0.0f, 3},
        {2, 16, 3, {32, 65, 5}, 1, 0, 0.2f, 4},
    };
    int n_fixed = (int)(sizeof fixed / sizeof *fixed);
    for (int k = 0; k < n_fixed + 3; k++) {
        int NH, D, S, len[5], masked, fd, window = 0;
        float p;
        if (k < n_fixed) {
            NH = fixed[k].NH, D = fixed[k].D, S = fixed[k].S, masked = fixed[k].masked, fd = fixed[k].fd;
            p = fixed[k].p;
            window = fixed[k].window;
            memcpy(len, fixed[k].len, sizeof len);
        } else {
            NH = irand(1, 4), D = irand(1, 24), S = irand(1, 5), masked = k % 2, fd = 1, p = k % 2 ? 0.25f : 0.0f;
            for (int s = 0; s < S; s++) len[s] = irand(1, 90);
        }
        int H = NH * D, *off = NEW(int, S + 1), max_len = 0;
        size_t *att_off = NEW(size_t, S);
        uint64_t *id = NEW(uint64_t, S);
        for (int s = 0; s < S; s++) {
            att_off[s] = s ? att_off[s - 1] + (size_t)len[s - 1] * len[s - 1] : 0;
            id[s] = k % 2 ? rnd() : (uint64_t)(S - s) * 3;
            off[s + 1] = off[s] + len[s];
            if (len[s] > max_len) max_len = len[s];
        }
        int T = off[S];
        uint8_t *mask = NULL;
        if (masked) {   /* a quarter of the keys masked; the first of each sequence kept */
            mask = NEW(uint8_t, T);
            for (int t = 0; t < T; t++) mask[t] = rnd() % 4 != 0;
            for (int s = 0; s < S; s++) mask[off[s]] = 1;
            if (window > 0)
                for (int s = 0; s < S; s++)
                    for (int t = off[s]; t < off[s + 1]; t++) mask[t] = 3 * (t - off[s]) < len[s];
        }
        att_case a = {S, T, H, NH, max_len, off, att_off, id, mask, p, rnd(), (uint64_t)k + 11, window};
        int ws_len = max_len + (k % 2 ? 5 : 0);
        int pos = snprintf(trial, sizeof trial, "NH %d D %d p %g window %d mask %s, lengths", NH, D, p, window,
                           masked ? "yes" : "NULL");
        for (int s = 0; s < S; s++) pos += snprintf(trial + pos, sizeof trial - (size_t)pos, " %d", len[s]);

        size_t nq = (size_t)T * 3 * H, nc = (size_t)T * H;
        float *qkv = rand_f(nq, -2, 2), *dctx = rand_f(nc, -1, 1);
        double *qkv_d = dbl(qkv, nq), *dctx_d = dbl(dctx, nc);
        float *ctx = NEW(float, nc), *dqkv = NEW(float, nq);
        double *ctx_r = NEW(double, nc), *dqkv_r = NEW(double, nq);
        run_attention(dut, ctx, dqkv, dctx, qkv, &a, ws_len);
        ref_attention(ctx_r, dqkv_r, dctx_d, qkv_d, &a);
        cmp_ref("attention_forward", MATMUL, "ctx", ctx, ctx_r, nc);
        cmp_ref("attention_backward", MATMUL, "d_qkv", dqkv, dqkv_r, nq);
        if (fd) {
            att_ctx c = {&a, qkv_d, dctx_d, NEW(double, nc)};
            record("attention_backward", MATMUL, COL_FD, "d_qkv",
                   fd_err(dqkv, dqkv_r, qkv_d, nq, att_objective, &c, 1e-5, 0));
        }
        if (vs_cpu) {
            float *cc = NEW(float, nc), *cq = NEW(float, nq);
            run_attention(cpu, cc, cq, dctx, qkv, &a, ws_len);
            cmp_cpu("attention_forward", MATMUL, "ctx", ctx, cc, nc);
            cmp_cpu("attention_backward", MATMUL, "d_qkv", dqkv, cq, nq);
        }
        tmp_free();
    }
}

/* ---- rotary embeddings --------------------------------------------------- */

/* qkv [T, 3H] in place through rope forward (bwd: backward) on device d */
static void run_rope(ops_device *d, float *qkv, const int *off, int S, int H, int NH, float theta, int bwd) {
    dmem m = {.d = d};
    int T = off[S], ml = 0;
    for (int q = 0; q < S; q++) ml = off[q + 1] - off[q] > ml ? off[q + 1] - off[q] : ml;
    float *x = dput(&m, qkv, FB((size_t)T * 3 * H));
    ops_seqs s = {.n_seq = S, .n_tok = T, .max_len = ml, .off = dput(&m, off, sizeof(int) * (size_t)(S + 1))};
    if (bwd) cb_ops_rope_backward(d, x, &s, H, NH, theta);
    else cb_ops_rope_forward(d, x, &s, H, NH, theta);
    cb_ops_download(d, qkv, x, FB((size_t)T * 3 * H));
    dfree(&m);
}

/* ops.h's rotation in float64 (the angle as ops.h computes it, in float32:
 * f = 1 / theta^(2i/D), a = pos * f); sign -1: by -a (the backward) */
static void ref_rope(double *y, const double *x, const int *off, int S, int H, int NH, float theta, double sign) {
    int D = H / NH, half = D / 2;
    memcpy(y, x, sizeof(double) * (size_t)off[S] * 3 * H);
    for (int q = 0; q < S; q++)
        for (int t = off[q]; t < off[q + 1]; t++)
            for (int i = 0; i < half; i++) {
                float f = 1.0f / powf(theta, (float)(2 * i) / (float)D);
                double a = (double)((float)(t - off[q]) * f), c = cos(a), sn = sign * sin(a);
                for (int part = 0; part < 2; part++)
                    for (int h = 0; h < NH; h++) {
                        size_t e = (size_t)t * 3 * H + (size_t)part * H + (size_t)h * D;
                        double x1 = x[e + i], x2 = x[e + i + half];
                        y[e + i] = x1 * c - x2 * sn;
                        y[e + i + half] = x2 * c + x1 * sn;
                    }
            }
}

static void test_rope(void) {
    static const struct { int NH, D, S, len[4]; float theta; } cases[] = {
        {4, 16, 3, {40, 1, 70}, 10000.0f},
        {2, 64, 2, {65, 9}, 160000.0f},
        {1, 2, 1, {5}, 10.0f},
        {3, 8, 4, {3, 17, 1, 33}, 500.0f},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        int NH = cases[k].NH, H = NH * cases[k].D, S = cases[k].S, *off = NEW(int, S + 1);
        for (int q = 0; q < S; q++) off[q + 1] = off[q] + cases[k].len[q];
        snprintf(trial, sizeof trial, "NH %d D %d theta %g, %d sequences", NH, cases[k].D, cases[k].theta, S);
        size_t n = (size_t)off[S] * 3 * H;
        float *x = rand_f(n, -2, 2), *y = copy_f(x, n), *dy = rand_f(n, -1, 1), *dx = copy_f(dy, n);
        double *x_d = dbl(x, n), *dy_d = dbl(dy, n), *ref = NEW(double, n), *fd = NEW(double, n);
        run_rope(dut, y, off, S, H, NH, cases[k].theta, 0);
        ref_rope(ref, x_d, off, S, H, NH, cases[k].theta, 1.0);
        cmp_ref("rope_forward", ELEM, "qkv", y, ref, n);
        run_rope(dut, dx, off, S, H, NH, cases[k].theta, 1);
        ref_rope(ref, dy_d, off, S, H, NH, cases[k].theta, -1.0);
        cmp_ref("rope_backward", ELEM, "d_qkv", dx, ref, n);
        /* finite differences of sum dy * rope(x): the op is linear, so the
         * central difference in x_e is exact up to rounding */
        double *yp = NEW(double, n), h = 1e-3;
        size_t step = n / FD_PROBES + 1;
        for (size_t e = 0; e < n; e++) fd[e] = ref[e];
        for (size_t e = 0; e < n; e += step) {
            double f[2];
            for (int sg = 0; sg < 2; sg++) {
                double keep = x_d[e];
                x_d[e] = keep + (sg ? -h : h);
                ref_rope(yp, x_d, off, S, H, NH, cases[k].theta, 1.0);
                x_d[e] = keep;
                f[sg] = 0;
                for (size_t j = 0; j < n; j++) f[sg] += dy_d[j] * yp[j];
            }
            fd[e] = (f[0] - f[1]) / (2 * h);
        }
        record("rope_backward", ELEM, COL_FD, "d_qkv", fd_err_elem(dx, fd, ref, n, 0));
        if (vs_cpu) {
            float *yc = copy_f(x, n), *dc = copy_f(dy, n);
            run_rope(cpu, yc, off, S, H, NH, cases[k].theta, 0);
            run_rope(cpu, dc, off, S, H, NH, cases[k].theta, 1);
            cmp_cpu("rope_forward", ELEM, "qkv", y, yc, n);
            cmp_cpu("rope_backward", ELEM, "d_qkv", dx, dc, n);
        }
        tmp_free();
    }
}

/* ---- GeGLU --------------------------------------------------------------- */

static void run_geglu(ops_device *d, float *out, float *dinp, const float *dout, const float *inp, int T, int I) {
    dmem m = {.d = d};
    size_t n = (size_t)T * I;
    float *x = dput(&m, inp, FB(2 * n)), *o = dput(&m, NULL, FB(n));
    cb_ops_geglu_forward(d, o, x, T, I);
    cb_ops_download(d, out, o, FB(n));
    if (dinp) {
        float *g = dput(&m, NULL, FB(2 * n));
        cb_ops_geglu_backward(d, g, dput(&m, dout, FB(n)), x, T, I);
        cb_ops_download(d, dinp, g, FB(2 * n));
    }
    dfree(&m);
}

static void test_geglu(void) {
    static const int shapes[][2] = {{1, 1}, {3, 7}, {17, 96}, {64, 1152}};
    for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
        int T = shapes[k][0], I = shapes[k][1];
        size_t n = (size_t)T * I;
        snprintf(trial, sizeof trial, "T %d I %d", T, I);
        float *x = rand_f(2 * n, -5, 5), *dout = rand_f(n, -1, 1);
        double *x_d = dbl(x, 2 * n);
        float *out = NEW(float, n), *dinp = NEW(float, 2 * n);
        double *ref = NEW(double, n), *dref = NEW(double, 2 * n), *fd = NEW(double, 2 * n), h = 1e-5;
        /* scales: as GELU's (|x| |g| for the output, |dout| max(|g|, |x|) for the gradient) */
        double omax = 0, dmax = 0;
        run_geglu(dut, out, dinp, dout, x, T, I);
        for (int t = 0; t < T; t++)
            for (int i = 0; i < I; i++) {
                size_t e = (size_t)t * I + i, a = (size_t)t * 2 * I + i, b = a + (size_t)I;
                double xa = x_d[a], g = x_d[b];
                ref[e] = gelu_d(xa) * g;
                dref[a] = dout[e] * g * gelu_grad_d(xa);
                dref[b] = dout[e] * gelu_d(xa);
                fd[a] = dout[e] * g * (gelu_d(xa + h) - gelu_d(xa - h)) / (2 * h);
                fd[b] = dout[e] * gelu_d(xa);   /* linear in g: exact */
                omax = fmax(omax, fabs(xa * g));
                dmax = fmax(dmax, fabs(dout[e]) * fmax(fabs(g), fabs(xa)));
            }
        cmp_ref_floor("geglu_forward", ELEM, "out", out, ref, n, omax);
        cmp_ref_floor("geglu_backward", ELEM, "dinp", dinp, dref, 2 * n, dmax);
        record("geglu_backward", ELEM, COL_FD, "dinp", fd_err_elem(dinp, fd, dref, 2 * n, dmax));
        if (vs_cpu) {
            float *oc = NEW(float, n), *dc = NEW(float, 2 * n);
            run_geglu(cpu, oc, dc, dout, x, T, I);
            cmp_cpu_floor("geglu_forward", ELEM, "out", out, oc, n, omax);
            cmp_cpu_floor("geglu_backward", ELEM, "dinp", dinp, dc, 2 * n, dmax);
        }
        tmp_free();
    }
}

/* ---- the ColBERT head ---------------------------------------------------- */

static void run_keep_relu_forward(ops_device *d, float *x, const uint8_t *keep, int relu, int T, int D) {
    dmem m = {.d = d};
    float *dx = dput(&m, x, FB(T * D));
    cb_ops_keep_relu_forward(d, dx, keep ? dput(&m, keep, (size_t)T) : NULL, relu, T, D);
    cb_ops_download(d, x, dx, FB(T * D));
    dfree(&m);
}

static void run_keep_relu_backward(ops_device *d, float *dx, const float *x, const uint8_t *keep, int relu, int T,
                                   int D) {
    dmem m = {.d = d};
    float *g = dput(&m, dx, FB(T * D));
    cb_ops_keep_relu_backward(d, g, dput(&m, x, FB(T * D)), keep ? dput(&m, keep, (size_t)T) : NULL, relu, T, D);
    cb_ops_download(d, dx, g, FB(T * D));
    dfree(&m);
}

static double keep_relu_d(double x, int keep, int relu) { return !keep ? 0 : relu && x < 0 ? 0 : x; }

static void test_keep_relu(void) {
    for (int k = 0; k < 8; k++) {
        int T = k == 0 ? 1 : irand(1, 40), D = k == 1 ? 1 : irand(1, 140), relu = k % 2, has_keep = k % 4 < 2;
        size_t n = (size_t)T * D;
        snprintf(trial, sizeof trial, "T %d D %d relu %d keep %s", T, D, relu, has_keep ? "given" : "NULL");
        uint8_t *keep = NULL;
        if (has_keep) {
            keep = NEW(uint8_t, T);
            for (int t = 0; t < T; t++) keep[t] = rnd() % 3 != 0;
        }
        float *x0 = rand_f(n, -1, 1), *x = copy_f(x0, n);
        double *ref = NEW(double, n), *fd = NEW(double, n), h = 1e-4;
        run_keep_relu_forward(dut, x, keep, relu, T, D);
        for (size_t i = 0; i < n; i++) ref[i] = keep_relu_d(x0[i], !keep || keep[i / D], relu);
        cmp_ref("keep_relu_forward", EXACT, "x", x, ref, n);
        if (vs_cpu) {
            float *xc = copy_f(x0, n);
            run_keep_relu_forward(cpu, xc, keep, relu, T, D);
            cmp_cpu("keep_relu_forward", EXACT, "x", x, xc, n);
        }
        /* the backward gets the device's forward output */
        float *d0 = rand_f(n, -1, 1), *dx = copy_f(d0, n);
        run_keep_relu_backward(dut, dx, x, keep, relu, T, D);
        for (size_t i = 0; i < n; i++) {
            int kp = !keep || keep[i / D];
            ref[i] = kp && (!relu || x0[i] > 0) ? d0[i] : 0;
            fd[i] = d0[i] * (keep_relu_d(x0[i] + h, kp, relu) - keep_relu_d(x0[i] - h, kp, relu)) / (2 * h);
            if (fabs(x0[i]) < 2 * h) fd[i] = ref[i];   /* the kink */
        }
        cmp_ref("keep_relu_backward", EXACT, "dx", dx, ref, n);
        record("keep_relu_backward", EXACT, COL_FD, "dx", fd_err_elem(dx, fd, ref, n, 0));
        if (vs_cpu) {
            float *dc = copy_f(d0, n);
            run_keep_relu_backward(cpu, dc, x, keep, relu, T, D);
            cmp_cpu("keep_relu_backward", EXACT, "dx", dx, dc, n);
        }
        tmp_free();
    }
}

static void run_l2norm_forward(ops_device *d, float *out, float *norm, const float *inp, int T, int D) {
    dmem m = {.d = d};
    float *o = dput(&m, NULL, FB(T * D)), *nr = dput(&m, NULL, FB(T));
    cb_ops_l2norm_forward(d, o, nr, dput(&m, inp, FB(T * D)), T, D);
    cb_ops_download(d, out, o, FB(T * D));
    cb_ops_download(d, norm, nr, FB(T));
    dfree(&m);
}

/* alias: dinp is dout's buffer */
static void run_l2norm_backward(ops_device *d, float *dinp, const float *dout, const float *out, const float *norm,
                                int T, int D, int alias) {
    dmem m = {.d = d};
    float *g = dput(&m, dout, FB(T * D)), *gi = alias ? g : dput(&m, NULL, FB(T * D));
    cb_ops_l2norm_backward(d, gi, g, dput(&m, out, FB(T * D)), dput(&m, norm, FB(T)), T, D);
    cb_ops_download(d, dinp, gi, FB(T * D));
    dfree(&m);
}

#define L2_EPS 1e-12

/* y = x / max(||x||, 1e-12) of one row; returns sum dy * y */
static double l2_row(double *y, const double *x, const double *dy, int D) {
    double ss = 0, f = 0;
    for (int i = 0; i < D; i++) ss += x[i] * x[i];
    double nrm = fmax(sqrt(ss), L2_EPS);
    for (int i = 0; i < D; i++) f += dy[i] * (y[i] = x[i] / nrm);
    return f;
}

static void test_l2norm(void) {
    for (int k = 0; k < 8; k++) {
        int T = k == 0 ? 1 : irand(3, 30), D = k == 1 ? 1 : irand(1, 140), alias = k % 2;
        size_t n = (size_t)T * D;
        snprintf(trial, sizeof trial, "T %d D %d, %s", T, D, alias ? "in place" : "out of place");
        float *x = rand_f(n, -1, 1);
        if (T >= 3) {   /* an all-zero row, a tiny row (both clamped), a large row */
            int z = irand(0, T - 1), t2 = (z + 1) % T, t3 = (z + 2) % T;
            for (int i = 0; i < D; i++) {
                x[(size_t)z * D + i] = 0.0f;
                x[(size_t)t2 * D + i] *= 1e-14f;
                x[(size_t)t3 * D + i] *= 1e3f;
            }
        }
        double *x_d = dbl(x, n);
        float *out = NEW(float, n), *norm = NEW(float, T), *dinp = NEW(float, n);
        double *out_r = NEW(double, n), *norm_r = NEW(double, T), *ri = NEW(double, n), *fd = NEW(double, n);
        run_l2norm_forward(dut, out, norm, x, T, D);
        float *dout = rand_f(n, -1, 1);
        double *dout_d = dbl(dout, n);
        double *y = NEW(double, D);
        for (int t = 0; t < T; t++) {
            double *xr = x_d + (size_t)t * D, *dy = dout_d + (size_t)t * D;
            l2_row(out_r + (size_t)t * D, xr, dy, D);
            double ss = 0, ydy = 0;
            for (int i = 0; i < D; i++) ss += xr[i] * xr[i];
            norm_r[t] = fmax(sqrt(ss), L2_EPS);
            /* d/dx of x / max(||x||, eps): (I - y y^T) / ||x|| unclamped, I / eps clamped */
            int clamped = sqrt(ss) < L2_EPS;
            for (int i = 0; i < D; i++) ydy += out_r[(size_t)t * D + i] * dy[i];
            for (int i = 0; i < D; i++)
                ri[(size_t)t * D + i] = (dy[i] - (clamped ? 0 : out_r[(size_t)t * D + i] * ydy)) / norm_r[t];
            /* finite differences per row, the step scaled to the row's norm */
            double h = 1e-6 * fmax(sqrt(ss), 1e-14);
            for (int i = 0; i < D; i++) {
                double x0 = xr[i];
                xr[i] = x0 + h;
                double fp = l2_row(y, xr, dy, D);
                xr[i] = x0 - h;
                double fm = l2_row(y, xr, dy, D);
                xr[i] = x0;
                fd[(size_t)t * D + i] = (fp - fm) / (2 * h);
            }
        }
        /* rows (norms from 1e-14 to 1e3) each on their own scale */
        float *oc = NEW(float, n), *nc = NEW(float, T);
        if (vs_cpu) run_l2norm_forward(cpu, oc, nc, x, T, D);
        for (int t = 0; t < T; t++) {
            size_t o = (size_t)t * D;
            cmp_ref("l2norm_forward", ELEM, "out", out + o, out_r + o, D);
            cmp_ref("l2norm_forward", ELEM, "norm", norm + t, norm_r + t, 1);
            if (vs_cpu) {
                cmp_cpu("l2norm_forward", ELEM, "out", out + o, oc + o, D);
                cmp_cpu("l2norm_forward", ELEM, "norm", norm + t, nc + t, 1);
            }
        }
        /* the backward gets the device's out and norm; each row against its
         * terms' size max |dout| / norm (clamped rows: 1e12 dout; for D = 1
         * the gradient is 0 up to rounding) */
        float *gc = NEW(float, n);
        run_l2norm_backward(dut, dinp, dout, out, norm, T, D, alias);
        if (vs_cpu) run_l2norm_backward(cpu, gc, dout, out, norm, T, D, alias);
        for (int t = 0; t < T; t++) {
            size_t o = (size_t)t * D;
            double fl = 0;
            for (int i = 0; i < D; i++) fl = fmax(fl, fabs(dout_d[o + i]) / norm_r[t]);
            cmp_ref_floor("l2norm_backward", ELEM, "dinp", dinp + o, ri + o, D, fl);
            record("l2norm_backward", ELEM, COL_FD, "dinp", fd_err_elem(dinp + o, fd + o, ri + o, D, fl));
            if (vs_cpu) cmp_cpu_floor("l2norm_backward", ELEM, "dinp", dinp + o, gc + o, D, fl);
        }
        tmp_free();
    }
}

/* ---- MaxSim -------------------------------------------------------------- */

#define MAXSIM_EMPTY (-9999.0)

typedef struct ms_case {
    int nq, nd, Lq, D, group, G, Td;
    const int *off;             /* [nd + 1] host */
    const uint8_t *keep;        /* [Td] or NULL */
} ms_case;

static void run_maxsim_forward(ops_device *d, float *scores, int32_t *argmax, const float *qv, const float *dv,
                               const ms_case *c) {
    dmem m = {.d = d};
    size_t ns = (size_t)c->nq * c->G;
    int *off = dput(&m, c->off, sizeof(int) * (size_t)(c->nd + 1));
    const uint8_t *keep = c->keep ? dput(&m, c->keep, (size_t)c->Td) : NULL;
    ops_work w = {.bytes = cb_ops_maxsim_workspace(d, c->Lq, (size_t)c->Td)};   /* as step.c: every row */
    w.p = dput(&m, NULL, w.bytes);
    float *s = dput(&m, NULL, FB(ns));
    int32_t *am = dput(&m, NULL, sizeof(int32_t) * ns * c->Lq);
    cb_ops_maxsim_forward(d, s, am, dput(&m, qv, FB((size_t)c->nq * c->Lq * c->D)), dput(&m, dv, FB((size_t)c->Td * c->D)),
                       off, c->off, keep, c->group, c->nq, c->nd, c->Lq, c->D, &w);
    cb_ops_download(d, scores, s, FB(ns));
    cb_ops_download(d, argmax, am, sizeof(int32_t) * ns * c->Lq);
    dfree(&m);
}

/* d_qv, d_dv in/out */
static void run_maxsim_backward(ops_device *d, float *d_qv, float *d_dv, const float *d_scores,
                                const int32_t *argmax, const float *qv, const float *dv, const ms_case *c) {
    dmem m = {.d = d};
    size_t ns = (size_t)c->nq * c->G, nqv = (size_t)c->nq * c->Lq * c->D, ndv = (size_t)c->Td * c->D;
    float *gq = dput(&m, d_qv, FB(nqv)), *gd = dput(&m, d_dv, FB(ndv));
    cb_ops_maxsim_backward(d, gq, gd, dput(&m, d_scores, FB(ns)), dput(&m, argmax, sizeof(int32_t) * ns * c->Lq),
                        dput(&m, qv, FB(nqv)), dput(&m, dv, FB(ndv)), c->group, c->nq, c->nd, c->Lq, c->D);
    cb_ops_download(d, d_qv, gq, FB(nqv));
    cb_ops_download(d, d_dv, gd, FB(ndv));
    dfree(&m);
}

static double dot_d(const double *a, const double *b, int D) {
    double s = 0;
    for (int i = 0; i < D; i++) s += a[i] * b[i];
    return s;
}

/* scores [nq, G], argmax [nq, G, Lq] (may be NULL) in float64 (the first
 * maximum); sq (may be NULL): per score, the sum of the squares of the
 * products it adds */
static void ref_maxsim(double *scores, int32_t *argmax, double *sq, const double *qv, const double *dv,
                       const ms_case *c) {
    for (int q = 0; q < c->nq; q++)
        for (int k = 0; k < c->G; k++) {
            int dd = c->group > 0 ? q * c->group + k : k;
            double total = 0, s2 = 0;
            for (int i = 0; i < c->Lq; i++) {
                const double *qi = qv + ((size_t)q * c->Lq + i) * c->D;
                double best = MAXSIM_EMPTY;
                int32_t arg = -1;
                for (int j = c->off[dd]; j < c->off[dd + 1]; j++) {
                    if (c->keep && !c->keep[j]) continue;
                    double s = dot_d(qi, dv + (size_t)j * c->D, c->D);
                    if (arg < 0 || s > best) best = s, arg = j;
                }
                if (argmax) argmax[((size_t)q * c->G + k) * c->Lq + i] = arg;
                total += best;
                for (int x = 0; arg >= 0 && x < c->D; x++) s2 += pow(qi[x] * dv[(size_t)arg * c->D + x], 2);
            }
            scores[(size_t)q * c->G + k] = total;
            if (sq) sq[(size_t)q * c->G + k] = s2;
        }
}

typedef struct ms_ctx {
    const ms_case *c;
    const double *qv, *dv, *d_scores;
    double *scores;
    int32_t *argmax;
} ms_ctx;

/* sum d_scores * scores over the documents with a kept row (the others are
 * constants whose size, 9999 Lq, would only add rounding) */
static double ms_objective(const void *p) {
    const ms_ctx *x = p;
    ref_maxsim(x->scores, x->argmax, NULL, x->qv, x->dv, x->c);
    double f = 0;
    for (size_t i = 0; i < (size_t)x->c->nq * x->c->G; i++)
        if (x->argmax[i * x->c->Lq] >= 0) f += x->d_scores[i] * x->scores[i];
    return f;
}

/* Argmax mismatches of `got` against `want`: a different row counts unless
 * it is a kept row of the same document whose similarity ties the best
 * within tol (relative to the largest similarity). */
static size_t argmax_mismatch(const int32_t *got, const int32_t *want, const double *qv, const double *dv,
                              const ms_case *c, double tol_rel) {
    size_t bad = 0;
    double scale = 0;
    for (size_t i = 0; i < (size_t)c->nq * c->Lq * c->D; i++) scale = fmax(scale, fabs(qv[i]));
    double dscale = 0;
    for (size_t i = 0; i < (size_t)c->Td * c->D; i++) dscale = fmax(dscale, fabs(dv[i]));
    scale *= dscale * c->D;
    for (int q = 0; q < c->nq; q++)
        for (int k = 0; k < c->G; k++) {
            int dd = c->group > 0 ? q * c->group + k : k;
            for (int i = 0; i < c->Lq; i++) {
                size_t e = ((size_t)q * c->G + k) * c->Lq + i;
                int32_t g = got[e], w = want[e];
                if (g == w) continue;
                const double *qi = qv + ((size_t)q * c->Lq + i) * c->D;
                int ok = w >= 0 && g >= c->off[dd] && g < c->off[dd + 1] && (!c->keep || c->keep[g]) &&
                         fabs(dot_d(qi, dv + (size_t)g * c->D, c->D) - dot_d(qi, dv + (size_t)w * c->D, c->D)) <=
                             tol_rel * scale;
                bad += !ok;
            }
        }
    return bad;
}

/* Scores of documents with kept rows (compacted into a, b, and their sq
 * into bsq) and the count of empty-document scores that are not exactly
 * Lq * -9999. */
static size_t split_scores(float *a, double *b, double *bsq, size_t *n_full, const float *got, const double *want,
                           const double *sq, const int32_t *ref_argmax, const ms_case *c) {
    size_t bad = 0, n = 0;
    for (size_t e = 0; e < (size_t)c->nq * c->G; e++) {
        if (ref_argmax[e * c->Lq] < 0) bad += got[e] != (float)(MAXSIM_EMPTY * c->Lq);
        else a[n] = got[e], bsq[n] = sq[e], b[n++] = want[e];
    }
    *n_full = n;
    return bad;
}

static void test_maxsim(void) {
    static const struct {
        int nq, group, nd, Lq, D, keep, empty;
    } cases[] = {
        {1, 1, 1, 1, 1, 0, 0},  {2, 3, 6, 5, 7, 1, 0},  {4, 2, 8, 32, 16, 1, 1},  {3, 0, 5, 8, 33, 1, 0},
        {2, 0, 7, 1, 4, 0, 1},  {1, 0, 1, 3, 2, 1, 0},  {5, 4, 20, 32, 128, 1, 0}, {3, 0, 9, 11, 24, 1, 1},
    };
    for (int k = 0; k < (int)(sizeof cases / sizeof *cases); k++) {
        ms_case c = {cases[k].nq, cases[k].nd, cases[k].Lq, cases[k].D, cases[k].group, 0, 0, NULL, NULL};
        c.G = c.group > 0 ? c.group : c.nd;
        int *off = NEW(int, c.nd + 1), empty_doc = cases[k].empty ? irand(0, c.nd - 1) : -1;
        int unkept_doc = cases[k].keep && c.nd > 1 ? (empty_doc + 1 + irand(0, c.nd - 2)) % c.nd : -1;
        if (empty_doc < 0 && unkept_doc < 0 && cases[k].keep) unkept_doc = 0;
        for (int dd = 0; dd < c.nd; dd++) off[dd + 1] = off[dd] + (dd == empty_doc ? 0 : irand(1, 12));
        c.Td = off[c.nd];
        c.off = off;
        uint8_t *keep = NULL;
        if (cases[k].keep) {   /* a fifth of the rows skipped; one document none kept */
            keep = NEW(uint8_t, c.Td);
            for (int j = 0; j < c.Td; j++) keep[j] = rnd() % 5 != 0;
            if (unkept_doc >= 0)
                for (int j = off[unkept_doc]; j < off[unkept_doc + 1]; j++) keep[j] = 0;
            c.keep = keep;
        }
        snprintf(trial, sizeof trial, "nq %d group %d nd %d Lq %d D %d, keep %s, empty doc %d, unkept doc %d", c.nq,
                 c.group, c.nd, c.Lq, c.D, keep ? "given" : "NULL", empty_doc, unkept_doc);
        size_t ns = (size_t)c.nq * c.G, na = ns * c.Lq, nqv = (size_t)c.nq * c.Lq * c.D, ndv = (size_t)c.Td * c.D;
        float *qv = rand_f(nqv, -1, 1), *dv = rand_f(ndv, -1, 1);
        double *qv_d = dbl(qv, nqv), *dv_d = dbl(dv, ndv);

        float *scores = NEW(float, ns), *fa = NEW(float, ns), *fc = NEW(float, ns);
        int32_t *am = NEW(int32_t, na), *am_r = NEW(int32_t, na);
        double *scores_r = NEW(double, ns), *fb = NEW(double, ns), *sq = NEW(double, ns), *fsq = NEW(double, ns);
        size_t nfull;
        run_maxsim_forward(dut, scores, am, qv, dv, &c);
        ref_maxsim(scores_r, am_r, sq, qv_d, dv_d, &c);
        record("maxsim_forward", EXACT, COL_REF, "argmax",
               (double)argmax_mismatch(am, am_r, qv_d, dv_d, &c, tol->ref[MATMUL]));
        record("maxsim_forward", EXACT, COL_REF, "-9999 scores",
               (double)split_scores(fa, fb, fsq, &nfull, scores, scores_r, sq, am_r, &c));
        cmp_ref_floor("maxsim_forward", MATMUL, "scores", fa, fb, nfull, sq_floor(fsq, nfull));
        if (vs_cpu) {
            float *sc = NEW(float, ns);
            int32_t *ac = NEW(int32_t, na);
            run_maxsim_forward(cpu, sc, ac, qv, dv, &c);
            record("maxsim_forward", EXACT, COL_CPU, "argmax",
                   (double)argmax_mismatch(am, ac, qv_d, dv_d, &c, tol->cpu[MATMUL]));
            double *sc_d = dbl(sc, ns);
            record("maxsim_forward", EXACT, COL_CPU, "-9999 scores",
                   (double)split_scores(fa, fb, fsq, &nfull, scores, sc_d, sq, am_r, &c));
            for (size_t i = 0; i < nfull; i++) fc[i] = (float)fb[i];
            cmp_cpu_floor("maxsim_forward", MATMUL, "scores", fa, fc, nfull, sq_floor(fsq, nfull));
        }

        /* backward through the device's argmax; zero accumulators (and
         * finite differences) on even trials */
        int zero_init = k % 2 == 0;
        float *d_scores = rand_f(ns, -1, 1);
        if (ns > 2) d_scores[1] = 0.0f;
        double *ds_d = dbl(d_scores, ns);
        float *gq0 = zero_init ? NEW(float, nqv) : rand_f(nqv, -1, 1);
        float *gd0 = zero_init ? NEW(float, ndv) : rand_f(ndv, -1, 1);
        float *gq = copy_f(gq0, nqv), *gd = copy_f(gd0, ndv);
        run_maxsim_backward(dut, gq, gd, d_scores, am, qv, dv, &c);
        double *rq = dbl(gq0, nqv), *rd = dbl(gd0, ndv), *sqq = NEW(double, nqv), *sqd = NEW(double, ndv);
        for (size_t i = 0; i < nqv; i++) sqq[i] = rq[i] * rq[i];
        for (size_t i = 0; i < ndv; i++) sqd[i] = rd[i] * rd[i];
        for (int q = 0; q < c.nq; q++)
            for (int kk = 0; kk < c.G; kk++)
                for (int i = 0; i < c.Lq; i++) {
                    int32_t j = am[((size_t)q * c.G + kk) * c.Lq + i];
                    double g = ds_d[(size_t)q * c.G + kk];
                    if (j < 0) continue;
                    for (int x = 0; x < c.D; x++) {
                        size_t eq = ((size_t)q * c.Lq + i) * c.D + x, ed = (size_t)j * c.D + x;
                        double tq = g * dv_d[ed], td = g * qv_d[eq];
                        rq[eq] += tq, sqq[eq] += tq * tq;
                        rd[ed] += td, sqd[ed] += td * td;
                    }
                }
        cmp_ref_floor("maxsim_backward", MATMUL, "d_qv", gq, rq, nqv, sq_floor(sqq, nqv));
        cmp_ref_floor("maxsim_backward", MATMUL, "d_dv", gd, rd, ndv, sq_floor(sqd, ndv));
        if (zero_init) {
            ms_ctx x = {&c, qv_d, dv_d, ds_d, NEW(double, ns), NEW(int32_t, na)};
            record("maxsim_backward", MATMUL, COL_FD, "d_qv",
                   fd_err(gq, rq, qv_d, nqv, ms_objective, &x, 1e-6, sq_floor(sqq, nqv)));
            record("maxsim_backward", MATMUL, COL_FD, "d_dv",
                   fd_err(gd, rd, dv_d, ndv, ms_objective, &x, 1e-6, sq_floor(sqd, ndv)));
        }
        if (vs_cpu) {
            float *cq = copy_f(gq0, nqv), *cd = copy_f(gd0, ndv);
            run_maxsim_backward(cpu, cq, cd, d_scores, am, qv, dv, &c);
            cmp_cpu_floor("maxsim_backward", MATMUL, "d_qv", gq, cq, nqv, sq_floor(sqq, nqv));
            cmp_cpu_floor("maxsim_backward", MATMUL, "d_dv", gd, cd, ndv, sq_floor(sqd, ndv));
        }
        tmp_free();
    }
}

/* ---- losses -------------------------------------------------------------- */

static float run_loss(ops_device *d, float *d_scores, loss_parts *parts, const float *scores, const float *teacher,
                      const loss_config *c, int B, int cols) {
    dmem m = {.d = d};
    size_t n = (size_t)B * cols;
    float *g = dput(&m, NULL, FB(n));
    float l = cb_ops_loss(d, g, parts, dput(&m, scores, FB(n)), teacher ? dput(&m, teacher, FB(B * c->nway)) : NULL,
                       c, B);
    cb_ops_download(d, d_scores, g, FB(n));
    dfree(&m);
    return l;
}

/* scale * cross-entropy of row x [C] over the columns with use[j], target
 * column t; its gradient added to dx (may be NULL) */
static double ref_ce(double *dx, const double *x, const uint8_t *use, int C, int t, double scale) {
    double mx = -INFINITY, s = 0;
    for (int j = 0; j < C; j++) if (use[j] && x[j] > mx) mx = x[j];
    for (int j = 0; j < C; j++) if (use[j]) s += exp(x[j] - mx);
    double lse = mx + log(s);
    for (int j = 0; dx && j < C; j++) if (use[j]) dx[j] += scale * (exp(x[j] - lse) - (j == t));
    return scale * (lse - x[t]);
}

/* loss.h in float64: returns the loss; main and ib are the parts before
 * / accumsteps; dS [B, cols] (may be NULL) the gradient. */
static double ref_loss(double *dS, double *main_, double *ib_, const double *S, const double *teacher,
                       const loss_config *c, int B, int cols) {
    int nw = c->nway, Q = c->q_global > 0 ? c->q_global : B;
    double scale = 1.0 / Q, mn = 0, ib = 0;
    uint8_t *use = malloc((size_t)cols);
    if (dS) memset(dS, 0, sizeof(double) * (size_t)B * cols);
    for (int b = 0; b < B; b++) {
        const double *x = S + (size_t)b * cols;
        double *dx = dS ? dS + (size_t)b * cols : NULL;
        /* the query's own documents start here: query q_first + b of the
         * global batch's columns with ib_global */
        int own = cols == nw ? 0 : (c->ib_global && c->q_global > 0 ? c->q_first + b : b) * nw;
        if (c->contrastive) {
            memset(use, 1, (size_t)cols);
            mn += ref_ce(dx, x, use, cols, own, scale);
            continue;
        }
        if (teacher) {   /* KL(p_t || p_s), p_t = softmax(alpha t), p_s = softmax of own columns */
            const double *t = teacher + (size_t)b * nw;
            double mt = -INFINITY, st = 0, ms = -INFINITY, ss = 0;
            for (int j = 0; j < nw; j++) mt = fmax(mt, c->distillation_alpha * t[j]), ms = fmax(ms, x[own + j]);
            for (int j = 0; j < nw; j++) st += exp(c->distillation_alpha * t[j] - mt), ss += exp(x[own + j] - ms);
            for (int j = 0; j < nw; j++) {
                double lt = c->distillation_alpha * t[j] - mt - log(st), ls = x[own + j] - ms - log(ss);
                mn += scale * exp(lt) * (lt - ls);
                if (dx) dx[own + j] += scale * (exp(ls) - exp(lt));
            }
        } else {
            memset(use, 0, (size_t)cols);
            memset(use + own, 1, (size_t)nw);
            mn += ref_ce(dx, x, use, cols, own, scale);
        }
        if (c->use_ib_negatives) {   /* every column but the query's own negatives */
            memset(use, 1, (size_t)cols);
            memset(use + own + 1, 0, (size_t)nw - 1);
            ib += ref_ce(dx, x, use, cols, own, scale);
        }
    }
    free(use);
    if (dS)
        for (size_t i = 0; i < (size_t)B * cols; i++) dS[i] /= c->accumsteps;
    *main_ = mn;
    *ib_ = ib;
    return (mn + ib) / c->accumsteps;
}

typedef struct loss_ctx {
    const double *S, *teacher;
    const loss_config *c;
    int B, cols;
} loss_ctx;

static double loss_objective(const void *p) {
    const loss_ctx *x = p;
    double m, i;
    return ref_loss(NULL, &m, &i, x->S, x->teacher, x->c, x->B, x->cols);
}

static void test_loss(void) {
    /* the last ones: a rank's share of a data-parallel batch (q_first,
     * q_global; ib_global: every rank's documents are columns) */
    static const struct {
        int B, nway, ib, teacher, contrastive, accum;
        float alpha;
        int q_first, q_global, ib_global;
    } cases[] = {
        {1, 2, 0, 0, 0, 1, 1.0f, 0, 0, 0}, {4, 2, 0, 0, 0, 1, 1.0f, 0, 0, 0}, {3, 3, 1, 0, 0, 2, 1.0f, 0, 0, 0},
        {5, 4, 0, 1, 0, 1, 1.0f, 0, 0, 0}, {4, 2, 1, 1, 0, 3, 0.5f, 0, 0, 0}, {3, 2, 0, 0, 1, 1, 1.0f, 0, 0, 0},
        {4, 3, 1, 1, 1, 2, 1.0f, 0, 0, 0}, {7, 1, 1, 0, 0, 1, 1.0f, 0, 0, 0}, {1, 5, 1, 1, 0, 1, 2.0f, 0, 0, 0},
        {6, 1, 0, 0, 0, 1, 1.0f, 0, 0, 0},
        {3, 2, 1, 0, 0, 1, 1.0f, 3, 9, 1}, {2, 2, 1, 1, 0, 2, 0.5f, 0, 8, 1}, {4, 3, 0, 0, 1, 1, 1.0f, 4, 8, 1},
        {2, 2, 1, 0, 0, 1, 1.0f, 2, 6, 0}, {3, 2, 0, 0, 0, 2, 1.0f, 6, 9, 1},
    };
    for (int k = 0; k < (int)(sizeof cases / sizeof *cases); k++) {
        loss_config c = {cases[k].nway, cases[k].ib, cases[k].alpha, cases[k].accum, cases[k].contrastive,
                         cases[k].q_first, cases[k].q_global, cases[k].ib_global};
        int B = cases[k].B, G = c.ib_global && c.q_global ? c.q_global : B;
        int cols = c.use_ib_negatives || c.contrastive ? G * c.nway : c.nway;
        snprintf(trial, sizeof trial, "B %d nway %d ib %d teacher %d contrastive %d accumsteps %d alpha %g, "
                 "queries %d.. of %d%s", B, c.nway, c.use_ib_negatives, cases[k].teacher, c.contrastive, c.accumsteps,
                 c.distillation_alpha, c.q_first, c.q_global, c.ib_global ? " (ib global)" : "");
        CHECK_MSG(cb_loss_score_cols(&c, B) == cols, "cb_loss_score_cols %d, expected %d (%s)", cb_loss_score_cols(&c, B),
                  cols, trial);
        size_t n = (size_t)B * cols;
        float *S = rand_f(n, 15, 25);   /* MaxSim scores of 32 query vectors */
        float *teacher = cases[k].teacher ? rand_f((size_t)B * c.nway, -5, 5) : NULL;
        double *S_d = dbl(S, n), *t_d = teacher ? dbl(teacher, (size_t)B * c.nway) : NULL;
        float *dS = NEW(float, n);
        double *dS_r = NEW(double, n), want[3], got[3];
        loss_parts parts;
        float l = run_loss(dut, dS, &parts, S, teacher, &c, B, cols);
        want[0] = ref_loss(dS_r, &want[1], &want[2], S_d, c.contrastive ? NULL : t_d, &c, B, cols);
        got[0] = l, got[1] = parts.main, got[2] = parts.ib;
        for (int i = 0; i < 3; i++)   /* each against its own size; an exact 0 (ib off) must stay 0 */
            record("loss", ELEM, COL_REF, i == 0 ? "loss" : i == 1 ? "main" : "ib",
                   fabs(got[i] - want[i]) / (want[i] != 0 ? fabs(want[i]) : 1));
        cmp_ref("loss", ELEM, "d_scores", dS, dS_r, n);
        loss_ctx x = {S_d, c.contrastive ? NULL : t_d, &c, B, cols};
        record("loss", ELEM, COL_FD, "d_scores", fd_err(dS, dS_r, S_d, n, loss_objective, &x, 1e-4, 0));
        /* parts may be NULL: the same loss and gradient */
        float *dS2 = NEW(float, n), l2 = run_loss(dut, dS2, NULL, S, teacher, &c, B, cols);
        record("loss", ELEM, COL_REF, "loss (parts NULL)", fabs(l2 - want[0]) / (want[0] != 0 ? fabs(want[0]) : 1));
        cmp_ref("loss", ELEM, "d_scores (parts NULL)", dS2, dS_r, n);
        if (vs_cpu) {
            float *dc = NEW(float, n);
            loss_parts pc;
            float lc = run_loss(cpu, dc, &pc, S, teacher, &c, B, cols);
            float a[3] = {l, parts.main, parts.ib}, r[3] = {lc, pc.main, pc.ib};
            for (int i = 0; i < 3; i++)
                cmp_cpu("loss", ELEM, i == 0 ? "loss" : i == 1 ? "main" : "ib", a + i, r + i, 1);
            cmp_cpu("loss", ELEM, "d_scores", dS, dc, n);
        }
        tmp_free();
    }
}

/* ---- optimizer ----------------------------------------------------------- */

static float run_clip(ops_device *d, float *g, size_t n, float max_norm) {
    dmem m = {.d = d};
    float *dg = dput(&m, g, FB(n));
    float total = cb_ops_clip_grad_norm(d, dg, n, max_norm);
    cb_ops_download(d, g, dg, FB(n));
    dfree(&m);
    return total;
}

static void test_clip(void) {
    static const size_t sizes[] = {1, 1000, 100003};
    for (int k = 0; k < 7; k++) {
        size_t n = k == 6 ? 5 : sizes[k % 3];
        int clip = k < 3;
        float *g0 = rand_f(n, -1, 1);
        double mag = pow(10, unif(-3, 1)), ss = 0;
        for (size_t i = 0; i < n; i++) {
            g0[i] = (float)(g0[i] * mag);
            ss += (double)g0[i] * g0[i];
        }
        if (k == 6) memset(g0, 0, FB(n)), ss = 0;    /* all zero: total 0, nothing scaled */
        double total = sqrt(ss);
        float max_norm = k == 6 ? 1.0f : (float)(clip ? 0.37 * total : 3 * total);
        snprintf(trial, sizeof trial, "n %zu total %g max_norm %g", n, total, max_norm);
        float *g = copy_f(g0, n);
        double *ref = NEW(double, n), coef = max_norm / (total + 1e-6);
        float got = run_clip(dut, g, n, max_norm);
        for (size_t i = 0; i < n; i++) ref[i] = coef < 1 ? g0[i] * coef : g0[i];
        double want = total;
        record("clip_grad_norm", ELEM, COL_REF, "total", fabs(got - want) / (want > 0 ? want : 1));
        cmp_ref("clip_grad_norm", ELEM, "grads", g, ref, n);
        if (vs_cpu) {
            float *gc = copy_f(g0, n), tc = run_clip(cpu, gc, n, max_norm);
            cmp_cpu("clip_grad_norm", ELEM, "total", &got, &tc, 1);
            cmp_cpu("clip_grad_norm", ELEM, "grads", g, gc, n);
        }
        tmp_free();
    }
}

/* One AdamW step in float64 (optim.h's formula). */
static void ref_adamw(double *p, const float *g, double *m, double *v, size_t n, const adamw_config *c, long t) {
    double bc1 = 1 - pow(c->beta1, (double)t), bc2 = 1 - pow(c->beta2, (double)t);
    for (size_t i = 0; i < n; i++) {
        p[i] *= 1 - c->lr * c->weight_decay;
        m[i] += (1 - c->beta1) * (g[i] - m[i]);
        v[i] = c->beta2 * v[i] + (1 - c->beta2) * (double)g[i] * g[i];
        p[i] -= c->lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + c->eps);
    }
}

/* The state stays on the device across steps; checked after each. */
static void test_adamw(void) {
    static const size_t sizes[] = {1, 17, 4099};
    for (int k = 0; k < 3; k++) {
        size_t n = sizes[k];
        adamw_config c = cb_adamw_default(1e-2);
        if (k == 2) c.weight_decay = 0.1, c.beta2 = 0.99;
        float *p0 = rand_f(n, -0.05, 0.05), *zero = NEW(float, n);
        double *pr = dbl(p0, n), *mr = NEW(double, n), *vr = NEW(double, n);
        float *p = NEW(float, n), *m = NEW(float, n), *v = NEW(float, n);
        float *pc = NEW(float, n), *mc = NEW(float, n), *vc = NEW(float, n);
        dmem dm = {.d = dut}, cm = {.d = cpu};
        float *P = dput(&dm, p0, FB(n)), *M = dput(&dm, zero, FB(n)), *V = dput(&dm, zero, FB(n));
        float *G = dput(&dm, NULL, FB(n));
        float *Pc = NULL, *Mc = NULL, *Vc = NULL, *Gc = NULL;
        if (vs_cpu) {
            Pc = dput(&cm, p0, FB(n)), Mc = dput(&cm, zero, FB(n)), Vc = dput(&cm, zero, FB(n));
            Gc = dput(&cm, NULL, FB(n));
        }
        for (long t = 1; t <= 6; t++) {
            c.lr = 1e-2 * (t <= 2 ? t / 2.0 : (8 - t) / 6.0);   /* warmup, then decay */
            snprintf(trial, sizeof trial, "n %zu step %ld lr %g wd %g beta2 %g", n, t, c.lr, c.weight_decay, c.beta2);
            float *g = rand_f(n, -1, 1);
            for (size_t i = 0; i < n; i++) g[i] *= (float)pow(10, unif(-4, 0));
            cb_ops_upload(dut, G, g, FB(n));
            cb_ops_adamw(dut, P, G, M, V, n, &c, t);
            cb_ops_download(dut, p, P, FB(n));
            cb_ops_download(dut, m, M, FB(n));
            cb_ops_download(dut, v, V, FB(n));
            ref_adamw(pr, g, mr, vr, n, &c, t);
            cmp_ref("adamw", ELEM, "params", p, pr, n);
            cmp_ref("adamw", ELEM, "m", m, mr, n);
            cmp_ref("adamw", ELEM, "v", v, vr, n);
            if (vs_cpu) {
                cb_ops_upload(cpu, Gc, g, FB(n));
                cb_ops_adamw(cpu, Pc, Gc, Mc, Vc, n, &c, t);
                cb_ops_download(cpu, pc, Pc, FB(n));
                cb_ops_download(cpu, mc, Mc, FB(n));
                cb_ops_download(cpu, vc, Vc, FB(n));
                cmp_cpu("adamw", ELEM, "params", p, pc, n);
                cmp_cpu("adamw", ELEM, "m", m, mc, n);
                cmp_cpu("adamw", ELEM, "v", v, vc, n);
            }
        }
        dfree(&dm);
        dfree(&cm);
        tmp_free();
    }
}

/* ---- main ---------------------------------------------------------------- */

int main(void) {
    const char *spec = getenv("COLBERT_DEVICE"), *pname = getenv("COLBERT_PRECISION");
    if (!spec || !*spec) spec = "cpu";
    if (!pname || !*pname) pname = "fp32";
    for (size_t i = 0; i < sizeof tol_table / sizeof *tol_table; i++)
        if (strcmp(tol_table[i].name, pname) == 0) tol = &tol_table[i];
    if (!tol) {
        fprintf(stderr, "test_ops: no tolerances for precision '%s' (add a row to tol_table)\n", pname);
        return 2;
    }
    cb_err err = {{0}};
    dut = cb_ops_open(spec, tol->precision, &err);
    if (!dut) {
        fprintf(stderr, "test_ops: %s\n", err.msg);
        return 2;
    }
    cpu = cb_ops_cpu();
    vs_cpu = strcmp(dut->kind, "cpu") != 0;
    printf("test_ops: %s, %s%s\n", dut->desc, tol->name, vs_cpu ? ", also against the cpu" : "");

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    test_buffers();
    test_linear();
    test_embed();
    test_layernorm();
    test_elementwise();
    test_dropout();
    test_attention();
    test_rope();
    test_geglu();
    test_keep_relu();
    test_l2norm();
    test_maxsim();
    test_loss();
    test_clip();
    test_adamw();
    clock_gettime(CLOCK_MONOTONIC, &t1);

    print_table();
    printf("%.2f s\n", (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    cb_ops_close(dut);
    return test_finish("test_ops");
}
