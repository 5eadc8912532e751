/* step.c: one ColBERT training step, as a sequence of compute-interface
 * operations (ops.h) on the step's device. See step.h. */
#include "step.h"
#include "rng.h"

#include <string.h>

int cb_step_check_device(const char *dev, int ranks, cb_err *err) {
    if (ranks > 1 && dev && strncmp(dev, "cuda", 4) == 0)
        return cb_err_set(err, "device %s with %d ranks: data-parallel training (mpirun) runs on CPUs only for now; "
                          "a GPU's buffers cannot go through the host MPI collectives and every rank would open "
                          "the same GPU (HINT: train on one GPU without mpirun, or under mpirun with --device cpu)",
                          dev, ranks);
    return 0;
}

/* a timer that counts the device's work, not the launches: on a GPU it
 * waits for the queued work first (on the CPU, ops are synchronous) */
static double now_synced(ops_device *d) {
    cb_ops_sync(d);
    return cb_now();
}

int cb_step_init(step_state *s, backbone *enc, const colbert_vocab *vocab, const float *linear,
              uint64_t linear_seed, const step_config *c, cb_err *err) {
    memset(s, 0, sizeof *s);
    s->c = *c;
    const colbert_config *cc = &c->cc;
    int acc = c->lc.accumsteps > 0 ? c->lc.accumsteps : 1;
    if (c->bsize <= 0 || c->lc.nway < 1 || cc->dim <= 0 || cc->query_maxlen < 4 || cc->doc_maxlen < 3)
        return cb_err_set(err, "training configuration out of range: bsize %d, nway %d, dim %d, "
                          "query_maxlen %d, doc_maxlen %d", c->bsize, c->lc.nway, cc->dim,
                          cc->query_maxlen, cc->doc_maxlen);
    cb_comm *comm = c->comm ? c->comm : cb_comm_serial();
    int P = comm->size;
    if (cb_step_check_device(enc->dev->kind, P, err)) return -1;
    if (c->bsize % acc)
        return cb_err_set(err, "bsize %d is not a multiple of accumsteps %d", c->bsize, acc);
    if ((c->bsize / acc) % P)
        return cb_err_set(err, "a micro-batch of %d triples (bsize %d / accumsteps %d) does not split over %d "
                          "ranks (HINT: run a number of ranks that divides it)", c->bsize / acc, c->bsize, acc, P);
    if (cc->doc_maxlen > enc->info.max_len || cc->query_maxlen > enc->info.max_len)
        return cb_err_set(err, "doc_maxlen %d / query_maxlen %d exceed the model's %d positions",
                          cc->doc_maxlen, cc->query_maxlen, enc->info.max_len);
    s->vocab = *vocab;

    ops_device *d = s->dev = enc->dev;
    int H = s->H = enc->info.hidden, D = s->D = cc->dim;
    s->max_q = c->bsize / acc / P;
    s->comm = comm;
    s->gather = P > 1 && !c->ib_local && (c->lc.use_ib_negatives || c->lc.contrastive);

    /* parameters, gradients, moments: the encoder's block, then linear [D, H] */
    size_t nb = enc->info.n_params, nbytes;
    s->n = nb + (size_t)D * H;
    nbytes = s->n * sizeof(float);
    s->params = cb_ops_alloc(d, nbytes, "the parameters", err);
    s->grads = s->params ? cb_ops_alloc(d, nbytes, "the gradients", err) : NULL;
    s->m = s->grads ? cb_ops_alloc(d, nbytes, "AdamW's first moments", err) : NULL;
    s->v = s->m ? cb_ops_alloc(d, nbytes, "AdamW's second moments", err) : NULL;
    if (!s->v) goto fail;
    cb_ops_zero(d, s->grads, nbytes);
    cb_ops_zero(d, s->m, nbytes);
    cb_ops_zero(d, s->v, nbytes);
    s->enc = *enc;
    memset(enc, 0, sizeof *enc);  /* ownership moves here */
    cb_ops_copy(d, s->params, s->enc.params, nb * sizeof(float));
    cb_backbone_bind(&s->enc, s->params);
    s->linear = s->params + nb;
    s->g_linear = s->grads + nb;
    if (linear) {
        cb_ops_copy(d, s->linear, linear, (size_t)D * H * sizeof(float));
    } else {
        float *tmp = cb_malloc((size_t)D * H * sizeof(float), "the projection", err);
        if (!tmp) goto fail;
        cb_colbert_linear_init(tmp, linear_seed, s->enc.info.initializer_range, D, H);
        cb_ops_upload(d, s->linear, tmp, (size_t)D * H * sizeof(float));
        free(tmp);
    }
    s->bytes = 4 * nbytes;

    /* activations for the largest micro-batch */
    size_t Lq = (size_t)cc->query_maxlen, Ld = (size_t)cc->doc_maxlen, nq = (size_t)s->max_q;
    size_t nd = nq * (size_t)c->lc.nway;
    size_t T = nq * Lq + nd * Ld;
    size_t att = nq * Lq * Lq + nd * Ld * Ld;
    if (cb_backbone_acts_init(&s->acts, &s->enc, (int)T, att, 1, err)) goto fail;
    s->bytes += s->acts.bytes;
    /* the scores: this rank's queries against the documents they meet (with
     * ib_global all N ranks' documents, gathered: gd of them, gr rows) */
    loss_config lc = c->lc;
    lc.q_global = P * (int)nq;
    lc.ib_global = s->gather;
    size_t cols = (size_t)cb_loss_score_cols(&lc, (int)nq);
    size_t gd = s->gather ? (size_t)P * nd : nd, gr = s->gather ? gd * Ld : 0;
    /* every slice a multiple of 64 floats: each starts 256-byte aligned */
#define A64(n) (((size_t)(n) + 63) & ~(size_t)63)
    size_t nf = A64(T * D) * 3 + A64(T) + A64(T * H) + 2 * A64(nq * cols) + A64(nd) + 2 * A64(gr * D);
    size_t ni = nq * cols * Lq + nd + 1 + (s->gather ? gd + 1 : 0);
    size_t bytes = nf * sizeof(float) + ni * sizeof(int32_t) + T + gr;
    s->sim.bytes = cb_ops_maxsim_workspace(d, (int)Lq, s->gather ? gr : nd * Ld);
    s->buf = cb_ops_alloc(d, bytes, "the training step's buffers", err);
    s->sim.p = s->buf ? cb_ops_alloc(d, s->sim.bytes, "the MaxSim workspace", err) : NULL;
    if (!s->sim.p) goto fail;
    s->bytes += bytes + s->sim.bytes;
    float *p = s->buf;
    s->out = p; p += A64(T * D);
    s->proj = p; p += A64(T * D);
    s->d_out = p; p += A64(T * D);
    s->norm = p; p += A64(T);
    s->d_hidden = p; p += A64(T * H);
    s->scores = p; p += A64(nq * cols);
    s->d_scores = p; p += A64(nq * cols);
    s->teacher = p; p += A64(nd);
    s->g_dv = p; p += A64(gr * D);
    s->g_ddv = p; p += A64(gr * D);
#undef A64
    int32_t *ip = (int32_t *)p;
    s->argmax = ip; ip += nq * cols * Lq;
    s->d_off = (int *)ip; ip += nd + 1;
    s->g_d_off = s->gather ? (int *)ip : NULL; ip += s->gather ? gd + 1 : 0;
    s->keep = (uint8_t *)ip;
    s->g_keep = s->keep + T;
    /* host staging of a micro-batch */
    size_t ns = nq * (1 + (size_t)c->lc.nway);
    size_t hbytes = ns * sizeof(uint64_t) + T * sizeof(int32_t) + (ns + nd + 1) * sizeof(int) +
                    (s->gather ? (2 * gd + 1) * sizeof(int) : 0) + (size_t)P * sizeof(size_t) + 2 * T + gr;
    s->host = cb_malloc(hbytes, "the batch staging area", err);
    if (!s->host) goto fail;
    s->h_seq_id = s->host;
    s->h_counts = (size_t *)(s->h_seq_id + ns);
    s->h_ids = (int32_t *)(s->h_counts + P);
    s->h_seq_len = (int *)(s->h_ids + T);
    s->h_d_off = s->h_seq_len + ns;
    s->h_g_len = s->h_d_off + nd + 1;
    s->h_g_off = s->h_g_len + (s->gather ? gd : 0);
    s->h_mask = (uint8_t *)(s->h_g_off + (s->gather ? gd + 1 : 0));
    s->h_keep = s->h_mask + T;
    s->h_g_keep = s->h_keep + T;
    return 0;
fail:
    cb_step_free(s);   /* the caller still owns `enc` if it was not taken over yet */
    return -1;
}

