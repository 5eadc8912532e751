/* prepare_read.c: the readers of `colbert prepare`: extra documents
 * (corpus files), training records (JSONL or TSV pairs, labeled pairs and
 * triplets) and BEIR directories (through beir.h). See prepare.h for the
 * formats and prepare_read.h for the state they fill. */
#include "prepare_read.h"
#include "beir.h"
#include "progress.h"

#include <string.h>
#include <strings.h>

/* A document of query q: interned, then the edge. */
static int add_pair(prepare *p, uint32_t q, const char *s, size_t n, int positive, cb_err *err) {
    uint32_t d;
    return cb_prepare_add_doc(p, s, n, &d, err) || cb_prepare_add_edge(p, q, d, positive, err) ? -1 : 0;
}

/* title + sep + text in p->scratch (or the text alone when there is no
 * title, or with --no-title); NULL with err when out of memory. */
static const char *join_title(prepare *p, const char *title, size_t nt, const char *text, size_t nx,
                              size_t *len, cb_err *err) {
    return cb_data_join_title(&p->scratch, &p->cap_scratch, p->o.no_title ? NULL : title, nt, p->o.title_sep,
                           text, nx, len, err);
}

/* The first character of a line after spaces and tabs ('\0' for none). */
static char lead_char(const char *line, size_t len) {
    size_t a = 0;
    while (a < len && (line[a] == ' ' || line[a] == '\t')) a++;
    return a < len ? line[a] : '\0';
}

static int check_utf8_line(const data_lines *r, const char *line, size_t len, cb_err *err) {
    size_t bad;
    if (cb_data_utf8_valid(line, len, &bad)) return 0;
    return cb_data_lines_err(err, r, "invalid UTF-8 at column %zu (byte 0x%02x)", bad + 1,
                          (unsigned char)line[bad]);
}

/* ---- corpus files ------------------------------------------------------- */

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcasecmp(s + a - b, suf);
}

/* The documents of r (opened on path, a file or a name for memory); closes r. */
static int add_corpus(prepare *p, const char *path, data_lines r, cb_err *err) {
    enum { F_UNKNOWN, F_JSONL, F_TSV, F_PLAIN } form = F_UNKNOWN;
    if (ends_with(path, ".jsonl") || ends_with(path, ".json")) form = F_JSONL;
    else if (ends_with(path, ".tsv")) form = F_TSV;
    progress pg;
    cb_progress_init_mb(&pg, "corpus", r.size, 64, p->o.quiet);
    int64_t docs = 0;
    char *line;
    size_t len;
    int rc;
    while ((rc = cb_data_lines_next_nonblank(&r, &pg, &line, &len, err)) == 1) {
        if (form == F_UNKNOWN) form = lead_char(line, len) == '{' ? F_JSONL : F_PLAIN;
        const char *text = line;
        size_t n = len;
        if (form == F_JSONL) {
            if (cb_data_json_parse(&p->j, line, len, err)) goto fail_prefix;
            const dj_node *nd = p->j.nodes;
            if (nd[0].type == DJ_STRING) {
                text = nd[0].s;
                n = nd[0].len;
            } else {
                int64_t it = cb_data_json_get(&p->j, 0, "text"), ti = cb_data_json_get(&p->j, 0, "title");
                if (nd[0].type != DJ_OBJECT || it < 0 || nd[it].type != DJ_STRING) {
                    cb_data_lines_err(err, &r, "expected an object with a \"text\" string, found %s%s",
                             cb_data_json_type_name(nd[0].type),
                             nd[0].type == DJ_OBJECT ? (it < 0 ? " without \"text\"" : " whose \"text\" is not a string") : "");
                    goto fail;
                }
                if (ti >= 0 && nd[ti].type != DJ_STRING && nd[ti].type != DJ_NULL) {
                    cb_data_lines_err(err, &r, "expected \"title\" to be a string, found %s", cb_data_json_type_name(nd[ti].type));
                    goto fail;
                }
                int has_title = ti >= 0 && nd[ti].type == DJ_STRING;
                text = join_title(p, has_title ? nd[ti].s : NULL, has_title ? nd[ti].len : 0,
                                  nd[it].s, nd[it].len, &n, err);
                if (!text) goto fail;
            }
        } else {
            if (check_utf8_line(&r, line, len, err)) goto fail;
            if (form == F_TSV) {
                char *t1 = memchr(line, '\t', len);
                if (!t1) {
                    cb_data_lines_err(err, &r, "expected \"id<TAB>text\", found no tab");
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
                                      (size_t)(t2 - f1), &n, err);
                    if (!text) goto fail;
                } else {
                    text = f1;
                    n = (size_t)(e - f1);
                }
            }
        }
        if (cb_data_is_blank(text, n)) {
            cb_data_lines_err(err, &r, "empty document");
            goto fail;
        }
        uint32_t id;
        if (cb_prepare_add_doc(p, text, n, &id, err)) goto fail_prefix;
        docs++;
    }
    if (rc < 0) goto fail;
    cb_progress_finish(&pg);
    if (docs == 0) {
        cb_err_set(err, "%s: empty file: expected one document a line", path);
        goto fail;
    }
    p->st.corpus_docs += docs;
    cb_data_lines_close(&r);
    return 0;
