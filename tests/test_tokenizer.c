/* test_tokenizer.c: tokenizer load errors, known encodings of
 * all-MiniLM-L6-v2 (ids from Hugging Face tokenizers), the output contract
 * of cb_tokenizer_encode, the vocab.txt fallback, and concurrent encoding.
 * Full HF parity (datasets, torture list) is in test_tokenizer.py. */
#include <pthread.h>
#include <sys/stat.h>

#include "test.h"
#include "tokenizer.h"

static const char *TMP;
static const char *MODEL;

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) { perror(path); exit(2); }
    fputs(text, f);
    fclose(f);
}

static char *tmp_dir(const char *name) {
    char *d = cb_path_new(TMP, name, NULL);
    mkdir(d, 0755);
    return d;
}

/* Load must fail with a message that contains `want` (and the file). */
static void check_load_fails(const char *dir, const char *want) {
    cb_err err = {{0}};
    tokenizer *t = cb_tokenizer_load(dir, &err);
    CHECK_MSG(t == NULL, "loading %s should fail", dir);
    CHECK_MSG(strstr(err.msg, want) != NULL, "message '%s' lacks '%s'", err.msg, want);
    CHECK_MSG(strchr(err.msg, '\n') == NULL, "message '%s' is not one line", err.msg);
    if (t) cb_tokenizer_free(t);
}

static void test_load_errors(void) {
    char *missing = cb_path_new(TMP, "no-such-dir", NULL);
    check_load_fails(missing, "no-such-dir");
    free(missing);

    char *empty = tmp_dir("tok-empty");
    check_load_fails(empty, "no tokenizer.json and no vocab.txt");
    free(empty);

    char *bad = tmp_dir("tok-malformed");
    char *p = cb_path_new(bad, "tokenizer.json", NULL);
    write_file(p, "{\n  \"model\": {\"type\": \"WordPiece\",\n   \"vocab\": {\"a\": 0,,}\n}\n");
    check_load_fails(bad, "tokenizer.json: invalid JSON");
    check_load_fails(bad, "(line 3, column");
    free(p);
    free(bad);

    char *bpe = tmp_dir("tok-bpe");
    p = cb_path_new(bpe, "tokenizer.json", NULL);
    write_file(p, "{\"model\": {\"type\": \"WordLevel\", \"vocab\": {\"a\": 0}, \"unk_token\": \"a\"},"
                  " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}");
    check_load_fails(bpe, "model type 'WordLevel' is not supported (supported: WordPiece, Unigram, BPE)");
    check_load_fails(bpe, "tok-bpe/tokenizer.json");
    free(p);
    free(bpe);

    char *nov = tmp_dir("tok-novocab");
    p = cb_path_new(nov, "tokenizer.json", NULL);
    write_file(p, "{\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\"},"
                  " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}");
    check_load_fails(nov, "model.vocab is missing");
    write_file(p, "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"[UNK]\": 0}},"
                  " \"normalizer\": {\"type\": \"NFKC\"}, \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}");
    check_load_fails(nov, "normalizer type 'NFKC' is not supported with a WordPiece model");
    write_file(p, "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}},"
                  " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}");
    check_load_fails(nov, "unk_token '[UNK]' is not in the vocabulary");
    free(p);
    free(nov);
}

/* ids of text must equal want[0..n). */
static void check_ids(const tokenizer *t, const char *text, const int32_t *want, int n) {
    int32_t got[256];
    int m = cb_tokenizer_encode(t, text, strlen(text), got, 256);
    int same = m == n;
    for (int i = 0; same && i < n; i++) same = got[i] == want[i];
    CHECK_MSG(same, "ids of '%s': got %d ids (first %d), want %d (first %d)", text, m, m ? got[0] : -1, n,
              n ? want[0] : -1);
}

#define IDS(...) (const int32_t[]){__VA_ARGS__}, (int)(sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

