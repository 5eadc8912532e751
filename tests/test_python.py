"""test_python.py: the Python package colbert_c (issue 15) against the CLI.

`pip install .[notebook]` into a fresh virtual environment (COLBERT_TMP/pyvenv,
numpy and tqdm from PyPI or pip's cache); every check then runs a script with
that environment's python, outside the source tree, so it imports the
installed package (its libcolbert.so is the portable build: x86-64-v2, SIMD
chosen at run time), and compares with the release CLI ($COLBERT_BIN, built
with -march=native):

- RAGTrainer.prepare_training_data on NFCorpus train records as Python lists
  (pairs with strings, lists and {"content"} dicts; labeled pairs with int and
  bool labels; triplets with strings and lists), with all_documents, writes
  files byte-identical to `colbert prepare` on the same records as JSONL,
  with random and with mined negatives (the real all-MiniLM-L6-v2 as the
  miner, hard_negative_model=); trainer.queries, .collection and
  .training_triplets hold what the files say; nothing goes to stdout;
- train() returns a checkpoint byte-identical to `colbert train`'s with the
  same settings; colbert-ai and PyLate (the peers venv) load it with the same
  vectors as `colbert encode` (1e-4); encode() equals `colbert encode`
  exactly; evaluate() equals `colbert eval`'s JSON;
- bad inputs (a 1-tuple, mixed kinds, a label that is neither, a non-string
  query or passage, an empty list, a missing model, a missing miner model)
  raise what RAGatouille raises (ValueError, IndexError, TypeError, OSError
  subclasses), say what is wrong and leave no file;
- SIGINT during train() in a child process: a checkpoint, KeyboardInterrupt,
  and train(resume=...) ends bit-identical to an uninterrupted run;
- encode() releases the GIL; tqdm bars replace the stderr bars on request.

To keep it to a few minutes: 48 queries of NFCorpus train (at most 6
positives each), documents cut to their first 32 words, 2-step trainings.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from texts import nfcorpus_texts

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ["COLBERT_BIN"]
MODEL = os.environ["COLBERT_MODEL"]
DATA = Path(os.environ.get("COLBERT_DATASETS", ROOT.parent / "shared" / "datasets"))
TMP = Path(os.environ.get("COLBERT_TMP", "/tmp")) / "python"
PEERS = os.environ.get("COLBERT_PEERS_PY", os.path.expanduser("~/.cache/colbert.c/venv-peers/bin/python"))
LOADER = ROOT / "tests" / "peers" / "load_checkpoint.py"
VENV = TMP / "pyvenv"
WORK = TMP / "work"
NAMES = ("queries.train.colbert.tsv", "corpus.train.colbert.tsv", "triples.train.colbert.jsonl")
THREADS = 2


# ---- the installed package ------------------------------------------------------

@pytest.fixture(scope="module")
def py():
    """A fresh venv with the package installed from this checkout; its python."""
    shutil.rmtree(VENV, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    python = str(VENV / "bin" / "python")
    t0 = time.time()
    r = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"{ROOT}[notebook]"], capture_output=True, text=True, env=clean_env())
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"\npip install . into a fresh venv: {time.time() - t0:.1f} s")
    return python


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", **extra)
    return env


def run_py(py, code, *args, check=True, env=None):
    """Run code with the venv's python in WORK (not the source tree)."""
    script = WORK / f"script_{abs(hash(code)) % 10**8}.py"
    script.write_text(code)
    r = subprocess.run([py, str(script), *map(str, args)], capture_output=True, text=True, cwd=WORK,
                       env=env or clean_env())
    if check:
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return r


