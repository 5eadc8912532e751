/* bert.c: the BERT encoder on packed batches, forward and backward, as a
 * sequence of compute-interface operations (ops.h). See bert.h.
 * Shapes: T tokens in the batch, H hidden, I intermediate, NH heads,
 * D = H / NH head size, L layers. */
#include "bert.h"
#include "safetensors.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* parameters                                                          */

void cb_bert_param_sizes(const bert_config *c, size_t s[BP_COUNT]) {
    size_t H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    size_t L = (size_t)c->num_hidden_layers;
    s[BP_WORD_EMB] = (size_t)c->vocab_size * H;
    s[BP_POS_EMB] = (size_t)c->max_position_embeddings * H;
    s[BP_TYPE_EMB] = (size_t)c->type_vocab_size * H;
    s[BP_EMB_LN_W] = s[BP_EMB_LN_B] = H;
    s[BP_QKV_W] = L * 3 * H * H;
    s[BP_QKV_B] = L * 3 * H;
    s[BP_ATTO_W] = L * H * H;
    s[BP_ATTO_B] = L * H;
    s[BP_LN1_W] = s[BP_LN1_B] = L * H;
    s[BP_FFU_W] = L * I * H;
    s[BP_FFU_B] = L * I;
    s[BP_FFD_W] = L * H * I;
    s[BP_FFD_B] = L * H;
    s[BP_LN2_W] = s[BP_LN2_B] = L * H;
}

/* Read one tensor "<prefix><name>" of shape dims into dst. */
static int load_tensor(const st_file *f, const char *prefix, const char *name, float *dst,
                       int ndim, int64_t d0, int64_t d1, cb_err *err) {
    char key[256];
    snprintf(key, sizeof key, "%s%s", prefix, name);
    int64_t shape[2] = {d0, d1};
    return cb_st_read_f32(f, key, dst, ndim, shape, err);
}

/* The tensors of m point into the block at base. */
static void bind_tensors(bert_model *m, float *base) {
    m->params = base;
    float *p = base;
    for (int i = 0; i < BP_COUNT; i++) { m->t[i] = p; p += m->sizes[i]; }
}

/* Read every tensor into host memory laid out as m says (m->t pointing
 * into it), from the open file f. */
static int read_tensors(bert_model *m, const st_file *f, cb_err *err) {
    const bert_config *c = &m->cfg;
    const backbone_family *fam = cb_backbone_family_find(c->model_type);
    CB_ASSERT(fam);
    char fam_key[96];
    snprintf(fam_key, sizeof fam_key, "%sembeddings.word_embeddings.weight", fam->prefix);
    const char *pre = cb_st_find(f, fam_key) ? fam->prefix : "";
    int64_t H = c->hidden_size, I = c->intermediate_size;
    int rc = 0;
    rc |= load_tensor(f, pre, "embeddings.word_embeddings.weight", m->t[BP_WORD_EMB], 2, c->vocab_size, H, err);
    if (!rc) rc |= load_tensor(f, pre, "embeddings.position_embeddings.weight", m->t[BP_POS_EMB], 2, c->max_position_embeddings, H, err);
    if (!rc) rc |= load_tensor(f, pre, "embeddings.token_type_embeddings.weight", m->t[BP_TYPE_EMB], 2, c->type_vocab_size, H, err);
    if (!rc) rc |= load_tensor(f, pre, "embeddings.LayerNorm.weight", m->t[BP_EMB_LN_W], 1, H, 0, err);
    if (!rc) rc |= load_tensor(f, pre, "embeddings.LayerNorm.bias", m->t[BP_EMB_LN_B], 1, H, 0, err);
    for (int l = 0; l < c->num_hidden_layers && !rc; l++) {
        char n[128];
        size_t HH = (size_t)H * H, HI = (size_t)H * I;
        static const char *qkv[3] = {"query", "key", "value"};
        for (int j = 0; j < 3 && !rc; j++) {
            snprintf(n, sizeof n, "encoder.layer.%d.attention.self.%s.weight", l, qkv[j]);
            rc |= load_tensor(f, pre, n, m->t[BP_QKV_W] + (size_t)l * 3 * HH + (size_t)j * HH, 2, H, H, err);
            snprintf(n, sizeof n, "encoder.layer.%d.attention.self.%s.bias", l, qkv[j]);
            if (!rc) rc |= load_tensor(f, pre, n, m->t[BP_QKV_B] + (size_t)l * 3 * H + (size_t)j * H, 1, H, 0, err);
        }
#define LOAD(name, idx, stride, nd, a, b)                                              \
        if (!rc) {                                                                     \
            snprintf(n, sizeof n, "encoder.layer.%d." name, l);                        \
            rc |= load_tensor(f, pre, n, m->t[idx] + (size_t)l * (stride), nd, a, b, err); \
        }
        LOAD("attention.output.dense.weight", BP_ATTO_W, HH, 2, H, H)
        LOAD("attention.output.dense.bias", BP_ATTO_B, H, 1, H, 0)
        LOAD("attention.output.LayerNorm.weight", BP_LN1_W, H, 1, H, 0)
        LOAD("attention.output.LayerNorm.bias", BP_LN1_B, H, 1, H, 0)
        LOAD("intermediate.dense.weight", BP_FFU_W, HI, 2, I, H)
        LOAD("intermediate.dense.bias", BP_FFU_B, I, 1, I, 0)
        LOAD("output.dense.weight", BP_FFD_W, HI, 2, H, I)
        LOAD("output.dense.bias", BP_FFD_B, H, 1, H, 0)
        LOAD("output.LayerNorm.weight", BP_LN2_W, H, 1, H, 0)
        LOAD("output.LayerNorm.bias", BP_LN2_B, H, 1, H, 0)
#undef LOAD
    }
    return rc ? -1 : 0;
}

