/* fuzz.h: what the libFuzzer targets of fuzz/ share (one target per file,
 * fuzz_<reader>.c; built and run by `make fuzz`, see fuzz/README.md).
 *
 * Most readers take a path or a model directory, so a target writes its
 * input into a directory of its own, /dev/shm/cb-fuzz-<target>-<pid>/
 * (/tmp/... where /dev/shm is not writable), made once per process, and
 * points the reader at it. An input that stands for several files is cut
 * at the separator line FUZZ_SEP: part 0 is the first file, part 1 the
 * second, and so on (missing parts: the file is absent).
 * A target must never crash, leak, or trip a sanitizer whatever the bytes:
 * a refusal is an error return, which the target ignores.
 */
#ifndef CB_FUZZ_H
#define CB_FUZZ_H
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FUZZ_SEP "\n--8<--\n"
#define FUZZ_MAX_PARTS 8

typedef struct fuzz_part {
    const uint8_t *p;
    size_t n;
} fuzz_part;

/* Cut data at FUZZ_SEP into at most max parts (the last one keeps any
 * further separators). Returns the number of parts (>= 1). */
static inline int fuzz_split(const uint8_t *data, size_t size, fuzz_part *parts, int max) {
    size_t sl = strlen(FUZZ_SEP), start = 0;
    int n = 0;
    for (size_t i = 0; n < max - 1 && i + sl <= size; i++) {
        if (memcmp(data + i, FUZZ_SEP, sl)) continue;
        parts[n++] = (fuzz_part){data + start, i - start};
        start = i + sl;
        i = start - 1;
    }
    parts[n++] = (fuzz_part){data + start, size - start};
    return n;
}

/* This process's scratch directory (created on first use), e.g.
 * /dev/shm/cb-fuzz-tokenizer-load-1234. */
static inline const char *fuzz_dir(const char *target) {
    static char dir[256];
    if (!dir[0]) {
        /* tmpfs when there is one: the targets write files on every input */
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(dir, sizeof dir, "%s/cb-fuzz-%s-%ld", base, target, (long)getpid());
        if (mkdir(dir, 0700) && errno != EEXIST) {
            perror(dir);
            abort();
        }
    }
    return dir;
}

/* dir/name (a static buffer per call site is not needed: callers copy). */
static inline void fuzz_path(char *out, size_t cap, const char *dir, const char *name) {
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Write n bytes to dir/name (replacing it); n == SIZE_MAX removes it. */
static inline void fuzz_write(const char *dir, const char *name, const uint8_t *p, size_t n) {
    char path[512];
    fuzz_path(path, sizeof path, dir, name);
    if (n == SIZE_MAX) {
        unlink(path);
        return;
    }
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f)) {
        perror(path);
        abort();
    }
}

/* Write part i of parts (or remove the file when there is no part i). */
static inline void fuzz_write_part(const char *dir, const char *name, const fuzz_part *parts, int n, int i) {
    if (i < n) fuzz_write(dir, name, parts[i].p, parts[i].n);
    else fuzz_write(dir, name, NULL, SIZE_MAX);
}

/* Remove the scratch directory at exit (best effort): names are its files
 * and subdirectories, files inside a subdirectory listed before it. */
static inline void fuzz_cleanup_dir(const char *dir, const char *const *names, int n) {
    char path[512];
    for (int i = 0; i < n; i++) {
        fuzz_path(path, sizeof path, dir, names[i]);
        if (unlink(path) && errno == EISDIR) rmdir(path);
    }
    rmdir(dir);
}
#endif
