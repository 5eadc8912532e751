/* pylate.c: see pylate.h. */
#include "pylate.h"
#include "fsutil.h"
#include "safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

/* Python's string.punctuation: PyLate's default skiplist_words. */
static const char PUNCT[] = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

static const char *class_of(const char *type) {
    const char *dot = strrchr(type, '.');
    return dot ? dot + 1 : type;
}

/* modules.json: a PyLate ColBERT is a Transformer at the root followed by
 * one Dense. 1: found (p->dense set), 0: not a PyLate ColBERT, -1: err. */
static int modules_read(pylate_dir *p, const json_t *mods, const char *path, cb_err *err) {
    if (!json_is_array(mods)) return cb_err_set(err, "%s: expected a JSON array of modules", path);
    size_t i;
    const json_t *m;
    int n_dense = 0, transformer_at_root = 0, other = 0;
    json_array_foreach(mods, i, m) {
        const json_t *jt = json_object_get(m, "type"), *jp = json_object_get(m, "path");
        if (!json_is_object(m) || !json_is_string(jt) || (jp && !json_is_string(jp)))
            return cb_err_set(err, "%s: module %zu must be an object with string \"type\" and \"path\"", path, i);
        const char *cls = class_of(json_string_value(jt)), *sub = jp ? json_string_value(jp) : "";
        if (!strcmp(cls, "Transformer") && i == 0) {
            transformer_at_root = !*sub;
            if (!transformer_at_root) {
                /* decided below: only a Dense after it makes this ours to refuse */
                snprintf(p->dense, sizeof p->dense, "%s", sub);
            }
        } else if (!strcmp(cls, "Dense")) {
            if (n_dense++ == 0) {
                if (strlen(sub) >= sizeof p->dense || !*sub || strstr(sub, ".."))
                    return cb_err_set(err, "%s: module %zu (Dense) has path \"%s\"; expected a folder such as "
                                      "\"1_Dense\"", path, i, sub);
                if (transformer_at_root) snprintf(p->dense, sizeof p->dense, "%s", sub);
            }
        } else {
            other = 1;   /* Pooling, Normalize, ...: a sentence-transformers model */
        }
    }
    if (!n_dense || other) return 0;
    if (!transformer_at_root)
        return cb_err_set(err, "%s: a PyLate ColBERT whose encoder is in the folder \"%s\" is not supported (the "
                          "Transformer module must have path \"\", as PyLate saves it)", path, p->dense);
    if (n_dense > 1)
        return cb_err_set(err, "%s: %d Dense modules after the encoder are not supported (one projection, as "
                          "colbert-ai's linear)", path, n_dense);
    return 1;
}

static int get_int(const json_t *o, const char *key, int lo, int *dst, const char *path, cb_err *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > INT_MAX)
        return cb_err_set(err, "%s: \"%s\" must be an integer >= %d", path, key, lo);
    *dst = (int)json_integer_value(v);
    return 0;
}

static int get_bool(const json_t *o, const char *key, int *dst, const char *path, cb_err *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return cb_err_set(err, "%s: \"%s\" must be true or false", path, key);
    *dst = json_is_true(v);
    return 0;
}

static int get_prefix(const json_t *o, const char *key, char *dst, size_t cap, const char *path, cb_err *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return cb_err_set(err, "%s: \"%s\" must be a string", path, key);
    const char *s = json_string_value(v);
    if (!*s)
        return cb_err_set(err, "%s: an empty \"%s\" (no marker token) is not supported: ColBERT puts a marker "
                          "after [CLS]", path, key);
    if (strlen(s) >= cap) return cb_err_set(err, "%s: \"%s\" is longer than %zu bytes", path, key, cap - 1);
    snprintf(dst, cap, "%s", s);
    return 0;
}

