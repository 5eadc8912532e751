/* safetensors.c: a validating reader and an atomic writer for Hugging Face
 * .safetensors files (format in safetensors.h).
 *
 * Reading memory-maps the file read-only and checks the whole header before
 * anything is handed out, so that a later cb_st_read_f32 never reads outside
 * the mapping whatever the file says. Tensor data need not be aligned: it
 * is always copied out with memcpy.
 */
#include "safetensors.h"
#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation refuses headers above 100 MB; so do we. */
#define ST_MAX_HEADER ((uint64_t)100000000)

static const struct {
    const char *name;
    size_t size;
} st_dtypes[] = {
    [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_F64] = {"F64", 8}, [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4},
    [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},   [ST_U8] = {"U8", 1},
    [ST_BOOL] = {"BOOL", 1},
};
#define ST_N_DTYPES ((int)(sizeof st_dtypes / sizeof st_dtypes[0]))

const char *cb_st_dtype_name(st_dtype d) {
    return (int)d >= 0 && (int)d < ST_N_DTYPES ? st_dtypes[d].name : "?";
}

size_t cb_st_dtype_size(st_dtype d) {
    CB_ASSERT((int)d >= 0 && (int)d < ST_N_DTYPES);
    return st_dtypes[d].size;
}

static int st_dtype_parse(const char *s, st_dtype *d) {
    for (int i = 0; i < ST_N_DTYPES; i++)
        if (!strcmp(s, st_dtypes[i].name)) { *d = (st_dtype)i; return 0; }
    return -1;
}

/* "[384, 384]" into buf (always NUL-terminated). */
static const char *shape_str(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t n = 0;
    n += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", i ? ", " : "",
                              (long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
    return buf;
}

/* ---- reading ------------------------------------------------------------ */

static void st_free_tensors(st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    f->tensors = NULL;
    f->n_tensors = 0;
}

void cb_st_close(st_file *f) {
    if (!f) return;
    st_free_tensors(f);
    if (f->map && !f->borrowed) munmap(f->map, f->map_size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

/* A JSON integer in [0, INT64_MAX]; -1 when it is not one. */
static int json_nonneg(const json_t *v, int64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (int64_t)json_integer_value(v);
    return 0;
}

/* Parse and check one header entry {"dtype", "shape", "data_offsets"} into
 * t (t->name already set). data_size: bytes after the header. */
static int st_parse_entry(const st_file *f, st_tensor *t, const json_t *v,
                          size_t data_size, cb_err *err) {
    const char *p = f->path, *nm = t->name;
    if (!json_is_object(v))
        return cb_err_set(err, "%s: tensor '%s': header entry is not a JSON object", p, nm);

    const json_t *jd = json_object_get(v, "dtype");
    if (!json_is_string(jd))
        return cb_err_set(err, "%s: tensor '%s': missing or non-string \"dtype\"", p, nm);
    if (st_dtype_parse(json_string_value(jd), &t->dtype))
        return cb_err_set(err, "%s: tensor '%s': unknown dtype '%s' (known: F32 F16 BF16 "
                          "F64 I64 I32 I16 I8 U8 BOOL)", p, nm, json_string_value(jd));

    const json_t *js = json_object_get(v, "shape");
    if (!json_is_array(js))
        return cb_err_set(err, "%s: tensor '%s': missing or non-array \"shape\"", p, nm);
    if (json_array_size(js) > ST_MAX_DIMS)
        return cb_err_set(err, "%s: tensor '%s': shape has %zu dimensions, at most %d supported",
                          p, nm, json_array_size(js), ST_MAX_DIMS);
    t->ndim = (int)json_array_size(js);
    size_t nbytes = st_dtypes[t->dtype].size;
    int overflow = 0;
    for (int i = 0; i < t->ndim; i++) {
        if (json_nonneg(json_array_get(js, (size_t)i), &t->shape[i]))
            return cb_err_set(err, "%s: tensor '%s': shape[%d] is not a non-negative integer",
                              p, nm, i);
        if (__builtin_mul_overflow(nbytes, (size_t)t->shape[i], &nbytes))
            overflow = 1;
    }

    const json_t *jo = json_object_get(v, "data_offsets");
    int64_t b, e;
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        json_nonneg(json_array_get(jo, 0), &b) || json_nonneg(json_array_get(jo, 1), &e))
        return cb_err_set(err, "%s: tensor '%s': \"data_offsets\" must be [begin, end] with "
                          "non-negative integers", p, nm);
    if (b > e)
        return cb_err_set(err, "%s: tensor '%s': data_offsets [%lld, %lld] end before they begin",
                          p, nm, (long long)b, (long long)e);
    if ((uint64_t)e > data_size)
        return cb_err_set(err, "%s: tensor '%s': data_offsets [%lld, %lld] go past the end of "
                          "the data area (%zu bytes; file truncated?)",
                          p, nm, (long long)b, (long long)e, data_size);
    t->begin = (size_t)b;
    t->end = (size_t)e;
    char sb[160];
    if (overflow)
        return cb_err_set(err, "%s: tensor '%s': shape %s of %s is too large (its byte "
                          "count overflows)", p, nm, shape_str(sb, sizeof sb, t->ndim, t->shape),
                          st_dtypes[t->dtype].name);
    if (nbytes != t->end - t->begin)
        return cb_err_set(err, "%s: tensor '%s': shape %s of %s needs %zu bytes but "
                          "data_offsets [%zu, %zu] hold %zu",
                          p, nm, shape_str(sb, sizeof sb, t->ndim, t->shape),
                          st_dtypes[t->dtype].name, nbytes, t->begin, t->end, t->end - t->begin);
    return 0;
}

static int st_cmp_begin(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Everything after the mapping: header length, JSON, entries, overlaps. */
static int st_parse_header(st_file *f, cb_err *err) {
    const char *p = f->path;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | f->map[i]; /* little-endian */
    if (hlen > ST_MAX_HEADER)
        return cb_err_set(err, "%s: header length %llu is absurd (limit %llu bytes); "
                          "not a safetensors file or corrupted",
                          p, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
    if (hlen > f->map_size - 8)
        return cb_err_set(err, "%s: header length %llu goes past the end of the file "
                          "(%zu bytes; file truncated?)",
                          p, (unsigned long long)hlen, f->map_size);
    f->data_start = 8 + (size_t)hlen;
    size_t data_size = f->map_size - f->data_start;

    json_error_t je;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)hlen,
                              JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return cb_err_set(err, "%s: invalid JSON header: %s (header line %d, column %d, "
                          "file byte %d)", p, je.text, je.line, je.column, 8 + je.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return cb_err_set(err, "%s: JSON header is not an object", p);
    }

    size_t n = json_object_size(root);
    f->tensors = cb_calloc(n ? n : 1, sizeof *f->tensors, "the tensor table", err);
    if (!f->tensors) {
        json_decref(root);
        return -1;
    }
    const char *key;
    json_t *val;
    int rc = 0;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) continue;
        st_tensor *t = &f->tensors[f->n_tensors++];
        if (!(t->name = cb_strdup(key, err)) || (rc = st_parse_entry(f, t, val, data_size, err))) {
            rc = -1;
            break;
        }
    }
    json_decref(root);
    if (rc) return rc;

    /* Overlaps: sort by begin; each non-empty range must start at or after
     * the end of every earlier one. Empty tensors occupy no bytes. */
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, st_cmp_begin);
    const st_tensor *prev = NULL;
    for (int i = 0; i < f->n_tensors; i++) {
        const st_tensor *t = &f->tensors[i];
        if (t->begin == t->end) continue;
        if (prev && t->begin < prev->end)
            return cb_err_set(err, "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap",
                              p, prev->name, prev->begin, prev->end, t->name, t->begin, t->end);
        if (!prev || t->end > prev->end) prev = t;
    }
    return 0;
}