def cli(*args):
    r = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_installed_not_source_tree(py):
    r = run_py(py, """
import json, os, sys, colbert_c
d = os.path.dirname(colbert_c.__file__)
print(json.dumps({"file": colbert_c.__file__, "files": sorted(os.listdir(d)), "info": colbert_c.info(),
                  "path": sys.path}), file=sys.stderr)
""")
    assert r.stdout == "", "importing colbert_c printed to stdout: " + r.stdout
    got = json.loads(r.stderr.strip().splitlines()[-1])
    assert got["file"].startswith(str(VENV)), got["file"]
    assert "libcolbert.so" in got["files"] and any(f.startswith("_native") for f in got["files"])
    version = next(l.split('"')[1] for l in open(ROOT / "cli" / "cli.h") if l.startswith("#define COLBERT_VERSION"))
    assert got["info"]["version"] == version
    pkg = Path(got["file"]).parent
    dyn = subprocess.run(["readelf", "-d", str(next(pkg.glob("_native*.so")))], capture_output=True, text=True).stdout
    assert "$ORIGIN" in dyn and "libcolbert.so" in dyn, dyn
    needed = subprocess.run(["readelf", "-d", str(pkg / "libcolbert.so")], capture_output=True, text=True).stdout
    assert "libopenblas" in needed and "libjansson" in needed and "libutf8proc" in needed, needed
    # portable: AVX2/AVX-512 instructions only in the functions picked at run time
    asm = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(pkg / "libcolbert.so")], capture_output=True,
                         text=True).stdout
    fn, simd = None, set()
    for line in asm.splitlines():
        if line.endswith(">:"):
            fn = line.split("<", 1)[1][:-2]
        elif "%ymm" in line or "%zmm" in line or "vfmadd" in line:
            simd.add(fn)
    dispatched = [f for f in simd if f.endswith(("_avx2", "_avx512")) or ".arch_x86_64_v" in f]
    assert dispatched and sorted(simd) == sorted(dispatched), f"AVX outside the run-time kernels: {sorted(simd)}"
    # the kernels are picked at run time; COLBERT_SIMD caps them
    r = run_py(py, "import sys, colbert_c; print(colbert_c.info()['simd'], file=sys.stderr)",
               env=clean_env(COLBERT_SIMD="portable"))
    assert r.stderr.strip() == "portable"
    print(f"\ninstalled at {pkg}: {got['info']}")


# ---- data: NFCorpus train records as Python lists (and the same as JSONL) -------

def short(text, words=32):
    return " ".join(text.split()[:words])


