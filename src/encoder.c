/* encoder.c: see encoder.h. */
#include "encoder.h"
#include "batch.h"
#include "progress.h"

#include <math.h>
#include <string.h>

int cb_encoder_load(encoder *e, ops_device *dev, const char *name, int max_len, cb_err *err) {
    memset(e, 0, sizeof *e);
    e->dev = dev;
    e->dir = cb_model_resolve(name, err);
    if (!e->dir) return -1;
    if (cb_sbert_config_load(&e->sbert, e->dir, err)) goto fail;
    if (!(e->tok = cb_tokenizer_load(e->dir, err))) goto fail;
    if (cb_backbone_load(&e->enc, dev, e->dir, err)) goto fail;
    char from[600];   /* every tokenizer id must have a row in the word embeddings */
    snprintf(from, sizeof from, "%.500s/config.json (vocab_size %d)", e->dir, e->enc.info.vocab);
    if (cb_tokenizer_check_ids(e->tok, e->enc.info.vocab, from, err)) goto fail;
    e->tmpl = cb_tokenizer_get_template(e->tok);
    int model_max = e->enc.info.max_len;
    e->max_len = max_len > 0 ? max_len : (e->sbert.max_seq_length > 0 ? e->sbert.max_seq_length : model_max);
    if (e->max_len > model_max) e->max_len = model_max;
    int n_special = e->tmpl.n_prefix + e->tmpl.n_suffix;
    if (e->max_len < n_special + 1) e->max_len = n_special + 1;
    e->batch_tokens = e->max_len > 4096 ? e->max_len : 4096;
    if (cb_backbone_acts_init(&e->acts, &e->enc, e->batch_tokens, (size_t)e->batch_tokens * (size_t)e->max_len, 0,
                              err))
        goto fail;
    e->hidden = cb_malloc((size_t)e->batch_tokens * e->enc.info.hidden * sizeof(float),
                          "the encoder's output buffer", err);
    if (!e->hidden) goto fail;
    return 0;
fail:
    cb_encoder_free(e);
    return -1;
}

void cb_encoder_free(encoder *e) {
    if (e->tok) cb_tokenizer_free(e->tok);
    cb_backbone_free(&e->enc);
    cb_backbone_acts_free(&e->acts);
    free(e->hidden);
    free(e->dir);
    memset(e, 0, sizeof *e);
}

int cb_encoder_tokenize(const encoder *e, const char *text, size_t len, int32_t *ids) {
    const tokenizer_template *tm = &e->tmpl;
    int room = e->max_len - tm->n_prefix - tm->n_suffix;
    int n = cb_tokenizer_encode(e->tok, text, len, ids + tm->n_prefix, room);
    CB_ASSERT(n >= 0);   /* no memory for one text's code points: see colbert.c */
    if (n > room) n = room;
    memcpy(ids, tm->prefix, (size_t)tm->n_prefix * sizeof *ids);
    memcpy(ids + tm->n_prefix + n, tm->suffix, (size_t)tm->n_suffix * sizeof *ids);
    return tm->n_prefix + n + tm->n_suffix;
}

/* Tokenize all texts (in parallel) into ids[n * max_len], lens[n]. */
static void tokenize_all(const encoder *e, const char *const *texts, const size_t *lens, int n,
                         int32_t *ids, int *ntok) {
#pragma omp parallel for schedule(dynamic, 64)
    for (int i = 0; i < n; i++)
        ntok[i] = cb_encoder_tokenize(e, texts[i], lens[i], ids + (size_t)i * e->max_len);
}

/* Visit batches of texts in order of decreasing length; for each batch run
 * the forward pass and call visit(order slice, count, hidden states). With
 * gather (and e->comm of several ranks) each rank runs a contiguous range
 * of the batches (cb_comm_share), then gather(ctx, order, n, lo) collects
 * the results: lo [N + 1] are the ranks' ranges in the sorted order. A
 * batch is the same whoever runs it, so the results are the one process's. */
typedef void (*batch_visit)(void *ctx, const int *idx, int count, const int *ntok, const float *hidden);
typedef int (*batch_gather)(void *ctx, cb_comm *c, const int *order, int n, const int *lo, cb_err *err);

