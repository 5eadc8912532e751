/* fuzz_tokenizer_load.c: loading a tokenizer (tokenizer.c) from hostile
 * files. The first byte picks the files, the rest is cut at FUZZ_SEP:
 *   'V'   part 0 is vocab.txt, part 1 tokenizer_config.json
 *   else  part 0 is tokenizer.json, part 1 tokenizer_config.json
 * A tokenizer that loads then encodes a few texts (added tokens, accents,
 * CJK, long words) and answers id lookups, and every id it gives must have
 * a token; then its template, and adding PyLate's "[Q] " / "[D] " markers. */
#include "fuzz.h"
#include "tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *NAMES[3] = {"tokenizer.json", "vocab.txt", "tokenizer_config.json"};
static void cleanup(void) { fuzz_cleanup_dir(fuzz_dir("tokenizer-load"), NAMES, 3); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once) {
        once = 1;
        atexit(cleanup);
    }
    if (size < 1) return 0;
    const char *dir = fuzz_dir("tokenizer-load");
    int vocab = data[0] == 'V';
    fuzz_part parts[2];
    int n = fuzz_split(data + 1, size - 1, parts, 2);
    fuzz_write_part(dir, vocab ? "vocab.txt" : "tokenizer.json", parts, n, 0);
    fuzz_write(dir, vocab ? "tokenizer.json" : "vocab.txt", NULL, SIZE_MAX);
    fuzz_write_part(dir, "tokenizer_config.json", parts, n, 1);

    cb_err err;
    tokenizer *t = cb_tokenizer_load(dir, &err);
    if (!t) return 0;
    static const char *texts[] = {
        "Hello, World! [CLS] [SEP] [MASK] [UNK] [unused0]", "Crème brûlée à la carte", "日本語のテキスト",
        "unbelievablyextraordinarilylongwordwithoutspaces", "   \t\n", "a\xc3\x28 invalid \xff utf-8",
        "<s> </s> <mask> ##ing",
    };
    int V = cb_tokenizer_vocab_size(t);
    int32_t ids[64];
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        int k = cb_tokenizer_encode(t, texts[i], strlen(texts[i]), ids, 64);
        for (int j = 0; j < k && j < 64; j++)
            if (ids[j] < 0 || ids[j] >= V || !cb_tokenizer_id_token(t, ids[j])) abort();
    }
    tokenizer_specials sp = cb_tokenizer_get_specials(t);
    if (sp.unk < -1 || sp.unk >= V) abort();   /* -1: a BPE without unknown token */
    tokenizer_template tm = cb_tokenizer_get_template(t);
    for (int i = 0; i < tm.n_prefix + tm.n_suffix; i++) {
        int id = i < tm.n_prefix ? tm.prefix[i] : tm.suffix[i - tm.n_prefix];
        if (id < 0 || id >= V || !cb_tokenizer_id_token(t, id)) abort();
    }
    /* PyLate's markers: new ids after the vocabulary, matched in text */
    const char *marks[2] = {"[Q] ", "[D] "};
    int added = cb_tokenizer_add_tokens(t, marks, 2, &err);
    if (added < 0 || cb_tokenizer_vocab_size(t) != V + added) abort();
    int k = cb_tokenizer_encode(t, "[Q] x [D] ", 10, ids, 64);
    for (int j = 0; j < k && j < 64; j++)
        if (ids[j] < 0 || ids[j] >= V + added || !cb_tokenizer_id_token(t, ids[j])) abort();
    cb_tokenizer_token_id(t, "[CLS]");
    cb_tokenizer_id_token(t, -1);
    cb_tokenizer_id_token(t, V);
    cb_tokenizer_check_ids(t, V, "the fuzz model", &err);
    cb_tokenizer_check_ids(t, V > 1 ? V / 2 : 0, "the fuzz model", &err);
    cb_tokenizer_free(t);
    return 0;
}
