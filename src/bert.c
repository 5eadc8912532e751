/* bert.c: BERT encoder forward on packed batches. See bert.h.
 * Shapes: T tokens in the batch, H hidden, I intermediate, NH heads,
 * D = H / NH head size, L layers. */
#include "bert.h"
#include "attn.h"
#include "blas.h"
#include "fastmath.h"
#include "safetensors.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------------ */
/* parameters                                                          */

void bert_param_sizes(const bert_config *c, size_t s[BP_COUNT]) {
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
    return st_read_f32(f, key, dst, ndim, shape, err);
}

int bert_load(bert_model *m, const char *dir, cb_err *err) {
    memset(m, 0, sizeof *m);
    if (bert_config_load(&m->cfg, dir, err)) return -1;
    const bert_config *c = &m->cfg;
    bert_param_sizes(c, m->sizes);
    m->n_params = 0;
    for (int i = 0; i < BP_COUNT; i++) m->n_params += m->sizes[i];
    m->params = cb_xmalloc(m->n_params * sizeof(float));
    float *p = m->params;
    for (int i = 0; i < BP_COUNT; i++) { m->t[i] = p; p += m->sizes[i]; }

    char *path = cb_path_join(dir, "model.safetensors");
    st_file f;
    if (st_open(&f, path, err)) {
        free(path);
        bert_free(m);
        return -1;
    }
    free(path);
    const char *pre = st_find(&f, "bert.embeddings.word_embeddings.weight") ? "bert." : "";
    int64_t H = c->hidden_size, I = c->intermediate_size;
    int rc = 0;
    rc |= load_tensor(&f, pre, "embeddings.word_embeddings.weight", m->t[BP_WORD_EMB], 2, c->vocab_size, H, err);
    if (!rc) rc |= load_tensor(&f, pre, "embeddings.position_embeddings.weight", m->t[BP_POS_EMB], 2, c->max_position_embeddings, H, err);
    if (!rc) rc |= load_tensor(&f, pre, "embeddings.token_type_embeddings.weight", m->t[BP_TYPE_EMB], 2, c->type_vocab_size, H, err);
    if (!rc) rc |= load_tensor(&f, pre, "embeddings.LayerNorm.weight", m->t[BP_EMB_LN_W], 1, H, 0, err);
    if (!rc) rc |= load_tensor(&f, pre, "embeddings.LayerNorm.bias", m->t[BP_EMB_LN_B], 1, H, 0, err);
    for (int l = 0; l < c->num_hidden_layers && !rc; l++) {
        char n[128];
        size_t HH = (size_t)H * H, HI = (size_t)H * I;
        static const char *qkv[3] = {"query", "key", "value"};
        for (int j = 0; j < 3 && !rc; j++) {
            snprintf(n, sizeof n, "encoder.layer.%d.attention.self.%s.weight", l, qkv[j]);
            rc |= load_tensor(&f, pre, n, m->t[BP_QKV_W] + (size_t)l * 3 * HH + (size_t)j * HH, 2, H, H, err);
            snprintf(n, sizeof n, "encoder.layer.%d.attention.self.%s.bias", l, qkv[j]);
            if (!rc) rc |= load_tensor(&f, pre, n, m->t[BP_QKV_B] + (size_t)l * 3 * H + (size_t)j * H, 1, H, 0, err);
        }
#define LOAD(name, idx, stride, nd, a, b)                                              \
        if (!rc) {                                                                     \
            snprintf(n, sizeof n, "encoder.layer.%d." name, l);                        \
            rc |= load_tensor(&f, pre, n, m->t[idx] + (size_t)l * (stride), nd, a, b, err); \
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
    st_close(&f);
    if (rc) {
        bert_free(m);
        return -1;
    }
    return 0;
}

void bert_bind(bert_model *m, float *mem) {
    m->params = mem;
    float *p = mem;
    for (int i = 0; i < BP_COUNT; i++) { m->t[i] = p; p += m->sizes[i]; }
}

void bert_free(bert_model *m) {
    free(m->params);
    m->params = NULL;
}

int bert_named_count(const bert_config *c) { return 5 + 16 * c->num_hidden_layers; }

static void named(bert_named *o, const char *name, size_t offset, int64_t d0, int64_t d1) {
    snprintf(o->name, sizeof o->name, "%s", name);
    o->offset = offset;
    o->ndim = d1 ? 2 : 1;
    o->shape[0] = d0;
    o->shape[1] = d1;
    o->n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
}

void bert_named_tensors(const bert_model *m, bert_named *out) {
    const bert_config *c = &m->cfg;
    int64_t H = c->hidden_size, I = c->intermediate_size;
    size_t HH = (size_t)H * H, HI = (size_t)H * I;
#define OFF(idx) ((size_t)(m->t[idx] - m->params))
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
    CB_ASSERT(k == bert_named_count(c));
}

/* ------------------------------------------------------------------ */
/* activations                                                         */

/* Per-thread attention scratch, in floats, for sequences up to ms tokens and
 * head size D: the backward's three [ms, pad(ms)] blocks (probabilities,
 * dropped probabilities, their gradient), K^T or V^T packed [D, pad(ms)], V
 * packed [ms, D] and one block of score rows (the forward needs only the last
 * three). */
static size_t attn_scratch_per(int ms, int D) {
    size_t m8 = (size_t)attn_pad(ms);
    return 3 * (size_t)ms * m8 + (size_t)D * m8 + (size_t)ms * D + ATTN_ROWS * m8;
}

void bert_acts_init(bert_acts *a, const bert_config *c, int max_tokens, size_t max_att, int train) {
    memset(a, 0, sizeof *a);
    size_t T = (size_t)max_tokens, H = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    size_t nl = train ? (size_t)c->num_hidden_layers : 1;
    a->max_tokens = max_tokens;
    a->max_att = max_att;
    a->train = train;
    size_t per_layer = T * 3 * H + T * H * 5 + T * I + T * 4;
    a->n_floats = T * H * 2 + T * 2 + T * I + nl * per_layer;
    a->memory = cb_xmalloc(a->n_floats * sizeof(float));
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
#undef TAKE
    CB_ASSERT((size_t)(p - a->memory) == a->n_floats);
    a->stride_TH = train ? T * H : 0;
    a->stride_T3H = train ? T * 3 * H : 0;
    a->stride_TI = train ? T * I : 0;
    a->stride_T = train ? T : 0;
    a->seq_off = cb_xmalloc((T + 1) * sizeof(int));
    a->att_off = cb_xmalloc((T + 1) * sizeof(size_t));
    a->pos = cb_xmalloc(T * sizeof(int));
    /* attention scratch: three n x n blocks per thread */
    int ms = 1;
    while ((size_t)(ms + 1) * (size_t)(ms + 1) <= max_att && ms < c->max_position_embeddings) ms++;
    a->max_seq = ms;
    a->n_threads = 1;
#ifdef _OPENMP
    a->n_threads = omp_get_max_threads();
#endif
    a->scratch_per = attn_scratch_per(ms, c->hidden_size / c->num_attention_heads);
    a->scratch = cb_xmalloc((size_t)a->n_threads * a->scratch_per * sizeof(float));
    if (train) {
        size_t L = (size_t)c->num_hidden_layers;
        a->p_hidden = c->hidden_dropout_prob;
        a->p_att = c->attention_probs_dropout_prob;
        size_t nm = T * H + L * 2 * T * H;  /* masks: one byte allocation */
        a->m_emb = cb_xmalloc(nm);
        a->m_atto = a->m_emb + T * H;
        a->m_ffd = a->m_atto + L * T * H;
        size_t nd = T * H * 3 + T * 3 * H + T * I;
        a->d_x = cb_xmalloc(nd * sizeof(float));
        a->d_y = a->d_x + T * H;
        a->d_ctx = a->d_y + T * H;
        a->d_qkv = a->d_ctx + T * H;
        a->d_ff = a->d_qkv + T * 3 * H;
    }
}

void bert_acts_free(bert_acts *a) {
    free(a->memory);
    free(a->seq_off);
    free(a->att_off);
    free(a->pos);
    free(a->m_emb);
    free(a->d_x);
    free(a->scratch);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------------ */
/* kernels                                                             */

/* out, inp: [T, C]; mean, rstd: [T]; w, b: [C] */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int T, int C, float eps) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * C;
        float *o = out + (size_t)t * C;
        double s = 0;
        for (int i = 0; i < C; i++) s += x[i];
        float m = (float)(s / C);
        double v = 0;
        for (int i = 0; i < C; i++) { float d = x[i] - m; v += (double)d * d; }
        float r = 1.0f / sqrtf((float)(v / C) + eps);
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * r * w[i] + b[i];
        mean[t] = m;
        rstd[t] = r;
    }
}

