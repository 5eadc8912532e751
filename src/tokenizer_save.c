/* tokenizer_save.c: writing a model directory's tokenizer files with the
 * tokens cb_tokenizer_add_tokens added (see tokenizer.h), in the form
 * transformers' save_pretrained gives them, so that transformers, PyLate
 * and colbert-ai load the same vocabulary: tokenizer.json gets an
 * "added_tokens" entry per token, and tokenizer_config.json an
 * "added_tokens_decoder" entry when it has that object (transformers 4
 * files); the other tokenizer files are copied. */
#include "tokenizer_encode.h"
#include "fsutil.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static int copy_file(const char *src, const char *dst, cb_err *err) {
    size_t n;
    char *data = cb_read_file(src, &n, err);
    if (!data) return -1;
    char *tmp;
    FILE *f = cb_out_open(dst, &tmp, err);
    int rc = -1;
    if (f && fwrite(data, 1, n, f) == n) rc = cb_out_commit(f, tmp, dst, err);
    else if (f) { cb_out_abort(f, tmp); cb_err_set(err, "%s: cannot write: %s", dst, strerror(errno)); }
    free(data);
    return rc;
}

/* The fields transformers writes for a token added by add_tokens. */
static json_t *added_json(const added_token *a, int with_id) {
    json_t *o = json_pack("{s:s, s:b, s:b, s:b, s:b, s:b}", "content", a->content, "single_word", a->single_word,
                          "lstrip", a->lstrip, "rstrip", a->rstrip, "normalized", a->normalized, "special", 0);
    if (o && with_id) json_object_set_new(o, "id", json_integer(a->id));
    return o;
}

static int write_tokenizer_json(const tokenizer *t, const char *src, const char *dst, cb_err *err) {
    json_t *root = cb_json_load(src, 0, err);
    if (!root) return -1;
    int rc = -1;
    json_t *list = json_object_get(root, "added_tokens");
    if (!json_is_array(list)) {
        list = json_array();
        json_object_set_new(root, "added_tokens", list);
    }
    for (int i = t->n_added_file; i < t->n_added; i++) {
        /* src may be a file this tokenizer wrote (a training run's later
         * checkpoints copy the newest one): a token it lists stays once */
        int listed = 0;
        size_t k;
        json_t *e;
        json_array_foreach(list, k, e) {
            const char *c = json_string_value(json_object_get(e, "content"));
            listed |= c && !strcmp(c, t->added[i].content);
        }
        if (!listed && json_array_append_new(list, added_json(&t->added[i], 1))) {
            cb_err_set(err, "%s: out of memory", dst);
            goto done;
        }
    }
    rc = cb_json_write(dst, root, err);
done:
    json_decref(root);
    return rc;
}

static int write_tokenizer_config(const tokenizer *t, const char *src, const char *dst, cb_err *err) {
    json_t *root = cb_json_load(src, 0, err);
    if (!root) return -1;
    int rc = -1;
    if (!json_is_object(root)) {
        cb_err_set(err, "%s: expected a JSON object at the top level", src);
        goto done;
    }
    /* transformers 5 keeps added tokens in tokenizer.json only; files of
     * transformers 4 list them in tokenizer_config.json as well */
    json_t *dec = json_object_get(root, "added_tokens_decoder");
    for (int i = t->n_added_file; i < t->n_added && json_is_object(dec); i++) {
        char key[16];
        snprintf(key, sizeof key, "%d", t->added[i].id);
        if (json_object_set_new(dec, key, added_json(&t->added[i], 0))) {
            cb_err_set(err, "%s: out of memory", dst);
            goto done;
        }
    }
    rc = cb_json_write(dst, root, err);
done:
    json_decref(root);
    return rc;
}

int cb_tokenizer_save(const tokenizer *t, const char *src_dir, const char *dst_dir, cb_err *err) {
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                                  "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spiece.model", NULL};
    int rc = 0;
    for (int i = 0; files[i] && !rc; i++) {
        char *s = cb_path_new(src_dir, files[i], err), *d = s ? cb_path_new(dst_dir, files[i], err) : NULL;
        if (!d) rc = -1;
        else if (!cb_file_exists(s)) rc = 0;
        else if (i == 0 && t->n_added > t->n_added_file) rc = write_tokenizer_json(t, s, d, err);
        else if (i == 1 && t->n_added > t->n_added_file) rc = write_tokenizer_config(t, s, d, err);
        else rc = copy_file(s, d, err);
        free(s);
        free(d);
    }
    return rc;
}

/* A special token's text: "[MASK]" or {"content": "[MASK]", ...}. */
static const char *special_text(const json_t *v) {
    return json_is_string(v) ? json_string_value(v) : json_string_value(json_object_get(v, "content"));
}

int cb_tokenizer_save_pad(const char *dir, const char *pad, cb_err *err) {
    static const char *files[] = {"tokenizer_config.json", "special_tokens_map.json"};
    int rc = 0;
    for (int i = 0; i < 2 && !rc; i++) {
        char *p = cb_path_new(dir, files[i], err);
        if (!p) return -1;
        json_t *root = cb_file_exists(p) ? cb_json_load(p, 0, err) : NULL;
        if (cb_file_exists(p) && !root) rc = -1;
        const char *have = root ? special_text(json_object_get(root, "pad_token")) : NULL;
        const char *mask = root ? special_text(json_object_get(root, "mask_token")) : NULL;
        if (!rc && have && mask && !strcmp(have, mask) && strcmp(have, pad)) {
            json_object_set_new(root, "pad_token", json_string(pad));
            rc = cb_json_write(p, root, err);
        }
        json_decref(root);
        free(p);
    }
    return rc;
}
