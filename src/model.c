/* model.c: find a Hugging Face model directory (a path or a hub id in the
 * local cache) and read its config.json and sentence-transformers files.
 * Every JSON file is checked key by key; a problem is reported as one line
 * naming the file, the key and what was expected. */
#include "model.h"
#include "backbone.h"
#include "fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

/* DIR/NAME parsed, duplicate keys an error (so for every JSON file of a
 * model); *path = DIR/NAME for messages (caller frees; NULL when out of
 * memory). NULL + err on failure. */
static json_t *json_load_in(const char *dir, const char *name, char **path, cb_err *err) {
    *path = cb_path_new(dir, name, err);
    return *path ? cb_json_load(*path, JSON_REJECT_DUPLICATES, err) : NULL;
}

/* ---- cb_model_resolve ---------------------------------------------------- */

/* The hub cache directory, as huggingface_hub computes it: $HF_HUB_CACHE,
 * else $HF_HOME/hub, else $XDG_CACHE_HOME/huggingface/hub, else
 * ~/.cache/huggingface/hub. Caller frees; NULL + err when out of memory. */
static char *hf_hub_dir(cb_err *err) {
    const char *v;
    char buf[4096];
    if ((v = getenv("HF_HUB_CACHE")) && *v) return cb_strdup(v, err);
    if ((v = getenv("HF_HOME")) && *v) snprintf(buf, sizeof buf, "%s/hub", v);
    else if ((v = getenv("XDG_CACHE_HOME")) && *v)
        snprintf(buf, sizeof buf, "%s/huggingface/hub", v);
    else snprintf(buf, sizeof buf, "%s/.cache/huggingface/hub",
                  (v = getenv("HOME")) && *v ? v : "");
    return cb_strdup(buf, err);
}

/* A hub id: "NAME" or "ORG/NAME" with no empty part, no "..", not a path
 * that starts with "/" or ".". */
static int is_hub_id(const char *s) {
    if (!*s || *s == '/' || *s == '.' || strstr(s, "..")) return 0;
    const char *slash = strchr(s, '/');
    if (!slash) return 1;
    return slash[1] && !strchr(slash + 1, '/');
}

/* The snapshot directory of <repo> (models--ORG--NAME): refs/main when it
 * names an existing snapshot, else the most recently modified one. Returns 0
 * with *out (caller frees) or NULL when there is none; -1 with err when out
 * of memory. */
static int hf_snapshot(const char *repo, char **out, cb_err *err) {
    *out = NULL;
    char *snaps = cb_path_new(repo, "snapshots", err), *refp = cb_path_new(repo, "refs/main", err);
    int rc = snaps && refp ? 0 : -1;
    size_t len;
    char *ref = !rc && cb_file_exists(refp) ? cb_read_file(refp, &len, NULL) : NULL;
    if (ref) {
        ref[strcspn(ref, " \t\r\n")] = '\0';
        if (*ref && !strchr(ref, '/')) {
            char *p = cb_path_new(snaps, ref, err);
            if (!p) rc = -1;
            else if (cb_dir_exists(p)) *out = p;
            else free(p);
        }
        free(ref);
    }
    DIR *d = !rc && !*out ? opendir(snaps) : NULL;
    struct dirent *de;
    time_t best = 0;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *p = cb_path_new(snaps, de->d_name, err);
        if (!p) {
            rc = -1;
            break;
        }
        struct stat st;
        if (stat(p, &st) == 0 && S_ISDIR(st.st_mode) && (!*out || st.st_mtime > best)) {
            free(*out);
            *out = p;
            best = st.st_mtime;
        } else {
            free(p);
        }
    }
    if (d) closedir(d);
    if (rc) {
        free(*out);
        *out = NULL;
    }
    free(snaps);
    free(refp);
    return rc;
}