static int run_batches(encoder *e, const char *const *texts, const size_t *lens, int n,
                       batch_visit visit, batch_gather gather, void *ctx, cb_err *err) {
    cb_comm *comm = gather && e->comm ? e->comm : cb_comm_serial();
    size_t nn = (size_t)(n ? n : 1);
    int32_t *ids = cb_malloc(nn * e->max_len * sizeof(int32_t), "the texts' token ids", err);
    int *ntok = ids ? cb_malloc(nn * sizeof(int), "the texts' lengths", err) : NULL;
    int32_t *packed = ntok ? cb_malloc((size_t)e->batch_tokens * sizeof(int32_t), "a batch", err) : NULL;
    int *seq_len = packed ? cb_malloc((size_t)e->batch_tokens * sizeof(int), "a batch", err) : NULL;
    batch_plan bp = {0};
    if (seq_len) tokenize_all(e, texts, lens, n, ids, ntok);
    int bad = !seq_len || cb_batch_plan_make(&bp, ntok, n, e->batch_tokens, err);
    int *lo = bad ? NULL : cb_malloc(((size_t)comm->size + 1) * sizeof(int), "the batch plan", err);
    if (cb_comm_agree(comm, lo ? 0 : -1, err)) {   /* every rank goes on, or none */
        free(lo);
        lo = NULL;
    }
    if (!lo) {
        cb_batch_plan_free(&bp);
        free(ids);
        free(ntok);
        free(packed);
        free(seq_len);
        return -1;
    }
    /* this rank's batches [b0, b1); lo[r]: where rank r's texts start in the sorted order */
    size_t b0 = 0, b1 = (size_t)bp.n_batches;
    for (int r = 0; r <= comm->size; r++) {
        size_t a, z;
        cb_comm_share(comm, r < comm->size ? r : comm->size - 1, (size_t)bp.n_batches, 1, &a, &z);
        lo[r] = bp.start[r < comm->size ? a : z];
        if (r == comm->rank) b0 = a, b1 = z;
    }
    progress pg;
    cb_progress_init(&pg, "encode", "texts", lo[comm->rank + 1] - lo[comm->rank], e->quiet);
    for (int b = (int)b0; b < (int)b1; b++) {
        const int *idx = bp.order + bp.start[b];
        int count = bp.start[b + 1] - bp.start[b], T = 0;
        for (int k = 0; k < count; k++) {
            memcpy(packed + T, ids + (size_t)idx[k] * e->max_len, (size_t)ntok[idx[k]] * sizeof(int32_t));
            seq_len[k] = ntok[idx[k]];
            T += ntok[idx[k]];
        }
        backbone_batch bb = {.n_seq = count, .seq_len = seq_len, .ids = packed};
        cb_backbone_forward(&e->enc, &e->acts, &bb);
        cb_ops_download(e->dev, e->hidden, cb_backbone_output(&e->enc, &e->acts),
                     (size_t)T * e->enc.info.hidden * sizeof(float));
        visit(ctx, idx, count, seq_len, e->hidden);
        cb_progress_update(&pg, bp.start[b + 1] - lo[comm->rank]);
    }
    cb_progress_finish(&pg);
    int rc = comm->size > 1 ? gather(ctx, comm, bp.order, n, lo, err) : 0;
    cb_batch_plan_free(&bp);
    free(lo);
    free(ids);
    free(ntok);
    free(packed);
    free(seq_len);
    return rc;
}

typedef struct embed_ctx { const encoder *e; float *out; } embed_ctx;

static void pool_batch(void *vctx, const int *idx, int count, const int *ntok, const float *hidden) {
    embed_ctx *c = vctx;
    int H = c->e->enc.info.hidden;
    sbert_pooling mode = c->e->sbert.pooling;
    int off = 0;
    for (int k = 0; k < count; k++) {
        const float *h = hidden + (size_t)off * H;
        float *o = c->out + (size_t)idx[k] * H;
        int n = ntok[k];
        if (mode == POOL_CLS) {
            memcpy(o, h, (size_t)H * sizeof(float));
        } else if (mode == POOL_MAX) {
            for (int j = 0; j < H; j++) {
                float m = h[j];
                for (int t = 1; t < n; t++) m = fmaxf(m, h[(size_t)t * H + j]);
                o[j] = m;
            }
        } else {
            for (int j = 0; j < H; j++) o[j] = 0;
            for (int t = 0; t < n; t++)
                for (int j = 0; j < H; j++) o[j] += h[(size_t)t * H + j];
            float div = mode == POOL_MEAN_SQRT_LEN ? sqrtf((float)n) : (float)n;
            for (int j = 0; j < H; j++) o[j] /= div;
        }
        if (c->e->sbert.normalize) {
            /* torch.nn.functional.normalize: x / max(||x||, 1e-12) */
            double s = 0;
            for (int j = 0; j < H; j++) s += (double)o[j] * o[j];
            float inv = 1.0f / fmaxf((float)sqrt(s), 1e-12f);
            for (int j = 0; j < H; j++) o[j] *= inv;
        }
        off += n;
    }
}

