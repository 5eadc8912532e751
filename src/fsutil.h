/* fsutil.h: the file-system helpers that every writer and loader of
 * colbert.c shares: atomic output, mkdir -p, removing a directory tree, and
 * loading a JSON file. Each reports a failure through cb_err as one line
 * ("PATH: what went wrong: strerror") and never exits.
 *
 * Atomic output. A file is written under a temporary name beside its
 * target, "<path>.tmp.<pid>", then flushed, fsync'd, closed, renamed over
 * the target, and the directory is fsync'd so that the rename itself is
 * durable: a reader sees the old file or the complete new one, never a
 * partial one, even after a crash or a full disk.
 *
 *     char *tmp;
 *     FILE *f = cb_out_open(path, &tmp, err);
 *     if (!f) return -1;
 *     ... write to f ...
 *     return cb_out_commit(f, tmp, path, err);   (or cb_out_abort(f, tmp))
 *
 * Files that must appear together (prepare's three training files): write
 * each, cb_out_close each, then cb_out_rename each; on failure remove the
 * temporaries that are left.
 */
#ifndef CB_FSUTIL_H
#define CB_FSUTIL_H
#include <stddef.h>
#include <stdio.h>
#include "common.h"

/* Create "<path>.tmp.<pid>" for writing. Returns the stream and sets
 * *tmp_path (malloc'd, owned by the caller until cb_out_commit or
 * cb_out_abort frees it); NULL and err "PATH: cannot create: why" on
 * failure. */
FILE *cb_out_open(const char *path, char **tmp_path, cb_err *err);

/* Finish f: flush, check for any earlier write error, fsync, close, rename
 * tmp_path to path and fsync path's directory. Frees tmp_path. Returns 0, or
 * -1 with err "PATH: write failed: why" (the temporary file is removed). */
int cb_out_commit(FILE *f, char *tmp_path, const char *path, cb_err *err);

/* Give up: close f (may be NULL), remove tmp_path and free it (may be NULL). */
void cb_out_abort(FILE *f, char *tmp_path);

/* The two halves of cb_out_commit, for several files that must appear
 * together. cb_out_close: flush, check, fsync and close f; on failure remove
 * tmp_path and set err "PATH: write failed: why". cb_out_rename: rename
 * tmp_path to path and fsync path's directory; on failure err "PATH: cannot
 * rename TMP: why" (tmp_path is left for the caller to remove). Neither frees
 * tmp_path. Both return 0 or -1. */
int cb_out_close(FILE *f, const char *tmp_path, const char *path, cb_err *err);
int cb_out_rename(const char *tmp_path, const char *path, cb_err *err);

/* Remove the temporary files "<path>.tmp.<pid>" that a killed process
 * left beside path: those whose pid no longer runs on this machine (a
 * live process's, and this process's, are kept). Returns 0, or -1 with
 * err "PATH: cannot remove a stale temporary file: why". */
int cb_out_remove_stale(const char *path, cb_err *err);

/* mkdir -p: create path and any missing parents (mode 0777, less the umask).
 * Returns 0 when path is a directory afterwards, with *created (may be NULL)
 * = 1 when path itself did not exist before the call; -1 with err "DIR:
 * cannot create directory: why" (DIR the component that failed) or "PATH:
 * exists and is not a directory". */
int cb_mkdirs(const char *path, int *created, cb_err *err);

/* rm -r that never follows a symbolic link: a file or a link is unlinked; a
 * directory is emptied depth first (entries opened relative to their parent
 * with O_NOFOLLOW, so a link inside the tree, or one swapped in during the
 * walk, is removed as a link and its target is never touched), then
 * removed. Returns 0, also when path does not exist; -1 with err "PATH:
 * cannot remove: why" for the first entry that could not be removed (the
 * walk stops there). */
int cb_remove_tree(const char *path, cb_err *err);

/* Parse the JSON file at path with jansson (flags as json_loadb's, e.g.
 * JSON_REJECT_DUPLICATES). Returns a new reference (json_decref it), or NULL
 * with err "PATH: cannot open: why" or "PATH: invalid JSON: what (line L,
 * column C)". The root may be any JSON value: the caller checks its type.
 * Declared with the struct tag so that this header does not pull in
 * jansson.h; callers that use the result include it. */
struct json_t *cb_json_load(const char *path, size_t flags, cb_err *err);
/* Write j to path atomically (as above): indented by 2, keys sorted, a
 * final newline. 0, or -1 with err. */
int cb_json_write(const char *path, const struct json_t *j, cb_err *err);
#endif
