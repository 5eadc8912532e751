/* colbert.c: ColBERT's token layout, projection head and MaxSim, forward
 * and backward; see colbert.h. */
#include "colbert.h"
#include "blas.h"

#include <math.h>
#include <string.h>

#define NORM_EPS 1e-12f     /* F.normalize's eps */
#define MAXSIM_EMPTY -9999.0f

void colbert_config_default(colbert_config *c) {
    c->dim = 128;
    c->query_maxlen = 32;
    c->doc_maxlen = 220;
    c->mask_punctuation = 1;
    c->attend_to_mask_tokens = 0;
    c->relu = 0;
}

/* ---- token layout ------------------------------------------------------- */

static int need_id(int32_t *out, const tokenizer *tok, const char *token, cb_err *err) {
    int id = tokenizer_token_id(tok, token);
    if (id < 0)
        return cb_err_set(err, "colbert: the vocabulary has no %s token (ColBERT needs "
                               "[CLS], [SEP], [MASK], [unused0] as [Q] and [unused1] as [D])", token);
    *out = id;
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int colbert_vocab_init(colbert_vocab *v, const tokenizer *tok, cb_err *err) {
    memset(v, 0, sizeof *v);
    tokenizer_specials sp = tokenizer_get_specials(tok);
    v->pad = sp.pad;
    if (need_id(&v->cls, tok, "[CLS]", err) || need_id(&v->sep, tok, "[SEP]", err) ||
        need_id(&v->mask, tok, "[MASK]", err) || need_id(&v->q_marker, tok, "[unused0]", err) ||
        need_id(&v->d_marker, tok, "[unused1]", err))
        return -1;
    /* colbert-ai's skiplist: the first word piece of each character of
     * string.punctuation, encoded without special tokens. */
    static const char punct[] = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
    for (const char *p = punct; *p; p++) {
        int32_t id;
        if (tokenizer_encode(tok, p, 1, &id, 1) < 1) continue;
        int dup = 0;
        for (int k = 0; k < v->n_punct; k++) dup |= v->punct[k] == id;
        if (!dup) v->punct[v->n_punct++] = id;
    }
    qsort(v->punct, (size_t)v->n_punct, sizeof(int32_t), cmp_i32);
    return 0;
}

/* [CLS] marker pieces[:L-3] [SEP] into ids; returns the count (<= L). */
static int marked_ids(int32_t *ids, const colbert_vocab *v, const tokenizer *tok, const char *text,
                      size_t len, int32_t marker, int L) {
    CB_ASSERT(L >= 3);
    int n = tokenizer_encode(tok, text, len, ids + 2, L - 3);
    if (n > L - 3) n = L - 3;
    ids[0] = v->cls;
    ids[1] = marker;
    ids[n + 2] = v->sep;
    return n + 3;
}

void colbert_query_ids(int32_t *ids, uint8_t *mask, const colbert_vocab *v, const tokenizer *tok,
                       const char *text, size_t len, const colbert_config *c) {
    int L = c->query_maxlen;
    int n = marked_ids(ids, v, tok, text, len, v->q_marker, L);
    for (int i = 0; i < L; i++) {
        if (i >= n) ids[i] = v->mask;
        mask[i] = (uint8_t)(i < n || c->attend_to_mask_tokens);
    }
}

int colbert_doc_ids(int32_t *ids, const colbert_vocab *v, const tokenizer *tok,
                    const char *text, size_t len, const colbert_config *c) {
    return marked_ids(ids, v, tok, text, len, v->d_marker, c->doc_maxlen);
}

void colbert_doc_keep(uint8_t *keep, const int32_t *ids, int n, const colbert_vocab *v, int mask_punctuation) {
    for (int i = 0; i < n; i++) {
        int k = ids[i] != v->pad;
        if (k && mask_punctuation)
            k = bsearch(&ids[i], v->punct, (size_t)v->n_punct, sizeof(int32_t), cmp_i32) == NULL;
        keep[i] = (uint8_t)k;
    }
}

/* splitmix64 as the uniform source, Box-Muller for the normals. */
static uint64_t splitmix64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void colbert_linear_init(float *linear, uint64_t seed, float std, int D, int H) {
    uint64_t s = seed;
    size_t n = (size_t)D * H;
    for (size_t i = 0; i < n; i += 2) {
        /* u1 in (0, 1] so that log(u1) is finite; 53-bit uniforms */
        double u1 = ((double)(splitmix64(&s) >> 11) + 1.0) * 0x1.0p-53;
        double u2 = (double)(splitmix64(&s) >> 11) * 0x1.0p-53;
        double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
        linear[i] = (float)(std * r * cos(th));
        if (i + 1 < n) linear[i + 1] = (float)(std * r * sin(th));
    }
}

/* ---- head ---------------------------------------------------------------- */

void colbert_normalize_forward(float *out, float *norm, const float *inp, int T, int D) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *x = inp + (size_t)t * D;
        float *y = out + (size_t)t * D;
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)x[i] * x[i];
        float nrm = fmaxf((float)sqrt(ss), NORM_EPS);
        norm[t] = nrm;
        for (int i = 0; i < D; i++) y[i] = x[i] / nrm;
    }
}

/* forward: y = x / n, n = max(||x||, eps).
 * Unclamped: dx = (dy - y <y, dy>) / n. Clamped (||x|| < eps, e.g. a masked
 * zero vector): n is a constant, dx = dy / eps. */
void colbert_normalize_backward(float *dinp, const float *dout, const float *out, const float *norm,
                                int T, int D) {
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *y = out + (size_t)t * D, *dy = dout + (size_t)t * D;
        float *dx = dinp + (size_t)t * D;
        float nrm = norm[t];
        double ydy = 0;
        for (int i = 0; i < D; i++) ydy += (double)y[i] * dy[i];
        float dot = nrm > NORM_EPS ? (float)ydy : 0.0f;
        for (int i = 0; i < D; i++) dx[i] = (dy[i] - y[i] * dot) / nrm;
    }
}

