/* eval.c: BEIR data, exact MaxSim ranking, trec_eval metrics and run files
 * for `colbert eval` (see eval.h). */
#include "eval.h"
#include "blas.h"
#include "data.h"
#include "fsutil.h"
#include "topk.h"

#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define NONE UINT32_MAX

/* ======================================================================== */
/* Loading                                                                  */
/* ======================================================================== */

/* Strings while loading: offsets into one growing buffer, turned into
 * pointers once it stops moving. */
typedef struct arena {
    char *buf;
    size_t n, cap;
} arena;

static size_t arena_push(arena *a, const char *s, size_t n) {
    if (a->n + n + 1 > a->cap) {
        a->cap = (a->n + n + 1) * 2 > 1 << 16 ? (a->n + n + 1) * 2 : 1 << 16;
        a->buf = cb_xrealloc(a->buf, a->cap);
    }
    size_t at = a->n;
    memcpy(a->buf + at, s, n);
    a->buf[at + n] = '\0';
    a->n += n + 1;
    return at;
}

/* Grow an array of elem-sized items to hold n + 1. */
static void *grow(void *p, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return p;
    *cap = *cap ? 2 * *cap : 1024;
    return cb_xrealloc(p, *cap * elem);
}

static int is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* A short printable excerpt of s for messages. */
static const char *excerpt(char *b, size_t cap, const char *s, size_t n) {
    if (n > cap - 4) n = cap - 4;
    b[0] = '"';
    memcpy(b + 1, s, n);
    b[n + 1] = '"';
    b[n + 2] = '\0';
    return b;
}

