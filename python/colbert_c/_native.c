/* _native.c: the CPython extension of colbert_c, over libcolbert.so.
 *
 * A thin layer: every function converts its arguments, releases the GIL,
 * runs one library call (job.h, train.h) and turns the result (or cb_err's
 * message, as ColbertError) back into Python objects. The Python package
 * (the .py files of colbert_c) does the RAGatouille-shaped API on top.
 *
 * Written against the stable ABI (Py_LIMITED_API 3.8): one wheel serves
 * every CPython from 3.8 on.
 *
 * Signals: train() catches SIGINT and SIGTERM itself while it runs (the
 * library finishes the current step and writes a resumable checkpoint) and
 * puts the previous handlers back before returning. The other calls are not
 * interruptible: Python sees a Ctrl-C when they return.
 */
#define Py_LIMITED_API 0x03080000
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "blas.h"
#include "job.h"
#include "model.h"
#include "ops.h"
#include "progress.h"
#include "train.h"
#include "cpu/attn.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static PyObject *ColbertError;   /* RuntimeError: a failure the library reported */

static PyObject *fail(const cb_err *err) {
    PyErr_SetString(ColbertError, err->msg[0] ? err->msg : "colbert: unknown error");
    return NULL;
}

static int dict_set(PyObject *d, const char *key, PyObject *v) {
    if (!v) return -1;
    int rc = PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
    return rc;
}

/* ---- info ------------------------------------------------------------------ */

static PyObject *py_init(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    const char *core = cb_blas_init_inprocess();
    return PyUnicode_FromString(core ? core : "?");
}

static PyObject *py_info(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    const char *core = cb_blas_corename();
    if (dict_set(d, "blas_kernels", PyUnicode_FromString(core ? core : "?")) ||
        dict_set(d, "simd", PyUnicode_FromString(cb_attn_isa_name(cb_attn_isa()))) ||
        dict_set(d, "cuda", PyBool_FromLong(cb_ops_have("cuda")))) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

static PyObject *py_set_threads(PyObject *self, PyObject *args) {
    (void)self;
    int n;
    if (!PyArg_ParseTuple(args, "i", &n)) return NULL;
    cb_set_threads(n);
    Py_RETURN_NONE;
}

/* ---- models ------------------------------------------------------------------ */

static PyObject *py_resolve_model(PyObject *self, PyObject *args) {
    (void)self;
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    cb_err err = {{0}};
    char *dir = cb_model_resolve(name, &err);
    if (!dir) return fail(&err);
    PyObject *r = PyUnicode_DecodeFSDefault(dir);
    free(dir);
    return r;
}

static PyObject *py_miner_default_model(PyObject *self, PyObject *args) {
    (void)self;
    const char *lang, *size;
    if (!PyArg_ParseTuple(args, "ss", &lang, &size)) return NULL;
    const char *m = cb_miner_default_model(lang, size);
    if (!m) Py_RETURN_NONE;
    return PyUnicode_FromString(m);
}

static PyObject *py_check_device(PyObject *self, PyObject *args) {
    (void)self;
    const char *spec;
    if (!PyArg_ParseTuple(args, "s", &spec)) return NULL;
    cb_err err = {{0}};
    ops_device *d = cb_ops_open(spec, OPS_FP32, &err);
    if (!d) return fail(&err);
    int cpu = d == cb_ops_cpu();
    cb_ops_close(d);
    return PyBool_FromLong(cpu);
}

/* ---- progress: the library's bars, read by a Python thread ------------------ */

static pthread_mutex_t pg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    long serial;          /* bars started so far */
    char label[64], unit[16];
    long long done, total;
    int ended;
} pg;

static void pg_hook(void *ctx, const progress *p, int event) {
    (void)ctx;
    pthread_mutex_lock(&pg_lock);
    if (event == PROGRESS_START) {
        pg.serial++;
        snprintf(pg.label, sizeof pg.label, "%s", p->label ? p->label : "");
        snprintf(pg.unit, sizeof pg.unit, "%s", p->unit ? p->unit : "");
        pg.ended = 0;
    }
    pg.done = (long long)p->done;
    pg.total = (long long)p->total;
    if (event == PROGRESS_END) pg.ended = 1;
    pthread_mutex_unlock(&pg_lock);
}

