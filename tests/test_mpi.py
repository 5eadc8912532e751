"""test_mpi.py: colbert.c data-parallel under `mpirun -np 2` (Open MPI; one
thread per rank) against one process with one thread, on real
all-MiniLM-L6-v2 and NFCorpus (issue 14).

- the step (tests/mpi_step.c under mpirun): --ib-scope global equals the
  one-process PyTorch reference (gradients, 10 AdamW steps), --ib-scope local
  equals colbert-ai's per-GPU formula in PyTorch (tests/ref/gen_mpi_step.py),
  dropout with accumsteps 2 equals one process;
- `colbert train`, 10 steps, dropout on and off, --ib-scope global: every
  step's loss within 1e-6 relative and the final parameters within 1e-5 of
  one process; validation split over the ranks scores as one process;
- SIGINT to mpirun: a resumable checkpoint; resumed under 2 ranks it ends
  bit-identical to the uninterrupted 2-rank run; the same checkpoint resumes
  in one process (within the tolerances above);
- kill -9 of one rank: the run ends within 60 s with mpirun's clear error;
  the last complete checkpoint survives and resumes bit-identically;
- `prepare` with mining and `eval` under 2 ranks: byte-identical files,
  identical metrics and run file.
Small sizes (batch 8, doc_maxlen 32-64, 300-700 documents) to stay quick on
2 cores.
"""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

BIN = os.environ["COLBERT_BIN"]
ROOT = os.environ.get("COLBERT_ROOT", os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = os.environ["COLBERT_MODEL"]
DATA = os.environ["COLBERT_DATASETS"]
TMP = os.environ["COLBERT_TMP"]
REF = os.environ.get("COLBERT_REF", "")
NF = os.path.join(DATA, "nfcorpus")
FILES = ("queries.train.colbert.tsv", "corpus.train.colbert.tsv", "triples.train.colbert.jsonl")
MPIRUN = shutil.which("mpirun")
# one thread per rank; root in containers; 2 ranks on 2 cores
ENV = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMPI_ALLOW_RUN_AS_ROOT="1",
           OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")

pytestmark = pytest.mark.skipif(MPIRUN is None, reason="no mpirun (scripts/setup.sh installs Open MPI)")


def mpirun(args, n=2, mca=(), **kw):
    cmd = [MPIRUN, "-np", str(n), "--oversubscribe"]
    for k, v in mca:
        cmd += ["--mca", k, str(v)]
    return cmd + [str(a) for a in args]


def run(cmd, check=True, timeout=900):
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=timeout)
    if check:
        assert r.returncode == 0, (cmd, r.stderr[-4000:])
    return r


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def steps_of(run_dir):
    return [json.loads(x) for x in open(os.path.join(run_dir, "train.jsonl")) if '"event"' not in x]


def test_build_has_mpi():
    r = run([BIN, "info"])
    assert "mpi: yes" in r.stdout, "mpirun is installed but colbert was built without MPI: rebuild with make"


def test_step_under_mpirun():
    """tests/mpi_step.c: global and local in-batch scopes against PyTorch, dropout against one process."""
    exe = os.path.join(ROOT, "build", "tests", "mpi_step")
    assert os.path.exists(exe), f"{exe} missing (make test builds it)"
    assert os.path.exists(os.path.join(REF, "mpi_step_ref.safetensors")), "tests/ref/gen_mpi_step.py output missing"
    r = run(mpirun([exe]), check=False)
    print("\n" + r.stdout)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count(" 0 failed") == 2


# ---- training -------------------------------------------------------------

@pytest.fixture(scope="module")
def nf200():
    """NFCorpus train split as colbert prepare writes it (random negatives), first 200 triples."""
    full = os.path.join(TMP, "mpi_nf")
    if not os.path.exists(os.path.join(full, FILES[2])):
        run([BIN, "prepare", "--beir", NF, "--split", "train", "--no-mining", "--out", full, "--quiet"])
    d = os.path.join(TMP, "mpi_nf200")
    os.makedirs(d, exist_ok=True)
    for f in FILES[:2]:
        shutil.copy(os.path.join(full, f), d)
    with open(os.path.join(full, FILES[2])) as src, open(os.path.join(d, FILES[2]), "w") as dst:
        dst.writelines(line for i, line in zip(range(200), src))
    return d