void cb_step_free(step_state *s) {
    if (s->dev) {
        cb_ops_free(s->dev, s->params);
        cb_ops_free(s->dev, s->grads);
        cb_ops_free(s->dev, s->m);
        cb_ops_free(s->dev, s->v);
        cb_ops_free(s->dev, s->buf);
        cb_ops_free(s->dev, s->sim.p);
        cb_backbone_acts_free(&s->acts);
    }
    cb_backbone_free(&s->enc);
    free(s->host);
    memset(s, 0, sizeof *s);
}

/* Dropout ids of the micro-batch's sequences (queries, then documents):
 * from each triple's position g in the step's global batch, so that every
 * split of the batch over ranks gives a sequence the same id (ops.h). */
static void seq_ids(uint64_t *id, int first, int nq, int nway) {
    uint64_t per = 1 + (uint64_t)nway;
    for (int q = 0; q < nq; q++) id[q] = (uint64_t)(first + q) * per;
    for (int k = 0; k < nq * nway; k++) id[nq + k] = (uint64_t)(first + k / nway) * per + 1 + (uint64_t)(k % nway);
}

/* ib scope global: gather every rank's documents (lengths d_len [nd], keep
 * masks keep [TD], vectors dv [TD, D]) into h_g_len/h_g_off, g_keep, g_dv.
 * Returns the number of gathered documents; h_counts[r] = rank r's floats. */
