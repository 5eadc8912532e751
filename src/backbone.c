/* backbone.c: the family table and the dispatch of the encoder interface
 * (backbone.h) to each family's arch; the initialisation of added
 * embedding rows, which is the same for every family. */
#include "backbone.h"
#include "bert.h"
#include "modernbert.h"
#include "blas.h"
#include "fsutil.h"
#include "rng.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

/* model_type, checkpoint prefix, transformers class, positions, default
 * pad_token_id, arch. RoBERTa, XLM-RoBERTa and CamemBERT are BERT's
 * architecture (post-norm, GELU, absolute positions) with positions counted
 * from pad_token_id + 1 and, in their checkpoints, one token type and
 * layer_norm_eps 1e-5 (read from config.json like every size); their
 * transformers classes keep the encoder under "roberta". ModernBERT is
 * modernbert.c's arch. */
static const backbone_family FAMILIES[] = {
    {"bert", "bert.", "BertModel", POS_FROM_ZERO, 0, &cb_bert_arch},
    {"roberta", "roberta.", "RobertaModel", POS_AFTER_PAD, 1, &cb_bert_arch},
    {"xlm-roberta", "roberta.", "XLMRobertaModel", POS_AFTER_PAD, 1, &cb_bert_arch},
    {"camembert", "roberta.", "CamembertModel", POS_AFTER_PAD, 1, &cb_bert_arch},
    /* pre-norm, rotary positions (the positions column is unused), GeGLU,
     * local/global attention: its own arch; encoder under "model." */
    {"modernbert", "model.", "ModernBertModel", POS_FROM_ZERO, 50283, &cb_modernbert_arch},
};
#define N_FAMILIES (int)(sizeof FAMILIES / sizeof FAMILIES[0])

const backbone_family *cb_backbone_family_find(const char *model_type) {
    for (int i = 0; model_type && i < N_FAMILIES; i++)
        if (!strcmp(FAMILIES[i].model_type, model_type)) return &FAMILIES[i];
    return NULL;
}

const char *cb_backbone_families(void) {
    static char list[256];
    if (!list[0])
        for (int i = 0; i < N_FAMILIES; i++) {
            size_t l = strlen(list);
            snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", FAMILIES[i].model_type);
        }
    return list;
}

/* The family of <dir>/config.json's model_type. */
static const backbone_family *family_of(const char *dir, cb_err *err) {
    char *path = cb_path_new(dir, "config.json", err);
    json_t *root = path ? cb_json_load(path, JSON_REJECT_DUPLICATES, err) : NULL;
    const backbone_family *fam = NULL;
    if (root) {
        const json_t *v = json_object_get(root, "model_type");
        if (!json_is_object(root))
            cb_err_set(err, "%s: expected a JSON object", path);
        else if (!v)
            cb_err_set(err, "%s: required key \"model_type\" is missing", path);
        else if (!json_is_string(v))
            cb_err_set(err, "%s: key \"model_type\" must be a string", path);
        else if (!(fam = cb_backbone_family_find(json_string_value(v))))
            cb_err_set(err, "%s: model_type '%s' is not supported yet (supported: %s)", path,
                       json_string_value(v), cb_backbone_families());
    }
    json_decref(root);
    free(path);
    return fam;
}

int cb_backbone_load(backbone *b, ops_device *dev, const char *dir, cb_err *err) {
    memset(b, 0, sizeof *b);
    const backbone_family *fam = family_of(dir, err);
    if (!fam) return -1;
    b->fam = fam;
    b->dev = dev;
    if (fam->arch->load(b, dev, dir, err)) {
        memset(b, 0, sizeof *b);
        return -1;
    }
    b->info.family = fam->model_type;
    b->info.prefix = fam->prefix;
    return 0;
}

void cb_backbone_free(backbone *b) {
    if (b->fam) b->fam->arch->free(b);
    memset(b, 0, sizeof *b);
}

void cb_backbone_bind(backbone *b, float *mem) { b->fam->arch->bind(b, mem); }

int cb_backbone_acts_init(backbone_acts *a, const backbone *b, int max_tokens, size_t max_att, int train,
                          cb_err *err) {
    memset(a, 0, sizeof *a);
    a->max_tokens = max_tokens;
    a->max_att = max_att;
    a->train = train;
    if (b->fam->arch->acts_init(a, b, max_tokens, max_att, train, err)) {
        memset(a, 0, sizeof *a);
        return -1;
    }
    a->arch = b->fam->arch;
    return 0;
}

void cb_backbone_acts_free(backbone_acts *a) {
    if (a->arch) a->arch->acts_free(a);
    memset(a, 0, sizeof *a);
}

void cb_backbone_forward(const backbone *b, backbone_acts *a, const backbone_batch *batch) {
    b->fam->arch->forward(b, a, batch);
}

float *cb_backbone_output(const backbone *b, const backbone_acts *a) { return b->fam->arch->output(b, a); }

