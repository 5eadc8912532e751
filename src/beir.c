/* beir.c: BEIR corpus, queries and qrels, streamed to the caller; see
 * beir.h. */
#include "beir.h"
#include "data.h"
#include "progress.h"

#include <dirent.h>
#include <math.h>
#include <string.h>

void cb_beir_opts_default(beir_opts *o) {
    memset(o, 0, sizeof *o);
    o->title_sep = " ";
}

void cb_beir_free(beir *b) {
    free(b->corpus_path);
    free(b->queries_path);
    free(b->qrels_path);
    cb_strtab_free(&b->doc_ids);
    cb_strtab_free(&b->doc_texts);
    cb_strtab_free(&b->query_ids);
    cb_strtab_free(&b->query_texts);
    memset(b, 0, sizeof *b);
}

/* The .tsv files of qdir ("dev, test, train"), for "no split" messages. */
static void list_splits(char *out, size_t cap, const char *qdir) {
    out[0] = '\0';
    DIR *dh = opendir(qdir);
    if (!dh) return;
    struct dirent *e;
    size_t n = 0;
    while ((e = readdir(dh))) {
        size_t l = strlen(e->d_name);
        if (l > 4 && !strcmp(e->d_name + l - 4, ".tsv") && n + l < cap - 8)
            n += (size_t)snprintf(out + n, cap - n, "%s%.*s", n ? ", " : "", (int)(l - 4), e->d_name);
    }
    closedir(dh);
}

/* The member `key` of the object at node 0 as a string in *s and *n, or NULL and 0
 * when absent or null (an error when required). */
static int get_string(const data_json *j, const data_lines *r, const char *key, int required,
                      const char **s, size_t *n, cb_err *err) {
    int64_t k = cb_data_json_get(j, 0, key);
    *s = NULL;
    *n = 0;
    if (k < 0 || j->nodes[k].type == DJ_NULL) {
        if (required) return cb_data_lines_err(err, r, "expected a \"%s\" string, found none", key);
        return 0;
    }
    if (j->nodes[k].type != DJ_STRING)
        return cb_data_lines_err(err, r, required ? "expected a \"%s\" string, found %s"
                                               : "expected \"%s\" to be a string, found %s",
                              key, cb_data_json_type_name(j->nodes[k].type));
    *s = j->nodes[k].s;
    *n = j->nodes[k].len;
    return 0;
}

/* The "_id" of the object at node 0, as written (a string, or a number's
 * text); not empty. */
static int get_id(const data_json *j, const data_lines *r, const char **s, size_t *n, cb_err *err) {
    const dj_node *root = &j->nodes[0];
    int64_t k = cb_data_json_get(j, 0, "_id");
    if (root->type != DJ_OBJECT || k < 0)
        return cb_data_lines_err(err, r, "expected an object with \"_id\", found %s%s", cb_data_json_type_name(root->type),
                              root->type == DJ_OBJECT ? " without \"_id\"" : "");
    const dj_node *nd = &j->nodes[k];
    if (nd->type != DJ_STRING && nd->type != DJ_NUMBER)
        return cb_data_lines_err(err, r, "expected \"_id\" to be a string, found %s", cb_data_json_type_name(nd->type));
    if (nd->len == 0) return cb_data_lines_err(err, r, "empty \"_id\"");
    *s = nd->s;
    *n = nd->len;
    return 0;
}

/* corpus.jsonl (corpus = 1) or queries.jsonl: ids interned, each text to
 * o->doc, b->doc_texts or b->query_texts. */
static int read_jsonl(beir *b, const beir_opts *o, int corpus, cb_err *err) {
    const char *path = corpus ? b->corpus_path : b->queries_path;
    strtab *ids = corpus ? &b->doc_ids : &b->query_ids;
    data_lines r;
    if (cb_data_lines_open(&r, path, err)) return -1;
    progress pg;
    cb_progress_init_mb(&pg, "corpus", r.size, 64, !(corpus && o->progress));
    data_json j = {0};
    char *line, *join = NULL, b96[96];
    size_t len, cap_join = 0;
    int rc;
    while ((rc = cb_data_lines_next_nonblank(&r, &pg, &line, &len, err)) == 1) {
        const char *id = NULL, *title = NULL, *text, *doc;
        size_t nid = 0, nt = 0, nx, n;
        uint32_t k;
        int is_new;
        rc = -1;   /* for the breaks below; the loop test resets it */
        if (cb_data_json_parse(&j, line, len, err)) {
            cb_err_prefix(err, "%s:%lld", path, (long long)r.lineno);
            break;
        }
        if (get_id(&j, &r, &id, &nid, err) || (corpus && get_string(&j, &r, "title", 0, &title, &nt, err)) ||
            get_string(&j, &r, "text", 1, &text, &nx, err))
            break;
        if (cb_strtab_intern(ids, id, nid, &k, &is_new, err)) break;
        if (!is_new) {
            cb_data_lines_err(err, &r, "_id %s appears twice", cb_data_excerpt(b96, sizeof b96, id, nid));
            break;
        }
        if (!corpus) {
            if (cb_strtab_append(&b->query_texts, text, nx, NULL, err)) break;
            continue;
        }
        if (!(doc = cb_data_join_title(&join, &cap_join, o->no_title ? NULL : title, nt, o->title_sep, text, nx,
                                    &n, err)))
            break;
        if (o->doc ? o->doc(o->ctx, k, doc, n, err) : cb_strtab_append(&b->doc_texts, doc, n, NULL, err)) {
            cb_err_prefix(err, "%s:%lld", path, (long long)r.lineno);
            break;
        }
    }
    if (rc == 0) {
        cb_progress_finish(&pg);
        if (ids->n == 0)
            rc = cb_err_set(err, "%s: empty file: expected one %s a line", path, corpus ? "document" : "query");
    }
    cb_data_lines_close(&r);
    cb_data_json_free(&j);
    free(join);
    return rc < 0 ? -1 : 0;
}

