/* modernbert.c: the ModernBERT encoder on packed batches, forward and
 * backward, as a sequence of compute-interface operations (ops.h); its
 * config.json, weights and named tensors. See modernbert.h.
 * Shapes: T tokens in the batch, H hidden, I intermediate, NH heads,
 * D = H / NH head size, L layers, V vocabulary. */
#include "modernbert.h"
#include "fsutil.h"
#include "safetensors.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* config.json                                                         */

typedef struct mb_config {
    int vocab, hidden, layers, heads, inter, max_pos, pad_id;
    float norm_eps, init_range;
    float p_emb, p_att, p_mlp;      /* embedding_dropout, attention_dropout, mlp_dropout */
    int window;                     /* local_attention / 2 */
    float theta_global, theta_local;
    uint8_t *global;                /* [L] 1: full attention; 0: sliding window */
} mb_config;

/* Parameter tensors, in the order they lie in memory. */
enum {
    MP_TOK_EMB,     /* [V, H]          embeddings.tok_embeddings */
    MP_EMB_NORM,    /* [H]             embeddings.norm */
    MP_ATTN_NORM,   /* [L - 1, H]      layers.l.attn_norm, l >= 1 (layer 0: identity) */
    MP_WQKV,        /* [L, 3H, H]      layers.l.attn.Wqkv: rows query, key, value */
    MP_WO,          /* [L, H, H]       layers.l.attn.Wo */
    MP_MLP_NORM,    /* [L, H]          layers.l.mlp_norm */
    MP_WI,          /* [L, 2I, H]      layers.l.mlp.Wi: rows input, gate */
    MP_WO2,         /* [L, H, I]       layers.l.mlp.Wo */
    MP_FINAL_NORM,  /* [H]             final_norm */
    MP_COUNT
};

typedef struct mb_model {
    mb_config cfg;
    ops_device *dev;
    float *params;                  /* [dev] n_params floats */
    size_t n_params;
    size_t sizes[MP_COUNT];
    float *t[MP_COUNT];             /* [dev] into params */
    int owned;
} mb_model;

static int get_int(const json_t *root, const char *path, const char *key, int *out, int def, int required,
                   long long lo, long long hi, cb_err *err) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (required) return cb_err_set(err, "%s: required key \"%s\" is missing", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return cb_err_set(err, "%s: key \"%s\" must be an integer in [%lld, %lld]", path, key, lo, hi);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_num(const json_t *root, const char *path, const char *key, float *out, double def, double lo,
                   double hi, cb_err *err) {
    const json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = (float)def;
        return 0;
    }
    if (!json_is_number(v) || !(json_number_value(v) >= lo && json_number_value(v) <= hi))
        return cb_err_set(err, "%s: key \"%s\" must be a number in [%g, %g]", path, key, lo, hi);
    *out = (float)json_number_value(v);
    return 0;
}

/* A boolean key that must be false (or absent): what we do not implement. */
static int refuse_true(const json_t *root, const char *path, const char *key, cb_err *err) {
    const json_t *v = json_object_get(root, key);
    if (v && !json_is_boolean(v)) return cb_err_set(err, "%s: key \"%s\" must be true or false", path, key);
    if (json_is_true(v))
        return cb_err_set(err, "%s: \"%s\": true is not supported for model_type 'modernbert' (only false, the "
                          "default of ModernBERT's checkpoints)", path, key);
    return 0;
}

/* rope_parameters[kind]: rope_type "default" only; its rope_theta into *theta when given. */
static int rope_params(const json_t *rp, const char *path, const char *kind, float *theta, cb_err *err) {
    const json_t *o = json_object_get(rp, kind);
    if (!o || json_is_null(o)) return 0;
    if (!json_is_object(o)) return cb_err_set(err, "%s: rope_parameters.%s must be an object", path, kind);
    const json_t *type = json_object_get(o, "rope_type");
    if (type && !(json_is_string(type) && !strcmp(json_string_value(type), "default")))
        return cb_err_set(err, "%s: rope_parameters.%s.rope_type must be \"default\" (scaled rotary embeddings are "
                          "not supported)", path, kind);
    const json_t *t = json_object_get(o, "rope_theta");
    if (t && !(json_is_number(t) && json_number_value(t) > 0))
        return cb_err_set(err, "%s: rope_parameters.%s.rope_theta must be a positive number", path, kind);
    if (t) *theta = (float)json_number_value(t);
    return 0;
}

