/* test_modernbert.c: the ModernBERT family of the encoder interface
 * (backbone.h, src/modernbert.c) against transformers' ModernBertModel
 * (eager attention), on the small seeded model tests/ref/gen_modernbert.py
 * makes (3 layers: global, local with a window of |i - j| <= 4, global):
 *   - info: family "modernbert", prefix "model.", max_len 512, pad id;
 *   - forward: last hidden states of documents (up to 512 tokens) and
 *     ColBERT queries with [MASK] padding (attention mask 0: in the local
 *     layer most of those rows see no key at all), all in one packed
 *     batch, max abs diff <= 1e-4 (test_bert's tolerance); sentence
 *     embeddings (mean pooling) against sentence-transformers, <= 1e-5;
 *     the same model with the older config keys (global_attn_every_n_layers,
 *     global/local_rope_theta) gives the same outputs, bit for bit;
 *   - the C tokenizer gives transformers' ids on the byte-level BPE
 *     tokenizer with ModernBERT's specials ([MASK] with lstrip) and
 *     post-processor ([CLS] $A [SEP]);
 *   - a ColBERT training step (ce, ib): loss rel err <= 1e-5, every
 *     parameter gradient rel err <= 1e-3 (test_step's tolerances);
 *   - 10 AdamW steps (warmup 3, decay to 0 at 12, in-batch negatives):
 *     every step's loss within 1e-4, every final parameter rel err <= 1e-4
 *     (test_step's tolerances);
 *   - a checkpoint written by cb_colmodel_save has "model." keys,
 *     architectures HF_ColBERT, model_type modernbert, and loads back to the
 *     same outputs, bit for bit;
 *   - growing the vocabulary keeps every old tensor;
 *   - dropout (embedding 0.3, attention 0.2, MLP 0.25 in config.json): the
 *     outputs change, and the backward uses the forward's masks (finite
 *     differences of the parameters, rel err < 2e-3; measured 1.8e-4);
 *   - config.json files with what modernbert.c does not implement are
 *     refused, naming the file and the key;
 *   - encoder.h and colmodel.h load the directory; encoder.h's sentence
 *     embeddings of the documents, tokenized in C, equal
 *     sentence-transformers' (<= 1e-5). */
#include <jansson.h>
#include "ref_step.h"
#include "backbone.h"
#include "colmodel.h"
#include "encoder.h"
#include "fsutil.h"
#include "safetensors.h"
#include "tokenizer.h"

#include <sys/stat.h>
#include <unistd.h>

#define FAM "mb"

static st_file ref;
static char key_buf[256];
static const void *rawk(const char *name, size_t *n) {
    snprintf(key_buf, sizeof key_buf, "%s.%s", FAM, name);
    return ref_raw(&ref, key_buf, n);
}

static void dir_of(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", test_env("COLBERT_REF"), name);
}