static void test_known(const tokenizer *t) {
    CHECK(cb_tokenizer_vocab_size(t) == 30522);
    tokenizer_specials sp = cb_tokenizer_get_specials(t);
    CHECK(sp.pad == 0 && sp.unk == 100 && sp.cls == 101 && sp.sep == 102 && sp.mask == 103);
    CHECK(cb_tokenizer_token_id(t, "[unused0]") == 1);
    CHECK(cb_tokenizer_token_id(t, "[unused1]") == 2);
    CHECK(cb_tokenizer_token_id(t, "hello") == 7592);
    CHECK(cb_tokenizer_token_id(t, "##able") == 3085);
    CHECK(cb_tokenizer_token_id(t, "no-such-token") == -1);
    CHECK(cb_tokenizer_id_token(t, 7592) && !strcmp(cb_tokenizer_id_token(t, 7592), "hello"));
    CHECK(cb_tokenizer_id_token(t, 30522) == NULL && cb_tokenizer_id_token(t, -1) == NULL);

    /* Expected ids from tokenizers' encode(text, add_special_tokens=False). */
    check_ids(t, "Hello, World! [CLS] unaffable h\xc3\xa9llo \xc4\xb0stanbul stra\xc3\x9f" "e",
              IDS(7592, 1010, 2088, 999, 101, 14477, 20961, 3468, 7592, 9960, 2358, 27807));
    check_ids(t, "\xe4\xb8\xad\xe6\x96\x87 test", IDS(1746, 1861, 3231));
    check_ids(t, "Cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e\xe2\x80\x8b, \xce\xa3\xce\x8a\xce\xa3\xce\xa5\xce\xa6\xce\x9f\xce\xa3!",
              IDS(13675, 21382, 7987, 9307, 2063, 1010, 1173, 18199, 29733, 29735, 29736, 29730, 29733, 999));
    check_ids(t, "x\xef\xbf\xbdy \x07z", IDS(1060, 2100, 1062));
    check_ids(t, "x\xffy \x07z", IDS(1060, 2100, 1062));  /* invalid byte read as U+FFFD */
    char long_word[200];
    memset(long_word, 'a', 101);
    strcpy(long_word + 101, " ok");
    check_ids(t, long_word, IDS(100, 7929));  /* over 100 chars: [UNK] */
    check_ids(t, "", NULL, 0);
    check_ids(t, " \t\xe2\x80\x8b ", NULL, 0);

    /* Output contract: returns the full count, writes at most max_ids. */
    int32_t out[4] = {-7, -7, -7, -7};
    const char *s = "Hello, World! Hello, World!";
    CHECK(cb_tokenizer_encode(t, s, strlen(s), out, 3) == 8);
    CHECK(out[0] == 7592 && out[1] == 1010 && out[2] == 2088 && out[3] == -7);
    CHECK(cb_tokenizer_encode(t, s, strlen(s), NULL, 0) == 8);
    /* len, not NUL, ends the text; NUL is dropped by clean_text, not a space */
    CHECK(cb_tokenizer_encode(t, "hello\0world", 11, out, 4) == 2 && out[0] == 7592 && out[1] == 11108);
    CHECK(cb_tokenizer_encode(t, "hello\0 world", 12, out, 4) == 2 && out[0] == 7592 && out[1] == 2088);
}

