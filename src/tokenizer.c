/* tokenizer.c: loading a Hugging Face `tokenizers` tokenizer (tokenizer.json
 * with a WordPiece, Unigram or BPE model; or BERT's vocab.txt with
 * tokenizer_config.json), its post-processor and special tokens, and the
 * vocabulary accessors; see tokenizer.h. The encoding pipeline is in
 * tokenizer_encode.c, the Unigram and BPE models and their pipeline stages
 * in tok_*.c; adding tokens and writing the files in tokenizer_save.c. */
#include "tokenizer_encode.h"
#include "fsutil.h"

#include <jansson.h>
#include <stdlib.h>

/* Ids beyond this are refused: the id -> token table is sized by the
 * largest id (16M ids, 128 MB; the largest real vocabularies have ~1M). */
#define TOKENIZER_MAX_ID (1 << 24)

/* ---------------------------------------------------------------------------
 * Loading. */

static int json_bool(json_t *o, const char *key, int dflt) {
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

/* A token name given as "[CLS]" or {"content": "[CLS]", ...}; NULL if absent. */
static const char *json_token_name(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A JSON file whose root must be an object. */
static json_t *json_load_path(const char *path, cb_err *err) {
    json_t *root = cb_json_load(path, 0, err);
    if (root && !json_is_object(root)) {
        json_decref(root);
        cb_err_set(err, "%s: expected a JSON object at the top level", path);
        return NULL;
    }
    return root;
}

static int added_add(tokenizer *t, const char *content, int id, int lstrip, int rstrip, int single_word,
                     int normalized, cb_err *err) {
    added_token *grown = cb_realloc(t->added, (size_t)(t->n_added + 1) * sizeof *t->added, "added tokens", err);
    if (!grown) return -1;
    t->added = grown;
    added_token *a = &t->added[t->n_added];
    memset(a, 0, sizeof *a);
    if (!(a->content = cb_strdup(content, err))) return -1;
    t->n_added++;
    a->id = id;
    a->lstrip = lstrip;
    a->rstrip = rstrip;
    a->single_word = single_word;
    a->normalized = normalized;
    return 0;
}

/* Added tokens of a JSON array (tokenizer.json "added_tokens") or an object
 * {"id": {...}} (tokenizer_config.json "added_tokens_decoder"). */
static int added_load(tokenizer *t, json_t *arr_or_obj, const char *path, cb_err *err) {
    size_t n = json_is_array(arr_or_obj) ? json_array_size(arr_or_obj) : 0;
    const char *key;
    json_t *v;
    void *iter = json_is_object(arr_or_obj) ? json_object_iter(arr_or_obj) : NULL;
    for (size_t i = 0; i < n || iter; i++) {
        long long id;
        if (iter) {
            key = json_object_iter_key(iter);
            v = json_object_iter_value(iter);
            char *end;
            id = strtoll(key, &end, 10);
            if (*end || end == key) return cb_err_set(err, "%s: added token id '%s' is not a number", path, key);
            iter = json_object_iter_next(arr_or_obj, iter);
        } else {
            v = json_array_get(arr_or_obj, i);
            json_t *jid = json_object_get(v, "id");
            if (!json_is_integer(jid)) return cb_err_set(err, "%s: added_tokens[%zu] has no integer \"id\"", path, i);
            id = json_integer_value(jid);
        }
        json_t *c = json_object_get(v, "content");
        if (!json_is_string(c)) return cb_err_set(err, "%s: added token %lld has no string \"content\"", path, id);
        if (id < 0 || id > TOKENIZER_MAX_ID)
            return cb_err_set(err, "%s: added token id %lld out of range (0 .. %d)", path, id, TOKENIZER_MAX_ID);
        int special = json_bool(v, "special", 0);
        if (added_add(t, json_string_value(c), (int)id, json_bool(v, "lstrip", 0), json_bool(v, "rstrip", 0),
                      json_bool(v, "single_word", 0), json_bool(v, "normalized", !special), err))
            return -1;
    }
    return 0;
}

/* The WordPiece model of tokenizer.json with its BertNormalizer (or none)
 * and BertPreTokenizer. */
static int load_wordpiece(tokenizer *t, json_t *root, json_t *model, const char *path, cb_err *err) {
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0)
        return cb_err_set(err, "%s: model.vocab is missing or empty (expected a WordPiece token -> id map)", path);
    json_t *v = json_object_get(model, "unk_token");
    snprintf(t->unk_token, sizeof t->unk_token, "%s", json_is_string(v) ? json_string_value(v) : "[UNK]");
    v = json_object_get(model, "continuing_subword_prefix");
    if (json_is_string(v)) {
        if (strlen(json_string_value(v)) >= sizeof t->vocab.prefix)
            return cb_err_set(err, "%s: continuing_subword_prefix is too long", path);
        snprintf(t->vocab.prefix, sizeof t->vocab.prefix, "%s", json_string_value(v));
    }
    v = json_object_get(model, "max_input_chars_per_word");
    if (v && !json_is_null(v)) {
        /* HF reads a usize: a negative value or another type fails to load
         * there; a silent 0 here would turn every word into the unk token */
        if (!json_is_integer(v) || json_integer_value(v) < 1) {
            char b[32];
            return cb_err_set(err, "%s: model.max_input_chars_per_word must be an integer >= 1, found %s", path,
                              json_is_integer(v) ? (snprintf(b, sizeof b, "%lld", (long long)json_integer_value(v)), b)
                                                 : "a non-integer");
        }
        json_int_t m = json_integer_value(v);
        t->max_chars = m > INT32_MAX / 2 ? INT32_MAX / 2 : (int)m;
    }

    if (tok_vocab_init(&t->vocab, json_object_size(vocab), err)) return -1;
    const char *key;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > TOKENIZER_MAX_ID)
            return cb_err_set(err, "%s: model.vocab entry '%s' has no valid id (an integer 0 .. %d)", path, key,
                              TOKENIZER_MAX_ID);
        int old;   /* jansson keeps one value per key: no duplicate token here */
        if (tok_vocab_put(&t->vocab, key, strlen(key), (int)json_integer_value(v), &old, err)) return -1;
    }

    json_t *norm = json_object_get(root, "normalizer");
    if (json_is_null(norm) || !norm) {
        t->clean_text = t->handle_chinese = t->strip_accents = t->lowercase = 0;
    } else {
        json_t *nt = json_object_get(norm, "type");
        if (!json_is_string(nt) || strcmp(json_string_value(nt), "BertNormalizer"))
            return cb_err_set(err, "%s: normalizer type '%s' is not supported with a WordPiece model (only "
                                   "BertNormalizer)", path, json_is_string(nt) ? json_string_value(nt) : "?");
        t->clean_text = json_bool(norm, "clean_text", 1);
        t->handle_chinese = json_bool(norm, "handle_chinese_chars", 1);
        t->lowercase = json_bool(norm, "lowercase", 1);
        t->strip_accents = json_bool(norm, "strip_accents", t->lowercase);  /* null follows lowercase */
    }
    json_t *pt = json_object_get(json_object_get(root, "pre_tokenizer"), "type");
    if (!json_is_string(pt) || strcmp(json_string_value(pt), "BertPreTokenizer"))
        return cb_err_set(err, "%s: pre_tokenizer type '%s' is not supported with a WordPiece model (only "
                               "BertPreTokenizer)", path, json_is_string(pt) ? json_string_value(pt) : "none");
    return 0;
}

