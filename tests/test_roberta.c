/* test_roberta.c: the RoBERTa and XLM-RoBERTa families of the encoder
 * interface (backbone.h) against transformers, on the small seeded models
 * tests/ref/gen_roberta.py makes (no package ships real XLM-R weights); the
 * token ids come from the Python tokenizers, in the reference file.
 * For each family:
 *   - info: family, prefix "roberta.", usable length 514 - 1 - 1 = 512, pad 1;
 *   - forward: last hidden states of documents (some 512 tokens: positions
 *     up to 513) and ColBERT queries with <mask> padding, all in one packed
 *     batch, max abs diff <= 1e-4 (test_bert's tolerance); sentence
 *     embeddings (mean pooling) against sentence-transformers, <= 1e-5;
 *   - a ColBERT training step (ce, ib): loss rel err <= 1e-5, every
 *     parameter gradient rel err <= 1e-3 (test_step's tolerances);
 *   - doc_maxlen 513 is refused (the usable length is 512);
 *   - a checkpoint written by cb_colmodel_save has "roberta." keys,
 *     architectures HF_ColBERT, the family's model_type, and loads back to
 *     the same outputs, bit for bit;
 *   - growing the vocabulary: old rows and every other tensor unchanged,
 *     new rows drawn around the old rows' mean (transformers' mean
 *     resizing); the mean itself when the covariance is singular;
 *   - loading through encoder.h / colmodel.h: either the family's tokenizer
 *     is supported and the sentence embeddings equal sentence-transformers',
 *     or the load fails with an error that names the tokenizer. */
#include <jansson.h>
#include "ref_step.h"
#include "backbone.h"
#include "colmodel.h"
#include "encoder.h"
#include "fsutil.h"
#include "safetensors.h"

static st_file ref;
static char key_buf[256];
static const void *rawk(const char *fam, const char *name, size_t *n) {
    snprintf(key_buf, sizeof key_buf, "%s.%s", fam, name);
    return ref_raw(&ref, key_buf, n);
}

static void model_dir_of(char *out, size_t cap, const char *fam) {
    snprintf(out, cap, "%s/%s_model", test_env("COLBERT_REF"), fam);
}

/* The whole reference batch through the encoder; returns the max abs diff
 * and leaves the outputs in *out (caller frees) when out is not NULL. */
static float forward_all(const backbone *b, const char *fam, float **out) {
    size_t n_tok, n_seq;
    const int32_t *ids = rawk(fam, "ids", &n_tok);
    const int32_t *lens = rawk(fam, "lengths", &n_seq);
    const int32_t *mask32 = rawk(fam, "mask", NULL);
    const float *hid = rawk(fam, "hidden", NULL);
    uint8_t *mask = malloc(n_tok);
    size_t att = 0;
    for (size_t i = 0; i < n_tok; i++) mask[i] = (uint8_t)mask32[i];
    for (size_t s = 0; s < n_seq; s++) att += (size_t)lens[s] * (size_t)lens[s];
    backbone_acts a;
    cb_err err = {{0}};
    CHECK_MSG(cb_backbone_acts_init(&a, b, (int)n_tok, att, 0, &err) == 0, "%s", err.msg);
    backbone_batch bb = {.n_seq = (int)n_seq, .seq_len = (const int *)lens, .ids = ids, .mask = mask};
    cb_backbone_forward(b, &a, &bb);
    const float *o = cb_backbone_output(b, &a);
    size_t n = n_tok * (size_t)b->info.hidden;
    float worst = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(o[i] - hid[i]);
        if (!(d <= worst)) worst = d;
    }
    if (out) {
        *out = malloc(n * sizeof(float));
        memcpy(*out, o, n * sizeof(float));
    }
    cb_backbone_acts_free(&a);
    free(mask);
    return worst;
}

