"""encode and evaluate: ColBERT vectors as NumPy arrays, and retrieval
metrics on a BEIR split, as `colbert encode --colbert` and `colbert eval`
compute them (the same library calls, job.h)."""
import os

from . import _native, _progress
from ._trainer import _threads


def _model(model):
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"model must be a directory or a hub id, found {type(model).__name__}")
    return os.fspath(model)


def encode(model, texts, kind="query", *, threads=None, quiet=False):
    """ColBERT vectors of texts, as `colbert encode --colbert query|doc`.

    model: a ColBERT checkpoint (e.g. what RAGTrainer.train returned), or a plain
        encoder (a new projection of 128, seeded 12345); a directory or a hub id in
        the local Hugging Face cache.
    texts: a string or a list of strings.
    kind="query": float32 [n, query_maxlen, dim] (the [MASK] augmentation included);
        kind="doc": a list of float32 [kept tokens, dim], one per text (punctuation and
        padding dropped). A single string gives a single array.
    """
    import numpy as np
    if kind not in ("query", "doc"):
        raise ValueError(f"kind={kind!r}: expected 'query' or 'doc'")
    single = isinstance(texts, str)
    items = [texts] if single else texts
    if isinstance(items, (bytes, dict)) or not hasattr(items, "__iter__"):
        raise TypeError(f"texts must be a string or a list of strings, found {type(texts).__name__}")
    data = []
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] is {type(t).__name__}: texts must be strings")
        try:
            data.append(t.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise ValueError(f"texts[{i}]: not valid Unicode ({e.reason} at position {e.start})") from None
    lib_quiet, tqdm = _progress.resolve(quiet)
    with _progress.Bars(tqdm):
        vec, lens, dim, qlen = _native.encode(_model(model), data, kind == "query", quiet=lib_quiet,
                                              threads=_threads(threads))
    v = np.frombuffer(vec, dtype=np.float32)
    if kind == "query":
        out = v.reshape(len(data), qlen, dim)
        return out[0] if single else out
    lengths = np.frombuffer(lens, dtype=np.int32)
    v = v.reshape(-1, dim)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    docs = [v[offsets[i]:offsets[i + 1]] for i in range(len(data))]
    return docs[0] if single else docs


def evaluate(model, dataset, split="test", *, max_queries=None, doc_maxlen=None, query_maxlen=None, dim=None,
             seed=12345, run_file=None, depth=100, threads=None, quiet=False):
    """nDCG@10, MRR@10, Recall@10 and Recall@100 of model on a BEIR dataset's split,
    as `colbert eval` computes them (exact MaxSim over the whole corpus; trec_eval's
    definitions). Returns the dict `colbert eval` prints as JSON: "ndcg@10", "mrr@10",
    "recall@10", "recall@100", "queries", "documents", "doc_vectors", "dataset", "split",
    "model", "seconds".

    dataset: a BEIR directory (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv).
    run_file: also write the ranking there as a TREC run (depth documents per query).
    """
    if not isinstance(dataset, (str, os.PathLike)):
        raise TypeError(f"dataset must be a BEIR directory, found {type(dataset).__name__}")
    lib_quiet, tqdm = _progress.resolve(quiet)
    model, dataset = _model(model), os.fspath(dataset)
    with _progress.Bars(tqdm):
        r = _native.evaluate(model, dataset, split, max_queries=max_queries or 0, doc_maxlen=doc_maxlen or 0,
                             query_maxlen=query_maxlen or 0, dim=dim or 0, seed=int(seed),
                             run_out=None if run_file is None else os.fspath(run_file), depth=depth,
                             quiet=lib_quiet, threads=_threads(threads))
    seconds = r.pop("seconds")
    r.update(dataset=dataset, split=split, model=model, seconds=seconds)
    return r


def info():
    """What this build runs on: version, SIMD kernels, BLAS kernels."""
    from . import __version__
    d = _native.info()
    d["version"] = __version__
    return d
