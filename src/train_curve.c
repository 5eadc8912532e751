/* train_curve.c: the picture of a training run, RUN/curve.svg and, in a
 * build with cairo (the Makefile defines CB_CAIRO when pkg-config finds it),
 * RUN/curve.png beside it; without cairo only the SVG is written. Both are
 * rewritten atomically after every checkpoint.
 *
 * The picture is laid out once, as a list of shapes in pixels (polylines,
 * polygons, circles, texts); two small back-ends draw that list, one as SVG
 * text and one with cairo, so the two files cannot drift apart.
 *
 *   title        model name, steps done / the run's steps; the schedule and
 *                the validation set
 *   upper panel  x: step, 0 .. the run's steps. Left axis: the loss of each
 *                step (light; the mean of each bucket when a run has more
 *                than MAXPTS steps) and the smoothed loss (bold; avg_hist,
 *                cb_train_smoothed: what the progress line and train.jsonl's
 *                loss_avg show). Right axis: the learning rate (dashed).
 *   lower panel  validation nDCG@10 and MRR@10 at each validated checkpoint,
 *                on an axis scaled to them (absent without validation)
 *   both panels  a dotted line at every checkpoint, a solid one at the best
 *                (cb_train_best_index), starred on its nDCG@10 and labelled
 *                "best: step N, nDCG@10 0.xxx" above the plot; steps not run
 *                yet are shaded
 *   below        the x ticks, "step", and the legend (outside the plot)
 */
#include "train_run.h"
#include "npy.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#ifdef CB_CAIRO
#include <cairo.h>
#endif

#define MAXPTS 1000             /* points per curve at most */

/* ---- the picture as a list of shapes ---------------------------------- */

enum { SH_LINE, SH_POLY, SH_CIRCLE, SH_TEXT };
enum { A_START, A_MIDDLE, A_END };
#define NOPAINT 0xffffffffu     /* a colour: don't stroke / don't fill */

typedef struct shape {
    int kind;
    uint32_t stroke, fill;      /* 0xRRGGBB or NOPAINT */
    float width;                /* stroke width, px */
    float dash[2];              /* on, off (px); {0, 0} solid */
    int np;
    float *pt;                  /* [np, 2] LINE (open), POLY (closed); CIRCLE: [1, 2] centre */
    float size;                 /* CIRCLE radius; TEXT font size */
    int anchor, vertical, bold; /* TEXT: A_*, rotated -90 degrees about its point, bold */
    char *text;                 /* TEXT, UTF-8 */
    const char *cls;            /* the SVG class (tests find the parts by it) */
} shape;

/* Out of memory is sticky: the first failure sets oom and err, and the
 * layout goes on drawing into `spare` (so that it need not check every
 * shape) but allocates nothing more; the figure is then not written. */
typedef struct figure {
    int W, H;
    shape *s;
    int n, cap;
    int oom;
    shape spare;                /* what fig_add hands out once oom is set */
    cb_err *err;
} figure;

/* n bytes for the figure, or NULL once out of memory. */
static void *fig_alloc(figure *f, size_t n) {
    if (f->oom) return NULL;
    void *p = cb_malloc(n, "the loss curve", f->err);
    if (!p) f->oom = 1;
    return p;
}

