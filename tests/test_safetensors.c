/* test_safetensors.c: the safetensors reader and writer.
 *
 * Crafted files in $COLBERT_TMP: a valid one (F32 unaligned, F16 and BF16
 * with subnormals and extremes; U8; an empty tensor) read back exactly (a
 * NaN or an infinity is refused), then
 * one file per kind of damage, each of which must be refused with a message
 * naming the file and the problem. The writer's output is read back here
 * and by Python's safetensors. Finally the real all-MiniLM-L6-v2 weights
 * ($COLBERT_MODEL) open and a tensor equals the values Python's safetensors
 * gives (the same constants are checked in Python by tests/test_model.py).
 */
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "safetensors.h"
#include "test.h"

static const char *tmpdir;

static char *tmp_path(const char *name) {
    static char buf[8][4096];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f)) {
        fprintf(stderr, "test: cannot write %s\n", path);
        exit(2);
    }
}

/* Write <u64 hlen><header><data>; hlen is strlen(header) unless override. */
static const char *write_st(const char *name, const char *header, const void *data,
                            size_t ndata, uint64_t hlen_override) {
    const char *path = tmp_path(name);
    size_t nh = strlen(header);
    uint64_t hlen = hlen_override ? hlen_override : nh;
    uint8_t *buf = malloc(8 + nh + ndata);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(buf + 8, header, nh);
    if (ndata) memcpy(buf + 8 + nh, data, ndata);
    write_bytes(path, buf, 8 + nh + ndata);
    free(buf);
    return path;
}

/* cb_st_open must fail, leave f empty, and say `phrase` and the file name. */
static void expect_open_error(const char *path, const char *phrase) {
    st_file f;
    cb_err err = {{0}};
    int rc = cb_st_open(&f, path, &err);
    CHECK_MSG(rc == -1, "%s: cb_st_open returned %d, expected -1", path, rc);
    if (rc == 0) { cb_st_close(&f); return; }
    CHECK(f.map == NULL && f.tensors == NULL && f.n_tensors == 0 && f.path == NULL);
    CHECK_MSG(strstr(err.msg, path) != NULL, "message does not name the file: %s", err.msg);
    CHECK_MSG(strstr(err.msg, phrase) != NULL, "expected '%s' in: %s", phrase, err.msg);
    CHECK_MSG(strchr(err.msg, '\n') == NULL, "message is not one line: %s", err.msg);
    if (getenv("TEST_VERBOSE")) printf("  %s\n", err.msg);
}

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

/* ---- a valid file ---------------------------------------------------- */

/* u: U8 [1] at 0; a: F32 [2,3] at 1 (unaligned); h: F16 [8]; b: BF16 [4];
 * nf: F16 [2] (NaN, inf: refused when read); e: F32 [0,4], no bytes. */
static const char *valid_header =
    "{\"__metadata__\":{\"format\":\"pt\"},"
    "\"u\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
    "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[1,25]},"
    "\"h\":{\"dtype\":\"F16\",\"shape\":[8],\"data_offsets\":[25,41]},"
    "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[41,49]},"
    "\"nf\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[49,53]},"
    "\"e\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[53,53]}}";
static const float a_vals[6] = {1.0f, -2.5f, 3.25f, 1e-30f, -0.0f, 65504.0f};
static const uint16_t h_bits[8] = {
    0x3c00, 0xc000, 0x0001, 0x03ff, 0x8001, 0xfbff, 0x3555, 0x7bff};
static const uint16_t b_bits[4] = {0x3f80, 0xc040, 0x7f7f, 0x0001};
static const uint16_t n_bits[2] = {0x7e00, 0x7c00};

static size_t valid_data(uint8_t *d) {
    d[0] = 7;
    memcpy(d + 1, a_vals, 24);
    memcpy(d + 25, h_bits, 16);
    memcpy(d + 41, b_bits, 8);
    memcpy(d + 49, n_bits, 4);
    return 53;
}