static int config_parse(mb_config *c, const json_t *root, const char *path, cb_err *err) {
    if (!json_is_object(root)) return cb_err_set(err, "%s: expected a JSON object", path);
    const long long big = 1 << 30;
    if (get_int(root, path, "vocab_size", &c->vocab, 0, 1, 1, big, err) ||
        get_int(root, path, "hidden_size", &c->hidden, 0, 1, 1, 1 << 20, err) ||
        get_int(root, path, "num_hidden_layers", &c->layers, 0, 1, 1, 1024, err) ||
        get_int(root, path, "num_attention_heads", &c->heads, 0, 1, 1, 1024, err) ||
        get_int(root, path, "intermediate_size", &c->inter, 0, 1, 1, 1 << 22, err) ||
        get_int(root, path, "max_position_embeddings", &c->max_pos, 0, 1, 1, 1 << 24, err) ||
        get_int(root, path, "pad_token_id", &c->pad_id, 50283, 0, 0, big, err) ||
        get_int(root, path, "local_attention", &c->window, 128, 0, 0, 1 << 24, err) ||
        get_num(root, path, "norm_eps", &c->norm_eps, 1e-5, 1e-30, 1, err) ||
        get_num(root, path, "initializer_range", &c->init_range, 0.02, 0, 10, err) ||
        get_num(root, path, "embedding_dropout", &c->p_emb, 0, 0, 0.999, err) ||
        get_num(root, path, "attention_dropout", &c->p_att, 0, 0, 0.999, err) ||
        get_num(root, path, "mlp_dropout", &c->p_mlp, 0, 0, 0.999, err) ||
        refuse_true(root, path, "norm_bias", err) || refuse_true(root, path, "attention_bias", err) ||
        refuse_true(root, path, "mlp_bias", err))
        return -1;
    if (c->window < 2)
        return cb_err_set(err, "%s: local_attention %d: the local layers' window must be at least 2", path,
                          c->window);
    c->window /= 2;   /* transformers' sliding_window: local_attention // 2 on each side */
    if (c->hidden % c->heads || (c->hidden / c->heads) % 2)
        return cb_err_set(err, "%s: hidden_size %d over num_attention_heads %d must give an even head size", path,
                          c->hidden, c->heads);
    if (c->pad_id >= c->vocab)
        return cb_err_set(err, "%s: pad_token_id %d is outside the vocabulary (vocab_size %d)", path, c->pad_id,
                          c->vocab);
    const json_t *act = json_object_get(root, "hidden_activation");
    if (act && !(json_is_string(act) &&
                 (!strcmp(json_string_value(act), "gelu") || !strcmp(json_string_value(act), "gelu_python"))))
        return cb_err_set(err, "%s: hidden_activation %s is not supported (only the exact erf \"gelu\")", path,
                          json_is_string(act) ? json_string_value(act) : "(not a string)");
    const json_t *scaling = json_object_get(root, "rope_scaling");
    if (scaling && !json_is_null(scaling))
        return cb_err_set(err, "%s: rope_scaling is not supported (only plain rotary embeddings)", path);

    /* rope thetas: the older keys, then rope_parameters (transformers 5) over them */
    if (get_num(root, path, "global_rope_theta", &c->theta_global, 160000.0, 1e-30, 1e30, err) ||
        get_num(root, path, "local_rope_theta", &c->theta_local, 10000.0, 1e-30, 1e30, err))
        return -1;
    const json_t *rp = json_object_get(root, "rope_parameters");
    if (rp && !json_is_null(rp)) {
        if (!json_is_object(rp)) return cb_err_set(err, "%s: rope_parameters must be an object", path);
        if (rope_params(rp, path, "full_attention", &c->theta_global, err) ||
            rope_params(rp, path, "sliding_attention", &c->theta_local, err))
            return -1;
    }

    /* which layers are global: layer_types, else global_attn_every_n_layers */
    c->global = cb_malloc((size_t)c->layers, "the model's layer types", err);
    if (!c->global) return -1;
    const json_t *lt = json_object_get(root, "layer_types");
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || json_array_size(lt) != (size_t)c->layers)
            return cb_err_set(err, "%s: layer_types must be an array of num_hidden_layers (%d) strings", path,
                              c->layers);
        for (int l = 0; l < c->layers; l++) {
            const char *s = json_string_value(json_array_get(lt, (size_t)l));
            if (s && !strcmp(s, "full_attention")) c->global[l] = 1;
            else if (s && !strcmp(s, "sliding_attention")) c->global[l] = 0;
            else
                return cb_err_set(err, "%s: layer_types[%d] must be \"full_attention\" or \"sliding_attention\"",
                                  path, l);
        }
    } else {
        int every = 3;
        if (get_int(root, path, "global_attn_every_n_layers", &every, 3, 0, 1, 1 << 20, err)) return -1;
        for (int l = 0; l < c->layers; l++) c->global[l] = l % every == 0;
    }
    return 0;
}