/* id strings sorted: qsort's comparator needs the arena and the offsets */
static const char *sort_buf;
static const size_t *sort_off;
static int by_id(const void *a, const void *b) {
    return strcmp(sort_buf + sort_off[*(const uint32_t *)a], sort_buf + sort_off[*(const uint32_t *)b]);
}
static int64_t find_id(const uint32_t *sorted, size_t n, const char *buf, const size_t *off,
                       const char *id, size_t len) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *s = buf + off[sorted[mid]];
        int c = strncmp(s, id, len);
        if (c == 0 && s[len] != '\0') c = 1;
        if (c == 0) return sorted[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* One BEIR JSONL file: ids (and texts, title joined when with_title) into
 * the arena. Returns the count, or -1 with err. */
static int64_t read_jsonl(const char *path, int with_title, arena *a, size_t **id_off, size_t **text_off,
                          size_t **text_len, cb_err *err) {
    data_lines r;
    data_json j = {0};
    memset(&r, 0, sizeof r);
    if (data_lines_open(&r, path, err)) return -1;
    size_t n = 0, cap = 0, cap2 = 0, cap3 = 0;
    char *line, *join = NULL;
    size_t len, cap_join = 0;
    int rc;
    while ((rc = data_lines_next(&r, &line, &len, err)) == 1) {
        if (is_blank(line, len)) continue;
        if (data_json_parse(&j, line, len, err)) {
            cb_err_prefix(err, "%s:%lld", path, (long long)r.lineno);
            goto fail;
        }
        const dj_node *nd = j.nodes;
        int64_t ki = nd[0].type == DJ_OBJECT ? data_json_get(&j, 0, "_id") : -1;
        if (ki < 0 || (nd[ki].type != DJ_STRING && nd[ki].type != DJ_NUMBER)) {
            cb_err_set(err, "%s:%lld: expected an object with an \"_id\" string, found %s", path,
                       (long long)r.lineno, nd[0].type != DJ_OBJECT ? data_json_type_name(nd[0].type)
                                            : ki < 0 ? "no \"_id\"" : data_json_type_name(nd[ki].type));
            goto fail;
        }
        int64_t kt = data_json_get(&j, 0, "text"), kh = with_title ? data_json_get(&j, 0, "title") : -1;
        if (kt < 0 || nd[kt].type != DJ_STRING) {
            cb_err_set(err, "%s:%lld: expected a \"text\" string, found %s", path, (long long)r.lineno,
                       kt < 0 ? "none" : data_json_type_name(nd[kt].type));
            goto fail;
        }
        if (kh >= 0 && nd[kh].type != DJ_STRING && nd[kh].type != DJ_NULL) {
            cb_err_set(err, "%s:%lld: expected \"title\" to be a string, found %s", path, (long long)r.lineno,
                       data_json_type_name(nd[kh].type));
            goto fail;
        }
        if (nd[ki].len == 0) {
            cb_err_set(err, "%s:%lld: empty \"_id\"", path, (long long)r.lineno);
            goto fail;
        }
        *id_off = grow(*id_off, &cap, n, sizeof(size_t));
        *text_off = grow(*text_off, &cap2, n, sizeof(size_t));
        *text_len = grow(*text_len, &cap3, n, sizeof(size_t));
        (*id_off)[n] = arena_push(a, nd[ki].s, nd[ki].len);
        const char *text = nd[kt].s;
        size_t tl = nd[kt].len;
        if (kh >= 0 && nd[kh].type == DJ_STRING && !is_blank(nd[kh].s, nd[kh].len)) {
            const char *title = nd[kh].s;
            size_t hl = nd[kh].len;
            if (is_blank(text, tl)) {   /* the title alone */
                text = title;
                tl = hl;
            } else {                    /* "title text", as prepare joins them */
                if (hl + 1 + tl > cap_join) join = cb_xrealloc(join, cap_join = 2 * (hl + 1 + tl));
                memcpy(join, title, hl);
                join[hl] = ' ';
                memcpy(join + hl + 1, text, tl);
                text = join;
                tl += hl + 1;
            }
        }
        (*text_off)[n] = arena_push(a, text, tl);
        (*text_len)[n] = tl;
        n++;
    }
    if (rc < 0) goto fail;
    if (n == 0) {
        cb_err_set(err, "%s: empty file: expected one JSON object a line", path);
        goto fail;
    }
    data_lines_close(&r);
    data_json_free(&j);
    free(join);
    return (int64_t)n;
fail:
    data_lines_close(&r);
    data_json_free(&j);
    free(join);
    return -1;
}

/* ids sorted ascending, duplicates reported. */
static uint32_t *sort_ids(const arena *a, const size_t *id_off, size_t n, const char *path, cb_err *err) {
    uint32_t *s = cb_xmalloc((n ? n : 1) * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) s[i] = (uint32_t)i;
    sort_buf = a->buf;
    sort_off = id_off;
    qsort(s, n, sizeof(uint32_t), by_id);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(a->buf + id_off[s[i]], a->buf + id_off[s[i - 1]])) {
            char b[96];
            const char *id = a->buf + id_off[s[i]];
            cb_err_set(err, "%s: _id %s appears twice", path, excerpt(b, sizeof b, id, strlen(id)));
            free(s);
            return NULL;
        }
    return s;
}

/* The .tsv files of qdir, for "no split" messages. */
static void list_splits(char *out, size_t cap, const char *qdir) {
    out[0] = '\0';
    DIR *dh = opendir(qdir);
    if (!dh) return;
    struct dirent *e;
    size_t n = 0;
    while ((e = readdir(dh))) {
        size_t l = strlen(e->d_name);
        if (l > 4 && !strcmp(e->d_name + l - 4, ".tsv") && n + l < cap - 8) {
            n += (size_t)snprintf(out + n, cap - n, "%s%.*s", n ? ", " : "", (int)(l - 4), e->d_name);
        }
    }
    closedir(dh);
}

typedef struct qrel {
    uint32_t q, doc;        /* q: index in queries.jsonl, then in the split */
    int32_t grade;
    uint32_t line;          /* order of the line, for "the last one wins" */
} qrel;

static int by_query_doc(const void *a, const void *b) {
    const qrel *x = a, *y = b;
    if (x->q != y->q) return x->q < y->q ? -1 : 1;
    if (x->doc != y->doc) return x->doc < y->doc ? -1 : 1;
    return x->line < y->line ? -1 : x->line > y->line;
}