char *cb_model_resolve(const char *name, cb_err *err) {
    if (cb_dir_exists(name)) return cb_strdup(name, err);
    struct stat st;
    if (stat(name, &st) == 0) {
        cb_err_set(err, "%s: model path is not a directory (give the directory that holds "
                   "config.json and model.safetensors)", name);
        return NULL;
    }
    if (!is_hub_id(name)) {
        cb_err_set(err, "%s: model directory does not exist", name);
        return NULL;
    }
    /* "ORG/NAME" -> "models--ORG--NAME" */
    size_t n = strlen(name);
    char *hub = hf_hub_dir(err), *repo_name = cb_malloc(8 + 2 * n + 1, "a file name", err), *repo = NULL;
    char *snap = NULL;
    if (hub && repo_name) {
        char *w = repo_name + sprintf(repo_name, "models--");
        for (const char *r = name; *r; r++) {
            if (*r == '/') { *w++ = '-'; *w++ = '-'; }
            else *w++ = *r;
        }
        *w = '\0';
        repo = cb_path_new(hub, repo_name, err);
    }
    if (repo && !hf_snapshot(repo, &snap, err) && !snap)
        cb_err_set(err, "model '%s': no such directory, and not in the local Hugging Face "
                   "cache (looked for %s/snapshots/*; cache from $HF_HOME or "
                   "~/.cache/huggingface); give a model directory path, or put the model in "
                   "the cache (e.g. `huggingface-cli download %s`); nothing is downloaded",
                   name, repo, name);
    free(repo);
    free(repo_name);
    free(hub);
    return snap;
}

/* ---- config.json -------------------------------------------------------- */

/* An integer key in [lo, hi]. Missing: *out = def when optional (def_ok),
 * else an error. */
