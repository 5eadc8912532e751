/* train_rundir.c: the run directory of a training run (RUN =
 * output_dir/model_name): the names of what is in it, its lock (one run at
 * a time), claiming it for a new run (never a finished run replaced
 * without --overwrite) and cleaning up what a killed run left. */
#include "train_run.h"
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- names ---------------------------------------------------------------- */

char *cb_train_fmt(cb_err *err, const char *f, ...) {
    va_list ap;
    va_start(ap, f);
    char *s = NULL;
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    if (n < 0) {   /* s is undefined then */
        cb_err_set(err, "out of memory: a file name");
        return NULL;
    }
    return s;
}

char *cb_train_dir_of(const char *path, cb_err *err) {
    char *s = cb_strdup(path, err);
    if (!s) return NULL;
    size_t n = strlen(s);
    while (n > 1 && s[n - 1] == '/') s[--n] = 0;
    char *slash = strrchr(s, '/');
    if (!slash) { free(s); return cb_strdup(".", err); }
    if (slash == s) slash[1] = 0;
    else *slash = 0;
    return s;
}

char *cb_train_step_name(long step, cb_err *err) { return cb_train_fmt(err, "step-%06ld", step); }

/* ---- cleaning up ---------------------------------------------------------- */

/* Leftovers of a killed run: partial checkpoints, half-deleted ones. */
void cb_train_clean_run_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, ".partial-", 9) && strncmp(e->d_name, ".deleting-", 10)) continue;
        char *p = cb_path_new(dir, e->d_name, NULL);
        if (p) cb_remove_tree(p, NULL);   /* out of memory: left for the next run */
        free(p);
    }
    closedir(d);
}

/* ---- the lock and the claim: one run at a time, never a finished run replaced */

/* The holder written into RUN/.lock: "pid P\nhost H\nstarted T\n". */
static void lock_holder(int fd, char *out, size_t cap) {
    char buf[512] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    char pid[32] = "?", host[256] = "?", started[64] = "?";
    for (char *line = n > 0 ? buf : NULL, *nl; line && *line; line = nl ? nl + 1 : NULL) {
        nl = strchr(line, '\n');
        if (nl) *nl = 0;
        if (!strncmp(line, "pid ", 4)) snprintf(pid, sizeof pid, "%s", line + 4);
        else if (!strncmp(line, "host ", 5)) snprintf(host, sizeof host, "%s", line + 5);
        else if (!strncmp(line, "started ", 8)) snprintf(started, sizeof started, "%s", line + 8);
    }
    snprintf(out, cap, "pid %s on %s, started %s", pid, host, started);
}

/* Take (or, take == 0, only test) RUN/.lock: an flock that the kernel
 * drops when the holder exits, however it ends (kill -9 included), so a
 * stale lock never blocks. The holder removes the file when it is done
 * (cb_train_release_run_dir), so a taker checks that the file it locked is
 * still the one at the path (else a releaser removed it meanwhile: again). */
