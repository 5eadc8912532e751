/* data_load.c: the ColBERT training files (queries, collection, triples) as
 * colbert-ai reads them; see data_load.h. */
#include "data.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A decimal integer of s[0..n): 0 with *out; -1 when it is not one; -2
 * when it is one but does not fit in int64 (colbert-ai's ids are Python
 * ints; ours are 64-bit, and a wrapped id would silently name another
 * text). */
static int parse_int64(const char *s, size_t n, int64_t *out) {
    if (n == 0) return -1;
    size_t i = 0;
    int neg = 0;
    if (s[0] == '-' || s[0] == '+') { neg = s[0] == '-'; i = 1; }
    if (i == n) return -1;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    int over = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (over || v > (lim - d) / 10) over = 1;
        else v = v * 10 + d;
    }
    if (over) return -2;
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    return 0;
}

static int is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

typedef struct tbuild {
    data_texts *t;
    size_t cap_n, cap_buf, nbuf;
} tbuild;

/* Append text a + sep + c with this id. Returns 0, or -1 with err. */
static int tb_add(tbuild *b, int64_t id, const char *a, size_t na, const char *sep,
                  const char *c, size_t nc, cb_err *err) {
    data_texts *t = b->t;
    size_t ns = sep ? strlen(sep) : 0, need = na + ns + nc + 1;
    if (t->n + 1 >= b->cap_n) {
        size_t cap = b->cap_n ? 2 * b->cap_n : 1024;
        int64_t *ids = cb_realloc(t->ids, cap * sizeof *t->ids, "the texts", err);
        if (!ids) return -1;
        t->ids = ids;
        uint64_t *off = cb_realloc(t->off, (cap + 1) * sizeof *t->off, "the texts", err);
        if (!off) return -1;
        t->off = off;
        b->cap_n = cap;
    }
    if (b->nbuf + need > b->cap_buf) {
        size_t cap = b->cap_buf ? b->cap_buf : 1 << 16;
        while (b->nbuf + need > cap) cap *= 2;
        char *buf = cb_realloc(t->buf, cap, "the texts", err);
        if (!buf) return -1;
        t->buf = buf;
        b->cap_buf = cap;
    }
    char *o = t->buf + b->nbuf;
    memcpy(o, a, na);
    if (ns) memcpy(o + na, sep, ns);
    if (nc) memcpy(o + na + ns, c, nc);
    o[na + ns + nc] = '\0';
    t->ids[t->n] = id;
    t->off[t->n] = b->nbuf;
    b->nbuf += need;
    t->n++;
    t->off[t->n] = b->nbuf;
    return 0;
}

static int cmp_by_id(const void *a, const void *b, void *ctx) {
    const int64_t *ids = ctx;
    int64_t x = ids[*(const size_t *)a], y = ids[*(const size_t *)b];
    return x < y ? -1 : x > y;
}