static shape *fig_add(figure *f, int kind, const char *cls) {
    if (!f->oom && f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 256;
        shape *s2 = cb_realloc(f->s, (size_t)cap * sizeof(shape), "the loss curve", f->err);
        if (s2) {
            f->s = s2;
            f->cap = cap;
        } else {
            f->oom = 1;
        }
    }
    shape *s = f->oom ? &f->spare : &f->s[f->n++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->stroke = s->fill = NOPAINT;
    s->width = 1;
    s->cls = cls;
    return s;
}

static void fig_free(figure *f) {
    for (int i = 0; i < f->n; i++) { free(f->s[i].pt); free(f->s[i].text); }
    free(f->s);
}

/* A polyline (closed = 0) or polygon of np points xy [np, 2]. */
static shape *fig_path(figure *f, const char *cls, int closed, const float *xy, int np, uint32_t stroke,
                       float width, float dash_on, float dash_off) {
    shape *s = fig_add(f, closed ? SH_POLY : SH_LINE, cls);
    if ((s->pt = fig_alloc(f, (size_t)np * 2 * sizeof(float)))) {
        s->np = np;
        memcpy(s->pt, xy, (size_t)np * 2 * sizeof(float));
    }
    s->stroke = stroke;
    s->width = width;
    s->dash[0] = dash_on;
    s->dash[1] = dash_off;
    return s;
}

static shape *fig_seg(figure *f, const char *cls, float x0, float y0, float x1, float y1, uint32_t stroke,
                      float width, float dash_on, float dash_off) {
    float xy[4] = {x0, y0, x1, y1};
    return fig_path(f, cls, 0, xy, 2, stroke, width, dash_on, dash_off);
}

static shape *fig_rect(figure *f, const char *cls, float x, float y, float w, float h, uint32_t stroke,
                       uint32_t fill) {
    float xy[8] = {x, y, x + w, y, x + w, y + h, x, y + h};
    shape *s = fig_path(f, cls, 1, xy, 4, stroke, 1, 0, 0);
    s->fill = fill;
    return s;
}

static shape *fig_circle(figure *f, const char *cls, float x, float y, float r, uint32_t stroke, uint32_t fill) {
    shape *s = fig_add(f, SH_CIRCLE, cls);
    if ((s->pt = fig_alloc(f, 2 * sizeof(float)))) {
        s->np = 1;
        s->pt[0] = x;
        s->pt[1] = y;
    }
    s->size = r;
    s->stroke = stroke;
    s->fill = fill;
    return s;
}

static shape *fig_square(figure *f, const char *cls, float x, float y, float r, uint32_t stroke, uint32_t fill) {
    return fig_rect(f, cls, x - r, y - r, 2 * r, 2 * r, stroke, fill);
}

/* A five-pointed star of outer radius r centred on (x, y). */
static shape *fig_star(figure *f, const char *cls, float x, float y, float r, uint32_t stroke, uint32_t fill) {
    float xy[20];
    for (int k = 0; k < 10; k++) {
        double a = -M_PI / 2 + k * M_PI / 5, rr = k % 2 ? r * 0.45 : r;
        xy[2 * k] = (float)(x + rr * cos(a));
        xy[2 * k + 1] = (float)(y + rr * sin(a));
    }
    shape *s = fig_path(f, cls, 1, xy, 10, stroke, 1, 0, 0);
    s->fill = fill;
    return s;
}

/* Texts come from the user (the model name, paths): XML and cairo both
 * need valid UTF-8 without control characters, so a byte that does not
 * start a valid sequence becomes '?' and a control character a space. */
static void clean_utf8(char *t) {
    unsigned char *p = (unsigned char *)t;
    while (*p) {
        int len = *p < 0x80 ? 1 : *p >= 0xc2 && *p <= 0xdf ? 2 : *p >= 0xe0 && *p <= 0xef ? 3
                : *p >= 0xf0 && *p <= 0xf4 ? 4 : 0;
        for (int k = 1; k < len; k++)
            if ((p[k] & 0xc0) != 0x80) len = 0;
        if (len == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))) len = 0;
        if (len == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))) len = 0;
        if (len == 0) { *p++ = '?'; continue; }
        if (len == 1 && (*p < 0x20 || *p == 0x7f)) *p = ' ';
        p += len;
    }
}

