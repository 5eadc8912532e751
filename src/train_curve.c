/* train_curve.c: the picture of a training run, RUN/curve.svg and, in a
 * build with cairo, RUN/curve.png beside it; without cairo only the SVG is
 * written. Both are rewritten atomically after every checkpoint. The
 * picture is laid out here once, as plot.h's list of shapes, and drawn by
 * its two back-ends.
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
 *                (cb_train_hist_best), starred on its nDCG@10 and labelled
 *                "best: step N, nDCG@10 0.xxx" above the plot; steps not run
 *                yet are shaded
 *   below        the x ticks, "step", and the legend (outside the plot)
 */
#include "train_run.h"
#include "plot.h"

#include <math.h>
#include <string.h>

#define MAXPTS 1000             /* points per curve at most */

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

static void trace_flush(plot_figure *f, trace *t, const char *cls, uint32_t color, float width, float don,
                        float doff) {
    if (t->n >= 2) cb_plot_path(f, cls, 0, t->xy, t->n, color, width, don, doff);
    else if (t->n == 1) cb_plot_circle(f, cls, t->xy[0], t->xy[1], width + 1.5f, PLOT_NOPAINT, color);
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
static void series_make(plot_figure *f, series *s, const run *r, long n) {
    s->raw_mean = n > MAXPTS;
    s->np = 0;
    s->x = cb_plot_alloc(f, (size_t)(n < MAXPTS ? n : MAXPTS) * 5 * sizeof(float));
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

static void draw_curve(plot_figure *f, const series *s, long n, const float *y, int at_last,
                       const plot_scale *sx, const plot_scale *sy, const char *cls, uint32_t color, float width,
                       float don, float doff) {
    trace t = {cb_plot_alloc(f, (size_t)s->np * 2 * sizeof(float)), 0};
    if (!t.xy) return;
    for (int p = 0; p < s->np; p++) {
        if (isnan(y[p])) { trace_flush(f, &t, cls, color, width, don, doff); continue; }
        trace_add(&t, cb_plot_px(sx, at_last ? series_last_x(s, n, p) : s->x[p]), cb_plot_px(sy, y[p]));
    }
    trace_flush(f, &t, cls, color, width, don, doff);
    free(t.xy);
}

/* Horizontal grid, ticks and labels of a y scale on the left (side 0) or
 * the right (1) of the plot [x0, x1]; cls names the axis. */
static void y_axis(plot_figure *f, const char *cls, const plot_scale *s, float x0, float x1, int side,
                   uint32_t color, int grid) {
    double k0;
    int nt = cb_plot_ticks(s, &k0);
    for (int i = 0; i < nt; i++) {
        double v = (k0 + i) * s->step;
        float y = cb_plot_px(s, v);
        char lab[32];
        cb_plot_fmt_tick(lab, sizeof lab, v, s->step);
        if (grid) cb_plot_seg(f, "grid", x0, y, x1, y, C_GRID, 1, 0, 0);
        float x = side ? x1 : x0, d = side ? 5 : -5;
        cb_plot_seg(f, cls, x, y, x + d, y, C_FRAME, 1, 0, 0);
        cb_plot_text(f, cls, x + 1.6f * d, y + 4, 11, color, side ? PLOT_START : PLOT_END, "%s", lab);
    }
}

static void axis_title(plot_figure *f, float x, float y, uint32_t color, const char *t) {
    plot_shape *s = cb_plot_text(f, "axis-title", x, y, 13, color, PLOT_MIDDLE, "%s", t);
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

static float legend_item_width(const legend_item *it) { return 30 + 6 + cb_plot_text_width(it->label, 12) + 22; }

/* Entries in rows no wider than the plot, each row centred; returns the
 * y below the last row. */
static float legend_draw(plot_figure *f, const legend_item *it, int n, float x0, float x1, float y) {
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
                cb_plot_star(f, "legend", x + 15, cy, 8, C_BEST_EDGE, e->color);
            } else if (e->kind == 5) {
                cb_plot_seg(f, "legend", x + 15, cy - 6, x + 15, cy + 4, e->color, e->width, 0, 0);
            } else if (e->kind == 4) {
                cb_plot_rect(f, "legend", x + 3, cy - 6, 24, 12, C_GRID, e->color);
            } else {
                cb_plot_seg(f, "legend", x, cy, x + 30, cy, e->color, e->width, e->don, e->doff);
                if (e->kind == 1) cb_plot_circle(f, "legend", x + 15, cy, 4, 0xffffffu, e->color);
                if (e->kind == 2) cb_plot_square(f, "legend", x + 15, cy, 3.5f, 0xffffffu, e->color);
            }
            cb_plot_text(f, "legend", x + 36, y, 12, C_TEXT, PLOT_START, "%s", e->label);
            x += legend_item_width(e);
        }
        i = j;
        y += 20;
    }
    return y;
}