/* The ranks' embeddings to every rank: each packs its rows in the sorted
 * order, one allgatherv, then every row back to its text's place. */
static int gather_rows(void *vctx, cb_comm *c, const int *order, int n, const int *lo, cb_err *err) {
    embed_ctx *x = vctx;
    size_t H = (size_t)x->e->enc.info.hidden;
    float *sorted = cb_malloc((size_t)(n ? n : 1) * H * sizeof(float), "the gathered embeddings", err);
    size_t *counts = sorted ? cb_malloc((size_t)c->size * sizeof(size_t), "the gathered embeddings", err) : NULL;
    if (cb_comm_agree(c, counts ? 0 : -1, err)) {
        free(sorted);
        free(counts);
        return -1;
    }
    for (int r = 0; r < c->size; r++) counts[r] = (size_t)(lo[r + 1] - lo[r]) * H;
    for (int p = lo[c->rank]; p < lo[c->rank + 1]; p++)
        memcpy(sorted + (size_t)p * H, x->out + (size_t)order[p] * H, H * sizeof(float));
    cb_comm_allgatherv(c, sorted, sorted + (size_t)lo[c->rank] * H, counts, COMM_F32);
    for (int p = 0; p < n; p++) memcpy(x->out + (size_t)order[p] * H, sorted + (size_t)p * H, H * sizeof(float));
    free(sorted);
    free(counts);
    return 0;
}

/* Finite weights can still overflow on some input (an activation at
 * FLT_MAX plus more): such vectors are an error, never an output. Text i
 * owns v[off(i) * H .. off(i + 1) * H), off(i) = offs ? offs[i] : i. */
static int check_finite(const float *v, const size_t *offs, size_t total, int n, int H, cb_err *err) {
    for (int i = 0; i < n; i++) {
        size_t a = offs ? offs[i] : (size_t)i, b = offs ? (i + 1 < n ? offs[i + 1] : total) : (size_t)i + 1;
        for (size_t j = a * (size_t)H; j < b * (size_t)H; j++)
            if (!isfinite(v[j]))
                return cb_err_set(err, "text %d: the model's output is not finite (its weights overflow on this "
                                  "text); nothing is written (HINT: check the model's weights)", i + 1);
    }
    return 0;
}

int cb_encoder_embed(encoder *e, const char *const *texts, const size_t *lens, int n, float *out, cb_err *err) {
    embed_ctx c = {e, out};
    if (run_batches(e, texts, lens, n, pool_batch, gather_rows, &c, err)) return -1;
    return check_finite(out, NULL, (size_t)n, n, e->enc.info.hidden, err);
}

typedef struct tokvec_ctx { int H; int *lengths; size_t *offsets; float *vectors; } tokvec_ctx;

static void copy_batch(void *vctx, const int *idx, int count, const int *ntok, const float *hidden) {
    tokvec_ctx *c = vctx;
    size_t off = 0;
    for (int k = 0; k < count; k++) {
        size_t nf = (size_t)ntok[k] * c->H;
        memcpy(c->vectors + c->offsets[idx[k]] * c->H, hidden + off, nf * sizeof(float));
        off += nf;
    }
}

int cb_encoder_token_vectors(encoder *e, const char *const *texts, const size_t *lens, int n, int **lengths,
                          float **vectors, cb_err *err) {
    int H = e->enc.info.hidden;
    int *L = cb_malloc((size_t)(n ? n : 1) * sizeof(int), "the texts' lengths", err);
    size_t *offs = L ? cb_malloc((size_t)(n ? n : 1) * sizeof(size_t), "the texts' offsets", err) : NULL;
    int32_t *tmp = offs ? cb_malloc((size_t)e->max_len * sizeof(int32_t), "a text's ids", err) : NULL;
    if (!tmp) {
        free(L);
        free(offs);
        return -1;
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {  /* lengths first, to lay out the output */
        L[i] = cb_encoder_tokenize(e, texts[i], lens[i], tmp);
        offs[i] = total;
        total += (size_t)L[i];
    }
    free(tmp);
    tokvec_ctx c = {H, L, offs, cb_malloc((total ? total : 1) * H * sizeof(float), "the token vectors", err)};
    if (!c.vectors || run_batches(e, texts, lens, n, copy_batch, NULL, &c, err) ||
        check_finite(c.vectors, offs, total, n, H, err)) {
        free(c.vectors);
        free(offs);
        free(L);
        return -1;
    }
    free(offs);
    *lengths = L;
    *vectors = c.vectors;
    return 0;
}
