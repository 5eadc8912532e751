/* encode.c: `colbert encode`: sentence embeddings or token vectors of
 * each line of a text file, written as .npy. */
#include "cli.h"
#include "colmodel.h"
#include "encoder.h"
#include "npy.h"
#include "safetensors.h"

#include <string.h>

static const char *ENCODE_HELP =
    "usage: colbert encode --model M --input FILE --output OUT.npy|OUT.safetensors [options]\n"
    "\n"
    "Encode each line of FILE (one text a line, UTF-8) with a BERT-family model.\n"
    "By default writes the sentence embeddings, [N, hidden] float32, pooled and\n"
    "normalised as the model's sentence-transformers files (modules.json,\n"
    "1_Pooling/config.json) say, mean pooling when there are none.\n"
    "\n"
    "options:\n"
    "  --model M          model directory, or hub id from the local Hugging Face cache\n"
    "  --input FILE       input texts, one per line ('-' for stdin)\n"
    "  --output OUT       .npy, or .safetensors (tensor \"embeddings\"); written to a\n"
    "                     temporary name and renamed when complete\n"
    "  --token-vectors    write the last hidden states of every token instead,\n"
    "                     [total tokens, hidden] in input order, and the tokens per\n"
    "                     text as int32 [N]: OUT.npy + OUT.lengths.npy, or tensors\n"
    "                     \"vectors\" and \"lengths\" in OUT.safetensors\n"
    "  --max-length N     tokens per text incl. [CLS] and [SEP] (default: the model's\n"
    "                     max_seq_length, else max_position_embeddings)\n"
    "  --colbert query|doc  ColBERT vectors instead (the model is a ColBERT\n"
    "                     checkpoint, or a plain encoder with a new seeded projection):\n"
    "                     query: OUT.npy [N, query_maxlen, dim], the [MASK]\n"
    "                     augmentation included; doc: OUT.npy [kept tokens, dim]\n"
    "                     (punctuation dropped) + OUT.lengths.npy [N] int32\n"
    "  --threads N        threads (default: all cores)\n"
    "  --quiet            no progress bar\n"
    "  -h, --help         this help\n";

/* Ragged vectors: OUT.npy [sum lengths, dim] and OUT.lengths.npy [n] int32,
 * or tensors "vectors" and "lengths" in OUT.safetensors. */
static int write_ragged(const char *output, const float *vec, const int *L, int n, int dim, cb_err *err) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += L[i];
    size_t olen = strlen(output);
    if (olen > 12 && !strcmp(output + olen - 12, ".safetensors")) {
        st_wtensor t[2] = {{"vectors", ST_F32, 2, {total, dim}, vec}, {"lengths", ST_I32, 1, {n}, L}};
        return st_write(output, t, 2, err);
    }
    int64_t shape[2] = {total, dim}, lshape[1] = {n};
    char *lpath = cb_xmalloc(olen + 16);
    memcpy(lpath, output, olen - 4);
    strcpy(lpath + olen - 4, ".lengths.npy");
    int rc = npy_write(lpath, "<i4", L, 1, lshape, err);
    if (!rc) rc = npy_write(output, "<f4", vec, 2, shape, err);
    if (rc) remove(lpath);
    free(lpath);
    return rc;
}

/* --colbert query|doc */
static int encode_colbert(const char *model, const char *input, const char *output, int queries, int quiet) {
    cb_err err = {{0}};
    size_t olen = strlen(output);
    if (olen < 5 || strcmp(output + olen - 4, ".npy")) {
        fprintf(stderr, "colbert: error: %s: --colbert writes .npy files\n", output);
        return 2;
    }
    colmodel m;
    if (colmodel_load(&m, model, 0, 12345, &err)) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        return 1;
    }
    m.quiet = quiet;
    char *buf, **lines;
    size_t *lens;
    int n = cli_read_lines(input, &buf, &lines, &lens, &err), rc = 0;
    if (n < 0) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        colmodel_free(&m);
        return 1;
    }
    int D = m.cc.dim;
    if (queries) {
        int Lq = m.cc.query_maxlen;
        float *out = cb_xmalloc(((size_t)n * Lq + 1) * D * sizeof(float));
        colmodel_encode_queries(&m, (const char *const *)lines, lens, n, out);
        int64_t shape[3] = {n, Lq, D};
        rc = npy_write(output, "<f4", out, 3, shape, &err);
        free(out);
    } else {
        int *L;
        float *vec;
        colmodel_encode_docs(&m, (const char *const *)lines, lens, n, &L, &vec);
        rc = write_ragged(output, vec, L, n, D, &err);
        free(L);
        free(vec);
    }
    if (rc) fprintf(stderr, "colbert: error: %s\n", err.msg);
    free(buf);
    free(lines);
    free(lens);
    colmodel_free(&m);
    return rc ? 1 : 0;
}

