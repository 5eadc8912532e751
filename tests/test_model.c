/* test_model.c: model directories and their JSON files.
 *
 * cb_model_resolve on a fake Hugging Face cache built in $COLBERT_TMP (refs/main,
 * a stale ref, several snapshots, $HF_HOME and $HF_HUB_CACHE), the errors for
 * a missing directory; cb_bert_config_load on the real all-MiniLM-L6-v2 config
 * and on broken ones (malformed JSON, missing or mistyped keys, other model
 * types, bad sizes); cb_sbert_config_load on the real model (mean pooling,
 * Normalize, max_seq_length 256) and on broken pooling configs.
 */
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <utime.h>

#include "colmodel.h"
#include "model.h"
#include "test.h"

static const char *tmpdir;
static char model_dir[4096];

static char *tmp_path(const char *name) {
    static char buf[8][4096];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", tmpdir, name);
    return p;
}

/* mkdir -p */
static void mkdirs(const char *path) {
    char p[4096];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') { *s = '\0'; mkdir(p, 0755); *s = '/'; }
    mkdir(p, 0755);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f)) {
        fprintf(stderr, "test: cannot write %s\n", path);
        exit(2);
    }
}

/* A directory <tmp>/<name> holding config.json = text; returns the dir. */
static const char *config_dir(const char *name, const char *text) {
    char *dir = tmp_path(name);
    mkdirs(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, text);
    return dir;
}

#define CHECK_ERR(rc, err, ...)                                                \
    do {                                                                       \
        const char *want_[] = {__VA_ARGS__};                                   \
        CHECK_MSG((rc) != 0, "expected an error");                             \
        for (size_t i_ = 0; i_ < sizeof want_ / sizeof want_[0]; i_++)         \
            CHECK_MSG(strstr((err).msg, want_[i_]) != NULL,                    \
                      "expected '%s' in: %s", want_[i_], (err).msg);           \
        CHECK_MSG(strchr((err).msg, '\n') == NULL, "not one line: %s",         \
                  (err).msg);                                                  \
        if (getenv("TEST_VERBOSE")) printf("  %s\n", (err).msg);               \
    } while (0)

/* ---- cb_model_resolve --------------------------------------------------------- */

