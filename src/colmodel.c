/* colmodel.c: see colmodel.h. */
#include "colmodel.h"
#include "model.h"
#include "batch.h"
#include "fsutil.h"
#include "progress.h"
#include "pylate.h"
#include "rng.h"
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- load -------------------------------------------------------------- */

static int meta_int(json_t *o, const char *key, int *dst, const char *path, cb_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (json_is_boolean(v)) { *dst = json_is_true(v); return 0; }
    if (json_is_integer(v)) { *dst = (int)json_integer_value(v); return 0; }
    return cb_err_set(err, "%s: \"%s\" must be an integer or a boolean", path, key);
}

/* colbert-ai's query_token_id / doc_token_id: the marker token's text
 * ("[unused0]"), as PyLate reads it. */
static int meta_token(json_t *o, const char *key, char *dst, size_t cap, const char *path, cb_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v) || !*json_string_value(v) || strlen(json_string_value(v)) >= cap)
        return cb_err_set(err, "%s: \"%s\" must be a token's text of 1 to %zu bytes", path, key, cap - 1);
    snprintf(dst, cap, "%s", json_string_value(v));
    return 0;
}

int cb_colbert_metadata_parse(colbert_config *cc, int *dim_given, const char *text, size_t len, const char *path,
                              cb_err *err) {
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    if (!root) return cb_err_set(err, "%s:%d:%d: invalid JSON: %s", path, je.line, je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return cb_err_set(err, "%s: expected a JSON object at the top level", path);
    }
    json_t *o = json_object_get(root, "config");  /* colbert-ai accepts {"config": {...}} too */
    if (!json_is_object(o)) o = root;
    int dim = INT_MIN;
    int rc = meta_int(o, "query_maxlen", &cc->query_maxlen, path, err);
    rc = rc ? rc : meta_int(o, "doc_maxlen", &cc->doc_maxlen, path, err);
    rc = rc ? rc : meta_int(o, "dim", &dim, path, err);
    rc = rc ? rc : meta_int(o, "mask_punctuation", &cc->mask_punctuation, path, err);
    rc = rc ? rc : meta_int(o, "attend_to_mask_tokens", &cc->attend_to_mask_tokens, path, err);
    rc = rc ? rc : meta_int(o, "relu", &cc->relu, path, err);
    rc = rc ? rc : meta_token(o, "query_token_id", cc->query_token, sizeof cc->query_token, path, err);
    rc = rc ? rc : meta_token(o, "doc_token_id", cc->doc_token, sizeof cc->doc_token, path, err);
    json_decref(root);
    if (rc) return -1;
    *dim_given = 0;
    if (dim != INT_MIN) cc->dim = *dim_given = dim;
    /* the lengths are checked against the model's positions at load */
    if (cc->dim < 1 || cc->dim > 65536 || cc->query_maxlen < 4 || cc->doc_maxlen < 3)
        return cb_err_set(err, "%s: ColBERT settings out of range (dim %d: 1 .. 65536, query_maxlen %d: >= 4, "
                          "doc_maxlen %d: >= 3)", path, cc->dim, cc->query_maxlen, cc->doc_maxlen);
    return 0;
}

/* Read the ColBERT settings of artifact.metadata into m->cc (and its dim,
 * 0 when absent, into *dim_given); m->metadata keeps the text. */
static int read_metadata(colmodel *m, const char *path, int *dim_given, cb_err *err) {
    size_t len;
    char *text = cb_read_file(path, &len, err);
    if (!text) return -1;
    if (cb_colbert_metadata_parse(&m->cc, dim_given, text, len, path, err)) {
        free(text);
        return -1;
    }
    m->metadata = text;
    return 0;
}

/* Every tokenizer id must have a row in the word embeddings. */
static int check_vocab(const colmodel *m, cb_err *err) {
    char from[600];
    snprintf(from, sizeof from, "%.500s/config.json (vocab_size %d)", m->dir, m->enc.info.vocab);
    return cb_tokenizer_check_ids(m->tok, m->enc.info.vocab, from, err);
}