/* The vocab.txt fallback with a cased tokenizer_config.json. */
static void test_vocab_txt(void) {
    char *d = tmp_dir("tok-vocab-txt");
    char *p = cb_path_new(d, "vocab.txt", NULL);
    write_file(p, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nHello\n##llo\nhe\nca\n##f\n##\xc3\xa9\n,\r\n");
    free(p);
    p = cb_path_new(d, "tokenizer_config.json", NULL);
    write_file(p, "{\"do_lower_case\": false, \"cls_token\": \"[CLS]\"}");
    cb_err err = {{0}};
    tokenizer *t = cb_tokenizer_load(d, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (t) {
        CHECK(cb_tokenizer_vocab_size(t) == 13);
        tokenizer_specials sp = cb_tokenizer_get_specials(t);
        CHECK(sp.pad == 0 && sp.unk == 1 && sp.cls == 2 && sp.sep == 3 && sp.mask == 4);
        check_ids(t, "Hello,hello [SEP]hello caf\xc3\xa9 cafe", IDS(6, 12, 5, 3, 5, 9, 10, 11, 1));
        cb_tokenizer_free(t);
    }
    /* lowercase without accents (strip_accents null follows do_lower_case) */
    write_file(p, "{\"do_lower_case\": true}");
    t = cb_tokenizer_load(d, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (t) {
        check_ids(t, "HELLO CAF\xc3\x89", IDS(5, 1));  /* "cafe": no ##e in vocab */
        cb_tokenizer_free(t);
    }
    write_file(p, "{\"do_lower_case\": true,,}");
    check_load_fails(d, "tokenizer_config.json: invalid JSON");
    free(p);
    free(d);
}

/* Hostile vocabularies: refused at load, naming the file and the line. */
static void test_hostile_vocab(void) {
    char *d = tmp_dir("tok-dup-line");
    char *p = cb_path_new(d, "vocab.txt", NULL);
    write_file(p, "[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\nworld\nhello\n");
    check_load_fails(d, "tok-dup-line/vocab.txt:7: token 'hello' repeats line 5");
    FILE *f = fopen(p, "wb");
    fwrite("[PAD]\n[UNK]\nnul\0byte\n", 1, 20, f);
    fclose(f);
    check_load_fails(d, "vocab.txt:3: a NUL byte");
    free(p);
    free(d);

    d = tmp_dir("tok-max-chars");
    p = cb_path_new(d, "tokenizer.json", NULL);
    const char *fmt = "{\"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", %s"
                      "\"vocab\": {\"[UNK]\": 0, \"a\": 1, \"b\": %d}}, \"normalizer\": null,"
                      " \"pre_tokenizer\": {\"type\": \"BertPreTokenizer\"}}";
    char text[512];
    snprintf(text, sizeof text, fmt, "\"max_input_chars_per_word\": -5, ", 2);
    write_file(p, text);
    check_load_fails(d, "max_input_chars_per_word must be an integer >= 1, found -5");
    snprintf(text, sizeof text, fmt, "\"max_input_chars_per_word\": \"100\", ", 2);
    write_file(p, text);
    check_load_fails(d, "max_input_chars_per_word must be an integer >= 1, found a non-integer");
    snprintf(text, sizeof text, fmt, "", 1);
    write_file(p, text);
    check_load_fails(d, "both have id 1");
    snprintf(text, sizeof text, fmt, "", 40000000);
    write_file(p, text);
    check_load_fails(d, "model.vocab entry 'b' has no valid id");
    /* ids past the model's embedding rows */
    snprintf(text, sizeof text, fmt, "\"max_input_chars_per_word\": 3, ", 40000);
    write_file(p, text);
    cb_err err = {{0}};
    tokenizer *t = cb_tokenizer_load(d, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (t) {
        CHECK(cb_tokenizer_check_ids(t, 40001, "rows", &err) == 0);
        CHECK(cb_tokenizer_check_ids(t, 30522, "M/config.json (vocab_size 30522)", &err) == -1);
        CHECK_MSG(strstr(err.msg, "tok-max-chars/tokenizer.json: token 'b' has id 40000, but M/config.json "
                                  "(vocab_size 30522) has embeddings for ids 0 .. 30521 only"), "%s", err.msg);
        /* max_input_chars_per_word 3: a longer word is [UNK] (0), a short one is not */
        int32_t ids[4];
        CHECK(cb_tokenizer_encode(t, "aaaa a", 6, ids, 4) == 2 && ids[0] == 0 && ids[1] == 1);
        cb_tokenizer_free(t);
    }
    free(p);
    free(d);
}

/* Concurrent encoding gives the same ids as serial encoding. */
typedef struct job {
    const tokenizer *t;
    int ok;
} job;

static const char *TEXTS[] = {
    "The quick brown fox jumps over the lazy dog.",
    "Vitamin D\xe2\x82\x83 (cholecalciferol) and 25(OH)D \xe2\x89\xa5 30 ng/mL; p<0.001",
    "\xe4\xb8\xad\xe6\x96\x87\xe6\xb5\x8b\xe8\xaf\x95 [MASK] caf\xc3\xa9 na\xc3\xafve",
};

static void *encode_many(void *arg) {
    job *j = arg;
    int32_t ref[3][64], got[64];
    int nref[3];
    for (int k = 0; k < 3; k++) nref[k] = cb_tokenizer_encode(j->t, TEXTS[k], strlen(TEXTS[k]), ref[k], 64);
    j->ok = 1;
    for (int it = 0; it < 2000; it++) {
        int k = it % 3;
        int n = cb_tokenizer_encode(j->t, TEXTS[k], strlen(TEXTS[k]), got, 64);
        if (n != nref[k] || memcmp(got, ref[k], (size_t)n * sizeof *got)) j->ok = 0;
    }
    return NULL;
}

static void test_threads(const tokenizer *t) {
    pthread_t th[4];
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (job){t, 0};
        pthread_create(&th[i], NULL, encode_many, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK(jobs[i].ok);
    }
}

int main(void) {
    TMP = test_env("COLBERT_TMP");
    MODEL = test_env("COLBERT_MODEL");
    test_load_errors();
    cb_err err = {{0}};
    tokenizer *t = cb_tokenizer_load(MODEL, &err);
    CHECK_MSG(t != NULL, "%s", err.msg);
    if (t) {
        test_known(t);
        test_threads(t);
        cb_tokenizer_free(t);
    }
    test_vocab_txt();
    test_hostile_vocab();
    return test_finish("test_tokenizer");
}
