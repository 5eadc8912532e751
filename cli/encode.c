/* encode.c: `colbert encode`: sentence embeddings or token vectors of
 * each line of a text file, written as .npy. */
#include "args.h"
#include "cli.h"
#include "encoder.h"
#include "job.h"
#include "npy.h"
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

static const char *ENCODE_HELP =
    "usage: colbert encode --model M --input FILE --output OUT.npy|OUT.safetensors [options]\n"
    "\n"
    "Encode each line of FILE (one text a line, UTF-8) with a model of a family\n"
    "that loads (bert, roberta, xlm-roberta, camembert, modernbert). By default\n"
    "writes the sentence embeddings, [N, hidden] float32, pooled and normalised\n"
    "as the model's sentence-transformers files (modules.json,\n"
    "1_Pooling/config.json) say, mean pooling when there are none.\n"
    "\n"
    "options:\n"
    "  --model M          model directory, or hub id from the local Hugging Face cache\n"
    "  --input FILE       input texts, one per line ('-' for stdin)\n"
    "  --output OUT       .npy, or .safetensors (tensor \"embeddings\"); written to a\n"
    "                     temporary name and renamed when complete; its room on\n"
    "                     disk is checked (allocated) before anything is encoded\n"
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
    CLI_DEVICE_HELP
    "  --threads N        threads (default: all cores)\n"
    "  --quiet            no progress bar\n"
    "  -h, --help         this help\n";

/* Before anything is encoded, make sure the output can be written: create
 * each file's temporary (the name its writer will use) and allocate its
 * size on disk (posix_fallocate), then let both go. An unwritable
 * directory, a full disk or a file size limit is then an error at once,
 * not after the whole encoding. bytes[i]: the data of file i; the headers
 * (.npy and .safetensors: well under 1 KiB) are added. */
static int reserve_outputs(const char *const *paths, const uint64_t *bytes, int n, cb_err *err) {
    FILE *f[2] = {NULL, NULL};
    char *tmp[2] = {NULL, NULL};
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (cb_dir_exists(paths[i])) {   /* the final rename would fail */
            rc = cb_err_set(err, "%s: is a directory; nothing was encoded", paths[i]);
            break;
        }
        if (!(f[i] = cb_out_open(paths[i], &tmp[i], err))) {
            rc = -1;
            break;
        }
        uint64_t want = bytes[i] + 1024;
        int e = posix_fallocate(fileno(f[i]), 0, (off_t)want);
        if (e)
            rc = cb_err_set(err, "%s: no room for the output (%.1f MB): %s; nothing was encoded", paths[i],
                            (double)want / 1e6, strerror(e));
    }
    for (int i = 0; i < n; i++) cb_out_abort(f[i], tmp[i]);
    return rc;
}

/* OUT.lengths.npy beside OUT.npy (caller frees). */
static char *lengths_path(const char *output) {
    size_t olen = strlen(output);
    char *lpath = cli_xmalloc(olen + 16);
    memcpy(lpath, output, olen - 4);
    strcpy(lpath + olen - 4, ".lengths.npy");
    return lpath;
}

/* The ragged outputs of write_ragged: total vectors of dim floats and n lengths. */
static int reserve_ragged(const char *output, uint64_t total, int n, int dim, cb_err *err) {
    size_t olen = strlen(output);
    uint64_t vec = total * (uint64_t)dim * 4, len = (uint64_t)n * 4;
    if (olen > 12 && !strcmp(output + olen - 12, ".safetensors"))
        return reserve_outputs((const char *[]){output}, (uint64_t[]){vec + len}, 1, err);
    char *lpath = lengths_path(output);
    int rc = reserve_outputs((const char *[]){output, lpath}, (uint64_t[]){vec, len}, 2, err);
    free(lpath);
    return rc;
}

/* Ragged vectors: OUT.npy [sum lengths, dim] and OUT.lengths.npy [n] int32,
 * or tensors "vectors" and "lengths" in OUT.safetensors. */
static int write_ragged(const char *output, const float *vec, const int *L, int n, int dim, cb_err *err) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += L[i];
    size_t olen = strlen(output);
    if (olen > 12 && !strcmp(output + olen - 12, ".safetensors")) {
        st_wtensor t[2] = {{"vectors", ST_F32, 2, {total, dim}, vec}, {"lengths", ST_I32, 1, {n}, L}};
        return cb_st_write(output, t, 2, err);
    }
    int64_t shape[2] = {total, dim}, lshape[1] = {n};
    char *lpath = lengths_path(output);
    int rc = cb_npy_write(lpath, "<i4", L, 1, lshape, err);
    if (!rc) rc = cb_npy_write(output, "<f4", vec, 2, shape, err);
    if (rc) remove(lpath);
    free(lpath);
    return rc;
}

