/* model.h: Hugging Face model directories.
 *
 * A model is named by a local directory, or by a hub id ("ORG/NAME")
 * resolved from the local Hugging Face cache: $HF_HOME/hub, else
 * ~/.cache/huggingface/hub, directory models--ORG--NAME/snapshots/<rev>/
 * (the revision in refs/main when present, else the only/newest snapshot).
 * Nothing is ever downloaded.
 *
 * config.json of the families that run on the BERT architecture (the
 * family table of backbone.h) is read into bert_config; other model types
 * are refused with a clear message naming the supported ones. The sentence-transformers files
 * (modules.json, 1_Pooling/config.json, sentence_bert_config.json) are read
 * into sbert_config.
 */
#ifndef CB_MODEL_H
#define CB_MODEL_H
#include "common.h"

/* Resolve a model name to a directory path (caller frees). NULL + err when
 * it is neither a directory nor in the cache; the message says where it
 * looked and how to provide the model. */
char *cb_model_resolve(const char *name, cb_err *err);

typedef struct bert_config {
    char model_type[32];        /* "bert", or another family of backbone.h on this arch */
    int vocab_size;
    int hidden_size;
    int num_hidden_layers;
    int num_attention_heads;
    int intermediate_size;
    int max_position_embeddings;
    int type_vocab_size;
    int pad_token_id;
    float layer_norm_eps;
    float initializer_range;
    float hidden_dropout_prob;
    float attention_probs_dropout_prob;
    /* from the family (backbone.h) */
    int positions;              /* backbone_positions: how position ids follow from the ids */
    int max_len;                /* the longest sequence: max_position_embeddings, less
                                 * pad_token_id + 1 for POS_AFTER_PAD */
} bert_config;

/* Read and check <dir>/config.json: model_type must be a family of the
 * BERT architecture (backbone.h's table),
 * hidden_act gelu, position_embedding_type absolute, sizes positive,
 * hidden_size divisible by num_attention_heads. */
int cb_bert_config_load(bert_config *c, const char *dir, cb_err *err);

typedef enum sbert_pooling { POOL_MEAN, POOL_CLS, POOL_MAX, POOL_MEAN_SQRT_LEN } sbert_pooling;

typedef struct sbert_config {
    int is_sbert;           /* modules.json present */
    sbert_pooling pooling;  /* from 1_Pooling/config.json; mean when none */
    int normalize;          /* a sentence_transformers.models.Normalize module */
    int max_seq_length;     /* sentence_bert_config.json; else 0 (model max) */
    int include_prompt;     /* 1_Pooling/config.json's include_prompt (default 1) */
    /* config_sentence_transformers.json's prompts: the query prompt is
     * prompts["query"], the document prompt the first of prompts["document"],
     * ["passage"], ["corpus"] (the order of sentence-transformers'
     * encode_document, whose own built-in empty "document" prompt would hide
     * e5's "passage": the model's is meant); either, when absent, the prompt
     * named by default_prompt_name; "" when none. The prompt is put before
     * the text. */
    char prompt_query[512], prompt_doc[512];
} sbert_config;

/* Read the sentence-transformers description of <dir>; a plain model gives
 * {is_sbert 0, mean pooling, no normalisation, max_seq_length 0, no
 * prompts}. Prompts with include_prompt false are refused (not modelled). */
int cb_sbert_config_load(sbert_config *c, const char *dir, cb_err *err);
#endif