/* The Dense module's config.json. */
static int dense_read(pylate_dir *p, const char *dir, cb_err *err) {
    char *ddir = cb_path_new(dir, p->dense, err);
    char *path = ddir ? cb_path_new(ddir, "config.json", err) : NULL;
    free(ddir);
    if (!path) return -1;
    json_t *c = cb_json_load(path, JSON_REJECT_DUPLICATES, err);
    int rc = c ? 0 : -1;
    if (c && !json_is_object(c)) rc = cb_err_set(err, "%s: expected a JSON object", path);
    int bias = 1, residual = 0;   /* sentence-transformers' Dense has a bias unless told */
    if (!rc) rc = get_int(c, "in_features", 1, &p->hidden, path, err);
    if (!rc) rc = get_int(c, "out_features", 1, &p->dim, path, err);
    if (!rc) rc = get_bool(c, "bias", &bias, path, err);
    if (!rc) rc = get_bool(c, "use_residual", &residual, path, err);
    if (!rc && (!p->hidden || !p->dim))
        rc = cb_err_set(err, "%s: needs \"in_features\" and \"out_features\"", path);
    if (!rc && p->dim > 65536) rc = cb_err_set(err, "%s: out_features %d is over 65536", path, p->dim);
    if (!rc && bias)
        rc = cb_err_set(err, "%s: a projection with a bias (\"bias\": true) is not supported (colbert-ai's linear "
                        "has none)", path);
    if (!rc && residual) rc = cb_err_set(err, "%s: \"use_residual\": true is not supported", path);
    const json_t *act = c && !rc ? json_object_get(c, "activation_function") : NULL;
    if (!rc && act && !json_is_null(act)) {
        const char *a = json_is_string(act) ? class_of(json_string_value(act)) : "";
        if (!strcmp(a, "Identity")) p->cc.relu = 0;
        else if (!strcmp(a, "ReLU")) p->cc.relu = 1;
        else rc = cb_err_set(err, "%s: activation_function %s is not supported (Identity, or ReLU as colbert-ai's "
                             "relu)", path, json_is_string(act) ? json_string_value(act) : "(not a string)");
    }
    json_decref(c);
    free(path);
    return rc;
}

/* config_sentence_transformers.json's ColBERT keys over PyLate's defaults. */
static int settings_read(pylate_dir *p, const char *dir, cb_err *err) {
    colbert_config *cc = &p->cc;
    snprintf(cc->query_token, sizeof cc->query_token, "%s", "[Q] ");
    snprintf(cc->doc_token, sizeof cc->doc_token, "%s", "[D] ");
    cc->query_maxlen = 32;
    cc->doc_maxlen = 180;
    cc->attend_to_mask_tokens = 0;
    cc->mask_punctuation = 1;
    char *path = cb_path_new(dir, "config_sentence_transformers.json", err);
    if (!path) return -1;
    if (!cb_file_exists(path)) {
        free(path);
        return 0;
    }
    json_t *c = cb_json_load(path, 0, err);
    int rc = c ? 0 : -1, expand = 1;
    if (c && !json_is_object(c)) rc = cb_err_set(err, "%s: expected a JSON object", path);
    if (!rc) rc = get_prefix(c, "query_prefix", cc->query_token, sizeof cc->query_token, path, err);
    if (!rc) rc = get_prefix(c, "document_prefix", cc->doc_token, sizeof cc->doc_token, path, err);
    if (!rc) rc = get_int(c, "query_length", 4, &cc->query_maxlen, path, err);
    if (!rc) rc = get_int(c, "document_length", 3, &cc->doc_maxlen, path, err);
    if (!rc) rc = get_bool(c, "attend_to_expansion_tokens", &cc->attend_to_mask_tokens, path, err);
    if (!rc) rc = get_bool(c, "do_query_expansion", &expand, path, err);
    if (!rc && !expand)
        rc = cb_err_set(err, "%s: \"do_query_expansion\": false is not supported (colbert-ai pads every query "
                        "with [MASK] to query_length)", path);
    const json_t *sk = c && !rc ? json_object_get(c, "skiplist_words") : NULL;
    if (!rc && sk && !json_is_null(sk)) {
        /* colbert-ai masks string.punctuation; an empty list masks nothing */
        if (!json_is_array(sk)) rc = cb_err_set(err, "%s: \"skiplist_words\" must be a list of strings", path);
        else if (json_array_size(sk) == 0) cc->mask_punctuation = 0;
        else {
            size_t i;
            const json_t *w;
            int same = json_array_size(sk) == sizeof PUNCT - 1;
            json_array_foreach(sk, i, w) {
                const char *s = json_string_value(w);
                if (!s) { rc = cb_err_set(err, "%s: \"skiplist_words\" must be a list of strings", path); break; }
                same &= strlen(s) == 1 && strchr(PUNCT, s[0]) != NULL;
            }
            if (!rc && !same)
                rc = cb_err_set(err, "%s: a \"skiplist_words\" other than string.punctuation (or []) is not "
                                "supported", path);
        }
    }
    json_decref(c);
    free(path);
    return rc;
}

int cb_pylate_read(pylate_dir *p, const char *dir, cb_err *err) {
    memset(p, 0, sizeof *p);
    cb_colbert_config_default(&p->cc);
    char *path = cb_path_new(dir, "modules.json", err);
    if (!path) return -1;
    if (!cb_file_exists(path)) {
        free(path);
        return 0;
    }
    json_t *mods = cb_json_load(path, JSON_REJECT_DUPLICATES, err);
    int rc = mods ? modules_read(p, mods, path, err) : -1;
    json_decref(mods);
    free(path);
    if (rc <= 0) {
        memset(p->dense, 0, sizeof p->dense);
        return rc;
    }
    if (dense_read(p, dir, err) || settings_read(p, dir, err)) return -1;
    p->cc.dim = p->dim;
    p->found = 1;
    return 0;
}