int cb_st_open(st_file *f, const char *path, cb_err *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cb_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st)) {
        int e = errno;
        close(fd);
        return cb_err_set(err, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cb_err_set(err, "%s: not a regular file", path);
    }
    if (st.st_size < 8) {
        close(fd);
        return cb_err_set(err, "%s: file is %lld bytes, too short for the 8-byte header "
                          "length (truncated?)", path, (long long)st.st_size);
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) return cb_err_set(err, "%s: cannot mmap: %s", path, strerror(e));
    f->map = map;
    f->map_size = (size_t)st.st_size;
    if (!(f->path = cb_strdup(path, err)) || st_parse_header(f, err)) {
        cb_st_close(f);
        return -1;
    }
    return 0;
}

int cb_st_open_mem(st_file *f, const char *name, const void *data, size_t size, cb_err *err) {
    memset(f, 0, sizeof *f);
    if (size < 8)
        return cb_err_set(err, "%s: file is %zu bytes, too short for the 8-byte header length (truncated?)", name,
                          size);
    f->map = (uint8_t *)data;   /* only ever read */
    f->map_size = size;
    f->borrowed = 1;
    if (!(f->path = cb_strdup(name, err)) || st_parse_header(f, err)) {
        cb_st_close(f);
        return -1;
    }
    return 0;
}

const st_tensor *cb_st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

