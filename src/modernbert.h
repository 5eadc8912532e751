/* modernbert.h: the ModernBERT architecture (transformers'
 * ModernBertModel), one arch of the encoder interface (backbone.h:
 * cb_modernbert_arch) for model_type "modernbert". Callers go through
 * backbone.h; this header only names the arch.
 *
 * The encoder, on packed batches (no padding, no unpadding needed):
 *   x = drop(LN(tok_embeddings[id]))             no position or type rows
 *   per layer l (pre-norm):
 *     x = x + drop(Wo attn(rope(Wqkv attn_norm(x))))  attn_norm of layer 0
 *                                                      is the identity
 *     x = x + Wo2 drop(gelu(a) * g), (a, g) = Wi mlp_norm(x)   (GeGLU)
 *   out = final_norm(x)
 * LayerNorms have no bias (config norm_bias false) and eps norm_eps; the
 * linear layers have no bias (attention_bias, mlp_bias false): config.json
 * files that set any of these true are refused, naming the key. Rotary
 * embeddings (NeoX style, whole head) count positions 0 .. n-1 within each
 * sequence; global layers (layer_types "full_attention", or
 * l % global_attn_every_n_layers == 0 in older configs) use the global
 * rope theta and attend to every key; local ones ("sliding_attention") use
 * the local theta and see keys |i - j| <= local_attention / 2.
 *
 * Dropout (training mode with the step's dropout on): embedding_dropout
 * after the embeddings' norm and mlp_dropout inside the MLP when
 * backbone_acts.p_hidden > 0; attention_dropout on the probabilities and
 * on the attention output when p_att > 0 (the config's values are used,
 * p_hidden only switches the first two on or off).
 *
 * Memory as bert.c: one parameter block, one activation block sized for
 * the largest batch, nothing allocated by forward or backward.
 */
#ifndef CB_MODERNBERT_H
#define CB_MODERNBERT_H
#include "backbone.h"

extern const backbone_arch cb_modernbert_arch;
#endif
