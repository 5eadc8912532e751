/* colmodel.h: a ColBERT model on disk and in memory.
 *
 * Load: a model directory (or hub id from the local HF cache) of any
 * family backbone.h supports.
 *   - A ColBERT checkpoint (artifact.metadata and a linear.weight tensor):
 *     the encoder (keys with or without the family's prefix, "bert."), its
 *     own projection and its
 *     ColBERT settings (query_maxlen, doc_maxlen, dim, mask_punctuation,
 *     attend_to_mask_tokens, relu) from artifact.metadata.
 *   - A plain encoder: a new ColBERT; linear [dim, H] ~ Normal(0,
 *     initializer_range) from a seed, colbert-ai's default settings.
 *   Markers: [unused0] / [unused1] where the vocabulary has them (BERT);
 *   else PyLate's "[Q] " / "[D] ", added to the tokenizer at load when it
 *   lacks them, the word embeddings growing for them as PyLate's
 *   resize_token_embeddings (new rows from the seed); a checkpoint saved
 *   from such a model has them in tokenizer.json and loads as it was.
 * Save: a Hugging Face model directory that colbert-ai, RAGatouille and
 *   PyLate load: config.json, model.safetensors (the family's prefix, "bert.",
 *   + encoder keys, "linear.weight"), the tokenizer files, artifact.metadata (the ColBERT
 *   settings as JSON with a "meta" object). Written into a temporary
 *   directory beside the target and renamed when complete.
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
    int is_colbert;             /* loaded from a ColBERT checkpoint */
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
 * (query_token_id / doc_token_id: cb_colmodel_marker_tokens), as colbert-ai
 * and PyLate read them. extra_meta: JSON object text merged into
 * artifact.metadata (may be NULL). */
int cb_colmodel_save(const char *dir, const backbone *enc, const float *params, const float *linear,
                  const colbert_config *cc, const tokenizer *tok, const char *src_dir, const char *extra_meta,
                  cb_err *err);

/* The marker tokens of tok, as cb_colbert_vocab_init picks them: "[unused0]"
 * where it has it, else "[Q] "; "[unused1]", else "[D] ". */
void cb_colmodel_marker_tokens(const tokenizer *tok, const char **query, const char **doc);
#endif