/* Split a qrels line into at most 5 fields: at tabs when it has one, else at
 * runs of spaces; trailing '\r' and spaces of a field dropped. */
static int qrels_fields(char *line, size_t len, char **f, size_t *fl) {
    int nf = 0, tabs = memchr(line, '\t', len) != NULL;
    for (char *s = line, *e = line + len; s < e && nf < 5;) {
        if (!tabs) while (s < e && (*s == ' ' || *s == '\r')) s++;
        if (s >= e) break;
        char *t = s;
        while (t < e && (tabs ? *t != '\t' : *t != ' ')) t++;
        f[nf] = s;
        fl[nf++] = (size_t)(t - s);
        s = t + (t < e);
    }
    for (int i = 0; i < nf; i++)
        while (fl[i] && (f[i][fl[i] - 1] == '\r' || f[i][fl[i] - 1] == ' ')) fl[i]--;
    return nf;
}

/* qrels/SPLIT.tsv: "query-id<TAB>corpus-id<TAB>score" or "query-id 0
 * corpus-id score"; each kept line to o->qrel. */
static int read_qrels(beir *b, const beir_opts *o, cb_err *err) {
    data_lines r;
    if (cb_data_lines_open(&r, b->qrels_path, err)) return -1;
    char *line, b96[96];
    size_t len;
    int rc;
    while ((rc = cb_data_lines_next_nonblank(&r, NULL, &line, &len, err)) == 1) {
        char *f[5];
        size_t fl[5];
        int nf = qrels_fields(line, len, f, fl);
        rc = -1;   /* for the breaks below; the loop test resets it */
        if (nf != 3 && nf != 4) {
            cb_data_lines_err(err, &r, "expected \"query-id<TAB>corpus-id<TAB>score\" (or \"query-id 0 corpus-id "
                           "score\"), found %d field%s", nf, nf == 1 ? "" : "s");
            break;
        }
        const char *qs = f[0], *ds = f[nf - 2], *gs = f[nf - 1];
        size_t qn = fl[0], dn = fl[nf - 2], gn = fl[nf - 1];
        char tmp[64], *end;
        size_t ns = gn < sizeof tmp - 1 ? gn : sizeof tmp - 1;
        memcpy(tmp, gs, ns);
        tmp[ns] = '\0';
        double g = strtod(tmp, &end);
        if (ns == 0 || *end != '\0' || (o->integer_scores && (g != floor(g) || fabs(g) > 1e9))) {
            if (r.lineno == 1) continue;   /* the header line */
            cb_data_lines_err(err, &r, "expected %s as the score, found %s",
                           o->integer_scores ? "an integer grade" : "a number", cb_data_excerpt(b96, sizeof b96, gs, gn));
            break;
        }
        if (o->positive_only && !(g > 0)) continue;
        beir_qrel q = {cb_strtab_find(&b->query_ids, qs, qn), cb_strtab_find(&b->doc_ids, ds, dn), g, r.lineno};
        if (q.query == STRTAB_NONE) {
            cb_data_lines_err(err, &r, "query-id %s is not in %s", cb_data_excerpt(b96, sizeof b96, qs, qn), b->queries_path);
            break;
        }
        if (q.doc == STRTAB_NONE) {
            cb_data_lines_err(err, &r, "corpus-id %s is not in %s", cb_data_excerpt(b96, sizeof b96, ds, dn), b->corpus_path);
            break;
        }
        b->n_qrels++;
        if (o->qrel && o->qrel(o->ctx, b, &q, err)) break;
    }
    cb_data_lines_close(&r);
    return rc < 0 ? -1 : 0;
}

int cb_beir_read(beir *b, const char *dir, const char *split, const beir_opts *o, cb_err *err) {
    memset(b, 0, sizeof *b);
    if (!cb_dir_exists(dir))
        return cb_err_set(err, "%s: not a directory (expected a BEIR dataset: corpus.jsonl, queries.jsonl, "
                          "qrels/<split>.tsv)", dir);
    size_t nq = strlen(split) + 5;
    char *qdir = cb_path_new(dir, "qrels", err), *qname = cb_malloc(nq, "a file name", err);
    int rc = -1;
    if (!qdir || !qname) goto done;
    snprintf(qname, nq, "%s.tsv", split);
    if (!(b->corpus_path = cb_path_new(dir, "corpus.jsonl", err)) ||
        !(b->queries_path = cb_path_new(dir, "queries.jsonl", err)) || !(b->qrels_path = cb_path_new(qdir, qname, err)))
        goto done;
    if (!cb_file_exists(b->qrels_path)) {
        char splits[256];
        list_splits(splits, sizeof splits, qdir);
        if (!cb_dir_exists(qdir)) cb_err_set(err, "%s: no qrels directory (expected qrels/%s.tsv)", dir, split);
        else cb_err_set(err, "%s: no split \"%s\" (%s)%s%s", qdir, split, qname,
                        splits[0] ? "; the splits there: " : "; it holds no .tsv file", splits);
        goto done;
    }
    rc = read_jsonl(b, o, 1, err) || read_jsonl(b, o, 0, err) || read_qrels(b, o, err) ? -1 : 0;
done:
    free(qdir);
    free(qname);
    if (rc) cb_beir_free(b);
    return rc;
}
