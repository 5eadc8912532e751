/* plot.c: pictures as lists of shapes, and their two back-ends, SVG and
 * PNG (cairo); see plot.h. */
#include "plot.h"
#include "fsutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef CB_CAIRO
#include <cairo.h>
#endif

/* ---- the picture as a list of shapes ---------------------------------- */

/* n bytes for the figure, or NULL once out of memory. */
void *cb_plot_alloc(plot_figure *f, size_t n) {
    if (f->oom) return NULL;
    void *p = cb_malloc(n, "the loss curve", f->err);
    if (!p) f->oom = 1;
    return p;
}

static plot_shape *plot_add(plot_figure *f, int kind, const char *cls) {
    if (!f->oom && f->n == f->cap) {
        int cap = f->cap ? 2 * f->cap : 256;
        plot_shape *s2 = cb_realloc(f->s, (size_t)cap * sizeof(plot_shape), "the loss curve", f->err);
        if (s2) {
            f->s = s2;
            f->cap = cap;
        } else {
            f->oom = 1;
        }
    }
    plot_shape *s = f->oom ? &f->spare : &f->s[f->n++];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->stroke = s->fill = PLOT_NOPAINT;
    s->width = 1;
    s->cls = cls;
    return s;
}

void cb_plot_free(plot_figure *f) {
    for (int i = 0; i < f->n; i++) { free(f->s[i].pt); free(f->s[i].text); }
    free(f->s);
}

/* A polyline (closed = 0) or polygon of np points xy [np, 2]. */
plot_shape *cb_plot_path(plot_figure *f, const char *cls, int closed, const float *xy, int np, uint32_t stroke,
                         float width, float dash_on, float dash_off) {
    plot_shape *s = plot_add(f, closed ? PLOT_POLY : PLOT_LINE, cls);
    if ((s->pt = cb_plot_alloc(f, (size_t)np * 2 * sizeof(float)))) {
        s->np = np;
        memcpy(s->pt, xy, (size_t)np * 2 * sizeof(float));
    }
    s->stroke = stroke;
    s->width = width;
    s->dash[0] = dash_on;
    s->dash[1] = dash_off;
    return s;
}

plot_shape *cb_plot_seg(plot_figure *f, const char *cls, float x0, float y0, float x1, float y1, uint32_t stroke,
                        float width, float dash_on, float dash_off) {
    float xy[4] = {x0, y0, x1, y1};
    return cb_plot_path(f, cls, 0, xy, 2, stroke, width, dash_on, dash_off);
}

plot_shape *cb_plot_rect(plot_figure *f, const char *cls, float x, float y, float w, float h, uint32_t stroke,
                         uint32_t fill) {
    float xy[8] = {x, y, x + w, y, x + w, y + h, x, y + h};
    plot_shape *s = cb_plot_path(f, cls, 1, xy, 4, stroke, 1, 0, 0);
    s->fill = fill;
    return s;
}

plot_shape *cb_plot_circle(plot_figure *f, const char *cls, float x, float y, float r, uint32_t stroke,
                           uint32_t fill) {
    plot_shape *s = plot_add(f, PLOT_CIRCLE, cls);
    if ((s->pt = cb_plot_alloc(f, 2 * sizeof(float)))) {
        s->np = 1;
        s->pt[0] = x;
        s->pt[1] = y;
    }
    s->size = r;
    s->stroke = stroke;
    s->fill = fill;
    return s;
}

plot_shape *cb_plot_square(plot_figure *f, const char *cls, float x, float y, float r, uint32_t stroke,
                           uint32_t fill) {
    return cb_plot_rect(f, cls, x - r, y - r, 2 * r, 2 * r, stroke, fill);
}