static int config_load(mb_config *c, const char *dir, cb_err *err) {
    memset(c, 0, sizeof *c);
    char *path = cb_path_new(dir, "config.json", err);
    json_t *root = path ? cb_json_load(path, JSON_REJECT_DUPLICATES, err) : NULL;
    int rc = root ? config_parse(c, root, path, err) : -1;
    json_decref(root);
    free(path);
    if (rc) {
        free(c->global);
        c->global = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------------ */
/* parameters                                                          */

static void param_sizes(const mb_config *c, size_t s[MP_COUNT]) {
    size_t H = (size_t)c->hidden, I = (size_t)c->inter, L = (size_t)c->layers;
    s[MP_TOK_EMB] = (size_t)c->vocab * H;
    s[MP_EMB_NORM] = H;
    s[MP_ATTN_NORM] = (L - 1) * H;
    s[MP_WQKV] = L * 3 * H * H;
    s[MP_WO] = L * H * H;
    s[MP_MLP_NORM] = L * H;
    s[MP_WI] = L * 2 * I * H;
    s[MP_WO2] = L * H * I;
    s[MP_FINAL_NORM] = H;
}

static void bind_tensors(mb_model *m, float *base) {
    m->params = base;
    float *p = base;
    for (int i = 0; i < MP_COUNT; i++) { m->t[i] = p; p += m->sizes[i]; }
}

static int named_count(const mb_config *c) { return 3 + 6 * c->layers - 1; }

static void named(backbone_named *o, const char *name, size_t offset, int64_t d0, int64_t d1) {
    snprintf(o->name, sizeof o->name, "%s", name);
    o->offset = offset;
    o->ndim = d1 ? 2 : 1;
    o->shape[0] = d0;
    o->shape[1] = d1;
    o->n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
}

/* transformers' names (without "model."), in ModernBertModel's order */
static void named_tensors(const mb_config *c, backbone_named *out) {
    int64_t H = c->hidden, I = c->inter;
    size_t sizes[MP_COUNT], st[MP_COUNT], o = 0;
    param_sizes(c, sizes);
    for (int i = 0; i < MP_COUNT; i++) { st[i] = o; o += sizes[i]; }
    size_t h = (size_t)H, HH = h * h, HI = h * (size_t)I;
    int k = 0;
    named(&out[k++], "embeddings.tok_embeddings.weight", st[MP_TOK_EMB], c->vocab, H);
    named(&out[k++], "embeddings.norm.weight", st[MP_EMB_NORM], H, 0);
    for (int l = 0; l < c->layers; l++) {
        size_t L = (size_t)l;
        char n[96];
        if (l > 0) {
            snprintf(n, sizeof n, "layers.%d.attn_norm.weight", l);
            named(&out[k++], n, st[MP_ATTN_NORM] + (L - 1) * h, H, 0);
        }
        snprintf(n, sizeof n, "layers.%d.attn.Wqkv.weight", l);
        named(&out[k++], n, st[MP_WQKV] + L * 3 * HH, 3 * H, H);
        snprintf(n, sizeof n, "layers.%d.attn.Wo.weight", l);
        named(&out[k++], n, st[MP_WO] + L * HH, H, H);
        snprintf(n, sizeof n, "layers.%d.mlp_norm.weight", l);
        named(&out[k++], n, st[MP_MLP_NORM] + L * h, H, 0);
        snprintf(n, sizeof n, "layers.%d.mlp.Wi.weight", l);
        named(&out[k++], n, st[MP_WI] + L * 2 * HI, 2 * I, H);
        snprintf(n, sizeof n, "layers.%d.mlp.Wo.weight", l);
        named(&out[k++], n, st[MP_WO2] + L * HI, H, I);
    }
    named(&out[k++], "final_norm.weight", st[MP_FINAL_NORM], H, 0);
    CB_ASSERT(k == named_count(c));
}

/* Every named tensor "<pre><name>" of f into the host block base. */
static int read_tensors(const mb_config *c, const st_file *f, float *base, cb_err *err) {
    const char *pre = cb_st_find(f, "model.embeddings.tok_embeddings.weight") ? "model." : "";
    int nt = named_count(c);
    backbone_named *na = cb_malloc((size_t)nt * sizeof *na, "the model's tensor names", err);
    if (!na) return -1;
    named_tensors(c, na);
    int rc = 0;
    for (int i = 0; i < nt && !rc; i++) {
        char key[160];
        snprintf(key, sizeof key, "%s%s", pre, na[i].name);
        rc = cb_st_read_f32(f, key, base + na[i].offset, na[i].ndim, na[i].shape, err);
    }
    free(na);
    return rc ? -1 : 0;
}

static int model_load(mb_model *m, ops_device *dev, const char *dir, cb_err *err) {
    memset(m, 0, sizeof *m);
    m->dev = dev;
    if (config_load(&m->cfg, dir, err)) return -1;
    param_sizes(&m->cfg, m->sizes);
    for (int i = 0; i < MP_COUNT; i++) m->n_params += m->sizes[i];
    size_t bytes = m->n_params * sizeof(float);
    char *path = cb_path_new(dir, "model.safetensors", err);
    st_file f;
    int rc = -1;
    float *host = NULL;
    if (path && !cb_st_open(&f, path, err)) {
        host = cb_malloc(bytes, "the model's parameters", err);
        rc = host ? read_tensors(&m->cfg, &f, host, err) : -1;
        cb_st_close(&f);
    }
    free(path);
    if (!rc) {
        float *dp = cb_ops_alloc(dev, bytes, "the model's parameters", err);
        if (dp) {
            cb_ops_upload(dev, dp, host, bytes);
            bind_tensors(m, dp);
            m->owned = 1;
        } else {
            rc = -1;
        }
    }
    free(host);
    if (rc) {
        free(m->cfg.global);
        memset(m, 0, sizeof *m);
    }
    return rc;
}

static void model_free(mb_model *m) {
    if (m->owned) cb_ops_free(m->dev, m->params);
    free(m->cfg.global);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ */
/* activations                                                         */

typedef struct mb_acts {
    ops_device *dev;
    int max_tokens, max_seq, train;
    size_t max_att;
    float *memory;                  /* [dev] the one allocation of floats (and the masks after them) */
    size_t bytes;
    float *emb;                     /* [T, H] token rows, before the norm */
    float *emb_mean, *emb_rstd;     /* [T] */
    float *x0;                      /* [T, H] after the norm (and dropout): input of layer 0 */
    /* per layer (layer l at + l * stride; stride 0 in inference) */
    float *an;                      /* [T, H] attn_norm output (layer 0: unused, the input itself) */
    float *an_mean, *an_rstd;       /* [T] */
    float *qkv;                     /* [T, 3H] after the rotary embeddings */
    float *ctx;                     /* [T, H] */
    float *xm;                      /* [T, H] x + attention: the residual stream between the blocks */
    float *mn;                      /* [T, H] mlp_norm output */
    float *mn_mean, *mn_rstd;       /* [T] */
    float *wi;                      /* [T, 2I] (input, gate) */
    float *xo;                      /* [T, H] layer output */
    float *gg;                      /* [T, I] GeGLU output; one layer (the backward recomputes it) */
    float *out;                     /* [T, H] final_norm output */
    float *out_mean, *out_rstd;     /* [T] */
    size_t s_TH, s_T3H, s_T2I, s_T;
    /* dropout masks (training mode): [T, H], per layer [T, H] and [T, I] */
    uint8_t *m_emb, *m_atto, *m_mlp;
    float p_emb, p_att, p_mlp;
    uint64_t seed;
    /* backward scratch */
    float *d_x, *d_y, *d_t, *d_ctx;  /* [T, H] */
    float *d_qkv;                   /* [T, 3H] */
    float *d_wi;                    /* [T, 2I] */
    float *d_gg;                    /* [T, I] */
    /* the batch layout: host mirror, uploaded as one block */
    void *lay, *h_lay;
    size_t lay_bytes;
    int32_t *ids;                   /* [dev] [T] */
    uint8_t *mask;                  /* [dev] [T] */
    int *seq_off;                   /* [dev] [S + 1] */
    size_t *att_off;                /* [dev] [S] */
    uint64_t *seq_id;               /* [dev] [S] */
    int has_mask;
    ops_seqs seqs;
    ops_work work;
    double t_attn;
} mb_acts;

static void acts_release(mb_acts *a) {
    if (a->dev) {
        cb_ops_free(a->dev, a->memory);
        cb_ops_free(a->dev, a->lay);
        cb_ops_free(a->dev, a->work.p);
    }
    free(a->h_lay);
    memset(a, 0, sizeof *a);
}

static int acts_setup(mb_acts *a, ops_device *dev, const mb_config *c, int max_tokens, size_t max_att, int train,
                      cb_err *err) {
    memset(a, 0, sizeof *a);
    a->dev = dev;
    /* T rounded up to 64 tokens: every slice 256-byte aligned (as bert.c) */
    size_t T = ((size_t)max_tokens + 63) & ~(size_t)63, H = (size_t)c->hidden, I = (size_t)c->inter;
    size_t L = (size_t)c->layers, nl = train ? L : 1;
    a->max_tokens = max_tokens;
    a->max_att = max_att;
    a->train = train;
    size_t per_layer = T * H * 5 + T * 3 * H + T * 2 * I + T * 4;
    size_t n_floats = T * H * 3 + T * 4 + T * I + nl * per_layer;
    if (train) n_floats += T * H * 4 + T * 3 * H + T * 2 * I + T * I;
    size_t n_masks = train ? T * H + L * (T * H + T * I) : 0;
    a->memory = cb_ops_alloc(dev, n_floats * sizeof(float) + n_masks, "the encoder's activations", err);
    if (!a->memory) return -1;
    a->bytes = n_floats * sizeof(float) + n_masks;
    float *p = a->memory;
#define TAKE(ptr, n) do { ptr = p; p += (n); } while (0)
    TAKE(a->emb, T * H);
    TAKE(a->x0, T * H);
    TAKE(a->out, T * H);
    TAKE(a->emb_mean, T);
    TAKE(a->emb_rstd, T);
    TAKE(a->out_mean, T);
    TAKE(a->out_rstd, T);
    TAKE(a->gg, T * I);
    TAKE(a->an, nl * T * H);
    TAKE(a->ctx, nl * T * H);
    TAKE(a->xm, nl * T * H);
    TAKE(a->mn, nl * T * H);
    TAKE(a->xo, nl * T * H);
    TAKE(a->qkv, nl * T * 3 * H);
    TAKE(a->wi, nl * T * 2 * I);
    TAKE(a->an_mean, nl * T);
    TAKE(a->an_rstd, nl * T);
    TAKE(a->mn_mean, nl * T);
    TAKE(a->mn_rstd, nl * T);
    if (train) {
        TAKE(a->d_x, T * H);
        TAKE(a->d_y, T * H);
        TAKE(a->d_t, T * H);
        TAKE(a->d_ctx, T * H);
        TAKE(a->d_qkv, T * 3 * H);
        TAKE(a->d_wi, T * 2 * I);
        TAKE(a->d_gg, T * I);
    }
#undef TAKE
    CB_ASSERT((size_t)(p - a->memory) == n_floats);
    if (train) {
        a->m_emb = (uint8_t *)p;
        a->m_atto = a->m_emb + T * H;
        a->m_mlp = a->m_atto + L * T * H;
        a->p_emb = c->p_emb;
        a->p_att = c->p_att;
        a->p_mlp = c->p_mlp;
    }
    a->s_TH = train ? T * H : 0;
    a->s_T3H = train ? T * 3 * H : 0;
    a->s_T2I = train ? T * 2 * I : 0;
    a->s_T = train ? T : 0;
    /* layout: att_off [T + 1] size_t; seq_id [T] uint64; ids [T] int32;
     * seq_off [T + 1] int; mask [T] bytes (at most T sequences) */
    a->lay_bytes = (T + 1) * sizeof(size_t) + T * sizeof(uint64_t) + T * sizeof(int32_t) + (T + 1) * sizeof(int) + T;
    a->lay = cb_ops_alloc(dev, a->lay_bytes, "the batch layout", err);
    a->h_lay = a->lay ? cb_malloc(a->lay_bytes, "the batch layout", err) : NULL;
    if (!a->h_lay) {
        acts_release(a);
        return -1;
    }
    a->bytes += a->lay_bytes;
    a->att_off = a->lay;
    a->seq_id = (uint64_t *)(a->att_off + T + 1);
    a->ids = (int32_t *)(a->seq_id + T);
    a->seq_off = (int *)(a->ids + T);
    a->mask = (uint8_t *)(a->seq_off + T + 1);
    int ms = 1;
    while ((size_t)(ms + 1) * (size_t)(ms + 1) <= max_att && ms < c->max_pos) ms++;
    a->max_seq = ms;
    a->work.bytes = cb_ops_attention_workspace(dev, ms, c->hidden / c->heads, train);
    a->work.p = cb_ops_alloc(dev, a->work.bytes, "the attention workspace", err);
    if (!a->work.p) {
        acts_release(a);
        return -1;
    }
    a->bytes += a->work.bytes;
    return 0;
}

static void *host_of(const mb_acts *a, const void *p) {
    return (char *)a->h_lay + ((const char *)p - (const char *)a->lay);
}

/* Offsets, ids and mask on the host, uploaded in one copy. */
static void layout_batch(const mb_config *c, mb_acts *a, const backbone_batch *b) {
    int S = b->n_seq, T = 0, longest = 0;
    int *off = host_of(a, a->seq_off);
    size_t *att_off = host_of(a, a->att_off), att = 0;
    uint64_t *seq_id = host_of(a, a->seq_id);
    CB_ASSERT(S <= a->max_tokens);
    for (int s = 0; s < S; s++) {
        int n = b->seq_len[s];
        CB_ASSERT(n > 0 && n <= c->max_pos && T + n <= a->max_tokens);
        seq_id[s] = b->seq_id ? b->seq_id[s] : (uint64_t)s;
        off[s] = T;
        att_off[s] = att;
        T += n;
        att += (size_t)n * n;
        if (n > longest) longest = n;
    }
    off[S] = T;
    CB_ASSERT(att <= a->max_att && longest <= a->max_seq);
    for (int t = 0; t < T; t++) CB_ASSERT(b->ids[t] >= 0 && b->ids[t] < c->vocab);
    memcpy(host_of(a, a->ids), b->ids, (size_t)T * sizeof(int32_t));
    if (b->mask) memcpy(host_of(a, a->mask), b->mask, (size_t)T);
    a->has_mask = b->mask != NULL;
    cb_ops_upload(a->dev, a->lay, a->h_lay, a->lay_bytes);
    a->seqs = (ops_seqs){.n_seq = S, .n_tok = T, .max_len = longest, .off = a->seq_off, .att_off = a->att_off,
                         .id = a->seq_id};
}

/* ------------------------------------------------------------------ */
/* forward                                                             */

static float layer_theta(const mb_config *c, int l) { return c->global[l] ? c->theta_global : c->theta_local; }
static int layer_window(const mb_config *c, int l) { return c->global[l] ? 0 : c->window; }

/* Dropout streams: the embeddings 0; layer l: probabilities 1 + 4l,
 * attention output 2 + 4l, MLP 3 + 4l (as bert.c numbers its own). */
static void model_forward(const mb_model *m, mb_acts *a, const backbone_batch *b) {
    const mb_config *c = &m->cfg;
    ops_device *d = a->dev;
    CB_ASSERT(d == m->dev);
    int H = c->hidden, I = c->inter, NH = c->heads;
    float eps = c->norm_eps;
    layout_batch(c, a, b);
    int T = a->seqs.n_tok;
    size_t n = (size_t)T * H, HH = (size_t)H * H, HI = (size_t)H * I;
    size_t TH = (size_t)a->max_tokens * H, TI = (size_t)a->max_tokens * I;
    const uint8_t *mask = a->has_mask ? a->mask : NULL;
    float pe = a->train ? a->p_emb : 0, pa = a->train ? a->p_att : 0, pm = a->train ? a->p_mlp : 0;

    cb_ops_embed_forward(d, a->emb, a->ids, NULL, NULL, m->t[MP_TOK_EMB], NULL, NULL, T, H);
    cb_ops_layernorm_forward(d, a->x0, a->emb_mean, a->emb_rstd, a->emb, m->t[MP_EMB_NORM], NULL, T, H, eps);
    if (pe > 0) cb_ops_dropout_forward(d, a->x0, a->m_emb, &a->seqs, H, pe, a->seed, 0);
    const float *x = a->x0;
    for (int l = 0; l < c->layers; l++) {
        float *an = a->an + l * a->s_TH, *qkv = a->qkv + l * a->s_T3H, *ctx = a->ctx + l * a->s_TH;
        float *xm = a->xm + l * a->s_TH, *mn = a->mn + l * a->s_TH, *wi = a->wi + l * a->s_T2I;
        float *xo = a->xo + l * a->s_TH;
        const float *ain = x;
        if (l > 0) {
            cb_ops_layernorm_forward(d, an, a->an_mean + l * a->s_T, a->an_rstd + l * a->s_T, x,
                                     m->t[MP_ATTN_NORM] + (size_t)(l - 1) * H, NULL, T, H, eps);
            ain = an;
        }
        cb_ops_linear_forward(d, qkv, ain, m->t[MP_WQKV] + l * 3 * HH, NULL, T, H, 3 * H);
        cb_ops_rope_forward(d, qkv, &a->seqs, H, NH, layer_theta(c, l));
        if (a->train) cb_ops_sync(d);
        double t0 = cb_now();
        cb_ops_attention_forward(d, ctx, qkv, mask, &a->seqs, H, NH, layer_window(c, l), pa, a->seed,
                                 1 + 4 * (uint64_t)l, &a->work);
        if (a->train) cb_ops_sync(d);
        a->t_attn += cb_now() - t0;
        cb_ops_linear_forward(d, xm, ctx, m->t[MP_WO] + l * HH, NULL, T, H, H);
        if (pa > 0) cb_ops_dropout_forward(d, xm, a->m_atto + l * TH, &a->seqs, H, pa, a->seed, 2 + 4 * (uint64_t)l);
        cb_ops_add(d, xm, xm, x, n);
        cb_ops_layernorm_forward(d, mn, a->mn_mean + l * a->s_T, a->mn_rstd + l * a->s_T, xm,
                                 m->t[MP_MLP_NORM] + (size_t)l * H, NULL, T, H, eps);
        cb_ops_linear_forward(d, wi, mn, m->t[MP_WI] + l * 2 * HI, NULL, T, H, 2 * I);
        cb_ops_geglu_forward(d, a->gg, wi, T, I);
        if (pm > 0) cb_ops_dropout_forward(d, a->gg, a->m_mlp + l * TI, &a->seqs, I, pm, a->seed, 3 + 4 * (uint64_t)l);
        /* in inference xo is x's buffer too: x is no longer read from here */
        cb_ops_linear_forward(d, xo, a->gg, m->t[MP_WO2] + l * HI, NULL, T, I, H);
        cb_ops_add(d, xo, xo, xm, n);
        x = xo;
    }
    cb_ops_layernorm_forward(d, a->out, a->out_mean, a->out_rstd, x, m->t[MP_FINAL_NORM], NULL, T, H, eps);
}

/* ------------------------------------------------------------------ */
/* backward                                                            */

/* g: [dev] gradients in the parameters' layout (+=); dd: [T, H] d out */
static void model_backward(const mb_model *m, mb_acts *a, float *grads, float *dd) {
    const mb_config *c = &m->cfg;
    ops_device *d = a->dev;
    CB_ASSERT(a->train);
    int H = c->hidden, I = c->inter, NH = c->heads, L = c->layers;
    int T = a->seqs.n_tok;
    size_t n = (size_t)T * H, HH = (size_t)H * H, HI = (size_t)H * I;
    size_t TH = (size_t)a->max_tokens * H, TI = (size_t)a->max_tokens * I;
    const uint8_t *mask = a->has_mask ? a->mask : NULL;
    float pe = a->p_emb, pa = a->p_att, pm = a->p_mlp;
    float *g[MP_COUNT], *p = grads;
    for (int i = 0; i < MP_COUNT; i++) { g[i] = p; p += m->sizes[i]; }
    float *dx = a->d_x, *dy = a->d_y, *dt = a->d_t;

    /* out = final_norm(x_L) */
    const float *xl = L > 0 ? a->xo + (size_t)(L - 1) * a->s_TH : a->x0;
    cb_ops_layernorm_backward(d, dx, g[MP_FINAL_NORM], NULL, dd, xl, m->t[MP_FINAL_NORM], a->out_mean, a->out_rstd,
                              T, H);
    for (int l = L - 1; l >= 0; l--) {
        const float *x = l > 0 ? a->xo + (size_t)(l - 1) * a->s_TH : a->x0;
        const float *an = a->an + l * a->s_TH, *qkv = a->qkv + l * a->s_T3H, *ctx = a->ctx + l * a->s_TH;
        const float *xm = a->xm + l * a->s_TH, *mn = a->mn + l * a->s_TH, *wi = a->wi + l * a->s_T2I;
        /* dx: d xo. xo = xm + Wo2 drop(geglu(wi)); the GeGLU output again */
        cb_ops_geglu_forward(d, a->gg, wi, T, I);
        if (pm > 0) cb_ops_dropout_forward(d, a->gg, a->m_mlp + l * TI, &a->seqs, I, pm, a->seed, 3 + 4 * (uint64_t)l);
        cb_ops_linear_backward(d, a->d_gg, g[MP_WO2] + l * HI, NULL, dx, a->gg, m->t[MP_WO2] + l * HI, T, I, H, 0);
        if (pm > 0) cb_ops_dropout_backward(d, a->d_gg, a->m_mlp + l * TI, (size_t)T * I, pm);
        cb_ops_geglu_backward(d, a->d_wi, a->d_gg, wi, T, I);
        /* wi = mn Wi^T; mn = mlp_norm(xm) */
        cb_ops_linear_backward(d, dy, g[MP_WI] + l * 2 * HI, NULL, a->d_wi, mn, m->t[MP_WI] + l * 2 * HI, T, H,
                               2 * I, 0);
        cb_ops_layernorm_backward(d, dt, g[MP_MLP_NORM] + (size_t)l * H, NULL, dy, xm,
                                  m->t[MP_MLP_NORM] + (size_t)l * H, a->mn_mean + l * a->s_T,
                                  a->mn_rstd + l * a->s_T, T, H);
        cb_ops_add(d, dx, dx, dt, n);   /* dx: d xm */
        /* xm = x + drop(ctx Wo^T) */
        cb_ops_copy(d, dy, dx, n * sizeof(float));
        if (pa > 0) cb_ops_dropout_backward(d, dy, a->m_atto + l * TH, n, pa);
        cb_ops_linear_backward(d, a->d_ctx, g[MP_WO] + l * HH, NULL, dy, ctx, m->t[MP_WO] + l * HH, T, H, H, 0);
        /* ctx = attention(rope(qkv_raw)) */
        cb_ops_sync(d);
        double t0 = cb_now();
        cb_ops_attention_backward(d, a->d_qkv, a->d_ctx, qkv, mask, &a->seqs, H, NH, layer_window(c, l), pa,
                                  a->seed, 1 + 4 * (uint64_t)l, &a->work);
        cb_ops_sync(d);
        a->t_attn += cb_now() - t0;
        cb_ops_rope_backward(d, a->d_qkv, &a->seqs, H, NH, layer_theta(c, l));
        /* qkv_raw = ain Wqkv^T; ain = attn_norm(x) (layer 0: x) */
        if (l > 0) {
            cb_ops_linear_backward(d, dy, g[MP_WQKV] + l * 3 * HH, NULL, a->d_qkv, an, m->t[MP_WQKV] + l * 3 * HH,
                                   T, H, 3 * H, 0);
            cb_ops_layernorm_backward(d, dt, g[MP_ATTN_NORM] + (size_t)(l - 1) * H, NULL, dy, x,
                                      m->t[MP_ATTN_NORM] + (size_t)(l - 1) * H, a->an_mean + l * a->s_T,
                                      a->an_rstd + l * a->s_T, T, H);
            cb_ops_add(d, dx, dx, dt, n);
        } else {
            cb_ops_linear_backward(d, dx, g[MP_WQKV], NULL, a->d_qkv, x, m->t[MP_WQKV], T, H, 3 * H, 1);
        }
    }
    /* x0 = drop(norm(emb)); emb = tok_embeddings[id] */
    if (pe > 0) cb_ops_dropout_backward(d, dx, a->m_emb, n, pe);
    cb_ops_layernorm_backward(d, dy, g[MP_EMB_NORM], NULL, dx, a->emb, m->t[MP_EMB_NORM], a->emb_mean, a->emb_rstd,
                              T, H);
    cb_ops_embed_backward(d, g[MP_TOK_EMB], NULL, NULL, dy, a->ids, NULL, NULL, T, H);
}

/* ------------------------------------------------------------------ */
/* the arch of backbone.h                                              */

static void arch_info(backbone *b, const mb_model *m) {
    const mb_config *c = &m->cfg;
    backbone_info *i = &b->info;
    i->hidden = c->hidden;
    i->layers = c->layers;
    i->intermediate = c->inter;       /* I: Wi is [2I, H], mlp.Wo [H, I] */
    i->vocab = c->vocab;
    i->max_len = c->max_pos;
    i->pad_id = c->pad_id;
    i->initializer_range = c->init_range;
    i->hidden_dropout = c->p_mlp > c->p_emb ? c->p_mlp : c->p_emb;
    i->attention_dropout = c->p_att;
    i->n_params = m->n_params;
    b->params = m->params;
}

static int arch_load(backbone *b, ops_device *dev, const char *dir, cb_err *err) {
    mb_model *m = cb_malloc(sizeof *m, "the model", err);
    if (!m) return -1;
    if (model_load(m, dev, dir, err)) {
        free(m);
        return -1;
    }
    b->impl = m;
    arch_info(b, m);
    return 0;
}

static void arch_free(backbone *b) {
    if (b->impl) model_free(b->impl);
    free(b->impl);
}

static void arch_bind(backbone *b, float *mem) {
    mb_model *m = b->impl;
    if (m->owned) cb_ops_free(m->dev, m->params);
    m->owned = 0;
    bind_tensors(m, mem);
    b->params = mem;
}

static int arch_acts_init(backbone_acts *a, const backbone *b, int max_tokens, size_t max_att, int train,
                          cb_err *err) {
    const mb_model *m = b->impl;
    mb_acts *ma = cb_malloc(sizeof *ma, "the encoder's activations", err);
    if (!ma) return -1;
    if (acts_setup(ma, b->dev, &m->cfg, max_tokens, max_att, train, err)) {
        free(ma);
        return -1;
    }
    a->impl = ma;
    a->bytes = ma->bytes;
    a->p_hidden = train ? b->info.hidden_dropout : 0.0f;
    a->p_att = ma->p_att;
    return 0;
}

static void arch_acts_free(backbone_acts *a) {
    if (a->impl) acts_release(a->impl);
    free(a->impl);
}

/* The caller's switches into the arch's activations: p_hidden > 0 turns
 * the embedding and MLP dropout of config.json on; p_att is the attention's. */
static mb_acts *sync_acts(const backbone *b, backbone_acts *a) {
    const mb_model *m = b->impl;
    mb_acts *ma = a->impl;
    ma->p_emb = a->p_hidden > 0 ? m->cfg.p_emb : 0.0f;
    ma->p_mlp = a->p_hidden > 0 ? m->cfg.p_mlp : 0.0f;
    ma->p_att = a->p_att;
    ma->seed = a->seed;
    return ma;
}

static void arch_forward(const backbone *b, backbone_acts *a, const backbone_batch *x) {
    mb_acts *ma = sync_acts(b, a);
    double t = ma->t_attn;
    model_forward(b->impl, ma, x);
    a->t_attn += ma->t_attn - t;
}

static float *arch_output(const backbone *b, const backbone_acts *a) {
    (void)b;
    return ((const mb_acts *)a->impl)->out;
}

static void arch_backward(const backbone *b, backbone_acts *a, float *grads, float *d_out) {
    mb_acts *ma = sync_acts(b, a);
    double t = ma->t_attn;
    model_backward(b->impl, ma, grads, d_out);
    a->t_attn += ma->t_attn - t;
}

static int arch_named_count(const backbone *b) { return named_count(&((const mb_model *)b->impl)->cfg); }

static void arch_named_tensors(const backbone *b, backbone_named *out) {
    named_tensors(&((const mb_model *)b->impl)->cfg, out);
}

/* The token embeddings are the first tensor: the new block is the old one
 * with n_new rows inserted after its first V * H floats. */
static int arch_grow_vocab(backbone *b, int n_new, uint64_t seed, cb_err *err) {
    mb_model *m = b->impl;
    CB_ASSERT(m->owned && n_new >= 0);
    if (n_new == 0) return 0;
    float *dp = cb_backbone_grow_rows(m->dev, m->params, m->n_params, m->cfg.vocab, n_new, m->cfg.hidden,
                                       seed, err);
    if (!dp) return -1;
    cb_ops_free(m->dev, m->params);
    m->cfg.vocab += n_new;
    param_sizes(&m->cfg, m->sizes);
    m->n_params += (size_t)n_new * (size_t)m->cfg.hidden;
    bind_tensors(m, dp);
    arch_info(b, m);
    return 0;
}

const backbone_arch cb_modernbert_arch = {
    .name = "modernbert",
    .load = arch_load,
    .free = arch_free,
    .bind = arch_bind,
    .acts_init = arch_acts_init,
    .acts_free = arch_acts_free,
    .forward = arch_forward,
    .output = arch_output,
    .backward = arch_backward,
    .named_count = arch_named_count,
    .named_tensors = arch_named_tensors,
    .grow_vocab = arch_grow_vocab,
};
