/* tokenizer.h: the BERT WordPiece tokenizer of Hugging Face `tokenizers`,
 * id for id.
 *
 * Loads `tokenizer.json` (WordPiece model, BertNormalizer, BertPreTokenizer)
 * from a model directory, or falls back to `vocab.txt` with
 * `tokenizer_config.json` (do_lower_case, strip_accents,
 * tokenize_chinese_chars) when there is no tokenizer.json. Unicode
 * (NFD, categories, case) comes from utf8proc.
 *
 * A loaded tokenizer is read-only: cb_tokenizer_encode may be called from many
 * threads at once.
 */
#ifndef CB_TOKENIZER_H
#define CB_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"

typedef struct tokenizer tokenizer;

/* Load from a model directory. NULL + err (naming the file and what is
 * wrong) on failure. */
tokenizer *cb_tokenizer_load(const char *model_dir, cb_err *err);
void cb_tokenizer_free(tokenizer *t);

/* Word-piece ids of `text` (UTF-8, `len` bytes; invalid UTF-8 sequences are
 * read as U+FFFD, as Python's errors="replace" does), without special
 * tokens. Writes min(n, max_ids) ids to out and returns n, the number of ids
 * of the whole text; or -1 when out of memory (texts of 512 bytes or more,
 * and very long words, need buffers on the heap). Thread-safe. */
int cb_tokenizer_encode(const tokenizer *t, const char *text, size_t len, int32_t *out, int max_ids);

/* Id of a vocabulary token such as "[CLS]" or "[unused0]"; -1 if absent. */
int cb_tokenizer_token_id(const tokenizer *t, const char *token);
/* Token string of an id (NULL when out of range). */
const char *cb_tokenizer_id_token(const tokenizer *t, int id);
int cb_tokenizer_vocab_size(const tokenizer *t);
/* 0 when every id of the tokenizer (vocabulary and added tokens) is below
 * n_rows, the rows of the model's embedding matrix; else -1 with err
 * naming the tokenizer file, the first token beyond and rows_from (e.g.
 * "DIR/config.json (vocab_size 30522)"). Models check this at load, so
 * that no id can index past the embeddings later. */
int cb_tokenizer_check_ids(const tokenizer *t, int n_rows, const char *rows_from, cb_err *err);

/* Special token ids, read from the files ([CLS], [SEP], [PAD], [MASK],
 * [UNK]); -1 when the vocabulary lacks one. */
typedef struct tokenizer_specials {
    int cls, sep, pad, mask, unk;
} tokenizer_specials;
tokenizer_specials cb_tokenizer_get_specials(const tokenizer *t);
#endif