static int run_lock(run *r, const char *dir, int take, cb_err *err) {
    char *path = cb_path_new(dir, ".lock", err);
    if (!path) return -1;
    int rc = 0, fd = -1;
    for (int attempt = 0; attempt < 100 && !rc; attempt++) {
        fd = open(path, take ? O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC : O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0) {
            int e = errno;
            if (!take && e == ENOENT) break;   /* nobody holds it */
            rc = cb_err_set(err, "%s/.lock: cannot open the run's lock: %s", dir, strerror(e));
            break;
        }
        if (fd < 3) {   /* lock_fd 0 means "none" */
            int hi = fcntl(fd, F_DUPFD_CLOEXEC, 3), e = errno;
            close(fd);
            if ((fd = hi) < 0) {
                rc = cb_err_set(err, "%s/.lock: %s", dir, strerror(e));
                break;
            }
        }
        if (flock(fd, (take ? LOCK_EX : LOCK_SH) | LOCK_NB)) {
            int e = errno;
            if (e == EWOULDBLOCK) {
                char who[400];
                lock_holder(fd, who, sizeof who);
                rc = cb_err_set(err, "%s: another `colbert train` is using this run directory (%s); wait for it "
                                "to end, or give another --model-name or --output-dir", dir, who);
            } else if (take) {   /* a file system without locks: go on unprotected, and say so */
                fprintf(stderr, "colbert: warning: %s/.lock: cannot lock (%s); nothing stops a second run in "
                        "this directory\n", dir, strerror(e));
            }
            break;
        }
        struct stat a, b;
        if (!take || (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev))
            break;
        close(fd);   /* locked a file its holder had just removed */
        fd = -1;
    }
    if (!rc && take && fd < 0) rc = cb_err_set(err, "%s/.lock: cannot take the lock", dir);
    if (!rc && take) {
        char host[256] = "?", when[64] = "?", text[400];
        gethostname(host, sizeof host - 1);
        time_t now = time(NULL);
        struct tm tm;
        if (gmtime_r(&now, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &tm);
        int n = snprintf(text, sizeof text, "pid %ld\nhost %s\nstarted %s\n", (long)getpid(), host, when);
        if (ftruncate(fd, 0) || pwrite(fd, text, (size_t)n, 0) != n)
            rc = cb_err_set(err, "%s/.lock: cannot write: %s", dir, strerror(errno));
    }
    free(path);
    if (rc || !take) {
        if (fd >= 0) close(fd);
        return rc;
    }
    r->lock_fd = fd;
    return 0;
}

void cb_train_release_run_dir(run *r) {
    if (r->lock_fd <= 0) return;
    char *path = r->run_dir ? cb_path_new(r->run_dir, ".lock", NULL) : NULL;
    if (path) unlink(path);   /* still holding it: see run_lock */
    free(path);
    close(r->lock_fd);
    r->lock_fd = 0;
}

/* The newest step-N of dir that holds a training state: *step (0 when
 * there is none) and the run's total steps; *n_ckpt = step-* directories.
 * -1 and err when out of memory. */
static int newest_state(const char *dir, long *step, long *total, int *n_ckpt, cb_err *err) {
    DIR *d = opendir(dir);
    long best = 0;
    int rc = 0;
    *step = 0;
    *total = 0;
    *n_ckpt = 0;
    if (!d) return 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        long st;
        char tail;
        if (sscanf(e->d_name, "step-%ld%c", &st, &tail) != 1) continue;
        ++*n_ckpt;
        char *p = cb_train_fmt(err, "%s/%s/%s", dir, e->d_name, STATE_JSON);
        if (!p) { rc = -1; break; }
        json_t *j = st > best ? json_load_file(p, 0, NULL) : NULL;
        if (j) {
            best = st;
            *total = (long)json_integer_value(json_object_get(j, "total_steps"));
            json_decref(j);
        }
        free(p);
    }
    closedir(d);
    *step = best;
    return rc;
}

int cb_train_claim_run_dir(run *r, int take, cb_err *err) {
    char *dir = r->run_dir ? cb_strdup(r->run_dir, err) : cb_path_new(r->o.output_dir, r->tr->model_name, err);
    if (!dir) return -1;
    int rc = 0;
    if (!cb_dir_exists(dir)) goto done;   /* a new run (take: the caller made it) */
    if ((rc = run_lock(r, dir, take, err)) || r->o.resume) goto done;
    long total, step = 0;
    int n_ckpt;
    if ((rc = newest_state(dir, &step, &total, &n_ckpt, err)) || !n_ckpt) goto done;
    if (!r->o.overwrite) {
        if (step > 0 && step >= total)
            rc = cb_err_set(err, "%s holds a finished run (step-%06ld, the last of its %ld steps); --overwrite "
                            "replaces it (its checkpoints, log and curve are deleted), or give another "
                            "--model-name or --output-dir", dir, step, total);
        else if (step > 0)
            rc = cb_err_set(err, "%s holds an unfinished run (step %ld of %ld); continue it with --resume "
                            "%s/step-%06ld, or start over with --overwrite (its checkpoints, log and curve are "
                            "deleted)", dir, step, total, dir, step);
        else
            rc = cb_err_set(err, "%s holds %d checkpoint(s) of an earlier run; --overwrite deletes them (with "
                            "its log and curve), or give another --model-name or --output-dir", dir, n_ckpt);
        goto done;
    }
    if (!take) goto done;
    /* --overwrite: what a run writes goes (each step-* renamed away first,
     * so that a kill half-way never leaves a partial step-*) */
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && !rc && (e = readdir(d))) {
        long st;
        char tail;
        if (sscanf(e->d_name, "step-%ld%c", &st, &tail) != 1) continue;
        char *p = cb_path_new(dir, e->d_name, err);
        char *gone = p ? cb_train_fmt(err, "%s/.deleting-%s", dir, e->d_name) : NULL;
        if (!gone) rc = -1;
        else if (rename(p, gone)) rc = cb_err_set(err, "%s: cannot remove: %s", p, strerror(errno));
        free(p);
        free(gone);
    }
    if (d) closedir(d);
    static const char *files[] = {"best", "train.jsonl", "curve.svg", "curve.png"};
    for (int i = 0; i < 4 && !rc; i++) {
        char *p = cb_path_new(dir, files[i], err);
        rc = p ? cb_remove_tree(p, err) : -1;
        free(p);
    }
    cb_train_clean_run_dir(dir);
    if (!rc) fprintf(stderr, "colbert: --overwrite: removed the earlier run of %s (%d checkpoint(s))\n", dir, n_ckpt);
done:
    free(dir);
    return rc;
}
