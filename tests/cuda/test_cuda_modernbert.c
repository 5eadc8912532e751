/* test_cuda_modernbert.c: the ModernBERT arch (src/modernbert.c) on the CUDA
 * backend against the CPU backend, whole model, forward and backward. No
 * ModernBERT weights ship here and none are needed: the test writes a
 * random model directory (config.json + model.safetensors) of
 * ModernBERT-base's widths (hidden 768, 12 heads of 64, intermediate 1152)
 * and 3 layers (global, local, global), in two variants: local_attention
 * 128 (ModernBERT-base's window of 64) and 8 (a window of 4, so that rows
 * of the queries' masked padding see no key and take the uniform row).
 * A packed batch of 4 queries of 32 tokens ([MASK]-like padding masked
 * after 10) and 3 documents (65, 180, 300 tokens), training-mode
 * activations:
 *   - last hidden states: relative L2 error <= 1e-5 (fp32);
 *   - every parameter gradient of sum(out * R): relative L2 <= 1e-4;
 *   - the same with dropout on (embedding, attention and MLP 0.1: the
 *     masks are the CPU's, bit for bit), same tolerances.
 * Prints "test_cuda_modernbert: N passed, N failed", line-buffered. */
#include "test.h"
#include "backbone.h"
#include "fsutil.h"
#include "rng.h"
#include "safetensors.h"

#include <jansson.h>
#include <sys/stat.h>

#define H 768
#define NH 12
#define I 1152
#define L 3
#define V 1000

static ops_device *open_gpu(void) {
    const char *spec = getenv("COLBERT_DEVICE");
    if (!spec || !*spec || !strcmp(spec, "cpu") || !strcmp(spec, "auto")) spec = "cuda";
    cb_err err = {{0}};
    ops_device *d = cb_ops_open(spec, OPS_FP32, &err);
    if (!d || !strcmp(d->kind, "cpu")) {
        fprintf(stderr, "test_cuda_modernbert: cannot open %s: %s\n", spec, err.msg);
        exit(2);
    }
    return d;
}

static double rel_l2(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (!(num == num)) return INFINITY;
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* n floats: uniform in [-amp, amp] + base */
static float *rnd(rng *r, size_t n, float base, float amp) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        x[i] = base + amp * (float)(2.0 * ((double)(cb_rng_next(r) >> 11) * 0x1.0p-53) - 1.0);
    return x;
}

/* A random ModernBERT directory at dir. */
static void write_model(const char *dir, int local_attention, double dropout) {
    mkdir(dir, 0755);
    json_t *c = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:b, s:b, s:b, s:s, s:f, s:f, s:f}",
                          "model_type", "modernbert", "vocab_size", V, "hidden_size", H, "num_hidden_layers", L,
                          "num_attention_heads", NH, "intermediate_size", I, "max_position_embeddings", 8192,
                          "pad_token_id", 3, "local_attention", local_attention, "norm_eps", 1e-5, "norm_bias", 0,
                          "attention_bias", 0, "mlp_bias", 0, "hidden_activation", "gelu", "embedding_dropout",
                          dropout, "attention_dropout", dropout, "mlp_dropout", dropout);
    json_object_set_new(c, "layer_types", json_pack("[s, s, s]", "full_attention", "sliding_attention",
                                                    "full_attention"));
    json_object_set_new(c, "rope_parameters",
                        json_pack("{s:{s:s, s:f}, s:{s:s, s:f}}", "full_attention", "rope_type", "default",
                                  "rope_theta", 160000.0, "sliding_attention", "rope_type", "default", "rope_theta",
                                  10000.0));
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    CB_ASSERT(json_dump_file(c, path, 0) == 0);
    json_decref(c);
    rng r;
    cb_rng_init(&r, 2027, 1);
    st_wtensor w[3 + 6 * L];
    char names[3 + 6 * L][96];
    float *data[3 + 6 * L];
    int k = 0;
#define T2(nm, d0, d1, base, amp)                                                                      \
    do {                                                                                               \
        snprintf(names[k], sizeof names[k], "%s", nm);                                                 \
        data[k] = rnd(&r, (size_t)(d0) * (size_t)((d1) ? (d1) : 1), base, amp);                        \
        w[k] = (st_wtensor){names[k], ST_F32, (d1) ? 2 : 1, {(d0), (d1)}, data[k]};                    \
        k++;                                                                                           \
    } while (0)
    T2("embeddings.tok_embeddings.weight", V, H, 0.0f, 0.05f);
    T2("embeddings.norm.weight", H, 0, 1.0f, 0.2f);
    for (int l = 0; l < L; l++) {
        char n[96];
        if (l > 0) {
            snprintf(n, sizeof n, "layers.%d.attn_norm.weight", l);
            T2(n, H, 0, 1.0f, 0.2f);
        }
        snprintf(n, sizeof n, "layers.%d.attn.Wqkv.weight", l);
        T2(n, 3 * H, H, 0.0f, 0.05f);
        snprintf(n, sizeof n, "layers.%d.attn.Wo.weight", l);
        T2(n, H, H, 0.0f, 0.03f);
        snprintf(n, sizeof n, "layers.%d.mlp_norm.weight", l);
        T2(n, H, 0, 1.0f, 0.2f);
        snprintf(n, sizeof n, "layers.%d.mlp.Wi.weight", l);
        T2(n, 2 * I, H, 0.0f, 0.05f);
        snprintf(n, sizeof n, "layers.%d.mlp.Wo.weight", l);
        T2(n, H, I, 0.0f, 0.03f);
    }
    T2("final_norm.weight", H, 0, 1.0f, 0.2f);
