/* fsutil.c: atomic output, mkdir -p, rm -r without following links, JSON
 * files; see fsutil.h for the contracts. */
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- atomic output ------------------------------------------------------ */

FILE *cb_out_open(const char *path, char **tmp_path, cb_err *err) {
    size_t n = strlen(path) + 32;
    char *tmp = cb_malloc(n, "a file name", err);
    if (!tmp) return NULL;
    snprintf(tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        cb_err_set(err, "%s: cannot create: %s", path, strerror(errno));
        free(tmp);
        return NULL;
    }
    *tmp_path = tmp;
    return f;
}

int cb_out_close(FILE *f, const char *tmp_path, const char *path, cb_err *err) {
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int e = bad && errno ? errno : EIO;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    if (!bad) return 0;
    remove(tmp_path);
    return cb_err_set(err, "%s: write failed: %s", path, strerror(e));
}

/* fsync the directory that holds path, so that a rename into it is durable.
 * File systems that cannot sync a directory (EINVAL) are not an error. */
static int sync_parent(const char *path, cb_err *err) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) < sizeof dir) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else return 0;   /* a parent name longer than PATH_MAX cannot be opened anyway */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return cb_err_set(err, "%s: cannot open the directory to sync it: %s", dir, strerror(errno));
    int rc = fsync(fd) != 0 && errno != EINVAL ? cb_err_set(err, "%s: cannot sync: %s", dir, strerror(errno)) : 0;
    close(fd);
    return rc;
}

int cb_out_rename(const char *tmp_path, const char *path, cb_err *err) {
    if (rename(tmp_path, path) != 0)
        return cb_err_set(err, "%s: cannot rename %s: %s", path, tmp_path, strerror(errno));
    return sync_parent(path, err);
}

int cb_out_commit(FILE *f, char *tmp_path, const char *path, cb_err *err) {
    int rc = cb_out_close(f, tmp_path, path, err);
    if (!rc && (rc = cb_out_rename(tmp_path, path, err))) remove(tmp_path);
    free(tmp_path);
    return rc;
}

void cb_out_abort(FILE *f, char *tmp_path) {
    if (f) fclose(f);
    if (tmp_path) {
        remove(tmp_path);
        free(tmp_path);
    }
}

int cb_out_remove_stale(const char *path, cb_err *err) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t nb = strlen(base);
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) < sizeof dir) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else return 0;
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : cb_err_set(err, "%s: cannot list: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        const char *name = e->d_name, *tail = name + nb + 5;
        if (strncmp(name, base, nb) || strncmp(name + nb, ".tmp.", 5) || !*tail || tail[strspn(tail, "0123456789")])
            continue;
        long pid = strtol(tail, NULL, 10);
        /* still being written by a live process (or by this one): keep it */
        if (pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode)) continue;
        if (unlinkat(dirfd(d), name, 0) && errno != ENOENT)
            rc = cb_err_set(err, "%s/%s: cannot remove a stale temporary file: %s", dir, name, strerror(errno));
    }
    closedir(d);
    return rc;
}

/* ---- directories -------------------------------------------------------- */

int cb_mkdirs(const char *path, int *created, cb_err *err) {
    if (created) *created = 0;
    if (cb_dir_exists(path)) return 0;
    char *p = cb_strdup(path, err);
    if (!p) return -1;
    int rc = 0;
    for (char *s = p + 1; *s && !rc; s++) {   /* each parent, then path itself */
        if (*s != '/' || s[-1] == '/') continue;
        *s = '\0';
        if (!cb_dir_exists(p) && mkdir(p, 0777) && errno != EEXIST)
            rc = cb_err_set(err, "%s: cannot create directory: %s", p, strerror(errno));
        *s = '/';
    }
    if (!rc && mkdir(p, 0777) && errno != EEXIST)
        rc = cb_err_set(err, "%s: cannot create directory: %s", p, strerror(errno));
    if (!rc && !cb_dir_exists(p)) rc = cb_err_set(err, "%s: exists and is not a directory", p);
    free(p);
    if (!rc && created) *created = 1;
    return rc;
}

/* Empty the directory open as fd (closed here); path names it in messages. */
static int remove_contents(int fd, const char *path, cb_err *err) {
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        return cb_err_set(err, "%s: cannot remove: %s", path, strerror(e));
    }
    int rc = 0;
    struct dirent *e;
    while (!rc && (e = readdir(d))) {
        const char *name = e->d_name;
        if (!strcmp(name, ".") || !strcmp(name, "..")) continue;
        struct stat st;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW)) {
            if (errno == ENOENT) continue;
            rc = cb_err_set(err, "%s/%s: cannot remove: %s", path, name, strerror(errno));
            break;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (unlinkat(dirfd(d), name, 0) && errno != ENOENT)
                rc = cb_err_set(err, "%s/%s: cannot remove: %s", path, name, strerror(errno));
            continue;
        }
        /* O_NOFOLLOW: a directory swapped for a link since fstatat fails
         * here (ELOOP or ENOTDIR) instead of being followed. */
        int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub < 0) {
            rc = cb_err_set(err, "%s/%s: cannot remove: %s", path, name, strerror(errno));
            break;
        }
        size_t n = strlen(path) + strlen(name) + 2;
        char *child = cb_malloc(n, "a file name", err);
        if (!child) {
            close(sub);
            rc = -1;
            break;
        }
        snprintf(child, n, "%s/%s", path, name);
        rc = remove_contents(sub, child, err);
        if (!rc && unlinkat(dirfd(d), name, AT_REMOVEDIR))
            rc = cb_err_set(err, "%s: cannot remove: %s", child, strerror(errno));
        free(child);
    }
    closedir(d);
    return rc;
}

int cb_remove_tree(const char *path, cb_err *err) {
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT ? 0 : cb_err_set(err, "%s: cannot remove: %s", path, strerror(errno));
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) && errno != ENOENT) return cb_err_set(err, "%s: cannot remove: %s", path, strerror(errno));
        return 0;
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return cb_err_set(err, "%s: cannot remove: %s", path, strerror(errno));
    if (remove_contents(fd, path, err)) return -1;
    if (rmdir(path)) return cb_err_set(err, "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

/* ---- JSON files --------------------------------------------------------- */

json_t *cb_json_load(const char *path, size_t flags, cb_err *err) {
    size_t len;
    char *text = cb_read_file(path, &len, err);
    if (!text) return NULL;
    json_error_t je;
    json_t *root = json_loadb(text, len, flags, &je);
    free(text);
    if (!root)
        cb_err_set(err, "%s: invalid JSON: %s (line %d, column %d)", path, je.text, je.line, je.column);
    return root;
}

int cb_json_write(const char *path, const json_t *j, cb_err *err) {
    char *tmp;
    FILE *f = cb_out_open(path, &tmp, err);
    if (!f) return -1;
    if (json_dumpf(j, f, JSON_INDENT(2) | JSON_SORT_KEYS) || fputc('\n', f) == EOF) {
        cb_out_abort(f, tmp);
        return cb_err_set(err, "%s: cannot write", path);
    }
    return cb_out_commit(f, tmp, path, err);
}