int cb_bert_load(bert_model *m, ops_device *dev, const char *dir, cb_err *err) {
    memset(m, 0, sizeof *m);
    m->dev = dev;
    if (cb_bert_config_load(&m->cfg, dir, err)) return -1;
    cb_bert_param_sizes(&m->cfg, m->sizes);
    for (int i = 0; i < BP_COUNT; i++) m->n_params += m->sizes[i];
    size_t bytes = m->n_params * sizeof(float);
    char *path = cb_path_new(dir, "model.safetensors", err);
    if (!path) return -1;
    st_file f;
    if (cb_st_open(&f, path, err)) {
        free(path);
        return -1;
    }
    free(path);
    /* read on the host, then move to the device in one copy */
    float *host = cb_malloc(bytes, "the model's parameters", err);
    int rc = -1;
    if (host) {
        bind_tensors(m, host);
        rc = read_tensors(m, &f, err);
    }
    cb_st_close(&f);
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
    if (rc) memset(m, 0, sizeof *m);
    return rc;
}

void cb_bert_bind(bert_model *m, float *mem) {
    if (m->owned) cb_ops_free(m->dev, m->params);
    m->owned = 0;
    bind_tensors(m, mem);
}

void cb_bert_free(bert_model *m) {
    if (m->owned) cb_ops_free(m->dev, m->params);
    memset(m, 0, sizeof *m);
}

int cb_bert_named_count(const bert_config *c) { return 5 + 16 * c->num_hidden_layers; }

static void named(bert_named *o, const char *name, size_t offset, int64_t d0, int64_t d1) {
    snprintf(o->name, sizeof o->name, "%s", name);
    o->offset = offset;
    o->ndim = d1 ? 2 : 1;
    o->shape[0] = d0;
    o->shape[1] = d1;
    o->n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
}