#undef T2
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cb_err err = {{0}};
    CHECK_MSG(cb_st_write(path, w, k, &err) == 0, "%s", err.msg);
    for (int i = 0; i < k; i++) free(data[i]);
}

/* The batch: 4 queries of 32 (kept: the first 10), documents of 65, 180, 300 */
#define S 7
static const int lens[S] = {32, 32, 32, 32, 65, 180, 300};

/* Forward and backward of the batch on device d: the outputs and the
 * gradients (host copies; caller frees). */
static void run(ops_device *d, const char *dir, int dropout, float **out, float **grads, size_t *n_params,
                backbone_named **names, int *n_names) {
    cb_err err = {{0}};
    backbone b;
    if (cb_backbone_load(&b, d, dir, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    int T = 0;
    size_t att = 0;
    for (int s = 0; s < S; s++) T += lens[s], att += (size_t)lens[s] * lens[s];
    int32_t *ids = malloc(T * sizeof(int32_t));
    uint8_t *mask = malloc(T);
    uint64_t seq_id[S];
    for (int s = 0, t = 0; s < S; s++) {
        seq_id[s] = 11 + 3 * (uint64_t)s;
        for (int i = 0; i < lens[s]; i++, t++) {
            ids[t] = (int32_t)((t * 7919 + 13) % V);
            mask[t] = (uint8_t)(s >= 4 || i < 10);
        }
    }
    backbone_acts a;
    if (cb_backbone_acts_init(&a, &b, T, att, 1, &err)) { fprintf(stderr, "%s\n", err.msg); exit(2); }
    if (!dropout) a.p_hidden = a.p_att = 0;
    a.seed = 4242;
    backbone_batch bb = {.n_seq = S, .seq_len = lens, .ids = ids, .mask = mask, .seq_id = seq_id};
    cb_backbone_forward(&b, &a, &bb);
    size_t n = (size_t)T * H;
    *out = malloc(n * sizeof(float));
    cb_ops_download(d, *out, cb_backbone_output(&b, &a), n * sizeof(float));
    float *R = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) R[i] = (float)sin(0.001 * (double)(i % 100003) + 0.3);
    float *dR = cb_ops_alloc(d, n * sizeof(float), "d_out", &err);
    float *dg = cb_ops_alloc(d, b.info.n_params * sizeof(float), "gradients", &err);
    CB_ASSERT(dR && dg);
    cb_ops_upload(d, dR, R, n * sizeof(float));
    cb_ops_zero(d, dg, b.info.n_params * sizeof(float));
    cb_backbone_backward(&b, &a, dg, dR);
    *n_params = b.info.n_params;
    *grads = malloc(b.info.n_params * sizeof(float));
    cb_ops_download(d, *grads, dg, b.info.n_params * sizeof(float));
    *n_names = cb_backbone_named_count(&b);
    *names = malloc((size_t)*n_names * sizeof **names);
    cb_backbone_named_tensors(&b, *names);
    cb_ops_free(d, dR);
    cb_ops_free(d, dg);
    cb_backbone_acts_free(&a);
    cb_backbone_free(&b);
    free(R);
    free(ids);
    free(mask);
}

static void compare(ops_device *g, const char *dir, const char *what, int dropout) {
    float *oc, *og, *gc, *gg;
    size_t nc, ng;
    backbone_named *names, *names2;
    int nt, nt2;
    run(cb_ops_cpu(), dir, dropout, &oc, &gc, &nc, &names, &nt);
    run(g, dir, dropout, &og, &gg, &ng, &names2, &nt2);
    CHECK(nc == ng && nt == nt2);
    int T = 0;
    for (int s = 0; s < S; s++) T += lens[s];
    double e = rel_l2(og, oc, (size_t)T * H);
    printf("  %s%s: hidden states rel L2 %.2e\n", what, dropout ? ", dropout 0.1" : "", e);
    CHECK_MSG(e <= 1e-5, "%s: hidden states rel L2 %g", what, e);
    double worst = 0;
    const char *wn = "";
    for (int i = 0; i < nt; i++) {
        double ei = rel_l2(gg + names[i].offset, gc + names[i].offset, names[i].n);
        CHECK_MSG(ei <= 1e-4, "%s: gradient of %s rel L2 %g", what, names[i].name, ei);
        if (!(ei <= worst)) worst = ei, wn = names[i].name;
    }
    printf("  %s%s: %d gradients, worst %s rel L2 %.2e\n", what, dropout ? ", dropout 0.1" : "", nt, wn, worst);
    free(oc); free(og); free(gc); free(gg); free(names); free(names2);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    ops_device *g = open_gpu();
    printf("test_cuda_modernbert: %s\n", g->desc);
    char base[] = "/tmp/cb-modernbert-XXXXXX";
    if (!mkdtemp(base)) { perror("mkdtemp"); return 2; }
    char d64[4096], d4[4096], dd[4096];
    snprintf(d64, sizeof d64, "%s/window64", base);
    snprintf(d4, sizeof d4, "%s/window4", base);
    snprintf(dd, sizeof dd, "%s/dropout", base);
    write_model(d64, 128, 0.0);
    write_model(d4, 8, 0.0);
    write_model(dd, 8, 0.1);
    double t0 = cb_now();
    compare(g, d64, "local_attention 128", 0);
    compare(g, d4, "local_attention 8", 0);
    compare(g, dd, "local_attention 8", 1);
    printf("test_cuda_modernbert: %.1f s\n", cb_now() - t0);
    cb_remove_tree(base, NULL);
    cb_ops_close(g);
    return test_finish("test_cuda_modernbert");
}