/* The markers: those cc names (artifact.metadata's query_token_id, a
 * PyLate directory's prefixes), else colbert-ai's [unused0] / [unused1]
 * where the vocabulary has them, else PyLate's "[Q] " / "[D] ". Where the
 * tokenizer lacks them they are added as PyLate does (models/colbert.py:
 * resize_token_embeddings(len(tokenizer)), tokenizer.add_tokens([query
 * prefix, document prefix]), resize_token_embeddings again): the word
 * embeddings grow to the tokenizer's size, the markers are added to the
 * tokenizer, the embeddings grow by the tokens added; the new rows as
 * transformers' mean resizing. A tokenizer smaller than the embeddings
 * (PyLate would shrink them) keeps every row: the markers' ids then index
 * rows that were there. Nothing is added where the markers already are (a
 * checkpoint written by cb_colmodel_save has them in tokenizer.json). On
 * return cc names both. */
static int add_markers(colmodel *m, uint64_t seed, cb_err *err) {
    colbert_config *cc = &m->cc;
    const char *dq, *dd;
    cb_colbert_default_markers(m->tok, &dq, &dd);
    if (!cc->query_token[0]) snprintf(cc->query_token, sizeof cc->query_token, "%s", dq);
    if (!cc->doc_token[0]) snprintf(cc->doc_token, sizeof cc->doc_token, "%s", dd);
    if (cb_tokenizer_token_id(m->tok, cc->query_token) >= 0 && cb_tokenizer_token_id(m->tok, cc->doc_token) >= 0)
        return 0;
    int before = m->enc.info.vocab;
    int n = cb_tokenizer_vocab_size(m->tok) - m->enc.info.vocab;
    if (n > 0 && cb_backbone_grow_vocab(&m->enc, n, cb_rng_mix64(seed ^ 0x726f7773ULL), err)) return -1;
    const char *const markers[2] = {cc->query_token, cc->doc_token};
    int added = cb_tokenizer_add_tokens(m->tok, markers, 2, err);
    if (added < 0) return -1;
    n = cb_tokenizer_vocab_size(m->tok) - m->enc.info.vocab;
    if (n > 0 && cb_backbone_grow_vocab(&m->enc, n, cb_rng_mix64(seed ^ 0x6d61726bULL), err)) return -1;
    m->added_markers = added;
    if (added && !m->quiet)
        fprintf(stderr, "colbert: added the ColBERT markers \"%s\" and \"%s\" to the tokenizer of %s%s; word "
                "embeddings %d -> %d rows\n", cc->query_token, cc->doc_token, m->dir,
                strcmp(dq, "[unused0]") ? " (no [unused0] / [unused1])" : "", before, m->enc.info.vocab);
    return 0;
}

/* colbert-ai's projection, linear.weight [dim, H] of model.safetensors, into
 * *lin (malloc'd; NULL when the file has none); dim from its shape, checked
 * against artifact.metadata's (meta_dim, 0: none). */
static int read_colbert_linear(colmodel *m, int meta_dim, float **lin, cb_err *err) {
    int H = m->enc.info.hidden;
    char *stp = cb_path_new(m->dir, "model.safetensors", err);
    if (!stp) return -1;
    st_file f;
    int rc = cb_st_open(&f, stp, err);
    free(stp);
    if (rc) return -1;
    const st_tensor *lt = cb_st_find(&f, "linear.weight");
    if (lt && (lt->ndim != 2 || lt->shape[1] != H || lt->shape[0] <= 0)) {
        rc = cb_err_set(err, "%s/model.safetensors: linear.weight has shape [%lld, %lld], expected [dim, %d]", m->dir,
                        (long long)lt->shape[0], (long long)(lt->ndim > 1 ? lt->shape[1] : 0), H);
    } else if (lt && meta_dim && meta_dim != lt->shape[0]) {
        rc = cb_err_set(err, "%s/artifact.metadata: dim %d disagrees with linear.weight of model.safetensors, "
                        "shape [%lld, %d] (dim %lld); the checkpoint is inconsistent", m->dir, meta_dim,
                        (long long)lt->shape[0], H, (long long)lt->shape[0]);
    } else if (lt) {
        m->cc.dim = (int)lt->shape[0];
        *lin = cb_malloc((size_t)m->cc.dim * H * sizeof(float), "linear.weight", err);
        int64_t shape[2] = {m->cc.dim, H};
        rc = *lin ? cb_st_read_f32(&f, "linear.weight", *lin, 2, shape, err) : -1;
    }
    cb_st_close(&f);
    return rc;
}

