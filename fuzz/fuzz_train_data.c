/* fuzz_train_data.c: the ColBERT training-file readers (data_load.c, and
 * the JSON line parser of data_json.c under the triples): parts 0, 1, 2
 * of the input (cut at FUZZ_SEP) are queries.train.colbert.tsv,
 * corpus.train.colbert.tsv and triples.train.colbert.jsonl. Each is read
 * on its own (the triples with nway 2 and with nway from the first line),
 * then the three together as `colbert train --data` reads them (ids
 * cross-checked, the prepare manifest when there is one: part 3). */
#include "fuzz.h"
#include "data.h"
#include "train_run.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *NAMES[] = {QF, CF, TF, MANIFEST};
static void cleanup(void) { fuzz_cleanup_dir(fuzz_dir("train-data"), NAMES, 4); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once) {
        once = 1;
        atexit(cleanup);
    }
    const char *dir = fuzz_dir("train-data");
    fuzz_part parts[4];
    int n = fuzz_split(data, size, parts, 4);
    for (int i = 0; i < 4; i++) fuzz_write_part(dir, NAMES[i], parts, n, i);
    char path[512];
    cb_err err;
    data_texts q, c;
    data_triples t;
    fuzz_path(path, sizeof path, dir, QF);
    if (cb_data_queries_load(&q, path, &err) == 0) {
        for (size_t i = 0; i < q.n; i++) {
            size_t len;
            cb_data_texts_get(&q, i, &len);
            if (cb_data_texts_find(&q, q.ids[i]) != (int64_t)i) abort();   /* ids are unique */
        }
        cb_data_texts_free(&q);
    }
    fuzz_path(path, sizeof path, dir, CF);
    if (cb_data_collection_load(&c, path, &err) == 0) cb_data_texts_free(&c);
    fuzz_path(path, sizeof path, dir, TF);
    for (int nway = 0; nway <= 2; nway += 2)
        if (cb_data_triples_load(&t, path, nway, &err) == 0) {
            if (t.nway < 1 || (nway && t.nway != nway)) abort();
            cb_data_triples_free(&t);
        }
    q = (data_texts){0};
    c = (data_texts){0};
    t = (data_triples){0};
    if (cb_train_load_data(dir, &q, &c, &t, &err) == 0) {
        for (size_t i = 0; i < t.n; i++) {
            if (cb_data_texts_find(&q, t.qids[i]) < 0) abort();
            for (int k = 0; k < t.nway; k++)
                if (t.pids[i * (size_t)t.nway + (size_t)k] < 0 ||
                    (size_t)t.pids[i * (size_t)t.nway + (size_t)k] >= c.n)
                    abort();
        }
    }
    cb_data_texts_free(&q);
    cb_data_texts_free(&c);
    cb_data_triples_free(&t);
    return 0;
}