/* The ids of a post-processor's special token `name` (TemplateProcessing's
 * special_tokens map) appended to ids[*n]. */
static int template_special(json_t *specials, const char *name, int32_t *ids, int *n, const char *path,
                            cb_err *err) {
    json_t *ent = json_object_get(specials, name), *list = json_object_get(ent, "ids");
    if (!json_is_array(list))
        return cb_err_set(err, "%s: post_processor TemplateProcessing: special token '%s' has no \"ids\" in "
                               "special_tokens", path, name);
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x) {
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) > TOKENIZER_MAX_ID)
            return cb_err_set(err, "%s: post_processor TemplateProcessing: special token '%s' has an invalid id",
                              path, name);
        if (*n == TOKENIZER_TEMPLATE_MAX)
            return cb_err_set(err, "%s: post_processor: more than %d special tokens around a sequence", path,
                              TOKENIZER_TEMPLATE_MAX);
        ids[(*n)++] = (int32_t)json_integer_value(x);
    }
    return 0;
}

/* A [name, id] pair of RobertaProcessing / BertProcessing. */
static int pair_id(json_t *pp, const char *key, const char *type, const char *path, int32_t *id, cb_err *err) {
    json_t *v = json_object_get(pp, key), *x = json_array_get(v, 1);
    if (!json_is_array(v) || !json_is_integer(x) || json_integer_value(x) < 0 ||
        json_integer_value(x) > TOKENIZER_MAX_ID)
        return cb_err_set(err, "%s: post_processor %s: \"%s\" is not a [token, id] pair", path, type, key);
    *id = (int32_t)json_integer_value(x);
    return 0;
}

