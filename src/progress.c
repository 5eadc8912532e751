/* progress.c: see progress.h. */
#include "progress.h"
#include "common.h"

#include <stdio.h>
#include <unistd.h>

static progress_hook hook;
static void *hook_ctx;
static int hook_draw = 1;

void cb_progress_set_hook(progress_hook h, void *ctx, int draw) {
    hook = h;
    hook_ctx = ctx;
    hook_draw = h ? draw : 1;
}

void cb_progress_notify(const progress *p, int event) {
    if (hook) hook(hook_ctx, p, event);
}

void cb_progress_init(progress *p, const char *label, const char *unit, int64_t total, int quiet) {
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->done = 0;
    p->t_start = p->t_last_draw = cb_now();
    p->tty = isatty(2);
    p->quiet = quiet;
    p->drawn = 0;
    if (!quiet && hook) hook(hook_ctx, p, PROGRESS_START);
}

void cb_progress_init_mb(progress *p, const char *label, int64_t bytes, int64_t min_mb, int quiet) {
    int64_t mb = bytes >> 20;
    cb_progress_init(p, label, "MB", mb, quiet || mb < min_mb);
}

static void fmt_time(char *buf, size_t n, double s) {
    if (s < 0 || s > 1e7) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

static void draw(progress *p, int final) {
    double el = cb_now() - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32], elapsed[32];
    fmt_time(elapsed, sizeof eta, el);
    if (p->total > 0 && rate > 0) fmt_time(eta, sizeof eta, (double)(p->total - p->done) / rate);
    else snprintf(eta, sizeof eta, "?");
    if (p->tty) {
        char bar[31];
        int w = 30, fill = p->total > 0 ? (int)((double)w * (double)p->done / (double)p->total) : 0;
        if (fill > w) fill = w;
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
        bar[w] = '\0';
        if (p->total > 0)
            fprintf(stderr, "\r%s %lld/%lld [%s] %3d%% %.1f %s/s %s %s\033[K", p->label,
                    (long long)p->done, (long long)p->total, bar,
                    (int)(100.0 * (double)p->done / (double)p->total), rate, p->unit,
                    final ? "in" : "ETA", final ? elapsed : eta);
        else
            fprintf(stderr, "\r%s %lld %s %.1f %s/s %s\033[K", p->label, (long long)p->done,
                    p->unit, rate, p->unit, elapsed);
        if (final) fputc('\n', stderr);
    } else {
        if (p->total > 0)
            fprintf(stderr, "%s %lld/%lld %s (%d%%) %.1f %s/s %s %s\n", p->label,
                    (long long)p->done, (long long)p->total, p->unit,
                    (int)(100.0 * (double)p->done / (double)p->total), rate, p->unit,
                    final ? "elapsed" : "ETA", final ? elapsed : eta);
        else
            fprintf(stderr, "%s %lld %s %.1f %s/s elapsed %s\n", p->label, (long long)p->done,
                    p->unit, rate, p->unit, elapsed);
    }
    p->drawn = 1;
}

void cb_progress_update(progress *p, int64_t done) {
    p->done = done;
    if (p->quiet) return;
    if (hook) hook(hook_ctx, p, PROGRESS_UPDATE);
    if (!hook_draw) return;
    double t = cb_now();
    double every = p->tty ? 0.2 : 10.0;
    if (t - p->t_last_draw >= every) {
        p->t_last_draw = t;
        draw(p, 0);
    }
}

void cb_progress_finish(progress *p) {
    if (p->quiet) return;
    if (hook) hook(hook_ctx, p, PROGRESS_END);
    if (!hook_draw) return;
    draw(p, 1);
}
