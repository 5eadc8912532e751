"""test_train.py: `colbert train` end to end on NFCorpus (all-MiniLM-L6-v2).

- a short real run lowers the training loss, writes the checkpoints the save
  rule implies (every ceil(steps / 5) steps and at the end, the newest
  --keep-checkpoints plus the best, the optimizer state only in the
  newest), warms up over 10% of its own steps and decays to 0 at its last,
  validates by retrieval and links the checkpoint of highest nDCG@10 as
  best, prints the best path last; --schedule ragatouille gives
  RAGatouille's arithmetic (warmup and save_every from the data, decay to
  0 at maxsteps);
- resume (from a periodic checkpoint, and after SIGINT) ends with parameters
  and AdamW moments bit-identical to an uninterrupted run, dropout on;
- SIGKILL during a save leaves every earlier checkpoint complete and loadable;
- fine-tuning one of our checkpoints keeps its linear.weight and settings;
- small or broken inputs get a clear error (ASan build), never a crash.
Sizes are small (batch 4-8, doc_maxlen 32-48) to stay quick on 2 cores.
"""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

BIN = os.environ["COLBERT_BIN"]
SAN = os.environ.get("COLBERT_SAN_BIN", BIN)
MODEL = os.environ["COLBERT_MODEL"]
DATA = os.environ["COLBERT_DATASETS"]
TMP = os.environ["COLBERT_TMP"]
FILES = ("queries.train.colbert.tsv", "corpus.train.colbert.tsv", "triples.train.colbert.jsonl")


# each test's runs go when it ends (tests/conftest.py); what tests share comes
# from the module's fixtures (nf, full_run)
TMP_PER_TEST = True