/* out, inp: [n]; exact GELU 0.5 x (1 + erf(x / sqrt 2)) */
void gelu_forward(float *out, const float *inp, size_t n) {
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + fast_erff(x * (float)M_SQRT1_2));
    }
}

/* out: [T, OC]; inp: [T, C]; w: [OC, C]; b: [OC] or NULL */
void matmul_forward(float *out, const float *inp, const float *w, const float *b, int T, int C, int OC) {
    if (b) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) memcpy(out + (size_t)t * OC, b, (size_t)OC * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, OC, C, 1.0f, inp, C, w, C,
                b ? 1.0f : 0.0f, out, OC);
}

/* Dropout masks come from a counter-based hash, so any element's mask is a
 * pure function of (seed, stream, index): reproducible, thread-order free. */
static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t dropout_key(uint64_t seed, uint64_t stream) {
    return mix64(seed ^ (stream * 0xd1342543de82ef95ULL));
}

static inline uint32_t dropout_thr(float p) { return (uint32_t)((double)p * 4294967296.0); }

static inline int keep_bit(uint64_t key, uint64_t idx, uint32_t thr) {
    return (uint32_t)(mix64(key ^ idx) >> 32) >= thr;
}

int dropout_keep(uint64_t seed, uint64_t stream, uint64_t idx, float p) {
    return keep_bit(dropout_key(seed, stream), idx, dropout_thr(p));
}

