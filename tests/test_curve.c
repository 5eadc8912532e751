/* test_curve.c: cb_train_write_curve (train_curve.c) on synthetic runs:
 * validated and not, 1 step, NaN and infinite losses, an unvalidated
 * checkpoint, steps lost before a resume, a run stopped part way, 500000
 * steps. Checks what can be checked without an XML parser: the files are
 * written (and nothing else is left in the run directory), no NaN or inf
 * reaches the SVG, one nDCG@10 marker per validated checkpoint, the best
 * labelled with its step, x ticks, the PNG's header and size (when built
 * with cairo).
 *
 *   test_curve [DIR]   writes the runs to DIR/<case>/ and keeps them
 *                      (tests/test_curve.py parses them as XML); without
 *                      DIR, to a temporary directory removed at the end.
 */
#include <dirent.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "train_run.h"
#include "test.h"

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* An attribute value (numbers, colours, classes) holds "nan" or "inf". */
static int nonfinite_attr(const char *svg) {
    for (const char *p = svg; (p = strstr(p, "=\"")); ) {
        p += 2;
        const char *e = strchr(p, '"');
        if (!e) return 1;
        for (const char *q = p; q + 3 <= e; q++)
            if (!strncasecmp(q, "nan", 3) || !strncasecmp(q, "inf", 3)) return 1;
        p = e + 1;
    }
    return 0;
}

static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

typedef struct synth {
    const char *name;
    long total, done;           /* the run's steps, steps taken */
    long every;                 /* a checkpoint every this many steps (and at `done`) */
    int has_val;
    long lost;                  /* steps 1..lost not in memory (a resume without its log) */
    int nan_steps;              /* some NaN and infinite losses */
    int unvalidated_last;       /* the last checkpoint was not validated (an interrupt) */
    const char *model;          /* the model name (NULL: "synthetic <&> run") */
} synth;

/* Build the run of case c in dir/c->name and write its curve; returns the
 * number of validated checkpoints and the best step in *best. */
static int make_run(const char *dir, const synth *c, long *best_step) {
    static trainer tr;
    tr.model_name = (char *)(c->model ? c->model : "synthetic <&> run");
    run r;
    memset(&r, 0, sizeof r);
    r.tr = &tr;
    cb_train_opts_default(&r.o);
    r.o.bsize = 8;
    r.o.lr = 3e-5;
    r.o.warmup = c->total / 10;
    r.total = c->total;
    r.decay_end = c->total;
    r.s.t = c->done;
    r.has_val = c->has_val;
    snprintf(r.val.source, sizeof r.val.source, "12 held-out queries among 300 documents");
    r.loss_hist = calloc((size_t)c->total, sizeof(float));
    r.avg_hist = calloc((size_t)c->total, sizeof(float));
    r.lr_hist = calloc((size_t)c->total, sizeof(float));
    double ema = 0;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (long i = 0; i < c->done; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        double noise = (double)(x >> 11) / 9007199254740992.0 - 0.5;
        double loss = 0.4 + 1.2 * exp(-3.0 * (double)i / (double)c->total) + 0.3 * noise;
        if (c->nan_steps && (i % 97 == 5)) loss = NAN;
        if (c->nan_steps && (i % 89 == 7)) loss = INFINITY;
        if (isfinite(loss)) ema = TRAIN_SMOOTH * ema + (1 - TRAIN_SMOOTH) * loss;
        long t = i + 1;
        double lr = t <= r.o.warmup ? r.o.lr * (double)t / (double)(r.o.warmup ? r.o.warmup : 1)
                                    : r.o.lr * (double)(c->total - t) / (double)(c->total - r.o.warmup);
        if (i < c->lost) continue;
        r.loss_hist[i] = (float)loss;
        r.avg_hist[i] = (float)cb_train_smoothed(ema, t);
        r.lr_hist[i] = (float)lr;
    }
    int nval = 0;
    for (long st = c->every;; st += c->every) {
        long s = st > c->done ? c->done : st;
        val_scores v = {NAN, NAN, NAN, NAN};
        int last = s == c->done;
        if (c->has_val && !(last && c->unvalidated_last)) {
            double q = (double)s / (double)c->total;
            v.ndcg10 = 0.28 + 0.06 * q * (1.3 - q);  /* peaks before the end */
            v.mrr10 = 0.45 + 0.05 * q;
            nval++;
        }
        CHECK(cb_train_hist_push(&r.hist, s, &v, NULL) == 0);
        if (last) break;
    }
    *best_step = r.hist.n ? r.hist.at[cb_train_hist_best(&r.hist)].step : -1;
    r.run_dir = cb_path_new(dir, c->name, NULL);
    mkdir(r.run_dir, 0755);
    CHECK(cb_train_write_curve(&r, NULL) == 0);
    free(r.run_dir);
    free(r.loss_hist); free(r.avg_hist); free(r.lr_hist); cb_train_hist_free(&r.hist);
    return nval;
}