static void test_forward(const char *fam, const char *model_type) {
    char dir[4096];
    model_dir_of(dir, sizeof dir, fam);
    backbone b;
    cb_err err = {{0}};
    if (cb_backbone_load(&b, cb_ops_cpu(), dir, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    CHECK(!strcmp(b.info.family, model_type) && !strcmp(b.info.prefix, "roberta."));
    CHECK_MSG(b.info.max_len == 512 && b.info.pad_id == 1, "%s: max_len %d pad %d", fam, b.info.max_len,
              b.info.pad_id);
    size_t n_seq;
    const int32_t *lens = rawk(fam, "lengths", &n_seq);
    int longest = 0;
    for (size_t s = 0; s < n_seq; s++) longest = lens[s] > longest ? lens[s] : longest;
    CHECK(longest == 512);
    float *out;
    float worst = forward_all(&b, fam, &out);
    printf("test_roberta: %s: %zu sequences (longest %d) in one batch: max abs diff %.3g\n", fam, n_seq, longest,
           worst);
    CHECK_MSG(worst <= 1e-4f, "%s: forward max abs diff %g", fam, worst);

    /* sentence embeddings: mean over each document's tokens */
    int nd = *(const int32_t *)rawk(fam, "n_docs", NULL);
    const float *emb = rawk(fam, "embed", NULL);
    int H = b.info.hidden;
    double ew = 0, cmin = 1;
    size_t off = 0;
    for (int d = 0; d < nd; d++) {
        double dot = 0, na = 0, nb = 0;
        for (int j = 0; j < H; j++) {
            double m = 0;
            for (int t = 0; t < lens[d]; t++) m += out[(off + (size_t)t) * H + j];
            m /= lens[d];
            double e = emb[(size_t)d * H + j];
            ew = fmax(ew, fabs(m - e));
            dot += m * e, na += m * m, nb += e * e;
        }
        cmin = fmin(cmin, dot / sqrt(na * nb));
        off += (size_t)lens[d];
    }
    printf("test_roberta: %s: %d sentence embeddings vs sentence-transformers: max abs diff %.3g, min cosine %.9f\n",
           fam, nd, ew, cmin);
    CHECK_MSG(ew <= 1e-5, "%s: sentence embeddings max abs diff %g", fam, ew);
    free(out);
    cb_backbone_free(&b);
}

/* The ColBERT ids of the reference: cls sep mask pad q d, punctuation. */
static void ref_vocab(colbert_vocab *v, const char *fam) {
    size_t n;
    const int32_t *x = rawk(fam, "vocab", &n);
    CB_ASSERT(n >= 6 && n - 6 <= COLBERT_MAX_PUNCT);
    memset(v, 0, sizeof *v);
    v->cls = x[0], v->sep = x[1], v->mask = x[2], v->pad = x[3], v->q_marker = x[4], v->d_marker = x[5];
    v->n_punct = (int)(n - 6);
    for (int i = 0; i < v->n_punct; i++) v->punct[i] = x[6 + i];
    for (int i = 1; i < v->n_punct; i++)   /* sorted, as cb_colbert_vocab_init leaves them */
        for (int j = i; j > 0 && v->punct[j - 1] > v->punct[j]; j--) {
            int32_t t = v->punct[j]; v->punct[j] = v->punct[j - 1]; v->punct[j - 1] = t;
        }
}

static void test_step(const char *fam) {
    char dir[4096], prefix[64];
    model_dir_of(dir, sizeof dir, fam);
    snprintf(prefix, sizeof prefix, "%s.", fam);
    refbatch r;
    ref_batch_open_prefixed(&r, &ref, prefix);
    colbert_vocab v;
    ref_vocab(&v, fam);
    cb_err err = {{0}};
    static const struct { const char *name; int ib; } cases[] = {{"ce", 0}, {"ib", 1}};
    for (int c = 0; c < 2; c++) {
        backbone enc;
        if (cb_backbone_load(&enc, cb_ops_cpu(), dir, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
        step_config sc;
        ref_step_config(&sc, &r, cases[c].ib, 1);
        step_state s;
        if (cb_step_init(&s, &enc, &v, r.linear, 0, &sc, &err)) {
            CHECK_MSG(0, "%s", err.msg);
            cb_backbone_free(&enc);
            continue;
        }
        step_batch b = ref_batch_slice(&r, 0, r.B, 0);
        double loss = cb_step_micro(&s, &b, NULL);
        char key[96];
        snprintf(key, sizeof key, "%s.loss", cases[c].name);
        double want = *(const double *)rawk(fam, key, NULL);
        double lerr = fabs(loss - want) / fabs(want);
        printf("test_roberta: %s: step %-2s: loss %.6f vs PyTorch %.6f, rel err %.2g\n", fam, cases[c].name, loss,
               want, lerr);
        CHECK_MSG(lerr <= 1e-5, "%s %s: loss rel err %g", fam, cases[c].name, lerr);
        snprintf(key, sizeof key, "%s.%s.grad.", fam, cases[c].name);
        ref_compare_block(&s, &ref, STEP_GRADS, key, 1e-3, 1, 1e-4, 1);
        cb_step_free(&s);
    }
    /* the usable length is 512: doc_maxlen 513 is refused */
    backbone enc;
    if (cb_backbone_load(&enc, cb_ops_cpu(), dir, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    step_config sc;
    ref_step_config(&sc, &r, 0, 1);
    sc.cc.doc_maxlen = 513;
    step_state s;
    int rc = cb_step_init(&s, &enc, &v, r.linear, 0, &sc, &err);
    CHECK_MSG(rc != 0 && strstr(err.msg, "doc_maxlen 513") && strstr(err.msg, "512 positions"),
              "doc_maxlen 513: %s", rc ? err.msg : "accepted");
    if (rc) cb_backbone_free(&enc);
    else cb_step_free(&s);
    ref_batch_free(&r);
}

/* A checkpoint of the family: keys, config.json, and the same outputs. */
static void test_save(const char *fam, const char *model_type) {
    char dir[4096], out[4200], path[4300];
    model_dir_of(dir, sizeof dir, fam);
    snprintf(out, sizeof out, "%s/%s_ckpt", test_env("COLBERT_TMP"), fam);
    backbone b;
    cb_err err = {{0}};
    if (cb_backbone_load(&b, cb_ops_cpu(), dir, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    colbert_config cc;
    cb_colbert_config_default(&cc);
    cc.dim = 16;
    float *lin = calloc((size_t)16 * b.info.hidden, sizeof(float));
    cb_colbert_linear_init(lin, 1, 0.02f, 16, b.info.hidden);
    tokenizer *tok = cb_tokenizer_load(dir, &err);
    if (!tok) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    /* CPU device memory is host memory */
    CHECK_MSG(cb_colmodel_save(out, &b, b.params, lin, &cc, tok, dir, NULL, &err) == 0, "%s", err.msg);
    cb_tokenizer_free(tok);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    st_file f;
    CHECK_MSG(cb_st_open(&f, path, &err) == 0, "%s", err.msg);
    CHECK(cb_st_find(&f, "roberta.embeddings.word_embeddings.weight") && cb_st_find(&f, "linear.weight") &&
          cb_st_find(&f, "roberta.encoder.layer.1.output.LayerNorm.bias") &&
          !cb_st_find(&f, "bert.embeddings.word_embeddings.weight"));
    cb_st_close(&f);
    snprintf(path, sizeof path, "%s/config.json", out);
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    CHECK(cfg && !strcmp(json_string_value(json_object_get(cfg, "model_type")), model_type) &&
          !strcmp(json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0)), "HF_ColBERT") &&
          json_integer_value(json_object_get(cfg, "vocab_size")) == b.info.vocab);
    json_decref(cfg);
    backbone b2;
    CHECK_MSG(cb_backbone_load(&b2, cb_ops_cpu(), out, &err) == 0, "%s", err.msg);
    float *o1, *o2;
    forward_all(&b, fam, &o1);
    forward_all(&b2, fam, &o2);
    size_t n_tok;
    rawk(fam, "ids", &n_tok);
    CHECK(!memcmp(o1, o2, n_tok * (size_t)b.info.hidden * sizeof(float)));
    printf("test_roberta: %s: checkpoint with roberta.* keys and HF_ColBERT loads back to the same outputs\n", fam);
    free(o1);
    free(o2);
    free(lin);
    cb_backbone_free(&b);
    cb_backbone_free(&b2);
}

static void test_grow(const char *fam) {
    char dir[4096];
    model_dir_of(dir, sizeof dir, fam);
    backbone b, b0;
    cb_err err = {{0}};
    if (cb_backbone_load(&b, cb_ops_cpu(), dir, &err) || cb_backbone_load(&b0, cb_ops_cpu(), dir, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(2);
    }
    int V = b.info.vocab, H = b.info.hidden, n = 3;
    CHECK_MSG(cb_backbone_grow_vocab(&b, n, 42, &err) == 0, "%s", err.msg);
    CHECK(b.info.vocab == V + n && b.info.n_params == b0.info.n_params + (size_t)n * H);
    int nt = cb_backbone_named_count(&b);
    backbone_named *na = malloc((size_t)nt * sizeof *na), *nb = malloc((size_t)nt * sizeof *nb);
    cb_backbone_named_tensors(&b, na);
    cb_backbone_named_tensors(&b0, nb);
    int same = 1;
    for (int i = 0; i < nt; i++) {
        size_t cnt = i == 0 ? nb[0].n : na[i].n;   /* word embeddings: the old rows */
        same &= !memcmp(b.params + na[i].offset, b0.params + nb[i].offset, cnt * sizeof(float));
    }
    CHECK_MSG(same, "%s: growing the vocabulary changed an old tensor", fam);
    /* new rows: mean of the old ones plus noise of 1e-9 * covariance */
    double dev = 0, spread = 0;
    for (int j = 0; j < H; j++) {
        double m = 0, var = 0;
        for (int v = 0; v < V; v++) m += b0.params[(size_t)v * H + j];
        m /= V;
        for (int v = 0; v < V; v++) var += pow(b0.params[(size_t)v * H + j] - m, 2);
        var /= V;
        for (int t = 0; t < n; t++) {
            double x = b.params[(size_t)(V + t) * H + j];
            dev = fmax(dev, fabs(x - m) / sqrt(1e-9 * var));
            spread += fabs(x - b.params[(size_t)V * H + j]);
        }
    }
    printf("test_roberta: %s: %d rows added: old tensors unchanged, new rows within %.2f std of 1e-9 * covariance "
           "around the mean\n", fam, n, dev);
    CHECK_MSG(dev < 8 && spread > 0, "%s: new rows %.3g std from the mean, spread %g", fam, dev, spread);
    /* the old ids give the same outputs */
    float worst = forward_all(&b, fam, NULL);
    CHECK_MSG(worst <= 1e-4f, "%s: forward after growing: %g", fam, worst);
    free(na);
    free(nb);
    cb_backbone_free(&b);
    cb_backbone_free(&b0);

    /* a singular covariance (3 rows in 8 dimensions): the mean itself */
    float e[5 * 8];
    for (int i = 0; i < 24; i++) e[i] = (float)((i * 7) % 11) - 5.0f;
    CHECK(cb_backbone_init_rows(e, 3, 2, 8, 1, &err) == 0);
    float worst_m = 0;
    for (int j = 0; j < 8; j++) {
        float m = (e[j] + e[8 + j] + e[16 + j]) / 3;
        worst_m = fmaxf(worst_m, fmaxf(fabsf(e[24 + j] - m), fabsf(e[32 + j] - m)));
    }
    CHECK_MSG(worst_m <= 1e-6f, "singular covariance: new rows %g from the mean", worst_m);
}

/* encoder.h and colmodel.h on the directory: supported tokenizer and equal
 * embeddings, or a clear tokenizer error. */
static void test_load_paths(const char *fam) {
    char dir[4096];
    model_dir_of(dir, sizeof dir, fam);
    cb_err err = {{0}};
    encoder e;
    if (cb_encoder_load(&e, cb_ops_cpu(), dir, 0, &err) == 0) {
        CHECK(e.max_len == 512);
        printf("test_roberta: %s: the tokenizer loads (encoder max_len %d)\n", fam, e.max_len);
        cb_encoder_free(&e);
    } else {
        printf("test_roberta: %s: encoder load: %s\n", fam, err.msg);
        CHECK_MSG(strstr(err.msg, "tokenizer") && strstr(err.msg, fam), "unclear error: %s", err.msg);
    }
    colmodel m;
    if (cb_colmodel_load(&m, cb_ops_cpu(), dir, 16, 1, &err) == 0) {
        CHECK(m.enc.info.max_len == 512);
        cb_colmodel_free(&m);
    } else {
        printf("test_roberta: %s: colmodel load: %s\n", fam, err.msg);
        CHECK_MSG(strstr(err.msg, "tokenizer") || strstr(err.msg, "[Q]") || strstr(err.msg, "unused0"),
                  "unclear error: %s", err.msg);
    }
}

int main(void) {
    ref_open(&ref, test_env("COLBERT_REF"), "roberta_ref.safetensors");
    static const char *fams[2][2] = {{"roberta", "roberta"}, {"xlmr", "xlm-roberta"}};
    for (int i = 0; i < 2; i++) {
        test_forward(fams[i][0], fams[i][1]);
        test_step(fams[i][0]);
        test_save(fams[i][0], fams[i][1]);
        test_grow(fams[i][0]);
        test_load_paths(fams[i][0]);
    }
    cb_st_close(&ref);
    return test_finish("test_roberta");
}