/* tokenizer.json's post_processor -> t->tmpl; *set: whether one adds
 * special tokens. */
static int load_post_processor(tokenizer *t, json_t *pp, const char *path, int depth, int *set, cb_err *err) {
    if (!pp || json_is_null(pp)) return 0;
    json_t *jt = json_object_get(pp, "type");
    const char *type = json_is_string(jt) ? json_string_value(jt) : "?";
    if (!strcmp(type, "ByteLevel")) return 0;   /* offsets only */
    if (!strcmp(type, "Sequence") && depth < 4) {
        json_t *list = json_object_get(pp, "processors");
        size_t i;
        json_t *x;
        if (!json_is_array(list)) return cb_err_set(err, "%s: post_processor Sequence without \"processors\"", path);
        json_array_foreach(list, i, x) if (load_post_processor(t, x, path, depth + 1, set, err)) return -1;
        return 0;
    }
    int is_tmpl = !strcmp(type, "TemplateProcessing");
    if (!is_tmpl && strcmp(type, "RobertaProcessing") && strcmp(type, "BertProcessing"))
        return cb_err_set(err, "%s: post_processor type '%s' is not supported (supported: TemplateProcessing, "
                               "RobertaProcessing, BertProcessing, ByteLevel, Sequence)", path, type);
    if (*set)
        return cb_err_set(err, "%s: post_processor: more than one processor adds special tokens", path);
    *set = 1;
    tokenizer_template *tm = &t->tmpl;
    memset(tm, 0, sizeof *tm);
    if (!is_tmpl) {
        tm->n_prefix = tm->n_suffix = 1;
        return pair_id(pp, "cls", type, path, &tm->prefix[0], err) || pair_id(pp, "sep", type, path, &tm->suffix[0], err)
                   ? -1 : 0;
    }
    json_t *single = json_object_get(pp, "single"), *specials = json_object_get(pp, "special_tokens");
    if (!json_is_array(single))
        return cb_err_set(err, "%s: post_processor TemplateProcessing without a \"single\" template", path);
    int seen_seq = 0;
    size_t i;
    json_t *piece;
    json_array_foreach(single, i, piece) {
        json_t *sp = json_object_get(piece, "SpecialToken"), *sq = json_object_get(piece, "Sequence");
        if (json_is_object(sq)) {
            if (seen_seq++)
                return cb_err_set(err, "%s: post_processor TemplateProcessing: the single template has two "
                                       "sequences", path);
        } else if (json_is_object(sp) && json_is_string(json_object_get(sp, "id"))) {
            const char *name = json_string_value(json_object_get(sp, "id"));
            if (seen_seq ? template_special(specials, name, tm->suffix, &tm->n_suffix, path, err)
                         : template_special(specials, name, tm->prefix, &tm->n_prefix, path, err))
                return -1;
        } else {
            return cb_err_set(err, "%s: post_processor TemplateProcessing: single[%zu] is neither a SpecialToken "
                                   "nor a Sequence", path, i);
        }
    }
    if (!seen_seq)
        return cb_err_set(err, "%s: post_processor TemplateProcessing: the single template has no $A", path);
    return 0;
}