static int gather_docs(step_state *s, const float *dv, const int *d_len, const uint8_t *keep, int nd, size_t TD) {
    cb_comm *c = s->comm;
    int P = c->size, D = s->D;
    double t0 = cb_now();
    for (int r = 0; r < P; r++) s->h_counts[r] = (size_t)nd;
    memcpy(s->h_g_len + (size_t)c->rank * nd, d_len, (size_t)nd * sizeof(int));
    cb_comm_allgatherv(c, s->h_g_len, s->h_g_len + (size_t)c->rank * nd, s->h_counts, COMM_I32);
    s->h_g_off[0] = 0;
    for (int k = 0; k < P * nd; k++) s->h_g_off[k + 1] = s->h_g_off[k] + s->h_g_len[k];
    for (int r = 0; r < P; r++) s->h_counts[r] = (size_t)(s->h_g_off[(r + 1) * nd] - s->h_g_off[r * nd]);
    CB_ASSERT(s->h_counts[c->rank] == TD);
    cb_comm_allgatherv(c, s->h_g_keep, keep, s->h_counts, COMM_U8);
    for (int r = 0; r < P; r++) s->h_counts[r] *= (size_t)D;
    cb_comm_allgatherv(c, s->g_dv, dv, s->h_counts, COMM_F32);
    cb_ops_upload(s->dev, s->g_keep, s->h_g_keep, (size_t)s->h_g_off[P * nd]);
    cb_ops_upload(s->dev, s->g_d_off, s->h_g_off, (size_t)(P * nd + 1) * sizeof(int));
    s->comm_bytes += (size_t)nd * sizeof(int) + TD + TD * D * sizeof(float);
    s->t_comm += cb_now() - t0;
    return P * nd;
}

