/* colbert.c: ColBERT's token layout and its projection head, forward and
 * backward (through ops.h); see colbert.h. */
#include "colbert.h"
#include "rng.h"

#include <math.h>
#include <string.h>

void cb_colbert_config_default(colbert_config *c) {
    c->dim = 128;
    c->query_maxlen = 32;
    c->doc_maxlen = 220;
    c->mask_punctuation = 1;
    c->attend_to_mask_tokens = 0;
    c->relu = 0;
    c->query_token[0] = c->doc_token[0] = '\0';
}

/* ---- token layout ------------------------------------------------------- */

static int need_id(int32_t *out, const tokenizer *tok, const char *token, cb_err *err) {
    int id = cb_tokenizer_token_id(tok, token);
    if (id < 0)
        return cb_err_set(err, "colbert: the vocabulary has no %s token (ColBERT needs a mask token, and [unused0] "
                               "and [unused1] or the added tokens \"[Q] \" and \"[D] \" as markers)", token);
    *out = id;
    return 0;
}

/* The query or document marker: colbert-ai's [unused0] / [unused1] where
 * the vocabulary has them, else PyLate's added "[Q] " / "[D] " (added with
 * cb_tokenizer_add_tokens by whoever grew the embeddings). */
static int marker_id(int32_t *out, const tokenizer *tok, const char *unused, const char *added, cb_err *err) {
    int id = cb_tokenizer_token_id(tok, unused);
    if (id < 0) return need_id(out, tok, added, err);
    *out = id;
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

void cb_colbert_default_markers(const tokenizer *tok, const char **query_token, const char **doc_token) {
    *query_token = cb_tokenizer_token_id(tok, "[unused0]") >= 0 ? "[unused0]" : "[Q] ";
    *doc_token = cb_tokenizer_token_id(tok, "[unused1]") >= 0 ? "[unused1]" : "[D] ";
}

int cb_colbert_vocab_init(colbert_vocab *v, const tokenizer *tok, cb_err *err) {
    return cb_colbert_vocab_init_marked(v, tok, NULL, NULL, err);
}

int cb_colbert_vocab_init_marked(colbert_vocab *v, const tokenizer *tok, const char *query_token,
                                 const char *doc_token, cb_err *err) {
    memset(v, 0, sizeof *v);
    tokenizer_specials sp = cb_tokenizer_get_specials(tok);
    v->tmpl = cb_tokenizer_get_template(tok);
    v->pad = sp.pad;
    v->cls = sp.cls;
    v->sep = sp.sep;
    if (sp.mask < 0) return need_id(&v->mask, tok, "[MASK]", err);
    v->mask = sp.mask;
    if (query_token && *query_token ? need_id(&v->q_marker, tok, query_token, err)
                                    : marker_id(&v->q_marker, tok, "[unused0]", "[Q] ", err))
        return -1;
    if (doc_token && *doc_token ? need_id(&v->d_marker, tok, doc_token, err)
                                : marker_id(&v->d_marker, tok, "[unused1]", "[D] ", err))
        return -1;
    /* colbert-ai's skiplist: the first word piece of each character of
     * string.punctuation, encoded without special tokens. */
    static const char punct[] = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    for (const char *p = punct; *p; p++) {
        int32_t id;
        if (cb_tokenizer_encode(tok, p, 1, &id, 1) < 1) continue;
        int dup = 0;
        for (int k = 0; k < v->n_punct; k++) dup |= v->punct[k] == id;
        if (!dup) v->punct[v->n_punct++] = id;
    }
    qsort(v->punct, (size_t)v->n_punct, sizeof(int32_t), cmp_i32);
    return 0;
}

/* The template's first special ([CLS], <s>), the marker, the rest of the
 * template's prefix, the pieces, the suffix ([SEP], </s>): colbert-ai and
 * PyLate put the marker right after the first token. Pieces are truncated
 * so that the whole fits in L. Returns the count (<= L). */
static int marked_ids(int32_t *ids, const colbert_vocab *v, const tokenizer *tok, const char *text,
                      size_t len, int32_t marker, int L) {
    const tokenizer_template *tm = &v->tmpl;
    int np = tm->n_prefix, ns = tm->n_suffix, room = L - np - ns - 1;
    CB_ASSERT(room >= 0);
    int n = cb_tokenizer_encode(tok, text, len, ids + np + 1, room);
    /* -1: no memory for the code points of a text of len bytes (a text this
     * size was already read into memory whole) */
    CB_ASSERT(n >= 0);
    if (n > room) n = room;
    int k = 0;
    if (np) ids[k++] = tm->prefix[0];
    ids[k++] = marker;
    for (int i = 1; i < np; i++) ids[k++] = tm->prefix[i];
    k += n;
    for (int i = 0; i < ns; i++) ids[k++] = tm->suffix[i];
    return k;
}

void cb_colbert_query_ids(int32_t *ids, uint8_t *mask, const colbert_vocab *v, const tokenizer *tok,
                       const char *text, size_t len, const colbert_config *c) {
    int L = c->query_maxlen;
    int n = marked_ids(ids, v, tok, text, len, v->q_marker, L);
    for (int i = 0; i < L; i++) {
        if (i >= n) ids[i] = v->mask;
        mask[i] = (uint8_t)(i < n || c->attend_to_mask_tokens);
    }
}

int cb_colbert_doc_ids(int32_t *ids, const colbert_vocab *v, const tokenizer *tok,
                    const char *text, size_t len, const colbert_config *c) {
    return marked_ids(ids, v, tok, text, len, v->d_marker, c->doc_maxlen);
}

void cb_colbert_doc_keep(uint8_t *keep, const int32_t *ids, int n, const colbert_vocab *v, int mask_punctuation) {
    for (int i = 0; i < n; i++) {
        int k = ids[i] != v->pad;
        if (k && mask_punctuation)
            k = bsearch(&ids[i], v->punct, (size_t)v->n_punct, sizeof(int32_t), cmp_i32) == NULL;
        keep[i] = (uint8_t)k;
    }
}

/* splitmix64 (rng.h) as the uniform source, Box-Muller for the normals. */
void cb_colbert_linear_init(float *linear, uint64_t seed, float std, int D, int H) {
    rng s = {seed};   /* the raw splitmix64 sequence from state `seed` */
    size_t n = (size_t)D * H;
    for (size_t i = 0; i < n; i += 2) {
        /* u1 in (0, 1] so that log(u1) is finite; 53-bit uniforms */
        double u1 = ((double)(cb_rng_next(&s) >> 11) + 1.0) * 0x1.0p-53;
        double u2 = (double)(cb_rng_next(&s) >> 11) * 0x1.0p-53;
        double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
        linear[i] = (float)(std * r * cos(th));
        if (i + 1 < n) linear[i + 1] = (float)(std * r * sin(th));
    }
}

/* ---- head ---------------------------------------------------------------- */

void cb_colbert_head_forward(ops_device *d, float *out, float *proj, float *norm, const float *hidden,
                          const float *linear, const uint8_t *keep, int relu, int T, int H, int D) {
    if (T == 0) return;
    cb_ops_linear_forward(d, proj, hidden, linear, NULL, T, H, D);
    cb_ops_keep_relu_forward(d, proj, keep, relu, T, D);
    cb_ops_l2norm_forward(d, out, norm, proj, T, D);
}

void cb_colbert_head_backward(ops_device *d, float *d_hidden, float *d_linear, float *d_out, const float *out,
                           const float *proj, const float *norm, const float *hidden, const float *linear,
                           const uint8_t *keep, int relu, int T, int H, int D) {
    if (T == 0) return;
    /* d_out becomes dL/dproj in place */
    cb_ops_l2norm_backward(d, d_out, d_out, out, norm, T, D);
    cb_ops_keep_relu_backward(d, d_out, proj, keep, relu, T, D);
    /* forward: proj[T, D] = hidden[T, H] @ linear[D, H]^T */
    cb_ops_linear_backward(d, d_hidden, d_linear, NULL, d_out, hidden, linear, T, H, D, 1);
}