int cb_pylate_read_linear(const pylate_dir *p, const char *dir, int H, float *lin, cb_err *err) {
    char *ddir = cb_path_new(dir, p->dense, err);
    char *path = ddir ? cb_path_new(ddir, "model.safetensors", err) : NULL;
    free(ddir);
    if (!path) return -1;
    int rc;
    if (p->hidden != H) {
        rc = cb_err_set(err, "%s/%s/config.json: in_features %d, but the encoder's hidden size is %d", dir, p->dense,
                        p->hidden, H);
    } else if (!cb_file_exists(path)) {
        rc = cb_err_set(err, "%s: missing (the projection of a PyLate model; a pytorch_model.bin is not read, "
                        "save it with safetensors)", path);
    } else {
        st_file f;
        rc = cb_st_open(&f, path, err);
        if (!rc) {
            int64_t shape[2] = {p->dim, H};
            rc = cb_st_read_f32(&f, "linear.weight", lin, 2, shape, err);
            cb_st_close(&f);
        }
    }
    free(path);
    return rc;
}

/* Write j (consumed; NULL: out of memory) as dir/name. */
static int write_json(const char *dir, const char *name, json_t *j, cb_err *err) {
    char *p = j ? cb_path_new(dir, name, err) : NULL;
    int rc = !j ? cb_err_set(err, "%s/%s: out of memory", dir, name) : !p ? -1 : cb_json_write(p, j, err);
    json_decref(j);
    free(p);
    return rc;
}

int cb_pylate_write(const char *dir, const colbert_config *cc, int H, const float *linear, cb_err *err) {
    if (!cc->query_token[0] || !cc->doc_token[0])
        return cb_err_set(err, "%s: the ColBERT markers are not set", dir);
    if (write_json(dir, "modules.json",
                   json_pack("[{s:i, s:s, s:s, s:s}, {s:i, s:s, s:s, s:s}]", "idx", 0, "name", "0", "path", "",
                             "type", "sentence_transformers.models.Transformer", "idx", 1, "name", "1", "path",
                             "1_Dense", "type", "pylate.models.Dense.Dense"),
                   err))
        return -1;

    char *ddir = cb_path_new(dir, "1_Dense", err), *p = NULL;
    int rc = ddir ? 0 : -1;
    if (!rc && mkdir(ddir, 0755) && errno != EEXIST)
        rc = cb_err_set(err, "%s: cannot create: %s", ddir, strerror(errno));
    if (!rc)
        rc = write_json(ddir, "config.json",
                        json_pack("{s:i, s:i, s:b, s:s, s:b}", "in_features", H, "out_features", cc->dim, "bias", 0,
                                  "activation_function",
                                  cc->relu ? "torch.nn.modules.activation.ReLU" : "torch.nn.modules.linear.Identity",
                                  "use_residual", 0),
                        err);
    if (!rc && !(p = cb_path_new(ddir, "model.safetensors", err))) rc = -1;
    if (!rc) {
        st_wtensor w = {"linear.weight", ST_F32, 2, {cc->dim, H}, linear};
        rc = cb_st_write(p, &w, 1, err);
    }
    free(p);
    free(ddir);
    if (rc) return -1;

    json_t *skip = json_array();
    for (const char *c = PUNCT; skip && cc->mask_punctuation && *c; c++)
        json_array_append_new(skip, json_stringn(c, 1));
    json_t *j = skip ? json_pack("{s:{s:s, s:s}, s:n, s:s, s:s, s:s, s:i, s:i, s:b, s:o, s:b}", "prompts", "query", "",
                                 "document", "", "default_prompt_name", "similarity_fn_name", "MaxSim",
                                 "query_prefix", cc->query_token, "document_prefix", cc->doc_token, "query_length",
                                 cc->query_maxlen, "document_length", cc->doc_maxlen, "attend_to_expansion_tokens",
                                 cc->attend_to_mask_tokens, "skiplist_words", skip, "do_query_expansion", 1)
                     : NULL;
    if (write_json(dir, "config_sentence_transformers.json", j, err)) return -1;
    /* the Transformer module's own settings (PyLate sets the length per call) */
    return write_json(dir, "sentence_bert_config.json",
                      json_pack("{s:i, s:b}", "max_seq_length", cc->doc_maxlen, "do_lower_case", 0), err);
}