/* progress_hook(on, draw): observe the bars (on) and keep drawing them on
 * stderr or not (draw) */
static PyObject *py_progress_hook(PyObject *self, PyObject *args) {
    (void)self;
    int on, draw;
    if (!PyArg_ParseTuple(args, "pp", &on, &draw)) return NULL;
    cb_progress_set_hook(on ? pg_hook : NULL, NULL, draw);
    Py_RETURN_NONE;
}

/* progress_poll() -> (serial, label, unit, done, total, ended) of the latest bar */
static PyObject *py_progress_poll(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    pthread_mutex_lock(&pg_lock);
    long serial = pg.serial;
    char label[64], unit[16];
    memcpy(label, pg.label, sizeof label);
    memcpy(unit, pg.unit, sizeof unit);
    long long done = pg.done, total = pg.total;
    int ended = pg.ended;
    pthread_mutex_unlock(&pg_lock);
    return Py_BuildValue("(lssLLN)", serial, label, unit, done, total, PyBool_FromLong(ended));
}

/* ---- prepare ------------------------------------------------------------------ */

static PyObject *str_list(const prepare *p, size_t n, int queries) {
    PyObject *l = PyList_New((Py_ssize_t)n);
    if (!l) return NULL;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *s = queries ? cb_prepare_query(p, (uint32_t)i, &len) : cb_prepare_passage(p, (uint32_t)i, &len);
        PyObject *u = PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "strict");
        if (!u) { Py_DECREF(l); return NULL; }
        PyList_SetItem(l, (Py_ssize_t)i, u);
    }
    return l;
}

static PyObject *prepare_result(prepare_job *j) {
    const prepare_stats *s = cb_prepare_get_stats(j->p);
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    size_t nt;
    const uint32_t *trip = cb_prepare_triplets(j->p, &nt);
    char *report = NULL;
    size_t report_len = 0;
    if (j->mining) {
        FILE *f = open_memstream(&report, &report_len);
        if (f) {
            cb_miner_report(&j->m, f);
            fclose(f);
        }
    }
    int bad = dict_set(d, "kind", PyUnicode_FromString(cb_prepare_kind_name(s->kind))) ||
              dict_set(d, "records", PyLong_FromLongLong(s->records)) ||
              dict_set(d, "n_queries", PyLong_FromLongLong(s->queries)) ||
              dict_set(d, "n_passages", PyLong_FromLongLong(s->passages)) ||
              dict_set(d, "n_triplets", PyLong_FromLongLong(s->triplets)) ||
              dict_set(d, "queries_with_triplets", PyLong_FromLongLong(s->queries_with_triplets)) ||
              dict_set(d, "new_negatives", PyLong_FromLongLong(s->new_negatives)) ||
              dict_set(d, "mined", PyBool_FromLong(s->mined)) ||
              dict_set(d, "seconds", PyFloat_FromDouble(j->seconds)) ||
              dict_set(d, "miner_report", report ? PyUnicode_DecodeUTF8(report, (Py_ssize_t)report_len, "replace")
                                                 : (Py_INCREF(Py_None), Py_None)) ||
              dict_set(d, "queries", str_list(j->p, cb_prepare_n_queries(j->p), 1)) ||
              dict_set(d, "collection", str_list(j->p, cb_prepare_n_passages(j->p), 0)) ||
              dict_set(d, "triplets", PyBytes_FromStringAndSize((const char *)trip,
                                                                (Py_ssize_t)(nt * 3 * sizeof(uint32_t))));
    free(report);
    if (bad) { Py_DECREF(d); return NULL; }
    return d;
}

