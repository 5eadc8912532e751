/* progress.h: a progress bar with rate and ETA on stderr.
 * On a terminal it redraws one line ("encode  1234/5000 [=====>    ] 24%
 * 310.2 texts/s ETA 0:12"); when stderr is not a terminal it prints a plain
 * line at most every 10 seconds, so logs stay readable. */
#ifndef CB_PROGRESS_H
#define CB_PROGRESS_H
#include <stdint.h>

typedef struct progress {
    const char *label;  /* e.g. "encode" */
    const char *unit;   /* e.g. "texts" */
    int64_t total;      /* 0 when unknown */
    int64_t done;
    double t_start, t_last_draw;
    int tty, quiet, drawn;
} progress;

/* quiet != 0 draws nothing (for tests and --quiet). */
void cb_progress_init(progress *p, const char *label, const char *unit, int64_t total, int quiet);
/* A bar over an input file of `bytes` bytes, counted in MB (update it with
 * the MB read so far): drawn only for files of min_mb MB or more, which take
 * long enough to read for a bar to help. */
void cb_progress_init_mb(progress *p, const char *label, int64_t bytes, int64_t min_mb, int quiet);
/* Set the count done so far and redraw if due. */
void cb_progress_update(progress *p, int64_t done);
/* Final line with the elapsed time and mean rate. */
void cb_progress_finish(progress *p);

/* An observer of every bar that is not quiet (the Python package shows
 * them as tqdm bars in a notebook): called from the thread that runs the
 * bar, at its start, at each update and at its end. draw = 0 keeps the bars
 * off stderr meanwhile. Process-wide; set it while no job runs (NULL
 * removes it). */
enum { PROGRESS_START, PROGRESS_UPDATE, PROGRESS_END };
typedef void (*progress_hook)(void *ctx, const progress *p, int event);
void cb_progress_set_hook(progress_hook hook, void *ctx, int draw);
/* Tell the hook (if any) about a bar shown some other way (training draws
 * its own line, with the loss); nothing is drawn. */
void cb_progress_notify(const progress *p, int event);
#endif