int cb_colmodel_load(colmodel *m, ops_device *dev, const char *name, int dim, uint64_t seed, cb_err *err) {
    memset(m, 0, sizeof *m);
    m->dev = dev;
    float *lin = NULL;
    cb_colbert_config_default(&m->cc);
    if (dim > 0) m->cc.dim = dim;
    if (!(m->dir = cb_model_resolve(name, err))) return -1;
    if (!(m->tok = cb_tokenizer_load(m->dir, err))) goto fail;
    if (cb_backbone_load(&m->enc, dev, m->dir, err)) goto fail;
    int H = m->enc.info.hidden;
    char *meta = cb_path_new(m->dir, "artifact.metadata", err);
    if (!meta) goto fail;
    int has_meta = cb_file_exists(meta);
    int meta_dim = 0;   /* the metadata's dim, 0 when it gives none */
    int rc = has_meta ? read_metadata(m, meta, &meta_dim, err) : 0;
    free(meta);
    if (rc) goto fail;
    /* a ColBERT checkpoint of colbert-ai (its projection in model.safetensors,
     * its settings in artifact.metadata), else one of PyLate (modules.json:
     * the encoder and a Dense), else a plain encoder */
    if (read_colbert_linear(m, meta_dim, &lin, err)) goto fail;
    m->is_colbert = lin != NULL;
    if (!lin) {
        pylate_dir pl;
        if (cb_pylate_read(&pl, m->dir, err)) goto fail;
        if (pl.found) {
            m->cc = pl.cc;
            if (!(lin = cb_malloc((size_t)pl.dim * H * sizeof(float), "the projection", err)) ||
                cb_pylate_read_linear(&pl, m->dir, H, lin, err))
                goto fail;
            m->is_colbert = m->is_pylate = 1;
        }
    }
    if (add_markers(m, seed, err)) goto fail;
    if (cb_colbert_vocab_init_marked(&m->vocab, m->tok, m->cc.query_token, m->cc.doc_token, err)) goto fail;
    if (check_vocab(m, err)) goto fail;
    if (!lin) {
        lin = cb_malloc((size_t)m->cc.dim * H * sizeof(float), "the projection", err);
        if (!lin) goto fail;
        cb_colbert_linear_init(lin, seed, m->enc.info.initializer_range, m->cc.dim, H);
    }
    m->linear = cb_ops_alloc(dev, (size_t)m->cc.dim * H * sizeof(float), "the projection", err);
    if (!m->linear) goto fail;
    cb_ops_upload(dev, m->linear, lin, (size_t)m->cc.dim * H * sizeof(float));
    free(lin);
    lin = NULL;
    if (m->cc.dim <= 0 || m->cc.query_maxlen < 4 || m->cc.doc_maxlen < 3 ||
        m->cc.query_maxlen > m->enc.info.max_len || m->cc.doc_maxlen > m->enc.info.max_len) {
        cb_err_set(err, "%s: ColBERT settings out of range (dim %d, query_maxlen %d, doc_maxlen %d; "
                   "the model has %d positions)", m->dir, m->cc.dim, m->cc.query_maxlen, m->cc.doc_maxlen,
                   m->enc.info.max_len);
        goto fail;
    }
    return 0;
fail:
    free(lin);
    cb_colmodel_free(m);
    return -1;
}