fail_prefix:
    cb_err_prefix(err, "%s:%lld", path, (long long)r.lineno);
fail:
    cb_data_lines_close(&r);
    return -1;
}

int cb_prepare_add_corpus(prepare *p, const char *path, cb_err *err) {
    data_lines r;
    if (cb_data_lines_open(&r, path, err)) return -1;
    return add_corpus(p, path, r, err);
}

int cb_prepare_add_corpus_mem(prepare *p, const char *name, const char *data, size_t len, cb_err *err) {
    data_lines r;
    if (cb_data_lines_open_mem(&r, name, data, len, err)) return -1;
    return add_corpus(p, name, r, err);
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
        return cb_data_lines_err(err, r, "expected 2 fields (query, passage) or 3 (query, passage, label) or "
                        "(query, positive, negative), found %d", nf);
    if (p->kind == PREPARE_KIND_AUTO) {
        p->kind = nf == 2 ? PREPARE_KIND_PAIRS
                          : third_is_label ? PREPARE_KIND_LABELED : PREPARE_KIND_TRIPLETS;
        if (!(p->kind_path = cb_strdup(r->path, err))) return -1;
        p->kind_line = r->lineno;
        return 0;
    }
    if (nf == fields_of(p->kind)) return 0;
    if (p->kind_path)
        return cb_data_lines_err(err, r, "mixed kinds: this record has %d fields but the first record "
                        "(%s:%lld) has %d (%s)", nf, p->kind_path, (long long)p->kind_line,
                        fields_of(p->kind), cb_prepare_kind_name(p->kind));
    return cb_data_lines_err(err, r, "expected %d fields for %s (--kind), found %d", fields_of(p->kind),
                          cb_prepare_kind_name(p->kind), nf);
}

static int label_value(prepare *p, const data_lines *r, int match_pos, int match_neg,
                       const char *found, cb_err *err) {
    if (match_pos) return 1;
    if (match_neg) return 0;
    return cb_data_lines_err(err, r, "label %s is neither the positive label %s nor the negative label %s "
                    "(set them with --positive-label and --negative-label)",
                    found, p->pos.text, p->neg.text);
}

static int empty_field(const data_lines *r, const char *what, int field, cb_err *err) {
    return cb_data_lines_err(err, r, "empty %s (field %d)", what, field);
}

/* Add the passage(s) of JSON node idx (field number f) to query q. */
static int add_json_passages(prepare *p, const data_lines *r, uint32_t q, size_t idx, int f,
                             int positive, cb_err *err) {
    const dj_node *nd = &p->j.nodes[idx];
    if (nd->type == DJ_STRING) {
        if (cb_data_is_blank(nd->s, nd->len)) return empty_field(r, "passage", f, err);
        return add_pair(p, q, nd->s, nd->len, positive, err);
    }
    if (nd->type == DJ_ARRAY) {
        size_t i = idx + 1;
        for (uint32_t k = 0; k < nd->n; k++, i = p->j.nodes[i].next) {
            const dj_node *it = &p->j.nodes[i];
            if (it->type != DJ_STRING)
                return cb_data_lines_err(err, r, "field %d: item %u of the list is %s, expected a string",
                                f, k + 1, cb_data_json_type_name(it->type));
            if (cb_data_is_blank(it->s, it->len))
                return cb_data_lines_err(err, r, "empty passage (field %d, item %u)", f, k + 1);
            if (add_pair(p, q, it->s, it->len, positive, err)) return -1;
        }
        return 0;
    }
    if (nd->type == DJ_OBJECT) {
        int64_t c = cb_data_json_get(&p->j, idx, "content");
        if (c < 0 || p->j.nodes[c].type != DJ_STRING)
            return cb_data_lines_err(err, r, "field %d: expected an object with a \"content\" string", f);
        const dj_node *cn = &p->j.nodes[c];
        if (cb_data_is_blank(cn->s, cn->len)) return empty_field(r, "passage", f, err);
        return add_pair(p, q, cn->s, cn->len, positive, err);
    }
    if (f == 3 && (nd->type == DJ_NUMBER || nd->type == DJ_TRUE || nd->type == DJ_FALSE))
        return cb_data_lines_err(err, r, "field 3 is %s, not a negative passage: for labeled pairs pass "
                        "--kind labeled", cb_data_json_type_name(nd->type));
    return cb_data_lines_err(err, r, "field %d: expected a passage (a string, a list of strings or "
                    "{\"content\": string}), found %s", f, cb_data_json_type_name(nd->type));
}