static int load_tokenizer_json(tokenizer *t, const char *path, cb_err *err) {
    json_t *root = json_load_path(path, err);
    if (!root) return -1;
    int rc = -1, set = 0;
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) { cb_err_set(err, "%s: no \"model\" object", path); goto done; }
    json_t *type = json_object_get(model, "type");
    const char *ty = json_is_string(type) ? json_string_value(type) : NULL;
    if (!type) {   /* untagged, as HF reads it: by the fields present */
        ty = json_object_get(model, "merges") ? "BPE"
           : json_is_array(json_object_get(model, "vocab")) ? "Unigram" : "WordPiece";
    }
    if (ty && !strcmp(ty, "WordPiece")) {
        t->model = TOK_MODEL_WORDPIECE;
        if (load_wordpiece(t, root, model, path, err)) goto done;
    } else if (ty && (!strcmp(ty, "Unigram") || !strcmp(ty, "BPE"))) {
        if (!strcmp(ty, "Unigram")) {
            t->model = TOK_MODEL_UNIGRAM;
            if (tok_unigram_load(&t->uni, &t->vocab, model, path, err)) goto done;
        } else {
            t->model = TOK_MODEL_BPE;
            if (tok_bpe_load(&t->bpe, &t->vocab, model, path, err)) goto done;
        }
        if (tok_normalizer_load(&t->norm, json_object_get(root, "normalizer"), path, err) ||
            tok_pretokenizer_load(&t->pre, json_object_get(root, "pre_tokenizer"), path, err))
            goto done;
    } else {
        cb_err_set(err, "%s: model type '%s' is not supported (supported: WordPiece, Unigram, BPE)", path,
                   ty ? ty : "?");
        goto done;
    }
    if (load_post_processor(t, json_object_get(root, "post_processor"), path, 0, &set, err)) goto done;
    if (!set && t->model == TOK_MODEL_WORDPIECE) t->tmpl.n_prefix = -1;   /* [CLS] ... [SEP], resolved at finish */
    json_t *added = json_object_get(root, "added_tokens");
    if (json_is_array(added) && added_load(t, added, path, err)) goto done;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

static int load_vocab_txt(tokenizer *t, const char *path, cb_err *err) {
    size_t len;
    char *buf = cb_read_file(path, &len, err);
    if (!buf) return -1;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    int id = 0, rc = tok_vocab_init(&t->vocab, lines, err);
    for (size_t i = 0; i < len && !rc;) {
        size_t j = i;
        while (j < len && buf[j] != '\n') j++;
        size_t n = j - i;
        if (n && buf[i + n - 1] == '\r') n--;
        int old;
        if (memchr(buf + i, '\0', n))
            rc = cb_err_set(err, "%s:%d: a NUL byte in a token (not a vocabulary file?)", path, id + 1);
        else if ((rc = tok_vocab_put(&t->vocab, buf + i, n, id, &old, err)) == 1)
            rc = cb_err_set(err, "%s:%d: token '%.*s' repeats line %d (each line is one token; its id is "
                            "the line number from 0)", path, id + 1, (int)(n > 60 ? 60 : n), buf + i, old + 1);
        id++;
        i = j + 1;
    }
    free(buf);
    if (rc) return -1;
    if (t->vocab.n_vocab == 0) return cb_err_set(err, "%s: empty vocabulary", path);
    return 0;
}