def train(args, binary=BIN, check=True):
    r = subprocess.run([binary, "train", "--threads", "2", *args], capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def nf():
    """NFCorpus train split as colbert prepare writes it (random negatives)."""
    out = os.path.join(TMP, "train_nf")
    if not os.path.exists(os.path.join(out, FILES[2])):
        r = subprocess.run([BIN, "prepare", "--beir", os.path.join(DATA, "nfcorpus"), "--split", "train",
                            "--no-mining", "--out", out, "--quiet"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return out


def subset(nf, name, n):
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    for f in FILES[:2]:
        shutil.copy(os.path.join(nf, f), d)
    with open(os.path.join(nf, FILES[2])) as src, open(os.path.join(d, FILES[2]), "w") as dst:
        for i, line in enumerate(src):
            if i == n:
                break
            dst.write(line)
    return d


def digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def log_lines(run_dir):
    return [json.loads(x) for x in open(os.path.join(run_dir, "train.jsonl"))]


def test_short_nfcorpus_run(nf):
    data = subset(nf, "nf480", 480)
    out = os.path.join(TMP, "runs")
    r = train(["--model-name", "nf", "--pretrained", MODEL, "--data", data, "--output-dir", out, "--batch-size", "8",
               "--maxsteps", "24", "--doc-maxlen", "48", "--lr", "3e-5", "--keep-checkpoints", "2",
               "--val-docs", "300"])
    run = os.path.join(out, "nf")
    lines = log_lines(run)
    steps = [x for x in lines if "event" not in x]
    ckpts = [x for x in lines if x.get("event") == "checkpoint"]
    loss = np.array([x["loss"] for x in steps])
    first, last = loss[:10].mean(), loss[-10:].mean()
    print(f"\nNFCorpus 480 triples, batch 8, 24 steps: loss {first:.4f} (steps 1-10) -> {last:.4f} (15-24); "
          f"validation {[(c['step'], round(c['val_ndcg10'], 3), round(c['val_mrr10'], 3)) for c in ckpts]}")
    assert [x["step"] for x in steps] == list(range(1, 25))
    assert last < first
    # the run takes 24 steps: save_every = ceil(24 / 5) = 5, warmup = int(24 * 0.1) = 2, decay to 0 at 24
    assert [c["step"] for c in ckpts] == [5, 10, 15, 20, 24]
    assert all(k in c for c in ckpts for k in ("val_ndcg10", "val_mrr10", "val_loss", "val_cand_mrr10"))
    assert steps[0]["lr"] == 0 and steps[1]["lr"] == pytest.approx(3e-5 / 2, rel=1e-6)
    assert steps[2]["lr"] == pytest.approx(3e-5, rel=1e-6)
    assert steps[12]["lr"] == pytest.approx(3e-5 * (24 - 12) / (24 - 2), rel=1e-6)
    assert steps[23]["lr"] == pytest.approx(3e-5 * 1 / 22, rel=1e-6)
    # the smoothed loss of the log is the bias-corrected EMA of the losses
    ema = 0.0
    for i, x in enumerate(steps):
        ema = 0.95 * ema + 0.05 * x["loss"]
        assert x["loss_avg"] == pytest.approx(ema / (1 - 0.95 ** (i + 1)), rel=1e-5)
    best = os.path.realpath(os.path.join(run, "best"))
    assert r.stdout.strip().splitlines()[-1] == os.path.join(run, os.path.basename(best))
    bc = max(ckpts, key=lambda c: (c["val_ndcg10"], c["val_mrr10"], c["step"]))
    assert os.path.basename(best) == f"step-{bc['step']:06d}"
    assert f"best: step {bc['step']}, validation nDCG@10" in r.stderr
    assert "curve.svg" in r.stderr and "train.jsonl" in r.stderr
    kept = sorted(d for d in os.listdir(run) if d.startswith("step-"))
    assert kept == sorted({"step-000020", "step-000024", os.path.basename(best)})
    assert not [d for d in os.listdir(run) if d.startswith(".")]
    for d in kept:
        names = set(os.listdir(os.path.join(run, d)))
        assert {"config.json", "model.safetensors", "artifact.metadata"} <= names
        # only the newest checkpoint keeps the optimizer state
        state = {"training_state.json", "training_state.safetensors"}
        assert (state <= names) == (d == "step-000024"), (d, names)
        meta = json.load(open(os.path.join(run, d, "artifact.metadata")))
        assert meta["doc_maxlen"] == 48 and meta["query_maxlen"] == 32 and meta["dim"] == 128
        assert meta["bsize"] == 8 and meta["nbits"] == 2 and meta["warmup"] == 2
    svg = open(os.path.join(run, "curve.svg")).read()
    assert svg.startswith("<svg") and "polyline" in svg
    # a model-only checkpoint cannot be resumed, and says which one can
    older = [d for d in kept if d != "step-000024"][0]
    r = train(["--resume", os.path.join(run, older)], check=False)
    assert r.returncode == 1 and "only the newest checkpoint" in r.stderr


def test_ragatouille_schedule(nf):
    """--schedule ragatouille: warmup = int(n // bsize * 0.1), save_every = n // bsize // 10, decay to 0 at maxsteps."""
    data = subset(nf, "nf480", 480)
    out = os.path.join(TMP, "runs_rag")
    train(["--model-name", "nf", "--pretrained", MODEL, "--data", data, "--output-dir", out, "--batch-size", "8",
           "--maxsteps", "13", "--doc-maxlen", "32", "--lr", "3e-5", "--schedule", "ragatouille",
           "--val-fraction", "0", "--keep-checkpoints", "0"])
    lines = log_lines(os.path.join(out, "nf"))
    steps = [x for x in lines if "event" not in x]
    ckpts = [x["step"] for x in lines if x.get("event") == "checkpoint"]
    # 480 // 8 = 60 batches: warmup 6, a checkpoint every 6 steps, decay to 0 at maxsteps 13
    assert ckpts == [6, 12, 13]
    assert steps[2]["lr"] == pytest.approx(3e-5 * 2 / 6, rel=1e-6)
    assert steps[9]["lr"] == pytest.approx(3e-5 * (13 - 9) / (13 - 6), rel=1e-6)


TINY = ["--batch-size", "4", "--doc-maxlen", "32", "--query-maxlen", "16", "--maxsteps", "6", "--save-every", "2",
        "--val-fraction", "0", "--keep-checkpoints", "0", "--lr", "1e-4"]


@pytest.fixture(scope="module")
def full_run(nf):
    data = subset(nf, "nf64", 64)
    out = os.path.join(TMP, "full")
    train(["--model-name", "a", "--pretrained", MODEL, "--data", data, "--output-dir", out, *TINY])
    return data, os.path.join(out, "a")


def same_state(a, b):
    for f in ("model.safetensors", "training_state.safetensors"):
        assert digest(os.path.join(a, f)) == digest(os.path.join(b, f)), f


def test_resume_bit_identical(full_run):
    """Killed (SIGKILL) after a periodic checkpoint, resumed from the newest one."""
    data, a = full_run
    out = os.path.join(TMP, "resumed")
    p = subprocess.Popen([BIN, "train", "--threads", "2", "--model-name", "a", "--pretrained", MODEL, "--data", data,
                          "--output-dir", out, *TINY], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    b = os.path.join(out, "a")
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None:
        if os.path.isdir(os.path.join(b, "step-000002")):
            p.kill()
            break
        time.sleep(0.01)
    p.wait()
    newest = max(d for d in os.listdir(b) if d.startswith("step-"))
    assert newest < "step-000006", "the run ended before it could be killed"
    r = train(["--resume", os.path.join(b, newest)])
    print(f"\nkilled after {newest}, resumed")
    assert r.stdout.strip().splitlines()[-1] == os.path.join(b, "step-000006")
    same_state(os.path.join(a, "step-000006"), os.path.join(b, "step-000006"))
    assert [x["step"] for x in log_lines(b) if "event" not in x] == list(range(1, 7))


def test_sigint_then_resume_bit_identical(full_run):
    data, a = full_run
    out = os.path.join(TMP, "interrupted")
    p = subprocess.Popen([BIN, "train", "--threads", "2", "--model-name", "a", "--pretrained", MODEL, "--data", data,
                          "--output-dir", out, *TINY], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = os.path.join(out, "a", "train.jsonl")
    t0 = time.time()
    while time.time() - t0 < 120 and p.poll() is None:  # stop it after step 3
        if os.path.exists(log) and sum(1 for x in open(log) if '"step":3,' in x):
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    so, se = p.communicate(timeout=120)
    assert p.returncode == 130, se[-2000:]
    saved = so.strip().splitlines()[-1]
    assert "interrupted at step" in se and os.path.isdir(saved), se[-2000:]
    step = json.load(open(os.path.join(saved, "training_state.json")))["step"]
    print(f"\nSIGINT after step {step}: {saved}")
    assert 3 <= step < 6
    train(["--resume", saved])
    same_state(os.path.join(a, "step-000006"), os.path.join(out, "a", "step-000006"))


def loadable(ckpt):
    q = os.path.join(TMP, "one_query.txt")
    with open(q, "w") as f:
        f.write("do statins cause cancer\n")
    r = subprocess.run([BIN, "encode", "--colbert", "query", "--model", ckpt, "--input", q, "--output",
                        os.path.join(TMP, "one_query.npy"), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, f"{ckpt}: {r.stderr}"
    if os.path.exists(os.path.join(ckpt, "training_state.json")):
        load_file(os.path.join(ckpt, "training_state.safetensors"))


def test_sigkill_mid_save_keeps_earlier_checkpoints(nf):
    data = subset(nf, "nf64k", 64)
    out = os.path.join(TMP, "killed")
    args = ["--model-name", "k", "--pretrained", MODEL, "--data", data, "--output-dir", out,
            *[x if x != "6" else "12" for x in TINY]]
    args[args.index("--save-every") + 1] = "1"
    p = subprocess.Popen([BIN, "train", "--threads", "2", *args], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    run = os.path.join(out, "k")
    t0, killed_in = time.time(), None
    while time.time() - t0 < 120 and p.poll() is None:
        names = os.listdir(run) if os.path.isdir(run) else []
        part = [n for n in names if n.startswith(".partial-step-000003")]
        if part:  # the third checkpoint is being written
            p.kill()
            killed_in = part[0]
            break
        time.sleep(0.002)
    p.wait()
    assert killed_in, "the run ended before the third save could be interrupted"
    kept = sorted(d for d in os.listdir(run) if d.startswith("step-"))
    print(f"\nSIGKILL while {killed_in} was being written; complete: {kept}")
    assert kept == ["step-000001", "step-000002"]
    for d in kept:
        loadable(os.path.join(run, d))
    # the newest complete checkpoint is the resumable one
    assert os.path.exists(os.path.join(run, "step-000002", "training_state.safetensors"))
    # the next run over the same directory cleans the leftovers up and continues
    r = train(["--resume", os.path.join(run, "step-000002"), "--quiet"])
    assert not [n for n in os.listdir(run) if n.startswith(".")]
    assert r.stdout.strip().splitlines()[-1] == os.path.join(run, "step-000012")


def test_finetune_keeps_linear_and_config(full_run):
    data, a = full_run
    base = os.path.join(a, "step-000006")
    out = os.path.join(TMP, "ft")
    # no --dim/--doc-maxlen/--query-maxlen: the checkpoint's 128/32/16 stay; a tiny rate keeps the weights
    r = train(["--model-name", "ft", "--pretrained", base, "--data", data, "--output-dir", out, "--batch-size", "4",
               "--maxsteps", "1", "--val-fraction", "0", "--lr", "1e-12", "--no-dropout"])
    assert "fine-tuning the colbert-ai ColBERT checkpoint" in r.stderr
    ck = r.stdout.strip().splitlines()[-1]
    meta = json.load(open(os.path.join(ck, "artifact.metadata")))
    assert (meta["dim"], meta["doc_maxlen"], meta["query_maxlen"]) == (128, 32, 16)
    w0 = load_file(os.path.join(base, "model.safetensors"))["linear.weight"]
    w1 = load_file(os.path.join(ck, "model.safetensors"))["linear.weight"]
    assert w1.shape == w0.shape and np.abs(w1 - w0).max() < 1e-6
    # an explicit option overrides a setting; a different dim cannot
    r = train(["--model-name", "ft2", "--pretrained", base, "--data", data, "--output-dir", out, "--batch-size", "4",
               "--maxsteps", "1", "--val-fraction", "0", "--doc-maxlen", "40", "--no-dropout"])
    meta = json.load(open(os.path.join(r.stdout.strip().splitlines()[-1], "artifact.metadata")))
    assert (meta["dim"], meta["doc_maxlen"], meta["query_maxlen"]) == (128, 40, 16)
    r = train(["--model-name", "ft3", "--pretrained", base, "--data", data, "--output-dir", out, "--dim", "64"],
              check=False)
    assert r.returncode == 1 and "dim 128" in r.stderr


def test_bad_inputs_clear_errors(nf, tmp_path):
    """ASan/UBSan build: each case exits 1 or 2 with one clear message."""
    few = subset(nf, "nf5", 5)
    empty = tmp_path / "empty"
    empty.mkdir()
    emptyfile = tmp_path / "emptyfile"
    emptyfile.mkdir()
    for f in FILES:
        (emptyfile / f).write_text("")
    gpt = tmp_path / "gpt"
    gpt.mkdir()
    for f in os.listdir(MODEL):  # a full model directory whose config says GPT-2
        if f.endswith((".txt", ".json", ".safetensors")):
            shutil.copy(os.path.join(MODEL, f), gpt)
    (gpt / "config.json").write_text('{"model_type": "gpt2", "n_embd": 384}')
    base = ["--model-name", "x", "--output-dir", str(tmp_path / "o")]
    cases = [
        (["--pretrained", MODEL, "--data", few], "fewer than one batch of 32"),
        (["--pretrained", MODEL, "--data", str(empty)], "queries.train.colbert.tsv is missing"),
        (["--pretrained", MODEL, "--data", str(tmp_path / "nope")], "no such data directory"),
        (["--pretrained", MODEL, "--data", str(emptyfile)], "no"),
        (["--pretrained", str(gpt), "--data", few, "--batch-size", "2"], "gpt2"),
        (["--pretrained", MODEL, "--data", few, "--dim", "0"], "--dim"),
        (["--pretrained", MODEL, "--data", few, "--dim", "100000"], "--dim"),
        (["--pretrained", MODEL, "--data", few, "--batch-size", "2", "--doc-maxlen", "4096"], "exceed the 512 positions"),
        (["--pretrained", MODEL, "--data", few, "--batch-size", "3", "--accumsteps", "2"], "accumsteps"),
        (["--resume", str(empty)], "cannot resume"),
    ]
    for args, want in cases:
        r = train([*base, *args], binary=SAN, check=False)
        msg = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
        print(f"\n{' '.join(args[-4:])}: exit {r.returncode}: {msg}")
        assert r.returncode in (1, 2), r.stderr[-2000:]
        assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr
        assert want in r.stderr, r.stderr[-2000:]
        assert r.stdout == ""


# ---- one run per directory, --overwrite, divergence --------------------------------

def small_data(name, queries, triples):
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    docs = [f"document {i} talks about topic {i % 5} and more" for i in range(40)]
    with open(os.path.join(d, FILES[0]), "w") as f:
        f.writelines(f"{i}\t{q}\n" for i, q in enumerate(queries))
    with open(os.path.join(d, FILES[1]), "w") as f:
        f.writelines(f"{i}\t{x}\n" for i, x in enumerate(docs))
    with open(os.path.join(d, FILES[2]), "w") as f:
        f.writelines(json.dumps(t) + "\n" for t in triples)
    return d


SMALL = ["--batch-size", "4", "--doc-maxlen", "32", "--query-maxlen", "16", "--val-fraction", "0",
         "--no-dropout", "--quiet"]


def test_one_run_per_directory_and_overwrite():
    """A second run on a busy directory is refused at once, naming the
    holder; a finished run is refused until --overwrite, which leaves no
    checkpoint or log line of the old run beside the new one."""
    data = small_data("lock_data", [f"query number {i} about topic {i % 5}" for i in range(20)],
                      [[i % 20, (2 * i) % 40, (2 * i + 1) % 40] for i in range(400)])
    out = os.path.join(TMP, "lock_runs")
    shutil.rmtree(out, ignore_errors=True)
    args = ["--model-name", "a", "--pretrained", MODEL, "--data", data, "--output-dir", out, *SMALL]
    run = os.path.join(out, "a")
    first = subprocess.Popen([BIN, "train", "--threads", "1", *args, "--maxsteps", "60", "--save-every", "20"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while time.time() - t0 < 120 and first.poll() is None:   # until it trains
        if os.path.exists(os.path.join(run, "train.jsonl")) and os.path.getsize(os.path.join(run, "train.jsonl")):
            break
        time.sleep(0.05)
    assert first.poll() is None, "the first run ended too soon"
    t1 = time.time()
    second = train([*args, "--maxsteps", "60"], binary=SAN, check=False)
    refused_in = time.time() - t1
    so, se = first.communicate(timeout=600)
    assert first.returncode == 0, se[-2000:]
    print(f"\nsecond run: exit {second.returncode} in {refused_in:.1f} s: {second.stderr.strip()}")
    assert second.returncode == 1 and second.stdout == ""
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    host = os.uname().nodename
    assert lines[0].startswith(f"colbert: error: {run}: another `colbert train` is using this run directory "
                               f"(pid {first.pid} on {host}, started "), lines[0]
    # the first run is whole: its checkpoints and one log line per step
    assert sorted(x for x in os.listdir(run) if x.startswith("step-")) == ["step-000020", "step-000040",
                                                                           "step-000060"]
    assert [x["step"] for x in log_lines(run) if "event" not in x] == list(range(1, 61))
    # re-running the finished run: refused before anything is loaded
    r = train([*args, "--maxsteps", "60"], binary=SAN, check=False)
    assert r.returncode == 1 and r.stderr.strip() == (
        f"colbert: error: {run} holds a finished run (step-000060, the last of its 60 steps); --overwrite replaces "
        "it (its checkpoints, log and curve are deleted), or give another --model-name or --output-dir"), r.stderr
    # --overwrite: a shorter run, and nothing of the old one is left
    r = train([*args, "--maxsteps", "8", "--save-every", "4", "--overwrite"])
    assert "--overwrite: removed the earlier run" in r.stderr
    assert sorted(x for x in os.listdir(run) if x.startswith(("step-", ".deleting", ".partial"))) == [
        "step-000004", "step-000008"]
    assert [x["step"] for x in log_lines(run) if "event" not in x] == list(range(1, 9))
    assert os.readlink(os.path.join(run, "best")) == "step-000008"


def test_divergence_stops_at_the_step_and_keeps_the_last_good_checkpoint():
    """Finite weights that overflow on one token (position 2 at 1e38, the
    word "zebra" at FLT_MAX): the batch that first holds a query starting
    with "zebra" (step 4) gives a NaN loss. The run stops there with an
    error naming the step and the last good checkpoint (step 2), exit 1;
    nothing of step 4 is saved. ASan/UBSan build: the NaNs go through every
    kernel without undefined behaviour."""
    poisoned = os.path.join(TMP, "poisoned_model")
    if not os.path.isdir(poisoned):
        os.makedirs(poisoned)
        for e in os.listdir(MODEL):
            if e != "model.safetensors":
                os.symlink(os.path.join(MODEL, e), os.path.join(poisoned, e))
        t = load_file(os.path.join(MODEL, "model.safetensors"))
        vocab = open(os.path.join(MODEL, "vocab.txt"), encoding="utf-8").read().split("\n")
        t["embeddings.position_embeddings.weight"][2, 0] = 1e38
        t["embeddings.word_embeddings.weight"][vocab.index("zebra"), 0] = np.finfo(np.float32).max
        from safetensors.numpy import save_file
        save_file(t, os.path.join(poisoned, "model.safetensors"), metadata={"format": "pt"})
    queries = [f"query number {i} about topic {i % 5}" for i in range(20)] + [f"zebra lives where {i}" for i in range(4)]
    data = small_data("zebra_data", queries, [[i if i < 12 else 20 + i % 4, (2 * i) % 40, (2 * i + 1) % 40]
                                              for i in range(24)])
    out = os.path.join(TMP, "zebra_runs")
    shutil.rmtree(out, ignore_errors=True)
    r = train(["--model-name", "z", "--pretrained", poisoned, "--data", data, "--output-dir", out, *SMALL,
               "--maxsteps", "6", "--save-every", "2"], binary=SAN, check=False)
    run = os.path.join(out, "z")
    errors = [x for x in r.stderr.splitlines() if x.startswith("colbert: error: ")]
    last = errors[-1] if errors else ""
    print(f"\n{last}")
    assert len(errors) == 1, r.stderr[-3000:]
    assert "runtime error" not in r.stderr and "Sanitizer" not in r.stderr, r.stderr[-3000:]
    assert r.returncode == 1 and r.stdout == "", r.stderr[-3000:]
    assert last == ("colbert: error: step 4 of 6: the loss is NaN and the gradient norm NaN: training diverged and "
                    f"stops; the last good checkpoint is {run}/step-000002 (HINT: lower --lr, or check the model's "
                    "weights and the data)"), last
    assert sorted(x for x in os.listdir(run) if x.startswith(("step-", ".partial"))) == ["step-000002"]
    log = log_lines(run)
    assert [x["step"] for x in log if "event" not in x] == [1, 2, 3]
    assert log[-1] == {"event": "diverged", "step": 4, "loss_finite": False, "grad_norm_finite": False}
    loadable(os.path.join(run, "step-000002"))
