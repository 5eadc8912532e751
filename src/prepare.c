/* prepare.c: pairs, labeled pairs and triplets -> ColBERT training files;
 * see prepare.h for the contract and ../shared/SPEC.md section 2. */
#include "prepare.h"
#include "data.h"
#include "progress.h"
#include "rng.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define NONE UINT32_MAX

/* rng streams: one per purpose, and one per query from STREAM_QUERY on. */
enum { STREAM_COLLECTION = 1, STREAM_TRIPLES = 2, STREAM_QUERY = 1000 };

/* ======================================================================== */
/* String table: interning (text -> dense id) with one text arena           */
/* ======================================================================== */

typedef struct strtab {
    char *buf;          /* texts, each NUL-terminated */
    uint64_t nbuf, capbuf;
    uint64_t *off;      /* [n+1] */
    uint32_t *hlo;      /* [n] low hash bits, to re-insert when growing */
    size_t n, cap;
    uint64_t *slots;    /* [mask+1]: hash high bits << 32 | (id + 1); 0 = empty */
    size_t mask;
} strtab;

static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

/* A fast 64-bit hash, two independent lanes of 8 bytes; quality only matters
 * for speed (ids never depend on it, equal hashes are resolved by memcmp).
 * Long texts are hashed by their length, first 256 and last 256 bytes: a
 * document is read once but may be looked up many times, and texts that
 * differ only in the middle merely share a probe chain. */
static uint64_t hash_bytes_all(const char *s, size_t n);

static uint64_t hash_bytes(const char *s, size_t n) {
    if (n <= 512) return hash_bytes_all(s, n);
    return hash_bytes_all(s, 256) ^ rotl64(hash_bytes_all(s + n - 256, 256), 23) ^
           ((uint64_t)n * 0x9e3779b97f4a7c15ULL);
}

static uint64_t hash_bytes_all(const char *s, size_t n) {
    const uint64_t m1 = 0x9e3779b97f4a7c15ULL, m2 = 0xc2b2ae3d27d4eb4fULL;
    uint64_t h1 = 0x243f6a8885a308d3ULL ^ ((uint64_t)n * m2), h2 = 0x13198a2e03707344ULL;
    while (n >= 16) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + 8, 8);
        h1 = rotl64((h1 ^ a) * m1, 29);
        h2 = rotl64((h2 ^ b) * m2, 31);
        s += 16;
        n -= 16;
    }
    uint64_t a = 0, b = 0;
    if (n > 8) {
        memcpy(&a, s, 8);
        memcpy(&b, s + 8, n - 8);
    } else {
        memcpy(&a, s, n);
    }
    h1 = rotl64((h1 ^ a) * m1, 29);
    h2 = rotl64((h2 ^ b) * m2, 31);
    uint64_t h = h1 ^ rotl64(h2, 17);
    h = (h ^ (h >> 33)) * 0xff51afd7ed558ccdULL;
    h = (h ^ (h >> 33)) * 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static void strtab_free(strtab *t) {
    free(t->buf);
    free(t->off);
    free(t->hlo);
    free(t->slots);
    memset(t, 0, sizeof *t);
}

static size_t strtab_len(const strtab *t, size_t id) {
    return (size_t)(t->off[id + 1] - t->off[id] - 1);
}

static const char *strtab_get(const strtab *t, size_t id) { return t->buf + t->off[id]; }

/* Append a text without interning; returns its id. */
static uint32_t strtab_append_h(strtab *t, const char *s, size_t n, uint64_t h) {
    if (t->n + 1 >= t->cap) {
        t->cap = t->cap ? 2 * t->cap : 1024;
        t->off = cb_xrealloc(t->off, (t->cap + 1) * sizeof *t->off);
        t->hlo = cb_xrealloc(t->hlo, t->cap * sizeof *t->hlo);
        if (t->n == 0) t->off[0] = 0;
    }
    if (t->nbuf + n + 1 > t->capbuf) {
        while (t->nbuf + n + 1 > t->capbuf) t->capbuf = t->capbuf ? 2 * t->capbuf : 1 << 16;
        t->buf = cb_xrealloc(t->buf, t->capbuf);
    }
    memcpy(t->buf + t->nbuf, s, n);
    t->buf[t->nbuf + n] = '\0';
    t->nbuf += n + 1;
    t->hlo[t->n] = (uint32_t)h;
    t->n++;
    t->off[t->n] = t->nbuf;
    CB_ASSERT(t->n < NONE / 2);
    return (uint32_t)(t->n - 1);
}

static void strtab_grow(strtab *t) {
    size_t ns = t->slots ? 2 * (t->mask + 1) : 1 << 12;
    uint64_t *old = t->slots;
    size_t oldn = t->slots ? t->mask + 1 : 0;
    t->slots = cb_xcalloc(ns, sizeof *t->slots);
    t->mask = ns - 1;
    for (size_t i = 0; i < oldn; i++) {
        if (!old[i]) continue;
        uint32_t id = (uint32_t)old[i] - 1;
        size_t pos = t->hlo[id] & t->mask;
        while (t->slots[pos]) pos = (pos + 1) & t->mask;
        t->slots[pos] = old[i];
    }
    free(old);
}

/* Id of text s[0..n): the existing one, or a new one (*is_new = 1). */
static uint32_t strtab_intern(strtab *t, const char *s, size_t n, int *is_new) {
    if (!t->slots || 2 * (t->n + 1) > t->mask + 1) strtab_grow(t);
    uint64_t h = hash_bytes(s, n);
    uint32_t tag = (uint32_t)(h >> 32);
    size_t pos = (uint32_t)h & t->mask;
    for (;;) {
        uint64_t e = t->slots[pos];
        if (!e) break;
        if ((uint32_t)(e >> 32) == tag) {
            uint32_t id = (uint32_t)e - 1;
            if (strtab_len(t, id) == n && !memcmp(strtab_get(t, id), s, n)) {
                if (is_new) *is_new = 0;
                return id;
            }
        }
        pos = (pos + 1) & t->mask;
    }
    uint32_t id = strtab_append_h(t, s, n, h);
    t->slots[pos] = ((uint64_t)tag << 32) | ((uint64_t)id + 1);
    if (is_new) *is_new = 1;
    return id;
}

/* Id of text s[0..n) if interned, else NONE. */
static uint32_t strtab_find(const strtab *t, const char *s, size_t n) {
    if (!t->slots) return NONE;
    uint64_t h = hash_bytes(s, n);
    uint32_t tag = (uint32_t)(h >> 32);
    for (size_t pos = (uint32_t)h & t->mask;; pos = (pos + 1) & t->mask) {
        uint64_t e = t->slots[pos];
        if (!e) return NONE;
        uint32_t id = (uint32_t)e - 1;
        if ((uint32_t)(e >> 32) == tag && strtab_len(t, id) == n && !memcmp(strtab_get(t, id), s, n))
            return id;
    }
}

/* ======================================================================== */
/* State                                                                    */
/* ======================================================================== */

typedef struct label {
    const char *text;
    size_t len;
    int is_int;
    int64_t v;
} label;

typedef struct edge {
    uint32_t q;
    uint32_t d;         /* document id << 1 | 1 for a negative */
} edge;