void cb_colmodel_free(colmodel *m) {
    if (m->tok) cb_tokenizer_free(m->tok);
    cb_backbone_free(&m->enc);
    cb_backbone_acts_free(&m->acts);
    if (m->dev) {
        cb_ops_free(m->dev, m->linear);
        cb_ops_free(m->dev, m->buf);
    }
    free(m->metadata);
    free(m->host);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

/* ---- encode ------------------------------------------------------------ */

/* The encoding buffers, for batches of batch_tokens tokens: on the device
 * the head's output, projection, norms and keep mask; on the host the ids,
 * lengths, masks and one batch of output vectors. */
static int buffers(colmodel *m, cb_err *err) {
    if (m->buf) return 0;
    if (!m->batch_tokens) m->batch_tokens = 8192;
    int maxlen = m->cc.doc_maxlen > m->cc.query_maxlen ? m->cc.doc_maxlen : m->cc.query_maxlen;
    if (m->batch_tokens < maxlen) m->batch_tokens = maxlen;
    size_t T = (size_t)m->batch_tokens, D = (size_t)m->cc.dim;
    if (cb_backbone_acts_init(&m->acts, &m->enc, (int)T, T * maxlen, 0, err)) return -1;
    m->buf = cb_ops_alloc(m->dev, T * (2 * D + 1) * sizeof(float) + T, "the encoder's buffers", err);
    m->host = m->buf ? cb_malloc(T * D * sizeof(float) + T * 2 * sizeof(int32_t) + 2 * T, "the encoder's buffers",
                                 err) : NULL;
    if (!m->host) {
        cb_backbone_acts_free(&m->acts);
        if (m->buf) cb_ops_free(m->dev, m->buf);
        m->buf = NULL;
        return -1;
    }
    m->d_out = m->buf;
    m->d_proj = m->d_out + T * D;
    m->d_norm = m->d_proj + T * D;
    m->d_keep = (uint8_t *)(m->d_norm + T);
    m->h_out = m->host;
    m->h_ids = (int32_t *)(m->h_out + T * D);
    m->h_len = (int *)(m->h_ids + T);
    m->h_mask = (uint8_t *)(m->h_len + T);
    m->h_keep = m->h_mask + T;
    return 0;
}

/* Encoder and head over the packed batch staged in m->h_*; the vectors
 * come back into m->h_out. */
static void encode_batch(colmodel *m, int n_seq, int T, int queries) {
    int D = m->cc.dim, H = m->enc.info.hidden;
    backbone_batch bb = {.n_seq = n_seq, .seq_len = m->h_len, .ids = m->h_ids, .mask = queries ? m->h_mask : NULL};
    cb_backbone_forward(&m->enc, &m->acts, &bb);
    if (!queries) cb_ops_upload(m->dev, m->d_keep, m->h_keep, (size_t)T);
    cb_colbert_head_forward(m->dev, m->d_out, m->d_proj, m->d_norm, cb_backbone_output(&m->enc, &m->acts), m->linear,
                         queries ? NULL : m->d_keep, m->cc.relu, T, H, D);
    cb_ops_download(m->dev, m->h_out, m->d_out, (size_t)T * D * sizeof(float));
}

int cb_colmodel_queries_per_batch(const colmodel *m) {
    int bt = m->batch_tokens ? m->batch_tokens : 8192;   /* as buffers() sizes it */
    int maxlen = m->cc.doc_maxlen > m->cc.query_maxlen ? m->cc.doc_maxlen : m->cc.query_maxlen;
    if (bt < maxlen) bt = maxlen;
    return bt / m->cc.query_maxlen;
}

/* Vectors of text i: v[off(i) * D .. off(i + 1) * D), off(i) = offs ?
 * offs[i] : i * per. A NaN or infinity (finite weights that overflow on
 * some input) is an error, never an output. */
static int check_finite(const float *v, const size_t *offs, size_t per, int n, int D, cb_err *err) {
    for (int i = 0; i < n; i++) {
        size_t a = offs ? offs[i] : (size_t)i * per, b = offs ? offs[i + 1] : (size_t)(i + 1) * per;
        for (size_t j = a * (size_t)D; j < b * (size_t)D; j++)
            if (!isfinite(v[j]))
                return cb_err_set(err, "text %d: the model's output is not finite (its weights overflow on this "
                                  "text); nothing is written (HINT: check the model's weights)", i + 1);
    }
    return 0;
}

int cb_colmodel_encode_queries(colmodel *m, const char *const *texts, const size_t *lens, int n, float *out,
                            cb_err *err) {
    if (buffers(m, err)) return -1;
    int Lq = m->cc.query_maxlen, D = m->cc.dim;
    int per = cb_colmodel_queries_per_batch(m);
    progress pg;
    cb_progress_init(&pg, "encode queries", "queries", n, m->quiet || n < 1000);
    for (int s = 0; s < n; s += per) {
        int nb = n - s < per ? n - s : per;
#pragma omp parallel for schedule(dynamic, 16)
        for (int i = 0; i < nb; i++)
            cb_colbert_query_ids(m->h_ids + (size_t)i * Lq, m->h_mask + (size_t)i * Lq, &m->vocab, m->tok,
                              texts[s + i], lens[s + i], &m->cc);
        for (int i = 0; i < nb; i++) m->h_len[i] = Lq;
        if (m->cc.attend_to_mask_tokens) memset(m->h_mask, 1, (size_t)nb * Lq);
        encode_batch(m, nb, nb * Lq, 1);
        memcpy(out + (size_t)s * Lq * D, m->h_out, (size_t)nb * Lq * D * sizeof(float));
        cb_progress_update(&pg, s + nb);
    }
    cb_progress_finish(&pg);
    return check_finite(out, NULL, (size_t)Lq, n, D, err);
}

int cb_colmodel_encode_docs(colmodel *m, const char *const *texts, const size_t *lens, int n, int **lengths,
                         float **vectors, cb_err *err) {
    if (buffers(m, err)) return -1;
    int Ld = m->cc.doc_maxlen, D = m->cc.dim;
    size_t nn = (size_t)(n ? n : 1);
    int32_t *ids = cb_malloc(nn * Ld * sizeof(int32_t), "the documents' token ids", err);
    int *ntok = ids ? cb_malloc(nn * sizeof(int), "the documents' lengths", err) : NULL;
    int *kept = ntok ? cb_calloc(nn, sizeof(int), "the documents' lengths", err) : NULL;
    size_t *off = kept ? cb_malloc((nn + 1) * sizeof(size_t), "the documents' offsets", err) : NULL;
    float *vec = NULL;
    batch_plan bp = {0};
    if (!off) goto fail;
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < n; i++) {
        int32_t *dd = ids + (size_t)i * Ld;
        ntok[i] = cb_colbert_doc_ids(dd, &m->vocab, m->tok, texts[i], lens[i], &m->cc);
        uint8_t keep[1024];
        int k = 0;
        for (int j = 0; j < ntok[i]; j += 1024) {
            int c = ntok[i] - j < 1024 ? ntok[i] - j : 1024;
            cb_colbert_doc_keep(keep, dd + j, c, &m->vocab, m->cc.mask_punctuation);
            for (int t = 0; t < c; t++) k += keep[t];
        }
        kept[i] = k;
    }
    off[0] = 0;
    for (int i = 0; i < n; i++) off[i + 1] = off[i] + (size_t)kept[i];
    vec = cb_malloc((off[n] ? off[n] : 1) * D * sizeof(float), "the document vectors", err);
    if (!vec || cb_batch_plan_make(&bp, ntok, n, m->batch_tokens, err)) goto fail;
    progress pg;
    cb_progress_init(&pg, "encode documents", "docs", n, m->quiet || n < 200);
    for (int bi = 0; bi < bp.n_batches; bi++) {
        const int *order = bp.order + bp.start[bi];
        int T = 0, nb = bp.start[bi + 1] - bp.start[bi];
        for (int k = 0; k < nb; k++) {
            int i = order[k];
            memcpy(m->h_ids + T, ids + (size_t)i * Ld, (size_t)ntok[i] * sizeof(int32_t));
            m->h_len[k] = ntok[i];
            T += ntok[i];
        }
        cb_colbert_doc_keep(m->h_keep, m->h_ids, T, &m->vocab, m->cc.mask_punctuation);
        encode_batch(m, nb, T, 0);
        int t = 0;
        for (int k = 0; k < nb; k++) {
            float *dst = vec + off[order[k]] * D;
            for (int j = 0; j < m->h_len[k]; j++, t++)
                if (m->h_keep[t]) { memcpy(dst, m->h_out + (size_t)t * D, (size_t)D * sizeof(float)); dst += D; }
        }
        cb_progress_update(&pg, bp.start[bi + 1]);
    }
    cb_progress_finish(&pg);
    cb_batch_plan_free(&bp);
    if (check_finite(vec, off, 0, n, D, err)) goto fail;
    free(ids);
    free(ntok);
    free(off);
    *lengths = kept;
    *vectors = vec;
    return 0;
fail:
    free(ids);
    free(ntok);
    free(kept);
    free(off);
    free(vec);
    return -1;
}