static shape *fig_text(figure *f, const char *cls, float x, float y, float size, uint32_t color, int anchor,
                       const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static shape *fig_text(figure *f, const char *cls, float x, float y, float size, uint32_t color, int anchor,
                       const char *fmt, ...) {
    shape *s = fig_add(f, SH_TEXT, cls);
    if ((s->pt = fig_alloc(f, 2 * sizeof(float)))) {
        s->np = 1;
        s->pt[0] = x;
        s->pt[1] = y;
    }
    s->size = size;
    s->fill = color;
    s->anchor = anchor;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (!(s->text = fig_alloc(f, (size_t)n + 1))) return s;
    va_start(ap, fmt);
    vsnprintf(s->text, (size_t)n + 1, fmt, ap);
    va_end(ap);
    clean_utf8(s->text);
    return s;
}

/* The width of a text, estimated (both back-ends lay out with this, so the
 * legend is placed the same in both; DejaVu Sans averages about 0.55 em). */
static float text_width(const char *t, float size) {
    size_t n = 0;
    for (const char *p = t; *p; p++) n += ((unsigned char)*p & 0xc0) != 0x80;  /* UTF-8 characters */
    return 0.6f * size * (float)n;
}

/* ---- scales and ticks ------------------------------------------------- */

/* A linear map of [lo, hi] to pixels [p0, p1], ticks every `step` from
 * `first`. */
typedef struct scale {
    double lo, hi, p0, p1, step;
} scale;

static float sc_px(const scale *s, double v) { return (float)(s->p0 + (v - s->lo) / (s->hi - s->lo) * (s->p1 - s->p0)); }

/* The largest step of 1, 2 or 5 x 10^k that still cuts `range` into at
 * least min_div parts (so min_div .. 2.5 min_div parts); integers only if
 * integral. */
static double nice_step(double range, int min_div, int integral) {
    double mag = pow(10, floor(log10(range / min_div)));  /* range / min_div in [mag, 10 mag) */
    double st = mag;
    for (int k = 0; k < 3; k++) {
        static const double c[3] = {5, 2, 1};
        if (range / (c[k] * mag) >= min_div) { st = c[k] * mag; break; }
    }
    if (integral && st < 1) st = 1;
    return st;
}

/* A scale over [lo, hi] widened to whole ticks (unless `exact`). */
static scale sc_make(double lo, double hi, double p0, double p1, int min_div, int integral, int exact) {
    if (!(hi > lo)) {
        double d = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1;
        lo -= d;
        hi += d;
    }
    scale s = {lo, hi, p0, p1, nice_step(hi - lo, min_div, integral)};
    if (!exact) {
        s.lo = floor(lo / s.step + 1e-9) * s.step;
        s.hi = ceil(hi / s.step - 1e-9) * s.step;
    }
    return s;
}

/* Tick i of a scale: ticks are the multiples of step within [lo, hi]. */
static int sc_ticks(const scale *s, double *first) {
    double k0 = ceil(s->lo / s->step - 1e-9), k1 = floor(s->hi / s->step + 1e-9);
    *first = k0;
    return k1 >= k0 ? (int)(k1 - k0) + 1 : 0;
}

/* A tick label: integers (50k for round thousands from 10000 on), fixed
 * decimals down to 0.001 steps, else the shortest 2e-5 style. */
static void fmt_tick(char *buf, size_t n, double v, double step) {
    if (fabs(v) < step * 1e-6) v = 0;
    if (v == 0) {
        snprintf(buf, n, "0");
    } else if (fabs(v) >= 1e7) {
        snprintf(buf, n, "%.3g", v);
    } else if (step >= 1) {
        if (fabs(v) >= 10000 && fmod(v, 1000) == 0) snprintf(buf, n, "%.0fk", v / 1000);
        else snprintf(buf, n, "%.0f", v);
    } else if (step >= 1e-3 - 1e-12) {
        snprintf(buf, n, "%.*f", (int)ceil(-log10(step) - 1e-9), v);
    } else {
        /* the shortest mantissa: 5e-6, 1e-5, 1.5e-5 */
        int e = (int)floor(log10(fabs(v)) + 1e-9);
        int d = e - (int)floor(log10(step) + 1e-9);
        if (d < 0) d = 0;
        if (d > 3) d = 3;
        char m[32];
        snprintf(m, sizeof m, "%.*f", d, v / pow(10, e));
        if (strchr(m, '.')) {
            char *z = m + strlen(m) - 1;
            while (*z == '0') *z-- = 0;
            if (*z == '.') *z = 0;
        }
        snprintf(buf, n, "%se%d", m, e);
    }
}

/* ---- the layout ------------------------------------------------------- */

#define C_TEXT 0x222222u
#define C_MUTED 0x666666u
#define C_FRAME 0x888888u
#define C_GRID 0xe8e8e8u
#define C_FUTURE 0xf4f4f4u
#define C_RAW 0x9ecae1u
#define C_AVG 0x08519cu
#define C_LR 0xd62728u
#define C_CKPT 0x999999u
#define C_NDCG 0x2ca02cu
#define C_MRR 0x9467bdu
#define C_BAD 0x000000u
#define C_BEST 0xff9f1cu
#define C_BEST_EDGE 0x8a5300u

enum { W = 960, ML = 80, MR = 86, TOP = 70, H_LOSS = 280, GAP = 18, H_VAL = 140 };

/* Step i (0-based) was not recorded: a resumed run whose train.jsonl lost
 * earlier lines leaves zeros (the arrays are calloc'd). */
static int missing(const run *r, long i) {
    return r->loss_hist[i] == 0 && r->avg_hist[i] == 0 && r->lr_hist[i] == 0;
}

/* A curve with gaps: points accumulate until a gap, then become one
 * polyline (or a dot, for a single point). */
typedef struct trace {
    float *xy;                  /* [n, 2] */
    int n;
} trace;

static void trace_flush(figure *f, trace *t, const char *cls, uint32_t color, float width, float don, float doff) {
    if (t->n >= 2) fig_path(f, cls, 0, t->xy, t->n, color, width, don, doff);
    else if (t->n == 1) fig_circle(f, cls, t->xy[0], t->xy[1], width + 1.5f, NOPAINT, color);
    t->n = 0;
}

static void trace_add(trace *t, float x, float y) {
    t->xy[2 * t->n] = x;
    t->xy[2 * t->n + 1] = y;
    t->n++;
}

/* The curves of one panel, downsampled to at most MAXPTS buckets of steps
 * [a, b): the loss is the bucket's mean at its centre (every step when
 * n <= MAXPTS), the smoothed loss and the rate are the bucket's last
 * recorded step, where they are exact. */
typedef struct series {
    int np;
    float *x, *raw, *avg, *lr;  /* [np]; NAN: nothing recorded */
    float *bad;                 /* [np] steps whose loss is NaN or infinite */
    long nbad;
    int raw_mean;               /* raw is a mean of more than one step */
} series;

/* Leaves s->np 0 when out of memory (f->oom). */
static void series_make(figure *f, series *s, const run *r, long n) {
    s->raw_mean = n > MAXPTS;
    s->np = 0;
    s->x = fig_alloc(f, (size_t)(n < MAXPTS ? n : MAXPTS) * 5 * sizeof(float));
    if (!s->x) return;
    s->np = n < MAXPTS ? (int)n : MAXPTS;
    s->raw = s->x + s->np;
    s->avg = s->raw + s->np;
    s->lr = s->avg + s->np;
    s->bad = s->lr + s->np;
    s->nbad = 0;
    for (int p = 0; p < s->np; p++) {
        long a = (long)((double)p * n / s->np), b = (long)((double)(p + 1) * n / s->np);
        if (b <= a) b = a + 1;
        double sum = 0;
        long cnt = 0, last = -1, bad = 0;
        for (long i = a; i < b; i++) {
            if (missing(r, i)) continue;
            if (isfinite(r->loss_hist[i])) { sum += r->loss_hist[i]; cnt++; }
            else bad++;
            last = i;
        }
        s->bad[p] = (float)bad;
        s->nbad += bad;
        s->x[p] = (float)((double)(a + 1 + b) / 2);
        s->raw[p] = cnt ? (float)(sum / (double)cnt) : NAN;
        s->avg[p] = s->lr[p] = NAN;
        if (last >= 0) {
            s->avg[p] = isfinite(r->avg_hist[last]) ? r->avg_hist[last] : NAN;
            s->lr[p] = isfinite(r->lr_hist[last]) ? r->lr_hist[last] : NAN;
        }
    }
}

/* x of bucket p for the curves sampled at the bucket's last step. */
static float series_last_x(const series *s, long n, int p) {
    return (float)(long)((double)(p + 1) * n / s->np);
}

static void draw_curve(figure *f, const series *s, long n, const float *y, int at_last, const scale *sx,
                       const scale *sy, const char *cls, uint32_t color, float width, float don, float doff) {
    trace t = {fig_alloc(f, (size_t)s->np * 2 * sizeof(float)), 0};
    if (!t.xy) return;
    for (int p = 0; p < s->np; p++) {
        if (isnan(y[p])) { trace_flush(f, &t, cls, color, width, don, doff); continue; }
        trace_add(&t, sc_px(sx, at_last ? series_last_x(s, n, p) : s->x[p]), sc_px(sy, y[p]));
    }
    trace_flush(f, &t, cls, color, width, don, doff);
    free(t.xy);
}

/* Horizontal grid, ticks and labels of a y scale on the left (side 0) or
 * the right (1) of the plot [x0, x1]; cls names the axis. */
static void y_axis(figure *f, const char *cls, const scale *s, float x0, float x1, int side, uint32_t color,
                   int grid) {
    double k0;
    int nt = sc_ticks(s, &k0);
    for (int i = 0; i < nt; i++) {
        double v = (k0 + i) * s->step;
        float y = sc_px(s, v);
        char lab[32];
        fmt_tick(lab, sizeof lab, v, s->step);
        if (grid) fig_seg(f, "grid", x0, y, x1, y, C_GRID, 1, 0, 0);
        float x = side ? x1 : x0, d = side ? 5 : -5;
        fig_seg(f, cls, x, y, x + d, y, C_FRAME, 1, 0, 0);
        fig_text(f, cls, x + 1.6f * d, y + 4, 11, color, side ? A_START : A_END, "%s", lab);
    }
}

static void axis_title(figure *f, float x, float y, uint32_t color, const char *t) {
    shape *s = fig_text(f, "axis-title", x, y, 13, color, A_MIDDLE, "%s", t);
    s->vertical = 1;
}

/* One legend entry: a sample and its label; kind 0 a line, 1 a line with a
 * circle, 2 with a square, 3 a star, 4 a shaded box, 5 a tick. */
typedef struct legend_item {
    int kind;
    uint32_t color;
    float width, don, doff;
    char label[96];
} legend_item;

static float legend_item_width(const legend_item *it) { return 30 + 6 + text_width(it->label, 12) + 22; }

/* Entries in rows no wider than the plot, each row centred; returns the
 * y below the last row. */
static float legend_draw(figure *f, const legend_item *it, int n, float x0, float x1, float y) {
    int i = 0;
    while (i < n) {
        int j = i;
        float w = 0;
        while (j < n && (j == i || w + legend_item_width(&it[j]) <= x1 - x0)) w += legend_item_width(&it[j++]);
        float x = x0 + (x1 - x0 - w + 22) / 2;
        for (int k = i; k < j; k++) {
            const legend_item *e = &it[k];
            float cy = y - 4;
            if (e->kind == 3) {
                fig_star(f, "legend", x + 15, cy, 8, C_BEST_EDGE, e->color);
            } else if (e->kind == 5) {
                fig_seg(f, "legend", x + 15, cy - 6, x + 15, cy + 4, e->color, e->width, 0, 0);
            } else if (e->kind == 4) {
                fig_rect(f, "legend", x + 3, cy - 6, 24, 12, C_GRID, e->color);
            } else {
                fig_seg(f, "legend", x, cy, x + 30, cy, e->color, e->width, e->don, e->doff);
                if (e->kind == 1) fig_circle(f, "legend", x + 15, cy, 4, 0xffffffu, e->color);
                if (e->kind == 2) fig_square(f, "legend", x + 15, cy, 3.5f, 0xffffffu, e->color);
            }
            fig_text(f, "legend", x + 36, y, 12, C_TEXT, A_START, "%s", e->label);
            x += legend_item_width(e);
        }
        i = j;
        y += 20;
    }
    return y;
}

/* Lay out the whole picture of run r into f; -1 (f->oom, f->err) when out
 * of memory. */
static int curve_build(figure *f, const run *r) {
    long n = cb_step_count(&r->s), total = r->total > n ? r->total : n;
    if (n > total) n = total;
    double vlo = INFINITY, vhi = -INFINITY;
    int has_mrr = 0;
    for (int i = 0; i < r->n_hist; i++) {
        const val_scores *v = &r->hist[i].v;
        if (isfinite(v->ndcg10)) { vlo = fmin(vlo, v->ndcg10); vhi = fmax(vhi, v->ndcg10); }
        if (isfinite(v->mrr10)) { has_mrr = 1; vlo = fmin(vlo, v->mrr10); vhi = fmax(vhi, v->mrr10); }
    }
    int val_panel = vlo <= vhi;
    int best = cb_train_best_index(r);
    int best_validated = best >= 0 && isfinite(r->hist[best].v.ndcg10);

    float x0 = ML, x1 = W - MR, lt = TOP, lb = TOP + H_LOSS;
    float vt = lb + GAP, vb = vt + H_VAL, bottom = val_panel ? vb : lb;
    f->W = W;

    /* title */
    fig_text(f, "title", x0, 26, 16, C_TEXT, A_START, "%.60s: %ld / %ld steps%s", r->tr->model_name, n, total,
             n < total ? " (so far)" : "")->bold = 1;
    char sub[700];
    int k = snprintf(sub, sizeof sub, "batch %d, lr %g, warmup %ld, linear decay to 0 at step %ld; ", r->o.bsize,
                     r->o.lr, r->o.warmup, r->decay_end);
    if (r->has_val)
        snprintf(sub + k, sizeof sub - (size_t)k, "validation: %s", r->val.source);
    else
        snprintf(sub + k, sizeof sub - (size_t)k, "no validation: the last checkpoint is the best");
    size_t maxc = (size_t)((W - 2 * 12) / (0.6 * 12));
    if (strlen(sub) > maxc) strcpy(sub + maxc - 3, "...");
    fig_text(f, "subtitle", x0, 46, 12, C_MUTED, A_START, "%s", sub);

    /* scales */
    scale sx = sc_make(0, (double)total, x0, x1, 4, 1, 1);
    if (total <= 0) sx = sc_make(0, 1, x0, x1, 4, 1, 1);
    series s = {0};
    double llo = INFINITY, lhi = -INFINITY, rhi = 0;
    if (n > 0) {
        series_make(f, &s, r, n);
        for (int p = 0; p < s.np; p++) {
            if (!isnan(s.raw[p])) { llo = fmin(llo, s.raw[p]); lhi = fmax(lhi, s.raw[p]); }
            if (!isnan(s.avg[p])) { llo = fmin(llo, s.avg[p]); lhi = fmax(lhi, s.avg[p]); }
            if (!isnan(s.lr[p])) rhi = fmax(rhi, s.lr[p]);
        }
    }
    if (!(llo <= lhi)) { llo = 0; lhi = 1; }
    if (!(rhi > 0)) rhi = r->o.lr > 0 ? r->o.lr : 1;
    scale sl = sc_make(llo, lhi, lb, lt, 3, 0, 0);
    scale sr = sc_make(0, rhi, lb, lt, 3, 0, 0);
    scale sv = {0};
    if (val_panel) {
        double pad = fmax(0.015, (vhi - vlo) * 0.1);
        sv = sc_make(fmax(0, vlo - pad), fmin(1, vhi + pad), vb, vt, 2, 0, 0);
        if (sv.lo < 0) sv.lo = 0;
    }

    /* panels: steps not run yet shaded, grid, frame */
    if (n < total) {
        float xn = sc_px(&sx, (double)n);
        fig_rect(f, "future", xn, lt, x1 - xn, lb - lt, NOPAINT, C_FUTURE);
        if (val_panel) fig_rect(f, "future", xn, vt, x1 - xn, vb - vt, NOPAINT, C_FUTURE);
    }
    y_axis(f, "ytick-loss", &sl, x0, x1, 0, C_AVG, 1);
    y_axis(f, "ytick-lr", &sr, x0, x1, 1, C_LR, 0);
    axis_title(f, 20, (lt + lb) / 2, C_AVG, "loss");
    axis_title(f, W - 14, (lt + lb) / 2, C_LR, "learning rate");
    if (val_panel) {
        y_axis(f, "ytick-val", &sv, x0, x1, 0, C_TEXT, 1);
        axis_title(f, 20, (vt + vb) / 2, C_TEXT, "validation");
    }

    /* x ticks under the lowest panel, small marks on the others */
    double kx;
    int nx = sc_ticks(&sx, &kx);
    for (int i = 0; i < nx; i++) {
        double v = (kx + i) * sx.step;
        float x = sc_px(&sx, v);
        char lab[32];
        fmt_tick(lab, sizeof lab, v, sx.step);
        fig_seg(f, "xtick-mark", x, lb, x, lb + 5, C_FRAME, 1, 0, 0);
        if (val_panel) fig_seg(f, "xtick-mark", x, vb, x, vb + 5, C_FRAME, 1, 0, 0);
        fig_text(f, "xtick", x, bottom + 18, 11, C_TEXT, A_MIDDLE, "%s", lab);
    }
    fig_text(f, "axis-title", (x0 + x1) / 2, bottom + 38, 13, C_TEXT, A_MIDDLE, "step");

    /* checkpoints: a dotted line each, a solid one at the best */
    for (int i = 0; i < r->n_hist; i++) {
        float x = sc_px(&sx, (double)r->hist[i].step);
        if (i == best) continue;
        fig_seg(f, "ckpt", x, lt, x, bottom, C_CKPT, 1, 2, 3);
    }
    float bx = 0;
    if (best >= 0) {
        bx = sc_px(&sx, (double)r->hist[best].step);
        fig_seg(f, "ckpt best-line", bx, lt, bx, bottom, C_BEST, 2, 0, 0);
    }

    /* the curves */
    if (n > 0) {
        draw_curve(f, &s, n, s.raw, 0, &sx, &sl, "loss", C_RAW, 1, 0, 0);
        draw_curve(f, &s, n, s.avg, 1, &sx, &sl, "loss-avg", C_AVG, 2.5f, 0, 0);
        draw_curve(f, &s, n, s.lr, 1, &sx, &sr, "lr", C_LR, 1.5f, 6, 4);
        for (int p = 0; p < s.np; p++)
            if (s.bad[p] > 0) {
                float x = sc_px(&sx, s.x[p]);
                fig_seg(f, "nonfinite", x, lt, x, lt + 10, C_BAD, 2, 0, 0);
            }
    }

    /* validation: joined markers, the best starred */
    if (val_panel) {
        for (int m = 0; m < 2; m++) {
            if (m == 1 && !has_mrr) break;
            trace t = {fig_alloc(f, (size_t)r->n_hist * 2 * sizeof(float)), 0};
            if (!t.xy) break;
            for (int i = 0; i < r->n_hist; i++) {
                double v = m ? r->hist[i].v.mrr10 : r->hist[i].v.ndcg10;
                if (isfinite(v)) trace_add(&t, sc_px(&sx, (double)r->hist[i].step), sc_px(&sv, v));
            }
            uint32_t c = m ? C_MRR : C_NDCG;
            if (t.n >= 2) fig_path(f, m ? "mrr-line" : "ndcg-line", 0, t.xy, t.n, c, 1.5f, 0, 0);
            for (int i = 0; i < t.n; i++) {
                if (m) fig_square(f, "mrr", t.xy[2 * i], t.xy[2 * i + 1], 3.5f, 0xffffffu, c);
                else fig_circle(f, "ndcg", t.xy[2 * i], t.xy[2 * i + 1], 4.5f, 0xffffffu, c);
            }
            free(t.xy);
        }
    }
    if (best >= 0) {
        const ckpt_info *b = &r->hist[best];
        char lab[128];
        if (best_validated) {
            fig_star(f, "best-star", bx, sc_px(&sv, b->v.ndcg10), 10, C_BEST_EDGE, C_BEST);
            snprintf(lab, sizeof lab, "best: step %ld, nDCG@10 %.3f", b->step, b->v.ndcg10);
        } else {
            snprintf(lab, sizeof lab, "best: step %ld (the last checkpoint; not validated)", b->step);
        }
        float w = text_width(lab, 12);
        int anchor = bx - w / 2 < x0 - 40 ? A_START : bx + w / 2 > x1 + 40 ? A_END : A_MIDDLE;
        float tx = anchor == A_START ? fmaxf(bx - 6, 8) : anchor == A_END ? fminf(bx + 6, W - 8) : bx;
        fig_text(f, "best", tx, lt - 8, 12, C_BEST_EDGE, anchor, "%s", lab)->bold = 1;
    }

    /* frames last, over the curves' ends */
    fig_rect(f, "frame", x0, lt, x1 - x0, lb - lt, C_FRAME, NOPAINT);
    if (val_panel) fig_rect(f, "frame", x0, vt, x1 - x0, vb - vt, C_FRAME, NOPAINT);

    /* the legend, below everything */
    legend_item it[12];
    int ni = 0;
    it[ni++] = (legend_item){0, C_RAW, 1.5f, 0, 0, ""};
    snprintf(it[ni - 1].label, sizeof it[0].label, s.raw_mean ? "loss (mean of every ~%ld steps)" : "loss per step",
             n / (s.np ? s.np : 1));
    it[ni++] = (legend_item){0, C_AVG, 2.5f, 0, 0, "smoothed loss (progress line, loss_avg)"};
    it[ni++] = (legend_item){0, C_LR, 1.5f, 6, 4, "learning rate (right axis)"};
    it[ni++] = (legend_item){0, C_CKPT, 1, 2, 3, "checkpoint"};
    if (val_panel) {
        it[ni++] = (legend_item){1, C_NDCG, 1.5f, 0, 0, "validation nDCG@10"};
        if (has_mrr) it[ni++] = (legend_item){2, C_MRR, 1.5f, 0, 0, "validation MRR@10"};
    }
    if (best >= 0)
        it[ni++] = (legend_item){best_validated ? 3 : 0, C_BEST, 2, 0, 0, ""};
    if (best >= 0)
        snprintf(it[ni - 1].label, sizeof it[0].label, "%s", best_validated ? "best checkpoint (highest nDCG@10)"
                                                                            : "best checkpoint");
    if (s.nbad) {
        it[ni++] = (legend_item){5, C_BAD, 2, 0, 0, ""};
        snprintf(it[ni - 1].label, sizeof it[0].label, "loss NaN or infinite (%ld step%s)", s.nbad,
                 s.nbad > 1 ? "s" : "");
    }
    if (n < total) it[ni++] = (legend_item){4, C_FUTURE, 0, 0, 0, "steps not run yet"};
    float end = legend_draw(f, it, ni, x0, x1, bottom + 64);
    f->H = (int)end + 6;
    free(s.x);
    return f->oom ? -1 : 0;
}

/* ---- SVG -------------------------------------------------------------- */

static void svg_escape(FILE *o, const char *t) {
    for (; *t; t++) {
        switch (*t) {
        case '&': fputs("&amp;", o); break;
        case '<': fputs("&lt;", o); break;
        case '>': fputs("&gt;", o); break;
        case '"': fputs("&quot;", o); break;
        default: fputc(*t, o);  /* clean_utf8 made it valid */
        }
    }
}

static void svg_paint(FILE *o, const shape *s) {
    if (s->fill == NOPAINT) fputs(" fill=\"none\"", o);
    else fprintf(o, " fill=\"#%06x\"", s->fill);
    if (s->stroke != NOPAINT) {
        fprintf(o, " stroke=\"#%06x\"", s->stroke);
        if (s->width != 1) fprintf(o, " stroke-width=\"%g\"", s->width);
        if (s->dash[0] > 0) fprintf(o, " stroke-dasharray=\"%g %g\"", s->dash[0], s->dash[1]);
    }
}

static void svg_write(FILE *o, const figure *f) {
    fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"DejaVu Sans, Verdana, Arial, sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", f->W, f->H, f->W, f->H);
    for (int i = 0; i < f->n; i++) {
        const shape *s = &f->s[i];
        switch (s->kind) {
        case SH_LINE:
        case SH_POLY:
            fprintf(o, "<%s class=\"%s\" points=\"", s->kind == SH_LINE ? "polyline" : "polygon", s->cls);
            for (int p = 0; p < s->np; p++) fprintf(o, "%s%.1f,%.1f", p ? " " : "", s->pt[2 * p], s->pt[2 * p + 1]);
            fputc('"', o);
            svg_paint(o, s);
            fputs(s->kind == SH_LINE ? " stroke-linejoin=\"round\"/>\n" : "/>\n", o);
            break;
        case SH_CIRCLE:
            fprintf(o, "<circle class=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"%g\"", s->cls, s->pt[0], s->pt[1], s->size);
            svg_paint(o, s);
            fputs("/>\n", o);
            break;
        case SH_TEXT:
            fprintf(o, "<text class=\"%s\" x=\"%.1f\" y=\"%.1f\" font-size=\"%g\" fill=\"#%06x\"", s->cls, s->pt[0],
                    s->pt[1], s->size, s->fill);
            if (s->anchor != A_START) fprintf(o, " text-anchor=\"%s\"", s->anchor == A_MIDDLE ? "middle" : "end");
            if (s->bold) fputs(" font-weight=\"bold\"", o);
            if (s->vertical) fprintf(o, " transform=\"rotate(-90 %.1f %.1f)\"", s->pt[0], s->pt[1]);
            fputc('>', o);
            svg_escape(o, s->text);
            fputs("</text>\n", o);
            break;
        }
    }
    fputs("</svg>\n", o);
}