static int cfg_int(const json_t *root, const char *path, const char *key, int *out,
                   int def_ok, int def, long long lo, long long hi, cb_err *err) {
    const json_t *v = json_object_get(root, key);
    if (!v || (def_ok && json_is_null(v))) {
        if (def_ok) { *out = def; return 0; }
        return cb_err_set(err, "%s: required key \"%s\" is missing", path, key);
    }
    if (!json_is_integer(v))
        return cb_err_set(err, "%s: key \"%s\" must be an integer", path, key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return cb_err_set(err, "%s: key \"%s\" is %lld, expected %lld..%lld", path, key, x,
                          lo, hi);
    *out = (int)x;
    return 0;
}

/* A number key in [lo, hi) (hi exclusive only when hi_open), default def. */
static int cfg_num(const json_t *root, const char *path, const char *key, float *out,
                   double def, double lo, double hi, int hi_open, cb_err *err) {
    const json_t *v = json_object_get(root, key);
    if (!v) { *out = (float)def; return 0; }
    if (!json_is_number(v))
        return cb_err_set(err, "%s: key \"%s\" must be a number", path, key);
    double x = json_number_value(v);
    if (!(x >= lo && (hi_open ? x < hi : x <= hi)))
        return cb_err_set(err, "%s: key \"%s\" is %g, expected %g..%g%s", path, key, x, lo,
                          hi, hi_open ? " (exclusive)" : "");
    *out = (float)x;
    return 0;
}

/* An optional string key; NULL when missing, error when not a string. */
static int cfg_str(const json_t *root, const char *path, const char *key,
                   const char **out, cb_err *err) {
    const json_t *v = json_object_get(root, key);
    *out = NULL;
    if (!v) return 0;
    if (!json_is_string(v))
        return cb_err_set(err, "%s: key \"%s\" must be a string", path, key);
    *out = json_string_value(v);
    return 0;
}

static int bert_config_parse(bert_config *c, const json_t *root, const char *path,
                             cb_err *err) {
    if (!json_is_object(root))
        return cb_err_set(err, "%s: expected a JSON object", path);
    const char *s;
    if (cfg_str(root, path, "model_type", &s, err)) return -1;
    if (!s) return cb_err_set(err, "%s: required key \"model_type\" is missing", path);
    const backbone_family *fam = cb_backbone_family_find(s);
    if (!fam || strcmp(fam->arch->name, "bert"))
        return cb_err_set(err, "%s: model_type '%s' is not supported yet (supported: %s)", path, s,
                          cb_backbone_families());
    snprintf(c->model_type, sizeof c->model_type, "%s", s);
    c->positions = (int)fam->positions;

    /* transformers' "gelu" and "gelu_python" are both the exact erf GELU. */
    if (cfg_str(root, path, "hidden_act", &s, err)) return -1;
    if (s && strcmp(s, "gelu") && strcmp(s, "gelu_python"))
        return cb_err_set(err, "%s: hidden_act '%s' is not supported (only the exact "
                          "erf \"gelu\")", path, s);
    if (cfg_str(root, path, "position_embedding_type", &s, err)) return -1;
    if (s && strcmp(s, "absolute"))
        return cb_err_set(err, "%s: position_embedding_type '%s' is not supported (only "
                          "\"absolute\")", path, s);

    const long long big = 1 << 30;
    if (cfg_int(root, path, "vocab_size", &c->vocab_size, 0, 0, 1, big, err) ||
        cfg_int(root, path, "hidden_size", &c->hidden_size, 0, 0, 1, 1 << 20, err) ||
        cfg_int(root, path, "num_hidden_layers", &c->num_hidden_layers, 0, 0, 1, 1024, err) ||
        cfg_int(root, path, "num_attention_heads", &c->num_attention_heads, 0, 0, 1, 1024,
                err) ||
        cfg_int(root, path, "intermediate_size", &c->intermediate_size, 0, 0, 1, 1 << 22,
                err) ||
        cfg_int(root, path, "max_position_embeddings", &c->max_position_embeddings, 0, 0, 1,
                1 << 20, err) ||
        cfg_int(root, path, "type_vocab_size", &c->type_vocab_size, 1, 2, 1, 1 << 20, err) ||
        cfg_int(root, path, "pad_token_id", &c->pad_token_id, 1, fam->default_pad_id, 0, big, err) ||
        cfg_num(root, path, "layer_norm_eps", &c->layer_norm_eps, 1e-12, 1e-30, 1, 0, err) ||
        cfg_num(root, path, "initializer_range", &c->initializer_range, 0.02, 0, 10, 0, err) ||
        cfg_num(root, path, "hidden_dropout_prob", &c->hidden_dropout_prob, 0.1, 0, 1, 1,
                err) ||
        cfg_num(root, path, "attention_probs_dropout_prob", &c->attention_probs_dropout_prob,
                0.1, 0, 1, 1, err))
        return -1;
    if (c->hidden_size % c->num_attention_heads)
        return cb_err_set(err, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                          path, c->hidden_size, c->num_attention_heads);
    if (c->pad_token_id >= c->vocab_size)
        return cb_err_set(err, "%s: pad_token_id %d is outside the vocabulary (vocab_size %d)",
                          path, c->pad_token_id, c->vocab_size);
    /* POS_AFTER_PAD: positions pad + 1 .. max_position_embeddings - 1 */
    c->max_len = c->positions == POS_AFTER_PAD ? c->max_position_embeddings - c->pad_token_id - 1
                                               : c->max_position_embeddings;
    if (c->max_len < 1)
        return cb_err_set(err, "%s: max_position_embeddings %d leaves no position after pad_token_id %d "
                          "(model_type '%s' numbers positions from pad_token_id + 1)", path,
                          c->max_position_embeddings, c->pad_token_id, c->model_type);
    return 0;
}

int cb_bert_config_load(bert_config *c, const char *dir, cb_err *err) {
    memset(c, 0, sizeof *c);
    char *path;
    json_t *root = json_load_in(dir, "config.json", &path, err);
    int rc = root ? bert_config_parse(c, root, path, err) : -1;
    json_decref(root);
    free(path);
    return rc;
}

/* ---- sentence-transformers ---------------------------------------------- */

/* 1_Pooling/config.json: exactly one pooling_mode_* flag set, and one that
 * we implement. */
static int pooling_parse(sbert_config *c, const json_t *root, const char *path,
                         cb_err *err) {
    static const struct { const char *key; int mode; } modes[] = {
        {"pooling_mode_cls_token", POOL_CLS},
        {"pooling_mode_mean_tokens", POOL_MEAN},
        {"pooling_mode_max_tokens", POOL_MAX},
        {"pooling_mode_mean_sqrt_len_tokens", POOL_MEAN_SQRT_LEN},
        {"pooling_mode_weightedmean_tokens", -1},
        {"pooling_mode_lasttoken", -1},
    };
    if (!json_is_object(root)) return cb_err_set(err, "%s: expected a JSON object", path);
    char set[256] = "";
    int nset = 0;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        const json_t *v = json_object_get(root, modes[i].key);
        if (!v || json_is_false(v) || json_is_null(v)) continue;
        if (!json_is_true(v))
            return cb_err_set(err, "%s: key \"%s\" must be true or false", path, modes[i].key);
        if (modes[i].mode < 0)
            return cb_err_set(err, "%s: %s is not supported (cls, mean, max or "
                              "mean_sqrt_len pooling only)", path, modes[i].key);
        size_t l = strlen(set);
        snprintf(set + l, sizeof set - l, "%s%s", nset ? " + " : "", modes[i].key);
        c->pooling = (sbert_pooling)modes[i].mode;
        nset++;
    }
    const json_t *ip = json_object_get(root, "include_prompt");
    if (ip && !json_is_boolean(ip))
        return cb_err_set(err, "%s: key \"include_prompt\" must be true or false", path);
    c->include_prompt = !json_is_false(ip);
    if (nset == 0)
        return cb_err_set(err, "%s: no pooling_mode_* key is true", path);
    if (nset > 1)
        return cb_err_set(err, "%s: combined pooling (%s) is not supported; set exactly "
                          "one pooling_mode_*", path, set);
    return 0;
}

