/* test_device.c: what the GPU path relies on that the CPU can check (no GPU
 * needed; all-MiniLM-L6-v2 from $COLBERT_MODEL):
 *   - every activation slice (bert.h) and every buffer of the training
 *     step (step.h) starts 64-byte aligned (the CPU allocation's alignment;
 *     256 on a GPU) whatever max_tokens is, odd ones included: the CUDA
 *     attention loads float4s and asserts 16-byte alignment;
 *   - cb_step_check_device refuses a GPU under mpirun (ranks > 1) with a
 *     message that says why and what to do, and accepts the CPU.
 * Prints "test_device: N passed, N failed". */
#include "test.h"
#include "backbone.h"
#include "bert.h"
#include "colbert.h"
#include "model.h"
#include "step.h"
#include "tokenizer.h"

#include <stdint.h>

static int aligned(const void *p) { return ((uintptr_t)p & 63) == 0; }

/* every slice of acts, and each layer's, 64-byte aligned */
static void check_acts(const bert_acts *a, int L, const char *what) {
    struct { const char *name; const float *p; size_t stride; } s[] = {
        {"emb", a->emb, 0},          {"emb_mean", a->emb_mean, 0}, {"emb_rstd", a->emb_rstd, 0},
        {"emb_out", a->emb_out, 0},  {"qkv", a->qkv, a->stride_T3H}, {"ctx", a->ctx, a->stride_TH},
        {"res1", a->res1, a->stride_TH}, {"ln1", a->ln1, a->stride_TH}, {"res2", a->res2, a->stride_TH},
        {"ln2", a->ln2, a->stride_TH}, {"ffh", a->ffh, a->stride_TI}, {"ffg", a->ffg, 0},
        {"ln1_mean", a->ln1_mean, a->stride_T}, {"ln1_rstd", a->ln1_rstd, a->stride_T},
        {"ln2_mean", a->ln2_mean, a->stride_T}, {"ln2_rstd", a->ln2_rstd, a->stride_T},
        {"d_x", a->d_x, 0}, {"d_y", a->d_y, 0}, {"d_ctx", a->d_ctx, 0}, {"d_qkv", a->d_qkv, 0}, {"d_ff", a->d_ff, 0},
    };
    int bad = 0, n = 0;
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        if (!s[i].p) continue;   /* the backward scratch in inference */
        for (int l = 0; l < (s[i].stride ? L : 1); l++) {
            n++;
            if (!aligned(s[i].p + (size_t)l * s[i].stride)) {
                bad++;
                fprintf(stderr, "  %s: %s of layer %d at %p\n", what, s[i].name, l,
                        (const void *)(s[i].p + (size_t)l * s[i].stride));
            }
        }
    }
    CHECK_MSG(bad == 0, "%s: %d of %d slices not 64-byte aligned", what, bad, n);
    printf("  %-40s %d slices, %d misaligned\n", what, n, bad);
}

static void test_acts(const char *model) {
    cb_err err = {{0}};
    bert_config c;
    if (cb_bert_config_load(&c, model, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    const int tokens[] = {1, 7, 33, 101, 321, 4097};
    for (size_t k = 0; k < sizeof tokens / sizeof tokens[0]; k++)
        for (int train = 0; train < 2; train++) {
            bert_acts a;
            CHECK(cb_bert_acts_init(&a, cb_ops_cpu(), &c, tokens[k], (size_t)tokens[k] * 16, train, &err) == 0);
            char what[96];
            snprintf(what, sizeof what, "activations, max_tokens %d%s", tokens[k], train ? ", training" : "");
            check_acts(&a, c.num_hidden_layers, what);
            cb_bert_acts_free(&a);
        }
}

/* a training step with an odd number of tokens (3 queries of 33, 6
 * documents of 37: 321); its buffers */
static void test_step_buffers(const char *model) {
    cb_err err = {{0}};
    backbone enc;
    colbert_vocab vocab;
    tokenizer *tok = cb_tokenizer_load(model, &err);
    if (!tok || cb_backbone_load(&enc, cb_ops_cpu(), model, &err) || cb_colbert_vocab_init(&vocab, tok, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        exit(2);
    }
    step_config c;
    memset(&c, 0, sizeof c);
    cb_colbert_config_default(&c.cc);
    c.cc.query_maxlen = 33;
    c.cc.doc_maxlen = 37;
    c.lc.nway = 2;
    c.lc.use_ib_negatives = 1;
    c.lc.accumsteps = 1;
    c.bsize = 3;
    c.lr = 1e-5;
    c.maxsteps = 10;
    step_state s;
    if (cb_step_init(&s, &enc, &vocab, NULL, 1, &c, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    /* the BERT family's activations behind the interface */
    check_acts((const bert_acts *)s.acts.impl, s.enc.info.layers, "step activations, 321 tokens");
    const struct { const char *name; const float *p; } b[] = {
        {"out", s.out}, {"proj", s.proj}, {"d_out", s.d_out}, {"norm", s.norm}, {"d_hidden", s.d_hidden},
        {"scores", s.scores}, {"d_scores", s.d_scores}, {"teacher", s.teacher}, {"g_dv", s.g_dv}, {"g_ddv", s.g_ddv},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++)
        if (!aligned(b[i].p)) {
            bad++;
            fprintf(stderr, "  step buffer %s at %p\n", b[i].name, (const void *)b[i].p);
        }
    CHECK_MSG(bad == 0, "step buffers: %d not 64-byte aligned", bad);
    printf("  %-40s %zu buffers, %d misaligned\n", "step buffers, 321 tokens", sizeof b / sizeof b[0], bad);
    cb_step_free(&s);
    cb_tokenizer_free(tok);
}

static void test_check_device(void) {
    cb_err err = {{0}};
    CHECK(cb_step_check_device("cuda", 2, &err) == -1);
    CHECK_MSG(strstr(err.msg, "mpirun") && strstr(err.msg, "--device cpu") && strstr(err.msg, "2 ranks"),
              "message: %s", err.msg);
    printf("  refused: %s\n", err.msg);
    memset(&err, 0, sizeof err);
    CHECK(cb_step_check_device("cuda:1", 4, &err) == -1 && strstr(err.msg, "cuda:1"));
    memset(&err, 0, sizeof err);
    CHECK(cb_step_check_device("cpu", 4, &err) == 0 && err.msg[0] == '\0');
    CHECK(cb_step_check_device("cuda", 1, &err) == 0 && err.msg[0] == '\0');
    CHECK(cb_step_check_device("cuda:0", 1, &err) == 0);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *model = test_env("COLBERT_MODEL");
    printf("-- cb_step_check_device\n");
    test_check_device();
    printf("-- alignment of the activations and the step's buffers\n");
    test_acts(model);
    test_step_buffers(model);
    return test_finish("test_device");
}