void cb_bert_named_tensors(const bert_config *c, bert_named *out) {
    int64_t H = c->hidden_size, I = c->intermediate_size;
    size_t HH = (size_t)H * H, HI = (size_t)H * I;
    size_t sizes[BP_COUNT], start[BP_COUNT], o = 0;
    cb_bert_param_sizes(c, sizes);
    for (int i = 0; i < BP_COUNT; i++) { start[i] = o; o += sizes[i]; }
#define OFF(idx) (start[idx])
    int k = 0;
    named(&out[k++], "embeddings.word_embeddings.weight", OFF(BP_WORD_EMB), c->vocab_size, H);
    named(&out[k++], "embeddings.position_embeddings.weight", OFF(BP_POS_EMB), c->max_position_embeddings, H);
    named(&out[k++], "embeddings.token_type_embeddings.weight", OFF(BP_TYPE_EMB), c->type_vocab_size, H);
    named(&out[k++], "embeddings.LayerNorm.weight", OFF(BP_EMB_LN_W), H, 0);
    named(&out[k++], "embeddings.LayerNorm.bias", OFF(BP_EMB_LN_B), H, 0);
    static const char *qkv[3] = {"query", "key", "value"};
    for (int l = 0; l < c->num_hidden_layers; l++) {
        size_t L = (size_t)l;
        char n[96];
        for (int j = 0; j < 3; j++) {
            snprintf(n, sizeof n, "encoder.layer.%d.attention.self.%s.weight", l, qkv[j]);
            named(&out[k++], n, OFF(BP_QKV_W) + L * 3 * HH + (size_t)j * HH, H, H);
            snprintf(n, sizeof n, "encoder.layer.%d.attention.self.%s.bias", l, qkv[j]);
            named(&out[k++], n, OFF(BP_QKV_B) + L * 3 * (size_t)H + (size_t)j * H, H, 0);
        }
#define NAMED(suffix, idx, stride, d0, d1)                                   \
        snprintf(n, sizeof n, "encoder.layer.%d." suffix, l);                 \
        named(&out[k++], n, OFF(idx) + L * (stride), d0, d1);
        NAMED("attention.output.dense.weight", BP_ATTO_W, HH, H, H)
        NAMED("attention.output.dense.bias", BP_ATTO_B, (size_t)H, H, 0)
        NAMED("attention.output.LayerNorm.weight", BP_LN1_W, (size_t)H, H, 0)
        NAMED("attention.output.LayerNorm.bias", BP_LN1_B, (size_t)H, H, 0)
        NAMED("intermediate.dense.weight", BP_FFU_W, HI, I, H)
        NAMED("intermediate.dense.bias", BP_FFU_B, (size_t)I, I, 0)
        NAMED("output.dense.weight", BP_FFD_W, HI, H, I)
        NAMED("output.dense.bias", BP_FFD_B, (size_t)H, H, 0)
        NAMED("output.LayerNorm.weight", BP_LN2_W, (size_t)H, H, 0)
        NAMED("output.LayerNorm.bias", BP_LN2_B, (size_t)H, H, 0)
#undef NAMED
    }
#undef OFF
    CB_ASSERT(k == cb_bert_named_count(c));
}

/* ------------------------------------------------------------------ */
/* activations                                                         */