void eval_data_free(eval_data *d) {
    free(d->doc_id);
    free(d->doc_text);
    free(d->doc_len);
    free(d->doc_tie);
    free(d->doc_by_id);
    free(d->query_id);
    free(d->query_text);
    free(d->query_len);
    free(d->rel_off);
    free(d->rel_doc);
    free(d->rel_grade);
    free(d->arena);
    memset(d, 0, sizeof *d);
}

int eval_data_load(eval_data *d, const char *dir, const char *split, size_t max_queries, cb_err *err) {
    memset(d, 0, sizeof *d);
    if (!cb_dir_exists(dir))
        return cb_err_set(err, "%s: not a directory (expected a BEIR dataset: corpus.jsonl, queries.jsonl, "
                          "qrels/<split>.tsv)", dir);
    char *corpus = cb_path_join(dir, "corpus.jsonl"), *queries = cb_path_join(dir, "queries.jsonl");
    char *qdir = cb_path_join(dir, "qrels"), qname[300];
    snprintf(qname, sizeof qname, "%s.tsv", split);
    char *qrels = cb_path_join(qdir, qname);
    arena a = {0};
    size_t *did = NULL, *dtext = NULL, *dlen = NULL, *qid = NULL, *qtext = NULL, *qlen = NULL;
    uint32_t *dsort = NULL, *qsort_ = NULL, *qmap = NULL;
    qrel *rels = NULL;
    size_t nrel = 0, cap_rel = 0;
    data_lines r;
    memset(&r, 0, sizeof r);
    int ret = -1, rc;

    /* qrels first: a missing split is the likeliest mistake and the cheapest to report */
    if (!cb_file_exists(qrels)) {
        char splits[256];
        list_splits(splits, sizeof splits, qdir);
        if (!cb_dir_exists(qdir)) cb_err_set(err, "%s: no qrels directory (expected qrels/%s.tsv)", dir, split);
        else cb_err_set(err, "%s: no split \"%s\" (%s)%s%s", qdir, split, qname,
                        splits[0] ? "; the splits there: " : "; it holds no .tsv file", splits);
        goto done;
    }
    int64_t nd = read_jsonl(corpus, 1, &a, &did, &dtext, &dlen, err);
    if (nd < 0) goto done;
    int64_t nq_all = read_jsonl(queries, 0, &a, &qid, &qtext, &qlen, err);
    if (nq_all < 0) goto done;
    if (nd > INT32_MAX - 1 || nq_all > INT32_MAX - 1) {
        cb_err_set(err, "%s: more than 2^31 documents or queries", dir);
        goto done;
    }
    if (!(dsort = sort_ids(&a, did, (size_t)nd, corpus, err))) goto done;
    if (!(qsort_ = sort_ids(&a, qid, (size_t)nq_all, queries, err))) goto done;

    /* qrels/<split>.tsv: "query-id<TAB>corpus-id<TAB>score" (BEIR, a header
     * line) or "query-id 0 corpus-id score" (TREC) */
    if (data_lines_open(&r, qrels, err)) goto done;
    char *line;
    size_t len;
    while ((rc = data_lines_next(&r, &line, &len, err)) == 1) {
        if (is_blank(line, len)) continue;
        char *f[5];
        size_t fl[5];
        int nf = 0;
        int tabs = memchr(line, '\t', len) != NULL;
        for (char *s = line, *e = line + len; s < e && nf < 5;) {
            if (!tabs) while (s < e && (*s == ' ' || *s == '\r')) s++;
            if (s >= e) break;
            char *t = s;
            while (t < e && (tabs ? *t != '\t' : *t != ' ')) t++;
            f[nf] = s;
            fl[nf++] = (size_t)(t - s);
            s = t + (t < e);
        }
        for (int i = 0; i < nf; i++)   /* trailing \r or spaces of a field */
            while (fl[i] && (f[i][fl[i] - 1] == '\r' || f[i][fl[i] - 1] == ' ')) fl[i]--;
        if (nf != 3 && nf != 4) {
            cb_err_set(err, "%s:%lld: expected \"query-id<TAB>corpus-id<TAB>score\" (or \"query-id 0 corpus-id "
                       "score\"), found %d field%s", qrels, (long long)r.lineno, nf, nf == 1 ? "" : "s");
            goto done;
        }
        const char *qs = f[0], *ds = f[nf - 2], *gs = f[nf - 1];
        size_t qn = fl[0], dn = fl[nf - 2], gn = fl[nf - 1];
        char tmp[64], *end, b[96];
        size_t ns = gn < sizeof tmp - 1 ? gn : sizeof tmp - 1;
        memcpy(tmp, gs, ns);
        tmp[ns] = '\0';
        errno = 0;
        double g = strtod(tmp, &end);
        if (ns == 0 || *end != '\0' || g != floor(g) || fabs(g) > 1e9) {
            if (r.lineno == 1 && nrel == 0) continue;   /* the header line */
            cb_err_set(err, "%s:%lld: expected an integer grade as the score, found %s", qrels,
                       (long long)r.lineno, excerpt(b, sizeof b, gs, gn));
            goto done;
        }
        int64_t qi = find_id(qsort_, (size_t)nq_all, a.buf, qid, qs, qn);
        if (qi < 0) {
            cb_err_set(err, "%s:%lld: query-id %s is not in %s", qrels, (long long)r.lineno,
                       excerpt(b, sizeof b, qs, qn), queries);
            goto done;
        }
        int64_t di = find_id(dsort, (size_t)nd, a.buf, did, ds, dn);
        if (di < 0) {
            cb_err_set(err, "%s:%lld: corpus-id %s is not in %s", qrels, (long long)r.lineno,
                       excerpt(b, sizeof b, ds, dn), corpus);
            goto done;
        }
        rels = grow(rels, &cap_rel, nrel, sizeof(qrel));
        rels[nrel] = (qrel){(uint32_t)qi, (uint32_t)di, (int32_t)g, (uint32_t)nrel};
        nrel++;
    }
    if (rc < 0) goto done;
    if (nrel == 0) {
        cb_err_set(err, "%s: no judgement: expected \"query-id<TAB>corpus-id<TAB>score\" lines", qrels);
        goto done;
    }

    /* queries of the split in order of first appearance, cut to max_queries */
    qmap = cb_xmalloc((size_t)nq_all * sizeof(uint32_t));
    for (int64_t i = 0; i < nq_all; i++) qmap[i] = NONE;
    size_t nq = 0;
    for (size_t i = 0; i < nrel; i++)
        if (qmap[rels[i].q] == NONE) qmap[rels[i].q] = (uint32_t)nq++;
    if (max_queries > 0 && nq > max_queries) nq = max_queries;
    size_t k = 0;
    for (size_t i = 0; i < nrel; i++) {
        uint32_t q = qmap[rels[i].q];
        if (q < nq) {
            rels[k] = rels[i];
            rels[k++].q = q;
        }
    }
    nrel = k;
    qsort(rels, nrel, sizeof(qrel), by_query_doc);

    d->n_docs = (size_t)nd;
    d->n_queries = nq;
    d->doc_id = cb_xmalloc((size_t)nd * sizeof(char *));
    d->doc_text = cb_xmalloc((size_t)nd * sizeof(char *));
    d->doc_len = dlen;
    dlen = NULL;
    d->doc_tie = cb_xmalloc((size_t)nd * sizeof(uint32_t));
    d->doc_by_id = dsort;
    dsort = NULL;
    for (int64_t i = 0; i < nd; i++) {
        d->doc_id[i] = a.buf + did[i];
        d->doc_text[i] = a.buf + dtext[i];
        d->doc_tie[d->doc_by_id[i]] = (uint32_t)(nd - 1 - i);
    }
    d->query_id = cb_xmalloc((nq ? nq : 1) * sizeof(char *));
    d->query_text = cb_xmalloc((nq ? nq : 1) * sizeof(char *));
    d->query_len = cb_xmalloc((nq ? nq : 1) * sizeof(size_t));
    for (int64_t i = 0; i < nq_all; i++)
        if (qmap[i] < nq) {
            d->query_id[qmap[i]] = a.buf + qid[i];
            d->query_text[qmap[i]] = a.buf + qtext[i];
            d->query_len[qmap[i]] = qlen[i];
        }
    /* one judgement per (query, document): the last line wins, as in a dict */
    d->rel_off = cb_xcalloc(nq + 1, sizeof(size_t));
    d->rel_doc = cb_xmalloc((nrel ? nrel : 1) * sizeof(uint32_t));
    d->rel_grade = cb_xmalloc((nrel ? nrel : 1) * sizeof(int32_t));
    k = 0;
    for (size_t i = 0; i < nrel; i++) {
        if (i + 1 < nrel && rels[i + 1].q == rels[i].q && rels[i + 1].doc == rels[i].doc) continue;
        d->rel_doc[k] = rels[i].doc;
        d->rel_grade[k++] = rels[i].grade;
        d->rel_off[rels[i].q + 1]++;
    }
    for (size_t q = 0; q < nq; q++) d->rel_off[q + 1] += d->rel_off[q];
    d->arena = a.buf;
    a.buf = NULL;
    ret = 0;
done:
    data_lines_close(&r);
    free(a.buf);
    free(did);
    free(dtext);
    free(dlen);
    free(qid);
    free(qtext);
    free(qlen);
    free(dsort);
    free(qsort_);
    free(qmap);
    free(rels);
    free(corpus);
    free(queries);
    free(qdir);
    free(qrels);
    if (ret) eval_data_free(d);
    return ret;
}

