/* test.h: the few macros the C tests share. Each test program counts its
 * checks, prints every failure with file and line, prints a closing
 * "name: N passed, N failed" line and exits non-zero if anything failed. */
#ifndef CB_TEST_H
#define CB_TEST_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed_, test_failed_;

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (cond) test_passed_++;                                              \
        else {                                                                 \
            test_failed_++;                                                    \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
        }                                                                      \
    } while (0)

#define CHECK_MSG(cond, ...)                                                   \
    do {                                                                       \
        if (cond) test_passed_++;                                              \
        else {                                                                 \
            test_failed_++;                                                    \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);     \
            fprintf(stderr, __VA_ARGS__);                                      \
            fprintf(stderr, "\n");                                             \
        }                                                                      \
    } while (0)

static inline int test_finish(const char *name) {
    printf("%s: %d passed, %d failed\n", name, test_passed_, test_failed_);
    return test_failed_ ? 1 : 0;
}

/* Environment the runner (tests/run.sh) sets; abort with a clear message
 * if a test is started by hand without it. */
static inline const char *test_env(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "test: environment variable %s is not set "
                        "(run the tests with `make test`)\n", name);
        exit(2);
    }
    return v;
}
#endif