float cb_step_micro(step_state *s, const step_batch *b, loss_parts *parts) {
    const step_config *c = &s->c;
    ops_device *d = s->dev;
    cb_comm *comm = s->comm;
    int Lq = c->cc.query_maxlen, nway = c->lc.nway, H = s->H, D = s->D;
    int nq = b->nq, nd = nq * nway;
    CB_ASSERT(nq > 0 && nq <= s->max_q);
    /* this micro-batch in the step's global batch: ranks in order, each nq */
    int first = s->step_q + comm->rank * nq;
    s->step_q += comm->size * nq;
    /* pack: queries first (Lq tokens each), then the documents */
    size_t TQ = (size_t)nq * Lq;
    memcpy(s->h_ids, b->q_ids, TQ * sizeof(int32_t));
    for (size_t i = 0; i < TQ; i++) s->h_mask[i] = c->cc.attend_to_mask_tokens ? 1 : b->q_mask[i];
    memset(s->h_keep, 1, TQ);
    for (int q = 0; q < nq; q++) s->h_seq_len[q] = Lq;
    s->h_d_off[0] = 0;
    for (int k = 0; k < nd; k++) {
        CB_ASSERT(b->d_len[k] > 0 && b->d_len[k] <= c->cc.doc_maxlen);
        s->h_seq_len[nq + k] = b->d_len[k];
        s->h_d_off[k + 1] = s->h_d_off[k] + b->d_len[k];
    }
    size_t TD = (size_t)s->h_d_off[nd], T = TQ + TD;
    CB_ASSERT(T <= (size_t)s->acts.max_tokens);
    memcpy(s->h_ids + TQ, b->d_ids, TD * sizeof(int32_t));
    memset(s->h_mask + TQ, 1, TD);
    cb_colbert_doc_keep(s->h_keep + TQ, b->d_ids, (int)TD, &s->vocab, c->cc.mask_punctuation);
    seq_ids(s->h_seq_id, first, nq, nway);
    cb_ops_upload(d, s->keep, s->h_keep, T);
    cb_ops_upload(d, s->d_off, s->h_d_off, (size_t)(nd + 1) * sizeof(int));
    if (b->teacher) cb_ops_upload(d, s->teacher, b->teacher, (size_t)nd * sizeof(float));

    /* encoder */
    s->acts.p_hidden = c->dropout ? s->enc.info.hidden_dropout : 0.0f;
    s->acts.p_att = c->dropout ? s->enc.info.attention_dropout : 0.0f;
    s->acts.seed = cb_rng_mix64(c->seed ^ cb_rng_mix64((uint64_t)s->t * 1000003ULL + (uint64_t)s->acts.seed));
    backbone_batch bb = {.n_seq = nq + nd, .seq_len = s->h_seq_len, .ids = s->h_ids, .mask = s->h_mask,
                         .seq_id = s->h_seq_id};
    double t0 = now_synced(d), a0 = s->acts.t_attn;
    cb_backbone_forward(&s->enc, &s->acts, &bb);
    s->t_fwd += now_synced(d) - t0;
    const float *hidden = cb_backbone_output(&s->enc, &s->acts);

    /* head, MaxSim (against the gathered documents with ib_global), loss */
    cb_colbert_head_forward(d, s->out, s->proj, s->norm, hidden, s->linear, s->keep, c->cc.relu, (int)T, H, D);
    const float *qv = s->out, *dv = s->out + TQ * D;
    loss_config lc = c->lc;
    lc.q_first = comm->rank * nq;
    lc.q_global = comm->size * nq;
    lc.ib_global = s->gather;
    int group = cb_loss_score_cols(&lc, nq) == nway ? nway : 0;
    const float *sdv = dv;
    int snd = nd;
    double ts = cb_now(), tc = s->t_comm;
    if (s->gather) {
        snd = gather_docs(s, dv, b->d_len, s->h_keep + TQ, nd, TD);
        sdv = s->g_dv;
        cb_ops_maxsim_forward(d, s->scores, s->argmax, qv, sdv, s->g_d_off, s->h_g_off, s->g_keep, 0, nq, snd, Lq,
                           D, &s->sim);
    } else {
        cb_ops_maxsim_forward(d, s->scores, s->argmax, qv, dv, s->d_off, s->h_d_off, s->keep + TQ, group, nq, nd, Lq,
                           D, &s->sim);
    }
    float loss = cb_ops_loss(d, s->d_scores, parts, s->scores, b->teacher ? s->teacher : NULL, &lc, nq);
    s->t_sim += now_synced(d) - ts - (s->t_comm - tc);

    /* backward: with ib_global the gathered documents' gradients are summed
     * over the ranks and each rank keeps its own (reduce-scatter) */
    t0 = cb_now();
    ts = t0;
    tc = s->t_comm;
    cb_ops_zero(d, s->d_out, T * D * sizeof(float));
    if (s->gather) {
        size_t gr = (size_t)s->h_g_off[snd];
        cb_ops_zero(d, s->g_ddv, gr * D * sizeof(float));
        cb_ops_maxsim_backward(d, s->d_out, s->g_ddv, s->d_scores, s->argmax, qv, sdv, 0, nq, snd, Lq, D);
        double t1 = cb_now();
        cb_comm_reduce_scatterv(comm, s->d_out + TQ * D, s->g_ddv, s->h_counts, COMM_F32);
        s->comm_bytes += gr * D * sizeof(float);
        s->t_comm += cb_now() - t1;
    } else {
        cb_ops_maxsim_backward(d, s->d_out, s->d_out + TQ * D, s->d_scores, s->argmax, qv, dv, group, nq, nd, Lq,
                            D);
    }
    s->t_sim += now_synced(d) - ts - (s->t_comm - tc);
    cb_ops_zero(d, s->d_hidden, T * H * sizeof(float));
    cb_colbert_head_backward(d, s->d_hidden, s->g_linear, s->d_out, s->out, s->proj, s->norm, hidden, s->linear,
                          s->keep, c->cc.relu, (int)T, H, D);
    cb_backbone_backward(&s->enc, &s->acts, s->grads, s->d_hidden);
    s->t_bwd += now_synced(d) - t0;
    s->t_attn += s->acts.t_attn - a0;
    return loss;
}