int cb_bert_acts_init(bert_acts *a, ops_device *dev, const bert_config *c, int max_tokens, size_t max_att,
                   int train, cb_err *err) {
    memset(a, 0, sizeof *a);
    a->dev = dev;
    /* every buffer is sized for T rounded up to 64 tokens, so that every
     * slice below starts 256 bytes after the last (the alignment of the
     * allocation): the GPU's kernels load float4s and cuBLASLt picks its
     * kernels by alignment, whatever max_tokens is (odd ones too) */
    size_t T = ((size_t)max_tokens + 63) & ~(size_t)63, H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    size_t nl = train ? (size_t)c->num_hidden_layers : 1, L = (size_t)c->num_hidden_layers;
    a->max_tokens = max_tokens;
    a->max_att = max_att;
    a->train = train;
    size_t per_layer = T * 3 * H + T * H * 5 + T * I + T * 4;
    a->n_floats = T * H * 2 + T * 2 + T * I + nl * per_layer;
    if (train) a->n_floats += T * H * 3 + T * 3 * H + T * I;   /* backward scratch */
    size_t n_masks = train ? T * H + L * 2 * T * H : 0;
    a->memory = cb_ops_alloc(dev, a->n_floats * sizeof(float) + n_masks, "the encoder's activations", err);
    if (!a->memory) return -1;
    a->bytes = a->n_floats * sizeof(float) + n_masks;
    float *p = a->memory;
#define TAKE(ptr, n) do { ptr = p; p += (n); } while (0)
    TAKE(a->emb, T * H);
    TAKE(a->emb_mean, T);
    TAKE(a->emb_rstd, T);
    TAKE(a->emb_out, T * H);
    /* per-layer buffers: layer l of buffer X lies at X + l * stride_X */
    TAKE(a->qkv, nl * T * 3 * H);
    TAKE(a->ctx, nl * T * H);
    TAKE(a->res1, nl * T * H);
    TAKE(a->ln1, nl * T * H);
    TAKE(a->res2, nl * T * H);
    TAKE(a->ln2, nl * T * H);
    TAKE(a->ffh, nl * T * I);
    TAKE(a->ffg, T * I);   /* one layer: the backward recomputes GELU */
    TAKE(a->ln1_mean, nl * T);
    TAKE(a->ln1_rstd, nl * T);
    TAKE(a->ln2_mean, nl * T);
    TAKE(a->ln2_rstd, nl * T);
    if (train) {
        TAKE(a->d_x, T * H);
        TAKE(a->d_y, T * H);
        TAKE(a->d_ctx, T * H);
        TAKE(a->d_qkv, T * 3 * H);
        TAKE(a->d_ff, T * I);
    }
#undef TAKE
    CB_ASSERT((size_t)(p - a->memory) == a->n_floats);
    if (train) {
        a->m_emb = (uint8_t *)p;
        a->m_atto = a->m_emb + T * H;
        a->m_ffd = a->m_atto + L * T * H;
        a->p_hidden = c->hidden_dropout_prob;
        a->p_att = c->attention_probs_dropout_prob;
    }
    a->stride_TH = train ? T * H : 0;
    a->stride_T3H = train ? T * 3 * H : 0;
    a->stride_TI = train ? T * I : 0;
    a->stride_T = train ? T : 0;
    /* the batch layout: att_off [T + 1] size_t; seq_id [T] uint64; ids,
     * types, pos [T] int32; seq_off [T + 1] int; mask [T] bytes (at most T
     * sequences) */
    a->lay_bytes = (T + 1) * sizeof(size_t) + T * sizeof(uint64_t) + 3 * T * sizeof(int32_t) +
                   (T + 1) * sizeof(int) + T;
    a->lay = cb_ops_alloc(dev, a->lay_bytes, "the batch layout", err);
    a->h_lay = a->lay ? cb_malloc(a->lay_bytes, "the batch layout", err) : NULL;
    if (!a->h_lay) {
        cb_bert_acts_free(a);
        return -1;
    }
    a->bytes += a->lay_bytes;
    a->att_off = a->lay;
    a->seq_id = (uint64_t *)(a->att_off + T + 1);
    a->ids = (int32_t *)(a->seq_id + T);
    a->types = a->ids + T;
    a->pos = a->types + T;
    a->seq_off = (int *)(a->pos + T);
    a->mask = (uint8_t *)(a->seq_off + T + 1);
    /* attention workspace for the longest sequence the budget allows */
    int ms = 1;
    while ((size_t)(ms + 1) * (size_t)(ms + 1) <= max_att && ms < c->max_len) ms++;
    a->max_seq = ms;
    a->work.bytes = cb_ops_attention_workspace(dev, ms, c->hidden_size / c->num_attention_heads, train);
    a->work.p = cb_ops_alloc(dev, a->work.bytes, "the attention workspace", err);
    if (!a->work.p) {
        cb_bert_acts_free(a);
        return -1;
    }
    a->bytes += a->work.bytes;
    return 0;
}

void cb_bert_acts_free(bert_acts *a) {
    if (a->dev) {
        cb_ops_free(a->dev, a->memory);
        cb_ops_free(a->dev, a->lay);
        cb_ops_free(a->dev, a->work.p);
    }
    free(a->h_lay);
    memset(a, 0, sizeof *a);
}

/* Host pointer in h_lay to the same place as the device pointer p in lay. */
static void *host_of(const bert_acts *a, const void *p) {
    return (char *)a->h_lay + ((const char *)p - (const char *)a->lay);
}

/* Lay the batch out (offsets, positions) on the host and upload it with
 * the ids, types and mask: one copy per batch. */
static void layout_batch(const bert_config *c, bert_acts *a, const bert_batch *b) {
    int S = b->n_seq, T = 0, longest = 0;
    int *off = host_of(a, a->seq_off);
    int32_t *pos = host_of(a, a->pos), *ids = host_of(a, a->ids), *types = host_of(a, a->types);
    size_t *att_off = host_of(a, a->att_off), att = 0;
    uint64_t *seq_id = host_of(a, a->seq_id);
    CB_ASSERT(S <= a->max_tokens);
    for (int s = 0; s < S; s++) {
        int n = b->seq_len[s];
        seq_id[s] = b->seq_id ? b->seq_id[s] : (uint64_t)s;
        CB_ASSERT(n > 0 && n <= c->max_len && T + n <= a->max_tokens);
        off[s] = T;
        att_off[s] = att;
        if (c->positions == POS_AFTER_PAD) {
            /* transformers' create_position_ids_from_input_ids:
             * cumsum(id != pad) * (id != pad) + pad */
            int32_t pad = c->pad_token_id, k = 0;
            for (int i = 0; i < n; i++) pos[T + i] = b->ids[T + i] != pad ? pad + ++k : pad;
        } else {
            for (int i = 0; i < n; i++) pos[T + i] = i;
        }
        T += n;
        att += (size_t)n * n;
        if (n > longest) longest = n;
    }
    off[S] = T;
    CB_ASSERT(att <= a->max_att && longest <= a->max_seq);
    for (int t = 0; t < T; t++) {
        CB_ASSERT(b->ids[t] >= 0 && b->ids[t] < c->vocab_size);
        CB_ASSERT(!b->type_ids || (b->type_ids[t] >= 0 && b->type_ids[t] < c->type_vocab_size));
    }
    memcpy(ids, b->ids, (size_t)T * sizeof(int32_t));
    if (b->type_ids) memcpy(types, b->type_ids, (size_t)T * sizeof(int32_t));
    if (b->mask) memcpy(host_of(a, a->mask), b->mask, (size_t)T);
    a->has_types = b->type_ids != NULL;
    a->has_mask = b->mask != NULL;
    cb_ops_upload(a->dev, a->lay, a->h_lay, a->lay_bytes);
    a->seqs = (ops_seqs){.n_seq = S, .n_tok = T, .max_len = longest, .off = a->seq_off, .att_off = a->att_off,
                        .id = a->seq_id};
}

