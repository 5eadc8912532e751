"""bench_prepare.py: `colbert prepare` against RAGatouille's TrainingDataProcessor
on the same 1 million pairs, in the same run (not a test; see bench_prepare.sh).

  python bench_prepare.py gen OUT.jsonl [N]   N pairs (default 1,000,000) from the
      NFCorpus train qrels, repeated with a distinct suffix " [r]" on every query
      and document of repetition r, as JSONL ["query", "passage"]
  python bench_prepare.py gen-scale OUT.jsonl [N_PAIRS] [N_DOCS]
      the scale check: 10M pairs over 1M distinct synthetic documents (~200
      bytes each) and 2M queries (5 positives each), as JSONL pairs
  python bench_prepare.py ragatouille IN.jsonl OUTDIR
      RAGatouille's path of prepare_training_data without mining: read the
      JSONL, collection = set + seeded_shuffle, queries = set, then
      TrainingDataProcessor.process_raw_data(..., mine_hard_negatives=False)
      and its export. The two RAGatouille modules are loaded from the installed
      PyPI package by file, so the package __init__ (models, torch) is not
      needed; the code that runs is RAGatouille's own.
  python bench_prepare.py compare COLBERT_BIN RAG_PYTHON IN.jsonl WORKDIR
      runs both as child processes; prints seconds, peak RSS and the ratio.
"""
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def gen(out, n=1_000_000):
    data = Path(os.environ.get("COLBERT_DATASETS", Path(__file__).resolve().parents[1] / "../shared/datasets"))
    d = data / "nfcorpus"
    corpus = {}
    for line in open(d / "corpus.jsonl", encoding="utf-8"):
        o = json.loads(line)
        corpus[o["_id"]] = f"{o['title']} {o['text']}" if o.get("title") else o["text"]
    queries = {}
    for line in open(d / "queries.jsonl", encoding="utf-8"):
        o = json.loads(line)
        queries[o["_id"]] = o["text"]
    pairs = []
    with open(d / "qrels" / "train.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            q, c, s = line.rstrip("\r\n").split("\t")
            if int(s) > 0:
                pairs.append((queries[q], corpus[c]))
    written, r = 0, 0
    with open(out, "w", encoding="utf-8") as f:
        while written < n:
            for q, c in pairs:
                if written == n:
                    break
                f.write(json.dumps([f"{q} [{r}]", f"{c} [{r}]"]) + "\n")
                written += 1
            r += 1
    print(f"{out}: {written} pairs, {r} repetitions, {os.path.getsize(out) / 1e6:.0f} MB")


def gen_scale(out, n_pairs=10_000_000, n_docs=1_000_000):
    import random
    rnd = random.Random(0)
    vocab = [w for w in open(__file__).read().split() if w.isalpha()] or ["word"]
    docs = [f"document {i}: " + " ".join(rnd.choices(vocab, k=30)) for i in range(n_docs)]
    per_q = 5
    with open(out, "w", encoding="utf-8", buffering=1 << 22) as f:
        for j in range(n_pairs // per_q):
            q = json.dumps(f"question {j} about " + " ".join(rnd.choices(vocab, k=4)))
            base = j * per_q
            for k in range(per_q):
                f.write(f"[{q}, {json.dumps(docs[((base + k) * 7919) % n_docs])}]\n")
    print(f"{out}: {n_pairs} pairs, {n_docs} documents, {os.path.getsize(out) / 1e6:.0f} MB")


def load_by_file(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def ragatouille(inp, out):
    spec = importlib.util.find_spec("ragatouille")
    root = Path(spec.submodule_search_locations[0])
    tdp = load_by_file("tdp", root / "data" / "training_data_processor.py")
    seeded_shuffle = load_by_file("rutils", root / "utils.py").seeded_shuffle
    raw_data = [json.loads(line) for line in open(inp, encoding="utf-8")]
    # RAGTrainer.prepare_training_data, pairs, mine_hard_negatives=False:
    collection = []
    queries = set()
    for x in raw_data:
        queries.add(x[0])
        if isinstance(x[1], str):
            collection.append(x[1])
    collection = list(set(collection))
    seeded_shuffle(collection)
    proc = tdp.TrainingDataProcessor(collection=collection, queries=queries, negative_miner=None)
    proc.process_raw_data(data_type="pairs", raw_data=raw_data, export=True, data_dir=out,
                          num_new_negatives=10, mine_hard_negatives=False)
    print(f"ragatouille: {len(queries)} queries, {len(collection)} documents, "
          f"{len(proc.training_triplets)} triplets")


def run_child(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"failed: {' '.join(map(str, cmd))}")
    return dt, ru.ru_maxrss / 1024.0  # MiB


def compare(colbert, rag_python, inp, work):
    work = Path(work)
    size = os.path.getsize(inp) / 2**20
    t_c, m_c = run_child([colbert, "prepare", "--train-data", inp, "--out", work / "colbert",
                          "--no-mining", "--num-new-negatives", "10"])
    t_r, m_r = run_child([rag_python, __file__, "ragatouille", inp, work / "ragatouille"])
    print(f"\ninput: {inp} ({size:.0f} MiB)")
    print(f"{'':24}{'seconds':>10}{'peak RSS MiB':>15}")
    print(f"{'colbert prepare':24}{t_c:10.2f}{m_c:15.0f}")
    print(f"{'RAGatouille':24}{t_r:10.2f}{m_r:15.0f}")
    print(f"speed-up: {t_r / t_c:.1f}x   memory: {m_r / m_c:.1f}x less")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "gen":
        gen(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000)
    elif cmd == "gen-scale":
        gen_scale(sys.argv[2], *map(int, sys.argv[3:5]))
    elif cmd == "ragatouille":
        ragatouille(sys.argv[2], sys.argv[3])
    elif cmd == "compare":
        compare(*sys.argv[2:6])
    else:
        sys.exit(__doc__)