/* kind 0: queries; 1: collection. */
static int texts_load(data_texts *t, const char *path, int kind, cb_err *err) {
    memset(t, 0, sizeof *t);
    data_lines r;
    if (cb_data_lines_open(&r, path, err)) return -1;
    tbuild b = {t, 0, 0, 0};
    char *line;
    size_t len;
    int rc;
    while ((rc = cb_data_lines_next(&r, &line, &len, err)) == 1) {
        size_t bad;
        if (!cb_data_utf8_valid(line, len, &bad)) {
            cb_err_set(err, "%s:%lld: invalid UTF-8 at column %zu", path, (long long)r.lineno, bad + 1);
            goto fail;
        }
        /* colbert-ai strips the line (queries: all white space; collection:
         * '\n', '\r' and ' ') and splits on tabs. */
        size_t a = 0, z = len;
        if (kind == 0) {
            while (a < z && is_ws(line[a])) a++;
            while (z > a && is_ws(line[z - 1])) z--;
        } else {
            while (a < z && (line[a] == ' ' || line[a] == '\r')) a++;
            while (z > a && (line[z - 1] == ' ' || line[z - 1] == '\r')) z--;
        }
        if (kind == 0 && a == z) continue;   /* blank line */
        char *f0 = line + a, *e = line + z;
        char *t1 = memchr(f0, '\t', (size_t)(e - f0));
        if (!t1) {
            cb_err_set(err, "%s:%lld: expected \"id<TAB>text\", found no tab", path, (long long)r.lineno);
            goto fail;
        }
        int64_t id;
        int pr = parse_int64(f0, (size_t)(t1 - f0), &id);
        if (pr == -2) {
            cb_err_set(err, "%s:%lld: id \"%.*s%s\" is out of range (ids are 64-bit integers, at most "
                       "9223372036854775807 in magnitude)", path, (long long)r.lineno,
                       (int)((t1 - f0) > 40 ? 40 : (t1 - f0)), f0, (t1 - f0) > 40 ? "..." : "");
            goto fail;
        }
        if (pr) {
            cb_err_set(err, "%s:%lld: expected an integer id before the tab, found \"%.*s\"", path,
                       (long long)r.lineno, (int)((t1 - f0) > 40 ? 40 : (t1 - f0)), f0);
            goto fail;
        }
        char *f1 = t1 + 1, *t2 = memchr(f1, '\t', (size_t)(e - f1));
        size_t n1 = t2 ? (size_t)(t2 - f1) : (size_t)(e - f1);
        if (kind == 1) {
            if (id != (int64_t)t->n) {
                cb_err_set(err, "%s:%lld: expected passage id %zu (ids count lines from 0), found %lld",
                           path, (long long)r.lineno, t->n, (long long)id);
                goto fail;
            }
            if (t2) {   /* "pid passage title" -> "title | passage" */
                char *f2 = t2 + 1, *t3 = memchr(f2, '\t', (size_t)(e - f2));
                size_t n2 = t3 ? (size_t)(t3 - f2) : (size_t)(e - f2);
                if (tb_add(&b, id, f2, n2, " | ", f1, n1, err)) goto fail_line;
                continue;
            }
        }
        if (tb_add(&b, id, f1, n1, NULL, NULL, 0, err)) goto fail_line;
    }
    if (rc < 0) goto fail;
    cb_data_lines_close(&r);
    if (!t->off && !(t->off = cb_calloc(1, sizeof *t->off, "the texts", err))) goto fail;
    t->dense = 1;
    for (size_t i = 0; i < t->n; i++)
        if (t->ids[i] != (int64_t)i) { t->dense = 0; break; }
    if (!t->dense) {
        if (!(t->by_id = cb_malloc(t->n * sizeof *t->by_id, "the id index", err))) goto fail;
        for (size_t i = 0; i < t->n; i++) t->by_id[i] = i;
        qsort_r(t->by_id, t->n, sizeof *t->by_id, cmp_by_id, t->ids);
        for (size_t i = 1; i < t->n; i++)
            if (t->ids[t->by_id[i]] == t->ids[t->by_id[i - 1]]) {
                cb_err_set(err, "%s: query id %lld is repeated", path, (long long)t->ids[t->by_id[i]]);
                cb_data_texts_free(t);
                return -1;
            }
    }
    return 0;
fail_line:
    cb_err_prefix(err, "%s:%lld", path, (long long)r.lineno);
fail:
    cb_data_lines_close(&r);
    cb_data_texts_free(t);
    return -1;
}

int cb_data_queries_load(data_texts *t, const char *path, cb_err *err) {
    return texts_load(t, path, 0, err);
}

int cb_data_collection_load(data_texts *t, const char *path, cb_err *err) {
    return texts_load(t, path, 1, err);
}