void cb_tokenizer_free(tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].cps);
        free(t->added[i].content);
    }
    free(t->added);
    tok_unigram_free(&t->uni);
    tok_bpe_free(&t->bpe);
    tok_normalizer_free(&t->norm);
    tok_pretokenizer_free(&t->pre);
    tok_vocab_free(&t->vocab);
    free(t->id_tok);
    free(t->path);
    free(t);
}

/* The pattern of an added token: its content, or the content's normalized
 * form for a normalized token. */
static int added_pattern(tokenizer *t, added_token *a, cb_err *err) {
    size_t len = strlen(a->content);
    uint32_t *cps = cb_malloc((len + 1) * sizeof *cps, "an added token", err);
    if (!cps) return -1;
    size_t n = tok_utf8_decode((const unsigned char *)a->content, len, cps);
    if (a->normalized) {
        uint32_t *raw = cps;
        int rc = cb_tokenizer_normalize(t, raw, n, &cps, &n);
        free(raw);
        if (rc) return cb_err_set(err, "out of memory: normalizing the added token '%s'", a->content);
        t->n_added_norm++;
    } else {
        t->n_added_raw++;
    }
    a->cps = cps;
    a->n = (int)n;
    if (n) t->added_first[a->normalized] |= 1ULL << (cps[0] & 63);
    return 0;
}

/* After the files are read: unk id, prefix hash, added-token patterns, the
 * id -> token table, special ids. */
static int tokenizer_finish(tokenizer *t, const char *vocab_path, json_t *cfg, cb_err *err) {
    t->vocab.prefix_len = (uint32_t)strlen(t->vocab.prefix);
    t->vocab.prefix_hash = cb_fnv_update(FNV_OFFSET, t->vocab.prefix, t->vocab.prefix_len);
    if (t->model == TOK_MODEL_WORDPIECE) {
        t->unk_id = tok_vocab_find(&t->vocab, 0, t->unk_token, strlen(t->unk_token));
        if (t->unk_id < 0)
            return cb_err_set(err, "%s: unk_token '%s' is not in the vocabulary", vocab_path, t->unk_token);
    } else {
        t->unk_id = t->model == TOK_MODEL_UNIGRAM ? t->uni.unk_id : t->bpe.unk_id;
    }
    t->n_added_file = t->n_added;

    for (int i = 0; i < t->n_added; i++) if (added_pattern(t, &t->added[i], err)) return -1;

    int max_id = -1;
    for (uint64_t i = 0; i <= t->vocab.slot_mask; i++) if (t->vocab.slots[i].id > max_id) max_id = t->vocab.slots[i].id;
    for (int i = 0; i < t->n_added; i++) if (t->added[i].id > max_id) max_id = t->added[i].id;
    t->n_ids = max_id + 1;
    t->id_tok = cb_calloc((size_t)t->n_ids, sizeof *t->id_tok, "the token table", err);
    if (!t->id_tok) return -1;
    for (uint64_t i = 0; i <= t->vocab.slot_mask; i++) {
        const vocab_slot *sl = &t->vocab.slots[i];
        if (sl->id < 0) continue;
        if (t->id_tok[sl->id])
            return cb_err_set(err, "%s: tokens '%s' and '%s' both have id %d", vocab_path, t->id_tok[sl->id],
                              t->vocab.arena + sl->off, sl->id);
        t->id_tok[sl->id] = t->vocab.arena + sl->off;
    }
    for (int i = 0; i < t->n_added; i++) t->id_tok[t->added[i].id] = t->added[i].content;

    /* specials: tokenizer_config.json's names, the post-processor's, the usual names */
    static const char *keys[5] = {"cls_token", "sep_token", "pad_token", "mask_token", "unk_token"};
    static const char *names[5][3] = {{"[CLS]", "<s>", NULL}, {"[SEP]", "</s>", NULL}, {"[PAD]", "<pad>", NULL},
                                      {"[MASK]", "<mask>", NULL}, {"[UNK]", "<unk>", NULL}};
    int ids[5];
    for (int i = 0; i < 5; i++) {
        const char *nm = cfg ? json_token_name(cfg, keys[i]) : NULL;
        ids[i] = nm ? cb_tokenizer_token_id(t, nm) : -1;
        if (ids[i] < 0 && i == 0 && t->tmpl.n_prefix > 0) ids[i] = t->tmpl.prefix[0];
        if (ids[i] < 0 && i == 1 && t->tmpl.n_suffix > 0) ids[i] = t->tmpl.suffix[0];
        if (ids[i] < 0 && i == 4) ids[i] = t->unk_id;
        for (int k = 0; ids[i] < 0 && names[i][k]; k++) ids[i] = cb_tokenizer_token_id(t, names[i][k]);
    }
    if (t->model == TOK_MODEL_WORDPIECE) ids[4] = t->unk_id;
    t->specials = (tokenizer_specials){ids[0], ids[1], ids[2], ids[3], ids[4]};
    if (t->tmpl.n_prefix < 0) {   /* BERT without post-processor: [CLS] ... [SEP] */
        memset(&t->tmpl, 0, sizeof t->tmpl);
        if (ids[0] >= 0 && ids[1] >= 0) {
            t->tmpl.n_prefix = t->tmpl.n_suffix = 1;
            t->tmpl.prefix[0] = ids[0];
            t->tmpl.suffix[0] = ids[1];
        }
    }
    for (int i = 0; i < t->tmpl.n_prefix + t->tmpl.n_suffix; i++) {
        int id = i < t->tmpl.n_prefix ? t->tmpl.prefix[i] : t->tmpl.suffix[i - t->tmpl.n_prefix];
        if (id >= t->n_ids || !t->id_tok[id])
            return cb_err_set(err, "%s: post_processor: special token id %d is not in the vocabulary", vocab_path, id);
    }
    return (t->path = cb_strdup(vocab_path, err)) ? 0 : -1;
}

