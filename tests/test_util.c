/* test_util.c: the shared utilities: atomic output, mkdir -p, rm -r that
 * never follows links, JSON files (fsutil.h); the top-k heap against a full
 * sort (topk.h); length-sorted batches (batch.h); the string table
 * (strtab.h); .npy round trips (npy.h); the text helpers of data.h; and
 * cb_rng_mix64 as the one splitmix64 step (rng.h). */
#include <errno.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "data.h"
#include "fsutil.h"
#include "npy.h"
#include "rng.h"
#include "strtab.h"
#include "test.h"
#include "topk.h"

static char tmp[512];

static char *path(const char *name) {
    static char buf[4][1024];
    static int k;
    char *p = buf[k++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", tmp, name);
    return p;
}

static void put(const char *p, const char *text) {
    FILE *f = fopen(p, "wb");
    if (!f) { perror(p); exit(2); }
    fputs(text, f);
    fclose(f);
}

static int exists(const char *p) {
    struct stat st;
    return lstat(p, &st) == 0;
}

static int count_entries(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "ls -A '%s' | wc -l", dir);
    FILE *f = popen(cmd, "r");
    int n = -1;
    if (f && fscanf(f, "%d", &n) != 1) n = -1;
    if (f) pclose(f);
    return n;
}

static void test_out(void) {
    cb_err err = {{0}};
    const char *dir = path("out");
    CHECK(cb_mkdirs(dir, NULL, &err) == 0);
    char target[1100];
    snprintf(target, sizeof target, "%s/a.txt", dir);
    put(target, "old");
    char *t;
    FILE *f = cb_out_open(target, &t, &err);
    CHECK(f != NULL);
    fputs("new content", f);
    CHECK(exists(t));
    size_t n;
    char *before = cb_read_file(target, &n, &err);
    CHECK(before && !strcmp(before, "old"));   /* untouched until the commit */
    free(before);
    CHECK(cb_out_commit(f, t, target, &err) == 0);
    char *after = cb_read_file(target, &n, &err);
    CHECK(after && !strcmp(after, "new content"));
    free(after);
    CHECK(count_entries(dir) == 1);            /* no temporary left */

    /* abort: the target stays, the temporary goes */
    f = cb_out_open(target, &t, &err);
    fputs("discarded", f);
    cb_out_abort(f, t);
    after = cb_read_file(target, &n, &err);
    CHECK(after && !strcmp(after, "new content"));
    free(after);
    CHECK(count_entries(dir) == 1);

    /* two files that appear together */
    char b[1100], c[1100];
    snprintf(b, sizeof b, "%s/b.txt", dir);
    snprintf(c, sizeof c, "%s/c.txt", dir);
    char *tb, *tc;
    FILE *fb = cb_out_open(b, &tb, &err), *fc = cb_out_open(c, &tc, &err);
    fputs("b", fb);
    fputs("c", fc);
    CHECK(cb_out_close(fb, tb, b, &err) == 0 && cb_out_close(fc, tc, c, &err) == 0);
    CHECK(!exists(b) && !exists(c) && exists(tb) && exists(tc));
    CHECK(cb_out_rename(tb, b, &err) == 0 && cb_out_rename(tc, c, &err) == 0);
    CHECK(exists(b) && exists(c) && !exists(tb) && !exists(tc));
    free(tb);
    free(tc);

    /* a directory that does not exist: an error naming the target */
    snprintf(b, sizeof b, "%s/no/such/dir/x", dir);
    CHECK(cb_out_open(b, &t, &err) == NULL && strstr(err.msg, "x: cannot create"));
}

static void test_dirs(void) {
    cb_err err = {{0}};
    int created = -1;
    const char *deep = path("mk/a/b//c/");
    CHECK(cb_mkdirs(deep, &created, &err) == 0 && created == 1 && cb_dir_exists(deep));
    CHECK(cb_mkdirs(deep, &created, &err) == 0 && created == 0);
    const char *file = path("mk/file");
    put(file, "x");
    CHECK(cb_mkdirs(file, &created, &err) == -1 && strstr(err.msg, "exists and is not a directory"));
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/below", file);
    CHECK(cb_mkdirs(sub, NULL, &err) == -1 && strstr(err.msg, "cannot create directory"));

    /* rm -r: a link to a directory outside the tree is removed, its target kept */
    const char *keep = path("keep");
    CHECK(cb_mkdirs(keep, NULL, &err) == 0);
    char kf[1100], tree[1100], p[1200];
    snprintf(kf, sizeof kf, "%s/precious", keep);
    put(kf, "do not delete");
    snprintf(tree, sizeof tree, "%s", path("tree"));
    snprintf(p, sizeof p, "%s/x/y/z", tree);
    CHECK(cb_mkdirs(p, NULL, &err) == 0);
    snprintf(p, sizeof p, "%s/x/y/z/f", tree);
    put(p, "1");
    snprintf(p, sizeof p, "%s/x/f", tree);
    put(p, "2");
    snprintf(p, sizeof p, "%s/x/link", tree);
    CHECK(symlink(keep, p) == 0);
    snprintf(p, sizeof p, "%s/x/y/dangling", tree);
    CHECK(symlink("/nonexistent/target", p) == 0);
    CHECK(cb_remove_tree(tree, &err) == 0);
    CHECK(!exists(tree) && exists(kf));
    CHECK(cb_remove_tree(tree, &err) == 0);   /* nothing there: fine */
    /* a link given as the root is removed as a link */
    const char *root_link = path("rootlink");
    CHECK(symlink(keep, root_link) == 0);
    CHECK(cb_remove_tree(root_link, &err) == 0 && !exists(root_link) && exists(kf));
    /* a plain file */
    CHECK(cb_remove_tree(kf, &err) == 0 && !exists(kf));
}