/* mask[n] = keep bits; x[n] = x * mask / (1 - p) */
static void dropout_forward(float *x, uint8_t *mask, size_t n, float p, uint64_t seed, uint64_t stream) {
    float scale = 1.0f / (1.0f - p);
    uint64_t key = dropout_key(seed, stream);
    uint32_t thr = dropout_thr(p);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        mask[i] = (uint8_t)keep_bit(key, i, thr);
        x[i] = mask[i] ? x[i] * scale : 0.0f;
    }
}

static void dropout_backward(float *dx, const uint8_t *mask, size_t n, float p) {
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dx[i] = mask[i] ? dx[i] * scale : 0.0f;
}

static float *thread_scratch(const bert_acts *a) {
    int t = 0;
#ifdef _OPENMP
    t = omp_get_thread_num();
#endif
    CB_ASSERT(t < a->n_threads);
    return a->scratch + (size_t)t * a->scratch_per;
}

/* Softmax of one row of n scores in place; keys j with kmask[j] == 0 get
 * probability exactly 0 (as -inf scores would). */
static void softmax_row(float *row, const uint8_t *kmask, int n) {
    if (kmask)
        for (int j = 0; j < n; j++) if (!kmask[j]) row[j] = -INFINITY;
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
    float sum = 0;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < n; j++) {
        float e = fast_expf(row[j] - mx);  /* -inf -> ~1e-38, zeroed below */
        row[j] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (int j = 0; j < n; j++) row[j] *= inv;
    if (kmask)
        for (int j = 0; j < n; j++) if (!kmask[j]) row[j] = 0.0f;
}