static int add_jsonl_record(prepare *p, const data_lines *r, char *line, size_t len, cb_err *err) {
    if (cb_data_json_parse(&p->j, line, len, err))
        return cb_err_prefix(err, "%s:%lld", r->path, (long long)r->lineno);
    const dj_node *nd = p->j.nodes;
    if (nd[0].type != DJ_ARRAY)
        return cb_data_lines_err(err, r, "expected a list [query, passage, ...], found %s",
                        cb_data_json_type_name(nd[0].type));
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
        return cb_data_lines_err(err, r, "field 1: expected the query as a string, found %s",
                        cb_data_json_type_name(nd[f0].type));
    if (cb_data_is_blank(nd[f0].s, nd[f0].len)) return empty_field(r, "query", 1, err);
    uint32_t q;
    if (cb_strtab_intern(&p->q, nd[f0].s, nd[f0].len, &q, NULL, err)) return -1;
    switch (p->kind) {
    case PREPARE_KIND_PAIRS:
        if (add_json_passages(p, r, q, f1, 2, 1, err)) return -1;
        break;
    case PREPARE_KIND_LABELED: {
        char b[96];
        const dj_node *t = &nd[f2];
        const char *found = t->type == DJ_STRING ? cb_data_excerpt(b, sizeof b, t->s, t->len)
                                                 : cb_data_json_type_name(t->type);
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
    if (cb_data_is_blank(f[0], n[0])) return empty_field(r, "query", 1, err);
    if (cb_data_is_blank(f[1], n[1])) return empty_field(r, "passage", 2, err);
    uint32_t q;
    if (cb_strtab_intern(&p->q, f[0], n[0], &q, NULL, err)) return -1;
    int positive = 1;
    if (p->kind == PREPARE_KIND_LABELED) {
        char b[96];
        positive = label_value(p, r, label_match_text(&p->pos, f[2], n[2]),
                               label_match_text(&p->neg, f[2], n[2]), cb_data_excerpt(b, sizeof b, f[2], n[2]), err);
        if (positive < 0) return -1;
    }
    if (add_pair(p, q, f[1], n[1], positive, err)) return -1;
    if (p->kind == PREPARE_KIND_TRIPLETS) {
        if (cb_data_is_blank(f[2], n[2])) return empty_field(r, "passage", 3, err);
        if (add_pair(p, q, f[2], n[2], 0, err)) return -1;
    }
    return 0;
}

static int check_labels(const prepare *p, cb_err *err) {
    if (p->pos.len == p->neg.len && !memcmp(p->pos.text, p->neg.text, p->pos.len))
        return cb_err_set(err, "the positive and the negative label are both \"%s\"", p->pos.text);
    if (!p->pos.len || !p->neg.len) return cb_err_set(err, "a label is empty");
    return 0;
}

/* The records of r (opened on path, a file or a name for memory); closes r. */
static int add_train(prepare *p, const char *path, data_lines r, cb_err *err) {
    progress pg;
    cb_progress_init_mb(&pg, "read", r.size, 64, p->o.quiet);
    int form = -1;   /* 1 JSONL, 0 TSV */
    int64_t records = 0;
    char *line;
    size_t len;
    int rc;
    while ((rc = cb_data_lines_next_nonblank(&r, &pg, &line, &len, err)) == 1) {
        if (form < 0) form = lead_char(line, len) == '[' || lead_char(line, len) == '{';
        size_t ne0 = p->ne;
        if ((form ? add_jsonl_record(p, &r, line, len, err) : add_tsv_record(p, &r, line, len, err))) {
            cb_data_lines_close(&r);
            return -1;
        }
        if (p->ne > ne0 || form) records++;
    }
    cb_progress_finish(&pg);
    cb_data_lines_close(&r);
    if (rc < 0) return -1;
    if (records == 0) return cb_err_set(err, "%s: empty file: expected one record a line", path);
    p->st.records += records;
    return 0;
}

int cb_prepare_add_train(prepare *p, const char *path, cb_err *err) {
    if (check_labels(p, err)) return -1;
    data_lines r;
    if (cb_data_lines_open(&r, path, err)) return -1;
    return add_train(p, path, r, err);
}

int cb_prepare_add_train_mem(prepare *p, const char *name, const char *data, size_t len, cb_err *err) {
    if (check_labels(p, err)) return -1;
    data_lines r;
    if (cb_data_lines_open_mem(&r, name, data, len, err)) return -1;
    return add_train(p, name, r, err);
}

/* ---- BEIR ------------------------------------------------------------------ */

typedef struct beir_ctx {
    prepare *p;
    uint32_t *doc_of;           /* [documents] our document id, STRTAB_NONE when empty */
    size_t cap;
    int64_t empty_docs, pairs;
} beir_ctx;

/* Every document of corpus.jsonl joins the collection (an empty one is left
 * out, with a warning). */
static int beir_doc(void *ctx, uint32_t k, const char *text, size_t len, cb_err *err) {
    beir_ctx *c = ctx;
    if (k >= c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 4096;
        uint32_t *d = cb_realloc(c->doc_of, cap * sizeof *d, "the BEIR documents", err);
        if (!d) return -1;
        c->doc_of = d;
        c->cap = cap;
    }
    if (cb_data_is_blank(text, len)) {
        c->doc_of[k] = STRTAB_NONE;
        c->empty_docs++;
        return 0;
    }
    c->p->st.corpus_docs++;
    return cb_prepare_add_doc(c->p, text, len, &c->doc_of[k], err);
}

/* "FILE:LINE: query-id "x" has an empty text in queries.jsonl" and the like. */
static int beir_empty(cb_err *err, const beir *b, const beir_qrel *r, const char *what, const strtab *ids,
                      uint32_t k, const char *in) {
    char x[96];
    return cb_err_set(err, "%s:%lld: %s %s has an empty text in %s", b->qrels_path, (long long)r->line, what,
                      cb_data_excerpt(x, sizeof x, cb_strtab_get(ids, k), cb_strtab_len(ids, k)), in);
}

/* A qrels line with a score > 0: a (query, document) pair. */
static int beir_pair(void *ctx, const beir *b, const beir_qrel *r, cb_err *err) {
    beir_ctx *c = ctx;
    if (c->doc_of[r->doc] == STRTAB_NONE)
        return beir_empty(err, b, r, "corpus-id", &b->doc_ids, r->doc, b->corpus_path);
    const char *qt = cb_strtab_get(&b->query_texts, r->query);
    size_t qn = cb_strtab_len(&b->query_texts, r->query);
    if (cb_data_is_blank(qt, qn)) return beir_empty(err, b, r, "query-id", &b->query_ids, r->query, b->queries_path);
    uint32_t q;
    if (cb_strtab_intern(&c->p->q, qt, qn, &q, NULL, err) || cb_prepare_add_edge(c->p, q, c->doc_of[r->doc], 1, err))
        return -1;
    c->pairs++;
    return 0;
}

int cb_prepare_add_beir(prepare *p, const char *dir, const char *split, cb_err *err) {
    beir_ctx c = {p, NULL, 0, 0, 0};
    beir_opts o;
    cb_beir_opts_default(&o);
    o.title_sep = p->o.title_sep;
    o.no_title = p->o.no_title;
    o.positive_only = 1;
    o.progress = !p->o.quiet;
    o.doc = beir_doc;
    o.qrel = beir_pair;
    o.ctx = &c;
    beir b;
    int rc = cb_beir_read(&b, dir, split, &o, err);
    free(c.doc_of);
    if (rc) return -1;
    if (c.empty_docs && !p->o.quiet)
        fprintf(stderr, "colbert: warning: %s: %lld documents with an empty text are left out\n",
                b.corpus_path, (long long)c.empty_docs);
    if (c.pairs == 0)
        rc = cb_err_set(err, "%s: no line with a score > 0: expected \"query-id<TAB>corpus-id<TAB>score\" lines",
                        b.qrels_path);
    else if (p->kind == PREPARE_KIND_AUTO) {
        p->kind = PREPARE_KIND_PAIRS;
        p->kind_line = 2;
        if (!(p->kind_path = cb_strdup(b.qrels_path, err))) rc = -1;
    }
    if (!rc) p->st.records += c.pairs;
    cb_beir_free(&b);
    return rc;
}
