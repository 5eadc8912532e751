/* encoder.h: text in, vectors out. A tokenizer, an encoder (backbone.h) and the
 * sentence-transformers pooling of one model directory, with the batching
 * that makes encoding fast: texts are tokenized in parallel, sorted by
 * length and packed into batches of about `batch_tokens` tokens, so no work
 * is spent on padding.
 */
#ifndef CB_ENCODER_H
#define CB_ENCODER_H
#include <stddef.h>
#include <stdint.h>
#include "backbone.h"
#include "comm.h"
#include "model.h"
#include "tokenizer.h"

typedef struct encoder {
    char *dir;              /* resolved model directory */
    tokenizer *tok;
    tokenizer_template tmpl;  /* the special ids around a text ([CLS] ... [SEP], <s> ... </s>) */
    ops_device *dev;        /* where the model runs */
    backbone enc;           /* on dev */
    sbert_config sbert;
    int max_len;            /* tokens per text, the template's specials included */
    int batch_tokens;       /* token budget of one forward pass */
    backbone_acts acts;
    float *hidden;          /* host copy of a batch's hidden states [batch_tokens, H] */
    int quiet;              /* no progress bar */
    cb_comm *comm;          /* NULL: one process; else cb_encoder_embed splits its
                             * batches over the ranks (all call it together) */
} encoder;

/* Load a model by name (directory or hub id). max_len 0: the model's
 * sentence-transformers max_seq_length, else the longest sequence the
 * encoder takes (backbone_info.max_len); never more than that. */
int cb_encoder_load(encoder *e, ops_device *dev, const char *name, int max_len, cb_err *err);
void cb_encoder_free(encoder *e);

/* Token ids of one text with the tokenizer's template (tokenizer.h):
 * prefix pieces... suffix ([CLS] pieces... [SEP] for BERT), the pieces
 * truncated so that the whole fits in max_len.
 * ids must hold max_len entries; returns the count. */
int cb_encoder_tokenize(const encoder *e, const char *text, size_t len, int32_t *ids);

/* Sentence embeddings: out[n, H] (host), pooled and normalised as the
 * model's sentence-transformers modules say (mean pooling when there are
 * none). With e->comm: each rank encodes a contiguous share of the batches
 * and every rank gets all n rows, the same bytes one process computes.
 * 0, or -1 with err (out of memory). */
int cb_encoder_embed(encoder *e, const char *const *texts, const size_t *lens, int n, float *out, cb_err *err);

/* Last hidden states of every token. *lengths gets [n] token counts,
 * *vectors [sum lengths, H] packed in input order (host). Caller frees
 * both. 0, or -1 with err. */
int cb_encoder_token_vectors(encoder *e, const char *const *texts, const size_t *lens, int n, int **lengths,
                          float **vectors, cb_err *err);
#endif