/* Probabilities of query rows i0 .. i0 + R - 1 of one head into P (rows
 * strided by ldp): scores against the packed K^T, softmax, then dropout
 * (element (i, j) keeps by hash (key, base + i n + j)) into Pd when Pd is
 * not NULL (Pd may be P). Forward and backward both come here, so both see
 * the same numbers. */
static void attention_rows(float *P, float *Pd, int ldp, const float *q, int ldq, int i0, int R, const float *KT,
                           const uint8_t *kmask, int n, int D, float scale, uint64_t key, uint32_t thr,
                           size_t base, float dscale) {
    attn_scores(P, ldp, q + (size_t)i0 * ldq, ldq, R, KT, attn_pad(n), D, scale);
    for (int r = 0; r < R; r++) {
        float *row = P + (size_t)r * ldp;
        softmax_row(row, kmask, n);
        if (Pd) {
            float *out = Pd + (size_t)r * ldp;
            size_t b = base + (size_t)(i0 + r) * n;
            for (int j = 0; j < n; j++) out[j] = keep_bit(key, b + (size_t)j, thr) ? row[j] * dscale : 0.0f;
        }
    }
}

/* Multi-head self-attention over a packed batch.
 * ctx: [T, H] attention context; qkv: [T, 3H]; mask: [T] or NULL (keys with
 * mask 0 get probability 0). With p_att > 0, dropout on the probabilities
 * (element i of block (s, h) keeps by hash (seed, stream, att_off[s] * NH +
 * h * n^2 + i)). Per sequence and head, blocks of ATTN_ROWS query rows go
 * through scores, softmax and P V without leaving this thread's scratch. */
static void attention_forward(float *ctx, const float *qkv, const uint8_t *mask, const bert_acts *a, int S,
                              int H, int NH, float p_att, uint64_t seed, uint64_t stream) {
    int D = H / NH;
    float scale = 1.0f / sqrtf((float)D), dscale = p_att > 0 ? 1.0f / (1.0f - p_att) : 1.0f;
    uint64_t key = dropout_key(seed, stream);
    uint32_t thr = dropout_thr(p_att);
#pragma omp parallel for schedule(dynamic, 1)
    for (int job = 0; job < S * NH; job++) {
        int s = job / NH, h = job % NH;
        int o = a->seq_off[s], n = a->seq_off[s + 1] - o, n8 = attn_pad(n);
        CB_ASSERT(n <= a->max_seq);
        const float *q = qkv + (size_t)o * 3 * H + (size_t)h * D, *k = q + H, *v = q + 2 * H;
        float *KT = thread_scratch(a), *V = KT + (size_t)D * n8, *P = V + (size_t)n * D;
        attn_pack_t(KT, n8, k, 3 * H, n, D);
        for (int j = 0; j < n; j++) memcpy(V + (size_t)j * D, v + (size_t)j * 3 * H, (size_t)D * sizeof(float));
        size_t base = a->att_off[s] * NH + (size_t)h * n * n;
        for (int i0 = 0; i0 < n; i0 += ATTN_ROWS) {
            int R = n - i0 < ATTN_ROWS ? n - i0 : ATTN_ROWS;
            attention_rows(P, p_att > 0 ? P : NULL, n8, q, 3 * H, i0, R, KT, mask ? mask + o : NULL, n, D, scale,
                           key, thr, base, dscale);
            attn_context(ctx + (size_t)(o + i0) * H + (size_t)h * D, H, P, n8, R, V, n, D);
        }
    }
}

/* Backward of attention_forward; recomputes each block's probabilities.
 * d_qkv: [T, 3H] (overwritten); d_ctx: [T, H]. */