static PyObject *py_prepare(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"out", "train", "corpus", "kind", "num_new_negatives", "positive_label",
                             "negative_label", "seed", "mine", "miner_model", "language", "miner_size", "min_rank",
                             "quiet", "threads", "train_name", "corpus_name", NULL};
    const char *out, *train = NULL, *corpus = NULL, *kind = "auto", *pos = "1", *neg = "0", *miner_model = NULL;
    const char *language = "en", *miner_size = "small", *train_name = "raw_data", *corpus_name = "all_documents";
    Py_ssize_t ntrain = 0, ncorpus = 0;
    int nneg = 10, mine = 1, min_rank = 10, quiet = 0, threads = 0;
    unsigned long long seed = 42;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sz#z#|$sissKpzssipiss", kwlist, &out, &train, &ntrain, &corpus,
                                     &ncorpus, &kind, &nneg, &pos, &neg, &seed, &mine, &miner_model, &language,
                                     &miner_size, &min_rank, &quiet, &threads, &train_name, &corpus_name))
        return NULL;
    prepare_job j;
    cb_prepare_job_init(&j);
    if (!strcmp(kind, "pairs")) j.po.kind = PREPARE_KIND_PAIRS;
    else if (!strcmp(kind, "labeled")) j.po.kind = PREPARE_KIND_LABELED;
    else if (!strcmp(kind, "triplets")) j.po.kind = PREPARE_KIND_TRIPLETS;
    else if (strcmp(kind, "auto")) return PyErr_Format(PyExc_ValueError, "kind %s: expected auto, pairs, labeled or triplets", kind);
    j.po.num_new_negatives = nneg;
    j.po.positive_label = pos;
    j.po.negative_label = neg;
    j.po.seed = seed;
    j.po.quiet = quiet;
    j.po.negatives = mine ? PREPARE_NEG_MINED : PREPARE_NEG_RANDOM;
    j.mo.model = miner_model;
    j.mo.language = language;
    j.mo.size = miner_size;
    j.mo.min_rank = min_rank;
    j.train_mem = train;
    j.train_mem_len = (size_t)ntrain;
    j.train_mem_name = train_name;
    j.corpus_mem = corpus;
    j.corpus_mem_len = (size_t)ncorpus;
    j.corpus_mem_name = corpus_name;
    j.out = out;
    cb_err err = {{0}};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    cb_set_threads(threads);
    rc = cb_prepare_job_run(&j, &err);
    Py_END_ALLOW_THREADS
    if (rc) return fail(&err);
    PyObject *r = prepare_result(&j);
    cb_prepare_job_free(&j);
    return r;
}

/* ---- train ---------------------------------------------------------------------- */

static void on_stop(int sig) {
    (void)sig;
    cb_train_request_stop();
}

static PyObject *py_train(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"model_name", "pretrained", "language", "n_gpus", "data_dir", "output_dir", "bsize",
                             "nbits", "maxsteps", "lr", "dim", "doc_maxlen", "query_maxlen", "warmup",
                             "ragatouille_schedule", "accumsteps", "use_ib_negatives", "contrastive", "relu",
                             "epochs", "seed", "dropout", "save_every", "keep_checkpoints", "val_data", "val_beir",
                             "val_split", "val_fraction", "val_queries", "val_docs", "resume", "quiet", "threads",
                             "device", "overwrite", NULL};
    train_opts o;
    cb_train_opts_default(&o);
    const char *name, *pretrained, *lang = "en";
    int n_gpus = -1, threads = 0;
    unsigned long long seed = o.seed;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "ss|$sizziildiiiliiiiiiKilizzzdiiziizi", kwlist, &name, &pretrained,
                                     &lang, &n_gpus, &o.data_dir, &o.output_dir, &o.bsize, &o.nbits, &o.maxsteps,
                                     &o.lr, &o.dim, &o.doc_maxlen, &o.query_maxlen, &o.warmup,
                                     &o.ragatouille_schedule, &o.accumsteps, &o.use_ib_negatives, &o.contrastive,
                                     &o.relu, &o.epochs, &seed, &o.dropout, &o.save_every, &o.keep_checkpoints,
                                     &o.val_data, &o.val_beir, &o.val_split, &o.val_fraction, &o.val_queries,
                                     &o.val_docs, &o.resume, &o.quiet, &threads, &o.device, &o.overwrite))
        return NULL;
    o.seed = seed;
    if (!o.output_dir) o.output_dir = "checkpoints";
    if (!o.val_split) o.val_split = "dev";
    cb_err err = {{0}};
    trainer *t;
    int rc, sig = 0;
    Py_BEGIN_ALLOW_THREADS
    cb_set_threads(threads);
    t = cb_trainer_new(name, pretrained, lang, n_gpus, &err);
    if (t) {
        /* Ctrl-C (or SIGTERM) ends the current step and writes a resumable
         * checkpoint; the library catches them too while it trains */
        struct sigaction sa, old_int, old_term;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_stop;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        rc = cb_trainer_train(t, &o, &err);
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        if (rc == TRAIN_INTERRUPTED) sig = cb_train_stop_signal();
    } else {
        rc = TRAIN_ERROR;
    }
    Py_END_ALLOW_THREADS
    if (rc == TRAIN_ERROR) {
        if (t) cb_trainer_free(t);
        return fail(&err);
    }
    const char *best = cb_trainer_best_path(t), *last = cb_trainer_last_path(t);
    PyObject *r = Py_BuildValue("(izzi)", rc == TRAIN_INTERRUPTED ? 1 : 0, best, last, sig);
    cb_trainer_free(t);
    return r;
}

