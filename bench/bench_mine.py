"""bench_mine.py: hard-negative mining, `colbert prepare` versus RAGatouille's
SimpleMiner path, on NFCorpus (every document, every train query) with
all-MiniLM-L6-v2 as the dense model, same machine, same run.

  python bench/bench_mine.py compare COLBERT_BIN RAG_PYTHON MODEL_DIR DATASETS WORK
  python bench/bench_mine.py ragatouille MODEL_DIR DOCS.tsv QUERIES.tsv   (child)

Run it through bench/bench_mine.sh, which finds or makes the RAGatouille venv.

colbert.c: one `colbert prepare --beir nfcorpus --split train --miner-model
MODEL` process; its phases come from its `mine:` report line.

RAGatouille (0.0.9.post2, PyPI): what `RAGTrainer.prepare_training_data`
runs with mine_hard_negatives=True: `SimpleMiner.build_index(collection)`
(sentence-transformers encode, multi-process above 1000 documents as in the
reference, then a Voyager cosine index), then `mine_hard_negatives(query)`
once per query, as TrainingDataProcessor calls it (one query embedded and
searched at a time). The miner's SentenceTransformer is pointed at the same
local model; the Voyager index is wrapped to time add_items and query, and
the model to time encoding. Same texts on both sides: the collection and
queries that colbert prepare exported, in its order.
"""
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
import types
from pathlib import Path


def load_simpleminer():
    """simpleminer.py without running ragatouille/__init__ (which imports the
    whole colbert-ai stack): a stub package holds base.py and simpleminer.py."""
    spec = importlib.util.find_spec("ragatouille")
    root = Path(spec.submodule_search_locations[0]) / "negative_miners"
    for name in ("ragatouille", "ragatouille.negative_miners"):
        mod = types.ModuleType(name)
        mod.__path__ = [str(root if name.endswith("miners") else root.parent)]
        sys.modules[name] = mod
    for sub in ("base", "simpleminer"):
        s = importlib.util.spec_from_file_location(f"ragatouille.negative_miners.{sub}", root / f"{sub}.py")
        m = importlib.util.module_from_spec(s)
        sys.modules[s.name] = m
        s.loader.exec_module(m)
    return sys.modules["ragatouille.negative_miners.simpleminer"]


def read_tsv(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n").split("\t", 1)[1] for line in f]


def ragatouille(model_dir, docs_tsv, queries_tsv):
    t_all = time.perf_counter()
    sm = load_simpleminer()
    from sentence_transformers import SentenceTransformer
    timers = {"encode": 0.0, "index": 0.0, "search": 0.0}

    class Timed:
        def __init__(self, obj, methods):
            self._obj, self._methods = obj, methods

        def __getattr__(self, name):
            f = getattr(self._obj, name)
            if name not in self._methods:
                return f
            phase = self._methods[name]

            def wrapped(*a, **k):
                t = time.perf_counter()
                try:
                    return f(*a, **k)
                finally:
                    timers[phase] += time.perf_counter() - t
            return wrapped

        def __len__(self):
            return len(self._obj)

    real_index = sm.Index
    sm.SentenceTransformer = lambda name, *a, **k: Timed(
        SentenceTransformer(model_dir, device="cpu"),
        {"encode": "encode", "encode_multi_process": "encode", "start_multi_process_pool": "encode"})
    sm.Index = lambda *a, **k: Timed(real_index(*a, **k), {"add_items": "index", "query": "search"})
    t = time.perf_counter()
    miner = sm.SimpleMiner(language_code="en", model_size="small")
    t_load = time.perf_counter() - t
    collection, queries = read_tsv(docs_tsv), read_tsv(queries_tsv)
    t = time.perf_counter()
    miner.build_index(collection)
    miner.min_rank = 10
    for q in queries:
        miner.mine_hard_negatives(q)
    t_mine = time.perf_counter() - t
    print(json.dumps({"load": t_load, "mine": t_mine, "total": time.perf_counter() - t_all,
                      "docs": len(collection), "queries": len(queries), **timers}))


def compare(colbert, rag_python, model_dir, datasets, work):
    work = Path(work)
    out = work / "colbert"
    cmd = [colbert, "prepare", "--beir", str(Path(datasets) / "nfcorpus"), "--split", "train",
           "--miner-model", model_dir, "--out", str(out)]
    print("load average before:", os.getloadavg())
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    t_c = time.perf_counter() - t
    if r.returncode:
        sys.exit(r.stderr)
    line = next(l for l in r.stdout.splitlines() if l.startswith("mine:"))
    ph = {k: float(v) for k, v in re.findall(r"(model|encode|index|search) ([0-9.]+) s", line)}
    print(line)
    r2 = subprocess.run([rag_python, __file__, "ragatouille", model_dir,
                         str(out / "corpus.train.colbert.tsv"), str(out / "queries.train.colbert.tsv")],
                        capture_output=True, text=True)
    if r2.returncode:
        sys.exit(r2.stderr[-4000:])
    rg = json.loads(r2.stdout.strip().splitlines()[-1])
    print("load average after:", os.getloadavg())
    print(f"\nNFCorpus train: {rg['docs']} documents, {rg['queries']} queries, all-MiniLM-L6-v2\n")
    print(f"{'seconds':22}{'colbert.c':>11}{'RAGatouille':>13}{'ratio':>8}")
    rows = [("model load", ph.get("model", 0), rg["load"]),
            ("encode", ph.get("encode", 0), rg["encode"]),
            ("index", ph.get("index", 0), rg["index"]),
            ("search", ph.get("search", 0), rg["search"])]
    for name, a, b in rows:
        ratio = f"{b / a:7.1f}x" if a > 0.005 else "      -"
        print(f"{name:22}{a:11.2f}{b:13.2f}{ratio}")
    rag_total = rg["load"] + rg["mine"]
    print(f"{'end to end':22}{t_c:11.2f}{rag_total:13.2f}{rag_total / t_c:7.1f}x")
    print("(colbert.c end to end: the whole prepare process, reading and writing included; "
          "RAGatouille: model load + build_index + mine_hard_negatives per query)")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "ragatouille":
        ragatouille(*sys.argv[2:5])
    elif len(sys.argv) > 1 and sys.argv[1] == "compare":
        compare(*sys.argv[2:7])
    else:
        sys.exit(__doc__)