/* ------------------------------------------------------------------ */
/* forward                                                             */

float *cb_bert_output(const bert_model *m, const bert_acts *a) {
    int L = m->cfg.num_hidden_layers;
    return L > 0 ? a->ln2 + (size_t)(L - 1) * a->stride_TH : a->emb_out;
}

void cb_bert_forward(const bert_model *m, bert_acts *a, const bert_batch *b) {
    const bert_config *c = &m->cfg;
    ops_device *d = a->dev;
    CB_ASSERT(d == m->dev);
    int H = c->hidden_size, I = c->intermediate_size, NH = c->num_attention_heads;
    float eps = c->layer_norm_eps;
    layout_batch(c, a, b);
    int T = a->seqs.n_tok;
    const uint8_t *mask = a->has_mask ? a->mask : NULL;

    /* embeddings: emb[t] = word[id] + pos[p] + type[tt]; then LayerNorm */
    cb_ops_embed_forward(d, a->emb, a->ids, a->pos, a->has_types ? a->types : NULL, m->t[BP_WORD_EMB],
                      m->t[BP_POS_EMB], m->t[BP_TYPE_EMB], T, H);
    cb_ops_layernorm_forward(d, a->emb_out, a->emb_mean, a->emb_rstd, a->emb, m->t[BP_EMB_LN_W], m->t[BP_EMB_LN_B],
                          T, H, eps);
    float ph = a->train ? a->p_hidden : 0.0f, pa = a->train ? a->p_att : 0.0f;
    size_t TH = (size_t)a->max_tokens * H;
    if (ph > 0) cb_ops_dropout_forward(d, a->emb_out, a->m_emb, &a->seqs, H, ph, a->seed, 0);

    const float *x = a->emb_out;
    size_t HH = (size_t)H * H, HI = (size_t)H * I;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        float *qkv = a->qkv + l * a->stride_T3H;
        float *ctx = a->ctx + l * a->stride_TH;
        float *res1 = a->res1 + l * a->stride_TH;
        float *ln1 = a->ln1 + l * a->stride_TH;
        float *ffh = a->ffh + l * a->stride_TI;
        float *ffg = a->ffg;
        float *res2 = a->res2 + l * a->stride_TH;
        float *ln2 = a->ln2 + l * a->stride_TH;
        cb_ops_linear_forward(d, qkv, x, m->t[BP_QKV_W] + l * 3 * HH, m->t[BP_QKV_B] + (size_t)l * 3 * H, T, H, 3 * H);
        if (a->train) cb_ops_sync(d);   /* on a GPU, time the work and not its launch (training reports it) */
        double t0 = cb_now();
        cb_ops_attention_forward(d, ctx, qkv, mask, &a->seqs, H, NH, 0, pa, a->seed, 1 + 4 * (uint64_t)l, &a->work);
        if (a->train) cb_ops_sync(d);
        a->t_attn += cb_now() - t0;
        /* attention output projection into res1, dropout, then res1 += x */
        cb_ops_linear_forward(d, res1, ctx, m->t[BP_ATTO_W] + l * HH, m->t[BP_ATTO_B] + (size_t)l * H, T, H, H);
        if (ph > 0)
            cb_ops_dropout_forward(d, res1, a->m_atto + l * TH, &a->seqs, H, ph, a->seed, 2 + 4 * (uint64_t)l);
        cb_ops_add(d, res1, res1, x, (size_t)T * H);
        cb_ops_layernorm_forward(d, ln1, a->ln1_mean + l * a->stride_T, a->ln1_rstd + l * a->stride_T, res1,
                              m->t[BP_LN1_W] + (size_t)l * H, m->t[BP_LN1_B] + (size_t)l * H, T, H, eps);
        cb_ops_linear_forward(d, ffh, ln1, m->t[BP_FFU_W] + l * HI, m->t[BP_FFU_B] + (size_t)l * I, T, H, I);
        cb_ops_gelu_forward(d, ffg, ffh, (size_t)T * I);
        cb_ops_linear_forward(d, res2, ffg, m->t[BP_FFD_W] + l * HI, m->t[BP_FFD_B] + (size_t)l * H, T, I, H);
        if (ph > 0)
            cb_ops_dropout_forward(d, res2, a->m_ffd + l * TH, &a->seqs, H, ph, a->seed, 3 + 4 * (uint64_t)l);
        cb_ops_add(d, res2, res2, ln1, (size_t)T * H);
        cb_ops_layernorm_forward(d, ln2, a->ln2_mean + l * a->stride_T, a->ln2_rstd + l * a->stride_T, res2,
                              m->t[BP_LN2_W] + (size_t)l * H, m->t[BP_LN2_B] + (size_t)l * H, T, H, eps);
        x = ln2;
    }
}