static void test_resolve(void) {
    cb_err err = {{0}};
    char *p = cb_model_resolve(model_dir, &err);
    CHECK(p && !strcmp(p, model_dir));
    free(p);

    /* fake cache: $HF_HOME/hub/models--acme--tiny-bert/{refs/main,snapshots/...} */
    char *home = tmp_path("hf_home");
    char repo[4200], snap_a[4300], snap_b[4300], ref[4300];
    snprintf(repo, sizeof repo, "%s/hub/models--acme--tiny-bert", home);
    snprintf(snap_a, sizeof snap_a, "%s/snapshots/aaaa1111", repo);
    snprintf(snap_b, sizeof snap_b, "%s/snapshots/bbbb2222", repo);
    snprintf(ref, sizeof ref, "%s/refs", repo);
    mkdirs(snap_a);
    mkdirs(snap_b);
    mkdirs(ref);
    strcat(ref, "/main");
    write_text(ref, "aaaa1111\n");
    /* b is the newer snapshot; refs/main must still win */
    struct utimbuf old = {.actime = time(NULL) - 1000, .modtime = time(NULL) - 1000};
    utime(snap_a, &old);
    setenv("HF_HOME", home, 1);
    unsetenv("HF_HUB_CACHE");

    p = cb_model_resolve("acme/tiny-bert", &err);
    CHECK_MSG(p && strcmp(p, snap_a) == 0, "got %s, want %s (%s)", p ? p : "NULL", snap_a,
              p ? "" : err.msg);
    free(p);

    /* refs/main naming a snapshot that is gone: the newest snapshot */
    write_text(ref, "cccc3333");
    p = cb_model_resolve("acme/tiny-bert", &err);
    CHECK_MSG(p && strcmp(p, snap_b) == 0, "got %s, want %s", p ? p : "NULL", snap_b);
    free(p);
    /* no refs at all: the newest snapshot */
    remove(ref);
    p = cb_model_resolve("acme/tiny-bert", &err);
    CHECK_MSG(p && strcmp(p, snap_b) == 0, "got %s, want %s", p ? p : "NULL", snap_b);
    free(p);

    /* a legacy id without organisation */
    char legacy[4300];
    snprintf(legacy, sizeof legacy, "%s/hub/models--bert-tiny/snapshots/0123", home);
    mkdirs(legacy);
    p = cb_model_resolve("bert-tiny", &err);
    CHECK_MSG(p && strcmp(p, legacy) == 0, "got %s", p ? p : err.msg);
    free(p);

    /* $HF_HUB_CACHE overrides $HF_HOME, as in huggingface_hub */
    char hub2[4200];
    snprintf(hub2, sizeof hub2, "%s/hub2/models--acme--other/snapshots/ffff", tmpdir);
    mkdirs(hub2);
    char hub2root[4200];
    snprintf(hub2root, sizeof hub2root, "%s/hub2", tmpdir);
    setenv("HF_HUB_CACHE", hub2root, 1);
    p = cb_model_resolve("acme/other", &err);
    CHECK_MSG(p && strcmp(p, hub2) == 0, "got %s", p ? p : err.msg);
    free(p);
    unsetenv("HF_HUB_CACHE");

    /* a repo with an empty snapshots dir, and one not in the cache at all */
    char empty[4300];
    snprintf(empty, sizeof empty, "%s/hub/models--acme--empty/snapshots", home);
    mkdirs(empty);
    p = cb_model_resolve("acme/empty", &err);
    CHECK(p == NULL);
    CHECK_ERR(p != NULL ? 0 : -1, err, "acme/empty", "models--acme--empty", "Hugging Face");
    p = cb_model_resolve("acme/missing", &err);
    CHECK(p == NULL);
    CHECK_ERR(p != NULL ? 0 : -1, err, "acme/missing", home, "models--acme--missing",
              "give a model directory path", "cache");

    /* paths: missing directory, a file */
    p = cb_model_resolve(tmp_path("no/such/model"), &err);
    CHECK(p == NULL);
    CHECK_ERR(p != NULL ? 0 : -1, err, "no/such/model", "does not exist");
    p = cb_model_resolve("./no-such-model-dir", &err);
    CHECK(p == NULL);
    CHECK_ERR(p != NULL ? 0 : -1, err, "./no-such-model-dir", "does not exist");
    char cfg[4200];
    snprintf(cfg, sizeof cfg, "%s/config.json", model_dir);
    p = cb_model_resolve(cfg, &err);
    CHECK(p == NULL);
    CHECK_ERR(p != NULL ? 0 : -1, err, "config.json", "not a directory");
    unsetenv("HF_HOME");
}

/* ---- config.json ------------------------------------------------------------ */

static const char *good_config =
    "{\"model_type\": \"bert\", \"vocab_size\": 100, \"hidden_size\": 64,\n"
    " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 128,\n"
    " \"max_position_embeddings\": 32%s}";

static const char *with(const char *extra) {
    static char buf[2048];
    snprintf(buf, sizeof buf, good_config, extra);
    return buf;
}