static void check_run(const char *dir, const synth *c, int nval, long best) {
    char *rd = cb_path_new(dir, c->name, NULL), *p = cb_path_new(rd, "curve.svg", NULL);
    size_t len = 0;
    char *svg = cb_read_file(p, &len, NULL);
    CHECK_MSG(svg != NULL, "%s: no curve.svg", c->name);
    if (svg) {
        CHECK_MSG(!strncmp(svg, "<svg", 4) && len > 7 && !strcmp(svg + len - 7, "</svg>\n"), "%s", c->name);
        CHECK_MSG(!nonfinite_attr(svg), "%s: a NaN or an infinity reached the SVG", c->name);
        CHECK_MSG((strstr(svg, "class=\"nonfinite\"") != NULL) == c->nan_steps, "%s: NaN marks", c->name);
        CHECK_MSG(strstr(svg, c->model ? ">r\xc3\xa9sum? run: " : ">synthetic &lt;&amp;&gt; run: ") != NULL,
                  "%s: the title, escaped", c->name);
        CHECK_MSG(count(svg, "<circle class=\"ndcg\"") == nval, "%s: %d nDCG@10 markers, want %d", c->name,
                  count(svg, "<circle class=\"ndcg\""), nval);
        CHECK_MSG(count(svg, "class=\"ckpt") >= 1, "%s: checkpoint marks", c->name);
        char want[64];
        snprintf(want, sizeof want, ">best: step %ld", best);
        CHECK_MSG(strstr(svg, want) != NULL, "%s: no \"%s\"", c->name, want + 1);
        CHECK_MSG((count(svg, "class=\"best-star\"") == 1) == (nval > 0), "%s: the star", c->name);
        if (c->total >= 4) CHECK_MSG(count(svg, "<text class=\"xtick\"") >= 4, "%s: x ticks", c->name);
        CHECK_MSG(strstr(svg, "class=\"legend\"") != NULL, "%s: legend", c->name);
        CHECK_MSG((strstr(svg, "class=\"future\"") != NULL) == (c->done < c->total), "%s: shading", c->name);
        CHECK_MSG(count(svg, "class=\"axis-title\"") >= 3 + (nval > 0), "%s: axis titles", c->name);
    }
    free(svg);
    free(p);
    p = cb_path_new(rd, "curve.png", NULL);
#ifdef CB_CAIRO
    unsigned char *png = (unsigned char *)cb_read_file(p, &len, NULL);
    CHECK_MSG(png && len > 33 && !memcmp(png, "\x89PNG\r\n\x1a\n", 8) && !memcmp(png + 12, "IHDR", 4),
              "%s: curve.png is not a PNG", c->name);
    if (png && len > 24) CHECK_MSG(be32(png + 16) == 960 && be32(png + 20) > 400 && be32(png + 20) < 800,
                                   "%s: PNG %u x %u", c->name, be32(png + 16), be32(png + 20));
    free(png);
#else
    CHECK_MSG(!cb_file_exists(p), "%s: a PNG without cairo", c->name);
    (void)be32;
#endif
    free(p);
    /* nothing but the pictures: the temporary files were renamed */
    DIR *d = opendir(rd);
    int extra = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.' && strcmp(e->d_name, "curve.svg") && strcmp(e->d_name, "curve.png")) extra++;
    if (d) closedir(d);
    CHECK_MSG(extra == 0, "%s: %d other files left", c->name, extra);
    free(rd);
}

static void check_rewrite(void) {
    /* a second write over the first: same size (atomic replace, no append) */
    char dir[] = "/tmp/colbert-curve-XXXXXX";
    if (!mkdtemp(dir)) return;
    synth c = {"again", 40, 40, 10, 1, 0, 0, 0, NULL};
    long b;
    int nv = make_run(dir, &c, &b);
    char *p = cb_path_new(dir, "again/curve.svg", NULL);
    size_t l1 = 0, l2 = 0;
    free(cb_read_file(p, &l1, NULL));
    make_run(dir, &c, &b);
    free(cb_read_file(p, &l2, NULL));
    CHECK(l1 > 0 && l1 == l2);
    check_run(dir, &c, nv, b);
    free(p);
    char *cmd = cb_train_fmt(NULL, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    free(cmd);
}

int main(int argc, char **argv) {
    static const synth cases[] = {
        /* name        total   done   every val lost nan unval model */
        {"validated",     600,    600,   120, 1,   0,  0, 0, NULL},
        {"one-step",        1,      1,     1, 0,   0,  0, 0, NULL},
        {"no-val",         50,     50,    10, 0,   0,  0, 0, NULL},
        {"nan",           400,    400,    80, 1,   0,  1, 1, NULL},
        {"resumed",       300,    300,    60, 1, 100,  0, 0, NULL},
        {"partial",       400,    137,    50, 1,   0,  0, 1, NULL},
        {"long",       500000, 500000, 50000, 1,   0,  0, 0, NULL},
        {"val-one",        24,     24,    24, 1,   0,  0, 0, NULL},
        /* not UTF-8, a control character: replaced (XML and cairo need UTF-8) */
        {"odd-text",       30,     30,    10, 1,   0,  0, 0, "r\xc3\xa9sum\xe9\x01run"},
    };
    char tmpl[] = "/tmp/colbert-curve-XXXXXX";
    const char *dir = argc > 1 ? argv[1] : mkdtemp(tmpl);
    if (!dir) { perror("mkdtemp"); return 1; }
    mkdir(dir, 0755);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        long best = -1;
        int nval = make_run(dir, &cases[i], &best);
        check_run(dir, &cases[i], nval, best);
    }
    check_rewrite();
    if (argc <= 1) {
        char *cmd = cb_train_fmt(NULL, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
        free(cmd);
    }
    return test_finish("test_curve");
}