/* ---- encode --------------------------------------------------------------------- */

static PyObject *py_encode(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"model", "texts", "queries", "quiet", "threads", NULL};
    const char *model;
    PyObject *texts;
    int queries, quiet = 0, threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "sO!p|$pi", kwlist, &model, &PyList_Type, &texts, &queries, &quiet,
                                     &threads))
        return NULL;
    Py_ssize_t n = PyList_Size(texts);
    if (n > INT32_MAX) return PyErr_Format(PyExc_ValueError, "%zd texts: at most %d at a time", n, INT32_MAX);
    const char **ptr = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *ptr);
    size_t *len = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *len);
    if (!ptr || !len) {
        PyMem_Free(ptr);
        PyMem_Free(len);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {   /* the list holds the bytes objects alive */
        char *s;
        Py_ssize_t l;
        if (PyBytes_AsStringAndSize(PyList_GetItem(texts, i), &s, &l)) {
            PyMem_Free(ptr);
            PyMem_Free(len);
            return NULL;
        }
        ptr[i] = s;
        len[i] = (size_t)l;
    }
    colbert_vectors v;
    cb_err err = {{0}};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    cb_set_threads(threads);
    rc = cb_encode_colbert_job(&v, NULL, model, ptr, len, (int)n, queries, quiet, &err);
    Py_END_ALLOW_THREADS
    PyMem_Free(ptr);
    PyMem_Free(len);
    if (rc) return fail(&err);
    size_t rows = 0;
    if (queries) rows = (size_t)n * v.query_maxlen;
    else
        for (Py_ssize_t i = 0; i < n; i++) rows += (size_t)v.lengths[i];
    PyObject *vec = PyByteArray_FromStringAndSize((const char *)v.vectors, (Py_ssize_t)(rows * v.dim * sizeof(float)));
    PyObject *lens = queries ? (Py_INCREF(Py_None), Py_None)
                             : PyByteArray_FromStringAndSize((const char *)v.lengths, (Py_ssize_t)(n * sizeof(int)));
    cb_colbert_vectors_free(&v);
    if (!vec || !lens) {
        Py_XDECREF(vec);
        Py_XDECREF(lens);
        return NULL;
    }
    return Py_BuildValue("(NNii)", vec, lens, v.dim, v.query_maxlen);
}

/* ---- evaluate ------------------------------------------------------------------- */

