/* tok_unigram.c: the Unigram model of Hugging Face `tokenizers` (the
 * sentencepiece model of XLM-R, e5, T5...): the segmentation of a word
 * with the highest sum of piece scores (Viterbi), as HF's encode_optimized
 * runs it:
 *   - for each character position, every vocabulary piece starting there
 *     (shortest first) offers best[start] + score to best[end]; a candidate
 *     replaces the best only when strictly higher;
 *   - when no single-character piece starts there, the unknown token offers
 *     min_score - 10 for that one character;
 *   - backtracking from the end; consecutive unknown pieces fuse into one;
 *   - a piece is then looked up by its string; one that is not in the
 *     vocabulary becomes its "<0xXX>" byte tokens (byte_fallback, when all
 *     exist) or the unknown id.
 */
#include "tok.h"

#include <jansson.h>
#include <stdlib.h>

int tok_unigram_load(tok_unigram *u, tok_vocab *voc, json_t *model, const char *path, cb_err *err) {
    json_t *vocab = json_object_get(model, "vocab");
    size_t n = json_array_size(vocab);
    if (!json_is_array(vocab) || n == 0)
        return cb_err_set(err, "%s: model.vocab is missing or empty (expected a Unigram [piece, score] list)", path);
    if (n > (1u << 24)) return cb_err_set(err, "%s: model.vocab has %zu pieces, more than supported", path, n);
    json_t *unk = json_object_get(model, "unk_id");
    if (!json_is_integer(unk) || json_integer_value(unk) < 0 || (size_t)json_integer_value(unk) >= n)
        return cb_err_set(err, "%s: model.unk_id must be the id of a vocabulary piece (0 .. %zu); a Unigram model "
                               "without an unknown token is not supported", path, n - 1);
    u->unk_id = (int)json_integer_value(unk);
    u->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    u->n = (int)n;
    if (!(u->score = cb_malloc(n * sizeof *u->score, "the Unigram scores", err))) return -1;
    if (tok_vocab_init(voc, n, err)) return -1;
    u->min_score = 1e300;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(vocab, i);
        json_t *piece = json_array_get(e, 0), *score = json_array_get(e, 1);
        if (!json_is_array(e) || json_array_size(e) != 2 || !json_is_string(piece) || !json_is_number(score))
            return cb_err_set(err, "%s: model.vocab[%zu] is not a [piece, score] pair", path, i);
        int old;
        int rc = tok_vocab_put(voc, json_string_value(piece), json_string_length(piece), (int)i, &old, err);
        if (rc < 0) return -1;
        if (rc == 1)
            return cb_err_set(err, "%s: model.vocab[%zu] '%s' repeats model.vocab[%d]", path, i,
                              json_string_value(piece), old);
        u->score[i] = json_number_value(score);
        if (u->score[i] < u->min_score) u->min_score = u->score[i];
    }
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        u->byte_id[b] = tok_vocab_find(voc, 0, name, 6);
    }
    return 0;
}

void tok_unigram_free(tok_unigram *u) { free(u->score); }

static inline size_t utf8_lead_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

typedef struct node {
    double score;
    int32_t start;     /* -1: no path ends here yet */
    int32_t id;
} node;

/* The id of a final piece w[a..b): as looked up by its string. */
static void emit_piece(const tok_unigram *u, const tok_vocab *voc, const char *w, size_t a, size_t b, tok_push_fn push,
                       void *ctx) {
    int id = tok_vocab_find(voc, 0, w + a, b - a);
    if (id >= 0) {
        push(ctx, id);
        return;
    }
    if (u->byte_fallback) {
        int ok = 1;
        for (size_t i = a; i < b && ok; i++) ok = u->byte_id[(unsigned char)w[i]] >= 0;
        if (ok) {
            for (size_t i = a; i < b; i++) push(ctx, u->byte_id[(unsigned char)w[i]]);
            return;
        }
    }
    push(ctx, u->unk_id);
}

int tok_unigram_encode(const tok_unigram *u, const tok_vocab *voc, const char *w, size_t n, tok_push_fn push,
                       void *ctx) {
    if (n == 0) return 0;
    node stack_best[257];
    int32_t stack_ends[257];
    node *best = n < 256 ? stack_best : malloc((n + 1) * sizeof *best);
    int32_t *ends = n < 256 ? stack_ends : malloc((n + 1) * sizeof *ends);
    if (!best || !ends) {
        if (best != stack_best) free(best);
        if (ends != stack_ends) free(ends);
        return -1;
    }
    for (size_t i = 0; i <= n; i++) best[i] = (node){0.0, -1, 0};
    const double unk_score = u->min_score - 10.0;
    for (size_t s = 0; s < n;) {
        double here = best[s].score;
        size_t mblen = utf8_lead_len((unsigned char)w[s]);
        if (mblen > n - s) mblen = n - s;
        int single = 0;
        for (size_t e = s + mblen; e <= n && e - s <= voc->max_tok_len;) {
            int id = tok_vocab_find(voc, 0, w + s, e - s);
            if (id >= 0) {
                double cand = here + u->score[id];
                if (best[e].start < 0 || cand > best[e].score) best[e] = (node){cand, (int32_t)s, id};
                if (e - s == mblen) single = 1;
            }
            if (e == n) break;
            e += utf8_lead_len((unsigned char)w[e]);
            if (e > n) e = n;
        }
        if (!single) {
            double cand = here + unk_score;
            if (best[s + mblen].start < 0 || cand > best[s + mblen].score)
                best[s + mblen] = (node){cand, (int32_t)s, u->unk_id};
        }
        s += mblen;
    }
    /* backtrack: the piece ends, right to left */
    size_t m = 0, e = n;
    while (e > 0) {
        const node *nd = &best[e];
        ends[m++] = (int32_t)e;
        e = (size_t)nd->start;
    }
    /* left to right; fuse consecutive unknown pieces */
    size_t a = 0;
    for (size_t k = m; k-- > 0;) {
        size_t b = (size_t)ends[k];
        if (best[b].id == u->unk_id) {
            size_t b2 = b;
            while (k > 0 && best[ends[k - 1]].id == u->unk_id) b2 = (size_t)ends[--k];
            emit_piece(u, voc, w, a, b2, push, ctx);
            a = b2;
            continue;
        }
        push(ctx, best[b].id);
        a = b;
    }
    if (best != stack_best) free(best);
    if (ends != stack_ends) free(ends);
    return 0;
}