static void load_or_die(backbone *b, const char *dir) {
    cb_err err = {{0}};
    if (cb_backbone_load(b, cb_ops_cpu(), dir, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
}

/* The whole reference batch through the encoder; returns the max abs diff
 * and leaves the outputs in *out (caller frees) when out is not NULL. */
static float forward_all(const backbone *b, float **out) {
    size_t n_tok, n_seq;
    const int32_t *ids = rawk("ids", &n_tok);
    const int32_t *lens = rawk("lengths", &n_seq);
    const int32_t *mask32 = rawk("mask", NULL);
    const float *hid = rawk("hidden", NULL);
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

static void test_forward(void) {
    char dir[4096];
    dir_of(dir, sizeof dir, "modernbert_model");
    backbone b;
    load_or_die(&b, dir);
    const int32_t *vocab = rawk("vocab", NULL);
    CHECK(!strcmp(b.info.family, "modernbert") && !strcmp(b.info.prefix, "model."));
    CHECK_MSG(b.info.max_len == 512 && b.info.pad_id == vocab[3] && b.info.layers == 3 && b.info.hidden == 64,
              "max_len %d pad %d layers %d hidden %d", b.info.max_len, b.info.pad_id, b.info.layers, b.info.hidden);
    size_t n_seq;
    const int32_t *lens = rawk("lengths", &n_seq);
    int longest = 0;
    for (size_t s = 0; s < n_seq; s++) longest = lens[s] > longest ? lens[s] : longest;
    CHECK(longest == 512);
    float *out;
    float worst = forward_all(&b, &out);
    printf("test_modernbert: %zu sequences (longest %d) in one batch: max abs diff %.3g\n", n_seq, longest, worst);
    CHECK_MSG(worst <= 1e-4f, "forward max abs diff %g", worst);

    /* sentence embeddings: mean over each document's tokens */
    int nd = *(const int32_t *)rawk("n_docs", NULL);
    const float *emb = rawk("embed", NULL);
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
    printf("test_modernbert: %d sentence embeddings vs sentence-transformers: max abs diff %.3g, min cosine %.9f\n",
           nd, ew, cmin);
    CHECK_MSG(ew <= 1e-5, "sentence embeddings max abs diff %g", ew);

    /* the older config keys: the same model */
    char old[4096];
    dir_of(old, sizeof old, "modernbert_oldcfg");
    backbone b2;
    load_or_die(&b2, old);
    float *out2;
    forward_all(&b2, &out2);
    size_t n_tok;
    rawk("ids", &n_tok);
    CHECK_MSG(!memcmp(out, out2, n_tok * (size_t)H * sizeof(float)), "older config keys: other outputs");
    printf("test_modernbert: the older config keys (global_attn_every_n_layers, *_rope_theta) give the same "
           "outputs\n");
    free(out);
    free(out2);
    cb_backbone_free(&b);
    cb_backbone_free(&b2);
}

/* The C tokenizer against transformers' ids (special tokens included). */
static void test_tokenizer(void) {
    char dir[4096];
    dir_of(dir, sizeof dir, "modernbert_model");
    cb_err err = {{0}};
    tokenizer *tok = cb_tokenizer_load(dir, &err);
    CHECK_MSG(tok, "%s", err.msg);
    if (!tok) return;
    tokenizer_template tm = cb_tokenizer_get_template(tok);
    tokenizer_specials sp = cb_tokenizer_get_specials(tok);
    const int32_t *vocab = rawk("vocab", NULL);
    CHECK_MSG(sp.cls == vocab[0] && sp.sep == vocab[1] && sp.mask == vocab[2] && sp.pad == vocab[3],
              "specials cls %d sep %d mask %d pad %d", sp.cls, sp.sep, sp.mask, sp.pad);
    int n_text = *(const int32_t *)rawk("n_text", NULL), same = 0;
    for (int k = 0; k < n_text; k++) {
        char name[64];
        size_t len, n_want;
        snprintf(name, sizeof name, "text.%d", k);
        const char *text = rawk(name, &len);
        snprintf(name, sizeof name, "text_ids.%d", k);
        const int32_t *want = rawk(name, &n_want);
        int32_t *ids = malloc((len + 64) * sizeof(int32_t));
        int n = 0;
        for (int i = 0; i < tm.n_prefix; i++) ids[n++] = tm.prefix[i];
        int k2 = cb_tokenizer_encode(tok, text, len, ids + n, (int)len + 32);
        CHECK(k2 >= 0 && k2 <= (int)len + 32);
        n += k2 > 0 ? k2 : 0;
        for (int i = 0; i < tm.n_suffix; i++) ids[n++] = tm.suffix[i];
        int first = 0;
        while ((size_t)first < n_want && first < n && ids[first] == want[first]) first++;
        int ok = (size_t)n == n_want && first == n;
        CHECK_MSG(ok, "text %d: %d ids, transformers %zu (first difference at %d)", k, n, n_want, first);
        same += ok;
        free(ids);
    }
    printf("test_modernbert: tokenizer: %d/%d texts give transformers' ids\n", same, n_text);
    cb_tokenizer_free(tok);
}

/* The ColBERT ids of the reference: cls sep mask pad q d, punctuation. */
static void ref_vocab(colbert_vocab *v) {
    size_t n;
    const int32_t *x = rawk("vocab", &n);
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

static void test_step(void) {
    char dir[4096];
    dir_of(dir, sizeof dir, "modernbert_model");
    refbatch r;
    ref_batch_open_prefixed(&r, &ref, FAM ".");
    colbert_vocab v;
    ref_vocab(&v);
    cb_err err = {{0}};
    static const struct { const char *name; int ib; } cases[] = {{"ce", 0}, {"ib", 1}};
    for (int c = 0; c < 2; c++) {
        backbone enc;
        load_or_die(&enc, dir);
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
        double want = *(const double *)rawk(key, NULL);
        double lerr = fabs(loss - want) / fabs(want);
        printf("test_modernbert: step %-2s: loss %.6f vs PyTorch %.6f, rel err %.2g\n", cases[c].name, loss, want,
               lerr);
        CHECK_MSG(lerr <= 1e-5, "%s: loss rel err %g", cases[c].name, lerr);
        snprintf(key, sizeof key, "%s.%s.grad.", FAM, cases[c].name);
        ref_compare_block(&s, &ref, STEP_GRADS, key, 1e-3, 1, 1e-4, 1);
        cb_step_free(&s);
    }

    /* 10 AdamW steps, warmup 3, decay to 0 at 12, in-batch negatives */
    backbone enc;
    load_or_die(&enc, dir);
    step_config sc;
    ref_step_config(&sc, &r, 1, 1);
    step_state s;
    if (cb_step_init(&s, &enc, &v, r.linear, 0, &sc, &err)) {
        CHECK_MSG(0, "%s", err.msg);
        cb_backbone_free(&enc);
    } else {
        size_t nl;
        const double *losses = rawk("adam.losses", &nl);
        double worst = 0;
        for (size_t k = 0; k < nl; k++) {
            step_batch b = ref_batch_slice(&r, 0, r.B, 0);
            double loss = cb_step_micro(&s, &b, NULL);
            double lr;
            cb_step_update(&s, &lr);
            double d = fabs(loss - losses[k]);
            if (d > worst) worst = d;
            CHECK_MSG(d <= 1e-4, "AdamW step %zu: loss %.6f vs %.6f", k, loss, losses[k]);
        }
        printf("test_modernbert: 10 AdamW steps: losses %.4f .. %.6f, worst step loss diff %.2g\n", losses[0],
               losses[nl - 1], worst);
        ref_compare_block(&s, &ref, STEP_PARAMS, FAM ".adam.param.", 1e-4, 0, 0, 1);
        cb_step_free(&s);
    }
    ref_batch_free(&r);
}

/* A checkpoint of the family: keys, config.json, and the same outputs. */
static void test_save(void) {
    char dir[4096], out[4200], path[4300];
    dir_of(dir, sizeof dir, "modernbert_model");
    snprintf(out, sizeof out, "%s/modernbert_ckpt", test_env("COLBERT_TMP"));
    backbone b;
    load_or_die(&b, dir);
    cb_err err = {{0}};
    colbert_config cc;
    cb_colbert_config_default(&cc);
    cc.dim = 16;
    float *lin = calloc((size_t)16 * b.info.hidden, sizeof(float));
    cb_colbert_linear_init(lin, 1, 0.02f, 16, b.info.hidden);
    tokenizer *tok = cb_tokenizer_load(dir, &err);
    if (!tok) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    CHECK_MSG(cb_colmodel_save(out, &b, b.params, lin, &cc, tok, dir, NULL, &err) == 0, "%s", err.msg);
    cb_tokenizer_free(tok);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    st_file f;
    CHECK_MSG(cb_st_open(&f, path, &err) == 0, "%s", err.msg);
    CHECK(cb_st_find(&f, "model.embeddings.tok_embeddings.weight") && cb_st_find(&f, "linear.weight") &&
          cb_st_find(&f, "model.layers.2.mlp.Wi.weight") && cb_st_find(&f, "model.final_norm.weight") &&
          !cb_st_find(&f, "model.layers.0.attn_norm.weight") && cb_st_find(&f, "model.layers.1.attn_norm.weight"));
    cb_st_close(&f);
    snprintf(path, sizeof path, "%s/config.json", out);
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    CHECK(cfg && !strcmp(json_string_value(json_object_get(cfg, "model_type")), "modernbert") &&
          !strcmp(json_string_value(json_array_get(json_object_get(cfg, "architectures"), 0)), "HF_ColBERT") &&
          json_integer_value(json_object_get(cfg, "vocab_size")) == b.info.vocab);
    json_decref(cfg);
    backbone b2;
    CHECK_MSG(cb_backbone_load(&b2, cb_ops_cpu(), out, &err) == 0, "%s", err.msg);
    float *o1, *o2;
    forward_all(&b, &o1);
    forward_all(&b2, &o2);
    size_t n_tok;
    rawk("ids", &n_tok);
    CHECK(!memcmp(o1, o2, n_tok * (size_t)b.info.hidden * sizeof(float)));
    printf("test_modernbert: checkpoint with model.* keys and HF_ColBERT loads back to the same outputs\n");
    free(o1);
    free(o2);
    free(lin);
    cb_backbone_free(&b);
    cb_backbone_free(&b2);
}

static void test_grow(void) {
    char dir[4096];
    dir_of(dir, sizeof dir, "modernbert_model");
    backbone b, b0;
    load_or_die(&b, dir);
    load_or_die(&b0, dir);
    cb_err err = {{0}};
    int V = b.info.vocab, H = b.info.hidden, n = 3;
    CHECK_MSG(cb_backbone_grow_vocab(&b, n, 42, &err) == 0, "%s", err.msg);
    CHECK(b.info.vocab == V + n && b.info.n_params == b0.info.n_params + (size_t)n * H);
    int nt = cb_backbone_named_count(&b);
    backbone_named *na = malloc((size_t)nt * sizeof *na), *nb = malloc((size_t)nt * sizeof *nb);
    cb_backbone_named_tensors(&b, na);
    cb_backbone_named_tensors(&b0, nb);
    int same = 1;
    for (int i = 0; i < nt; i++) {
        size_t cnt = i == 0 ? nb[0].n : na[i].n;
        same &= !memcmp(b.params + na[i].offset, b0.params + nb[i].offset, cnt * sizeof(float));
    }
    CHECK_MSG(same, "growing the vocabulary changed an old tensor");
    float worst = forward_all(&b, NULL);
    CHECK_MSG(worst <= 1e-4f, "forward after growing: %g", worst);
    printf("test_modernbert: %d rows added: old tensors unchanged, forward max abs diff %.3g\n", n, worst);
    free(na);
    free(nb);
    cb_backbone_free(&b);
    cb_backbone_free(&b0);
}

/* dir: a copy of src's config.json with key set to json (NULL: as is), its
 * model.safetensors a link to src's */
static void config_variant(const char *dir, const char *src, const char *key, const char *json) {
    char path[4300], st_src[4300], st_dst[4300];
    cb_remove_tree(dir, NULL);
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(path, sizeof path, "%s/config.json", src);
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    CB_ASSERT(cfg);
    if (key) {
        json_t *val = json_loads(json, JSON_DECODE_ANY, &je);
        CB_ASSERT(val);
        json_object_set_new(cfg, key, val);
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK(json_dump_file(cfg, path, 0) == 0);
    json_decref(cfg);
    snprintf(st_src, sizeof st_src, "%s/model.safetensors", src);
    snprintf(st_dst, sizeof st_dst, "%s/model.safetensors", dir);
    CHECK(symlink(st_src, st_dst) == 0);
}

static double dot_out(const float *o, const float *R, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)o[i] * R[i];
    return s;
}

/* Dropout on: the backward follows the forward's masks (finite differences
 * of L = sum out * R over the parameters). */
static void test_dropout(void) {
    char src[4096], dir[4200], tmp[4200];
    dir_of(src, sizeof src, "modernbert_plain");
    snprintf(tmp, sizeof tmp, "%s/modernbert_drop0", test_env("COLBERT_TMP"));
    snprintf(dir, sizeof dir, "%s/modernbert_drop", test_env("COLBERT_TMP"));
    config_variant(tmp, src, "embedding_dropout", "0.3");
    char path[4300];
    snprintf(path, sizeof path, "%s/config.json", tmp);
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    CB_ASSERT(cfg);
    json_object_set_new(cfg, "attention_dropout", json_real(0.2));
    json_object_set_new(cfg, "mlp_dropout", json_real(0.25));
    CHECK(json_dump_file(cfg, path, 0) == 0);
    json_decref(cfg);
    config_variant(dir, tmp, NULL, NULL);
    backbone b;
    load_or_die(&b, tmp);
    CHECK_MSG(fabsf(b.info.hidden_dropout - 0.3f) < 1e-6f && fabsf(b.info.attention_dropout - 0.2f) < 1e-6f,
              "dropout %g / %g", b.info.hidden_dropout, b.info.attention_dropout);
    int lens[3] = {12, 9, 20}, T = 41, H = b.info.hidden;
    int32_t ids[41];
    uint8_t mask[41];
    for (int i = 0; i < T; i++) { ids[i] = (i * 37 + 5) % 2900; mask[i] = 1; }
    /* masked keys at the end of the last sequence, as ColBERT's query
     * padding; few enough that every row of the local layer sees a key (a
     * row that sees none is flat in q and k, but gets transformers'
     * gradient through its scores, which finite differences cannot see) */
    for (int i = 38; i < 41; i++) mask[i] = 0;
    size_t n = (size_t)T * H;
    float *R = malloc(n * sizeof(float)), *d = malloc(n * sizeof(float)), *o0 = malloc(n * sizeof(float));
    float *g = calloc(b.info.n_params, sizeof(float));
    for (size_t i = 0; i < n; i++) R[i] = (float)sin(0.37 * (double)i);
    backbone_acts a;
    cb_err err = {{0}};
    CHECK_MSG(cb_backbone_acts_init(&a, &b, T, 144 + 81 + 400, 1, &err) == 0, "%s", err.msg);
    CHECK(a.p_hidden > 0 && a.p_att > 0);
    a.seed = 99;
    backbone_batch bb = {.n_seq = 3, .seq_len = lens, .ids = ids, .mask = mask};
    float ph = a.p_hidden, pa = a.p_att;
    a.p_hidden = a.p_att = 0;
    cb_backbone_forward(&b, &a, &bb);
    memcpy(o0, cb_backbone_output(&b, &a), n * sizeof(float));
    a.p_hidden = ph, a.p_att = pa;
    cb_backbone_forward(&b, &a, &bb);
    CHECK_MSG(memcmp(o0, cb_backbone_output(&b, &a), n * sizeof(float)) != 0, "dropout changed nothing");
    memcpy(d, R, n * sizeof(float));
    cb_backbone_backward(&b, &a, g, d);
    double num = 0, den = 0;
    size_t step = b.info.n_params / 397 + 1;
    for (size_t j = 7; j < b.info.n_params; j += step) {
        float *w = b.params + j, save = *w, h = 1e-2f;   /* CPU: device memory is host memory */
        *w = save + h;
        cb_backbone_forward(&b, &a, &bb);
        double lp = dot_out(cb_backbone_output(&b, &a), R, n);
        *w = save - h;
        cb_backbone_forward(&b, &a, &bb);
        double lm = dot_out(cb_backbone_output(&b, &a), R, n);
        *w = save;
        double fd = (lp - lm) / (2 * h);
        num += (fd - g[j]) * (fd - g[j]);
        den += fd * fd;
    }
    double e = sqrt(num / den);
    printf("test_modernbert: dropout on (embedding 0.3, attention 0.2, MLP 0.25): finite differences rel err "
           "%.3g\n", e);
    CHECK_MSG(e < 2e-3, "dropout backward: finite differences rel err %g", e);
    cb_backbone_acts_free(&a);
    cb_backbone_free(&b);
    free(R); free(d); free(o0); free(g);
    cb_remove_tree(dir, NULL);
    cb_remove_tree(tmp, NULL);
}

/* A copy of the model's config.json with one key changed must be refused,
 * the error naming config.json and the key. */
static void test_refused(void) {
    char src[4096], dir[4200];
    dir_of(src, sizeof src, "modernbert_plain");
    snprintf(dir, sizeof dir, "%s/modernbert_bad", test_env("COLBERT_TMP"));
    static const struct { const char *key, *json, *want; } cases[] = {
        {"norm_bias", "true", "norm_bias"},
        {"attention_bias", "true", "attention_bias"},
        {"mlp_bias", "true", "mlp_bias"},
        {"hidden_activation", "\"silu\"", "hidden_activation"},
        {"rope_scaling", "{\"rope_type\": \"linear\", \"factor\": 2.0}", "rope_scaling"},
        {"layer_types", "[\"full_attention\"]", "layer_types"},
        {"rope_parameters", "{\"full_attention\": {\"rope_type\": \"yarn\", \"rope_theta\": 1e4}}", "rope_type"},
        {"local_attention", "1", "local_attention"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        cb_err err = {{0}};
        config_variant(dir, src, cases[c].key, cases[c].json);
        backbone b;
        int rc = cb_backbone_load(&b, cb_ops_cpu(), dir, &err);
        CHECK_MSG(rc != 0 && strstr(err.msg, "config.json") && strstr(err.msg, cases[c].want),
                  "%s = %s: %s", cases[c].key, cases[c].json, rc ? err.msg : "accepted");
        if (!rc) cb_backbone_free(&b);
        else printf("test_modernbert: refused: %s\n", err.msg);
    }
    cb_remove_tree(dir, NULL);
}

/* encoder.h and colmodel.h on the directory; encoder.h's sentence
 * embeddings of the reference documents (tokenized in C, truncated at 512)
 * against sentence-transformers'. */
static void test_load_paths(void) {
    char dir[4096];
    dir_of(dir, sizeof dir, "modernbert_model");
    cb_err err = {{0}};
    encoder e;
    CHECK_MSG(cb_encoder_load(&e, cb_ops_cpu(), dir, 0, &err) == 0, "encoder: %s", err.msg);
    if (!err.msg[0]) {
        CHECK(e.max_len == 512);
        int nd = *(const int32_t *)rawk("n_docs", NULL), H = 64;
        const char **texts = malloc((size_t)nd * sizeof *texts);
        size_t *lens = malloc((size_t)nd * sizeof *lens);
        for (int d = 0; d < nd; d++) {
            char name[64];
            snprintf(name, sizeof name, "doc_text.%d", d);
            texts[d] = rawk(name, &lens[d]);
        }
        float *emb = malloc((size_t)nd * H * sizeof(float));
        CHECK_MSG(cb_encoder_embed(&e, texts, lens, nd, emb, &err) == 0, "%s", err.msg);
        const float *want = rawk("embed", NULL);
        double worst = 0;
        for (size_t i = 0; i < (size_t)nd * H; i++) worst = fmax(worst, fabs((double)emb[i] - want[i]));
        printf("test_modernbert: encoder.h: %d sentence embeddings (tokenized here) vs sentence-transformers: max "
               "abs diff %.3g\n", nd, worst);
        CHECK_MSG(worst <= 1e-5, "encoder.h sentence embeddings: max abs diff %g", worst);
        free(texts);
        free(lens);
        free(emb);
        cb_encoder_free(&e);
    }
    colmodel m;
    err.msg[0] = 0;
    CHECK_MSG(cb_colmodel_load(&m, cb_ops_cpu(), dir, 16, 1, &err) == 0, "colmodel: %s", err.msg);
    if (!err.msg[0]) {
        CHECK(m.enc.info.max_len == 512);
        cb_colmodel_free(&m);
    }
    printf("test_modernbert: encoder.h and colmodel.h load the directory\n");
}

int main(void) {
    ref_open(&ref, test_env("COLBERT_REF"), "modernbert_ref.safetensors");
    test_forward();
    test_tokenizer();
    test_step();
    test_save();
    test_grow();
    test_dropout();
    test_refused();
    test_load_paths();
    cb_st_close(&ref);
    return test_finish("test_modernbert");
}