static PyObject *py_evaluate(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"model", "dataset", "split", "max_queries", "doc_maxlen", "query_maxlen", "dim",
                             "seed", "run_out", "depth", "run_in", "quiet", "threads", NULL};
    eval_job j;
    cb_eval_job_init(&j);
    Py_ssize_t max_queries = 0;
    unsigned long long seed = j.seed;
    int threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "zss|$niiiKzizpi", kwlist, &j.model, &j.dataset, &j.split,
                                     &max_queries, &j.doc_maxlen, &j.query_maxlen, &j.dim, &seed, &j.run_out,
                                     &j.depth, &j.run_in, &j.quiet, &threads))
        return NULL;
    j.max_queries = (size_t)max_queries;
    j.seed = seed;
    cb_err err = {{0}};
    int rc;
    Py_BEGIN_ALLOW_THREADS
    cb_set_threads(threads);
    rc = cb_eval_job_run(&j, &err);
    Py_END_ALLOW_THREADS
    if (rc) return fail(&err);
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    if (dict_set(d, "ndcg@10", PyFloat_FromDouble(j.m.ndcg10)) ||
        dict_set(d, "mrr@10", PyFloat_FromDouble(j.m.mrr10)) ||
        dict_set(d, "recall@10", PyFloat_FromDouble(j.m.recall10)) ||
        dict_set(d, "recall@100", PyFloat_FromDouble(j.m.recall100)) ||
        dict_set(d, "queries", PyLong_FromSize_t(j.n_queries)) ||
        dict_set(d, "documents", PyLong_FromSize_t(j.n_docs)) ||
        dict_set(d, "doc_vectors", PyLong_FromSize_t(j.doc_vectors)) ||
        dict_set(d, "seconds", Py_BuildValue("{sdsdsdsdsdsd}", "data", j.t_data, "model", j.t_model, "queries",
                                             j.t_queries, "documents", j.t_docs, "maxsim", j.t_maxsim, "total",
                                             j.t_total))) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

/* ---- the module ------------------------------------------------------------------- */

static PyMethodDef METHODS[] = {
    {"init", py_init, METH_NOARGS, "init() -> BLAS kernels: switch OpenBLAS to the CPU's best kernels if needed"},
    {"info", py_info, METH_NOARGS, "info() -> dict: BLAS kernels, SIMD kernels, CUDA built in"},
    {"set_threads", py_set_threads, METH_VARARGS, "set_threads(n): OpenMP/OpenBLAS threads (<= 0: default)"},
    {"resolve_model", py_resolve_model, METH_VARARGS, "resolve_model(name) -> directory"},
    {"miner_default_model", py_miner_default_model, METH_VARARGS, "miner_default_model(language, size) -> str"},
    {"check_device", py_check_device, METH_VARARGS, "check_device(spec) -> True for the CPU"},
    {"progress_hook", py_progress_hook, METH_VARARGS, "progress_hook(on, draw)"},
    {"progress_poll", py_progress_poll, METH_NOARGS, "progress_poll() -> (serial, label, unit, done, total, ended)"},
    {"prepare", (PyCFunction)(void (*)(void))py_prepare, METH_VARARGS | METH_KEYWORDS, "prepare(out, train, corpus, ...)"},
    {"train", (PyCFunction)(void (*)(void))py_train, METH_VARARGS | METH_KEYWORDS, "train(model_name, pretrained, ...)"},
    {"encode", (PyCFunction)(void (*)(void))py_encode, METH_VARARGS | METH_KEYWORDS, "encode(model, texts, queries)"},
    {"evaluate", (PyCFunction)(void (*)(void))py_evaluate, METH_VARARGS | METH_KEYWORDS,
     "evaluate(model, dataset, split, ...)"},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "colbert_c._native",
                                    "libcolbert for colbert_c (see colbert_c/__init__.py)", -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__native(void);
PyMODINIT_FUNC PyInit__native(void) {
    PyObject *m = PyModule_Create(&MODULE);
    if (!m) return NULL;
    ColbertError = PyErr_NewException("colbert_c.ColbertError", PyExc_RuntimeError, NULL);
    if (!ColbertError || PyModule_AddObject(m, "ColbertError", ColbertError)) {
        Py_XDECREF(ColbertError);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(ColbertError);   /* PyModule_AddObject stole one reference; fail() keeps using it */
    return m;
}
