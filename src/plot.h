/* plot.h: a picture as a list of shapes in pixels (polylines, polygons,
 * circles, texts), laid out once and drawn by two small back-ends: SVG
 * text, and PNG with cairo (in a build with cairo: the Makefile defines
 * CB_CAIRO when pkg-config finds it), so the two files cannot drift apart.
 * Plus linear scales with round ticks. train_curve.c draws the training
 * curve with it.
 *
 *   plot_figure f = {.W = 960, .H = 400};
 *   cb_plot_seg(&f, "axis", 80, 350, 880, 350, 0x888888u, 1, 0, 0);
 *   cb_plot_text(&f, "title", 80, 30, 18, 0x222222u, PLOT_START, "%s", name);
 *   if (!f.oom) cb_plot_write_svg(&f, "curve.svg", &err);
 *   cb_plot_free(&f);
 *
 * Out of memory is sticky: the first failure sets f->oom and f->err, the
 * calls go on (so that a layout need not check every shape) but allocate
 * nothing more; such a figure is not to be written. */
#ifndef CB_PLOT_H
#define CB_PLOT_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"

enum { PLOT_LINE, PLOT_POLY, PLOT_CIRCLE, PLOT_TEXT };      /* shape kinds */
enum { PLOT_START, PLOT_MIDDLE, PLOT_END };                 /* text anchors */
#define PLOT_NOPAINT 0xffffffffu    /* a colour: don't stroke / don't fill */

typedef struct plot_shape {
    int kind;
    uint32_t stroke, fill;      /* 0xRRGGBB or PLOT_NOPAINT */
    float width;                /* stroke width, px */
    float dash[2];              /* on, off (px); {0, 0} solid */
    int np;
    float *pt;                  /* [np, 2] LINE (open), POLY (closed); CIRCLE: [1, 2] centre */
    float size;                 /* CIRCLE radius; TEXT font size */
    int anchor, vertical, bold; /* TEXT: PLOT_START.., rotated -90 degrees about its point, bold */
    char *text;                 /* TEXT, UTF-8 */
    const char *cls;            /* the SVG class (tests find the parts by it) */
} plot_shape;

typedef struct plot_figure {
    int W, H;                   /* pixels */
    plot_shape *s;
    int n, cap;
    int oom;
    plot_shape spare;           /* what the calls hand out once oom is set */
    cb_err *err;
} plot_figure;

void cb_plot_free(plot_figure *f);
/* n bytes for the figure's layout (the caller frees), or NULL once out of
 * memory. */
void *cb_plot_alloc(plot_figure *f, size_t n);

/* Shapes, each returned for further settings (a spare one once oom). */
/* A polyline (closed = 0) or polygon of np points xy [np, 2]. */
plot_shape *cb_plot_path(plot_figure *f, const char *cls, int closed, const float *xy, int np, uint32_t stroke,
                         float width, float dash_on, float dash_off);
plot_shape *cb_plot_seg(plot_figure *f, const char *cls, float x0, float y0, float x1, float y1, uint32_t stroke,
                        float width, float dash_on, float dash_off);
plot_shape *cb_plot_rect(plot_figure *f, const char *cls, float x, float y, float w, float h, uint32_t stroke,
                         uint32_t fill);
plot_shape *cb_plot_circle(plot_figure *f, const char *cls, float x, float y, float r, uint32_t stroke,
                           uint32_t fill);
plot_shape *cb_plot_square(plot_figure *f, const char *cls, float x, float y, float r, uint32_t stroke,
                           uint32_t fill);
/* A five-pointed star of outer radius r centred on (x, y). */
plot_shape *cb_plot_star(plot_figure *f, const char *cls, float x, float y, float r, uint32_t stroke,
                         uint32_t fill);
/* A text at (x, y) (its baseline; anchor says which end, or the middle).
 * Texts may come from the user: a byte that does not start a valid UTF-8
 * sequence becomes '?', a control character a space. */
plot_shape *cb_plot_text(plot_figure *f, const char *cls, float x, float y, float size, uint32_t color, int anchor,
                         const char *fmt, ...) __attribute__((format(printf, 8, 9)));
/* The width of a text, estimated (both back-ends lay out with this, so
 * what is placed by it is placed the same in both). */
float cb_plot_text_width(const char *t, float size);

/* A linear map of [lo, hi] to pixels [p0, p1], ticks every `step`. */
typedef struct plot_scale {
    double lo, hi, p0, p1, step;
} plot_scale;

/* A scale over [lo, hi] cut into at least min_div parts by steps of 1, 2
 * or 5 x 10^k (integers only if integral), widened to whole ticks unless
 * exact. */
plot_scale cb_plot_scale(double lo, double hi, double p0, double p1, int min_div, int integral, int exact);
/* The pixel of v. */
float cb_plot_px(const plot_scale *s, double v);
/* The ticks: the multiples k * step, k = *first .. *first + count - 1,
 * within [lo, hi]; returns count. */
int cb_plot_ticks(const plot_scale *s, double *first);
/* A tick label: integers (50k for round thousands from 10000 on), fixed
 * decimals down to 0.001 steps, else the shortest 2e-5 style. */
void cb_plot_fmt_tick(char *buf, size_t n, double v, double step);

/* The figure written atomically to path as SVG / as PNG (cairo, one pixel
 * per unit); -1 and err when it cannot be (a build without cairo writes
 * no PNG: -1). */
int cb_plot_write_svg(const plot_figure *f, const char *path, cb_err *err);
int cb_plot_write_png(const plot_figure *f, const char *path, cb_err *err);
/* 1 when this build draws PNGs (built with cairo), else 0. */
int cb_plot_have_png(void);
#endif