/* ---- save -------------------------------------------------------------- */

/* Every file is written through fsutil's atomic output (fsync'd), and so
 * is the checkpoint's directory, before the directory is renamed into
 * place. */
int cb_colmodel_save(const char *dir, const backbone *enc, const float *params, const float *linear,
                  const colbert_config *cc, const tokenizer *tok, const char *src_dir, const char *extra_meta,
                  cb_err *err) {
    size_t dl = strlen(dir);
    char *tmp = cb_malloc(dl + 32, "a checkpoint's directory name", err);
    char *old = tmp ? cb_malloc(dl + 32, "a checkpoint's directory name", err) : NULL;
    if (!old) {
        free(tmp);
        return -1;
    }
    snprintf(tmp, dl + 32, "%s.tmp-%ld", dir, (long)getpid());
    snprintf(old, dl + 32, "%s.old-%ld", dir, (long)getpid());
    cb_remove_tree(tmp, NULL);
    int rc = 0;
    char *p = NULL;
    json_t *cfg = NULL, *meta = NULL;
    if (mkdir(tmp, 0755)) { rc = cb_err_set(err, "%s: cannot create: %s", tmp, strerror(errno)); goto done; }

    /* weights: encoder under the family's prefix ("bert."), then linear.weight */
    int nt = cb_backbone_named_count(enc);
    backbone_named *names = cb_malloc((size_t)nt * sizeof *names, "the checkpoint's tensor names", err);
    st_wtensor *w = names ? cb_malloc((size_t)(nt + 1) * sizeof *w, "the checkpoint's tensor list", err) : NULL;
    char (*keys)[112] = w ? cb_malloc((size_t)nt * sizeof *keys, "the checkpoint's tensor keys", err) : NULL;
    if (!keys) {
        free(names);
        free(w);
        rc = -1;
        goto done;
    }
    cb_backbone_named_tensors(enc, names);
    for (int i = 0; i < nt; i++) {
        snprintf(keys[i], sizeof keys[i], "%s%s", enc->info.prefix, names[i].name);
        w[i] = (st_wtensor){keys[i], ST_F32, names[i].ndim, {names[i].shape[0], names[i].shape[1]},
                            params + names[i].offset};
    }
    w[nt] = (st_wtensor){"linear.weight", ST_F32, 2, {cc->dim, enc->info.hidden}, linear};
    p = cb_path_new(tmp, "model.safetensors", err);
    rc = p ? cb_st_write(p, w, nt + 1, err) : -1;
    free(p); p = NULL;
    free(names);
    free(w);
    free(keys);
    if (rc) goto done;

    /* config.json: the source's, marked as colbert-ai's HF_ColBERT */
    json_error_t je;
    if (!(p = cb_path_new(src_dir, "config.json", err))) { rc = -1; goto done; }
    cfg = json_load_file(p, 0, &je);
    free(p); p = NULL;
    if (!cfg) { rc = cb_err_set(err, "%s/config.json:%d: %s", src_dir, je.line, je.text); goto done; }
    /* colbert-ai's HF_ColBERT for every family: its class_factory builds the
     * encoder class from model_type, and transformers' AutoModel reads
     * model_type too */
    json_object_set_new(cfg, "architectures", json_pack("[s]", "HF_ColBERT"));
    json_t *vs = json_object_get(cfg, "vocab_size");   /* added marker rows */
    if (!json_is_integer(vs) || json_integer_value(vs) != enc->info.vocab)
        json_object_set_new(cfg, "vocab_size", json_integer(enc->info.vocab));
    if (!(p = cb_path_new(tmp, "config.json", err))) { rc = -1; goto done; }
    if ((rc = cb_json_write(p, cfg, err))) goto done;
    free(p); p = NULL;

    /* tokenizer files, with the added markers */
    if ((rc = cb_tokenizer_save(tok, src_dir, tmp, err))) goto done;
    /* a PyLate source pads with [MASK]: the model's own pad token again */
    const char *pad = cb_tokenizer_id_token(tok, enc->info.pad_id);
    if (pad && (rc = cb_tokenizer_save_pad(tmp, pad, err))) goto done;

    /* artifact.metadata: ColBERT settings, extra keys, and "meta" */
    colbert_config c = *cc;   /* the markers: cc's, else the vocabulary's */
    const char *qtok, *dtok;
    cb_colbert_default_markers(tok, &qtok, &dtok);
    if (!c.query_token[0]) snprintf(c.query_token, sizeof c.query_token, "%s", qtok);
    if (!c.doc_token[0]) snprintf(c.doc_token, sizeof c.doc_token, "%s", dtok);
    qtok = c.query_token;
    dtok = c.doc_token;
    meta = json_pack("{s:i, s:i, s:i, s:b, s:b, s:b, s:s, s:s, s:s, s:{s:s}}", "query_maxlen", cc->query_maxlen,
                     "doc_maxlen", cc->doc_maxlen, "dim", cc->dim, "mask_punctuation", cc->mask_punctuation,
                     "attend_to_mask_tokens", cc->attend_to_mask_tokens, "relu", cc->relu, "similarity",
                     "cosine", "query_token_id", qtok, "doc_token_id", dtok, "meta", "written_by", "colbert.c");
    if (extra_meta) {
        json_t *x = json_loads(extra_meta, 0, &je);
        if (!json_is_object(x)) { json_decref(x); rc = cb_err_set(err, "checkpoint metadata: invalid JSON"); goto done; }
        json_object_update(meta, x);
        json_decref(x);
    }
    if (!(p = cb_path_new(tmp, "artifact.metadata", err))) { rc = -1; goto done; }
    if ((rc = cb_json_write(p, meta, err))) goto done;
    free(p); p = NULL;

    /* PyLate's files: modules.json, 1_Dense, config_sentence_transformers.json */
    if ((rc = cb_pylate_write(tmp, &c, enc->info.hidden, linear, err))) goto done;

    /* into place: the old directory (if any) moves aside first */
    int had_old = cb_dir_exists(dir);
    if (had_old && rename(dir, old)) { rc = cb_err_set(err, "%s: cannot replace: %s", dir, strerror(errno)); goto done; }
    if (rename(tmp, dir)) {
        rc = cb_err_set(err, "%s: cannot rename into place: %s", dir, strerror(errno));
        if (had_old) rename(old, dir);
        goto done;
    }
    if (had_old) cb_remove_tree(old, NULL);
done:
    if (rc) cb_remove_tree(tmp, NULL);
    free(p);
    json_decref(cfg);
    json_decref(meta);
    free(tmp);
    free(old);
    return rc;
}