static void test_json(void) {
    cb_err err = {{0}};
    const char *ok = path("ok.json"), *bad = path("bad.json"), *dup = path("dup.json");
    put(ok, "{\"a\": [1, 2]}");
    put(bad, "{\n  \"a\": ,\n}");
    put(dup, "{\"a\": 1, \"a\": 2}");
    json_t *j = cb_json_load(ok, 0, &err);
    CHECK(j && json_array_size(json_object_get(j, "a")) == 2);
    json_decref(j);
    CHECK(cb_json_load(bad, 0, &err) == NULL && strstr(err.msg, "bad.json: invalid JSON") &&
          strstr(err.msg, "(line 2, column"));
    CHECK(cb_json_load(path("missing.json"), 0, &err) == NULL && strstr(err.msg, "missing.json: cannot open"));
    j = cb_json_load(dup, 0, &err);
    CHECK(j != NULL);
    json_decref(j);
    CHECK(cb_json_load(dup, JSON_REJECT_DUPLICATES, &err) == NULL && strstr(err.msg, "invalid JSON"));
}

/* The heap's top k equal the first k of a full sort, for any push order. */
static void test_topk(void) {
    enum { N = 500 };
    rng r;
    cb_rng_init(&r, 5, 0);
    for (int round = 0; round < 20; round++) {
        topk_hit all[N];
        for (int i = 0; i < N; i++) {
            /* few distinct scores: many ties, broken by the tie key */
            all[i] = (topk_hit){(float)cb_rng_below(&r, 7), (uint32_t)((i * 7919) % N), i};
        }
        int k = 1 + (int)cb_rng_below(&r, 60);
        topk_hit h[64];
        int n = 0;
        for (int i = 0; i < N; i++) cb_topk_push(h, &n, k, all[i].score, all[i].id, all[i].tie);
        cb_topk_sort(h, n);
        cb_topk_sort(all, N);
        int same = n == k;
        for (int i = 0; i < k && same; i++) same = h[i].id == all[i].id && h[i].score == all[i].score;
        CHECK_MSG(same, "round %d, k %d", round, k);
    }
    /* rows: ties to the lower id, NaN last, padding */
    float s[5] = {1, NAN, 3, 3, 0.5f};
    topk_hit h[8];
    int n = 0;
    cb_topk_push_row(h, &n, 8, s, 5, NULL, 10);
    cb_topk_sort(h, n);
    int32_t ids[8];
    float sc[8];
    cb_topk_write(h, n, 8, ids, sc);
    CHECK(n == 5 && ids[0] == 12 && ids[1] == 13 && ids[2] == 10 && ids[3] == 14 && ids[4] == 11);
    CHECK(sc[4] == -INFINITY && ids[5] == -1 && sc[7] == -INFINITY);
}

static void test_batch(void) {
    cb_err err = {{0}};
    int ntok[7] = {5, 9, 5, 2, 9, 20, 1};
    batch_plan bp;
    CHECK(cb_batch_plan_make(&bp, ntok, 7, 12, &err) == 0);
    int want_order[7] = {5, 1, 4, 0, 2, 3, 6};
    CHECK(!memcmp(bp.order, want_order, sizeof want_order));
    /* [20] alone (over 12), [9], [9], [5 5 2], [1]? no: 5+5+2 = 12, then 1 */
    int want_start[6] = {0, 1, 2, 3, 6, 7};
    CHECK(bp.n_batches == 5 && !memcmp(bp.start, want_start, sizeof want_start));
    cb_batch_plan_free(&bp);
    CHECK(cb_batch_plan_make(&bp, ntok, 0, 12, &err) == 0 && bp.n_batches == 0 && bp.start[0] == 0);
    cb_batch_plan_free(&bp);
}