static void attention_backward(float *d_qkv, const float *d_ctx, const float *qkv, const uint8_t *mask,
                               const bert_acts *a, int S, int H, int NH, float p_att, uint64_t seed,
                               uint64_t stream) {
    int D = H / NH;
    float scale = 1.0f / sqrtf((float)D), dscale = p_att > 0 ? 1.0f / (1.0f - p_att) : 1.0f;
    uint64_t key = dropout_key(seed, stream);
    uint32_t thr = dropout_thr(p_att);
    size_t blk = (size_t)a->max_seq * attn_pad(a->max_seq);
#pragma omp parallel for schedule(dynamic, 1)
    for (int job = 0; job < S * NH; job++) {
        int s = job / NH, h = job % NH;
        int o = a->seq_off[s], n = a->seq_off[s + 1] - o, n8 = attn_pad(n);
        const float *q = qkv + (size_t)o * 3 * H + (size_t)h * D, *k = q + H, *v = q + 2 * H;
        float *dq = d_qkv + (size_t)o * 3 * H + (size_t)h * D, *dk = dq + H, *dv = dq + 2 * H;
        const float *dc = d_ctx + (size_t)o * H + (size_t)h * D;
        float *P = thread_scratch(a), *Pd = P + blk, *dP = Pd + blk, *KT = dP + blk;
        size_t base = a->att_off[s] * NH + (size_t)h * n * n;
        attn_pack_t(KT, n8, k, 3 * H, n, D);
        for (int i0 = 0; i0 < n; i0 += ATTN_ROWS) {
            int R = n - i0 < ATTN_ROWS ? n - i0 : ATTN_ROWS;
            attention_rows(P + (size_t)i0 * n8, p_att > 0 ? Pd + (size_t)i0 * n8 : NULL, n8, q, 3 * H, i0, R, KT,
                           mask ? mask + o : NULL, n, D, scale, key, thr, base, dscale);
        }
        const float *Pv = p_att > 0 ? Pd : P;
        /* forward: ctx = Pv @ v  ->  dv = Pv^T @ dctx ; dPv = dctx @ v^T */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, n, 1.0f, Pv, n8, dc, H, 0.0f, dv, 3 * H);
        attn_pack_t(KT, n8, v, 3 * H, n, D);
        for (int i0 = 0; i0 < n; i0 += ATTN_ROWS) {
            int R = n - i0 < ATTN_ROWS ? n - i0 : ATTN_ROWS;
            attn_scores(dP + (size_t)i0 * n8, n8, dc + (size_t)i0 * H, H, R, KT, n8, D, 1.0f);
        }
        /* through dropout: dropped elements (Pd == 0) get no gradient; where
         * P itself is 0 the softmax backward below zeroes it anyway */
        if (p_att > 0)
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++) {
                    size_t e = (size_t)i * n8 + j;
                    dP[e] = Pd[e] != 0.0f ? dP[e] * dscale : 0.0f;
                }
        /* softmax: dS = P * (dP - sum_j dP * P) (masked keys have P = 0) */
        for (int i = 0; i < n; i++) {
            const float *pr = P + (size_t)i * n8;
            float *dr = dP + (size_t)i * n8;
            float dot = 0;
            for (int j = 0; j < n; j++) dot += pr[j] * dr[j];
            for (int j = 0; j < n; j++) dr[j] = pr[j] * (dr[j] - dot);
        }
        /* forward: S = scale q @ k^T  ->  dq = scale dS @ k ; dk = scale dS^T @ q */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, D, n, scale, dP, n8, k, 3 * H, 0.0f, dq, 3 * H);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, n, scale, dP, n8, q, 3 * H, 0.0f, dk, 3 * H);
    }
}

static void residual_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* ------------------------------------------------------------------ */
/* forward                                                             */

float *bert_output(const bert_model *m, const bert_acts *a) {
    int L = m->cfg.num_hidden_layers;
    return L > 0 ? a->ln2 + (size_t)(L - 1) * a->stride_TH : a->emb_out;
}