/* ------------------------------------------------------------------ */
/* backward                                                            */

static void grads_bind(bert_grads *g, const bert_model *m, float *mem) {
    g->dev = m->dev;
    g->n = m->n_params;
    g->memory = mem;
    float *p = mem;
    for (int i = 0; i < BP_COUNT; i++) { g->t[i] = p; p += m->sizes[i]; }
}

int cb_bert_grads_init(bert_grads *g, const bert_model *m, cb_err *err) {
    memset(g, 0, sizeof *g);
    float *mem = cb_ops_alloc(m->dev, m->n_params * sizeof(float), "the parameter gradients", err);
    if (!mem) return -1;
    grads_bind(g, m, mem);
    g->owned = 1;
    cb_bert_grads_zero(g);
    return 0;
}

void cb_bert_grads_bind(bert_grads *g, const bert_model *m, float *mem) {
    memset(g, 0, sizeof *g);
    grads_bind(g, m, mem);
}

void cb_bert_grads_zero(bert_grads *g) { cb_ops_zero(g->dev, g->memory, g->n * sizeof(float)); }

void cb_bert_grads_free(bert_grads *g) {
    if (g->owned) cb_ops_free(g->dev, g->memory);
    memset(g, 0, sizeof *g);
}

void cb_bert_backward(const bert_model *m, bert_acts *a, bert_grads *g, float *dd) {
    const bert_config *c = &m->cfg;
    ops_device *d = a->dev;
    CB_ASSERT(a->train);
    int H = c->hidden_size, I = c->intermediate_size, NH = c->num_attention_heads;
    int T = a->seqs.n_tok;
    const uint8_t *mask = a->has_mask ? a->mask : NULL;
    size_t HH = (size_t)H * H, HI = (size_t)H * I, TH = (size_t)a->max_tokens * H;
    size_t n = (size_t)T * H;
    float ph = a->p_hidden, pa = a->p_att;
    float *dx = a->d_x, *dy = a->d_y;
    for (int l = c->num_hidden_layers - 1; l >= 0; l--) {
        const float *x = l > 0 ? a->ln2 + (size_t)(l - 1) * a->stride_TH : a->emb_out;
        const float *qkv = a->qkv + l * a->stride_T3H;
        const float *ctx = a->ctx + l * a->stride_TH, *res1 = a->res1 + l * a->stride_TH;
        const float *ln1 = a->ln1 + l * a->stride_TH, *ffh = a->ffh + l * a->stride_TI;
        const float *res2 = a->res2 + l * a->stride_TH;
        float *ffg = a->ffg;  /* not kept per layer: GELU again, from ffh */
        cb_ops_gelu_forward(d, ffg, ffh, (size_t)T * I);
        /* ln2 = LN(res2); res2 = drop(ffg @ Wd^T + bd) + ln1 */
        cb_ops_layernorm_backward(d, dy, g->t[BP_LN2_W] + (size_t)l * H, g->t[BP_LN2_B] + (size_t)l * H, dd, res2,
                               m->t[BP_LN2_W] + (size_t)l * H, a->ln2_mean + l * a->stride_T,
                               a->ln2_rstd + l * a->stride_T, T, H);
        cb_ops_copy(d, dx, dy, n * sizeof(float));
        if (ph > 0) cb_ops_dropout_backward(d, dy, a->m_ffd + l * TH, n, ph);
        cb_ops_linear_backward(d, a->d_ff, g->t[BP_FFD_W] + l * HI, g->t[BP_FFD_B] + (size_t)l * H, dy, ffg,
                            m->t[BP_FFD_W] + l * HI, T, I, H, 0);
        /* ffg = gelu(ffh); ffh = ln1 @ Wu^T + bu */
        cb_ops_gelu_backward(d, a->d_ff, ffh, a->d_ff, (size_t)T * I);
        cb_ops_linear_backward(d, dx, g->t[BP_FFU_W] + l * HI, g->t[BP_FFU_B] + (size_t)l * I, a->d_ff, ln1,
                            m->t[BP_FFU_W] + l * HI, T, H, I, 1);
        /* ln1 = LN(res1); res1 = drop(ctx @ Wo^T + bo) + x */
        cb_ops_layernorm_backward(d, dy, g->t[BP_LN1_W] + (size_t)l * H, g->t[BP_LN1_B] + (size_t)l * H, dx, res1,
                               m->t[BP_LN1_W] + (size_t)l * H, a->ln1_mean + l * a->stride_T,
                               a->ln1_rstd + l * a->stride_T, T, H);
        cb_ops_copy(d, dd, dy, n * sizeof(float));
        if (ph > 0) cb_ops_dropout_backward(d, dy, a->m_atto + l * TH, n, ph);
        cb_ops_linear_backward(d, a->d_ctx, g->t[BP_ATTO_W] + l * HH, g->t[BP_ATTO_B] + (size_t)l * H, dy, ctx,
                            m->t[BP_ATTO_W] + l * HH, T, H, H, 0);
        /* ctx = attention(qkv); qkv = x @ Wqkv^T + bqkv */
        cb_ops_sync(d);   /* on a GPU, time the work and not its launch */
        double t0 = cb_now();
        cb_ops_attention_backward(d, a->d_qkv, a->d_ctx, qkv, mask, &a->seqs, H, NH, 0, pa, a->seed,
                               1 + 4 * (uint64_t)l, &a->work);
        cb_ops_sync(d);
        a->t_attn += cb_now() - t0;
        cb_ops_linear_backward(d, dd, g->t[BP_QKV_W] + l * 3 * HH, g->t[BP_QKV_B] + (size_t)l * 3 * H, a->d_qkv, x,
                            m->t[BP_QKV_W] + l * 3 * HH, T, H, 3 * H, 1);
    }
    /* emb_out = drop(LN(emb)); emb = word[id] + pos[p] + type[tt] */
    if (ph > 0) cb_ops_dropout_backward(d, dd, a->m_emb, n, ph);
    cb_ops_layernorm_backward(d, dy, g->t[BP_EMB_LN_W], g->t[BP_EMB_LN_B], dd, a->emb, m->t[BP_EMB_LN_W],
                           a->emb_mean, a->emb_rstd, T, H);
    cb_ops_embed_backward(d, g->t[BP_WORD_EMB], g->t[BP_POS_EMB], g->t[BP_TYPE_EMB], dy, a->ids, a->pos,
                       a->has_types ? a->types : NULL, T, H);
}