tokenizer *cb_tokenizer_load(const char *model_dir, cb_err *err) {
    if (!cb_dir_exists(model_dir)) {
        cb_err_set(err, "%s: no such model directory", model_dir);
        return NULL;
    }
    tokenizer *t = cb_calloc(1, sizeof *t, "a tokenizer", err);
    if (!t) return NULL;
    snprintf(t->vocab.prefix, sizeof t->vocab.prefix, "##");
    snprintf(t->unk_token, sizeof t->unk_token, "[UNK]");
    t->max_chars = 100;
    t->clean_text = t->handle_chinese = t->lowercase = t->strip_accents = 1;

    char *tj = cb_path_new(model_dir, "tokenizer.json", err);
    char *vt = cb_path_new(model_dir, "vocab.txt", err);
    char *tc = cb_path_new(model_dir, "tokenizer_config.json", err);
    json_t *cfg = NULL;
    const char *vocab_path = tj;
    int ok = 0;
    if (!tj || !vt || !tc) goto done;
    if (cb_file_exists(tc) && !(cfg = json_load_path(tc, err))) goto done;
    if (cb_file_exists(tj)) {
        if (load_tokenizer_json(t, tj, err)) goto done;
    } else if (cb_file_exists(vt)) {
        /* BertTokenizer's options, as transformers converts them. */
        vocab_path = vt;
        t->tmpl.n_prefix = -1;   /* [CLS] ... [SEP] */
        if (cfg) {
            t->lowercase = json_bool(cfg, "do_lower_case", 1);
            t->handle_chinese = json_bool(cfg, "tokenize_chinese_chars", 1);
            t->strip_accents = json_bool(cfg, "strip_accents", t->lowercase);
            const char *unk = json_token_name(cfg, "unk_token");
            if (unk) snprintf(t->unk_token, sizeof t->unk_token, "%s", unk);
        }
        if (load_vocab_txt(t, vt, err)) goto done;
        json_t *dec = cfg ? json_object_get(cfg, "added_tokens_decoder") : NULL;
        if (json_is_object(dec)) {
            if (added_load(t, dec, tc, err)) goto done;
        } else {
            /* The special tokens, matched before normalization. */
            const char *keys[5] = {"pad_token", "unk_token", "cls_token", "sep_token", "mask_token"};
            const char *names[5] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
            for (int i = 0; i < 5; i++) {
                const char *nm = cfg ? json_token_name(cfg, keys[i]) : NULL;
                if (!nm) nm = names[i];
                int id = tok_vocab_find(&t->vocab, 0, nm, strlen(nm));
                if (id >= 0 && added_add(t, nm, id, 0, 0, 0, 0, err)) goto done;
            }
        }
    } else {
        cb_err_set(err, "%s: no tokenizer.json and no vocab.txt in this model directory", model_dir);
        goto done;
    }
    if (tokenizer_finish(t, vocab_path, cfg, err)) goto done;
    ok = 1;
done:
    if (cfg) json_decref(cfg);
    free(tj);
    free(vt);
    free(tc);
    if (!ok) {
        cb_tokenizer_free(t);
        return NULL;
    }
    return t;
}