void bert_forward(const bert_model *m, bert_acts *a, const bert_batch *b) {
    const bert_config *c = &m->cfg;
    int H = c->hidden_size, I = c->intermediate_size, NH = c->num_attention_heads;
    float eps = c->layer_norm_eps;
    int S = b->n_seq;
    /* layout of the batch */
    int T = 0;
    size_t att = 0;
    for (int s = 0; s < S; s++) {
        int n = b->seq_len[s];
        CB_ASSERT(n > 0 && n <= c->max_position_embeddings);
        a->seq_off[s] = T;
        a->att_off[s] = att;
        for (int i = 0; i < n; i++) a->pos[T + i] = i;
        T += n;
        att += (size_t)n * n;
    }
    a->seq_off[S] = T;
    CB_ASSERT(T <= a->max_tokens && att <= a->max_att);

    /* embeddings: emb[t] = word[id] + pos[p] + type[tt]; then LayerNorm */
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        int id = b->ids[t], tt = b->type_ids ? b->type_ids[t] : 0;
        CB_ASSERT(id >= 0 && id < c->vocab_size && tt >= 0 && tt < c->type_vocab_size);
        const float *we = m->t[BP_WORD_EMB] + (size_t)id * H;
        const float *pe = m->t[BP_POS_EMB] + (size_t)a->pos[t] * H;
        const float *te = m->t[BP_TYPE_EMB] + (size_t)tt * H;
        float *e = a->emb + (size_t)t * H;
        for (int i = 0; i < H; i++) e[i] = we[i] + pe[i] + te[i];
    }
    layernorm_forward(a->emb_out, a->emb_mean, a->emb_rstd, a->emb, m->t[BP_EMB_LN_W],
                      m->t[BP_EMB_LN_B], T, H, eps);
    float ph = a->train ? a->p_hidden : 0.0f, pa = a->train ? a->p_att : 0.0f;
    size_t TH = (size_t)a->max_tokens * H;
    if (ph > 0) dropout_forward(a->emb_out, a->m_emb, (size_t)T * H, ph, a->seed, 0);

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
        matmul_forward(qkv, x, m->t[BP_QKV_W] + l * 3 * HH, m->t[BP_QKV_B] + (size_t)l * 3 * H, T, H, 3 * H);
        double t0 = cb_now();
        attention_forward(ctx, qkv, b->mask, a, S, H, NH, pa, a->seed, 1 + 4 * (uint64_t)l);
        a->t_attn += cb_now() - t0;
        /* attention output projection into res1, dropout, then res1 += x */
        matmul_forward(res1, ctx, m->t[BP_ATTO_W] + l * HH, m->t[BP_ATTO_B] + (size_t)l * H, T, H, H);
        if (ph > 0) dropout_forward(res1, a->m_atto + l * TH, (size_t)T * H, ph, a->seed, 2 + 4 * (uint64_t)l);
        residual_forward(res1, res1, x, (size_t)T * H);
        layernorm_forward(ln1, a->ln1_mean + l * a->stride_T, a->ln1_rstd + l * a->stride_T, res1,
                          m->t[BP_LN1_W] + (size_t)l * H, m->t[BP_LN1_B] + (size_t)l * H, T, H, eps);
        matmul_forward(ffh, ln1, m->t[BP_FFU_W] + l * HI, m->t[BP_FFU_B] + (size_t)l * I, T, H, I);
        gelu_forward(ffg, ffh, (size_t)T * I);
        matmul_forward(res2, ffg, m->t[BP_FFD_W] + l * HI, m->t[BP_FFD_B] + (size_t)l * H, T, I, H);
        if (ph > 0) dropout_forward(res2, a->m_ffd + l * TH, (size_t)T * H, ph, a->seed, 3 + 4 * (uint64_t)l);
        residual_forward(res2, res2, ln1, (size_t)T * H);
        layernorm_forward(ln2, a->ln2_mean + l * a->stride_T, a->ln2_rstd + l * a->stride_T, res2,
                          m->t[BP_LN2_W] + (size_t)l * H, m->t[BP_LN2_B] + (size_t)l * H, T, H, eps);
        x = ln2;
    }
}

