/* step.c: one ColBERT training step. See step.h. */
#include "step.h"
#include "optim.h"

#include <string.h>

int step_init(step_state *s, bert_model *bert, const tokenizer *tok, const float *linear,
              uint64_t linear_seed, const step_config *c, cb_err *err) {
    memset(s, 0, sizeof *s);
    s->c = *c;
    const colbert_config *cc = &c->cc;
    int acc = c->lc.accumsteps > 0 ? c->lc.accumsteps : 1;
    if (c->bsize <= 0 || c->lc.nway < 1 || cc->dim <= 0 || cc->query_maxlen < 4 || cc->doc_maxlen < 3)
        return cb_err_set(err, "training configuration out of range: bsize %d, nway %d, dim %d, "
                          "query_maxlen %d, doc_maxlen %d", c->bsize, c->lc.nway, cc->dim,
                          cc->query_maxlen, cc->doc_maxlen);
    if (c->bsize % acc)
        return cb_err_set(err, "bsize %d is not a multiple of accumsteps %d", c->bsize, acc);
    if (cc->doc_maxlen > bert->cfg.max_position_embeddings || cc->query_maxlen > bert->cfg.max_position_embeddings)
        return cb_err_set(err, "doc_maxlen %d / query_maxlen %d exceed the model's %d positions",
                          cc->doc_maxlen, cc->query_maxlen, bert->cfg.max_position_embeddings);
    if (colbert_vocab_init(&s->vocab, tok, err)) return -1;

    s->bert = *bert;
    memset(bert, 0, sizeof *bert);  /* ownership moves here */
    int H = s->H = s->bert.cfg.hidden_size, D = s->D = cc->dim;
    s->max_q = c->bsize / acc;

    /* parameters, gradients, moments */
    size_t nb = s->bert.n_params;
    s->n = nb + (size_t)D * H;
    s->params = cb_xmalloc(s->n * sizeof(float));
    s->grads = cb_xcalloc(s->n, sizeof(float));
    s->m = cb_xcalloc(s->n, sizeof(float));
    s->v = cb_xcalloc(s->n, sizeof(float));
    memcpy(s->params, s->bert.params, nb * sizeof(float));
    free(s->bert.params);
    bert_bind(&s->bert, s->params);
    bert_grads_bind(&s->bg, &s->bert, s->grads);
    s->linear = s->params + nb;
    s->g_linear = s->grads + nb;
    if (linear) memcpy(s->linear, linear, (size_t)D * H * sizeof(float));
    else colbert_linear_init(s->linear, linear_seed, s->bert.cfg.initializer_range, D, H);
    s->bytes = 4 * s->n * sizeof(float);

    /* activations for the largest micro-batch */
    size_t Lq = (size_t)cc->query_maxlen, Ld = (size_t)cc->doc_maxlen, nq = (size_t)s->max_q;
    size_t nd = nq * (size_t)c->lc.nway;
    size_t T = nq * Lq + nd * Ld;
    size_t att = nq * Lq * Lq + nd * Ld * Ld;
    bert_acts_init(&s->acts, &s->bert.cfg, (int)T, att, 1);
    s->bytes += s->acts.n_floats * sizeof(float);
    size_t cols = (size_t)loss_score_cols(&c->lc, (int)nq);
    size_t nf = T * D * 3 + T + T * H + 2 * nq * cols + Lq * nd * Ld;
    size_t ni = nq * cols * Lq + T + nq * (1 + c->lc.nway) + nd + 1;
    s->buf = cb_xmalloc(nf * sizeof(float) + ni * sizeof(int32_t) + 2 * T);
    s->bytes += nf * sizeof(float) + ni * sizeof(int32_t) + 2 * T;
    float *p = s->buf;
    s->out = p; p += T * D;
    s->proj = p; p += T * D;
    s->d_out = p; p += T * D;
    s->norm = p; p += T;
    s->d_hidden = p; p += T * H;
    s->scores = p; p += nq * cols;
    s->d_scores = p; p += nq * cols;
    s->sim = p; p += Lq * nd * Ld;
    int32_t *ip = (int32_t *)p;
    s->argmax = ip; ip += nq * cols * Lq;
    s->ids = ip; ip += T;
    s->seq_len = (int *)ip; ip += nq * (1 + c->lc.nway);
    s->d_off = (int *)ip; ip += nd + 1;
    s->mask = (uint8_t *)ip;
    s->keep = s->mask + T;
    return 0;
}

