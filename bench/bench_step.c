/* bench_step: ColBERT training-step throughput and memory, colbert.c side.
 * usage: bench_step MODEL_DIR DOCS.txt QUERIES.txt [--base] [--steps N] [--ib-local] [--bsize N]
 *                   [--doc-maxlen N] [--device D] [--precision bf16|fp32]
 * On the CPU, or the device --device names (ops.h; bench/bench_gpu_step.sh).
 * Under mpirun (bench/bench_mpi.sh) the ranks share each batch (step.h)
 * and the line adds the ranks, the seconds per step in collectives and the
 * bytes each rank sent into them per step.
 *   MODEL_DIR  a model directory of any backbone.h family, loaded through
 *              cb_backbone_load (all-MiniLM-L6-v2; bench_step.py's
 *              ModernBERT-base-shaped one, whose tokenizer already has the
 *              "[Q] " / "[D] " markers); with --base (a BERT directory only)
 *              a BERT-base-shaped model (12 layers, 768 hidden, 12 heads, 3072
 *              intermediate) with random weights and the same tokenizer
 *   DOCS/QUERIES  real NFCorpus texts, one a line
 * bsize 32 (--bsize), nway 2, query_maxlen 32, doc_maxlen 256 (--doc-maxlen),
 * in-batch negatives, dropout as config.json says. Prints one JSON line:
 * triplets/s, step seconds (mean; and the median of the steps' wall and
 * process CPU seconds), forward and backward seconds, achieved GFLOP/s of
 * the encoder, bytes allocated.
 * bench/bench_step.py runs it beside PyTorch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include "bert.h"
#include "blas.h"
#include "colbert.h"
#include "comm.h"
#include "model.h"
#include "step.h"
#include "tokenizer.h"

int cli_read_lines(const char *path, char **buf, char ***lines, size_t **lens, cb_err *err);

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_f64(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_f64);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static long peak_rss(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024L;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench_step MODEL_DIR DOCS.txt QUERIES.txt [--base] [--steps N] [--ib-local] "
                "[--bsize N] [--doc-maxlen N] [--device D] [--precision bf16|fp32]\n");
        return 2;
    }
    /* first, as the CLI does: OpenBLAS on a CPU it does not know runs its
     * Prescott kernels; this re-runs the program with the right ones */
    cb_blas_init(argc, argv);
    int base = 0, steps = 3, ib_local = 0, bsize = 32, doc_maxlen = 256;
    const char *device = "cpu";
    ops_precision precision = OPS_BF16;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--base")) base = 1;
        else if (!strcmp(argv[i], "--ib-local")) ib_local = 1;
        else if (!strcmp(argv[i], "--bsize") && i + 1 < argc) bsize = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--doc-maxlen") && i + 1 < argc) doc_maxlen = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc && !cb_ops_precision_parse(argv[i + 1], &precision)) i++;
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
    }
    cb_err err = {{0}};
    cb_comm *comm = cb_comm_init(&argc, &argv, &err);
    if (!comm) { fprintf(stderr, "%s\n", err.msg); return 1; }
    int P = comm->size, R = comm->rank;
    if (bsize < 1 || bsize > 4096 || bsize % P) { fprintf(stderr, "bench_step: --bsize 1 .. 4096, a multiple of the ranks\n"); return 2; }
    if (steps < 1 || doc_maxlen < 8 || doc_maxlen > 8192) { fprintf(stderr, "bench_step: --steps >= 1, --doc-maxlen 8 .. 8192\n"); return 2; }
    ops_device *dev = cb_ops_open(device, precision, &err);
    if (!dev) { fprintf(stderr, "%s\n", err.msg); return 1; }
    tokenizer *tok = cb_tokenizer_load(argv[1], &err);
    if (!tok) { fprintf(stderr, "%s\n", err.msg); return 1; }
    backbone enc;
    if (!base) {   /* any family, as the trainer loads it */
        if (cb_backbone_load(&enc, dev, argv[1], &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    } else {
        bert_model bert;
        memset(&bert, 0, sizeof bert);
        if (cb_bert_config_load(&bert.cfg, argv[1], &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
        if (bert.cfg.model_type[0] && strcmp(bert.cfg.model_type, "bert")) {
            fprintf(stderr, "bench_step: --base makes a BERT-base shape from a BERT directory; %s is '%s'\n", argv[1],
                    bert.cfg.model_type);
            return 2;
        }
        bert.cfg.hidden_size = 768; bert.cfg.num_hidden_layers = 12; bert.cfg.num_attention_heads = 12;
        bert.cfg.intermediate_size = 3072;
        cb_bert_param_sizes(&bert.cfg, bert.sizes);
        for (int i = 0; i < BP_COUNT; i++) bert.n_params += bert.sizes[i];
        /* random weights, written on the host and uploaded like cb_bert_load */
        float *host = malloc(bert.n_params * sizeof(float));
        uint64_t x = 1;
        for (size_t i = 0; i < bert.n_params; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            host[i] = ((float)(x >> 40) / 16777216.0f - 0.5f) * 0.04f;
        }
        size_t o_ln1 = 0, o_ln2 = 0, o_emb = 0, o = 0;
        for (int i = 0; i < BP_COUNT; i++) {
            if (i == BP_LN1_W) o_ln1 = o;
            if (i == BP_LN2_W) o_ln2 = o;
            if (i == BP_EMB_LN_W) o_emb = o;
            o += bert.sizes[i];
        }
        for (int i = 0; i < 12 * 768; i++) host[o_ln1 + i] = host[o_ln2 + i] = 1;
        for (int i = 0; i < 768; i++) host[o_emb + i] = 1;
        bert.dev = dev;
        float *dp = cb_ops_alloc(bert.dev, bert.n_params * sizeof(float), "parameters", &err);
        if (!dp) { fprintf(stderr, "%s\n", err.msg); return 1; }
        cb_ops_upload(bert.dev, dp, host, bert.n_params * sizeof(float));
        free(host);
        cb_bert_bind(&bert, dp);
        bert.owned = 1;
        if (cb_bert_to_backbone(&enc, &bert, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    }
    size_t nparams = enc.info.n_params;
    char model_name[160];
    if (base) snprintf(model_name, sizeof model_name, "bert-base (random)");
    else {   /* the directory's last component and the family */
        char d[128];
        snprintf(d, sizeof d, "%s", argv[1]);
        size_t n = strlen(d);
        while (n > 1 && d[n - 1] == '/') d[--n] = '\0';
        const char *slash = strrchr(d, '/');
        snprintf(model_name, sizeof model_name, "%s (%s)", slash ? slash + 1 : d, enc.info.family);
        for (char *p = model_name; *p; p++) if (*p == '"' || *p == '\\' || *p == '/') *p = '_';
    }
    char *dbuf, **docs, *qbuf, **qs;
    size_t *dlen, *qlen;
    int nd = cli_read_lines(argv[2], &dbuf, &docs, &dlen, &err);
    int nq = cli_read_lines(argv[3], &qbuf, &qs, &qlen, &err);
    if (nd < 2 * bsize || nq < bsize) { fprintf(stderr, "need >= %d docs and %d queries\n", 2 * bsize, bsize); return 1; }

    colbert_vocab vocab;
    if (cb_colbert_vocab_init(&vocab, tok, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    step_config c;
    memset(&c, 0, sizeof c);
    cb_colbert_config_default(&c.cc);
    c.cc.doc_maxlen = doc_maxlen;
    c.lc.nway = 2; c.lc.use_ib_negatives = 1; c.lc.distillation_alpha = 1; c.lc.accumsteps = 1;
    c.bsize = bsize; c.lr = 5e-6; c.warmup = 0; c.maxsteps = 1000; c.dropout = 1; c.seed = 1;
    c.comm = comm; c.ib_local = ib_local;
    step_state s;
    if (cb_step_init(&s, &enc, &vocab, NULL, 7, &c, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    int Lq = 32;
    int32_t *q_ids = malloc((size_t)bsize * Lq * sizeof(int32_t)), *d_ids = malloc((size_t)2 * bsize * doc_maxlen * sizeof(int32_t));
    uint8_t *q_mask = malloc((size_t)bsize * Lq);
    int *d_len = malloc((size_t)2 * bsize * sizeof(int)), *d_off = malloc((size_t)(2 * bsize + 1) * sizeof(int));
    double t_total = 0, tokens = 0, t_comm = 0;
    double *wall = malloc((size_t)steps * sizeof(double)), *cpu = malloc((size_t)steps * sizeof(double));
    size_t comm_bytes = 0;
    int nq_r = bsize / P;   /* this rank's share of the batch */
    for (int it = 0; it <= steps; it++) {  /* step 0 is warm-up */
        int T = 0;
        for (int q = 0; q < bsize; q++) {
            int qi = (it * bsize + q) % nq;
            cb_colbert_query_ids(q_ids + q * Lq, q_mask + q * Lq, &vocab, tok, qs[qi], qlen[qi], &c.cc);
        }
        for (int d = 0; d < 2 * bsize; d++) {
            int di = (it * 2 * bsize + d) % nd;
            d_off[d] = T;
            d_len[d] = cb_colbert_doc_ids(d_ids + T, &vocab, tok, docs[di], dlen[di], &c.cc);
            T += d_len[d];
        }
        d_off[2 * bsize] = T;
        int d0 = R * nq_r * 2, d1 = d0 + nq_r * 2;
        step_batch b = {.nq = nq_r, .q_ids = q_ids + R * nq_r * Lq, .q_mask = q_mask + R * nq_r * Lq,
                        .d_ids = d_ids + d_off[d0], .d_len = d_len + d0};
        if (it == 1) s.t_fwd = s.t_bwd = s.t_attn = s.t_comm = s.t_sim = 0, s.comm_bytes = 0;
        cb_comm_barrier(comm);
        double t0 = cb_now(), c0 = cpu_now();
        cb_step_micro(&s, &b, NULL);
        cb_step_update(&s, NULL);
        cb_ops_sync(dev);   /* on a GPU the update is only queued: time its work */
        double dt = cb_now() - t0, dc = cpu_now() - c0;
        cb_comm_allreduce(comm, &dt, 1, COMM_F64, COMM_MAX);   /* the slowest rank's */
        if (it > 0) { t_total += dt; tokens += d_off[d1] - d_off[d0] + nq_r * Lq; wall[it - 1] = dt; cpu[it - 1] = dc; }
    }
    t_comm = s.t_comm;
    comm_bytes = s.comm_bytes;
    cb_comm_allreduce(comm, &tokens, 1, COMM_F64, COMM_SUM);
    /* encoder FLOPs: 2 * tokens * non-embedding weights forward, 2x that
     * backward; ModernBERT's GeGLU has Wi [2I, H] and Wo [H, I]: 3 H I */
    const backbone_info *bi = &cb_step_backbone(&s)->info;
    double mlp = strcmp(bi->family, "modernbert") ? 2.0 : 3.0;
    double w = (double)bi->layers * (4.0 * bi->hidden * bi->hidden + mlp * bi->hidden * bi->intermediate);
    double flops = 6.0 * w * tokens;
    double wall_med = median(wall, steps), cpu_med = median(cpu, steps);   /* cpu: this rank's process */
    if (!R)
        printf("{\"model\": \"%s\", \"device\": \"%s\", \"bsize\": %d, \"doc_maxlen\": %d, \"params\": %zu, \"steps\": %d, "
               "\"ranks\": %d, \"step_s\": %.4f, \"step_s_median\": %.4f, \"cpu_s_median\": %.4f, "
               "\"triplets_per_s\": %.3f, \"forward_s\": %.4f, \"backward_s\": %.4f, \"attention_s\": %.4f, "
               "\"tokens_per_step\": %.1f, \"maxsim_s\": %.4f, \"comm_s\": %.4f, \"comm_bytes\": %zu, \"encoder_gflops\": %.1f, \"dense_gflops\": %.1f, "
               "\"bytes\": %zu, \"peak_bytes\": %ld}\n",
               model_name, dev->desc, bsize, doc_maxlen, nparams, steps, P, t_total / steps, wall_med, cpu_med,
               (double)bsize * steps / t_total, s.t_fwd / steps, s.t_bwd / steps, s.t_attn / steps, tokens / steps, s.t_sim / steps, t_comm / steps,
               comm_bytes / (size_t)steps, flops / t_total / 1e9, flops / P / (s.t_fwd + s.t_bwd - s.t_attn) / 1e9,
               s.bytes, peak_rss());
    cb_step_free(&s);
    cb_tokenizer_free(tok);
    free(wall); free(cpu);
    free(q_ids); free(d_ids); free(q_mask); free(d_len); free(d_off);
    cb_ops_close(dev);
    cb_comm_finalize(comm);
    return 0;
}