int cli_encode(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *output = NULL;
    int token_vectors = 0, max_len = 0, threads = 0, quiet = 0;
    const char *colbert = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { fputs(ENCODE_HELP, stdout); return 0; }
        else if (!strcmp(a, "--model") && more) model = argv[++i];
        else if (!strcmp(a, "--input") && more) input = argv[++i];
        else if (!strcmp(a, "--output") && more) output = argv[++i];
        else if (!strcmp(a, "--token-vectors")) token_vectors = 1;
        else if (!strcmp(a, "--colbert") && more) colbert = argv[++i];
        else if (!strcmp(a, "--max-length") && more) max_len = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && more) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--quiet")) quiet = 1;
        else {
            fprintf(stderr, "colbert encode: unknown or incomplete option '%s'\n\n%s", a, ENCODE_HELP);
            return 2;
        }
    }
    if (!model || !input || !output) {
        fprintf(stderr, "colbert encode: --model, --input and --output are required\n\n%s", ENCODE_HELP);
        return 2;
    }
    size_t olen = strlen(output);
    int as_st = olen > 12 && !strcmp(output + olen - 12, ".safetensors");
    if (!as_st && (olen < 5 || strcmp(output + olen - 4, ".npy"))) {
        fprintf(stderr, "colbert: error: %s: the output must be a .npy or .safetensors file\n", output);
        return 2;
    }
    cli_set_threads(threads);
    cb_err err = {{0}};
    if (colbert) {
        if (strcmp(colbert, "query") && strcmp(colbert, "doc")) {
            fprintf(stderr, "colbert encode: --colbert takes query or doc, not '%s'\n", colbert);
            return 2;
        }
        return encode_colbert(model, input, output, !strcmp(colbert, "query"), quiet);
    }
    encoder e;
    if (encoder_load(&e, model, max_len, &err)) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        return 1;
    }
    e.quiet = quiet;
    char *buf, **lines;
    size_t *lens;
    int n = cli_read_lines(input, &buf, &lines, &lens, &err);
    if (n < 0) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        encoder_free(&e);
        return 1;
    }
    int H = e.bert.cfg.hidden_size, rc = 0;
    double t0 = cb_now();
    if (!token_vectors) {
        float *out = cb_xmalloc((size_t)(n ? n : 1) * H * sizeof(float));
        encoder_embed(&e, (const char *const *)lines, lens, n, out);
        int64_t shape[2] = {n, H};
        if (as_st) {
            st_wtensor t = {"embeddings", ST_F32, 2, {n, H}, out};
            rc = st_write(output, &t, 1, &err);
        } else {
            rc = npy_write(output, "<f4", out, 2, shape, &err);
        }
        free(out);
    } else {
        int *L;
        float *vec;
        encoder_token_vectors(&e, (const char *const *)lines, lens, n, &L, &vec);
        rc = write_ragged(output, vec, L, n, H, &err);
        free(L);
        free(vec);
    }
    if (rc) fprintf(stderr, "colbert: error: %s\n", err.msg);
    else if (!quiet)
        fprintf(stderr, "encoded %d texts in %.2f s (%.1f texts/s) -> %s\n", n, cb_now() - t0,
                n / (cb_now() - t0 + 1e-9), output);
    free(buf);
    free(lines);
    free(lens);
    encoder_free(&e);
    return rc ? 1 : 0;
}
