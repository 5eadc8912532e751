/* colmodel.h: a ColBERT model on disk and in memory.
 *
 * Load: a model directory (or hub id from the local HF cache) of any
 * family backbone.h supports.
 *   - A colbert-ai checkpoint (a linear.weight tensor in model.safetensors):
 *     the encoder (keys with or without the family's prefix, "bert."), its
 *     own projection and its ColBERT settings (query_maxlen, doc_maxlen,
 *     dim, mask_punctuation, attend_to_mask_tokens, relu, the markers
 *     query_token_id / doc_token_id) from artifact.metadata.
 *   - Else a PyLate ColBERT (pylate.h: modules.json lists the encoder and a
 *     Dense): the encoder at the root, the projection of 1_Dense, the
 *     settings and markers of config_sentence_transformers.json.
 *   - Else a plain encoder: a new ColBERT; linear [dim, H] ~ Normal(0,
 *     initializer_range) from a seed, colbert-ai's default settings.
 *   Markers: those the checkpoint names; else [unused0] / [unused1] where
 *   the vocabulary has them (BERT); else PyLate's "[Q] " / "[D] ". A marker
 *   the tokenizer lacks is added at load, the word embeddings growing for
 *   it as PyLate's resize_token_embeddings (new rows from the seed); a
 *   checkpoint saved from such a model has it in tokenizer.json and loads
 *   as it was. After load cc.query_token / cc.doc_token name both.
 * Save: a Hugging Face model directory that colbert-ai, RAGatouille and
 *   PyLate load: config.json, model.safetensors (the family's prefix, "bert.",
 *   + encoder keys, "linear.weight"), the tokenizer files, artifact.metadata (the ColBERT
 *   settings as JSON with a "meta" object), and PyLate's own files
 *   (modules.json, 1_Dense, config_sentence_transformers.json: pylate.h).
 *   Written into a temporary directory beside the target and renamed when
 *   complete.
 * Encode (inference, no dropout): query vectors [query_maxlen, dim] each
 *   (the [MASK] augmentation included), document vectors of the kept
 *   tokens only (punctuation dropped), as colbert-ai's queryFromText and
 *   docFromText give them.
 */
#ifndef CB_COLMODEL_H
#define CB_COLMODEL_H
#include <stddef.h>
#include <stdint.h>
#include "backbone.h"
#include "colbert.h"
#include "tokenizer.h"

typedef struct colmodel {
    char *dir;                  /* resolved directory it was loaded from */
    tokenizer *tok;
    colbert_vocab vocab;
    ops_device *dev;            /* where the model runs */
    backbone enc;               /* on dev */
    float *linear;              /* [dev] [dim, H], owned */
    int is_colbert;             /* loaded from a ColBERT checkpoint (colbert-ai's or PyLate's) */
    int is_pylate;              /* from a PyLate directory (its projection in 1_Dense) */
    int added_markers;          /* "[Q] " / "[D] " were added at load (no [unused0] / [unused1]) */
    colbert_config cc;
    char *metadata;             /* artifact.metadata text, NULL if none */
    /* inference buffers, allocated on first encode */
    backbone_acts acts;
    int batch_tokens;
    void *buf;                  /* [dev] one allocation: */
    float *d_out, *d_proj, *d_norm;   /* [T, dim] [T, dim] [T] */
    uint8_t *d_keep;            /* [T] */
    void *host;                 /* host staging, one allocation: */
    float *h_out;               /* [T, dim] */
    int32_t *h_ids;             /* [T] */
    int *h_len;                 /* [T] */
    uint8_t *h_mask, *h_keep;   /* [T] */
    int quiet;
} colmodel;

/* Load onto device dev. dim: projection size for a new ColBERT (0: 128);
 * ignored for a checkpoint, which brings its own. */
int cb_colmodel_load(colmodel *m, ops_device *dev, const char *name, int dim, uint64_t seed, cb_err *err);
void cb_colmodel_free(colmodel *m);

/* The ColBERT settings of an artifact.metadata text[0..len) (path names it
 * in messages) over cc: query_maxlen, doc_maxlen, dim, mask_punctuation,
 * attend_to_mask_tokens, relu, at the top level or under "config". *dim_given
 * = the dim it sets, 0 when it has none. 0, or -1 with err ("PATH:LINE:COL:
 * invalid JSON", a key of the wrong type, a setting out of range). */
int cb_colbert_metadata_parse(colbert_config *cc, int *dim_given, const char *text, size_t len, const char *path,
                              cb_err *err);

/* out[n, query_maxlen, dim] (host), in batches of
 * cb_colmodel_queries_per_batch queries (a query's vectors depend only on
 * the batch it is in: ranks that split the queries at multiples of it get
 * one process's bytes). 0, or -1 with err (out of memory). */
int cb_colmodel_encode_queries(colmodel *m, const char *const *texts, const size_t *lens, int n, float *out,
                            cb_err *err);
int cb_colmodel_queries_per_batch(const colmodel *m);
/* *lengths [n] kept vectors per document, *vectors [sum lengths, dim]
 * (host); caller frees both. 0, or -1 with err. */
int cb_colmodel_encode_docs(colmodel *m, const char *const *texts, const size_t *lens, int n, int **lengths,
                         float **vectors, cb_err *err);

/* Write a checkpoint to `dir`: the encoder enc's parameters (host, in the
 * layout of cb_backbone_named_tensors(enc), written under its family's
 * prefix), linear [cc->dim, H] (host) and the ColBERT settings cc, copying
 * config.json (its vocab_size set to enc's) from src_dir and writing the
 * tokenizer tok with cb_tokenizer_save (src_dir's files, the added markers
 * in tokenizer.json). artifact.metadata names the markers
 * (query_token_id / doc_token_id: cc's, else cb_colbert_default_markers),
 * as colbert-ai and PyLate read them; PyLate's files name them too. extra_meta: JSON object text merged into
 * artifact.metadata (may be NULL). */
int cb_colmodel_save(const char *dir, const backbone *enc, const float *params, const float *linear,
                  const colbert_config *cc, const tokenizer *tok, const char *src_dir, const char *extra_meta,
                  cb_err *err);

#endif