int64_t eval_doc_index(const eval_data *d, const char *id, size_t len) {
    size_t lo = 0, hi = d->n_docs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *s = d->doc_id[d->doc_by_id[mid]];
        int c = strncmp(s, id, len);
        if (c == 0 && s[len] != '\0') c = 1;
        if (c == 0) return d->doc_by_id[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return -1;
}

/* ======================================================================== */
/* Ranking                                                                  */
/* ======================================================================== */

int eval_ranker_init(eval_ranker *r, const float *qv, const uint32_t *tie, int nq, int Lq, int D, int depth,
                     int max_docs, int max_len) {
    CB_ASSERT(nq >= 0 && Lq > 0 && D > 0 && depth > 0 && max_docs > 0 && max_len > 0);
    memset(r, 0, sizeof *r);
    r->qv = qv;
    r->tie = tie;
    r->nq = nq;
    r->Lq = Lq;
    r->D = D;
    r->depth = depth;
    r->max_docs = max_docs;
    /* blocks of about 2048 rows: the SGEMM output [rows, EVAL_QB * Lq] stays
     * a few MB per thread */
    r->block_rows = max_len > 2048 ? max_len : 2048;
#ifdef _OPENMP
    r->n_threads = omp_get_max_threads();
#else
    r->n_threads = 1;
#endif
    size_t W = (size_t)EVAL_QB * Lq, nqs = nq ? (size_t)nq : 1;
    r->heap = malloc(nqs * depth * sizeof(topk_hit));
    r->heap_n = calloc(nqs, sizeof(int));
    r->scores = malloc((size_t)EVAL_QB * max_docs * sizeof(float));
    r->sim = malloc((size_t)r->n_threads * r->block_rows * W * sizeof(float));
    r->colmax = malloc((size_t)r->n_threads * W * sizeof(float));
    r->off = malloc(((size_t)max_docs + 1) * sizeof(size_t));
    r->block = malloc(((size_t)max_docs + 1) * sizeof(int));
    if (r->heap && r->heap_n && r->scores && r->sim && r->colmax && r->off && r->block) return 0;
    eval_ranker_free(r);
    return -1;
}

void eval_ranker_free(eval_ranker *r) {
    free(r->heap);
    free(r->heap_n);
    free(r->scores);
    free(r->sim);
    free(r->colmax);
    free(r->off);
    free(r->block);
    memset(r, 0, sizeof *r);
}

void eval_ranker_add(eval_ranker *r, const float *dv, const int *lengths, int doc0, int nd) {
    CB_ASSERT(nd >= 0 && nd <= r->max_docs);
    if (nd == 0 || r->nq == 0) return;
    const int Lq = r->Lq, D = r->D;
    size_t *off = r->off;
    off[0] = 0;
    for (int i = 0; i < nd; i++) {
        CB_ASSERT(lengths[i] >= 0 && lengths[i] <= r->block_rows);
        off[i + 1] = off[i] + (size_t)lengths[i];
    }
    /* blocks of consecutive documents with at most block_rows rows */
    int nb = 0;
    for (int s = 0; s < nd;) {
        int e = s;
        size_t rows = 0;
        while (e < nd && rows + (size_t)lengths[e] <= (size_t)r->block_rows) rows += (size_t)lengths[e++];
        r->block[nb++] = s;
        s = e;
    }
    r->block[nb] = nd;
    for (int q0 = 0; q0 < r->nq; q0 += EVAL_QB) {
        const int nqb = r->nq - q0 < EVAL_QB ? r->nq - q0 : EVAL_QB, w = nqb * Lq;
        const float *qb = r->qv + (size_t)q0 * Lq * D;
#pragma omp parallel for schedule(dynamic, 1)
        for (int b = 0; b < nb; b++) {
#ifdef _OPENMP
            int th = omp_get_thread_num();
#else
            int th = 0;
#endif
            float *S = r->sim + (size_t)th * r->block_rows * EVAL_QB * Lq;
            float *mx = r->colmax + (size_t)th * EVAL_QB * Lq;
            size_t r0 = off[r->block[b]], rows = off[r->block[b + 1]] - r0;
            /* S[rows, w] = dv[rows, D] @ qb[w, D]^T: every document row
             * against every vector of the batch's queries */
            if (rows)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, w, D, 1.0f, dv + r0 * D, D, qb,
                            D, 0.0f, S, w);
            for (int i = r->block[b]; i < r->block[b + 1]; i++) {
                size_t a = off[i] - r0, e = off[i + 1] - r0;
                if (a == e) {   /* no kept vector: colbert-ai's -9999 per query vector */
                    for (int q = 0; q < nqb; q++) r->scores[(size_t)q * r->max_docs + i] = -9999.0f * Lq;
                    continue;
                }
                memcpy(mx, S + a * w, (size_t)w * sizeof(float));
                for (size_t t = a + 1; t < e; t++) {
                    const float *row = S + t * w;
                    for (int j = 0; j < w; j++) mx[j] = row[j] > mx[j] ? row[j] : mx[j];
                }
                for (int q = 0; q < nqb; q++) {
                    float s = 0.0f;
                    for (int k = 0; k < Lq; k++) s += mx[q * Lq + k];
                    r->scores[(size_t)q * r->max_docs + i] = s;
                }
            }
        }
#pragma omp parallel for schedule(dynamic, 1)
        for (int q = 0; q < nqb; q++) {
            size_t g = (size_t)(q0 + q);
            topk_hit *h = r->heap + g * r->depth;
            const float *sc = r->scores + (size_t)q * r->max_docs;
            for (int i = 0; i < nd; i++) {
                int32_t doc = doc0 + i;
                if (sc[i] == sc[i])   /* a NaN score is left out */
                    topk_push(h, &r->heap_n[g], r->depth, sc[i], doc, r->tie ? r->tie[doc] : (uint32_t)doc);
            }
        }
    }
}