/* ------------------------------------------------------------------ */
/* backward                                                            */

void bert_grads_init(bert_grads *g, const bert_model *m) {
    g->n = m->n_params;
    g->memory = cb_xcalloc(g->n, sizeof(float));
    float *p = g->memory;
    for (int i = 0; i < BP_COUNT; i++) { g->t[i] = p; p += m->sizes[i]; }
}

void bert_grads_bind(bert_grads *g, const bert_model *m, float *mem) {
    g->n = m->n_params;
    g->memory = mem;
    float *p = mem;
    for (int i = 0; i < BP_COUNT; i++) { g->t[i] = p; p += m->sizes[i]; }
}

void bert_grads_zero(bert_grads *g) { memset(g->memory, 0, g->n * sizeof(float)); }

void bert_grads_free(bert_grads *g) {
    free(g->memory);
    memset(g, 0, sizeof *g);
}

/* Column-blocked loops: parameter-gradient reductions over T rows are split
 * by columns across threads, so no two threads write the same element. */
#define COL_BLOCK 64

/* forward: out = (inp - mean) * rstd * w + b, per row of C.
 * dinp: [T, C] (overwritten); dw, db: [C] (+=); dout, inp: [T, C] */
void layernorm_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const float *mean, const float *rstd, int T, int C) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * C, *dy = dout + (size_t)t * C;
        float *dx = dinp + (size_t)t * C;
        float m = mean[t], r = rstd[t];
        float s1 = 0, s2 = 0;  /* mean of dnorm, mean of dnorm * norm */
        for (int i = 0; i < C; i++) {
            float dn = dy[i] * w[i];
            s1 += dn;
            s2 += dn * (x[i] - m) * r;
        }
        s1 /= (float)C;
        s2 /= (float)C;
        for (int i = 0; i < C; i++) {
            float norm = (x[i] - m) * r;
            dx[i] = r * (dy[i] * w[i] - s1 - norm * s2);
        }
    }
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < C; c0 += COL_BLOCK) {
        int c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int t = 0; t < T; t++) {
            const float *x = inp + (size_t)t * C, *dy = dout + (size_t)t * C;
            float m = mean[t], r = rstd[t];
            for (int i = c0; i < c1; i++) {
                dw[i] += dy[i] * (x[i] - m) * r;
                db[i] += dy[i];
            }
        }
    }
}

/* forward: out = 0.5 x (1 + erf(x / sqrt 2)); dinp may alias dout */
void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n) {
    const float inv_sqrt_2pi = 0.3989422804014327f;
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + fast_erff(x * (float)M_SQRT1_2));
        float pdf = inv_sqrt_2pi * fast_expf(-0.5f * x * x);
        dinp[i] = dout[i] * (cdf + x * pdf);
    }
}

/* forward: out[T, OC] = inp[T, C] @ w[OC, C]^T + b */
void matmul_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                     const float *w, int T, int C, int OC, int acc) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, C, OC, 1.0f, dout, OC, w, C,
                acc ? 1.0f : 0.0f, dinp, C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, T, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (db) {
#pragma omp parallel for schedule(static)
        for (int c0 = 0; c0 < OC; c0 += COL_BLOCK) {
            int c1 = c0 + COL_BLOCK < OC ? c0 + COL_BLOCK : OC;
            for (int t = 0; t < T; t++) {
                const float *d = dout + (size_t)t * OC;
                for (int i = c0; i < c1; i++) db[i] += d[i];
            }
        }
    }
}