/* Lay out the whole picture of run r into f; -1 (f->oom, f->err) when out
 * of memory. */
static int curve_build(plot_figure *f, const run *r) {
    long n = cb_step_count(&r->s), total = r->total > n ? r->total : n;
    if (n > total) n = total;
    double vlo = INFINITY, vhi = -INFINITY;
    int has_mrr = 0;
    for (int i = 0; i < r->hist.n; i++) {
        const val_scores *v = &r->hist.at[i].v;
        if (isfinite(v->ndcg10)) { vlo = fmin(vlo, v->ndcg10); vhi = fmax(vhi, v->ndcg10); }
        if (isfinite(v->mrr10)) { has_mrr = 1; vlo = fmin(vlo, v->mrr10); vhi = fmax(vhi, v->mrr10); }
    }
    int val_panel = vlo <= vhi;
    int best = cb_train_hist_best(&r->hist);
    int best_validated = best >= 0 && isfinite(r->hist.at[best].v.ndcg10);

    float x0 = ML, x1 = W - MR, lt = TOP, lb = TOP + H_LOSS;
    float vt = lb + GAP, vb = vt + H_VAL, bottom = val_panel ? vb : lb;
    f->W = W;

    /* title */
    cb_plot_text(f, "title", x0, 26, 16, C_TEXT, PLOT_START, "%.60s: %ld / %ld steps%s", r->tr->model_name, n, total,
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
    cb_plot_text(f, "subtitle", x0, 46, 12, C_MUTED, PLOT_START, "%s", sub);

    /* scales */
    plot_scale sx = cb_plot_scale(0, (double)total, x0, x1, 4, 1, 1);
    if (total <= 0) sx = cb_plot_scale(0, 1, x0, x1, 4, 1, 1);
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
    plot_scale sl = cb_plot_scale(llo, lhi, lb, lt, 3, 0, 0);
    plot_scale sr = cb_plot_scale(0, rhi, lb, lt, 3, 0, 0);
    plot_scale sv = {0};
    if (val_panel) {
        double pad = fmax(0.015, (vhi - vlo) * 0.1);
        sv = cb_plot_scale(fmax(0, vlo - pad), fmin(1, vhi + pad), vb, vt, 2, 0, 0);
        if (sv.lo < 0) sv.lo = 0;
    }

    /* panels: steps not run yet shaded, grid, frame */
    if (n < total) {
        float xn = cb_plot_px(&sx, (double)n);
        cb_plot_rect(f, "future", xn, lt, x1 - xn, lb - lt, PLOT_NOPAINT, C_FUTURE);
        if (val_panel) cb_plot_rect(f, "future", xn, vt, x1 - xn, vb - vt, PLOT_NOPAINT, C_FUTURE);
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
    int nx = cb_plot_ticks(&sx, &kx);
    for (int i = 0; i < nx; i++) {
        double v = (kx + i) * sx.step;
        float x = cb_plot_px(&sx, v);
        char lab[32];
        cb_plot_fmt_tick(lab, sizeof lab, v, sx.step);
        cb_plot_seg(f, "xtick-mark", x, lb, x, lb + 5, C_FRAME, 1, 0, 0);
        if (val_panel) cb_plot_seg(f, "xtick-mark", x, vb, x, vb + 5, C_FRAME, 1, 0, 0);
        cb_plot_text(f, "xtick", x, bottom + 18, 11, C_TEXT, PLOT_MIDDLE, "%s", lab);
    }
    cb_plot_text(f, "axis-title", (x0 + x1) / 2, bottom + 38, 13, C_TEXT, PLOT_MIDDLE, "step");

    /* checkpoints: a dotted line each, a solid one at the best */
    for (int i = 0; i < r->hist.n; i++) {
        float x = cb_plot_px(&sx, (double)r->hist.at[i].step);
        if (i == best) continue;
        cb_plot_seg(f, "ckpt", x, lt, x, bottom, C_CKPT, 1, 2, 3);
    }
    float bx = 0;
    if (best >= 0) {
        bx = cb_plot_px(&sx, (double)r->hist.at[best].step);
        cb_plot_seg(f, "ckpt best-line", bx, lt, bx, bottom, C_BEST, 2, 0, 0);
    }

    /* the curves */
    if (n > 0) {
        draw_curve(f, &s, n, s.raw, 0, &sx, &sl, "loss", C_RAW, 1, 0, 0);
        draw_curve(f, &s, n, s.avg, 1, &sx, &sl, "loss-avg", C_AVG, 2.5f, 0, 0);
        draw_curve(f, &s, n, s.lr, 1, &sx, &sr, "lr", C_LR, 1.5f, 6, 4);
        for (int p = 0; p < s.np; p++)
            if (s.bad[p] > 0) {
                float x = cb_plot_px(&sx, s.x[p]);
                cb_plot_seg(f, "nonfinite", x, lt, x, lt + 10, C_BAD, 2, 0, 0);
            }
    }

    /* validation: joined markers, the best starred */
    if (val_panel) {
        for (int m = 0; m < 2; m++) {
            if (m == 1 && !has_mrr) break;
            trace t = {cb_plot_alloc(f, (size_t)r->hist.n * 2 * sizeof(float)), 0};
            if (!t.xy) break;
            for (int i = 0; i < r->hist.n; i++) {
                double v = m ? r->hist.at[i].v.mrr10 : r->hist.at[i].v.ndcg10;
                if (isfinite(v)) trace_add(&t, cb_plot_px(&sx, (double)r->hist.at[i].step), cb_plot_px(&sv, v));
            }
            uint32_t c = m ? C_MRR : C_NDCG;
            if (t.n >= 2) cb_plot_path(f, m ? "mrr-line" : "ndcg-line", 0, t.xy, t.n, c, 1.5f, 0, 0);
            for (int i = 0; i < t.n; i++) {
                if (m) cb_plot_square(f, "mrr", t.xy[2 * i], t.xy[2 * i + 1], 3.5f, 0xffffffu, c);
                else cb_plot_circle(f, "ndcg", t.xy[2 * i], t.xy[2 * i + 1], 4.5f, 0xffffffu, c);
            }
            free(t.xy);
        }
    }
    if (best >= 0) {
        const ckpt_info *b = &r->hist.at[best];
        char lab[128];
        if (best_validated) {
            cb_plot_star(f, "best-star", bx, cb_plot_px(&sv, b->v.ndcg10), 10, C_BEST_EDGE, C_BEST);
            snprintf(lab, sizeof lab, "best: step %ld, nDCG@10 %.3f", b->step, b->v.ndcg10);
        } else {
            snprintf(lab, sizeof lab, "best: step %ld (the last checkpoint; not validated)", b->step);
        }
        float w = cb_plot_text_width(lab, 12);
        int anchor = bx - w / 2 < x0 - 40 ? PLOT_START : bx + w / 2 > x1 + 40 ? PLOT_END : PLOT_MIDDLE;
        float tx = anchor == PLOT_START ? fmaxf(bx - 6, 8) : anchor == PLOT_END ? fminf(bx + 6, W - 8) : bx;
        cb_plot_text(f, "best", tx, lt - 8, 12, C_BEST_EDGE, anchor, "%s", lab)->bold = 1;
    }

    /* frames last, over the curves' ends */
    cb_plot_rect(f, "frame", x0, lt, x1 - x0, lb - lt, C_FRAME, PLOT_NOPAINT);
    if (val_panel) cb_plot_rect(f, "frame", x0, vt, x1 - x0, vb - vt, C_FRAME, PLOT_NOPAINT);

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

/* ---- the files -------------------------------------------------------- */

/* Each file is tried even when another fails; err names every failure. */
int cb_train_write_curve(const run *r, cb_err *err) {
    if (!r->loss_hist || !r->run_dir) return 0;
    plot_figure f = {0};
    f.err = err;
    int rc = curve_build(&f, r);
    if (rc) {
        cb_err_prefix(err, "%s: cannot draw the loss curve", r->run_dir);
    } else {
        cb_err svg = {{0}};
        char *path = cb_path_new(r->run_dir, "curve.svg", &svg);
        rc = path ? cb_plot_write_svg(&f, path, &svg) : -1;
        free(path);
        if (rc) cb_err_set(err, "%s", svg.msg);
        if (cb_plot_have_png()) {
            cb_err png = {{0}};
            path = cb_path_new(r->run_dir, "curve.png", &png);
            if (!path || cb_plot_write_png(&f, path, &png)) {
                if (rc) cb_err_set(err, "%s; %s", svg.msg, png.msg);
                else cb_err_set(err, "%s", png.msg);
                rc = -1;
            }
            free(path);
        }
    }
    cb_plot_free(&f);
    return rc;
}