static void test_bert_config(void) {
    bert_config c;
    cb_err err = {{0}};
    int rc = cb_bert_config_load(&c, model_dir, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(!strcmp(c.model_type, "bert"));
    CHECK(c.vocab_size == 30522 && c.hidden_size == 384 && c.num_hidden_layers == 6);
    CHECK(c.num_attention_heads == 12 && c.intermediate_size == 1536);
    CHECK(c.max_position_embeddings == 512 && c.type_vocab_size == 2 && c.pad_token_id == 0);
    CHECK(c.layer_norm_eps == 1e-12f && c.initializer_range == 0.02f);
    CHECK(c.hidden_dropout_prob == 0.1f && c.attention_probs_dropout_prob == 0.1f);

    /* defaults of transformers' BertConfig for the optional keys */
    rc = cb_bert_config_load(&c, config_dir("cfg-min", with("")), &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(c.type_vocab_size == 2 && c.pad_token_id == 0 && c.layer_norm_eps == 1e-12f);
    CHECK(c.initializer_range == 0.02f && c.hidden_dropout_prob == 0.1f &&
          c.attention_probs_dropout_prob == 0.1f);
    rc = cb_bert_config_load(&c, config_dir("cfg-set", with(
             ", \"type_vocab_size\": 1, \"pad_token_id\": 3, \"layer_norm_eps\": 1e-5,"
             " \"initializer_range\": 0.05, \"hidden_dropout_prob\": 0,"
             " \"attention_probs_dropout_prob\": 0.25, \"hidden_act\": \"gelu\","
             " \"position_embedding_type\": \"absolute\"")), &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(c.type_vocab_size == 1 && c.pad_token_id == 3 && c.layer_norm_eps == 1e-5f);
    CHECK(c.initializer_range == 0.05f && c.hidden_dropout_prob == 0.0f &&
          c.attention_probs_dropout_prob == 0.25f);

    /* errors: each names config.json and the key or problem */
    rc = cb_bert_config_load(&c, tmp_path("no-such-dir"), &err);
    CHECK_ERR(rc, err, "no-such-dir/config.json", "cannot open");
    rc = cb_bert_config_load(&c, config_dir("cfg-json", "{\"model_type\": \"bert\",\n"
                                         "  \"hidden_size\": 64,,\n}"), &err);
    CHECK_ERR(rc, err, "cfg-json/config.json", "invalid JSON", "line 2, column");
    rc = cb_bert_config_load(&c, config_dir("cfg-empty", ""), &err);
    CHECK_ERR(rc, err, "cfg-empty/config.json", "invalid JSON");
    rc = cb_bert_config_load(&c, config_dir("cfg-array", "[1]"), &err);
    CHECK_ERR(rc, err, "cfg-array/config.json", "expected a JSON object");
    rc = cb_bert_config_load(&c, config_dir("cfg-deberta", "{\"model_type\": \"deberta-v2\"}"), &err);
    CHECK_ERR(rc, err, "config.json", "model_type 'deberta-v2' is not supported yet "
              "(supported: bert, roberta, xlm-roberta, camembert, modernbert)");
    rc = cb_bert_config_load(&c, config_dir("cfg-llama", "{\"model_type\": \"llama\"}"), &err);
    CHECK_ERR(rc, err, "model_type 'llama' is not supported yet");
    /* the RoBERTa families: pad_token_id 1 by default, positions from pad + 1 */
    static const char *rob[] = {"roberta", "xlm-roberta", "camembert"};
    for (int i = 0; i < 3; i++) {
        char text[512];
        snprintf(text, sizeof text, "{\"model_type\": \"%s\", \"vocab_size\": 100, \"hidden_size\": 64, "
                 "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"intermediate_size\": 128, "
                 "\"max_position_embeddings\": 514, \"type_vocab_size\": 1, \"layer_norm_eps\": 1e-05}", rob[i]);
        rc = cb_bert_config_load(&c, config_dir(rob[i], text), &err);
        CHECK_MSG(rc == 0 && c.pad_token_id == 1 && c.max_len == 512 && c.positions == POS_AFTER_PAD &&
                  c.type_vocab_size == 1 && c.layer_norm_eps == 1e-5f, "%s: %s", rob[i], rc ? err.msg : "values");
    }
    rc = cb_bert_config_load(&c, config_dir("cfg-rob-pos", "{\"model_type\": \"roberta\", \"vocab_size\": 100, "
             "\"hidden_size\": 64, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
             "\"intermediate_size\": 128, \"max_position_embeddings\": 2}"), &err);
    CHECK_ERR(rc, err, "config.json", "max_position_embeddings 2 leaves no position after pad_token_id 1");
    CHECK(cb_bert_config_load(&c, model_dir, &err) == 0 && c.max_len == 512 && c.positions == POS_FROM_ZERO);
    rc = cb_bert_config_load(&c, config_dir("cfg-notype", "{\"hidden_size\": 64}"), &err);
    CHECK_ERR(rc, err, "cfg-notype/config.json", "\"model_type\" is missing");
    rc = cb_bert_config_load(&c, config_dir("cfg-typeint", "{\"model_type\": 3}"), &err);
    CHECK_ERR(rc, err, "\"model_type\" must be a string");
    rc = cb_bert_config_load(&c, config_dir("cfg-nohidden",
             "{\"model_type\": \"bert\", \"vocab_size\": 100}"), &err);
    CHECK_ERR(rc, err, "cfg-nohidden/config.json", "required key \"hidden_size\" is missing");
    rc = cb_bert_config_load(&c, config_dir("cfg-strsize", "{\"model_type\": \"bert\", "
             "\"vocab_size\": 100, \"hidden_size\": \"64\"}"), &err);
    CHECK_ERR(rc, err, "config.json", "\"hidden_size\" must be an integer");
    rc = cb_bert_config_load(&c, config_dir("cfg-zero", "{\"model_type\": \"bert\", "
             "\"vocab_size\": 0}"), &err);
    CHECK_ERR(rc, err, "config.json", "\"vocab_size\" is 0");
    rc = cb_bert_config_load(&c, config_dir("cfg-heads", with(", \"num_attention_heads\": 5")),
                          &err);
    /* duplicate key: rejected as malformed */
    CHECK_ERR(rc, err, "config.json", "duplicate");
    rc = cb_bert_config_load(&c, config_dir("cfg-heads2",
             "{\"model_type\": \"bert\", \"vocab_size\": 100, \"hidden_size\": 64,"
             " \"num_hidden_layers\": 2, \"num_attention_heads\": 5,"
             " \"intermediate_size\": 128, \"max_position_embeddings\": 32}"), &err);
    CHECK_ERR(rc, err, "config.json", "hidden_size 64 is not a multiple of "
              "num_attention_heads 5");
    rc = cb_bert_config_load(&c, config_dir("cfg-act", with(", \"hidden_act\": \"relu\"")), &err);
    CHECK_ERR(rc, err, "config.json", "hidden_act 'relu' is not supported");
    rc = cb_bert_config_load(&c, config_dir("cfg-gelu-new", with(", \"hidden_act\": \"gelu_new\"")),
                          &err);
    CHECK_ERR(rc, err, "hidden_act 'gelu_new'");
    rc = cb_bert_config_load(&c, config_dir("cfg-pos", with(
             ", \"position_embedding_type\": \"relative_key\"")), &err);
    CHECK_ERR(rc, err, "config.json", "position_embedding_type 'relative_key'");
    rc = cb_bert_config_load(&c, config_dir("cfg-eps", with(", \"layer_norm_eps\": \"1e-12\"")),
                          &err);
    CHECK_ERR(rc, err, "config.json", "\"layer_norm_eps\" must be a number");
    rc = cb_bert_config_load(&c, config_dir("cfg-drop", with(", \"hidden_dropout_prob\": 1.0")),
                          &err);
    CHECK_ERR(rc, err, "config.json", "\"hidden_dropout_prob\" is 1");
    rc = cb_bert_config_load(&c, config_dir("cfg-pad", with(", \"pad_token_id\": 100")), &err);
    CHECK_ERR(rc, err, "config.json", "pad_token_id 100 is outside the vocabulary");
    rc = cb_bert_config_load(&c, config_dir("cfg-big", with(
             ", \"type_vocab_size\": 99999999999999")), &err);
    CHECK_ERR(rc, err, "config.json", "\"type_vocab_size\" is 99999999999999");
}

/* ---- sentence-transformers ------------------------------------------------------ */

static const char *sbert_dir(const char *name, const char *modules, const char *pooling,
                             const char *sbert_cfg) {
    char *dir = tmp_path(name);
    char path[4300];
    snprintf(path, sizeof path, "%s/1_Pooling", dir);
    mkdirs(path);
    if (modules) {
        snprintf(path, sizeof path, "%s/modules.json", dir);
        write_text(path, modules);
    }
    if (pooling) {
        snprintf(path, sizeof path, "%s/1_Pooling/config.json", dir);
        write_text(path, pooling);
    }
    if (sbert_cfg) {
        snprintf(path, sizeof path, "%s/sentence_bert_config.json", dir);
        write_text(path, sbert_cfg);
    }
    return dir;
}

static const char *mods_tp =
    "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", "
    "\"type\": \"sentence_transformers.models.Transformer\"},"
    " {\"idx\": 1, \"name\": \"1\", \"path\": \"1_Pooling\", "
    "\"type\": \"sentence_transformers.models.Pooling\"}]";

static void test_sbert_config(void) {
    sbert_config s;
    cb_err err = {{0}};
    int rc = cb_sbert_config_load(&s, model_dir, &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(s.is_sbert == 1 && s.pooling == POOL_MEAN && s.normalize == 1);
    CHECK(s.max_seq_length == 256);

    /* a plain model: defaults */
    rc = cb_sbert_config_load(&s, config_dir("plain", with("")), &err);
    CHECK(rc == 0 && s.is_sbert == 0 && s.pooling == POOL_MEAN && s.normalize == 0 &&
          s.max_seq_length == 0);

    rc = cb_sbert_config_load(&s, sbert_dir("sb-cls", mods_tp,
             "{\"pooling_mode_cls_token\": true, \"pooling_mode_mean_tokens\": false}",
             "{\"max_seq_length\": 512}"), &err);
    CHECK_MSG(rc == 0, "%s", err.msg);
    CHECK(s.is_sbert && s.pooling == POOL_CLS && !s.normalize && s.max_seq_length == 512);
    rc = cb_sbert_config_load(&s, sbert_dir("sb-max", mods_tp,
             "{\"pooling_mode_max_tokens\": true}", NULL), &err);
    CHECK(rc == 0 && s.pooling == POOL_MAX && s.max_seq_length == 0);
    rc = cb_sbert_config_load(&s, sbert_dir("sb-sqrt", mods_tp,
             "{\"pooling_mode_mean_sqrt_len_tokens\": true}", NULL), &err);
    CHECK(rc == 0 && s.pooling == POOL_MEAN_SQRT_LEN);

    rc = cb_sbert_config_load(&s, sbert_dir("sb-combined", mods_tp,
             "{\"pooling_mode_cls_token\": true, \"pooling_mode_mean_tokens\": true}", NULL),
             &err);
    CHECK_ERR(rc, err, "sb-combined/1_Pooling/config.json", "combined pooling",
              "not supported");
    rc = cb_sbert_config_load(&s, sbert_dir("sb-nomode", mods_tp,
             "{\"pooling_mode_cls_token\": false}", NULL), &err);
    CHECK_ERR(rc, err, "1_Pooling/config.json", "no pooling_mode_* key is true");
    rc = cb_sbert_config_load(&s, sbert_dir("sb-weighted", mods_tp,
             "{\"pooling_mode_weightedmean_tokens\": true}", NULL), &err);
    CHECK_ERR(rc, err, "1_Pooling/config.json", "pooling_mode_weightedmean_tokens is not "
              "supported");
    rc = cb_sbert_config_load(&s, sbert_dir("sb-nopool", mods_tp, NULL, NULL), &err);
    CHECK_ERR(rc, err, "sb-nopool/1_Pooling/config.json", "cannot open");
    rc = cb_sbert_config_load(&s, sbert_dir("sb-badpool", mods_tp, "{\"pooling_mode", NULL),
                           &err);
    CHECK_ERR(rc, err, "sb-badpool/1_Pooling/config.json", "invalid JSON", "line 1");
    rc = cb_sbert_config_load(&s, sbert_dir("sb-badmods", "[{\"type\": }]", NULL, NULL), &err);
    CHECK_ERR(rc, err, "sb-badmods/modules.json", "invalid JSON", "column");
    rc = cb_sbert_config_load(&s, sbert_dir("sb-modobj", "{\"type\": \"x\"}", NULL, NULL), &err);
    CHECK_ERR(rc, err, "sb-modobj/modules.json", "expected a JSON array");
    rc = cb_sbert_config_load(&s, sbert_dir("sb-modtype", "[{\"path\": \"\"}]", NULL, NULL),
                           &err);
    CHECK_ERR(rc, err, "modules.json", "module 0");
    rc = cb_sbert_config_load(&s, sbert_dir("sb-dense",
             "[{\"path\": \"2_Dense\", \"type\": \"sentence_transformers.models.Dense\"}]",
             NULL, NULL), &err);
    CHECK_ERR(rc, err, "modules.json", "sentence_transformers.models.Dense", "not supported");
    rc = cb_sbert_config_load(&s, sbert_dir("sb-badlen", mods_tp,
             "{\"pooling_mode_mean_tokens\": true}", "{\"max_seq_length\": -3}"), &err);
    CHECK_ERR(rc, err, "sentence_bert_config.json", "max_seq_length");
    rc = cb_sbert_config_load(&s, sbert_dir("sb-badsb", mods_tp,
             "{\"pooling_mode_mean_tokens\": true}", "{\"max_seq_length\": 256,}"), &err);
    CHECK_ERR(rc, err, "sb-badsb/sentence_bert_config.json", "invalid JSON");
}

/* artifact.metadata from memory: colbert-ai's keys at the top level or
 * under "config"; the dim it gives is reported (checked against
 * linear.weight at load); types and ranges checked. */
static void test_metadata(void) {
    colbert_config c;
    int dim = -1;
    cb_err err = {{0}};
    const char *t = "{\"dim\": 96, \"query_maxlen\": 24, \"doc_maxlen\": 180, \"relu\": true, \"meta\": {}}";
    cb_colbert_config_default(&c);
    CHECK_MSG(cb_colbert_metadata_parse(&c, &dim, t, strlen(t), "A", &err) == 0, "%s", err.msg);
    CHECK(dim == 96 && c.dim == 96 && c.query_maxlen == 24 && c.doc_maxlen == 180 && c.relu == 1);
    t = "{\"config\": {\"doc_maxlen\": 100}}";
    cb_colbert_config_default(&c);
    CHECK(cb_colbert_metadata_parse(&c, &dim, t, strlen(t), "A", &err) == 0 && dim == 0 && c.dim == 128 &&
          c.doc_maxlen == 100);
    static const struct { const char *text, *want; } bad[] = {
        {"{\"dim\": \"128\"}", "A: \"dim\" must be an integer or a boolean"},
        {"{\"dim\": -4}", "A: ColBERT settings out of range (dim -4"},
        {"{\"dim\": 0}", "dim 0: 1 .. 65536"},
        {"{\"query_maxlen\": 2}", "query_maxlen 2: >= 4"},
        {"{\"doc_maxlen\": -1}", "doc_maxlen -1: >= 3"},
        {"[1, 2]", "A: expected a JSON object at the top level"},
        {"{\"dim\": 12,", "A:1:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cb_colbert_config_default(&c);
        int rc = cb_colbert_metadata_parse(&c, &dim, bad[i].text, strlen(bad[i].text), "A", &err);
        CHECK_MSG(rc == -1 && strstr(err.msg, bad[i].want), "%s: %s", bad[i].text, err.msg);
    }
}

int main(void) {
    tmpdir = test_env("COLBERT_TMP");
    snprintf(model_dir, sizeof model_dir, "%s", test_env("COLBERT_MODEL"));
    test_resolve();
    test_bert_config();
    test_sbert_config();
    test_metadata();
    return test_finish("test_model");
}
