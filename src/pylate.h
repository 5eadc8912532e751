/* pylate.h: PyLate model directories, read and written.
 *
 * PyLate (models.ColBERT.save) stores a ColBERT as a sentence-transformers
 * directory:
 *   - modules.json: [Transformer at path "", Dense at path "1_Dense"]
 *     (the Dense is pylate.models.Dense.Dense, or sentence-transformers'
 *     own, which PyLate converts);
 *   - the encoder at the root (config.json, model.safetensors without the
 *     family's prefix, the tokenizer with the markers "[Q] " / "[D] " added);
 *   - 1_Dense/config.json (in_features H, out_features dim, bias false,
 *     activation_function Identity or ReLU, use_residual false) and
 *     1_Dense/model.safetensors ("linear.weight" [dim, H]);
 *   - config_sentence_transformers.json: query_prefix, document_prefix,
 *     query_length, document_length, attend_to_expansion_tokens,
 *     skiplist_words, do_query_expansion (PyLate's defaults where a key is
 *     absent: "[Q] ", "[D] ", 32, 180, false, string.punctuation, true).
 *
 * colbert.c reads such a directory as a ColBERT model (fine-tuning,
 * encoding) and writes these files into every checkpoint beside colbert-ai's
 * (artifact.metadata and linear.weight in model.safetensors), so PyLate
 * loads a checkpoint as its own model and colbert-ai as its own.
 */
#ifndef CB_PYLATE_H
#define CB_PYLATE_H
#include "colbert.h"
#include "common.h"

typedef struct pylate_dir {
    int found;                  /* modules.json is [Transformer, Dense]: a PyLate ColBERT */
    char dense[256];            /* the Dense module's folder ("1_Dense") */
    int dim, hidden;            /* the Dense's out_features, in_features */
    colbert_config cc;          /* the settings and markers, PyLate's defaults where absent */
} pylate_dir;

/* Read dir's modules.json, the Dense's config.json and
 * config_sentence_transformers.json into p. p->found is 0 (and nothing is an
 * error) where dir has no modules.json or its modules are not a PyLate
 * ColBERT (a sentence-transformers model with Pooling, say). 0, or -1 with
 * err naming the file and what is not supported (a Dense with a bias, a
 * residual or another activation, chained Dense modules, the encoder in a
 * sub-folder, an empty prefix, do_query_expansion false). */
int cb_pylate_read(pylate_dir *p, const char *dir, cb_err *err);

/* The projection [p->dim, H] of a directory cb_pylate_read found, into lin
 * (host). 0, or -1 with err (H not the Dense's in_features, a missing or
 * malformed model.safetensors). */
int cb_pylate_read_linear(const pylate_dir *p, const char *dir, int H, float *lin, cb_err *err);

/* Write PyLate's files for the ColBERT settings cc (markers included),
 * hidden size H and projection linear [cc->dim, H] (host) into dir, which
 * already holds the encoder: modules.json, 1_Dense/config.json,
 * 1_Dense/model.safetensors, config_sentence_transformers.json and
 * sentence_bert_config.json. 0, or -1 with err. */
int cb_pylate_write(const char *dir, const colbert_config *cc, int H, const float *linear, cb_err *err);
#endif