def train_args(data, out, dropout, steps=10):
    # --epochs 4: nf200 holds 25 steps of 8 triples an epoch; the longest run (the SIGINT test, 50 steps) needs two.
    # --keep-checkpoints 1: the tests read the last checkpoint, or resume from the newest (disk: 90 MB each)
    return ["train", "--threads", "1", "--model-name", "a", "--pretrained", MODEL, "--data", data, "--output-dir", out,
            "--batch-size", "8", "--maxsteps", str(steps), "--doc-maxlen", "32", "--query-maxlen", "16",
            "--val-fraction", "0", "--lr", "1e-5", "--save-every", "5", "--keep-checkpoints",
            "1", "--epochs", "4",
            "--quiet",
            *([] if dropout else ["--no-dropout"])]


RUNS = {}


def forget(nf200, ranks, dropout, steps):
    """Remove a run trained() made (no later test uses it)."""
    d = RUNS.pop((ranks, dropout, steps), None)
    if d:
        shutil.rmtree(os.path.dirname(d), ignore_errors=True)


def trained(nf200, ranks, dropout, steps=10):
    """A finished run of `steps` steps (cached per module): its run directory."""
    key = (ranks, dropout, steps)
    if key not in RUNS:
        out = os.path.join(TMP, f"mpi_train_{ranks}_{dropout}_{steps}")
        shutil.rmtree(out, ignore_errors=True)
        args = [BIN, *train_args(nf200, out, dropout, steps)]
        run(mpirun(args, ranks) if ranks > 1 else args)
        RUNS[key] = os.path.join(out, "a")
    return RUNS[key]


def compare_runs(one, par, step="step-000010"):
    """(worst relative loss difference per step, worst absolute parameter difference, its tensor)."""
    la, lb = steps_of(one), steps_of(par)
    assert [x["step"] for x in la] == [x["step"] for x in lb]
    rel = max(abs(a["loss"] - b["loss"]) / abs(a["loss"]) for a, b in zip(la, lb))
    pa = load_file(os.path.join(one, step, "model.safetensors"))
    pb = load_file(os.path.join(par, step, "model.safetensors"))
    assert pa.keys() == pb.keys()
    worst = max((float(np.abs(pa[k] - pb[k]).max()), k) for k in pa)
    return rel, worst[0], worst[1]


@pytest.mark.parametrize("dropout", [0, 1], ids=["dropout-off", "dropout-on"])
def test_global_scope_equals_one_process(nf200, dropout):
    one, par = trained(nf200, 1, dropout), trained(nf200, 2, dropout)
    rel, worst, name = compare_runs(one, par)
    print(f"\n10 steps, dropout {'on' if dropout else 'off'}: 2 ranks vs 1 process: loss rel err {rel:.2g}, "
          f"parameters max abs diff {worst:.2g} ({name})")
    assert rel <= 1e-6 and worst <= 1e-5
    state = json.load(open(os.path.join(par, "step-000010", "training_state.json")))
    assert state["opts"]["ib_scope"] == "global" and state["written_by_ranks"] == 2


def test_validation_split_equals_one_process(nf200):
    """Validation by retrieval splits its documents over the ranks: the same scores as one process."""
    res = []
    for n in (1, 2):
        out = os.path.join(TMP, f"mpi_val_{n}")
        shutil.rmtree(out, ignore_errors=True)
        args = train_args(nf200, out, 0, steps=2)
        args[args.index("--val-fraction") + 1] = "0.2"
        args += ["--val-docs", "300"]
        run(mpirun([BIN, *args], n) if n > 1 else [BIN, *args])
        ev = [json.loads(x) for x in open(os.path.join(out, "a", "train.jsonl")) if '"event"' in x]
        res.append(ev[-1])
        shutil.rmtree(out)
    a, b = res
    print(f"\nvalidation, 1 process vs 2 ranks: nDCG@10 {a['val_ndcg10']:.4f} / {b['val_ndcg10']:.4f}, "
          f"loss {a['val_loss']:.6f} / {b['val_loss']:.6f}")
    for k in ("val_ndcg10", "val_mrr10", "val_cand_mrr10"):
        assert a[k] == pytest.approx(b[k], abs=1e-9), k
    assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