static void test_valid(void) {
    uint8_t data[64];
    size_t nd = valid_data(data);
    CHECK((8 + strlen(valid_header) + 1) % 4 != 0);   /* tensor 'a' is unaligned */
    const char *path = write_st("valid.safetensors", valid_header, data, nd, 0);
    st_file f;
    cb_err err = {{0}};
    int rc = cb_st_open(&f, path, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return;
    CHECK(f.n_tensors == 6);
    const st_tensor *t = cb_st_find(&f, "a");
    CHECK(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
    CHECK(cb_st_find(&f, "__metadata__") == NULL);
    CHECK(cb_st_find(&f, "nope") == NULL);
    t = cb_st_find(&f, "e");
    CHECK(t && t->ndim == 2 && t->shape[0] == 0 && t->begin == t->end);
    CHECK(cb_st_find(&f, "u") && cb_st_find(&f, "u")->dtype == ST_U8);

    float a[6];
    int64_t sa[2] = {2, 3};
    CHECK_MSG(cb_st_read_f32(&f, "a", a, 2, sa, &err) == 0, "%s", err.msg);
    for (int i = 0; i < 6; i++)
        CHECK_MSG(f32_bits(a[i]) == f32_bits(a_vals[i]), "a[%d] = %g", i, a[i]);

    float h[8];
    int64_t sh[1] = {8};
    CHECK_MSG(cb_st_read_f32(&f, "h", h, 1, sh, &err) == 0, "%s", err.msg);
    CHECK(h[0] == 1.0f);
    CHECK(h[1] == -2.0f);
    CHECK_MSG(h[2] == ldexpf(1.0f, -24), "smallest subnormal: %g", h[2]);
    CHECK_MSG(h[3] == 1023.0f * ldexpf(1.0f, -24), "largest subnormal: %g", h[3]);
    CHECK(h[4] == -ldexpf(1.0f, -24));
    CHECK(h[5] == -65504.0f);
    CHECK(h[6] == 1365.0f * ldexpf(1.0f, -12));
    CHECK(h[7] == 65504.0f);
    /* a NaN or an infinity is refused, naming the element and its byte */
    float nv[2];
    int64_t sn[1] = {2};
    rc = cb_st_read_f32(&f, "nf", nv, 1, sn, &err);
    char at[64];
    snprintf(at, sizeof at, "byte %zu of the file", f.data_start + 49);
    CHECK_MSG(rc == -1 && strstr(err.msg, path) && strstr(err.msg, "tensor 'nf': element [0] is NaN") &&
              strstr(err.msg, at), "%s", err.msg);
    /* every half value converts exactly (checked against the formula) */
    int bad = 0;
    for (uint32_t u = 0; u < 0x10000; u++) {
        uint16_t x = (uint16_t)u;
        int e = (x >> 10) & 0x1f, m = x & 0x3ff;
        float s = (x & 0x8000) ? -1.0f : 1.0f, want;
        if (e == 0x1f) { if (m ? !isnan(cb_st_f16_to_f32(x)) : cb_st_f16_to_f32(x) != s * INFINITY) bad++; continue; }
        want = e ? s * ldexpf(1.0f + (float)m / 1024.0f, e - 15) : s * ldexpf((float)m, -24);
        if (f32_bits(cb_st_f16_to_f32(x)) != f32_bits(want)) bad++;
    }
    CHECK_MSG(bad == 0, "%d of 65536 half values convert wrongly", bad);

    float b[4];
    int64_t sb[1] = {4};
    CHECK_MSG(cb_st_read_f32(&f, "b", b, 1, sb, &err) == 0, "%s", err.msg);
    CHECK(b[0] == 1.0f && b[1] == -3.0f && b[2] == 0x1.fep127f);
    CHECK_MSG(b[3] == ldexpf(1.0f, -133), "bf16 subnormal: %g", b[3]);

    float e[1];
    int64_t se[2] = {0, 4};
    CHECK(cb_st_read_f32(&f, "e", e, 2, se, &err) == 0);

    /* read errors: missing, wrong shape, wrong rank, integer dtype */
    rc = cb_st_read_f32(&f, "missing.weight", a, 2, sa, &err);
    CHECK(rc == -1 && strstr(err.msg, path) && strstr(err.msg, "'missing.weight' not found"));
    int64_t swrong[2] = {3, 2};
    rc = cb_st_read_f32(&f, "a", a, 2, swrong, &err);
    CHECK_MSG(rc == -1 && strstr(err.msg, path) &&
              strstr(err.msg, "tensor 'a': shape [2, 3], expected [3, 2]"), "%s", err.msg);
    int64_t s6[1] = {6};
    rc = cb_st_read_f32(&f, "a", a, 1, s6, &err);
    CHECK_MSG(rc == -1 && strstr(err.msg, "shape [2, 3], expected [6]"), "%s", err.msg);
    int64_t s1[1] = {1};
    rc = cb_st_read_f32(&f, "u", a, 1, s1, &err);
    CHECK_MSG(rc == -1 && strstr(err.msg, "'u'") && strstr(err.msg, "dtype U8"), "%s", err.msg);
    cb_st_close(&f);
    CHECK(f.map == NULL && f.path == NULL);
    cb_st_close(&f);                                 /* closing twice is harmless */
}

/* The same bytes from memory (cb_st_open_mem): same tensors, nothing
 * unmapped at close; too short a buffer is refused. */
static void test_mem(void) {
    uint8_t data[64], buf[1024];
    size_t nd = valid_data(data), nh = strlen(valid_header);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)nh >> (8 * i));
    memcpy(buf + 8, valid_header, nh);
    memcpy(buf + 8 + nh, data, nd);
    st_file f;
    cb_err err = {{0}};
    int rc = cb_st_open_mem(&f, "mem.safetensors", buf, 8 + nh + nd, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return;
    float a[6];
    int64_t sa[2] = {2, 3};
    CHECK(f.n_tensors == 6 && cb_st_read_f32(&f, "a", a, 2, sa, &err) == 0 && a[2] == 3.25f);
    int64_t sn[1] = {2};
    CHECK(cb_st_read_f32(&f, "nf", a, 1, sn, &err) == -1 && strstr(err.msg, "mem.safetensors: tensor 'nf'"));
    cb_st_close(&f);
    CHECK(buf[8] == '{');   /* the caller's buffer is untouched */
    rc = cb_st_open_mem(&f, "short", buf, 7, &err);
    CHECK(rc == -1 && strstr(err.msg, "short: file is 7 bytes"));
    rc = cb_st_open_mem(&f, "cut", buf, 8 + nh - 1, &err);
    CHECK_MSG(rc == -1 && strstr(err.msg, "cut: header length"), "%s", err.msg);
}

/* ---- damaged files ------------------------------------------------------- */

static void test_errors(void) {
    uint8_t data[64];
    size_t nd = valid_data(data);

    expect_open_error(tmp_path("does-not-exist.safetensors"), "cannot open");
    write_bytes(tmp_path("empty.safetensors"), "", 0);
    expect_open_error(tmp_path("empty.safetensors"), "too short");
    write_bytes(tmp_path("short.safetensors"), "\x10\x00\x00", 3);
    expect_open_error(tmp_path("short.safetensors"), "too short");

    /* truncated: the data area ends before the last tensor */
    expect_open_error(write_st("trunc.safetensors", valid_header, data, nd - 5, 0),
                      "past the end of the data area");
    /* truncated inside the header */
    expect_open_error(write_st("trunc-header.safetensors", valid_header, NULL, 0,
                               strlen(valid_header) + 100),
                      "past the end of the file");
    expect_open_error(write_st("hlen-past.safetensors", valid_header, data, nd,
                               strlen(valid_header) + nd + 1),
                      "header length");
    expect_open_error(write_st("hlen-absurd.safetensors", valid_header, data, nd,
                               (uint64_t)1 << 62),
                      "is absurd");
    expect_open_error(write_st("hlen-max.safetensors", valid_header, data, nd, UINT64_MAX),
                      "is absurd");

    expect_open_error(write_st("json.safetensors",
                               "{\"a\": {\"dtype\": \"F32\", \"shape\": [1] \"data_offsets\"",
                               data, 4, 0),
                      "invalid JSON header");
    expect_open_error(write_st("json2.safetensors", "{\"a\":\n  {\"dtype\": F32}}", data, 4, 0),
                      "line 2, column");
    expect_open_error(write_st("notobj.safetensors", "[1, 2, 3]", data, 4, 0),
                      "not an object");
    expect_open_error(write_st("dup.safetensors",
                               "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                               "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                               data, 4, 0),
                      "duplicate");
    expect_open_error(write_st("entry.safetensors", "{\"a\": 3}", data, 4, 0),
                      "tensor 'a': header entry is not a JSON object");

    expect_open_error(write_st("dtype.safetensors",
                               "{\"w\":{\"dtype\":\"F8_E4M3X\",\"shape\":[4],"
                               "\"data_offsets\":[0,4]}}", data, 4, 0),
                      "tensor 'w': unknown dtype 'F8_E4M3X'");
    expect_open_error(write_st("nodtype.safetensors",
                               "{\"w\":{\"shape\":[4],\"data_offsets\":[0,4]}}", data, 4, 0),
                      "\"dtype\"");
    expect_open_error(write_st("negshape.safetensors",
                               "{\"w\":{\"dtype\":\"U8\",\"shape\":[-4],"
                               "\"data_offsets\":[0,4]}}", data, 4, 0),
                      "shape[0] is not a non-negative integer");
    expect_open_error(write_st("floatshape.safetensors",
                               "{\"w\":{\"dtype\":\"U8\",\"shape\":[4.0],"
                               "\"data_offsets\":[0,4]}}", data, 4, 0),
                      "non-negative integer");
    expect_open_error(write_st("ndims.safetensors",
                               "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                               "\"data_offsets\":[0,1]}}", data, 4, 0),
                      "9 dimensions");
    expect_open_error(write_st("overflow.safetensors",
                               "{\"w\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,"
                               "4611686018427387904],\"data_offsets\":[0,4]}}", data, 4, 0),
                      "is too large");
    expect_open_error(write_st("offsets-bad.safetensors",
                               "{\"w\":{\"dtype\":\"U8\",\"shape\":[4],"
                               "\"data_offsets\":[0]}}", data, 4, 0),
                      "\"data_offsets\" must be [begin, end]");
    expect_open_error(write_st("offsets-rev.safetensors",
                               "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],"
                               "\"data_offsets\":[4,0]}}", data, 4, 0),
                      "end before they begin");
    expect_open_error(write_st("oob.safetensors",
                               "{\"w\":{\"dtype\":\"F32\",\"shape\":[250],"
                               "\"data_offsets\":[0,1000]}}", data, 24, 0),
                      "tensor 'w': data_offsets [0, 1000] go past the end of the data area");
    expect_open_error(write_st("oob-huge.safetensors",
                               "{\"w\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":"
                               "[9223372036854775807,9223372036854775807]}}", data, 4, 0),
                      "go past the end");
    expect_open_error(write_st("size.safetensors",
                               "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],"
                               "\"data_offsets\":[0,20]}}", data, 24, 0),
                      "tensor 'w': shape [2, 3] of F32 needs 24 bytes but data_offsets "
                      "[0, 20] hold 20");
    expect_open_error(write_st("overlap.safetensors",
                               "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]},"
                               "\"y\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                               data, 24, 0),
                      "tensors 'y' [0, 16] and 'x' [8, 24] overlap");
    /* a range inside an earlier, longer one */
    expect_open_error(write_st("overlap2.safetensors",
                               "{\"x\":{\"dtype\":\"U8\",\"shape\":[20],\"data_offsets\":[0,20]},"
                               "\"y\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
                               "\"z\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}",
                               data, 24, 0),
                      "overlap");
}

/* ---- the writer ------------------------------------------------------------ */

static void test_write(void) {
    const char *path = tmp_path("written.safetensors");
    float w[2][3] = {{1.5f, -2.0f, 0.125f}, {1e-20f, 3e20f, -0.0f}};
    uint16_t h[3] = {0x3c00, 0x0001, 0xfbff};
    int64_t ids[4] = {0, 1, 2, -7};
    st_wtensor ts[3] = {
        {.name = "bert.linear.weight", .dtype = ST_F32, .ndim = 2, .shape = {2, 3}, .data = w},
        {.name = "half", .dtype = ST_F16, .ndim = 1, .shape = {3}, .data = h},
        {.name = "ids", .dtype = ST_I64, .ndim = 2, .shape = {1, 4}, .data = ids},
    };
    cb_err err = {{0}};
    int rc = cb_st_write(path, ts, 3, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK_MSG(access(tmp, F_OK) != 0, "temporary file %s left behind", tmp);

    st_file f;
    rc = cb_st_open(&f, path, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return;
    CHECK(f.n_tensors == 3);
    CHECK(f.data_start % 8 == 0);
    float r[6];
    int64_t s[2] = {2, 3};
    CHECK(cb_st_read_f32(&f, "bert.linear.weight", r, 2, s, &err) == 0);
    CHECK(memcmp(r, w, sizeof w) == 0);
    int64_t s3[1] = {3};
    CHECK(cb_st_read_f32(&f, "half", r, 1, s3, &err) == 0);
    CHECK(r[0] == 1.0f && r[1] == ldexpf(1.0f, -24) && r[2] == -65504.0f);
    const st_tensor *t = cb_st_find(&f, "ids");
    CHECK(t && t->dtype == ST_I64 && t->end - t->begin == 32 &&
          memcmp(f.map + f.data_start + t->begin, ids, 32) == 0);
    cb_st_close(&f);

    /* Python's safetensors must read it the same. */
    char cmd[12000];
    snprintf(cmd, sizeof cmd,
             "'%s/.venv/bin/python' -c \"import sys, numpy as np\n"
             "from safetensors.numpy import load_file\n"
             "t = load_file(sys.argv[1])\n"
             "w = t['bert.linear.weight']; h = t['half']; i = t['ids']\n"
             "assert w.dtype == np.float32 and w.shape == (2, 3), w\n"
             "assert w.tolist() == np.array([[1.5, -2.0, 0.125], [1e-20, 3e20, -0.0]], "
             "np.float32).tolist(), w\n"
             "assert h.dtype == np.float16 and h.view(np.uint16).tolist() == [0x3c00, 1, 0xfbff]\n"
             "assert i.dtype == np.int64 and i.tolist() == [[0, 1, 2, -7]]\n"
             "\" '%s'", test_env("COLBERT_ROOT"), path);
    rc = system(cmd);
    CHECK_MSG(rc == 0, "Python safetensors could not read %s (status %d)", path, rc);

    /* overwriting an existing file replaces it whole */
    rc = cb_st_write(path, ts + 1, 1, &err);
    CHECK(rc == 0 && cb_st_open(&f, path, &err) == 0 && f.n_tensors == 1);
    cb_st_close(&f);

    /* a directory that does not exist: error, nothing written */
    rc = cb_st_write(tmp_path("no/such/dir/x.safetensors"), ts, 1, &err);
    CHECK_MSG(rc == -1 && strstr(err.msg, "cannot create"), "%s", err.msg);
}

/* ---- the real model -------------------------------------------------------- */

static void test_real_model(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", test_env("COLBERT_MODEL"));
    st_file f;
    cb_err err = {{0}};
    int rc = cb_st_open(&f, path, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    if (rc) return;
    CHECK_MSG(f.n_tensors == 104, "%d tensors", f.n_tensors);
    const st_tensor *t = cb_st_find(&f, "embeddings.position_ids");
    CHECK(t && t->dtype == ST_I64 && t->ndim == 2 && t->shape[0] == 1 && t->shape[1] == 512);
    CHECK(cb_st_find(&f, "bert.embeddings.word_embeddings.weight") == NULL);

    /* bit patterns from Python safetensors (tests/test_model.py checks them) */
    float *w = malloc(384 * 384 * sizeof *w);
    int64_t s[2] = {384, 384};
    rc = cb_st_read_f32(&f, "encoder.layer.0.attention.self.query.weight", w, 2, s, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(f32_bits(w[0 * 384 + 0]) == 3189256126u);      /* -0.14861962 */
    CHECK(f32_bits(w[0 * 384 + 1]) == 1026720086u);      /*  0.043580376 */
    CHECK(f32_bits(w[1 * 384 + 0]) == 1024677099u);      /*  0.035969656 */
    CHECK(f32_bits(w[17 * 384 + 250]) == 3187972042u);   /* -0.12948528 */
    CHECK(f32_bits(w[383 * 384 + 383]) == 3182334400u);  /* -0.08523893 */

    int64_t sw[2] = {384, 383};
    rc = cb_st_read_f32(&f, "encoder.layer.0.attention.self.query.weight", w, 2, sw, &err);
    CHECK_MSG(rc == -1 && strstr(err.msg, "model.safetensors: tensor "
              "'encoder.layer.0.attention.self.query.weight': shape [384, 384], "
              "expected [384, 383]"), "%s", err.msg);
    free(w);

    float *e = malloc((size_t)30522 * 384 * sizeof *e);
    int64_t se[2] = {30522, 384};
    rc = cb_st_read_f32(&f, "embeddings.word_embeddings.weight", e, 2, se, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    double sum = 0;
    for (size_t i = 0; i < (size_t)30522 * 384; i++) sum += e[i];
    CHECK_MSG(fabs(sum - 138.05072214923618) < 1e-6, "sum %.17g", sum);
    free(e);
    cb_st_close(&f);
}

int main(void) {
    tmpdir = test_env("COLBERT_TMP");
    test_valid();
    test_mem();
    test_errors();
    test_write();
    test_real_model();
    return test_finish("test_safetensors");
}