static int modules_parse(sbert_config *c, const json_t *mods, const char *dir,
                         const char *path, cb_err *err) {
    if (!json_is_array(mods))
        return cb_err_set(err, "%s: expected a JSON array of modules", path);
    size_t i;
    const json_t *m;
    json_array_foreach(mods, i, m) {
        const json_t *jt = json_object_get(m, "type"), *jp = json_object_get(m, "path");
        if (!json_is_object(m) || !json_is_string(jt) || (jp && !json_is_string(jp)))
            return cb_err_set(err, "%s: module %zu must be an object with string \"type\" "
                              "and \"path\"", path, i);
        const char *type = json_string_value(jt);
        const char *sub = jp ? json_string_value(jp) : "";
        const char *dot = strrchr(type, '.');
        const char *cls = dot ? dot + 1 : type;
        if (!strcmp(cls, "Transformer")) {
            continue;
        } else if (!strcmp(cls, "Normalize")) {
            c->normalize = 1;             /* has no files; its directory may be absent */
        } else if (!strcmp(cls, "Pooling")) {
            char *pdir = cb_path_new(dir, sub, err), *ppath = NULL;
            json_t *pc = pdir ? json_load_in(pdir, "config.json", &ppath, err) : NULL;
            int rc = pc ? pooling_parse(c, pc, ppath, err) : -1;
            json_decref(pc);
            free(ppath);
            free(pdir);
            if (rc) return -1;
        } else {
            return cb_err_set(err, "%s: module %zu '%s' is not supported (Transformer, "
                              "Pooling and Normalize only)", path, i, type);
        }
    }
    return 0;
}

/* One prompt of config_sentence_transformers.json's "prompts" into dst
 * (left as it is when the name is absent); 1 when set, 0 when absent, -1
 * with err. */
static int prompt_get(char *dst, size_t cap, const json_t *prompts, const char *name, const char *path,
                      cb_err *err) {
    const json_t *v = json_object_get(prompts, name);
    if (!v) return 0;
    if (!json_is_string(v)) return cb_err_set(err, "%s: prompt \"%s\" must be a string", path, name);
    if (strlen(json_string_value(v)) >= cap)
        return cb_err_set(err, "%s: prompt \"%s\" is longer than %zu bytes (not supported)", path, name, cap - 1);
    snprintf(dst, cap, "%s", json_string_value(v));
    return 1;
}