float cb_step_update(step_state *s, double *lr_used) {
    ops_device *d = s->dev;
    if (s->comm->size > 1) {   /* the losses are global means: the sum is the gradient */
        double t0 = cb_now();
        cb_comm_allreduce(s->comm, s->grads, s->n, COMM_F32, COMM_SUM);
        s->comm_bytes += s->n * sizeof(float);
        s->t_comm += cb_now() - t0;
    }
    s->step_q = 0;
    float norm = cb_ops_clip_grad_norm(d, s->grads, s->n, 2.0f);
    double lr = s->c.warmup >= 0 ? cb_optim_lr(s->c.lr, s->t, s->c.warmup, s->c.maxsteps) : s->c.lr;
    adamw_config ac = cb_adamw_default(lr);
    cb_ops_adamw(d, s->params, s->grads, s->m, s->v, s->n, &ac, s->t + 1);
    s->t++;
    cb_ops_zero(d, s->grads, s->n * sizeof(float));
    if (lr_used) *lr_used = lr;
    return norm;
}

void cb_step_encode(step_state *s, float *out, const int32_t *ids, const uint8_t *mask, const uint8_t *keep,
                 const int *len, int n) {
    ops_device *d = s->dev;
    int H = s->H, D = s->D;
    float ph = s->acts.p_hidden, pa = s->acts.p_att;
    s->acts.p_hidden = s->acts.p_att = 0.0f;
    size_t tok = 0;
    for (int i = 0; i < n;) {
        int j = i;
        size_t T = 0, att = 0;
        while (j < n && T + (size_t)len[j] <= (size_t)s->acts.max_tokens &&
               att + (size_t)len[j] * len[j] <= s->acts.max_att) {
            T += (size_t)len[j];
            att += (size_t)len[j] * len[j];
            j++;
        }
        CB_ASSERT(j > i);
        backbone_batch bb = {.n_seq = j - i, .seq_len = len + i, .ids = ids + tok, .mask = mask ? mask + tok : NULL};
        cb_backbone_forward(&s->enc, &s->acts, &bb);
        if (keep) cb_ops_upload(d, s->keep, keep + tok, T);
        cb_colbert_head_forward(d, s->out, s->proj, s->norm, cb_backbone_output(&s->enc, &s->acts), s->linear,
                             keep ? s->keep : NULL, s->c.cc.relu, (int)T, H, D);
        cb_ops_download(d, out + tok * D, s->out, T * D * sizeof(float));
        tok += T;
        i = j;
    }
    s->acts.p_hidden = ph;
    s->acts.p_att = pa;
}

static float *block(const step_state *s, step_block which) {
    switch (which) {
    case STEP_PARAMS: return s->params;
    case STEP_GRADS: return s->grads;
    case STEP_ADAM_M: return s->m;
    case STEP_ADAM_V: return s->v;
    }
    CB_ASSERT(0);
    return NULL;
}

void cb_step_get(const step_state *s, step_block which, float *host) {
    cb_ops_download(s->dev, host, block(s, which), s->n * sizeof(float));
}

void cb_step_set(step_state *s, step_block which, const float *host) {
    cb_ops_upload(s->dev, block(s, which), host, s->n * sizeof(float));
}

int cb_step_check_sync(step_state *s, cb_err *err) {
    cb_comm *c = s->comm;
    if (c->size == 1) return 0;
    uint32_t *w = cb_malloc(s->n * sizeof(float), "the parameter check", err);
    int64_t v[2] = {0, 0};
    if (w) {
        cb_step_get(s, STEP_PARAMS, (float *)w);
        uint64_t h = 0xcbf29ce484222325ULL;
        for (size_t i = 0; i < s->n; i++) h = (h ^ w[i]) * 0x100000001b3ULL;
        v[0] = (int64_t)h;
        v[1] = (int64_t)~h;
        free(w);
    }
    if (cb_comm_agree(c, w ? 0 : -1, err)) return -1;
    cb_comm_allreduce(c, v, 2, COMM_I64, COMM_MAX);   /* max(h) == ~max(~h) = min(h): all equal */
    if (v[0] != ~v[1])
        return cb_err_set(err, "the ranks hold different parameters after step %ld (a bug, or ranks that "
                          "loaded different models or data)", cb_step_count(s));
    return 0;
}

size_t cb_step_linear_offset(const step_state *s) { return s->enc.info.n_params; }
const backbone *cb_step_backbone(const step_state *s) { return &s->enc; }
long cb_step_count(const step_state *s) { return s->t; }
uint64_t cb_step_dropout_state(const step_state *s) { return s->acts.seed; }

void cb_step_restore(step_state *s, long t, uint64_t dropout_state) {
    s->t = t;
    s->step_q = 0;
    s->acts.seed = dropout_state;
}