void colbert_head_forward(float *out, float *proj, float *norm, const float *hidden, const float *linear,
                          const uint8_t *keep, int relu, int T, int H, int D) {
    if (T == 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, D, H, 1.0f, hidden, H, linear, H,
                0.0f, proj, D);
    if (relu || keep) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) {
            float *p = proj + (size_t)t * D;
            if (keep && !keep[t]) {
                memset(p, 0, (size_t)D * sizeof(float));
            } else if (relu) {
                for (int i = 0; i < D; i++) p[i] = p[i] > 0.0f ? p[i] : 0.0f;
            }
        }
    }
    colbert_normalize_forward(out, norm, proj, T, D);
}

void colbert_head_backward(float *d_hidden, float *d_linear, float *d_out, const float *out,
                           const float *proj, const float *norm, const float *hidden, const float *linear,
                           const uint8_t *keep, int relu, int T, int H, int D) {
    if (T == 0) return;
    /* d_out becomes dL/dproj in place: normalize backward reads a row's dy
     * fully before writing its dx. */
    colbert_normalize_backward(d_out, d_out, out, norm, T, D);
    /* forward: proj = keep * relu(h @ W^T); proj > 0 is relu's derivative */
    if (relu || keep) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) {
            float *dp = d_out + (size_t)t * D;
            const float *p = proj + (size_t)t * D;
            if (keep && !keep[t]) memset(dp, 0, (size_t)D * sizeof(float));
            else if (relu)
                for (int i = 0; i < D; i++) dp[i] = p[i] > 0.0f ? dp[i] : 0.0f;
        }
    }
    /* forward: proj[T, D] = hidden[T, H] @ linear[D, H]^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, H, D, 1.0f, d_out, D, linear, H,
                1.0f, d_hidden, H);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, H, T, 1.0f, d_out, D, hidden, H,
                1.0f, d_linear, H);
}

/* ---- MaxSim -------------------------------------------------------------- */

/* Per query, one GEMM gives the similarities of its Lq vectors with every
 * row of the documents it meets; the max per document runs over those. */
void colbert_maxsim_forward(float *scores, int32_t *argmax, float *sim, const float *qv, const float *dv,
                            const int *d_off, const uint8_t *d_keep, int group, int nq, int nd,
                            int Lq, int D) {
    int G = group > 0 ? group : nd;
    CB_ASSERT(group == 0 || nd >= nq * group);
    for (int q = 0; q < nq; q++) {
        int d_lo = group > 0 ? q * group : 0;
        int r0 = d_off[d_lo], n = d_off[d_lo + G] - r0;
        const float *Q = qv + (size_t)q * Lq * D;
        if (n > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Lq, n, D, 1.0f, Q, D,
                        dv + (size_t)r0 * D, D, 0.0f, sim, n);
#pragma omp parallel for schedule(dynamic, 1)
        for (int k = 0; k < G; k++) {
            int d = d_lo + k;
            int32_t *am = argmax + ((size_t)q * G + k) * Lq;
            double total = 0;
            for (int i = 0; i < Lq; i++) {
                const float *row = sim + (size_t)i * n - r0;    /* row[j], j a dv row */
                float best = MAXSIM_EMPTY;
                int32_t arg = -1;
                /* strict > keeps the first maximum, as torch.max does */
                for (int j = d_off[d]; j < d_off[d + 1]; j++) {
                    if (d_keep && !d_keep[j]) continue;
                    if (arg < 0 || row[j] > best) { best = row[j]; arg = j; }
                }
                am[i] = arg;
                total += arg < 0 ? MAXSIM_EMPTY : best;
            }
            scores[(size_t)q * G + k] = (float)total;
        }
    }
}

/* forward: score(q, d) = sum_i <Q[q, i], dv[argmax_i]> */
void colbert_maxsim_backward(float *d_qv, float *d_dv, const float *d_scores, const int32_t *argmax,
                             const float *qv, const float *dv, int group, int nq, int nd, int Lq,
                             int D) {
    int G = group > 0 ? group : nd;
    /* queries: each thread owns the rows of its queries */
#pragma omp parallel for schedule(static)
    for (int q = 0; q < nq; q++) {
        for (int k = 0; k < G; k++) {
            float g = d_scores[(size_t)q * G + k];
            const int32_t *am = argmax + ((size_t)q * G + k) * Lq;
            if (g == 0.0f) continue;
            for (int i = 0; i < Lq; i++) {
                if (am[i] < 0) continue;
                float *dq = d_qv + ((size_t)q * Lq + i) * D;
                const float *x = dv + (size_t)am[i] * D;
                for (int c = 0; c < D; c++) dq[c] += g * x[c];
            }
        }
    }
    /* documents: each thread owns the rows of its documents */
#pragma omp parallel for schedule(static)
    for (int d = 0; d < nd; d++) {
        int q0 = group > 0 ? d / group : 0, q1 = group > 0 ? q0 + 1 : nq;
        if (q1 > nq) q1 = nq;
        for (int q = q0; q < q1; q++) {
            int k = group > 0 ? d - q * group : d;
            float g = d_scores[(size_t)q * G + k];
            const int32_t *am = argmax + ((size_t)q * G + k) * Lq;
            if (g == 0.0f) continue;
            for (int i = 0; i < Lq; i++) {
                if (am[i] < 0) continue;
                float *dx = d_dv + (size_t)am[i] * D;
                const float *y = qv + ((size_t)q * Lq + i) * D;
                for (int c = 0; c < D; c++) dx[c] += g * y[c];
            }
        }
    }
}