static void test_strtab(void) {
    cb_err err = {{0}};
    strtab t = {0};
    uint32_t id;
    int is_new;
    char buf[64];
    int bad = 0;
    for (int i = 0; i < 20000 && !bad; i++) {   /* past several slot-table and arena growths */
        snprintf(buf, sizeof buf, "text %d", i % 15000);
        bad = cb_strtab_intern(&t, buf, strlen(buf), &id, &is_new, &err) || id != (uint32_t)(i % 15000) ||
              is_new != (i < 15000);
        if (bad) fprintf(stderr, "text %d: id %u, new %d\n", i, id, is_new);
    }
    CHECK(!bad);
    CHECK(t.n == 15000 && !strcmp(cb_strtab_get(&t, 1234), "text 1234") && cb_strtab_len(&t, 1234) == 9);
    CHECK(cb_strtab_find(&t, "text 14999", 10) == 14999 && cb_strtab_find(&t, "text 15000", 10) == STRTAB_NONE);
    CHECK(cb_strtab_find(&t, "text 1", 5) == STRTAB_NONE);   /* a prefix is another text */
    /* embedded NUL and a long text (hashed by its ends) */
    CHECK(cb_strtab_intern(&t, "a\0b", 3, &id, &is_new, &err) == 0 && is_new && cb_strtab_find(&t, "a\0c", 3) == STRTAB_NONE);
    char big[2000];
    memset(big, 'x', sizeof big);
    CHECK(cb_strtab_intern(&t, big, sizeof big, &id, &is_new, &err) == 0 && is_new);
    big[1000] = 'y';   /* differs only in the middle */
    CHECK(cb_strtab_find(&t, big, sizeof big) == STRTAB_NONE);
    cb_strtab_free(&t);
    /* appended texts: read by id only */
    CHECK(cb_strtab_append(&t, "q", 1, &id, &err) == 0 && id == 0 && cb_strtab_append(&t, "q", 1, &id, &err) == 0 && id == 1);
    CHECK(!strcmp(cb_strtab_get(&t, 1), "q") && cb_strtab_find(&t, "q", 1) == STRTAB_NONE);
    cb_strtab_free(&t);
}

static void test_npy(void) {
    cb_err err = {{0}};
    float x[6] = {1, -2, 3.5f, 0, 1e-30f, 7};
    int64_t shape[2] = {2, 3};
    const char *p = path("x.npy");
    CHECK(cb_npy_write(p, "<f4", x, 2, shape, &err) == 0);
    float *y = cb_npy_read_f32(p, 2, 3, &err);
    CHECK(y && !memcmp(x, y, sizeof x));
    free(y);
    CHECK(cb_npy_read_f32(p, 3, -1, &err) == NULL && strstr(err.msg, "shape (2, 3), expected (3, -1)"));
    CHECK(cb_npy_read_f32(path("ok.json"), -1, -1, &err) == NULL && strstr(err.msg, "not a .npy file"));
}

static void test_text(void) {
    cb_err err = {{0}};
    char b[32];
    CHECK(!strcmp(cb_data_excerpt(b, sizeof b, "short", 5), "\"short\""));
    /* cut at a character boundary: "é" is 2 bytes */
    const char *s = "aaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9zzzz";
    CHECK(!strcmp(cb_data_excerpt(b, sizeof b, s, strlen(s)), "\"aaaaaaaaaaaaaaaaaaaaaaa...\""));
    CHECK(cb_data_is_blank(" \t\r\n\v\f", 6) && cb_data_is_blank("", 0) && !cb_data_is_blank("  x", 3));
    char *buf = NULL;
    size_t cap = 0, len;
    const char *j = cb_data_join_title(&buf, &cap, "Title", 5, " | ", "text", 4, &len, &err);
    CHECK(j && len == 12 && !memcmp(j, "Title | text", 12));
    CHECK(cb_data_join_title(&buf, &cap, "  ", 2, " ", "text", 4, &len, &err) != buf && len == 4);
    j = cb_data_join_title(&buf, &cap, "Title", 5, " ", " ", 1, &len, &err);
    CHECK(len == 5 && !memcmp(j, "Title", 5));
    CHECK(cb_data_join_title(&buf, &cap, NULL, 0, " ", "t", 1, &len, &err)[0] == 't');
    free(buf);
    char *pn = cb_path_new("a/", "b", &err), *pm = cb_path_new("a", "b", &err);
    CHECK(!strcmp(pn, "a/b") && !strcmp(pm, "a/b"));
    free(pn);
    free(pm);
}

/* cb_rng_next is the splitmix64 stream: state += golden, output = cb_rng_mix64
 * of the state before the add. */
static void test_mix(void) {
    rng r;
    cb_rng_init(&r, 42, 7);
    uint64_t s = r.state;
    for (int i = 0; i < 100; i++) {
        uint64_t want = cb_rng_mix64(s);
        s += 0x9e3779b97f4a7c15ULL;
        if (cb_rng_next(&r) != want) {
            CHECK_MSG(0, "draw %d", i);
            return;
        }
    }
    CHECK(r.state == s);
    /* the published splitmix64 output for seed 0 (Vigna's reference code) */
    CHECK(cb_rng_mix64(0) == 0xe220a8397b1dcdafULL);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "%s/test_util", test_env("COLBERT_TMP"));
    cb_err err = {{0}};
    if (cb_remove_tree(tmp, &err) || cb_mkdirs(tmp, NULL, &err)) {
        fprintf(stderr, "test_util: %s\n", err.msg);
        return 2;
    }
    test_out();
    test_dirs();
    test_json();
    test_topk();
    test_batch();
    test_strtab();
    test_npy();
    test_text();
    test_mix();
    return test_finish("test_util");
}