struct prepare {
    prepare_opts o;
    label pos, neg;
    strtab q, d;                /* queries, documents (ids in first-seen order) */
    edge *e;
    size_t ne, cape;
    prepare_kind kind;          /* detected or forced; AUTO until the first record */
    char *kind_path;            /* where the kind was decided */
    int64_t kind_line;
    data_json j;
    char *scratch;              /* joined title + text */
    size_t cap_scratch;
    prepare_stats st;
    /* after prepare_run */
    uint32_t *iid_of;           /* [C] pid -> document id */
    uint32_t *pid_of;           /* [C] document id -> pid */
    uint64_t *qoff;             /* [nq+1] per-query segments of qd */
    uint32_t *qd;               /* pids: positives then negatives, sorted */
    uint32_t *npos, *nneg;      /* [nq] */
    uint32_t *trip;             /* [ntrip, 3] */
    size_t ntrip, captrip;
    int ran;
};

void prepare_opts_default(prepare_opts *o) {
    memset(o, 0, sizeof *o);
    o->kind = PREPARE_KIND_AUTO;
    o->num_new_negatives = 10;
    o->max_triplets_per_query = 20;
    o->positive_label = "1";
    o->negative_label = "0";
    o->seed = 42;
    o->negatives = PREPARE_NEG_RANDOM;
    o->title_sep = " ";
}

static void label_init(label *l, const char *text) {
    l->text = text;
    l->len = strlen(text);
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    l->is_int = l->len > 0 && *end == '\0' && errno == 0;
    l->v = v;
}

prepare *prepare_new(const prepare_opts *opts) {
    prepare *p = cb_xcalloc(1, sizeof *p);
    p->o = *opts;
    if (!p->o.title_sep) p->o.title_sep = " ";
    if (!p->o.positive_label) p->o.positive_label = "1";
    if (!p->o.negative_label) p->o.negative_label = "0";
    if (p->o.max_triplets_per_query <= 0) p->o.max_triplets_per_query = 20;
    label_init(&p->pos, p->o.positive_label);
    label_init(&p->neg, p->o.negative_label);
    p->kind = p->o.kind;
    p->st.neg_min = -1;
    return p;
}

void prepare_free(prepare *p) {
    if (!p) return;
    strtab_free(&p->q);
    strtab_free(&p->d);
    free(p->e);
    free(p->kind_path);
    data_json_free(&p->j);
    free(p->scratch);
    free(p->iid_of);
    free(p->pid_of);
    free(p->qoff);
    free(p->qd);
    free(p->npos);
    free(p->nneg);
    free(p->trip);
    free(p);
}

const char *prepare_kind_name(prepare_kind k) {
    switch (k) {
    case PREPARE_KIND_AUTO: return "auto";
    case PREPARE_KIND_PAIRS: return "pairs";
    case PREPARE_KIND_LABELED: return "labeled pairs";
    case PREPARE_KIND_TRIPLETS: return "triplets";
    }
    return "?";
}

/* ======================================================================== */
/* Adding texts                                                             */
/* ======================================================================== */

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f')) return 0;
    }
    return 1;
}

static void add_edge(prepare *p, uint32_t q, uint32_t d, int positive) {
    if (p->ne == p->cape) {
        p->cape = p->cape ? 2 * p->cape : 1 << 16;
        p->e = cb_xrealloc(p->e, p->cape * sizeof *p->e);
    }
    p->e[p->ne].q = q;
    p->e[p->ne].d = d << 1 | (positive ? 0u : 1u);
    p->ne++;
}

static uint32_t add_doc(prepare *p, const char *s, size_t n) {
    return strtab_intern(&p->d, s, n, NULL);
}

int prepare_add_example(prepare *p, const char *query, size_t qlen, const char *passage,
                        size_t plen, int positive, cb_err *err) {
    size_t bad;
    if (is_blank(query, qlen)) return cb_err_set(err, "empty query");
    if (is_blank(passage, plen)) return cb_err_set(err, "empty passage");
    if (!data_utf8_valid(query, qlen, &bad)) return cb_err_set(err, "invalid UTF-8 in the query at byte %zu", bad);
    if (!data_utf8_valid(passage, plen, &bad)) return cb_err_set(err, "invalid UTF-8 in the passage at byte %zu", bad);
    uint32_t q = strtab_intern(&p->q, query, qlen, NULL);
    add_edge(p, q, add_doc(p, passage, plen), positive);
    p->st.records++;
    return 0;
}

/* title + sep + text in p->scratch (or text alone when no title). */
static const char *join_title(prepare *p, const char *title, size_t nt, const char *text,
                              size_t nx, size_t *len) {
    if (p->o.no_title || !title || is_blank(title, nt)) {
        *len = nx;
        return text;
    }
    if (is_blank(text, nx)) {
        *len = nt;
        return title;
    }
    size_t ns = strlen(p->o.title_sep), need = nt + ns + nx + 1;
    if (need > p->cap_scratch) {
        p->cap_scratch = need * 2;
        p->scratch = cb_xrealloc(p->scratch, p->cap_scratch);
    }
    memcpy(p->scratch, title, nt);
    memcpy(p->scratch + nt, p->o.title_sep, ns);
    memcpy(p->scratch + nt + ns, text, nx);
    *len = nt + ns + nx;
    return p->scratch;
}

/* Progress by megabytes read, shown only for inputs of 64 MB or more. */
static void progress_start(progress *pg, const prepare *p, const data_lines *r, const char *what) {
    int64_t mb = r->size >> 20;
    progress_init(pg, what, "MB", mb, p->o.quiet || mb < 64);
}