/* ---- PNG (cairo) ------------------------------------------------------ */

#ifdef CB_CAIRO
static void cr_color(cairo_t *cr, uint32_t c) {
    cairo_set_source_rgb(cr, (c >> 16 & 255) / 255.0, (c >> 8 & 255) / 255.0, (c & 255) / 255.0);
}

static void cr_paint(cairo_t *cr, const shape *s) {
    if (s->fill != NOPAINT) {
        cr_color(cr, s->fill);
        if (s->stroke != NOPAINT) cairo_fill_preserve(cr);
        else cairo_fill(cr);
    }
    if (s->stroke != NOPAINT) {
        cr_color(cr, s->stroke);
        cairo_set_line_width(cr, s->width);
        double d[2] = {s->dash[0], s->dash[1]};
        cairo_set_dash(cr, d, s->dash[0] > 0 ? 2 : 0, 0);
        cairo_stroke(cr);
    }
    cairo_new_path(cr);
}

static cairo_status_t cr_write(void *closure, const unsigned char *data, unsigned int len) {
    return fwrite(data, 1, len, (FILE *)closure) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

/* The figure as a PNG on o, drawn at px pixels per unit; 0 or -1. */
static int png_write(FILE *o, const figure *f, double px) {
    cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)ceil(f->W * px),
                                                     (int)ceil(f->H * px));
    cairo_t *cr = cairo_create(sf);
    cairo_scale(cr, px, px);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    for (int i = 0; i < f->n; i++) {
        const shape *s = &f->s[i];
        switch (s->kind) {
        case SH_LINE:
        case SH_POLY:
            for (int p = 0; p < s->np; p++) cairo_line_to(cr, s->pt[2 * p], s->pt[2 * p + 1]);
            if (s->kind == SH_POLY) cairo_close_path(cr);
            cr_paint(cr, s);
            break;
        case SH_CIRCLE:
            cairo_new_sub_path(cr);
            cairo_arc(cr, s->pt[0], s->pt[1], s->size, 0, 2 * M_PI);
            cr_paint(cr, s);
            break;
        case SH_TEXT: {
            cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                                   s->bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
            cairo_set_font_size(cr, s->size);
            cairo_text_extents_t e;
            cairo_text_extents(cr, s->text, &e);
            double dx = s->anchor == A_START ? 0 : s->anchor == A_MIDDLE ? -e.x_advance / 2 : -e.x_advance;
            cairo_save(cr);
            cairo_translate(cr, s->pt[0], s->pt[1]);
            if (s->vertical) cairo_rotate(cr, -M_PI / 2);
            cairo_move_to(cr, dx, 0);
            cr_color(cr, s->fill);
            cairo_show_text(cr, s->text);
            cairo_restore(cr);
            cairo_new_path(cr);
            break;
        }
        }
    }
    int rc = cairo_status(cr) == CAIRO_STATUS_SUCCESS ? 0 : -1;
    cairo_destroy(cr);
    cairo_surface_flush(sf);
    if (!rc && cairo_surface_write_to_png_stream(sf, cr_write, o) != CAIRO_STATUS_SUCCESS) rc = -1;
    cairo_surface_destroy(sf);
    return rc;
}