def test_local_scope_runs_and_differs(nf200):
    """--ib-scope local (exact against PyTorch in test_step_under_mpirun): a smoke run, kept in the state."""
    out = os.path.join(TMP, "mpi_local")
    shutil.rmtree(out, ignore_errors=True)
    args = train_args(nf200, out, 0, steps=2) + ["--ib-scope", "local"]
    run(mpirun([BIN, *args]))
    state = json.load(open(os.path.join(out, "a", "step-000002", "training_state.json")))
    assert state["opts"]["ib_scope"] == "local"
    glob = steps_of(trained(nf200, 2, 0))[0]["loss"]
    assert steps_of(os.path.join(out, "a"))[0]["loss"] != pytest.approx(glob, rel=1e-3)
    shutil.rmtree(out)


def test_batch_must_split(nf200):
    out = os.path.join(TMP, "mpi_bad")
    args = train_args(nf200, out, 0, steps=2)
    args[args.index("--batch-size") + 1] = "7"
    r = run(mpirun([BIN, *args]), check=False)
    assert r.returncode != 0 and "does not split over 2 ranks" in r.stderr
    assert r.stderr.count("does not split over 2 ranks") == 1, r.stderr   # one message, not one per rank


def same_state(a, b):
    for f in ("model.safetensors", "training_state.safetensors"):
        assert digest(os.path.join(a, f)) == digest(os.path.join(b, f)), f