static int read_err(cb_err *err, const data_lines *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int read_err(cb_err *err, const data_lines *r, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cb_err_set(err, "%s:%lld: %s", r->path, (long long)r->lineno, msg);
}

static int check_utf8_line(const data_lines *r, const char *line, size_t len, cb_err *err) {
    size_t bad;
    if (data_utf8_valid(line, len, &bad)) return 0;
    return read_err(err, r, "invalid UTF-8 at column %zu (byte 0x%02x)", bad + 1,
                    (unsigned char)line[bad]);
}

/* Short quoted excerpt of s for messages. */
static const char *excerpt(char *buf, size_t cap, const char *s, size_t n) {
    size_t k = n < cap - 8 ? n : cap - 8;
    while (k > 0 && k < n && ((unsigned char)s[k] & 0xc0) == 0x80) k--;   /* whole characters */
    snprintf(buf, cap, "\"%.*s%s\"", (int)k, s, k < n ? "..." : "");
    return buf;
}

/* ---- corpus files ------------------------------------------------------- */

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

int prepare_add_corpus(prepare *p, const char *path, cb_err *err) {
    data_lines r;
    if (data_lines_open(&r, path, err)) return -1;
    enum { F_UNKNOWN, F_JSONL, F_TSV, F_PLAIN } form = F_UNKNOWN;
    if (ends_with(path, ".jsonl") || ends_with(path, ".json")) form = F_JSONL;
    else if (ends_with(path, ".tsv")) form = F_TSV;
    progress pg;
    progress_start(&pg, p, &r, "corpus");
    int64_t docs = 0;
    char *line;
    size_t len;
    int rc;
    while ((rc = data_lines_next(&r, &line, &len, err)) == 1) {
        if ((r.lineno & 4095) == 0) progress_update(&pg, r.bytes_read >> 20);
        if (is_blank(line, len)) continue;
        if (form == F_UNKNOWN) {
            size_t a = 0;
            while (a < len && (line[a] == ' ' || line[a] == '\t')) a++;
            form = line[a] == '{' ? F_JSONL : F_PLAIN;
        }
        const char *text = line;
        size_t n = len;
        if (form == F_JSONL) {
            if (data_json_parse(&p->j, line, len, err)) goto fail_prefix;
            const dj_node *nd = p->j.nodes;
            if (nd[0].type == DJ_STRING) {
                text = nd[0].s;
                n = nd[0].len;
            } else {
                int64_t it = data_json_get(&p->j, 0, "text"), ti = data_json_get(&p->j, 0, "title");
                if (nd[0].type != DJ_OBJECT || it < 0 || nd[it].type != DJ_STRING) {
                    read_err(err, &r, "expected an object with a \"text\" string, found %s%s",
                             data_json_type_name(nd[0].type),
                             nd[0].type == DJ_OBJECT ? (it < 0 ? " without \"text\"" : " whose \"text\" is not a string") : "");
                    goto fail;
                }
                if (ti >= 0 && nd[ti].type != DJ_STRING && nd[ti].type != DJ_NULL) {
                    read_err(err, &r, "expected \"title\" to be a string, found %s", data_json_type_name(nd[ti].type));
                    goto fail;
                }
                int has_title = ti >= 0 && nd[ti].type == DJ_STRING;
                text = join_title(p, has_title ? nd[ti].s : NULL, has_title ? nd[ti].len : 0,
                                  nd[it].s, nd[it].len, &n);
            }
        } else {
            if (check_utf8_line(&r, line, len, err)) goto fail;
            if (form == F_TSV) {
                char *t1 = memchr(line, '\t', len);
                if (!t1) {
                    read_err(err, &r, "expected \"id<TAB>text\", found no tab");
                    goto fail;
                }
                size_t idn = (size_t)(t1 - line);
                if (r.lineno == 1 && (idn == 2 || idn == 3 || idn == 5 || idn == 6) &&
                    (!strncasecmp(line, "id", idn) || !strncasecmp(line, "pid", idn) ||
                     !strncasecmp(line, "_id", idn) || !strncasecmp(line, "docid", idn) ||
                     !strncasecmp(line, "doc_id", idn)))
                    continue;   /* header */
                char *f1 = t1 + 1, *e = line + len, *t2 = memchr(f1, '\t', (size_t)(e - f1));
                if (t2) {   /* "id text title", as colbert-ai's collection files */
                    char *f2 = t2 + 1, *t3 = memchr(f2, '\t', (size_t)(e - f2));
                    text = join_title(p, f2, t3 ? (size_t)(t3 - f2) : (size_t)(e - f2), f1,
                                      (size_t)(t2 - f1), &n);
                } else {
                    text = f1;
                    n = (size_t)(e - f1);
                }
            }
        }
        if (is_blank(text, n)) {
            read_err(err, &r, "empty document");
            goto fail;
        }
        add_doc(p, text, n);
        docs++;
    }
    if (rc < 0) goto fail;
    progress_finish(&pg);
    if (docs == 0) {
        cb_err_set(err, "%s: empty file: expected one document a line", path);
        goto fail;
    }
    p->st.corpus_docs += docs;
    data_lines_close(&r);
    return 0;
fail_prefix:
    cb_err_prefix(err, "%s:%lld", path, (long long)r.lineno);
fail:
    data_lines_close(&r);
    return -1;
}

/* ---- training records ---------------------------------------------------- */

static int label_match_json(const label *l, const dj_node *nd) {
    if (nd->type == DJ_STRING) return nd->len == l->len && !memcmp(nd->s, l->text, l->len);
    if (!l->is_int) return 0;
    if (nd->type == DJ_NUMBER) return nd->is_int ? nd->i == l->v : nd->num == (double)l->v;
    if (nd->type == DJ_TRUE) return l->v == 1;
    if (nd->type == DJ_FALSE) return l->v == 0;
    return 0;
}

static int label_match_text(const label *l, const char *s, size_t n) {
    while (n > 0 && (*s == ' ')) { s++; n--; }
    while (n > 0 && s[n - 1] == ' ') n--;
    return n == l->len && !memcmp(s, l->text, n);
}

static int fields_of(prepare_kind k) { return k == PREPARE_KIND_PAIRS ? 2 : 3; }

/* Decide or check the kind for a record of nf fields; third: whether the
 * third field looks like a label (for detection). */
static int settle_kind(prepare *p, const data_lines *r, int nf, int third_is_label, cb_err *err) {
    if (nf != 2 && nf != 3)
        return read_err(err, r, "expected 2 fields (query, passage) or 3 (query, passage, label) or "
                        "(query, positive, negative), found %d", nf);
    if (p->kind == PREPARE_KIND_AUTO) {
        p->kind = nf == 2 ? PREPARE_KIND_PAIRS
                          : third_is_label ? PREPARE_KIND_LABELED : PREPARE_KIND_TRIPLETS;
        p->kind_path = cb_xstrdup(r->path);
        p->kind_line = r->lineno;
        return 0;
    }
    if (nf == fields_of(p->kind)) return 0;
    if (p->kind_path)
        return read_err(err, r, "mixed kinds: this record has %d fields but the first record "
                        "(%s:%lld) has %d (%s)", nf, p->kind_path, (long long)p->kind_line,
                        fields_of(p->kind), prepare_kind_name(p->kind));
    return read_err(err, r, "expected %d fields for %s (--kind), found %d", fields_of(p->kind),
                    prepare_kind_name(p->kind), nf);
}

static int label_value(prepare *p, const data_lines *r, int match_pos, int match_neg,
                       const char *found, cb_err *err) {
    if (match_pos) return 1;
    if (match_neg) return 0;
    return read_err(err, r, "label %s is neither the positive label %s nor the negative label %s "
                    "(set them with --positive-label and --negative-label)",
                    found, p->pos.text, p->neg.text);
}

static int empty_field(const data_lines *r, const char *what, int field, cb_err *err) {
    return read_err(err, r, "empty %s (field %d)", what, field);
}

/* Add the passage(s) of JSON node idx (field number f) to query q. */
static int add_json_passages(prepare *p, const data_lines *r, uint32_t q, size_t idx, int f,
                             int positive, cb_err *err) {
    const dj_node *nd = &p->j.nodes[idx];
    if (nd->type == DJ_STRING) {
        if (is_blank(nd->s, nd->len)) return empty_field(r, "passage", f, err);
        add_edge(p, q, add_doc(p, nd->s, nd->len), positive);
        return 0;
    }
    if (nd->type == DJ_ARRAY) {
        size_t i = idx + 1;
        for (uint32_t k = 0; k < nd->n; k++, i = p->j.nodes[i].next) {
            const dj_node *it = &p->j.nodes[i];
            if (it->type != DJ_STRING)
                return read_err(err, r, "field %d: item %u of the list is %s, expected a string",
                                f, k + 1, data_json_type_name(it->type));
            if (is_blank(it->s, it->len))
                return read_err(err, r, "empty passage (field %d, item %u)", f, k + 1);
            add_edge(p, q, add_doc(p, it->s, it->len), positive);
        }
        return 0;
    }
    if (nd->type == DJ_OBJECT) {
        int64_t c = data_json_get(&p->j, idx, "content");
        if (c < 0 || p->j.nodes[c].type != DJ_STRING)
            return read_err(err, r, "field %d: expected an object with a \"content\" string", f);
        const dj_node *cn = &p->j.nodes[c];
        if (is_blank(cn->s, cn->len)) return empty_field(r, "passage", f, err);
        add_edge(p, q, add_doc(p, cn->s, cn->len), positive);
        return 0;
    }
    if (f == 3 && (nd->type == DJ_NUMBER || nd->type == DJ_TRUE || nd->type == DJ_FALSE))
        return read_err(err, r, "field 3 is %s, not a negative passage: for labeled pairs pass "
                        "--kind labeled", data_json_type_name(nd->type));
    return read_err(err, r, "field %d: expected a passage (a string, a list of strings or "
                    "{\"content\": string}), found %s", f, data_json_type_name(nd->type));
}

static int add_jsonl_record(prepare *p, const data_lines *r, char *line, size_t len, cb_err *err) {
    if (data_json_parse(&p->j, line, len, err))
        return cb_err_prefix(err, "%s:%lld", r->path, (long long)r->lineno);
    const dj_node *nd = p->j.nodes;
    if (nd[0].type != DJ_ARRAY)
        return read_err(err, r, "expected a list [query, passage, ...], found %s",
                        data_json_type_name(nd[0].type));
    int nf = (int)nd[0].n;
    size_t f0 = 1, f1 = nf >= 2 ? nd[f0].next : 0, f2 = nf >= 3 ? nd[f1].next : 0;
    int third_is_label = 0;
    if (nf == 3) {
        const dj_node *t = &nd[f2];
        third_is_label = t->type == DJ_NUMBER || t->type == DJ_TRUE || t->type == DJ_FALSE ||
                         (t->type == DJ_STRING && (label_match_json(&p->pos, t) || label_match_json(&p->neg, t)));
    }
    if (settle_kind(p, r, nf, third_is_label, err)) return -1;
    if (nd[f0].type != DJ_STRING)
        return read_err(err, r, "field 1: expected the query as a string, found %s",
                        data_json_type_name(nd[f0].type));
    if (is_blank(nd[f0].s, nd[f0].len)) return empty_field(r, "query", 1, err);
    uint32_t q = strtab_intern(&p->q, nd[f0].s, nd[f0].len, NULL);
    switch (p->kind) {
    case PREPARE_KIND_PAIRS:
        if (add_json_passages(p, r, q, f1, 2, 1, err)) return -1;
        break;
    case PREPARE_KIND_LABELED: {
        char b[96];
        const dj_node *t = &nd[f2];
        const char *found = t->type == DJ_STRING ? excerpt(b, sizeof b, t->s, t->len)
                            : t->type == DJ_NUMBER ? excerpt(b, sizeof b, t->s, t->len)
                            : data_json_type_name(t->type);
        if (t->type == DJ_NUMBER) {   /* print the number without quotes */
            snprintf(b, sizeof b, "%.*s", (int)(t->len < 40 ? t->len : 40), t->s);
            found = b;
        }
        int lab = label_value(p, r, label_match_json(&p->pos, t), label_match_json(&p->neg, t), found, err);
        if (lab < 0) return -1;
        if (add_json_passages(p, r, q, f1, 2, lab, err)) return -1;
        break;
    }
    case PREPARE_KIND_TRIPLETS:
        if (add_json_passages(p, r, q, f1, 2, 1, err)) return -1;
        if (add_json_passages(p, r, q, f2, 3, 0, err)) return -1;
        break;
    case PREPARE_KIND_AUTO:
        CB_ASSERT(0);
    }
    return 0;
}

/* Split line[0, len) at tabs: the first `max` fields go to f/n; returns
 * the number of fields (which may exceed max). */
static int split_tabs(char *line, size_t len, char **f, size_t *n, int max) {
    int nf = 0;
    char *s = line, *e = line + len;
    for (;;) {
        char *t = memchr(s, '\t', (size_t)(e - s));
        if (nf < max) {
            f[nf] = s;
            n[nf] = t ? (size_t)(t - s) : (size_t)(e - s);
        }
        nf++;
        if (!t) break;
        s = t + 1;
    }
    return nf;
}

static int add_tsv_record(prepare *p, const data_lines *r, char *line, size_t len, cb_err *err) {
    if (check_utf8_line(r, line, len, err)) return -1;
    char *f[4];
    size_t n[4];
    int nf = split_tabs(line, len, f, n, 4);
    if (r->lineno == 1 && nf >= 2 && n[0] == 5 && !strncasecmp(f[0], "query", 5)) return 0;   /* header */
    int third_is_label = nf == 3 && (label_match_text(&p->pos, f[2], n[2]) || label_match_text(&p->neg, f[2], n[2]));
    if (settle_kind(p, r, nf, third_is_label, err)) return -1;
    if (is_blank(f[0], n[0])) return empty_field(r, "query", 1, err);
    if (is_blank(f[1], n[1])) return empty_field(r, "passage", 2, err);
    uint32_t q = strtab_intern(&p->q, f[0], n[0], NULL);
    int positive = 1;
    if (p->kind == PREPARE_KIND_LABELED) {
        char b[96];
        positive = label_value(p, r, label_match_text(&p->pos, f[2], n[2]),
                               label_match_text(&p->neg, f[2], n[2]), excerpt(b, sizeof b, f[2], n[2]), err);
        if (positive < 0) return -1;
    }
    add_edge(p, q, add_doc(p, f[1], n[1]), positive);
    if (p->kind == PREPARE_KIND_TRIPLETS) {
        if (is_blank(f[2], n[2])) return empty_field(r, "passage", 3, err);
        add_edge(p, q, add_doc(p, f[2], n[2]), 0);
    }
    return 0;
}

static int check_labels(const prepare *p, cb_err *err) {
    if (p->pos.len == p->neg.len && !memcmp(p->pos.text, p->neg.text, p->pos.len))
        return cb_err_set(err, "the positive and the negative label are both \"%s\"", p->pos.text);
    if (!p->pos.len || !p->neg.len) return cb_err_set(err, "a label is empty");
    return 0;
}

int prepare_add_train(prepare *p, const char *path, cb_err *err) {
    if (check_labels(p, err)) return -1;
    data_lines r;
    if (data_lines_open(&r, path, err)) return -1;
    progress pg;
    progress_start(&pg, p, &r, "read");
    int form = -1;   /* 1 JSONL, 0 TSV */
    int64_t records = 0;
    char *line;
    size_t len;
    int rc;
    while ((rc = data_lines_next(&r, &line, &len, err)) == 1) {
        if ((r.lineno & 4095) == 0) progress_update(&pg, r.bytes_read >> 20);
        if (is_blank(line, len)) continue;
        if (form < 0) {
            size_t a = 0;
            while (a < len && (line[a] == ' ' || line[a] == '\t')) a++;
            form = line[a] == '[' || line[a] == '{';
        }
        size_t ne0 = p->ne;
        if ((form ? add_jsonl_record(p, &r, line, len, err) : add_tsv_record(p, &r, line, len, err))) {
            data_lines_close(&r);
            return -1;
        }
        if (p->ne > ne0 || form) records++;
    }
    progress_finish(&pg);
    data_lines_close(&r);
    if (rc < 0) return -1;
    if (records == 0) return cb_err_set(err, "%s: empty file: expected one record a line", path);
    p->st.records += records;
    return 0;
}

/* ---- BEIR ------------------------------------------------------------------ */

/* The "_id" member of object node 0 as text (a string, or a number's text). */
static int beir_id(prepare *p, const data_lines *r, const char **s, size_t *n, cb_err *err) {
    int64_t k = data_json_get(&p->j, 0, "_id");
    if (p->j.nodes[0].type != DJ_OBJECT || k < 0)
        return read_err(err, r, "expected an object with \"_id\", found %s%s",
                        data_json_type_name(p->j.nodes[0].type),
                        p->j.nodes[0].type == DJ_OBJECT ? " without \"_id\"" : "");
    const dj_node *nd = &p->j.nodes[k];
    if (nd->type != DJ_STRING && nd->type != DJ_NUMBER)
        return read_err(err, r, "expected \"_id\" to be a string, found %s", data_json_type_name(nd->type));
    *s = nd->s;
    *n = nd->len;
    return 0;
}

static int beir_text(prepare *p, const data_lines *r, const char *key, int required,
                     const char **s, size_t *n, cb_err *err) {
    int64_t k = data_json_get(&p->j, 0, key);
    *s = NULL;
    *n = 0;
    if (k < 0 || p->j.nodes[k].type == DJ_NULL) {
        if (required) return read_err(err, r, "expected a \"%s\" string, found none", key);
        return 0;
    }
    if (p->j.nodes[k].type != DJ_STRING)
        return read_err(err, r, "expected \"%s\" to be a string, found %s", key,
                        data_json_type_name(p->j.nodes[k].type));
    *s = p->j.nodes[k].s;
    *n = p->j.nodes[k].len;
    return 0;
}

int prepare_add_beir(prepare *p, const char *dir, const char *split, cb_err *err) {
    if (!cb_dir_exists(dir)) return cb_err_set(err, "%s: not a directory (expected a BEIR dataset: "
                                               "corpus.jsonl, queries.jsonl, qrels/)", dir);
    char *corpus = cb_path_join(dir, "corpus.jsonl"), *queries = cb_path_join(dir, "queries.jsonl");
    char *qdir = cb_path_join(dir, "qrels"), qname[256];
    snprintf(qname, sizeof qname, "%s.tsv", split);
    char *qrels = cb_path_join(qdir, qname);
    strtab dids = {0}, qids = {0}, qtexts = {0};
    uint32_t *doc_of = NULL;   /* [dids.n] document id, NONE for an empty document */
    size_t cap_doc = 0;
    int64_t empty_docs = 0, pairs = 0;
    int ret = -1, rc;
    char *line;
    size_t len;
    data_lines r;
    progress pg;
    memset(&r, 0, sizeof r);

    /* corpus.jsonl: every document joins the collection */
    if (data_lines_open(&r, corpus, err)) goto done;
    progress_start(&pg, p, &r, "corpus");
    while ((rc = data_lines_next(&r, &line, &len, err)) == 1) {
        if ((r.lineno & 4095) == 0) progress_update(&pg, r.bytes_read >> 20);
        if (is_blank(line, len)) continue;
        if (data_json_parse(&p->j, line, len, err)) {
            cb_err_prefix(err, "%s:%lld", corpus, (long long)r.lineno);
            goto done;
        }
        const char *id, *title, *text;
        size_t nid, nt, nx, n;
        if (beir_id(p, &r, &id, &nid, err) || beir_text(p, &r, "title", 0, &title, &nt, err) ||
            beir_text(p, &r, "text", 1, &text, &nx, err))
            goto done;
        int is_new;
        uint32_t k = strtab_intern(&dids, id, nid, &is_new);
        if (!is_new) {
            char b[96];
            read_err(err, &r, "_id %s appears twice", excerpt(b, sizeof b, id, nid));
            goto done;
        }
        const char *doc = join_title(p, title, nt, text, nx, &n);
        if (k >= cap_doc) {
            cap_doc = cap_doc ? 2 * cap_doc : 4096;
            doc_of = cb_xrealloc(doc_of, cap_doc * sizeof *doc_of);
        }
        if (is_blank(doc, n)) {
            doc_of[k] = NONE;
            empty_docs++;
        } else {
            doc_of[k] = add_doc(p, doc, n);
            p->st.corpus_docs++;
        }
    }
    if (rc < 0) goto done;
    progress_finish(&pg);
    if (dids.n == 0) {
        cb_err_set(err, "%s: empty file: expected one document a line", corpus);
        goto done;
    }
    data_lines_close(&r);
    if (empty_docs && !p->o.quiet)
        fprintf(stderr, "colbert: warning: %s: %lld documents with an empty text are left out\n",
                corpus, (long long)empty_docs);

    /* queries.jsonl: id -> text, interned only when a qrels line uses it */
    if (data_lines_open(&r, queries, err)) goto done;
    while ((rc = data_lines_next(&r, &line, &len, err)) == 1) {
        if (is_blank(line, len)) continue;
        if (data_json_parse(&p->j, line, len, err)) {
            cb_err_prefix(err, "%s:%lld", queries, (long long)r.lineno);
            goto done;
        }
        const char *id, *text;
        size_t nid, nx;
        if (beir_id(p, &r, &id, &nid, err) || beir_text(p, &r, "text", 1, &text, &nx, err)) goto done;
        int is_new;
        strtab_intern(&qids, id, nid, &is_new);
        if (!is_new) {
            char b[96];
            read_err(err, &r, "_id %s appears twice", excerpt(b, sizeof b, id, nid));
            goto done;
        }
        strtab_append_h(&qtexts, text, nx, 0);
    }
    if (rc < 0) goto done;
    if (qids.n == 0) {
        cb_err_set(err, "%s: empty file: expected one query a line", queries);
        goto done;
    }
    data_lines_close(&r);

    /* qrels/<split>.tsv: "query-id corpus-id score", score > 0 -> a pair */
    if (data_lines_open(&r, qrels, err)) {
        if (!cb_file_exists(qrels) && cb_dir_exists(qdir))
            cb_err_prefix(err, "no split \"%s\" in %s", split, qdir);
        goto done;
    }
    while ((rc = data_lines_next(&r, &line, &len, err)) == 1) {
        if (is_blank(line, len)) continue;
        if (check_utf8_line(&r, line, len, err)) goto done;
        char *f[3];
        size_t n[3];
        int nf = split_tabs(line, len, f, n, 3);
        if (nf != 3) {
            read_err(err, &r, "expected 3 tab-separated fields (query-id, corpus-id, score), found %d", nf);
            goto done;
        }
        char tmp[64], *end;
        size_t ns = n[2] < sizeof tmp - 1 ? n[2] : sizeof tmp - 1;
        memcpy(tmp, f[2], ns);
        tmp[ns] = '\0';
        double score = strtod(tmp, &end);
        if (ns == 0 || *end != '\0') {
            if (r.lineno == 1) continue;   /* the header line */
            char b[96];
            read_err(err, &r, "expected a number as the score, found %s", excerpt(b, sizeof b, f[2], n[2]));
            goto done;
        }
        if (!(score > 0)) continue;
        char b[96];
        uint32_t qk = strtab_find(&qids, f[0], n[0]);
        if (qk == NONE) {
            read_err(err, &r, "query-id %s is not in %s", excerpt(b, sizeof b, f[0], n[0]), queries);
            goto done;
        }
        uint32_t dk = strtab_find(&dids, f[1], n[1]);
        if (dk == NONE) {
            read_err(err, &r, "corpus-id %s is not in %s", excerpt(b, sizeof b, f[1], n[1]), corpus);
            goto done;
        }
        if (doc_of[dk] == NONE) {
            read_err(err, &r, "corpus-id %s has an empty text in %s", excerpt(b, sizeof b, f[1], n[1]), corpus);
            goto done;
        }
        const char *qt = strtab_get(&qtexts, qk);
        size_t qn = strtab_len(&qtexts, qk);
        if (is_blank(qt, qn)) {
            read_err(err, &r, "query-id %s has an empty text in %s", excerpt(b, sizeof b, f[0], n[0]), queries);
            goto done;
        }
        add_edge(p, strtab_intern(&p->q, qt, qn, NULL), doc_of[dk], 1);
        pairs++;
    }
    if (rc < 0) goto done;
    if (pairs == 0) {
        cb_err_set(err, "%s: no line with a score > 0: expected \"query-id<TAB>corpus-id<TAB>score\" lines", qrels);
        goto done;
    }
    if (p->kind == PREPARE_KIND_AUTO) {
        p->kind = PREPARE_KIND_PAIRS;
        p->kind_path = cb_xstrdup(qrels);
        p->kind_line = 2;
    }
    p->st.records += pairs;
    ret = 0;
done:
    data_lines_close(&r);
    strtab_free(&dids);
    strtab_free(&qids);
    strtab_free(&qtexts);
    free(doc_of);
    free(corpus);
    free(queries);
    free(qdir);
    free(qrels);
    return ret;
}

/* ======================================================================== */
/* Collection, grouping, negatives, triplets                                */
/* ======================================================================== */

static void sort_u32(uint32_t *a, size_t n);

static int cmp_u32(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

static void sort_u32(uint32_t *a, size_t n) {
    if (n > 24) {
        qsort(a, n, sizeof *a, cmp_u32);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        uint32_t v = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > v) { a[j] = a[j - 1]; j--; }
        a[j] = v;
    }
}

static int in_sorted(const uint32_t *a, size_t n, uint32_t v) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (a[mid] == v) return 1;
        if (a[mid] < v) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

static int in_list(const uint32_t *a, size_t n, uint32_t v) {
    for (size_t i = 0; i < n; i++)
        if (a[i] == v) return 1;
    return 0;
}

/* Shuffle the collection and group the edges by query: per query the sorted
 * distinct positive pids, then the sorted distinct negative pids that are not
 * positives. */
static void build_groups(prepare *p) {
    size_t C = p->d.n, nq = p->q.n;
    rng r;
    rng_init(&r, p->o.seed, STREAM_COLLECTION);
    p->iid_of = cb_xmalloc(C * sizeof *p->iid_of);
    p->pid_of = cb_xmalloc(C * sizeof *p->pid_of);
    for (size_t i = 0; i < C; i++) p->iid_of[i] = (uint32_t)i;
    rng_shuffle_u32(&r, p->iid_of, C);
    for (size_t i = 0; i < C; i++) p->pid_of[p->iid_of[i]] = (uint32_t)i;

    p->qoff = cb_xcalloc(nq + 1, sizeof *p->qoff);
    for (size_t i = 0; i < p->ne; i++) p->qoff[p->e[i].q + 1]++;
    for (size_t q = 0; q < nq; q++) p->qoff[q + 1] += p->qoff[q];
    p->qd = cb_xmalloc((p->ne ? p->ne : 1) * sizeof *p->qd);
    uint64_t *fill = cb_xmalloc((nq + 1) * sizeof *fill);
    memcpy(fill, p->qoff, (nq + 1) * sizeof *fill);
    for (size_t i = 0; i < p->ne; i++) {
        uint32_t d = p->e[i].d;
        p->qd[fill[p->e[i].q]++] = p->pid_of[d >> 1] << 1 | (d & 1);
    }
    free(fill);
    free(p->e);
    p->e = NULL;
    p->ne = p->cape = 0;

    p->npos = cb_xmalloc((nq ? nq : 1) * sizeof *p->npos);
    p->nneg = cb_xmalloc((nq ? nq : 1) * sizeof *p->nneg);
    uint32_t *negs = NULL;
    size_t cap = 0;
    for (size_t q = 0; q < nq; q++) {
        uint32_t *a = p->qd + p->qoff[q];
        size_t n = (size_t)(p->qoff[q + 1] - p->qoff[q]);
        sort_u32(a, n);   /* by pid, a positive before a negative of the same pid */
        if (n > cap) {
            cap = 2 * n;
            negs = cb_xrealloc(negs, cap * sizeof *negs);
        }
        size_t np = 0, nn = 0;
        for (size_t i = 0; i < n;) {
            uint32_t pid = a[i] >> 1;
            int positive = !(a[i] & 1);
            while (i < n && (a[i] >> 1) == pid) i++;
            if (positive) a[np++] = pid;
            else negs[nn++] = pid;
        }
        memcpy(a + np, negs, nn * sizeof *negs);
        p->npos[q] = (uint32_t)np;
        p->nneg[q] = (uint32_t)nn;
    }
    free(negs);
}

static void emit(prepare *p, uint32_t q, uint32_t pos, uint32_t neg) {
    if (p->ntrip == p->captrip) {
        p->captrip = p->captrip ? 2 * p->captrip : 1 << 16;
        p->trip = cb_xrealloc(p->trip, p->captrip * 3 * sizeof *p->trip);
    }
    uint32_t *t = p->trip + 3 * p->ntrip++;
    t[0] = q;
    t[1] = pos;
    t[2] = neg;
}

typedef struct scratch {
    uint32_t *negs, *tmp;
    uint64_t *used;
    size_t cap_negs, cap_tmp, cap_used;
} scratch;

static uint32_t *reserve(uint32_t **a, size_t *cap, size_t n) {
    if (n > *cap) {
        *cap = n + n / 2 + 16;
        *a = cb_xrealloc(*a, *cap * sizeof **a);
    }
    return *a;
}

static uint64_t *reserve64(uint64_t **a, size_t *cap, size_t n) {
    if (n > *cap) {
        *cap = n + n / 2 + 16;
        *a = cb_xrealloc(*a, *cap * sizeof **a);
    }
    return *a;
}

static int in_list64(const uint64_t *a, size_t n, uint64_t v) {
    for (size_t i = 0; i < n; i++)
        if (a[i] == v) return 1;
    return 0;
}

/* k of the n values a[0..n) in random order (partial Fisher-Yates), into
 * a[0..k); returns k. */
static size_t sample_prefix(rng *r, uint32_t *a, size_t n, size_t k) {
    if (k > n) k = n;
    for (size_t i = 0; i < k; i++) {
        size_t j = i + (size_t)rng_below(r, n - i);
        uint32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
    return k;
}

/* New random negatives of one query: min(k, available) distinct pids that are
 * neither in P nor in N (both sorted), appended to out[*nout...]. */
static void random_negatives(rng *r, size_t C, const uint32_t *P, size_t np, const uint32_t *N,
                             size_t nn, size_t k, scratch *s, size_t *nout) {
    size_t known = np + nn, avail = C > known ? C - known : 0, take = k < avail ? k : avail;
    if (take == 0) return;
    uint32_t *out = reserve(&s->negs, &s->cap_negs, *nout + take);
    if (avail <= 4 * take) {
        /* Few left: list the complement, then sample from it. */
        uint32_t *c = reserve(&s->tmp, &s->cap_tmp, avail);
        size_t m = 0, i = 0, j = 0;
        for (uint32_t pid = 0; pid < C; pid++) {
            while (i < np && P[i] < pid) i++;
            while (j < nn && N[j] < pid) j++;
            if ((i < np && P[i] == pid) || (j < nn && N[j] == pid)) continue;
            c[m++] = pid;
        }
        CB_ASSERT(m == avail);
        sample_prefix(r, c, m, take);
        memcpy(out + *nout, c, take * sizeof *c);
        *nout += take;
        return;
    }
    /* Many left: rejection, expected < 4/3 draws per negative. */
    size_t start = *nout;
    while (*nout - start < take) {
        uint32_t pid = (uint32_t)rng_below(r, C);
        if (in_sorted(P, np, pid) || in_sorted(N, nn, pid) || in_list(out + start, *nout - start, pid))
            continue;
        out[(*nout)++] = pid;
    }
}

/* New mined negatives: up to k of the candidates that are not known,
 * sampled at random (the reference's random.sample over the candidates). */
static void mined_negatives(rng *r, const uint32_t *cand, size_t nc, size_t C, const uint32_t *P,
                            size_t np, const uint32_t *N, size_t nn, size_t k, scratch *s, size_t *nout) {
    uint32_t *c = reserve(&s->tmp, &s->cap_tmp, nc);
    size_t m = 0;
    for (size_t i = 0; i < nc; i++) {
        uint32_t pid = cand[i];
        if (pid >= C || in_sorted(P, np, pid) || in_sorted(N, nn, pid) || in_list(c, m, pid)) continue;
        c[m++] = pid;
    }
    size_t take = sample_prefix(r, c, m, k);
    if (take == 0) return;   /* c may be NULL: no candidates at all */
    uint32_t *out = reserve(&s->negs, &s->cap_negs, *nout + take);
    memcpy(out + *nout, c, take * sizeof *c);
    *nout += take;
}

/* Triplets of one query from its positives P and negatives N. */
static void query_triplets(prepare *p, rng *r, uint32_t q, const uint32_t *P, size_t np,
                           const uint32_t *N, size_t nn, scratch *s) {
    if (np == 0 || nn == 0) return;
    if (np == 1) {
        for (size_t j = 0; j < nn; j++) emit(p, q, P[0], N[j]);
        return;
    }
    size_t M = (size_t)p->o.max_triplets_per_query;
    size_t npp = M / np > 1 ? M / np : 1, per = npp < nn ? npp : nn;
    size_t first = p->ntrip;
    /* `used` holds the chosen (positive, negative) combinations as i * nn + j,
     * needed only when the top-up follows (fewer than M so far). */
    int topup = np * per < M;
    uint64_t *used = topup ? reserve64(&s->used, &s->cap_used, M) : NULL;
    size_t nused = 0;
    for (size_t i = 0; i < np; i++) {
        if (per * 2 >= nn) {   /* most of them: sample from a list */
            uint32_t *idx = reserve(&s->tmp, &s->cap_tmp, nn);
            for (size_t j = 0; j < nn; j++) idx[j] = (uint32_t)j;
            sample_prefix(r, idx, nn, per);
            for (size_t k = 0; k < per; k++) {
                emit(p, q, P[i], N[idx[k]]);
                if (topup) used[nused++] = (uint64_t)i * nn + idx[k];
            }
        } else {               /* a few of many: rejection */
            uint32_t *idx = reserve(&s->tmp, &s->cap_tmp, per);
            for (size_t k = 0; k < per;) {
                uint32_t j = (uint32_t)rng_below(r, nn);
                if (in_list(idx, k, j)) continue;
                idx[k++] = j;
                emit(p, q, P[i], N[j]);
                if (topup) used[nused++] = (uint64_t)i * nn + j;
            }
        }
    }
    if (!topup) return;
    size_t total = np * nn, want = M - (p->ntrip - first);
    if (want > total - nused) want = total - nused;
    if (total <= 4 * M) {
        /* All combinations in random order, skipping those already made. */
        uint32_t *c = reserve(&s->tmp, &s->cap_tmp, total);
        for (size_t k = 0; k < total; k++) c[k] = (uint32_t)k;
        rng_shuffle_u32(r, c, total);
        for (size_t k = 0; k < total && want > 0; k++) {
            if (in_list64(used, nused, c[k])) continue;
            emit(p, q, P[c[k] / nn], N[c[k] % nn]);
            want--;
        }
    } else {
        used = reserve64(&s->used, &s->cap_used, nused + want);
        while (want > 0) {
            uint64_t c = rng_below(r, total);
            if (in_list64(used, nused, c)) continue;
            used[nused++] = c;
            emit(p, q, P[c / nn], N[c % nn]);
            want--;
        }
    }
}

/* All triplets; cands/coff: mined candidates, or NULL for random negatives. */
static void make_triplets(prepare *p, const uint64_t *coff, const uint32_t *cands) {
    size_t nq = p->q.n, C = p->d.n, k = p->o.num_new_negatives > 0 ? (size_t)p->o.num_new_negatives : 0;
    scratch s = {0};
    p->ntrip = 0;
    p->st.new_negatives = 0;
    p->st.queries_with_triplets = 0;
    p->st.neg_min = -1;
    p->st.neg_max = 0;
    int64_t neg_sum = 0;
    for (size_t q = 0; q < nq; q++) {
        const uint32_t *P = p->qd + p->qoff[q], *N = P + p->npos[q];
        size_t np = p->npos[q], nn = p->nneg[q], n = nn;
        rng r;
        rng_init(&r, p->o.seed, STREAM_QUERY + (uint64_t)q);
        reserve(&s.negs, &s.cap_negs, nn + k);
        memcpy(s.negs, N, nn * sizeof *N);
        if (k > 0 && np > 0) {
            if (cands) mined_negatives(&r, cands + coff[q], (size_t)(coff[q + 1] - coff[q]), C, P, np, N, nn, k, &s, &n);
            else random_negatives(&r, C, P, np, N, nn, k, &s, &n);
        }
        p->st.new_negatives += (int64_t)(n - nn);
        size_t before = p->ntrip;
        query_triplets(p, &r, (uint32_t)q, P, np, s.negs, n, &s);
        if (p->ntrip > before) {
            p->st.queries_with_triplets++;
            neg_sum += (int64_t)n;
            if (p->st.neg_min < 0 || (int64_t)n < p->st.neg_min) p->st.neg_min = (int64_t)n;
            if ((int64_t)n > p->st.neg_max) p->st.neg_max = (int64_t)n;
        }
    }
    if (p->st.neg_min < 0) p->st.neg_min = 0;
    p->st.neg_mean = p->st.queries_with_triplets ? (double)neg_sum / (double)p->st.queries_with_triplets : 0;
    free(s.negs);
    free(s.tmp);
    free(s.used);
}

/* Why no triplet came out, and what to do. */
static int no_triplet_error(const prepare *p, cb_err *err) {
    size_t nq = p->q.n, with_pos = 0, pos_total = 0;
    for (size_t q = 0; q < nq; q++)
        if (p->npos[q]) { with_pos++; pos_total += p->npos[q]; }
    if (with_pos == 0)
        return cb_err_set(err, "no training triplet: none of the %zu queries has a positive passage "
                          "(every label is the negative label \"%s\"); check --positive-label",
                          nq, p->neg.text);
    if (p->o.num_new_negatives <= 0)
        return cb_err_set(err, "no training triplet: the data has no negatives and "
                          "--num-new-negatives is 0; give negatives (triplets or labeled pairs) "
                          "or set --num-new-negatives above 0");
    return cb_err_set(err, "no training triplet: the collection has only %zu documents and each "
                      "query's positives cover it, so no negative can be drawn; add documents "
                      "with --corpus FILE or give negatives", p->d.n);
}

typedef struct trip3 {
    uint32_t v[3];
} trip3;

int prepare_run(prepare *p, cb_err *err) {
    CB_ASSERT(!p->ran);
    if (p->q.n == 0 || p->ne == 0)
        return cb_err_set(err, "no training records: give --train-data FILE or --beir DIR");
    p->ran = 1;
    p->st.kind = p->kind;
    build_groups(p);
    p->st.mined = 0;
    if (p->o.negatives == PREPARE_NEG_MINED && p->o.miner && p->o.num_new_negatives > 0) {
        uint64_t *coff = NULL;
        uint32_t *cands = NULL;
        if (p->o.miner->candidates(p->o.miner->ctx, p, &coff, &cands, err)) {
            free(coff);
            free(cands);
            return cb_err_prefix(err, "hard-negative mining");
        }
        make_triplets(p, coff, cands);
        free(coff);
        free(cands);
        p->st.mined = 1;
        if (p->ntrip == 0) {
            if (!p->o.quiet)
                fprintf(stderr, "colbert: warning: mining gave no training triplet (too few documents "
                        "or hard negatives?); retrying with random negatives\n");
            p->st.mined = 0;
        }
    }
    if (!p->st.mined) make_triplets(p, NULL, NULL);
    if (p->ntrip == 0) return no_triplet_error(p, err);
    rng r;
    rng_init(&r, p->o.seed, STREAM_TRIPLES);
    trip3 *t = (trip3 *)p->trip;
    for (size_t i = p->ntrip; i > 1; i--) {
        size_t j = (size_t)rng_below(&r, i);
        trip3 x = t[i - 1];
        t[i - 1] = t[j];
        t[j] = x;
    }
    p->st.queries = (int64_t)p->q.n;
    p->st.passages = (int64_t)p->d.n;
    p->st.triplets = (int64_t)p->ntrip;
    return 0;
}

/* ======================================================================== */
/* Export                                                                   */
/* ======================================================================== */

static const char *const OUT_NAMES[3] = {
    "queries.train.colbert.tsv", "corpus.train.colbert.tsv", "triples.train.colbert.jsonl"};

/* mkdir -p; *created = 1 when out itself was made here. */
static int make_dirs(const char *path, int *created, cb_err *err) {
    *created = 0;
    if (cb_dir_exists(path)) return 0;
    char *tmp = cb_xstrdup(path);
    for (char *s = tmp + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        if (!cb_dir_exists(tmp) && mkdir(tmp, 0777) && errno != EEXIST) {
            cb_err_set(err, "%s: cannot create directory: %s", tmp, strerror(errno));
            free(tmp);
            return -1;
        }
        *s = '/';
    }
    free(tmp);
    if (mkdir(path, 0777) && errno != EEXIST)
        return cb_err_set(err, "%s: cannot create directory: %s", path, strerror(errno));
    *created = 1;
    return 0;
}

int prepare_export(prepare *p, const char *out_dir, cb_err *err) {
    CB_ASSERT(p->ran);
    int created;
    if (make_dirs(out_dir, &created, err)) return -1;
    char *final[3], *tmp[3];
    for (int k = 0; k < 3; k++) {
        final[k] = cb_path_join(out_dir, OUT_NAMES[k]);
        size_t n = strlen(final[k]) + 32;
        tmp[k] = cb_xmalloc(n);
        snprintf(tmp[k], n, "%s.tmp-%ld", final[k], (long)getpid());
    }
    int ret = -1, k;
    for (k = 0; k < 3; k++) {
        FILE *f = fopen(tmp[k], "wb");
        if (!f) {
            cb_err_set(err, "%s: cannot create: %s", tmp[k], strerror(errno));
            break;
        }
        data_writer w;
        data_writer_init(&w, f);
        if (k == 0) {
            for (size_t q = 0; q < p->q.n; q++)
                data_write_text_line(&w, q, strtab_get(&p->q, q), strtab_len(&p->q, q));
        } else if (k == 1) {
            for (size_t pid = 0; pid < p->d.n; pid++) {
                uint32_t i = p->iid_of[pid];
                data_write_text_line(&w, pid, strtab_get(&p->d, i), strtab_len(&p->d, i));
            }
        } else {
            for (size_t t = 0; t < p->ntrip; t++) data_write_id_array(&w, p->trip + 3 * t, 3);
        }
        int bad = data_writer_flush(&w);
        int e = w.err_no;
        data_writer_free(&w);
        if (fclose(f) && !bad) { bad = 1; e = errno; }
        if (bad) {
            cb_err_set(err, "%s: write error: %s", tmp[k], strerror(e));
            k++;
            break;
        }
    }
    if (k == 3) {
        ret = 0;
        for (int i = 0; i < 3 && !ret; i++)
            if (rename(tmp[i], final[i])) ret = cb_err_set(err, "%s: cannot rename: %s", tmp[i], strerror(errno));
    }
    if (ret) {
        for (int i = 0; i < 3; i++) unlink(tmp[i]);
        if (created) rmdir(out_dir);
    }
    for (int i = 0; i < 3; i++) {
        free(final[i]);
        free(tmp[i]);
    }
    return ret;
}

/* ======================================================================== */
/* Accessors                                                                */
/* ======================================================================== */

const prepare_stats *prepare_get_stats(const prepare *p) { return &p->st; }
size_t prepare_n_queries(const prepare *p) { return p->q.n; }
size_t prepare_n_passages(const prepare *p) { return p->d.n; }

const char *prepare_query(const prepare *p, uint32_t qid, size_t *len) {
    CB_ASSERT(qid < p->q.n);
    if (len) *len = strtab_len(&p->q, qid);
    return strtab_get(&p->q, qid);
}

const char *prepare_passage(const prepare *p, uint32_t pid, size_t *len) {
    CB_ASSERT(p->iid_of && pid < p->d.n);
    uint32_t i = p->iid_of[pid];
    if (len) *len = strtab_len(&p->d, i);
    return strtab_get(&p->d, i);
}

const uint32_t *prepare_triplets(const prepare *p, size_t *n) {
    if (n) *n = p->ntrip;
    return p->trip;
}