/* --colbert query|doc */
static int encode_colbert(ops_device *dev, const char *model, const char *input, const char *output, int queries,
                          int quiet) {
    cb_err err = {{0}};
    colmodel m;
    if (cb_encode_colbert_load(&m, dev, model, &err)) {   /* as the Python package's encode loads it */
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        return 1;
    }
    m.quiet = quiet;
    char *buf, **lines;
    size_t *lens;
    int n = cli_read_lines(input, &buf, &lines, &lens, &err), rc = 0;
    if (n < 0) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        cb_colmodel_free(&m);
        return 1;
    }
    int D = m.cc.dim;
    if (queries) {
        uint64_t bytes = (uint64_t)n * m.cc.query_maxlen * D * 4;
        rc = reserve_outputs((const char *[]){output}, &bytes, 1, &err);
    } else {   /* the kept (not punctuation) tokens of each document, as the encoder counts them */
        uint64_t total = 0;
        int32_t *ids = cli_xmalloc((size_t)m.cc.doc_maxlen * sizeof *ids);
        uint8_t *keep = cli_xmalloc((size_t)m.cc.doc_maxlen);
        for (int i = 0; i < n; i++) {
            int k = cb_colbert_doc_ids(ids, &m.vocab, m.tok, lines[i], lens[i], &m.cc);
            cb_colbert_doc_keep(keep, ids, k, &m.vocab, m.cc.mask_punctuation);
            for (int t = 0; t < k; t++) total += keep[t];
        }
        free(ids);
        free(keep);
        rc = reserve_ragged(output, total, n, D, &err);
    }
    colbert_vectors v = {0};
    if (!rc) rc = cb_encode_colbert_run(&v, &m, (const char *const *)lines, lens, n, queries, &err);
    if (!rc && queries) {
        int64_t shape[3] = {n, v.query_maxlen, v.dim};
        rc = cb_npy_write(output, "<f4", v.vectors, 3, shape, &err);
    } else if (!rc) {
        rc = write_ragged(output, v.vectors, v.lengths, n, v.dim, &err);
    }
    if (rc) fprintf(stderr, "colbert: error: %s\n", err.msg);
    cb_colbert_vectors_free(&v);
    free(buf);
    free(lines);
    free(lens);
    cb_colmodel_free(&m);
    return rc ? 1 : 0;
}

enum { OPT_MODEL = 256, OPT_INPUT, OPT_OUTPUT, OPT_TOKEN_VECTORS, OPT_COLBERT, OPT_MAX_LENGTH, OPT_THREADS,
       OPT_QUIET, OPT_DEVICE, OPT_PRECISION };
static const struct option ENCODE_OPTS[] = {
    {"model", required_argument, NULL, OPT_MODEL},
    {"input", required_argument, NULL, OPT_INPUT},
    {"output", required_argument, NULL, OPT_OUTPUT},
    {"token-vectors", no_argument, NULL, OPT_TOKEN_VECTORS},
    {"colbert", required_argument, NULL, OPT_COLBERT},
    {"max-length", required_argument, NULL, OPT_MAX_LENGTH},
    {"threads", required_argument, NULL, OPT_THREADS},
    {"quiet", no_argument, NULL, OPT_QUIET},
    {"device", required_argument, NULL, OPT_DEVICE},
    {"precision", required_argument, NULL, OPT_PRECISION},
    {"help", no_argument, NULL, 'h'},
    {0, 0, 0, 0}};

