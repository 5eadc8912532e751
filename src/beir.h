/* beir.h: the one reader of BEIR dataset directories, for prepare (training
 * pairs, --beir) and eval (judgements, --dataset).
 *
 *   DIR/corpus.jsonl      {"_id": string or number, "title": string or null
 *                         (optional), "text": string, ...} a line
 *   DIR/queries.jsonl     {"_id": ..., "text": string, ...} a line
 *   DIR/qrels/SPLIT.tsv   "query-id<TAB>corpus-id<TAB>score" (BEIR, a header
 *                         line allowed) or "query-id 0 corpus-id score" (TREC)
 *
 * Blank lines, CRLF endings and a byte-order mark are allowed everywhere.
 * A document's text is "title<title_sep>text" (the text alone when the title
 * is blank or no_title is set, the title alone when the text is blank).
 * Documents and queries are numbered in file order; ids are kept as text (a
 * numeric "_id" as written) and must be unique and non-empty.
 *
 * The split is checked first (a missing one is the likeliest mistake: the
 * message lists the splits there), then the corpus, the queries and the
 * qrels are read in that order, streaming: each document and each kept
 * qrels line goes to a callback, so a caller keeps only what it needs. Every
 * error names the file and the line: "FILE:LINE: what was expected, found".
 */
#ifndef CB_BEIR_H
#define CB_BEIR_H
#include <stddef.h>
#include <stdint.h>
#include "common.h"
#include "strtab.h"

typedef struct beir {
    char *corpus_path, *queries_path, *qrels_path;
    strtab doc_ids;         /* document k = line k of corpus.jsonl (blank lines aside) */
    strtab doc_texts;       /* the documents' texts, when opts.doc is NULL */
    strtab query_ids;       /* query k of queries.jsonl */
    strtab query_texts;     /* [query_ids.n] */
    int64_t n_qrels;        /* qrels lines handed to opts.qrel */
} beir;

/* One judgement: query and document indices (as above), the score, and
 * its line in qrels_path (for messages). */
typedef struct beir_qrel {
    uint32_t query, doc;
    double score;
    int64_t line;
} beir_qrel;

typedef struct beir_opts {
    const char *title_sep;  /* " " */
    int no_title;           /* 0: title and text; 1: the text alone */
    int positive_only;      /* 1: qrels lines with score <= 0 are skipped
                               before their ids are looked up (prepare) */
    int integer_scores;     /* 1: a score must be an integer grade (eval) */
    int progress;           /* 1: a progress bar over a large corpus.jsonl */
    /* Each document in file order with its joined text: return 0, or -1
     * with err (prefixed with FILE:LINE by the reader). NULL: the texts are
     * kept in b->doc_texts instead. */
    int (*doc)(void *ctx, uint32_t k, const char *text, size_t len, cb_err *err);
    /* Each kept qrels line in file order, ids resolved: return 0, or -1 with
     * err (the callback names the file and line itself). */
    int (*qrel)(void *ctx, const beir *b, const beir_qrel *r, cb_err *err);
    void *ctx;
} beir_opts;

void cb_beir_opts_default(beir_opts *o);

/* Read DIR with qrels/SPLIT.tsv as described above into b (freed on
 * failure). Returns 0, or -1 with err: DIR not a directory, no qrels
 * directory, no such split (naming the splits there), a file that cannot be
 * read or is empty, a line that is not a JSON object with a string or
 * number "_id" and a "text" string, a title that is not a string, an empty
 * or repeated "_id", a qrels line without 3 or 4 fields or whose score is
 * not a number (an integer with integer_scores; a first line that is not is
 * the header), a query-id or corpus-id that the queries or the corpus lack,
 * or an error of a callback. */
int cb_beir_read(beir *b, const char *dir, const char *split, const beir_opts *o, cb_err *err);
void cb_beir_free(beir *b);
#endif