void bert_backward(const bert_model *m, bert_acts *a, bert_grads *g, const bert_batch *b, float *d) {
    const bert_config *c = &m->cfg;
    CB_ASSERT(a->train);
    int H = c->hidden_size, I = c->intermediate_size, NH = c->num_attention_heads;
    int S = b->n_seq, T = a->seq_off[S];
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
        gelu_forward(ffg, ffh, (size_t)T * I);
        /* ln2 = LN(res2); res2 = drop(ffg @ Wd^T + bd) + ln1 */
        layernorm_backward(dy, g->t[BP_LN2_W] + (size_t)l * H, g->t[BP_LN2_B] + (size_t)l * H, d, res2,
                           m->t[BP_LN2_W] + (size_t)l * H, a->ln2_mean + l * a->stride_T,
                           a->ln2_rstd + l * a->stride_T, T, H);
        memcpy(dx, dy, n * sizeof(float));
        if (ph > 0) dropout_backward(dy, a->m_ffd + l * TH, n, ph);
        matmul_backward(a->d_ff, g->t[BP_FFD_W] + l * HI, g->t[BP_FFD_B] + (size_t)l * H, dy, ffg,
                        m->t[BP_FFD_W] + l * HI, T, I, H, 0);
        /* ffg = gelu(ffh); ffh = ln1 @ Wu^T + bu */
        gelu_backward(a->d_ff, ffh, a->d_ff, (size_t)T * I);
        matmul_backward(dx, g->t[BP_FFU_W] + l * HI, g->t[BP_FFU_B] + (size_t)l * I, a->d_ff, ln1,
                        m->t[BP_FFU_W] + l * HI, T, H, I, 1);
        /* ln1 = LN(res1); res1 = drop(ctx @ Wo^T + bo) + x */
        layernorm_backward(dy, g->t[BP_LN1_W] + (size_t)l * H, g->t[BP_LN1_B] + (size_t)l * H, dx, res1,
                           m->t[BP_LN1_W] + (size_t)l * H, a->ln1_mean + l * a->stride_T,
                           a->ln1_rstd + l * a->stride_T, T, H);
        memcpy(d, dy, n * sizeof(float));
        if (ph > 0) dropout_backward(dy, a->m_atto + l * TH, n, ph);
        matmul_backward(a->d_ctx, g->t[BP_ATTO_W] + l * HH, g->t[BP_ATTO_B] + (size_t)l * H, dy, ctx,
                        m->t[BP_ATTO_W] + l * HH, T, H, H, 0);
        /* ctx = attention(qkv); qkv = x @ Wqkv^T + bqkv */
        double t0 = cb_now();
        attention_backward(a->d_qkv, a->d_ctx, qkv, b->mask, a, S, H, NH, pa, a->seed, 1 + 4 * (uint64_t)l);
        a->t_attn += cb_now() - t0;
        matmul_backward(d, g->t[BP_QKV_W] + l * 3 * HH, g->t[BP_QKV_B] + (size_t)l * 3 * H, a->d_qkv, x,
                        m->t[BP_QKV_W] + l * 3 * HH, T, H, 3 * H, 1);
    }
    /* emb_out = drop(LN(emb)); emb = word[id] + pos[p] + type[tt] */
    if (ph > 0) dropout_backward(d, a->m_emb, n, ph);
    layernorm_backward(dy, g->t[BP_EMB_LN_W], g->t[BP_EMB_LN_B], d, a->emb, m->t[BP_EMB_LN_W],
                       a->emb_mean, a->emb_rstd, T, H);
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < H; c0 += COL_BLOCK) {
        int c1 = c0 + COL_BLOCK < H ? c0 + COL_BLOCK : H;
        for (int t = 0; t < T; t++) {
            const float *de = dy + (size_t)t * H;
            float *gw = g->t[BP_WORD_EMB] + (size_t)b->ids[t] * H;
            float *gp = g->t[BP_POS_EMB] + (size_t)a->pos[t] * H;
            float *gt = g->t[BP_TYPE_EMB] + (size_t)(b->type_ids ? b->type_ids[t] : 0) * H;
            for (int i = c0; i < c1; i++) {
                gw[i] += de[i];
                gp[i] += de[i];
                gt[i] += de[i];
            }
        }
    }
}