def test_sigint_then_resume(nf200):
    """SIGINT to mpirun: the ranks stop at the same step, rank 0 writes a resumable checkpoint;
    2 ranks resume bit-identically; one process resumes it too.

    mpirun passes the signal on as SIGTERM only odls_base_sigkill_timeout
    seconds later (6 here; SIGKILL 6 s after that): the run is long enough
    (50 steps, about 0.5 s each on a fast machine) to still be going then,
    and a loaded machine has 6 s to finish the step and save."""
    steps = 50   # two epochs of the 200 triples
    last = f"step-{steps:06d}"
    full = trained(nf200, 2, 1, steps)
    out = os.path.join(TMP, "mpi_sigint")
    shutil.rmtree(out, ignore_errors=True)
    # Open MPI's mpirun answers SIGINT with SIGCONT, then SIGTERM after
    # odls_base_sigkill_timeout seconds, then SIGKILL after as many again:
    # the ranks have that long to finish the step and save (docs/train.md)
    p = subprocess.Popen(mpirun([BIN, *train_args(nf200, out, 1, steps)], mca=[("odls_base_sigkill_timeout", 6)]),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    log = os.path.join(out, "a", "train.jsonl")
    t0 = time.time()
    while time.time() - t0 < 300 and p.poll() is None:
        if os.path.exists(log) and '"step":1,' in open(log).read():
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    so, se = p.communicate(timeout=300)
    assert "interrupted at step" in se, se[-3000:]
    ck = max(d for d in os.listdir(os.path.join(out, "a")) if d.startswith("step-"))
    assert ck < last, "the run ended before the signal arrived"
    assert so.strip().splitlines()[-1].endswith(ck)
    print(f"\nSIGINT to mpirun: checkpoint {ck}")
    src = os.path.join(out, "a", ck)
    # one process resumes a 2-rank checkpoint (a copy: the run directory is its own)
    one = os.path.join(TMP, "mpi_sigint_one")
    shutil.rmtree(one, ignore_errors=True)
    shutil.copytree(out, one)
    r = run([BIN, "train", "--threads", "1", "--resume", os.path.join(one, "a", ck)])
    rel, worst, name = compare_runs(full, os.path.join(one, "a"), last)
    print(f"resumed in one process: loss rel err {rel:.2g}, parameters max abs diff {worst:.2g} ({name})")
    assert rel <= 1e-6 and worst <= 1e-5
    shutil.rmtree(one)
    # 2 ranks resume bit-identically
    r = run(mpirun([BIN, "train", "--threads", "1", "--resume", src]))
    assert r.stdout.strip().splitlines()[-1] == os.path.join(out, "a", last)
    same_state(os.path.join(full, last), os.path.join(out, "a", last))
    assert [x["step"] for x in steps_of(os.path.join(out, "a"))] == list(range(1, steps + 1))
    shutil.rmtree(out)
    forget(nf200, 2, 1, steps)


def rank_pids(parent):
    """{rank: pid} of mpirun's children (one machine: mpirun starts the ranks itself)."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        for e in env:
            if e.startswith(b"OMPI_COMM_WORLD_RANK="):
                out[int(e.split(b"=")[1])] = int(pid)
    return out


def test_killed_rank_ends_run(nf200):
    """kill -9 of rank 1 after the step-5 checkpoint: mpirun ends rank 0 within 60 s with a clear
    error; step-000005 is complete and resumes bit-identically under 2 ranks."""
    full = trained(nf200, 2, 1)
    out = os.path.join(TMP, "mpi_killed")
    shutil.rmtree(out, ignore_errors=True)
    p = subprocess.Popen(mpirun([BIN, *train_args(nf200, out, 1)]), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=ENV)
    ck = os.path.join(out, "a", "step-000005")
    t0 = time.time()
    while time.time() - t0 < 300 and p.poll() is None and not os.path.isdir(ck):
        time.sleep(0.02)
    pids = rank_pids(p.pid)
    assert 1 in pids, pids
    os.kill(pids[1], signal.SIGKILL)
    t1 = time.time()
    so, se = p.communicate(timeout=120)
    dt = time.time() - t1
    print(f"\nkilled rank 1 (pid {pids[1]}): mpirun ended in {dt:.1f} s, exit {p.returncode}: "
          f"{[l for l in se.splitlines() if 'signal 9' in l]}")
    assert dt < 60 and p.returncode != 0
    assert "rank 1" in se and "signal 9" in se, se[-3000:]
    assert not os.path.isdir(os.path.join(out, "a", "step-000010")), "the run ended before the kill"
    run(mpirun([BIN, "train", "--threads", "1", "--resume", ck]))
    same_state(os.path.join(full, "step-000010"), os.path.join(out, "a", "step-000010"))
    shutil.rmtree(out)


# ---- prepare (mining) and eval ---------------------------------------------

@pytest.fixture(scope="module")
def mini_beir():
    """300 NFCorpus documents (first 32 words each), the train queries judged among them (at most 100)."""
    d = os.path.join(TMP, "mpi_beir")
    os.makedirs(os.path.join(d, "qrels"), exist_ok=True)
    docs = [json.loads(x) for x in open(os.path.join(NF, "corpus.jsonl"))][:300]
    ids = {x["_id"] for x in docs}
    with open(os.path.join(d, "corpus.jsonl"), "w") as f:
        for x in docs:
            x["text"] = " ".join(x["text"].split()[:32])
            f.write(json.dumps(x) + "\n")
    lines = open(os.path.join(NF, "qrels", "train.tsv")).read().splitlines()
    keep = [x for x in lines[1:] if x.split("\t")[1] in ids]
    qs = list(dict.fromkeys(x.split("\t")[0] for x in keep))[:100]
    keep = [x for x in keep if x.split("\t")[0] in set(qs)]
    open(os.path.join(d, "qrels", "train.tsv"), "w").write("\n".join([lines[0]] + keep) + "\n")
    with open(os.path.join(NF, "queries.jsonl")) as src, open(os.path.join(d, "queries.jsonl"), "w") as f:
        f.writelines(x for x in src if json.loads(x)["_id"] in set(qs))
    return d


def test_prepare_mining_identical(mini_beir):
    outs = []
    for n in (1, 2):
        out, emb = os.path.join(TMP, f"mpi_mine_{n}"), os.path.join(TMP, f"mpi_mine_emb_{n}")
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(emb, ignore_errors=True)
        args = [BIN, "prepare", "--beir", mini_beir, "--split", "train", "--miner-model", MODEL, "--out", out,
                "--save-embeddings", emb, "--threads", "1"]
        r = run(mpirun(args, n) if n > 1 else args)
        assert r.stdout.count("prepare: ") == 2, r.stdout   # rank 0 reports, once
        outs.append((out, emb))
    (a, ea), (b, eb) = outs
    for f in FILES:
        assert digest(os.path.join(a, f)) == digest(os.path.join(b, f)), f
    names = sorted(os.listdir(ea))
    assert names == sorted(os.listdir(eb)) and any(x.endswith(".npy") for x in names)
    for f in names:
        assert digest(os.path.join(ea, f)) == digest(os.path.join(eb, f)), f
    print(f"\nmining under 2 ranks: {', '.join(FILES)} and the saved embeddings byte-identical")


@pytest.fixture(scope="module")
def eval_beir():
    """40 NFCorpus test queries, their judged documents and random others: about 700 documents."""
    d = os.path.join(TMP, "mpi_eval")
    os.makedirs(os.path.join(d, "qrels"), exist_ok=True)
    with open(os.path.join(NF, "qrels", "test.tsv"), newline="") as f:
        lines = f.read().split("\r\n")
    header, lines = lines[0], [x for x in lines[1:] if x]
    queries, judged, keep = [], set(), []
    for x in lines:
        q, doc, _ = x.split("\t")
        if q not in queries:
            if len(queries) >= 40:
                continue
            queries.append(q)
        keep.append(x)
        judged.add(doc)
    corpus = open(os.path.join(NF, "corpus.jsonl")).read().splitlines()
    ids = [json.loads(c)["_id"] for c in corpus]
    others = random.Random(5).sample([i for i in ids if i not in judged], max(0, 700 - len(judged)))
    chosen = judged | set(others)
    open(os.path.join(d, "corpus.jsonl"), "w").write("".join(c + "\n" for c, i in zip(corpus, ids) if i in chosen))
    qs = set(queries)
    with open(os.path.join(NF, "queries.jsonl")) as src, open(os.path.join(d, "queries.jsonl"), "w") as f:
        f.writelines(x for x in src if json.loads(x)["_id"] in qs)
    open(os.path.join(d, "qrels", "test.tsv"), "w", newline="").write("\r\n".join([header] + keep) + "\r\n")
    return d


def test_eval_identical(nf200, eval_beir):
    model = os.path.join(trained(nf200, 1, 0), "step-000010")
    res = []
    for n in (1, 2):
        out = os.path.join(TMP, f"mpi_eval_{n}.run")
        args = [BIN, "eval", "--model", model, "--dataset", eval_beir, "--split", "test", "--run", out,
                "--doc-maxlen", "64", "--threads", "1", "--quiet"]
        r = run(mpirun(args, n) if n > 1 else args)
        lines = r.stdout.strip().splitlines()
        assert len(lines) == 1, r.stdout   # rank 0 reports, once
        res.append((json.loads(lines[0]), out))
    (ja, ra), (jb, rb) = res
    for k in ("ndcg@10", "mrr@10", "recall@10", "recall@100", "doc_vectors", "queries", "documents"):
        assert ja[k] == jb[k], k
    assert digest(ra) == digest(rb)
    print(f"\neval under 2 ranks: nDCG@10 {ja['ndcg@10']:.4f}, identical metrics and run file "
          f"({sum(1 for _ in open(ra))} lines)")