int cli_encode(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *output = NULL;
    int token_vectors = 0, max_len = 0, threads = 0, quiet = 0;
    const char *colbert = NULL, *device = NULL;
    ops_precision precision = OPS_BF16;
    cli_args a;
    cli_args_init(&a, "encode", argc, argv, ENCODE_OPTS);
    long long v;
    for (int c; (c = cli_args_next(&a)) != -1;) {
        switch (c) {
        case 'h': fputs(ENCODE_HELP, stdout); return 0;
        case OPT_MODEL: model = a.arg; break;
        case OPT_INPUT: input = a.arg; break;
        case OPT_OUTPUT: output = a.arg; break;
        case OPT_TOKEN_VECTORS: token_vectors = 1; break;
        case OPT_COLBERT:
            if (strcmp(a.arg, "query") && strcmp(a.arg, "doc")) return cli_args_bad_value(&a, "query or doc");
            colbert = a.arg;
            break;
        case OPT_MAX_LENGTH:   /* [CLS] and [SEP] at least; the model's positions bound it later */
            if (cli_args_int(&a, 2, 1000000, &v)) return CLI_USAGE;
            max_len = (int)v;
            break;
        case OPT_THREADS:
            if (cli_args_int(&a, 1, 4096, &v)) return CLI_USAGE;
            threads = (int)v;
            break;
        case OPT_QUIET: quiet = 1; break;
        case OPT_DEVICE:
            if (!cli_device_ok(a.arg)) return cli_args_bad_value(&a, "auto, cpu, cuda or cuda:N");
            device = a.arg;
            break;
        case OPT_PRECISION:
            if (cb_ops_precision_parse(a.arg, &precision)) return cli_args_bad_value(&a, "bf16 or fp32");
            break;
        default: return CLI_USAGE;
        }
    }
    if (cli_args_positional(&a, NULL, 0) < 0) return CLI_USAGE;
    if (!model || !input || !output)
        return cli_usage_error(a.cmd, "missing required option '%s'",
                               !model ? "--model" : !input ? "--input" : "--output");
    size_t olen = strlen(output);
    int as_st = olen > 12 && !strcmp(output + olen - 12, ".safetensors");
    int as_npy = olen > 4 && !strcmp(output + olen - 4, ".npy");
    if (!as_st && !as_npy)
        return cli_usage_error(a.cmd, "option '--output': expected a .npy or .safetensors file, found '%s'",
                               output);
    if (colbert && !as_npy)
        return cli_usage_error(a.cmd, "option '--colbert' writes .npy files, found '--output %s'", output);
    cli_set_threads(threads);
    cb_err err = {{0}};
    ops_device *dev = cli_open_device(device, precision);
    if (!dev) return 1;
    if (colbert) {
        int crc = encode_colbert(dev, model, input, output, !strcmp(colbert, "query"), quiet);
        cb_ops_close(dev);
        return crc;
    }
    encoder e;
    if (cb_encoder_load(&e, dev, model, max_len, &err)) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        cb_ops_close(dev);
        return 1;
    }
    e.quiet = quiet;
    char *buf, **lines;
    size_t *lens;
    int n = cli_read_lines(input, &buf, &lines, &lens, &err);
    if (n < 0) {
        fprintf(stderr, "colbert: error: %s\n", err.msg);
        cb_encoder_free(&e);
        cb_ops_close(dev);
        return 1;
    }
    int H = e.enc.info.hidden, rc = 0;
    double t0 = cb_now();
    if (!token_vectors) {
        uint64_t bytes = (uint64_t)n * H * 4;
        rc = reserve_outputs((const char *[]){output}, &bytes, 1, &err);
    } else {   /* the tokens of each text, as the encoder will count them */
        uint64_t total = 0;
        int32_t *ids = cli_xmalloc((size_t)e.max_len * sizeof *ids);
        for (int i = 0; i < n; i++) total += (uint64_t)cb_encoder_tokenize(&e, lines[i], lens[i], ids);
        free(ids);
        rc = reserve_ragged(output, total, n, H, &err);
    }
    if (rc) {
    } else if (!token_vectors) {
        float *out = cli_xmalloc((size_t)(n ? n : 1) * H * sizeof(float));
        int64_t shape[2] = {n, H};
        rc = cb_encoder_embed(&e, (const char *const *)lines, lens, n, out, &err);
        if (rc) {
        } else if (as_st) {
            st_wtensor t = {"embeddings", ST_F32, 2, {n, H}, out};
            rc = cb_st_write(output, &t, 1, &err);
        } else {
            rc = cb_npy_write(output, "<f4", out, 2, shape, &err);
        }
        free(out);
    } else {
        int *L;
        float *vec;
        rc = cb_encoder_token_vectors(&e, (const char *const *)lines, lens, n, &L, &vec, &err);
        if (!rc) {
            rc = write_ragged(output, vec, L, n, H, &err);
            free(L);
            free(vec);
        }
    }
    if (rc) fprintf(stderr, "colbert: error: %s\n", err.msg);
    else if (!quiet)
        fprintf(stderr, "encoded %d texts in %.2f s (%.1f texts/s) -> %s\n", n, cb_now() - t0,
                n / (cb_now() - t0 + 1e-9), output);
    free(buf);
    free(lines);
    free(lens);
    cb_encoder_free(&e);
    cb_ops_close(dev);
    return rc ? 1 : 0;
}