/* config_sentence_transformers.json: the query and document prompts. */
static int prompts_parse(sbert_config *c, const json_t *root, const char *path, cb_err *err) {
    if (!json_is_object(root)) return cb_err_set(err, "%s: expected a JSON object", path);
    const json_t *prompts = json_object_get(root, "prompts"), *def = json_object_get(root, "default_prompt_name");
    if (prompts && !json_is_null(prompts) && !json_is_object(prompts))
        return cb_err_set(err, "%s: key \"prompts\" must be an object of strings", path);
    if (def && !json_is_null(def) && !json_is_string(def))
        return cb_err_set(err, "%s: key \"default_prompt_name\" must be a string or null", path);
    if (!json_is_object(prompts)) {
        if (json_is_string(def))
            return cb_err_set(err, "%s: default_prompt_name \"%s\" names no prompt (no \"prompts\")", path,
                              json_string_value(def));
        return 0;
    }
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)prompts, k, v)
        if (!json_is_string(v)) return cb_err_set(err, "%s: prompt \"%s\" must be a string", path, k);
    char dflt[sizeof c->prompt_query] = "";
    if (json_is_string(def)) {
        int rc = prompt_get(dflt, sizeof dflt, prompts, json_string_value(def), path, err);
        if (rc < 0) return -1;
        if (rc == 0)
            return cb_err_set(err, "%s: default_prompt_name \"%s\" is not among the prompts", path,
                              json_string_value(def));
    }
    int rc = prompt_get(c->prompt_query, sizeof c->prompt_query, prompts, "query", path, err);
    if (rc < 0) return -1;
    if (rc == 0) memcpy(c->prompt_query, dflt, sizeof dflt);
    static const char *doc_names[] = {"document", "passage", "corpus"};
    rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++) rc = prompt_get(c->prompt_doc, sizeof c->prompt_doc, prompts, doc_names[i],
                                                         path, err);
    if (rc < 0) return -1;
    if (rc == 0) memcpy(c->prompt_doc, dflt, sizeof dflt);
    return 0;
}

int cb_sbert_config_load(sbert_config *c, const char *dir, cb_err *err) {
    memset(c, 0, sizeof *c);
    c->pooling = POOL_MEAN;
    c->include_prompt = 1;
    int rc = 0;
    char *path = cb_path_new(dir, "modules.json", err);
    if (!path) return -1;
    if (cb_file_exists(path)) {
        c->is_sbert = 1;
        json_t *mods = cb_json_load(path, JSON_REJECT_DUPLICATES, err);
        rc = mods ? modules_parse(c, mods, dir, path, err) : -1;
        json_decref(mods);
    }
    free(path);
    if (rc) return rc;

    if (!(path = cb_path_new(dir, "sentence_bert_config.json", err))) return -1;
    if (cb_file_exists(path)) {
        json_t *sb = cb_json_load(path, JSON_REJECT_DUPLICATES, err);
        if (!sb) rc = -1;
        else if (!json_is_object(sb)) rc = cb_err_set(err, "%s: expected a JSON object", path);
        else {
            const json_t *v = json_object_get(sb, "max_seq_length");
            if (v && !json_is_null(v)) {
                if (!json_is_integer(v) || json_integer_value(v) < 1 ||
                    json_integer_value(v) > INT_MAX)
                    rc = cb_err_set(err, "%s: key \"max_seq_length\" must be a positive "
                                    "integer", path);
                else c->max_seq_length = (int)json_integer_value(v);
            }
        }
        json_decref(sb);
    }
    free(path);
    if (rc) return rc;

    if (!(path = cb_path_new(dir, "config_sentence_transformers.json", err))) return -1;
    if (cb_file_exists(path)) {
        json_t *cs = cb_json_load(path, 0, err);
        rc = cs ? prompts_parse(c, cs, path, err) : -1;
        json_decref(cs);
        if (!rc && !c->include_prompt && (c->prompt_query[0] || c->prompt_doc[0]))
            rc = cb_err_set(err, "%s: prompts with 1_Pooling's include_prompt false (the prompt's tokens left out "
                            "of the pooling) are not supported", path);
    }
    free(path);
    return rc;
}