int cb_tokenizer_token_id(const tokenizer *t, const char *token) {
    int id = tok_vocab_find(&t->vocab, 0, token, strlen(token));
    if (id >= 0) return id;
    for (int i = 0; i < t->n_added; i++)
        if (!strcmp(t->added[i].content, token)) return t->added[i].id;
    return -1;
}

const char *cb_tokenizer_id_token(const tokenizer *t, int id) {
    return id >= 0 && id < t->n_ids ? t->id_tok[id] : NULL;
}

int cb_tokenizer_vocab_size(const tokenizer *t) { return t->n_ids; }

int cb_tokenizer_check_ids(const tokenizer *t, int n_rows, const char *rows_from, cb_err *err) {
    if (t->n_ids <= n_rows) return 0;
    int id = n_rows;
    while (!t->id_tok[id]) id++;   /* the highest id has a token, so this stops */
    return cb_err_set(err, "%s: token '%s' has id %d, but %s has embeddings for ids 0 .. %d only (HINT: the "
                      "tokenizer and the weights are from different models?)",
                      t->path, t->id_tok[id], id, rows_from, n_rows - 1);
}

tokenizer_specials cb_tokenizer_get_specials(const tokenizer *t) { return t->specials; }

tokenizer_template cb_tokenizer_get_template(const tokenizer *t) { return t->tmpl; }

int cb_tokenizer_add_tokens(tokenizer *t, const char *const *tokens, int n, cb_err *err) {
    int added = 0;
    for (int i = 0; i < n; i++) {
        const char *tok = tokens[i];
        int dup = 0;
        for (int k = 0; k < t->n_added && !dup; k++) dup = !strcmp(t->added[k].content, tok);
        if (dup || !*tok) continue;
        /* a token of the model's vocabulary keeps its id (HF's AddedVocabulary) */
        int id = tok_vocab_find(&t->vocab, 0, tok, strlen(tok));
        if (id < 0) {
            if (t->n_ids >= TOKENIZER_MAX_ID) return cb_err_set(err, "adding token '%s': too many tokens", tok);
            const char **grown = cb_realloc(t->id_tok, (size_t)(t->n_ids + 1) * sizeof *grown, "the token table", err);
            if (!grown) return -1;
            t->id_tok = grown;
            id = t->n_ids;
            t->id_tok[t->n_ids++] = NULL;
            added++;
        }
        if (added_add(t, tok, id, 0, 0, 0, 1, err)) return -1;
        added_token *a = &t->added[t->n_added - 1];
        if (added_pattern(t, a, err)) return -1;
        /* added_add may have moved t->added: re-point every added id's token */
        for (int k = 0; k < t->n_added; k++) t->id_tok[t->added[k].id] = t->added[k].content;
    }
    return added;
}