/* ------------------------------------------------------------------ */
/* the arch of backbone.h                                              */

static void arch_info(backbone *b, const bert_model *m) {
    const bert_config *c = &m->cfg;
    backbone_info *i = &b->info;
    i->hidden = c->hidden_size;
    i->layers = c->num_hidden_layers;
    i->intermediate = c->intermediate_size;
    i->vocab = c->vocab_size;
    i->max_len = c->max_len;
    i->pad_id = c->pad_token_id;
    i->initializer_range = c->initializer_range;
    i->hidden_dropout = c->hidden_dropout_prob;
    i->attention_dropout = c->attention_probs_dropout_prob;
    i->n_params = m->n_params;
    b->params = m->params;
}

static int arch_load(backbone *b, ops_device *dev, const char *dir, cb_err *err) {
    bert_model *m = cb_malloc(sizeof *m, "the model", err);
    if (!m) return -1;
    if (cb_bert_load(m, dev, dir, err)) {
        free(m);
        return -1;
    }
    b->impl = m;
    arch_info(b, m);
    return 0;
}

int cb_bert_to_backbone(backbone *b, bert_model *m, cb_err *err) {
    memset(b, 0, sizeof *b);
    const backbone_family *fam = cb_backbone_family_find(m->cfg.model_type[0] ? m->cfg.model_type : "bert");
    bert_model *own = fam ? cb_malloc(sizeof *own, "the model", err) : NULL;
    if (!own) return fam ? -1 : cb_err_set(err, "model_type '%s' is not a family of backbone.h", m->cfg.model_type);
    *own = *m;
    memset(m, 0, sizeof *m);
    b->fam = fam;
    b->dev = own->dev;
    b->impl = own;
    b->info.family = fam->model_type;
    b->info.prefix = fam->prefix;
    arch_info(b, own);
    return 0;
}