int64_t cb_data_texts_find(const data_texts *t, int64_t id) {
    if (t->dense) return id >= 0 && (uint64_t)id < t->n ? id : -1;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int64_t v = t->ids[t->by_id[mid]];
        if (v == id) return (int64_t)t->by_id[mid];
        if (v < id) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

const char *cb_data_texts_get(const data_texts *t, size_t i, size_t *len) {
    CB_ASSERT(i < t->n);
    if (len) *len = (size_t)(t->off[i + 1] - t->off[i] - 1);
    return t->buf + t->off[i];
}

void cb_data_texts_free(data_texts *t) {
    free(t->ids);
    free(t->off);
    free(t->buf);
    free(t->by_id);
    memset(t, 0, sizeof *t);
}

/* Room for twice as many examples (*cap of them now). */
static int triples_grow(data_triples *t, size_t *cap, int nway, cb_err *err) {
    size_t c = *cap ? 2 * *cap : 4096;
    int64_t *q = cb_realloc(t->qids, c * sizeof *t->qids, "the triples", err);
    if (!q) return -1;
    t->qids = q;
    int64_t *p = cb_realloc(t->pids, c * (size_t)nway * sizeof *t->pids, "the triples", err);
    if (!p) return -1;
    t->pids = p;
    float *s = cb_realloc(t->scores, c * (size_t)nway * sizeof *t->scores, "the triples", err);
    if (!s) return -1;
    t->scores = s;
    *cap = c;
    return 0;
}

int cb_data_triples_load(data_triples *t, const char *path, int nway, cb_err *err) {
    memset(t, 0, sizeof *t);
    data_lines r;
    if (cb_data_lines_open(&r, path, err)) return -1;
    data_json j = {0};
    size_t cap = 0;
    int scored = -1;
    char *line;
    size_t len;
    int rc;
    while ((rc = cb_data_lines_next(&r, &line, &len, err)) == 1) {
        size_t a = 0;
        while (a < len && is_ws(line[a])) a++;
        if (a == len) continue;
        if (cb_data_json_parse(&j, line, len, err)) {
            cb_err_prefix(err, "%s:%lld", path, (long long)r.lineno);
            goto fail;
        }
        const dj_node *root = &j.nodes[0];
        if (root->type != DJ_ARRAY || root->n < 2) {
            cb_err_set(err, "%s:%lld: expected a list [qid, pid, pid, ...], found %s%s", path,
                       (long long)r.lineno, cb_data_json_type_name(root->type),
                       root->type == DJ_ARRAY ? " of fewer than 2 items" : "");
            goto fail;
        }
        int have = (int)root->n - 1;
        if (t->n == 0) {
            if (nway <= 0) nway = have;
            t->nway = nway;
        }
        if (have < nway) {
            cb_err_set(err, "%s:%lld: expected a query id and %d passages, found %d passages", path,
                       (long long)r.lineno, nway, have);
            goto fail;
        }
        if (t->n == cap && triples_grow(t, &cap, nway, err)) {
            cb_err_prefix(err, "%s:%lld", path, (long long)r.lineno);
            goto fail;
        }
        size_t i = 1;
        if (j.nodes[i].type != DJ_NUMBER || !j.nodes[i].is_int) {
            cb_err_set(err, "%s:%lld: expected an integer query id first, found %s", path,
                       (long long)r.lineno, cb_data_json_type_name(j.nodes[i].type));
            goto fail;
        }
        t->qids[t->n] = j.nodes[i].i;
        i = j.nodes[i].next;
        for (int k = 0; k < nway; k++) {
            const dj_node *e = &j.nodes[i];
            int is_pair = e->type == DJ_ARRAY;
            if (scored < 0) scored = is_pair;
            if (is_pair != scored) {
                cb_err_set(err, "%s:%lld: passage %d is %s but the first line has %s", path,
                           (long long)r.lineno, k + 1, is_pair ? "a [pid, score] pair" : "a bare pid",
                           scored ? "[pid, score] pairs" : "bare pids");
                goto fail;
            }
            const dj_node *pid = e, *sc = NULL;
            if (is_pair) {
                if (e->n != 2) {
                    cb_err_set(err, "%s:%lld: expected [pid, score] for passage %d, found a list of %u",
                               path, (long long)r.lineno, k + 1, e->n);
                    goto fail;
                }
                pid = &j.nodes[i + 1];
                sc = &j.nodes[pid->next];
                if (sc->type != DJ_NUMBER) {
                    cb_err_set(err, "%s:%lld: expected a number as the score of passage %d, found %s",
                               path, (long long)r.lineno, k + 1, cb_data_json_type_name(sc->type));
                    goto fail;
                }
                if (!(fabs(sc->num) <= FLT_MAX)) {   /* scores are float32, as colbert-ai's */
                    cb_err_set(err, "%s:%lld: the score of passage %d, %.*s, is out of the float range",
                               path, (long long)r.lineno, k + 1, (int)(sc->len > 40 ? 40 : sc->len), sc->s);
                    goto fail;
                }
            }
            if (pid->type != DJ_NUMBER || !pid->is_int || pid->i < 0) {
                cb_err_set(err, "%s:%lld: expected a passage id (integer >= 0) for passage %d, found %s",
                           path, (long long)r.lineno, k + 1, cb_data_json_type_name(pid->type));
                goto fail;
            }
            t->pids[t->n * (size_t)nway + (size_t)k] = pid->i;
            t->scores[t->n * (size_t)nway + (size_t)k] = sc ? (float)sc->num : 0.0f;
            i = e->next;
        }
        t->n++;
    }
    if (rc < 0) goto fail;
    cb_data_lines_close(&r);
    cb_data_json_free(&j);
    if (t->n == 0) {
        cb_err_set(err, "%s: no training examples (the file is empty)", path);
        cb_data_triples_free(t);
        return -1;
    }
    if (!scored) {
        free(t->scores);
        t->scores = NULL;
    }
    return 0;
fail:
    cb_data_lines_close(&r);
    cb_data_json_free(&j);
    cb_data_triples_free(t);
    return -1;
}

void cb_data_triples_free(data_triples *t) {
    free(t->qids);
    free(t->pids);
    free(t->scores);
    memset(t, 0, sizeof *t);
}
