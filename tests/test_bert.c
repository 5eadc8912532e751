/* test_bert.c: the C BERT forward equals transformers' BertModel on the real
 * all-MiniLM-L6-v2 weights (reference tensors from tests/ref/gen_bert.py):
 * real NFCorpus documents of mixed length up to 512 tokens, and ColBERT
 * queries with [MASK] padding excluded by the attention mask.
 * Tolerance: max abs diff <= 1e-4 on every hidden state. */
#include "test.h"
#include "ref.h"
#include "bert.h"
#include "safetensors.h"

#define raw ref_raw

/* Run the forward pass over sequences [s0, s1) packed into one batch;
 * return the max abs diff against the reference hidden states. */
static float run_range(const bert_model *m, bert_acts *a, const int32_t *ids, const int32_t *lens,
                       const uint8_t *mask, const float *ref, const size_t *off, int s0, int s1) {
    bert_batch b = {.n_seq = s1 - s0, .seq_len = (const int *)(lens + s0),
                    .ids = ids + off[s0], .mask = mask + off[s0]};
    cb_bert_forward(m, a, &b);
    const float *out = cb_bert_output(m, a);
    int H = m->cfg.hidden_size;
    float worst = 0;
    for (size_t i = 0; i < (off[s1] - off[s0]) * (size_t)H; i++) {
        float d = fabsf(out[i] - ref[off[s0] * H + i]);
        if (!(d <= worst)) worst = d;  /* NaN counts as worst */
    }
    return worst;
}

int main(void) {
    const char *model_dir = test_env("COLBERT_MODEL");
    const char *ref_dir = test_env("COLBERT_REF");
    char path[4096];
    snprintf(path, sizeof path, "%s/bert_ref.safetensors", ref_dir);
    cb_err err = {{0}};
    st_file ref;
    if (cb_st_open(&ref, path, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    size_t n_tok, n_seq, n_mask, n_hid;
    const int32_t *ids = raw(&ref, "ids", &n_tok);
    const int32_t *lens = raw(&ref, "lengths", &n_seq);
    const int32_t *mask32 = raw(&ref, "mask", &n_mask);
    const float *hid = raw(&ref, "hidden", &n_hid);

    bert_model m;
    ops_device *dev = cb_ops_cpu();
    if (cb_bert_load(&m, dev, model_dir, &err)) { fprintf(stderr, "%s\n", err.msg); return 2; }
    int H = m.cfg.hidden_size;
    CHECK(n_hid == n_tok * (size_t)H && n_mask == n_tok);
    uint8_t *mask = malloc(n_tok);
    size_t *off = malloc((n_seq + 1) * sizeof(size_t));
    size_t att = 0;
    off[0] = 0;
    int longest = 0, over256 = 0;
    for (size_t s = 0; s < n_seq; s++) {
        off[s + 1] = off[s] + (size_t)lens[s];
        att += (size_t)lens[s] * (size_t)lens[s];
        if (lens[s] > longest) longest = lens[s];
        over256 += lens[s] > 256;
    }
    for (size_t i = 0; i < n_tok; i++) mask[i] = (uint8_t)mask32[i];
    CHECK_MSG(n_seq >= 16 && over256 >= 2, "need >= 16 sequences, some over 256 tokens (%zu, %d)", n_seq, over256);

    /* 1. everything in one packed batch */
    bert_acts a;
    CHECK(cb_bert_acts_init(&a, dev, &m.cfg, (int)n_tok, att, 0, &err) == 0);
    float d_all = run_range(&m, &a, ids, lens, mask, hid, off, 0, (int)n_seq);
    printf("test_bert: %zu sequences (%zu tokens, longest %d, %d over 256) in one batch: "
           "max abs diff %.3g\n", n_seq, n_tok, longest, over256, d_all);
    CHECK_MSG(d_all <= 1e-4f, "max abs diff %g > 1e-4", d_all);

    /* 2. one sequence at a time: packing must not change any number beyond
     * float noise (training mode buffers, to cover that layout too) */
    bert_acts a2;
    CHECK(cb_bert_acts_init(&a2, dev, &m.cfg, longest, (size_t)longest * longest, 1, &err) == 0);
    a2.p_hidden = a2.p_att = 0;  /* parity runs without dropout */
    float d_one = 0;
    for (size_t s = 0; s < n_seq; s++) {
        float d = run_range(&m, &a2, ids, lens, mask, hid, off, (int)s, (int)s + 1);
        if (d > d_one) d_one = d;
    }
    printf("test_bert: one sequence per batch (train layout): max abs diff %.3g\n", d_one);
    CHECK_MSG(d_one <= 1e-4f, "max abs diff %g > 1e-4", d_one);

    /* 3. kernels on small known values */
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 1, 1}, bb[4] = {0, 0, 0, 0}, y[4], mean, rstd;
    cb_ops_layernorm_forward(dev, y, &mean, &rstd, x, w, bb, 1, 4, 0);
    CHECK(fabsf(mean - 2.5f) < 1e-6f && fabsf(y[0] + 1.3416408f) < 1e-5f);
    float g_in[3] = {-1, 0, 1}, g[3];
    cb_ops_gelu_forward(dev, g, g_in, 3);
    CHECK(fabsf(g[0] + 0.15865525f) < 1e-6f && g[1] == 0 && fabsf(g[2] - 0.84134475f) < 1e-6f);

    cb_bert_acts_free(&a);
    cb_bert_acts_free(&a2);
    cb_bert_free(&m);
    cb_st_close(&ref);
    free(mask);
    free(off);
    return test_finish("test_bert");
}