void eval_ranker_finish(eval_ranker *r, int32_t *top, float *top_score) {
    for (int q = 0; q < r->nq; q++) {
        topk_hit *h = r->heap + (size_t)q * r->depth;
        topk_sort(h, r->heap_n[q]);
        topk_write(h, r->heap_n[q], r->depth, top + (size_t)q * r->depth, top_score + (size_t)q * r->depth);
        r->heap_n[q] = 0;
    }
}

/* ======================================================================== */
/* Metrics                                                                  */
/* ======================================================================== */

static int32_t grade_of(const eval_data *d, size_t q, int32_t doc) {
    size_t lo = d->rel_off[q], hi = d->rel_off[q + 1];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->rel_doc[mid] == (uint32_t)doc) return d->rel_grade[mid];
        if (d->rel_doc[mid] < (uint32_t)doc) lo = mid + 1;
        else hi = mid;
    }
    return 0;
}

void eval_score(eval_metrics *mean, eval_metrics *per_query, const eval_data *d, const int32_t *top, int depth) {
    double sum[4] = {0, 0, 0, 0};
    for (size_t q = 0; q < d->n_queries; q++) {
        /* the ideal DCG@10 from the ten best grades */
        int32_t best[10];
        int nb = 0;
        size_t n_rel = 0;
        for (size_t k = d->rel_off[q]; k < d->rel_off[q + 1]; k++) {
            int32_t g = d->rel_grade[k];
            if (g <= 0) continue;
            n_rel++;
            if (nb < 10) best[nb++] = g;
            else if (g > best[9]) best[9] = g;
            else continue;
            for (int i = nb - 1; i > 0 && best[i] > best[i - 1]; i--) {
                int32_t t = best[i]; best[i] = best[i - 1]; best[i - 1] = t;
            }
        }
        double idcg = 0, dcg = 0, rr = 0;
        for (int i = 0; i < nb; i++) idcg += best[i] / log2(i + 2.0);
        size_t hit10 = 0, hit100 = 0;
        const int32_t *t = top + q * (size_t)depth;
        for (int r = 0; r < depth && r < 100; r++) {
            if (t[r] < 0) break;
            int32_t g = grade_of(d, q, t[r]);
            if (g <= 0) continue;
            hit100++;
            if (r < 10) {
                hit10++;
                dcg += g / log2(r + 2.0);
                if (rr == 0) rr = 1.0 / (r + 1);
            }
        }
        eval_metrics m = {
            .ndcg10 = idcg > 0 ? dcg / idcg : 0,
            .mrr10 = rr,
            .recall10 = n_rel ? (double)hit10 / n_rel : 0,
            .recall100 = n_rel ? (double)hit100 / n_rel : 0,
        };
        if (per_query) per_query[q] = m;
        sum[0] += m.ndcg10;
        sum[1] += m.mrr10;
        sum[2] += m.recall10;
        sum[3] += m.recall100;
    }
    double n = d->n_queries ? (double)d->n_queries : 1;
    mean->ndcg10 = sum[0] / n;
    mean->mrr10 = sum[1] / n;
    mean->recall10 = sum[2] / n;
    mean->recall100 = sum[3] / n;
}

