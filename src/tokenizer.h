/* tokenizer.h: the tokenizers of Hugging Face `tokenizers`, id for id, read
 * from a model directory:
 *   - tokenizer.json with a WordPiece (BERT), Unigram (XLM-R, e5,
 *     sentencepiece models) or BPE (byte-level: RoBERTa, GPT-2, ModernBERT)
 *     model, its normalizer, pre-tokenizer, added tokens and post-processor
 *     (docs/tokenizers.md lists the supported components; any other is a
 *     load error naming the file and the component);
 *   - or, without tokenizer.json, BERT's vocab.txt with
 *     tokenizer_config.json (do_lower_case, strip_accents,
 *     tokenize_chinese_chars).
 * Unicode (normalization forms, categories, case, graphemes) comes from
 * utf8proc.
 *
 * A loaded tokenizer is read-only: cb_tokenizer_encode may be called from many
 * threads at once. cb_tokenizer_add_tokens is the one call that changes it:
 * call it before sharing the tokenizer.
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

/* Token ids of `text` (UTF-8, `len` bytes; invalid UTF-8 sequences are
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

/* Special token ids, read from the files: the names tokenizer_config.json
 * gives (cls_token, ...), else the post-processor's (cls: first token before
 * the sequence, sep: first after), else the usual names ([CLS] or <s>,
 * [SEP] or </s>, [PAD] or <pad>, [MASK] or <mask>); unk is the model's.
 * -1 when the vocabulary lacks one. */
typedef struct tokenizer_specials {
    int cls, sep, pad, mask, unk;
} tokenizer_specials;
tokenizer_specials cb_tokenizer_get_specials(const tokenizer *t);

/* What a single sequence gets around its ids when special tokens are on
 * (HF's encode(text, add_special_tokens=True) = prefix, ids, suffix): the
 * post-processor of tokenizer.json, TemplateProcessing's "single" template
 * (ids of the special tokens before and after $A), RobertaProcessing and
 * BertProcessing (cls ... sep), a Sequence holding one of them (ByteLevel
 * post-processors change offsets only); none (0 and 0) when it is null.
 * vocab.txt models get [CLS] ... [SEP], as transformers' BertTokenizer;
 * so does a WordPiece tokenizer.json without post-processor, as colbert-ai
 * always built it. Examples: BERT [101] [102]; XLM-R [0] [2]. */
#define TOKENIZER_TEMPLATE_MAX 8
typedef struct tokenizer_template {
    int n_prefix, n_suffix;
    int32_t prefix[TOKENIZER_TEMPLATE_MAX], suffix[TOKENIZER_TEMPLATE_MAX];
} tokenizer_template;
tokenizer_template cb_tokenizer_get_template(const tokenizer *t);

/* Add tokens after the current vocabulary, as transformers'
 * tokenizer.add_tokens(tokens) does (PyLate adds its "[Q] " and "[D] "
 * markers so): each new token gets the next id, cb_tokenizer_vocab_size(t)
 * then grows by one; it is matched in text like every added token (not
 * special, normalized: matched after the normalizer, no strip). A token
 * already in the vocabulary or among the added tokens is skipped. Returns
 * the number of tokens added (their ids: cb_tokenizer_token_id), or -1 with
 * err. Not thread-safe: call before encoding from several threads. The
 * model's embedding matrix must grow to cb_tokenizer_vocab_size(t) rows. */
int cb_tokenizer_add_tokens(tokenizer *t, const char *const *tokens, int n, cb_err *err);

/* Write the tokenizer files of src_dir into dst_dir (an existing directory):
 * tokenizer.json with the tokens added by cb_tokenizer_add_tokens appended
 * to "added_tokens", as transformers' save_pretrained writes them (and to
 * tokenizer_config.json's "added_tokens_decoder" when it has one),
 * the others (vocab.txt, special_tokens_map.json, vocab.json, merges.txt,
 * sentencepiece.bpe.model, spiece.model) copied as they are. A file src_dir
 * lacks is skipped. 0, or -1 with err. */
int cb_tokenizer_save(const tokenizer *t, const char *src_dir, const char *dst_dir, cb_err *err);

/* Where dir's tokenizer_config.json or special_tokens_map.json names the
 * mask token as its pad_token (PyLate's save does: it pads queries with
 * [MASK]), name pad instead (the model's own pad token, config.json's
 * pad_token_id): colbert-ai takes the pad token for padding and zeroes the
 * vectors of every [MASK] of a query's expansion otherwise. Files without
 * that are left as they are. 0, or -1 with err. */
int cb_tokenizer_save_pad(const char *dir, const char *pad, cb_err *err);
#endif