/* A five-pointed star of outer radius r centred on (x, y). */
plot_shape *cb_plot_star(plot_figure *f, const char *cls, float x, float y, float r, uint32_t stroke,
                         uint32_t fill) {
    float xy[20];
    for (int k = 0; k < 10; k++) {
        double a = -M_PI / 2 + k * M_PI / 5, rr = k % 2 ? r * 0.45 : r;
        xy[2 * k] = (float)(x + rr * cos(a));
        xy[2 * k + 1] = (float)(y + rr * sin(a));
    }
    plot_shape *s = cb_plot_path(f, cls, 1, xy, 10, stroke, 1, 0, 0);
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

plot_shape *cb_plot_text(plot_figure *f, const char *cls, float x, float y, float size, uint32_t color, int anchor,
                         const char *fmt, ...) {
    plot_shape *s = plot_add(f, PLOT_TEXT, cls);
    if ((s->pt = cb_plot_alloc(f, 2 * sizeof(float)))) {
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
    if (!(s->text = cb_plot_alloc(f, (size_t)n + 1))) return s;
    va_start(ap, fmt);
    vsnprintf(s->text, (size_t)n + 1, fmt, ap);
    va_end(ap);
    clean_utf8(s->text);
    return s;
}

/* The width of a text, estimated (both back-ends lay out with this, so the
 * legend is placed the same in both; DejaVu Sans averages about 0.55 em). */
float cb_plot_text_width(const char *t, float size) {
    size_t n = 0;
    for (const char *p = t; *p; p++) n += ((unsigned char)*p & 0xc0) != 0x80;  /* UTF-8 characters */
    return 0.6f * size * (float)n;
}

/* ---- scales and ticks ------------------------------------------------- */

float cb_plot_px(const plot_scale *s, double v) {
    return (float)(s->p0 + (v - s->lo) / (s->hi - s->lo) * (s->p1 - s->p0));
}

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
plot_scale cb_plot_scale(double lo, double hi, double p0, double p1, int min_div, int integral, int exact) {
    if (!(hi > lo)) {
        double d = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1;
        lo -= d;
        hi += d;
    }
    plot_scale s = {lo, hi, p0, p1, nice_step(hi - lo, min_div, integral)};
    if (!exact) {
        s.lo = floor(lo / s.step + 1e-9) * s.step;
        s.hi = ceil(hi / s.step - 1e-9) * s.step;
    }
    return s;
}

/* Tick i of a scale: ticks are the multiples of step within [lo, hi]. */
int cb_plot_ticks(const plot_scale *s, double *first) {
    double k0 = ceil(s->lo / s->step - 1e-9), k1 = floor(s->hi / s->step + 1e-9);
    *first = k0;
    return k1 >= k0 ? (int)(k1 - k0) + 1 : 0;
}

/* A tick label: integers (50k for round thousands from 10000 on), fixed
 * decimals down to 0.001 steps, else the shortest 2e-5 style. */
void cb_plot_fmt_tick(char *buf, size_t n, double v, double step) {
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

static void svg_paint(FILE *o, const plot_shape *s) {
    if (s->fill == PLOT_NOPAINT) fputs(" fill=\"none\"", o);
    else fprintf(o, " fill=\"#%06x\"", s->fill);
    if (s->stroke != PLOT_NOPAINT) {
        fprintf(o, " stroke=\"#%06x\"", s->stroke);
        if (s->width != 1) fprintf(o, " stroke-width=\"%g\"", s->width);
        if (s->dash[0] > 0) fprintf(o, " stroke-dasharray=\"%g %g\"", s->dash[0], s->dash[1]);
    }
}

static void svg_write(FILE *o, const plot_figure *f) {
    fprintf(o, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" "
            "font-family=\"DejaVu Sans, Verdana, Arial, sans-serif\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", f->W, f->H, f->W, f->H);
    for (int i = 0; i < f->n; i++) {
        const plot_shape *s = &f->s[i];
        switch (s->kind) {
        case PLOT_LINE:
        case PLOT_POLY:
            fprintf(o, "<%s class=\"%s\" points=\"", s->kind == PLOT_LINE ? "polyline" : "polygon", s->cls);
            for (int p = 0; p < s->np; p++) fprintf(o, "%s%.1f,%.1f", p ? " " : "", s->pt[2 * p], s->pt[2 * p + 1]);
            fputc('"', o);
            svg_paint(o, s);
            fputs(s->kind == PLOT_LINE ? " stroke-linejoin=\"round\"/>\n" : "/>\n", o);
            break;
        case PLOT_CIRCLE:
            fprintf(o, "<circle class=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"%g\"", s->cls, s->pt[0], s->pt[1], s->size);
            svg_paint(o, s);
            fputs("/>\n", o);
            break;
        case PLOT_TEXT:
            fprintf(o, "<text class=\"%s\" x=\"%.1f\" y=\"%.1f\" font-size=\"%g\" fill=\"#%06x\"", s->cls, s->pt[0],
                    s->pt[1], s->size, s->fill);
            if (s->anchor != PLOT_START) fprintf(o, " text-anchor=\"%s\"", s->anchor == PLOT_MIDDLE ? "middle" : "end");
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

static void cr_paint(cairo_t *cr, const plot_shape *s) {
    if (s->fill != PLOT_NOPAINT) {
        cr_color(cr, s->fill);
        if (s->stroke != PLOT_NOPAINT) cairo_fill_preserve(cr);
        else cairo_fill(cr);
    }
    if (s->stroke != PLOT_NOPAINT) {
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
static int png_write(FILE *o, const plot_figure *f, double px) {
    cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, (int)ceil(f->W * px),
                                                     (int)ceil(f->H * px));
    cairo_t *cr = cairo_create(sf);
    cairo_scale(cr, px, px);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    for (int i = 0; i < f->n; i++) {
        const plot_shape *s = &f->s[i];
        switch (s->kind) {
        case PLOT_LINE:
        case PLOT_POLY:
            for (int p = 0; p < s->np; p++) cairo_line_to(cr, s->pt[2 * p], s->pt[2 * p + 1]);
            if (s->kind == PLOT_POLY) cairo_close_path(cr);
            cr_paint(cr, s);
            break;
        case PLOT_CIRCLE:
            cairo_new_sub_path(cr);
            cairo_arc(cr, s->pt[0], s->pt[1], s->size, 0, 2 * M_PI);
            cr_paint(cr, s);
            break;
        case PLOT_TEXT: {
            cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                                   s->bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
            cairo_set_font_size(cr, s->size);
            cairo_text_extents_t e;
            cairo_text_extents(cr, s->text, &e);
            double dx = s->anchor == PLOT_START ? 0 : s->anchor == PLOT_MIDDLE ? -e.x_advance / 2 : -e.x_advance;
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

/* Write path with the back-end `which` (0 SVG, 1 PNG) atomically; -1 and
 * err when it cannot. */
static int write_file(const plot_figure *f, const char *path, int which, cb_err *err) {
    char *tmp = NULL;
    FILE *o = cb_out_open(path, &tmp, err);
    if (!o) return -1;
    if (which == 0) svg_write(o, f);
#ifdef CB_CAIRO
    if (which == 1 && png_write(o, f, 1.0)) {
        cb_out_abort(o, tmp);
        return cb_err_set(err, "%s: cairo could not draw or write the PNG", path);
    }
#endif
    return cb_out_commit(o, tmp, path, err);
}

int cb_plot_write_svg(const plot_figure *f, const char *path, cb_err *err) { return write_file(f, path, 0, err); }

int cb_plot_write_png(const plot_figure *f, const char *path, cb_err *err) {
    if (!cb_plot_have_png()) return cb_err_set(err, "%s: this build draws no PNG (built without cairo)", path);
    return write_file(f, path, 1, err);
}

int cb_plot_have_png(void) {
#ifdef CB_CAIRO
    return 1;
#else
    return 0;
#endif
}
