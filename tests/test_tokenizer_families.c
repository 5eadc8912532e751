/* test_tokenizer_families.c: the tokenizer API beside WordPiece, on the
 * Unigram and byte-level BPE directories of tests/ref/gen_tokenizers.py:
 * the special tokens and the post-processor template found for each
 * vocabulary; cb_tokenizer_add_tokens against what transformers'
 * add_tokens(["[Q] ", "[D] "]) gives (ids, vocabulary size, the ids of
 * texts with the new tokens, from added.json); cb_tokenizer_save against the
 * entries transformers' save_pretrained writes, and the saved directory
 * loading back to the same ids; and the ColBERT layout on top (<s> [Q] ...
 * </s> <mask>...). Id-for-id parity on real text is test_tokenizer.py's. */
#include <sys/stat.h>

#include <jansson.h>

#include "colbert.h"
#include "test.h"
#include "tokenizer.h"

static const char *TMP, *REF;

typedef struct family {
    const char *name;
    const char *cls, *sep, *pad, *mask, *unk;   /* the specials by name */
} family;

static const family FAMILIES[] = {
    {"xlmr", "<s>", "</s>", "<pad>", "<mask>", "<unk>"},
    {"xlmr-ws", "<s>", "</s>", "<pad>", "<mask>", "<unk>"},
    {"unigram", "[CLS]", "[SEP]", "<pad>", "[MASK]", "<unk>"},
    {"roberta", "<s>", "</s>", "<pad>", "<mask>", "<unk>"},
    {"modernbert", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"},
    {"modernbert-split", "[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]"},
};

/* ids of text must equal the JSON array want. */
static void check_text(const tokenizer *t, const char *what, const char *text, json_t *want) {
    int32_t got[256];
    int n = cb_tokenizer_encode(t, text, strlen(text), got, 256);
    int same = n == (int)json_array_size(want);
    for (int i = 0; same && i < n; i++) same = got[i] == json_integer_value(json_array_get(want, (size_t)i));
    CHECK_MSG(same, "%s: ids of '%s' differ from transformers' (%d ids, want %zu)", what, text, n,
              json_array_size(want));
}

static void check_added(const tokenizer *t, const char *what, json_t *ref) {
    json_t *ids = json_object_get(ref, "ids"), *texts = json_object_get(ref, "texts");
    json_t *exp = json_object_get(ref, "expected");
    CHECK_MSG(cb_tokenizer_token_id(t, "[Q] ") == json_integer_value(json_object_get(ids, "[Q] ")) &&
                  cb_tokenizer_token_id(t, "[D] ") == json_integer_value(json_object_get(ids, "[D] ")),
              "%s: [Q]/[D] ids %d %d", what, cb_tokenizer_token_id(t, "[Q] "), cb_tokenizer_token_id(t, "[D] "));
    CHECK(cb_tokenizer_vocab_size(t) ==
          json_integer_value(json_object_get(ref, "vocab_size_before")) + json_integer_value(json_object_get(ref, "added")));
    for (size_t i = 0; i < json_array_size(texts); i++)
        check_text(t, what, json_string_value(json_array_get(texts, i)), json_array_get(exp, i));
}

static void test_family(const family *f) {
    char *dir = cb_path_new(REF, "tokenizers", NULL), *d = cb_path_new(dir, f->name, NULL);
    char *refp = cb_path_new(d, "added.json", NULL);
    cb_err err = {{0}};
    json_error_t je;
    json_t *ref = json_load_file(refp, 0, &je);
    CHECK_MSG(ref != NULL, "%s: %s (run tests/ref/gen_tokenizers.py)", refp, je.text);
    tokenizer *t = cb_tokenizer_load(d, &err);
    CHECK_MSG(t != NULL, "%s: %s", f->name, err.msg);
    if (!t || !ref) goto done;

    /* specials and template */
    tokenizer_specials sp = cb_tokenizer_get_specials(t);
    int cls = cb_tokenizer_token_id(t, f->cls), sep = cb_tokenizer_token_id(t, f->sep);
    CHECK_MSG(cls >= 0 && sp.cls == cls && sp.sep == sep && sp.pad == cb_tokenizer_token_id(t, f->pad) &&
                  sp.mask == cb_tokenizer_token_id(t, f->mask) && sp.unk == cb_tokenizer_token_id(t, f->unk) &&
                  sp.pad >= 0 && sp.mask >= 0 && sp.unk >= 0,
              "%s: specials %d %d %d %d %d", f->name, sp.cls, sp.sep, sp.pad, sp.mask, sp.unk);
    tokenizer_template tm = cb_tokenizer_get_template(t);
    CHECK_MSG(tm.n_prefix == 1 && tm.n_suffix == 1 && tm.prefix[0] == cls && tm.suffix[0] == sep,
              "%s: template %d+%d", f->name, tm.n_prefix, tm.n_suffix);

    /* no [unused0] and no "[Q] " yet: ColBERT cannot lay a query out */
    colbert_vocab cv;
    CHECK(cb_tokenizer_token_id(t, "[unused0]") < 0);
    CHECK(cb_colbert_vocab_init(&cv, t, &err) == -1 && strstr(err.msg, "\"[Q] \""));

    /* PyLate's markers, as transformers adds them */
    int n0 = cb_tokenizer_vocab_size(t);
    const char *marks[] = {"[Q] ", "[D] "};
    CHECK(cb_tokenizer_add_tokens(t, marks, 2, &err) == json_integer_value(json_object_get(ref, "added")));
    CHECK(cb_tokenizer_add_tokens(t, marks, 2, &err) == 0);   /* once only */
    CHECK(cb_tokenizer_token_id(t, "[Q] ") == n0 && cb_tokenizer_id_token(t, n0 + 1) &&
          !strcmp(cb_tokenizer_id_token(t, n0 + 1), "[D] "));
    check_added(t, f->name, ref);

    /* the ColBERT layout: <s> [Q] pieces </s> <mask>... */
    CHECK_MSG(cb_colbert_vocab_init(&cv, t, &err) == 0, "%s: %s", f->name, err.msg);
    colbert_config cc;
    cb_colbert_config_default(&cc);
    int32_t q[32], dids[220], pieces[64];
    uint8_t qm[32];
    const char *text = "what is vitamin D?";
    int np = cb_tokenizer_encode(t, text, strlen(text), pieces, 64);
    cb_colbert_query_ids(q, qm, &cv, t, text, strlen(text), &cc);
    int ok = np > 0 && np < 28 && q[0] == cls && q[1] == n0 && q[np + 2] == sep && q[np + 3] == sp.mask &&
             q[31] == sp.mask && qm[np + 2] == 1 && qm[np + 3] == 0 && !memcmp(q + 2, pieces, (size_t)np * 4);
    CHECK_MSG(ok, "%s: query layout", f->name);
    cc.doc_maxlen = 5;
    int nd = cb_colbert_doc_ids(dids, &cv, t, text, strlen(text), &cc);
    CHECK_MSG(nd == 5 && dids[0] == cls && dids[1] == n0 + 1 && dids[2] == pieces[0] && dids[3] == pieces[1] &&
                  dids[4] == sep, "%s: doc layout (%d ids)", f->name, nd);

    /* the checkpoint's tokenizer files */
    char name[128];
    snprintf(name, sizeof name, "tok-saved-%s", f->name);
    char *out = cb_path_new(TMP, name, NULL);
    mkdir(out, 0755);
    CHECK_MSG(cb_tokenizer_save(t, d, out, &err) == 0, "%s", err.msg);
    char *tj = cb_path_new(out, "tokenizer.json", NULL);
    json_t *saved = json_load_file(tj, 0, &je);
    CHECK_MSG(saved != NULL, "%s: %s", tj, je.text);
    json_t *list = json_object_get(saved, "added_tokens"), *want = json_object_get(ref, "added_tokens");
    size_t n = json_array_size(list);
    CHECK(n >= 2 && json_equal(json_array_get(list, n - 2), json_array_get(want, 0)) &&
          json_equal(json_array_get(list, n - 1), json_array_get(want, 1)));
    json_decref(saved);
    tokenizer *t2 = cb_tokenizer_load(out, &err);
    CHECK_MSG(t2 != NULL, "%s", err.msg);
    if (t2) {
        check_added(t2, "saved", ref);
        tokenizer_template tm2 = cb_tokenizer_get_template(t2);
        CHECK(!memcmp(&tm, &tm2, sizeof tm));
        cb_tokenizer_free(t2);
    }
    free(tj);
    free(out);
done:
    if (t) cb_tokenizer_free(t);
    json_decref(ref);
    free(refp);
    free(d);
    free(dir);
}

int main(void) {
    TMP = test_env("COLBERT_TMP");
    REF = test_env("COLBERT_REF");
    for (size_t i = 0; i < sizeof FAMILIES / sizeof *FAMILIES; i++) test_family(&FAMILIES[i]);
    return test_finish("test_tokenizer_families");
}