/* IEEE half to single, exact for every input (subnormals, inf, nan). */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);           /* inf, nan (payload kept) */
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);   /* normal: rebias 15 -> 127 */
    } else if (man == 0) {
        bits = sign;                                       /* +-0 */
    } else {                                               /* subnormal: normalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float x;
    memcpy(&x, &bits, 4);
    return x;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float x;
    memcpy(&x, &bits, 4);
    return x;
}

float cb_st_f16_to_f32(uint16_t h) { return f16_to_f32(h); }

int cb_st_read_f32(const st_file *f, const char *name, float *out, int ndim,
                const int64_t *shape, cb_err *err) {
    const st_tensor *t = cb_st_find(f, name);
    if (!t) return cb_err_set(err, "%s: tensor '%s' not found (the file has %d tensors)",
                              f->path, name, f->n_tensors);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char s1[160], s2[160];
        return cb_err_set(err, "%s: tensor '%s': shape %s, expected %s", f->path, name,
                          shape_str(s1, sizeof s1, t->ndim, t->shape),
                          shape_str(s2, sizeof s2, ndim, shape));
    }
    const uint8_t *src = f->map + f->data_start + t->begin;
    size_t n = (t->end - t->begin) / st_dtypes[t->dtype].size;
    switch (t->dtype) {
    case ST_F32:
        memcpy(out, src, n * 4);
        break;
    case ST_F16:
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);                   /* unaligned-safe */
            out[i] = t->dtype == ST_F16 ? f16_to_f32(h) : bf16_to_f32(h);
        }
        break;
    default:
        return cb_err_set(err, "%s: tensor '%s': dtype %s, expected a float tensor "
                          "(F32, F16 or BF16)", f->path, name, st_dtypes[t->dtype].name);
    }
    /* A NaN or an infinity in the weights poisons every output (and some
     * kernels index tables with them): refused here, at load. */
    for (size_t i = 0; i < n; i++) {
        if (isfinite(out[i])) continue;
        char idx[160];
        int64_t rest = (int64_t)i, at[ST_MAX_DIMS];
        for (int d = t->ndim - 1; d >= 0; d--) {
            at[d] = t->shape[d] ? rest % t->shape[d] : 0;
            rest = t->shape[d] ? rest / t->shape[d] : 0;
        }
        return cb_err_set(err, "%s: tensor '%s': element %s is %s (byte %zu of the file); the weights are "
                          "corrupt or diverged", f->path, name, shape_str(idx, sizeof idx, t->ndim, at),
                          isnan(out[i]) ? "NaN" : "infinite",
                          f->data_start + t->begin + i * st_dtypes[t->dtype].size);
    }
    return 0;
}

/* ---- writing ------------------------------------------------------------ */

static int write_all(FILE *fp, const void *p, size_t n) {
    return fwrite(p, 1, n, fp) == n ? 0 : -1;
}

int cb_st_write(const char *path, const st_wtensor *tensors, int n, cb_err *err) {
    /* Header: tensors in the given order, data packed back to back. */
    json_t *root = json_object();
    json_t *meta = json_object();
    json_object_set_new(meta, "format", json_string("pt"));
    json_object_set_new(root, "__metadata__", meta);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const st_wtensor *t = &tensors[i];
        CB_ASSERT(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
        size_t nbytes = cb_st_dtype_size(t->dtype);
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) {
            CB_ASSERT(t->shape[d] >= 0);
            CB_ASSERT(!__builtin_mul_overflow(nbytes, (size_t)t->shape[d], &nbytes));
            json_array_append_new(shape, json_integer(t->shape[d]));
        }
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string(cb_st_dtype_name(t->dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets",
                            json_pack("[II]", (json_int_t)off, (json_int_t)(off + nbytes)));
        if (json_object_get(root, t->name)) {
            json_decref(e);
            json_decref(root);
            return cb_err_set(err, "%s: cannot write: tensor name '%s' given twice",
                              path, t->name);
        }
        json_object_set_new(root, t->name, e);
        off += nbytes;
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!hdr) return cb_err_set(err, "%s: cannot write: out of memory for the header", path);
    /* Pad the header with spaces so that the data starts 8-byte aligned. */
    size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));

    char *tmp;
    FILE *fp = cb_out_open(path, &tmp, err);
    if (!fp) {
        free(hdr);
        return -1;
    }
    int bad = write_all(fp, len8, 8) || write_all(fp, hdr, hlen) ||
              write_all(fp, "        ", padded - hlen);
    free(hdr);
    for (int i = 0; i < n && !bad; i++) {
        size_t nbytes = cb_st_dtype_size(tensors[i].dtype);
        for (int d = 0; d < tensors[i].ndim; d++) nbytes *= (size_t)tensors[i].shape[d];
        bad = write_all(fp, tensors[i].data, nbytes);
    }
    if (bad) {
        cb_err_set(err, "%s: cannot write: %s", path, strerror(errno));
        cb_out_abort(fp, tmp);
        return -1;
    }
    return cb_out_commit(fp, tmp, path, err);
}