/* ======================================================================== */
/* Run files                                                                */
/* ======================================================================== */

typedef struct run_entry {
    uint32_t q;
    int32_t doc;
    double score;
    uint32_t tie;
} run_entry;

static int by_query_score(const void *a, const void *b) {
    const run_entry *x = a, *y = b;
    if (x->q != y->q) return x->q < y->q ? -1 : 1;
    if (x->score != y->score) return x->score > y->score ? -1 : 1;
    return x->tie < y->tie ? -1 : x->tie > y->tie;
}

int eval_read_run(int32_t **top, const eval_data *d, const char *path, int depth, cb_err *err) {
    *top = NULL;
    data_lines r;
    memset(&r, 0, sizeof r);
    if (data_lines_open(&r, path, err)) return -1;
    size_t nq = d->n_queries;
    /* queries of the split by id, for lookups */
    uint32_t *qs = cb_xmalloc((nq ? nq : 1) * sizeof(uint32_t));
    size_t *qoff = cb_xmalloc((nq ? nq : 1) * sizeof(size_t));
    for (size_t i = 0; i < nq; i++) {
        qs[i] = (uint32_t)i;
        qoff[i] = (size_t)(d->query_id[i] - d->arena);
    }
    sort_buf = d->arena;
    sort_off = qoff;
    qsort(qs, nq, sizeof(uint32_t), by_id);
    run_entry *e = NULL;
    size_t n = 0, cap = 0;
    uint32_t *seen = NULL;
    int ret = -1, rc;
    char *line, b[96];
    size_t len;
    while ((rc = data_lines_next(&r, &line, &len, err)) == 1) {
        if (is_blank(line, len)) continue;
        char *f[7];
        size_t fl[7];
        int nf = 0;
        for (char *s = line, *end = line + len; s < end && nf < 7;) {
            while (s < end && (*s == ' ' || *s == '\t' || *s == '\r')) s++;
            if (s >= end) break;
            char *t = s;
            while (t < end && *t != ' ' && *t != '\t' && *t != '\r') t++;
            f[nf] = s;
            fl[nf++] = (size_t)(t - s);
            s = t;
        }
        if (nf != 6) {
            cb_err_set(err, "%s:%lld: expected \"query-id Q0 doc-id rank score tag\", found %d field%s", path,
                       (long long)r.lineno, nf, nf == 1 ? "" : "s");
            goto done;
        }
        int64_t q = find_id(qs, nq, d->arena, qoff, f[0], fl[0]);
        if (q < 0) continue;   /* a query outside the split */
        int64_t doc = eval_doc_index(d, f[2], fl[2]);
        if (doc < 0) {
            cb_err_set(err, "%s:%lld: doc-id %s is not in the corpus", path, (long long)r.lineno,
                       excerpt(b, sizeof b, f[2], fl[2]));
            goto done;
        }
        f[4][fl[4]] = '\0';
        char *endp;
        double s = strtod(f[4], &endp);
        if (*endp || fl[4] == 0) {
            cb_err_set(err, "%s:%lld: expected a number as the score, found %s", path, (long long)r.lineno,
                       excerpt(b, sizeof b, f[4], fl[4]));
            goto done;
        }
        e = grow(e, &cap, n, sizeof(run_entry));
        e[n++] = (run_entry){(uint32_t)q, (int32_t)doc, s, d->doc_tie[doc]};
    }
    if (rc < 0) goto done;
    qsort(e, n, sizeof(run_entry), by_query_score);
    *top = cb_xmalloc((nq ? nq : 1) * (size_t)depth * sizeof(int32_t));
    for (size_t i = 0; i < nq * (size_t)depth; i++) (*top)[i] = -1;
    seen = cb_xmalloc((d->n_docs ? d->n_docs : 1) * sizeof(uint32_t));
    for (size_t i = 0; i < d->n_docs; i++) seen[i] = NONE;
    for (size_t i = 0, k = 0; i < n; i++, k++) {
        if (i == 0 || e[i].q != e[i - 1].q) k = 0;
        if (seen[e[i].doc] == e[i].q) {
            cb_err_set(err, "%s: query %s lists document %s twice", path, d->query_id[e[i].q], d->doc_id[e[i].doc]);
            free(*top);
            *top = NULL;
            goto done;
        }
        seen[e[i].doc] = e[i].q;
        if (k < (size_t)depth) (*top)[e[i].q * (size_t)depth + k] = e[i].doc;
    }
    ret = 0;
done:
    data_lines_close(&r);
    free(qs);
    free(qoff);
    free(e);
    free(seen);
    return ret;
}

int eval_write_run(const char *path, const eval_data *d, const int32_t *top, const float *top_score, int depth,
                   int count, const char *tag, cb_err *err) {
    CB_ASSERT(count >= 0 && count <= depth);
    char *tmp;
    FILE *f = cb_out_open(path, &tmp, err);
    if (!f) return -1;
    for (size_t q = 0; q < d->n_queries; q++)
        for (int k = 0; k < count; k++) {
            int32_t doc = top[q * (size_t)depth + k];
            if (doc < 0) break;
            fprintf(f, "%s Q0 %s %d %.9g %s\n", d->query_id[q], d->doc_id[doc], k + 1,
                    (double)top_score[q * (size_t)depth + k], tag);
        }
    if (ferror(f)) {
        cb_err_set(err, "%s: write failed: %s", path, strerror(errno));
        cb_out_abort(f, tmp);
        return -1;
    }
    return cb_out_commit(f, tmp, path, err);
}