#ifdef __SANITIZE_ADDRESS__
/* In the ASan build: fontconfig, under cairo's text, allocates its
 * configuration and font patterns once (about 1 KB, not growing with the
 * number of pictures) and keeps them for the life of the process in a way
 * LeakSanitizer reads as lost. They are fontconfig's, not ours; the
 * sanitizer runtime calls this for its default suppressions. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }
#endif
#endif

/* ---- the files -------------------------------------------------------- */

/* Write RUN/name with the back-end `which` (0 SVG, 1 PNG) atomically; -1
 * and err when it cannot. */
static int write_one(const run *r, const figure *f, const char *name, int which, cb_err *err) {
    char *path = cb_path_new(r->run_dir, name, err), *tmp = NULL;
    if (!path) return -1;
    FILE *o = cb_out_open(path, &tmp, err);
    int rc = o ? 0 : -1;
    if (o && which == 0) svg_write(o, f);
#ifdef CB_CAIRO
    if (o && which == 1 && png_write(o, f, 1.0)) {
        rc = cb_err_set(err, "%s: cairo could not draw or write the PNG", path);
        cb_out_abort(o, tmp);
        o = NULL;
    }
#endif
    if (o) rc = cb_out_commit(o, tmp, path, err);
    free(path);
    return rc;
}

int cb_train_have_png(void) {
#ifdef CB_CAIRO
    return 1;
#else
    return 0;
#endif
}

/* Each file is tried even when another fails; err names every failure. */
int cb_train_write_curve(const run *r, cb_err *err) {
    if (!r->loss_hist || !r->run_dir) return 0;
    figure f = {0};
    f.err = err;
    int rc = curve_build(&f, r);
    if (rc) {
        cb_err_prefix(err, "%s: cannot draw the loss curve", r->run_dir);
    } else {
        cb_err svg = {{0}};
        rc = write_one(r, &f, "curve.svg", 0, &svg);
        if (rc) cb_err_set(err, "%s", svg.msg);
#ifdef CB_CAIRO
        cb_err png = {{0}};
        if (write_one(r, &f, "curve.png", 1, &png)) {
            if (rc) cb_err_set(err, "%s; %s", svg.msg, png.msg);
            else cb_err_set(err, "%s", png.msg);
            rc = -1;
        }
#endif
    }
    fig_free(&f);
    return rc;
}
