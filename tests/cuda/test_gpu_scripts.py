"""test_gpu_scripts.py: the GPU check's plumbing, on the CPU (no GPU needed).

- scripts/gpu_compare.py: each comparison passes what it must pass and fails
  what it must fail, on synthetic data: ranked lists with neighbouring
  documents swapped where their scores tie (pass) and where they do not
  (fail); mined triples that differ only for queries whose candidates moved
  (pass, the figure reported) and for a query whose candidates did not
  (fail); per-step losses; run files; embeddings.
- tests/cuda/run.sh: the op tests run before the whole-model test, a name
  list selects programs, the closing line counts them, and the programs run
  with core files off.
- scripts/gpu_check.sh --dry-run, when gpu/bundle.tar.xz has been made
  (make gpu-bundle): the bundle unpacks with every file the check reads, and
  every comparison passes on the CPU references themselves.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.environ.get("COLBERT_ROOT", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
COMPARE = os.path.join(ROOT, "scripts", "gpu_compare.py")


def compare(*args):
    r = subprocess.run([sys.executable, COMPARE, *map(str, args)], capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def lists(d, ids, scores):
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "neighbors.npy"), np.asarray(ids, dtype=np.int32))
    np.save(os.path.join(d, "scores.npy"), np.asarray(scores, dtype=np.float32))
    return d


# two queries, five ranks; query 0's documents 11 and 12 tie within 3e-6
IDS = [[10, 11, 12, 13, 14], [20, 21, 22, 23, 24]]
SC = [[0.9, 0.8, 0.799997, 0.7, 0.6], [0.95, 0.85, 0.75, 0.65, 0.55]]


def test_lists_tied_swap_passes(tmp_path):
    cpu = lists(tmp_path / "cpu", IDS, SC)
    gpu = lists(tmp_path / "gpu", [[10, 12, 11, 13, 14], IDS[1]], [[0.9, 0.799998, 0.799998, 0.7, 0.6], SC[1]])
    rc, out = compare("lists", cpu, gpu, "L", 1e-5)
    assert rc == 0 and out.startswith("PASS L") and "2 swaps" in out and "0 other" in out, out


def test_lists_untied_swap_fails(tmp_path):
    cpu = lists(tmp_path / "cpu", IDS, SC)
    gpu = lists(tmp_path / "gpu", [IDS[0], [20, 22, 21, 23, 24]], [SC[0], [0.95, 0.85, 0.75, 0.65, 0.55]])
    rc, out = compare("lists", cpu, gpu, "L", 1e-5)
    assert rc == 1 and out.startswith("FAIL L") and "2 other differences" in out, out


def test_lists_tie_at_the_last_rank(tmp_path):
    # the GPU's last document is one the CPU ranked past its list, tied with the CPU's last
    cpu = lists(tmp_path / "cpu", IDS, SC)
    gpu = lists(tmp_path / "gpu", [IDS[0], [20, 21, 22, 23, 99]], [SC[0], [0.95, 0.85, 0.75, 0.65, 0.549995]])
    rc, out = compare("lists", cpu, gpu, "L", 1e-5)
    assert rc == 0 and "1 swaps" in out, out
    gpu = lists(tmp_path / "gpu2", [IDS[0], [20, 21, 22, 23, 99]], [SC[0], [0.95, 0.85, 0.75, 0.65, 0.54]])
    rc, out = compare("lists", cpu, gpu, "L", 1e-5)
    assert rc == 1, out


def write_triples(path, triples):
    with open(path, "w") as f:
        for t in triples:
            f.write(json.dumps(t) + "\n")
    return path


def test_triples(tmp_path):
    cpu = lists(tmp_path / "cpu", IDS, SC)
    # query 1's candidates (ranks 2+) moved by a swap; query 0's did not
    gpu = lists(tmp_path / "gpu", [IDS[0], [20, 21, 23, 22, 24]], SC)
    ct = write_triples(tmp_path / "c.jsonl", [[0, 1, 12], [0, 1, 13], [1, 5, 22], [1, 5, 23]])
    same = write_triples(tmp_path / "g1.jsonl", [[0, 1, 13], [1, 5, 22], [0, 1, 12], [1, 5, 23]])
    moved = write_triples(tmp_path / "g2.jsonl", [[0, 1, 12], [0, 1, 13], [1, 5, 22], [1, 5, 24]])
    broken = write_triples(tmp_path / "g3.jsonl", [[0, 1, 12], [0, 1, 14], [1, 5, 22], [1, 5, 23]])
    rc, out = compare("triples", cpu, gpu, ct, same, "T", 2)
    assert rc == 0 and "0 differ (0.00%)" in out, out
    rc, out = compare("triples", cpu, gpu, ct, moved, "T", 2)
    assert rc == 0 and "1 differ (25.00%)" in out and "(1 of 2 queries)" in out, out
    rc, out = compare("triples", cpu, gpu, ct, broken, "T", 2)
    assert rc == 1 and "1 differ with the CPU's candidates" in out and "queries [0]" in out, out


def test_losses(tmp_path):
    def log(path, losses):
        with open(path, "w") as f:
            f.write("colbert: not json\n")
            for i, l in enumerate(losses):
                f.write(json.dumps({"step": i + 1, "epoch": 0, "loss": l}) + "\n")
        return path
    a = log(tmp_path / "a.jsonl", [2.0, 1.5, 1.2])
    rc, out = compare("losses", a, log(tmp_path / "b.jsonl", [2.0, 1.5001, 1.2]), "X", 1e-3)
    assert rc == 0 and out.startswith("PASS X: 3 steps"), out
    rc, out = compare("losses", a, log(tmp_path / "c.jsonl", [2.0, 1.6, 1.2]), "X", 1e-3)
    assert rc == 1 and "at step 2" in out, out
    rc, out = compare("losses", a, log(tmp_path / "d.jsonl", [2.0, 1.5]), "X", 1e-3)
    assert rc == 1, out


def test_run_files(tmp_path):
    def run(path, rows):
        with open(path, "w") as f:
            for q, docs in rows.items():
                for r, (d, s) in enumerate(docs):
                    f.write(f"{q} Q0 {d} {r + 1} {s} colbert\n")
        return path
    cpu = run(tmp_path / "c.run", {"q1": [("a", 3.0), ("b", 2.0), ("c", 2.0000001), ("d", 1.0)]})
    tied = run(tmp_path / "t.run", {"q1": [("a", 3.0), ("c", 2.0), ("b", 2.0), ("d", 1.0)]})
    wrong = run(tmp_path / "w.run", {"q1": [("a", 3.0), ("d", 2.0), ("b", 2.0), ("c", 1.0)]})
    rc, out = compare("run", cpu, tied, "R")
    assert rc == 0 and "2 swaps" in out, out
    rc, out = compare("run", cpu, wrong, "R")
    assert rc == 1, out


def test_npy(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((20, 8)).astype(np.float32)
    np.save(tmp_path / "ref.npy", ref)
    np.save(tmp_path / "close.npy", ref + 1e-6)
    np.save(tmp_path / "far.npy", ref + 0.3 * rng.standard_normal((20, 8)).astype(np.float32))
    rc, out = compare("npy", tmp_path / "ref.npy", "ref", tmp_path / "close.npy", "A", 0.99999)
    assert rc == 0 and out.startswith("PASS A: 20 embeddings"), out
    rc, out = compare("npy", tmp_path / "ref.npy", "ref", tmp_path / "close.npy", "A", 0.99999,
                      tmp_path / "far.npy", "B", 0.99999, tmp_path / "missing.npy", "C", 0.9)
    assert rc == 1 and "FAIL B" in out and "FAIL C" in out, out


def test_cuda_run_sh_order(tmp_path):
    """op tests first, the whole-model test last; NAMEs select"""
    build = tmp_path / "build"
    (build / "tests-cuda").mkdir(parents=True)
    log = tmp_path / "order.txt"
    for name, rc in [("test_cuda_model", 0), ("test_cuda_ops", 0), ("test_cuda_attn", 1)]:
        p = build / "tests-cuda" / name
        p.write_text(f"#!/bin/sh\necho {name} >> '{log}'\necho core $(ulimit -c) >> '{tmp_path}/core.txt'\nexit {rc}\n")
        p.chmod(0o755)
    env = dict(os.environ, COLBERT_MODEL="/nonexistent", COLBERT_DATASETS="/nonexistent")
    # core files allowed where run.sh starts (as far as the hard limit lets): run.sh must turn them off
    r = subprocess.run(["bash", "-c", 'ulimit -c unlimited 2>/dev/null; exec bash "$0" "$1"',
                        os.path.join(ROOT, "tests", "cuda", "run.sh"), str(build)], capture_output=True,
                       text=True, env=env)
    assert log.read_text().split() == ["test_cuda_attn", "test_cuda_ops", "test_cuda_model"], r.stdout
    assert r.returncode == 1 and "2 passed, 1 failed" in r.stdout and "failed: test_cuda_attn" in r.stdout, r.stdout
    assert set((tmp_path / "core.txt").read_text().split("\n")[:-1]) == {"core 0"}   # no core files
    log.unlink()
    r = subprocess.run(["bash", os.path.join(ROOT, "tests", "cuda", "run.sh"), str(build), "test_cuda_model",
                        "test_cuda_ops"], capture_output=True, text=True, env=env)
    assert log.read_text().split() == ["test_cuda_ops", "test_cuda_model"], r.stdout
    assert r.returncode == 0 and "2 passed, 0 failed" in r.stdout, r.stdout


BUNDLE = os.path.join(ROOT, "gpu", "bundle.tar.xz")


@pytest.mark.skipif(not os.path.exists(BUNDLE), reason="no gpu/bundle.tar.xz (make gpu-bundle)")
def test_gpu_check_dry_run(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), W=str(tmp_path / "w"), DEADLINE="400")
    r = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_check.sh"), "--dry-run"], capture_output=True,
                       text=True, env=env, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    summary = (tmp_path / "out" / "summary.txt").read_text()
    for what in ["encode cuda fp32", "eval run file", "mining lists, cuda fp32", "mining triples, cuda fp32",
                 "training losses"]:
        assert f"PASS {what}" in summary, summary
    assert "FAIL" not in summary and out.rstrip().endswith("0 failed, 0 skipped"), out[-2000:]
    assert sorted(os.listdir(tmp_path / "out")) == ["compare.txt", "log.txt", "summary.txt"]
