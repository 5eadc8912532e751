/* bench_step: ColBERT training-step throughput and memory, colbert.c side.
 * usage: bench_step MODEL_DIR DOCS.txt QUERIES.txt [--base] [--steps N] [--ib-local] [--bsize N]
 *                   [--device D] [--precision bf16|fp32]
 * On the CPU, or the device --device names (ops.h; bench/bench_gpu_step.sh).
 * Under mpirun (bench/bench_mpi.sh) the ranks share each batch (step.h)
 * and the line adds the ranks, the seconds per step in collectives and the
 * bytes each rank sent into them per step.
 *   MODEL_DIR  all-MiniLM-L6-v2 (weights and tokenizer); with --base a
 *              BERT-base-shaped model (12 layers, 768 hidden, 12 heads, 3072
 *              intermediate) with random weights and the same tokenizer
 *   DOCS/QUERIES  real NFCorpus texts, one a line
 * bsize 32 (--bsize), nway 2, query_maxlen 32, doc_maxlen 256, in-batch negatives,
 * dropout on. Prints one JSON line: triplets/s, step seconds, forward and
 * backward seconds, achieved GFLOP/s of the encoder, bytes allocated.
 * bench/bench_step.py runs it beside PyTorch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "bert.h"
#include "colbert.h"
#include "comm.h"
#include "model.h"
#include "step.h"
#include "tokenizer.h"

int cli_read_lines(const char *path, char **buf, char ***lines, size_t **lens, cb_err *err);

static long peak_rss(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss * 1024L;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: bench_step MODEL_DIR DOCS.txt QUERIES.txt [--base] [--steps N] [--ib-local] "
                "[--bsize N] [--device D] [--precision bf16|fp32]\n");
        return 2;
    }
    int base = 0, steps = 3, ib_local = 0, bsize = 32;
    const char *device = "cpu";
    ops_precision precision = OPS_BF16;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--base")) base = 1;
        else if (!strcmp(argv[i], "--ib-local")) ib_local = 1;
        else if (!strcmp(argv[i], "--bsize") && i + 1 < argc) bsize = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc && !cb_ops_precision_parse(argv[i + 1], &precision)) i++;
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
    }
    cb_err err = {{0}};
    cb_comm *comm = cb_comm_init(&argc, &argv, &err);
    if (!comm) { fprintf(stderr, "%s\n", err.msg); return 1; }
    int P = comm->size, R = comm->rank;
    if (bsize < 1 || bsize > 4096 || bsize % P) { fprintf(stderr, "bench_step: --bsize 1 .. 4096, a multiple of the ranks\n"); return 2; }
    ops_device *dev = cb_ops_open(device, precision, &err);
    if (!dev) { fprintf(stderr, "%s\n", err.msg); return 1; }
    tokenizer *tok = cb_tokenizer_load(argv[1], &err);
    if (!tok) { fprintf(stderr, "%s\n", err.msg); return 1; }
    bert_model bert;
    if (!base) {
        if (cb_bert_load(&bert, dev, argv[1], &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    } else {
        memset(&bert, 0, sizeof bert);
        if (cb_bert_config_load(&bert.cfg, argv[1], &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
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
    }
    size_t nparams = bert.n_params;
    backbone enc;
    if (cb_bert_to_backbone(&enc, &bert, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
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
    c.cc.doc_maxlen = 256;
    c.lc.nway = 2; c.lc.use_ib_negatives = 1; c.lc.distillation_alpha = 1; c.lc.accumsteps = 1;
    c.bsize = bsize; c.lr = 5e-6; c.warmup = 0; c.maxsteps = 1000; c.dropout = 1; c.seed = 1;
    c.comm = comm; c.ib_local = ib_local;
    step_state s;
    if (cb_step_init(&s, &enc, &vocab, NULL, 7, &c, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    int Lq = 32;
    int32_t *q_ids = malloc((size_t)bsize * Lq * sizeof(int32_t)), *d_ids = malloc((size_t)2 * bsize * 256 * sizeof(int32_t));
    uint8_t *q_mask = malloc((size_t)bsize * Lq);
    int *d_len = malloc((size_t)2 * bsize * sizeof(int)), *d_off = malloc((size_t)(2 * bsize + 1) * sizeof(int));
    double t_total = 0, tokens = 0, t_comm = 0;
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
        double t0 = cb_now();
        cb_step_micro(&s, &b, NULL);
        cb_step_update(&s, NULL);
        cb_ops_sync(dev);   /* on a GPU the update is only queued: time its work */
        double dt = cb_now() - t0;
        cb_comm_allreduce(comm, &dt, 1, COMM_F64, COMM_MAX);   /* the slowest rank's */
        if (it > 0) { t_total += dt; tokens += d_off[d1] - d_off[d0] + nq_r * Lq; }
    }
    t_comm = s.t_comm;
    comm_bytes = s.comm_bytes;
    cb_comm_allreduce(comm, &tokens, 1, COMM_F64, COMM_SUM);
    /* encoder FLOPs: 2 * tokens * non-embedding weights forward, 2x that backward */
    const backbone_info *bi = &cb_step_backbone(&s)->info;
    double w = (double)bi->layers * (4.0 * bi->hidden * bi->hidden + 2.0 * bi->hidden * bi->intermediate);
    double flops = 6.0 * w * tokens;
    if (!R)
        printf("{\"model\": \"%s\", \"device\": \"%s\", \"bsize\": %d, \"params\": %zu, \"steps\": %d, \"ranks\": %d, \"step_s\": %.4f, "
               "\"triplets_per_s\": %.3f, \"forward_s\": %.4f, \"backward_s\": %.4f, \"attention_s\": %.4f, "
               "\"maxsim_s\": %.4f, \"comm_s\": %.4f, \"comm_bytes\": %zu, \"encoder_gflops\": %.1f, \"dense_gflops\": %.1f, "
               "\"bytes\": %zu, \"peak_bytes\": %ld}\n",
               base ? "bert-base (random)" : "all-MiniLM-L6-v2", dev->desc, bsize, nparams, steps, P, t_total / steps,
               (double)bsize * steps / t_total, s.t_fwd / steps, s.t_bwd / steps, s.t_attn / steps, s.t_sim / steps, t_comm / steps,
               comm_bytes / (size_t)steps, flops / t_total / 1e9, flops / P / (s.t_fwd + s.t_bwd - s.t_attn) / 1e9,
               s.bytes, peak_rss());
    cb_step_free(&s);
    cb_tokenizer_free(tok);
    free(q_ids); free(d_ids); free(q_mask); free(d_len); free(d_off);
    cb_ops_close(dev);
    cb_comm_finalize(comm);
    return 0;
}