void step_free(step_state *s) {
    free(s->params);
    free(s->grads);
    free(s->m);
    free(s->v);
    free(s->buf);
    bert_acts_free(&s->acts);
    memset(s, 0, sizeof *s);
}

static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

float step_micro(step_state *s, const step_batch *b, loss_parts *parts) {
    const step_config *c = &s->c;
    int Lq = c->cc.query_maxlen, nway = c->lc.nway, H = s->H, D = s->D;
    int nq = b->nq, nd = nq * nway;
    CB_ASSERT(nq > 0 && nq <= s->max_q);
    /* pack: queries first (Lq tokens each), then the documents */
    size_t TQ = (size_t)nq * Lq;
    memcpy(s->ids, b->q_ids, TQ * sizeof(int32_t));
    for (size_t i = 0; i < TQ; i++) s->mask[i] = c->cc.attend_to_mask_tokens ? 1 : b->q_mask[i];
    memset(s->keep, 1, TQ);
    for (int q = 0; q < nq; q++) s->seq_len[q] = Lq;
    s->d_off[0] = 0;
    for (int k = 0; k < nd; k++) {
        CB_ASSERT(b->d_len[k] > 0 && b->d_len[k] <= c->cc.doc_maxlen);
        s->seq_len[nq + k] = b->d_len[k];
        s->d_off[k + 1] = s->d_off[k] + b->d_len[k];
    }
    size_t TD = (size_t)s->d_off[nd], T = TQ + TD;
    CB_ASSERT(T <= (size_t)s->acts.max_tokens);
    memcpy(s->ids + TQ, b->d_ids, TD * sizeof(int32_t));
    memset(s->mask + TQ, 1, TD);
    colbert_doc_keep(s->keep + TQ, b->d_ids, (int)TD, &s->vocab, c->cc.mask_punctuation);

    /* encoder */
    s->acts.p_hidden = c->dropout ? s->bert.cfg.hidden_dropout_prob : 0.0f;
    s->acts.p_att = c->dropout ? s->bert.cfg.attention_probs_dropout_prob : 0.0f;
    s->acts.seed = mix(c->seed ^ mix((uint64_t)s->t * 1000003ULL + (uint64_t)s->acts.seed));
    bert_batch bb = {.n_seq = nq + nd, .seq_len = s->seq_len, .ids = s->ids, .mask = s->mask};
    double t0 = cb_now();
    bert_forward(&s->bert, &s->acts, &bb);
    s->t_fwd += cb_now() - t0;
    const float *hidden = bert_output(&s->bert, &s->acts);

    /* head, MaxSim, loss */
    colbert_head_forward(s->out, s->proj, s->norm, hidden, s->linear, s->keep, c->cc.relu, (int)T, H, D);
    const float *qv = s->out, *dv = s->out + TQ * D;
    int group = loss_score_cols(&c->lc, nq) == nway ? nway : 0;
    colbert_maxsim_forward(s->scores, s->argmax, s->sim, qv, dv, s->d_off, s->keep + TQ, group, nq, nd,
                           Lq, D);
    float loss = loss_forward_backward(s->d_scores, parts, s->scores, b->teacher, &c->lc, nq);

    /* backward */
    t0 = cb_now();
    memset(s->d_out, 0, T * D * sizeof(float));
    colbert_maxsim_backward(s->d_out, s->d_out + TQ * D, s->d_scores, s->argmax, qv, dv, group, nq, nd,
                            Lq, D);
    memset(s->d_hidden, 0, T * H * sizeof(float));
    colbert_head_backward(s->d_hidden, s->g_linear, s->d_out, s->out, s->proj, s->norm, hidden, s->linear,
                          s->keep, c->cc.relu, (int)T, H, D);
    bert_backward(&s->bert, &s->acts, &s->bg, &bb, s->d_hidden);
    s->t_bwd += cb_now() - t0;
    return loss;
}

float step_update(step_state *s, double *lr_used) {
    float norm = optim_clip_grad_norm(s->grads, s->n, 2.0f);
    double lr = s->c.warmup >= 0 ? optim_lr(s->c.lr, s->t, s->c.warmup, s->c.maxsteps) : s->c.lr;
    adamw_config ac = adamw_default(lr);
    adamw_update(s->params, s->grads, s->m, s->v, s->n, &ac, s->t + 1);
    s->t++;
    memset(s->grads, 0, s->n * sizeof(float));
    if (lr_used) *lr_used = lr;
    return norm;
}