static void arch_free(backbone *b) {
    if (b->impl) cb_bert_free(b->impl);
    free(b->impl);
}

static void arch_bind(backbone *b, float *mem) {
    cb_bert_bind(b->impl, mem);
    b->params = mem;
}

static int arch_acts_init(backbone_acts *a, const backbone *b, int max_tokens, size_t max_att, int train,
                          cb_err *err) {
    const bert_model *m = b->impl;
    bert_acts *ba = cb_malloc(sizeof *ba, "the encoder's activations", err);
    if (!ba) return -1;
    if (cb_bert_acts_init(ba, b->dev, &m->cfg, max_tokens, max_att, train, err)) {
        free(ba);
        return -1;
    }
    a->impl = ba;
    a->bytes = ba->bytes;
    a->p_hidden = ba->p_hidden;
    a->p_att = ba->p_att;
    return 0;
}

static void arch_acts_free(backbone_acts *a) {
    if (a->impl) cb_bert_acts_free(a->impl);
    free(a->impl);
}

/* The caller's dropout settings into the arch's activations. */
static bert_acts *sync_acts(backbone_acts *a) {
    bert_acts *ba = a->impl;
    ba->p_hidden = a->p_hidden;
    ba->p_att = a->p_att;
    ba->seed = a->seed;
    return ba;
}

static void arch_forward(const backbone *b, backbone_acts *a, const backbone_batch *x) {
    bert_acts *ba = sync_acts(a);
    bert_batch bb = {.n_seq = x->n_seq, .seq_len = x->seq_len, .ids = x->ids, .mask = x->mask, .seq_id = x->seq_id};
    double t = ba->t_attn;
    cb_bert_forward(b->impl, ba, &bb);
    a->t_attn += ba->t_attn - t;
}

static float *arch_output(const backbone *b, const backbone_acts *a) { return cb_bert_output(b->impl, a->impl); }

static void arch_backward(const backbone *b, backbone_acts *a, float *grads, float *d_out) {
    bert_acts *ba = sync_acts(a);
    bert_grads g;
    cb_bert_grads_bind(&g, b->impl, grads);
    double t = ba->t_attn;
    cb_bert_backward(b->impl, ba, &g, d_out);
    a->t_attn += ba->t_attn - t;
}

static int arch_named_count(const backbone *b) { return cb_bert_named_count(&((const bert_model *)b->impl)->cfg); }

static void arch_named_tensors(const backbone *b, backbone_named *out) {
    cb_bert_named_tensors(&((const bert_model *)b->impl)->cfg, out);
}

/* The word embeddings are the first tensor: the new block is the old one
 * with n_new rows inserted after its first V * H floats. */
static int arch_grow_vocab(backbone *b, int n_new, uint64_t seed, cb_err *err) {
    bert_model *m = b->impl;
    CB_ASSERT(m->owned && n_new >= 0);
    if (n_new == 0) return 0;
    float *dp = cb_backbone_grow_rows(m->dev, m->params, m->n_params, m->cfg.vocab_size, n_new,
                                       m->cfg.hidden_size, seed, err);
    if (!dp) return -1;
    cb_ops_free(m->dev, m->params);
    m->cfg.vocab_size += n_new;
    cb_bert_param_sizes(&m->cfg, m->sizes);
    m->n_params += (size_t)n_new * (size_t)m->cfg.hidden_size;
    bind_tensors(m, dp);
    arch_info(b, m);
    return 0;
}

const backbone_arch cb_bert_arch = {
    .name = "bert",
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
