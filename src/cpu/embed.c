/* cpu/embed.c: BERT's embeddings (word + position + token type) and the
 * scatter-add of their gradient. */
#include "cpu.h"

#define COL_BLOCK 64

/* out: [T, H]; ids, pos, types: [T] (types NULL: all 0); pos_emb / type_emb
 * NULL: no such term */
void cb_cpu_embed_forward(ops_device *d, float *out, const int32_t *ids, const int32_t *pos, const int32_t *types,
                       const float *word, const float *pos_emb, const float *type_emb, int T, int H) {
    (void)d;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        int id = ids[t], tt = types ? types[t] : 0;
        const float *we = word + (size_t)id * H;
        float *e = out + (size_t)t * H;
        if (pos_emb && type_emb) {
            const float *pe = pos_emb + (size_t)pos[t] * H;
            const float *te = type_emb + (size_t)tt * H;
            for (int i = 0; i < H; i++) e[i] = we[i] + pe[i] + te[i];
        } else {   /* ModernBERT: the word rows alone (or one table added) */
            for (int i = 0; i < H; i++) e[i] = we[i];
            if (pos_emb)
                for (int i = 0; i < H; i++) e[i] += pos_emb[(size_t)pos[t] * H + i];
            if (type_emb)
                for (int i = 0; i < H; i++) e[i] += type_emb[(size_t)tt * H + i];
        }
    }
}

/* Threads own blocks of columns and walk every token in order, so each
 * row's sum runs in token order: deterministic. */
void cb_cpu_embed_backward(ops_device *d, float *dword, float *dpos, float *dtype, const float *dout,
                        const int32_t *ids, const int32_t *pos, const int32_t *types, int T, int H) {
    (void)d;
#pragma omp parallel for schedule(static)
    for (int c0 = 0; c0 < H; c0 += COL_BLOCK) {
        int c1 = c0 + COL_BLOCK < H ? c0 + COL_BLOCK : H;
        for (int t = 0; t < T; t++) {
            const float *de = dout + (size_t)t * H;
            float *gw = dword + (size_t)ids[t] * H;
            for (int i = c0; i < c1; i++) gw[i] += de[i];
            if (dpos) {
                float *gp = dpos + (size_t)pos[t] * H;
                for (int i = c0; i < c1; i++) gp[i] += de[i];
            }
            if (dtype) {
                float *gt = dtype + (size_t)(types ? types[t] : 0) * H;
                for (int i = c0; i < c1; i++) gt[i] += de[i];
            }
        }
    }
}