@pytest.fixture(scope="module")
def records():
    src = DATA / "nfcorpus"
    docs = {}
    with open(src / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs[d["_id"]] = short(f"{d['title']} {d['text']}" if d.get("title", "").strip() else d["text"])
    queries = {}
    with open(src / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            queries[q["_id"]] = q["text"]
    pos = {}
    with open(src / "qrels" / "train.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            q, d, s = line.rstrip("\r\n").split("\t")
            if int(s) > 0:
                pos.setdefault(q, []).append(d)
    rng = random.Random(15)
    qids = list(pos)[:48]
    ids = list(docs)
    pairs, labeled, triplets = [], [], []
    for n, q in enumerate(qids):
        ps = [docs[d] for d in pos[q][:6]]
        negs = [docs[d] for d in rng.sample(ids, 3) if d not in pos[q]]
        for k, p in enumerate(ps):   # strings, a {"content"} dict, a list
            pairs.append((queries[q], {"content": p} if k == 1 else [p] if k == 2 else p))
            labeled.append((queries[q], p, True if k == 1 else 1))
        for k, m in enumerate(negs):
            labeled.append((queries[q], m, False if k == 0 else 0))
        if n % 2:
            triplets.append((queries[q], ps, negs))
        else:
            triplets += [(queries[q], p, m) for p, m in zip(ps, negs)]
    extra = [docs[d] for d in ids[-150:]]
    WORK.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, recs in (("pairs", pairs), ("labeled", labeled), ("triplets", triplets)):
        files[name] = WORK / f"{name}.jsonl"
        with open(files[name], "w", encoding="utf-8") as f:
            for r in recs:
                f.write(json.dumps(list(r)) + "\n")
    (WORK / "records.json").write_text(json.dumps({"pairs": pairs, "labeled": labeled, "triplets": triplets,
                                                   "extra": extra}))
    with open(WORK / "extra.jsonl", "w", encoding="utf-8") as f:
        for d in extra:
            f.write(json.dumps({"text": d}) + "\n")
    return {"files": files, "extra": WORK / "extra.jsonl", "n": {k: len(v) for k, v in
                                                                 (("pairs", pairs), ("labeled", labeled),
                                                                  ("triplets", triplets))}}


# (kind, mined): what the Python side and the CLI both prepare
RUNS = [("pairs", False), ("pairs", True), ("labeled", False), ("triplets", True)]

PREPARE = r"""
import json, sys
from colbert_c import RAGTrainer
model = sys.argv[1]
recs = json.load(open("records.json"))
tup = lambda rs: [tuple(r) for r in rs]
out = {}
for kind, mined in json.loads(sys.argv[2]):
    t = RAGTrainer("prep", model)
    path = f"py_{kind}_{'mined' if mined else 'random'}"
    ret = t.prepare_training_data(tup(recs[kind]), all_documents=recs["extra"], data_out_path=path,
                                  mine_hard_negatives=mined, pairs_with_labels=kind == "labeled",
                                  hard_negative_model=model if mined else None, threads=2, quiet=True)
    assert ret == path
    out[path] = {"queries": sorted(t.queries), "queries_type": type(t.queries).__name__,
                 "collection": t.collection, "triplets": t.training_triplets, "stats": t.prepare_stats}
json.dump(out, open("prepared.json", "w"))
"""


@pytest.fixture(scope="module")
def prepared(py, records):
    t0 = time.time()
    r = run_py(py, PREPARE, MODEL, json.dumps(RUNS))
    assert r.stdout == "", "prepare_training_data printed to stdout: " + r.stdout[:500]
    t1 = time.time()
    for kind, mined in RUNS:
        out = WORK / f"cli_{kind}_{'mined' if mined else 'random'}"
        shutil.rmtree(out, ignore_errors=True)
        cli("prepare", "--train-data", records["files"][kind], "--corpus", records["extra"], "--out", out,
            "--threads", THREADS, "--quiet", *(["--miner-model", MODEL] if mined else ["--no-mining"]))
    print(f"\nprepare: Python {t1 - t0:.1f} s, CLI {time.time() - t1:.1f} s ({len(RUNS)} runs each)")
    return json.loads((WORK / "prepared.json").read_text())


@pytest.mark.parametrize("kind,mined", RUNS, ids=[f"{k}-{'mined' if m else 'random'}" for k, m in RUNS])
def test_prepare_byte_identical_to_cli(prepared, kind, mined):
    tag = f"{kind}_{'mined' if mined else 'random'}"
    ours, theirs = WORK / f"py_{tag}", WORK / f"cli_{tag}"
    for name in NAMES:
        a, b = (ours / name).read_bytes(), (theirs / name).read_bytes()
        assert a == b, f"{tag}/{name} differs from colbert prepare's ({len(a)} vs {len(b)} bytes)"
    got = prepared[f"py_{tag}"]
    assert got["stats"]["mined"] == mined and got["stats"]["kind"].startswith(kind)
    # the trainer's attributes hold what RAGatouille's hold: the query strings (a set), the
    # collection (list index = passage id) and the triplets in file order
    qtexts = [l.split("\t", 1)[1] for l in (ours / NAMES[0]).read_text(encoding="utf-8").splitlines()]
    ctexts = [l.split("\t", 1)[1] for l in (ours / NAMES[1]).read_text(encoding="utf-8").splitlines()]
    assert got["queries_type"] == "set" and got["queries"] == sorted(qtexts)
    flat = str.maketrans("\t\n\r", "   ")
    assert [c.translate(flat) for c in got["collection"]] == ctexts
    assert got["triplets"] == [json.loads(l) for l in (ours / NAMES[2]).read_text().splitlines()]
    print(f"\n{tag}: {len(qtexts)} queries, {len(ctexts)} documents, {len(got['triplets'])} triplets, "
          f"3 files byte-identical")


# language_code= picks the miner for the language, as `colbert prepare
# --language` does: fr Solon, any other language multilingual-e5 (both
# XLM-RoBERTa), from the local Hugging Face cache. The cache is made here
# from the small seeded XLM-R sentence-transformers model of
# tests/ref/gen_roberta.py (e5's copy with its "query: " / "passage: "
# prompts).
LANG_PREPARE = r"""
import json, sys
from colbert_c import RAGTrainer
t = RAGTrainer("lang", sys.argv[1], language_code=sys.argv[2])
pairs = [tuple(p) for p in json.load(open(sys.argv[3]))]
t.prepare_training_data(pairs, data_out_path=sys.argv[4], num_new_negatives=2, hard_negative_minimum_rank=0,
                        threads=2, quiet=True)
"""
LANG_PAIRS = [
    ["Quand ouvre la piscine municipale ?", "La piscine municipale ouvre à huit heures, sauf le lundi."],
    ["Où se trouve la gare de Lyon ?", "La gare de Lyon est dans le douzième arrondissement de Paris."],
    ["Combien coûte le musée ?", "L'entrée du musée coûte douze euros ; elle est gratuite le dimanche."],
    ["Qui a construit la cathédrale ?", "La cathédrale fut bâtie au treizième siècle par l'évêque Maurice."],
    ["Pourquoi la bibliothèque est-elle fermée ?", "La bibliothèque est fermée pour travaux jusqu'en mars."],
    ["Wann schließt das Rathaus?", "Das Rathaus schließt werktags um siebzehn Uhr."],
    ["Wo ist der Bahnhof?", "Der Hauptbahnhof liegt nördlich der Altstadt, nahe dem Fluss."],
    ["Wie teuer ist das Schwimmbad?", "Der Eintritt ins Schwimmbad kostet vier Euro für Erwachsene."],
    ["Wer leitet das Museum?", "Das Museum wird seit 2019 von einer Kunsthistorikerin geleitet."],
    ["Warum ist die Brücke gesperrt?", "Die Brücke ist wegen Sanierungsarbeiten bis Herbst gesperrt."],
]


@pytest.mark.parametrize("lang,name", [("fr", "OrdalieTech/Solon-embeddings-base-0.1"),
                                       ("de", "intfloat/multilingual-e5-small")])
def test_language_code_picks_the_multilingual_miner(py, lang, name):
    from hubcache import hub_cache
    xlmr = os.path.join(os.environ["COLBERT_REF"], "xlmr_model")
    hub = TMP / "lang_hub"
    hub_cache(str(hub), {"OrdalieTech/Solon-embeddings-base-0.1": (xlmr, None),
                         "intfloat/multilingual-e5-small": (xlmr, {"prompts": {"query": "query: ",
                                                                               "passage": "passage: "}})})
    pairs = WORK / "lang_pairs.json"
    pairs.write_text(json.dumps(LANG_PAIRS, ensure_ascii=False), encoding="utf-8")
    ours, theirs = WORK / f"lang_py_{lang}", WORK / f"lang_cli_{lang}"
    for d in (ours, theirs):
        shutil.rmtree(d, ignore_errors=True)
    run_py(py, LANG_PREPARE, MODEL, lang, pairs, ours, env=clean_env(HF_HUB_CACHE=str(hub)))
    jsonl = WORK / "lang_pairs.jsonl"
    jsonl.write_text("".join(json.dumps(p, ensure_ascii=False) + "\n" for p in LANG_PAIRS), encoding="utf-8")
    r = subprocess.run([BIN, "prepare", "--train-data", jsonl, "--out", theirs, "--language", lang,
                        "--num-new-negatives", "2", "--hard-negative-min-rank", "0", "--threads", str(THREADS)],
                       capture_output=True, text=True, env=dict(os.environ, HF_HUB_CACHE=str(hub)))
    assert r.returncode == 0 and name in r.stderr, r.stderr[-3000:]
    for n in NAMES:
        assert (ours / n).read_bytes() == (theirs / n).read_bytes(), n
    # and without the model in the cache, language_code= names it, as RAGatouille's would fail to load it
    r = run_py(py, LANG_PREPARE, MODEL, lang, pairs, WORK / f"lang_none_{lang}", check=False,
               env=clean_env(HF_HUB_CACHE=str(TMP / "lang_empty_hub")))
    assert r.returncode != 0 and name in r.stderr and "language_code" in r.stderr, r.stderr[-3000:]
    assert not (WORK / f"lang_none_{lang}").exists()


# ---- train, encode, evaluate ---------------------------------------------------------

TRAIN = r"""
import json, sys
from colbert_c import RAGTrainer
t = RAGTrainer("pytrain", sys.argv[1])
best = t.train(batch_size=4, maxsteps=2, learning_rate=1e-4, doc_maxlen=96, data_dir=sys.argv[2],
               output_dir=sys.argv[3], val_fraction=0, save_every=100, threads=2, quiet=True)
json.dump({"best": best, "last": t.last_checkpoint}, open("trained.json", "w"))
"""


@pytest.fixture(scope="module")
def trained(py, prepared):
    data = WORK / "py_pairs_random"
    runs_py, runs_cli = WORK / "runs_py", WORK / "runs_cli"
    for d in (runs_py, runs_cli):
        shutil.rmtree(d, ignore_errors=True)
    r = run_py(py, TRAIN, MODEL, data, runs_py)
    assert r.stdout == ""
    best = json.loads((WORK / "trained.json").read_text())["best"]
    c = cli("train", "--threads", THREADS, "--model-name", "pytrain", "--pretrained", MODEL, "--data", data,
            "--output-dir", runs_cli, "--batch-size", 4, "--maxsteps", 2, "--doc-maxlen", 96, "--val-fraction", 0,
            "--lr", "1e-4", "--save-every", 100, "--quiet")
    return {"py": str(WORK / best), "cli": c.stdout.strip().splitlines()[-1]}


def test_train_checkpoint_equals_cli(trained):
    a, b = Path(trained["py"]), Path(trained["cli"])
    assert a.name == b.name == "step-000002", trained
    for name in ("model.safetensors", "training_state.safetensors", "artifact.metadata", "config.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs from colbert train's"


def texts(nq=12, nd=24):
    return nfcorpus_texts(DATA, nq, nd)


ENCODE = r"""
import json, sys, numpy as np, colbert_c
ckpt = sys.argv[1]
q = [l.rstrip("\n") for l in open("enc_q.txt", encoding="utf-8")]
d = [l.rstrip("\n") for l in open("enc_d.txt", encoding="utf-8")]
Q = colbert_c.encode(ckpt, q, kind="query", threads=2, quiet=True)
D = colbert_c.encode(ckpt, d, kind="doc", threads=2, quiet=True)
one = colbert_c.encode(ckpt, d[0], kind="doc", quiet=True)
assert isinstance(D, list) and np.array_equal(one, D[0])
np.save("py_q.npy", Q)
np.save("py_d.npy", np.concatenate(D))
np.save("py_d.lengths.npy", np.array([len(x) for x in D], dtype=np.int32))
"""


def test_encode_equals_cli_and_peers_load(py, trained):
    ckpt = trained["py"]
    q, d = texts()
    (WORK / "enc_q.txt").write_text("\n".join(q) + "\n", encoding="utf-8")
    (WORK / "enc_d.txt").write_text("\n".join(d) + "\n", encoding="utf-8")
    run_py(py, ENCODE, ckpt)
    cli("encode", "--colbert", "query", "--model", ckpt, "--input", WORK / "enc_q.txt", "--output",
        WORK / "cli_q.npy", "--threads", THREADS, "--quiet")
    cli("encode", "--colbert", "doc", "--model", ckpt, "--input", WORK / "enc_d.txt", "--output",
        WORK / "cli_d.npy", "--threads", THREADS, "--quiet")
    oq, od, ol = (np.load(WORK / n) for n in ("py_q.npy", "py_d.npy", "py_d.lengths.npy"))
    cq, cd, cl = (np.load(WORK / n) for n in ("cli_q.npy", "cli_d.npy", "cli_d.lengths.npy"))
    assert oq.shape == cq.shape == (len(q), 32, 128) and np.array_equal(oq, cq)
    assert np.array_equal(ol, cl) and np.array_equal(od, cd)
    # colbert-ai and PyLate load the checkpoint train() returned, with the same vectors
    assert os.path.exists(PEERS), f"{PEERS} missing: run scripts/setup_peers.sh (make test does)"
    out = WORK / "peers"
    env = clean_env(CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([PEERS, str(LOADER), ckpt, str(WORK / "enc_q.txt"), str(WORK / "enc_d.txt"), str(out)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    for peer in ("colbert_ai", "pylate"):
        pq, pd = np.load(out / f"{peer}_q.npy"), np.load(out / f"{peer}_d.npy")
        pl = np.load(out / f"{peer}_d.lengths.npy")
        assert pq.shape == oq.shape and list(pl) == list(ol), peer
        dq, dd = np.abs(pq - oq).max(), np.abs(pd - od).max()
        print(f"\n{peer}: max abs diff queries {dq:.3g}, documents {dd:.3g}")
        assert dq <= 1e-4 and dd <= 1e-4


def mini_beir():
    """150 NFCorpus documents (first 32 words) and the test queries judged among them."""
    out = WORK / "mini_beir"
    if (out / "qrels" / "test.tsv").exists():
        return out
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    src = DATA / "nfcorpus"
    with open(src / "corpus.jsonl", encoding="utf-8") as f:
        docs = [json.loads(l) for _, l in zip(range(150), f)]
    with open(out / "corpus.jsonl", "w", encoding="utf-8") as f:
        for d in docs:
            d["text"] = short(d["text"])
            f.write(json.dumps(d) + "\n")
    ids = {d["_id"] for d in docs}
    with open(src / "qrels" / "test.tsv", encoding="utf-8") as f:
        rows = [l.rstrip("\r\n").split("\t") for l in f][1:]
    rows = [r for r in rows if r[1] in ids]
    with open(out / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n" for r in rows))
    qids = {r[0] for r in rows}
    with open(src / "queries.jsonl", encoding="utf-8") as f, open(out / "queries.jsonl", "w", encoding="utf-8") as g:
        g.writelines(l for l in f if json.loads(l)["_id"] in qids)
    return out


EVALUATE = r"""
import json, sys, colbert_c
r = colbert_c.evaluate(sys.argv[1], sys.argv[2], "test", threads=2, quiet=True)
json.dump(r, open("evaluated.json", "w"))
"""


def test_evaluate_equals_cli(py, trained):
    ds = mini_beir()
    run_py(py, EVALUATE, trained["py"], ds)
    ours = json.loads((WORK / "evaluated.json").read_text())
    theirs = json.loads(cli("eval", "--model", trained["py"], "--dataset", ds, "--split", "test", "--threads",
                            THREADS, "--quiet").stdout)
    assert sorted(ours) == sorted(theirs)
    for k in ("ndcg@10", "mrr@10", "recall@10", "recall@100", "queries", "documents", "doc_vectors", "dataset",
              "split", "model"):
        assert ours[k] == theirs[k], (k, ours[k], theirs[k])
    print(f"\nevaluate: {ours['queries']} queries, {ours['documents']} documents, nDCG@10 {ours['ndcg@10']:.4f} "
          f"= colbert eval's")


# ---- bad inputs ------------------------------------------------------------------------

BAD = r"""
import json, os, sys, traceback
from colbert_c import RAGTrainer
model = sys.argv[1]
cases = {
    "one_tuple": [("only a query",)],
    "mixed_kinds": [("q1", "p1"), ("q2", "p2", "n2")],
    "mixed_kinds_short": [("q1", "p1", "n1"), ("q2", "p2")],
    "bad_label": [("q1", "p1", 1), ("q2", "p2", 7)],
    "bad_first_label": [("q1", "p1", 5)],
    "query_not_string": [("q1", "p1"), (42, "p2")],
    "passage_not_string": [("q1", "p1"), ("q2", 3.5)],
    "list_item_not_string": [("q1", ["p1", None])],
    "dict_without_content": [("q1", {"text": "p1"})],
    "empty_list": [],
    "empty_query": [("  ", "p1")],
    "not_a_list": "q1\tp1",
}
out = {}
for name, raw in cases.items():
    path = f"bad_{name}"
    try:
        RAGTrainer("bad", model).prepare_training_data(raw, data_out_path=path, pairs_with_labels=name.endswith("label"),
                                                       mine_hard_negatives=False, quiet=True)
        out[name] = {"raised": None}
    except Exception as e:
        out[name] = {"raised": [c.__name__ for c in type(e).__mro__], "msg": str(e)}
    out[name]["left"] = os.path.exists(path)
# a missing model, base or miner
try:
    RAGTrainer("bad", "no-such-org/no-such-model")
    out["missing_model"] = {"raised": None}
except Exception as e:
    out["missing_model"] = {"raised": [c.__name__ for c in type(e).__mro__], "msg": str(e)}
hub = os.path.join(os.getcwd(), "empty_hf_home")
os.makedirs(hub, exist_ok=True)
os.environ["HF_HOME"] = hub
try:
    RAGTrainer("bad", model).prepare_training_data([("q1", "p1"), ("q2", "p2")], data_out_path="bad_miner", quiet=True)
    out["missing_miner"] = {"raised": None}
except Exception as e:
    out["missing_miner"] = {"raised": [c.__name__ for c in type(e).__mro__], "msg": str(e)}
out["missing_miner"]["left"] = os.path.exists("bad_miner")
json.dump(out, open("bad.json", "w"))
"""

# case: (exception classes it must be, words its message must hold)
EXPECT = {
    "one_tuple": (["RawDataError", "ValueError"], ["pairs or triplets", "1 field"]),
    "mixed_kinds": (["ValueError"], ["raw_data[1] has 3 fields", "raw_data[0] has 2", "one kind"]),
    "mixed_kinds_short": (["ValueError"], ["raw_data[1] has 2 fields", "triplets"]),
    "bad_label": (["ValueError"], ["Label 7", "positive_label", "negative_label", "raw_data[1]"]),
    "bad_first_label": (["ValueError"], ["Invalid value for label", "5"]),
    "query_not_string": (["ValueError"], ["Queries must be strings", "raw_data[1][0]", "int"]),
    "passage_not_string": (["ValueError", "TypeError"], ["raw_data[1][1]", "float", "a string, a list of strings"]),
    "list_item_not_string": (["ValueError", "TypeError"], ["raw_data[0][1][1]", "NoneType"]),
    "dict_without_content": (["ValueError", "TypeError"], ["'content'"]),
    "empty_list": (["ValueError", "IndexError"], ["raw_data is empty"]),
    "empty_query": (["ValueError"], ["empty query"]),
    "not_a_list": (["ValueError"], ["raw_data is str"]),
    "missing_model": (["ModelNotFoundError", "FileNotFoundError", "OSError"], ["no-such-org/no-such-model"]),
    "missing_miner": (["ModelNotFoundError", "OSError"],
                      ["BAAI/bge-small-en-v1.5", "hard_negative_model=", "mine_hard_negatives=False"]),
}


def test_bad_inputs_raise_clearly_and_leave_nothing(py):
    run_py(py, BAD, MODEL)
    got = json.loads((WORK / "bad.json").read_text())
    for name, (classes, words) in EXPECT.items():
        g = got[name]
        assert g["raised"], f"{name}: nothing raised"
        for c in classes:
            assert c in g["raised"], f"{name}: raised {g['raised'][0]}, expected a {c}"
        for w in words:
            assert w in g["msg"], f"{name}: {w!r} not in the message: {g['msg']}"
        assert not g.get("left"), f"{name}: left {WORK / ('bad_' + name)} behind"
        print(f"\n{name}: {g['raised'][0]}: {g['msg'][:160]}")


# ---- Ctrl-C during train, then resume ----------------------------------------------------

SIGINT_TRAIN = r"""
import json, sys
from colbert_c import RAGTrainer
t = RAGTrainer("sig", sys.argv[1])
resume = sys.argv[4] if len(sys.argv) > 4 else None
try:
    best = t.train(batch_size=2, maxsteps=10, doc_maxlen=32, learning_rate=1e-4, data_dir=sys.argv[2],
                   output_dir=sys.argv[3], val_fraction=0, threads=1, resume=resume, save_every=100)
    json.dump({"best": best}, open(sys.argv[3] + ".json", "w"))
except KeyboardInterrupt as e:
    json.dump({"interrupted": t.last_checkpoint, "msg": str(e)}, open(sys.argv[3] + ".json", "w"))
    raise
"""


def test_sigint_saves_checkpoint_raises_and_resumes(py, prepared):
    data = WORK / "py_pairs_random"
    script = WORK / "sigint_train.py"
    script.write_text(SIGINT_TRAIN)
    runs, full = WORK / "sig_runs", WORK / "sig_full"
    for d in (runs, full):
        shutil.rmtree(d, ignore_errors=True)
    p = subprocess.Popen([py, str(script), MODEL, str(data), str(runs)], cwd=WORK, env=clean_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = runs / "sig" / "train.jsonl"
    t0 = time.time()
    while not (log.exists() and sum('"step"' in l for l in log.read_text().splitlines()) >= 2):
        assert p.poll() is None, p.communicate()[1][-3000:]
        assert time.time() - t0 < 300, "no training step within 300 s"
        time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=300)
    assert out == ""
    assert p.returncode != 0 and "KeyboardInterrupt" in err, (p.returncode, err[-2000:])
    got = json.loads(Path(str(runs) + ".json").read_text())
    ckpt = got["interrupted"]
    assert ckpt and (Path(ckpt) / "model.safetensors").exists() and (Path(ckpt) / "training_state.json").exists()
    assert "resume" in got["msg"] and ckpt in got["msg"]
    step = int(Path(ckpt).name.split("-")[1])
    assert 2 <= step < 10, ckpt
    # resume continues to the end; the result equals an uninterrupted run bit for bit
    r = subprocess.run([py, str(script), MODEL, str(data), str(runs), ckpt], cwd=WORK, env=clean_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming at step {step}" in r.stderr
    best = json.loads(Path(str(runs) + ".json").read_text())["best"]
    r = subprocess.run([py, str(script), MODEL, str(data), str(full)], cwd=WORK, env=clean_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    whole = json.loads(Path(str(full) + ".json").read_text())["best"]
    assert Path(best).name == Path(whole).name == "step-000010"
    assert (Path(best) / "model.safetensors").read_bytes() == (Path(whole) / "model.safetensors").read_bytes()
    print(f"\nSIGINT after step {step}: {ckpt}; resumed to {best}, equal to an uninterrupted run")
    shutil.rmtree(full, ignore_errors=True)   # checkpoints are large; the disk is shared


# ---- behaving well in Python ----------------------------------------------------------------

GIL = r"""
import sys, threading, time, colbert_c
docs = [l.rstrip("\n") for l in open("enc_short.txt", encoding="utf-8")] * 10
ticks, done = 0, threading.Event()
def work():
    colbert_c.encode(sys.argv[1], docs, kind="doc", threads=1, quiet=True)
    done.set()
t = threading.Thread(target=work); t0 = time.time(); t.start()
while not done.is_set():
    time.sleep(0.01); ticks += 1
t.join()
print(ticks, time.time() - t0, file=sys.stderr)
"""


def short_texts():
    """24 NFCorpus documents cut to 32 words, in WORK/enc_short.txt"""
    (WORK / "enc_short.txt").write_text("\n".join(short(t) for t in texts()[1]) + "\n", encoding="utf-8")


def test_encode_releases_the_gil(py, trained):
    short_texts()
    r = run_py(py, GIL, trained["py"])
    ticks, secs = r.stderr.split()[-2:]
    ticks, secs = int(ticks), float(secs)
    print(f"\nthe main thread ran {ticks} times during a {secs:.1f} s encode")
    assert secs > 0.5 and ticks >= max(10, 0.1 * secs / 0.01), (ticks, secs)


TQDM = r"""
import sys, colbert_c
colbert_c.set_progress("tqdm")
docs = [l.rstrip("\n") for l in open("enc_short.txt", encoding="utf-8")] * 10
colbert_c.encode(sys.argv[1], docs, kind="doc", threads=2)
"""


def test_tqdm_bars_replace_stderr_bars(py, trained):
    short_texts()
    r = run_py(py, TQDM, trained["py"])
    assert r.stdout == ""
    assert "encode documents" in r.stderr and "240/240" in r.stderr, r.stderr[-2000:]
    assert " docs/s" in r.stderr or "docs/s]" in r.stderr, r.stderr[-2000:]
    assert "encode documents 240/240" not in r.stderr   # the library's own bar ("... 240/240 docs (100%)") is off