void cb_backbone_backward(const backbone *b, backbone_acts *a, float *grads, float *d_out) {
    b->fam->arch->backward(b, a, grads, d_out);
}

int cb_backbone_named_count(const backbone *b) { return b->fam->arch->named_count(b); }

void cb_backbone_named_tensors(const backbone *b, backbone_named *out) { b->fam->arch->named_tensors(b, out); }

int cb_backbone_grow_vocab(backbone *b, int n_new, uint64_t seed, cb_err *err) {
    return b->fam->arch->grow_vocab(b, n_new, seed, err);
}

/* ---- added rows ---------------------------------------------------------- */

/* One standard normal draw (Box-Muller on splitmix64). */
static double normal(rng *r) {
    double u = ((double)(cb_rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
    double v = (double)(cb_rng_next(r) >> 11) / 9007199254740992.0;
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

/* transformers' _init_added_embeddings_weights_with_mean: mean over the old
 * rows, covariance = centered^T centered / V; when 1e-9 * covariance is
 * positive definite (its Cholesky factor exists), each new row is mean +
 * L z with L L^T = 1e-9 * covariance and z standard normal; else the mean. */
int cb_backbone_init_rows(float *emb, int V, int n, int H, uint64_t seed, cb_err *err) {
    size_t h = (size_t)H;
    double *mean = cb_calloc(h, sizeof(double), "the embeddings' mean", err);
    float *cov = mean ? cb_calloc(h * h, sizeof(float), "the embeddings' covariance", err) : NULL;
    float *chunk = cov ? cb_malloc(4096 * h * sizeof(float), "the embeddings' covariance", err) : NULL;
    double *L = chunk ? cb_calloc(h * h, sizeof(double), "the embeddings' covariance", err) : NULL;
    if (!L) {
        free(mean);
        free(cov);
        free(chunk);
        return -1;
    }
    for (int v = 0; v < V; v++)
        for (size_t j = 0; j < h; j++) mean[j] += emb[(size_t)v * h + j];
    for (size_t j = 0; j < h; j++) mean[j] /= V > 0 ? V : 1;
    /* covariance (its upper triangle, row-major), 4096 centered rows at a time */
    for (int v0 = 0; v0 < V; v0 += 4096) {
        int k = V - v0 < 4096 ? V - v0 : 4096;
        for (int r = 0; r < k; r++)
            for (size_t j = 0; j < h; j++) chunk[(size_t)r * h + j] = emb[(size_t)(v0 + r) * h + j] - (float)mean[j];
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, H, k, 1.0f, chunk, H, 1.0f, cov, H);
    }
    /* Cholesky of 1e-9 * cov (lower factor L) */
    int pd = V > 0;
    for (size_t i = 0; i < h && pd; i++) {
        for (size_t j = 0; j <= i; j++) {
            double s = 1e-9 * (double)cov[j * h + i] / V;   /* upper triangle: (j, i), j <= i */
            for (size_t k = 0; k < j; k++) s -= L[i * h + k] * L[j * h + k];
            if (i == j) {
                if (!(s > 0)) { pd = 0; break; }
                L[i * h + i] = sqrt(s);
            } else {
                L[i * h + j] = s / L[j * h + j];
            }
        }
    }
    rng r;
    cb_rng_init(&r, seed, 0x656d62);
    double *z = (double *)chunk;   /* h doubles fit in 4096 * h floats */
    for (int t = 0; t < n; t++) {
        float *row = emb + (size_t)(V + t) * h;
        for (size_t j = 0; j < h; j++) z[j] = pd ? normal(&r) : 0.0;
        for (size_t i = 0; i < h; i++) {
            double x = mean[i];
            for (size_t k = 0; pd && k <= i; k++) x += L[i * h + k] * z[k];
            row[i] = (float)x;
        }
    }
    free(mean);
    free(cov);
    free(chunk);
    free(L);
    return 0;
}

float *cb_backbone_grow_rows(ops_device *dev, const float *params, size_t n_old, int V, int n, int H, uint64_t seed,
                             cb_err *err) {
    size_t head = (size_t)V * H, add = (size_t)n * H, total = n_old + add;
    float *host = cb_malloc(total * sizeof(float), "the grown word embeddings", err);
    float *dp = host ? cb_ops_alloc(dev, total * sizeof(float), "the model's parameters", err) : NULL;
    if (!dp) {
        free(host);
        return NULL;
    }
    cb_ops_download(dev, host, params, head * sizeof(float));
    cb_ops_download(dev, host + head + add, params + head, (n_old - head) * sizeof(float));
    if (cb_backbone_init_rows(host, V, n, H, seed, err)) {
        free(host);
        cb_ops_free(dev, dp);
        return NULL;
    }
    cb_ops_upload(dev, dp, host, total * sizeof(float));
    free(host);
    return dp;
}
