"""gpu_compare.py: the comparisons of scripts/gpu_check.sh that need Python
(the GPU machine's python3 with torch and sentence-transformers).

  gpu_compare.py st MODEL TEXTS OURS.npy LABEL MIN_COSINE [OURS.npy LABEL MIN_COSINE ...]
      sentence embeddings of every line of TEXTS by sentence-transformers
      (PyTorch CUDA, fp32: no TF32, no autocast) against ours
  gpu_compare.py npy REF.npy REF_LABEL OURS.npy LABEL MIN_COSINE [OURS.npy LABEL MIN_COSINE ...]
      the same against embeddings computed beforehand (the bundle's CPU
      references: sentence-transformers and colbert on the CPU)
  gpu_compare.py run CPU.run GPU.run LABEL
      a TREC run against the CPU's: the same documents in the same order,
      a swap allowed only between documents whose CPU scores tie within
      1e-5 relative
  gpu_compare.py ndcg CPU.json GPU.json LABEL MAX_DIFF
      nDCG@10 of `colbert eval`'s JSON lines
  gpu_compare.py lists CPU_DIR GPU_DIR LABEL TOL
      the miner's ranked lists (neighbors.npy, scores.npy of `colbert prepare
      --save-embeddings`): the same documents at every rank, a swap allowed
      only between documents whose scores tie within TOL (absolute, cosine);
      the last bits of an embedding swap neighbouring ranks, so byte-identical
      lists cannot be asked of two devices
  gpu_compare.py triples CPU_DIR GPU_DIR CPU.jsonl GPU.jsonl LABEL MIN_RANK
      the mined triples: a query whose candidates (ranks MIN_RANK on) are the
      CPU's, in the CPU's order, must have the CPU's triples exactly (its
      negatives are sampled from them with its own seeded stream); the
      triples of queries whose candidates differ by tied swaps are counted
      and reported as a figure (how much the ties move)
  gpu_compare.py losses CPU.jsonl GPU.jsonl LABEL REL_TOL
      the per-step losses of two `colbert train` logs (train.jsonl): the same
      steps, each loss within REL_TOL relative
Each prints "PASS <label>: ..." or "FAIL <label>: ..." lines; exit 1 on a FAIL.
"""
import collections
import json
import os
import sys

import numpy as np


def cosines(a, b):
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-300
    return num / den


def cmd_st(args):
    import torch
    from sentence_transformers import SentenceTransformer

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model, texts = args[0], args[1]
    with open(texts, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    st = SentenceTransformer(model, device="cuda").float()
    ref = st.encode(lines, batch_size=64, convert_to_numpy=True)
    ok = True
    rest = args[2:]
    for i in range(0, len(rest), 3):
        label, need = rest[i + 1], float(rest[i + 2])
        try:
            ours = np.load(rest[i])
        except OSError as e:
            print(f"FAIL {label}: {e}")
            ok = False
            continue
        c = cosines(ours, ref) if ours.shape == ref.shape else np.zeros(1)
        good = ours.shape == ref.shape and c.min() >= need
        ok &= good
        print(f"{'PASS' if good else 'FAIL'} {label}: sentence embeddings of {len(lines)} NFCorpus texts vs "
              f"sentence-transformers {st.device} fp32: cosine min {c.min():.7f} mean {c.mean():.7f} "
              f"(>= {need})")
    return ok


def cmd_npy(args):
    """npy REF.npy REF_LABEL OURS.npy LABEL MIN_COSINE [...]: as st, against
    embeddings computed beforehand (the bundle's CPU references)"""
    ref, ref_label = np.load(args[0]), args[1]
    ok = True
    rest = args[2:]
    for i in range(0, len(rest), 3):
        label, need = rest[i + 1], float(rest[i + 2])
        try:
            ours = np.load(rest[i])
        except (OSError, ValueError) as e:
            print(f"FAIL {label}: {e}")
            ok = False
            continue
        c = cosines(ours, ref) if ours.shape == ref.shape else np.zeros(1)
        good = ours.shape == ref.shape and c.min() >= need
        ok &= good
        print(f"{'PASS' if good else 'FAIL'} {label}: {ours.shape[0]} embeddings vs {ref_label}: cosine min "
              f"{c.min():.7f} mean {c.mean():.7f} (>= {need})")
    return ok


def read_run(path):
    runs = {}
    with open(path) as f:
        for line in f:
            q, _, d, r, s, _ = line.split()
            runs.setdefault(q, []).append((int(r), d, float(s)))
    return {q: [(d, s) for _, d, s in sorted(v)] for q, v in runs.items()}


def cmd_run(args):
    cpu, gpu, label = read_run(args[0]), read_run(args[1]), args[2]
    same = swaps = breaks = 0
    for q, lc in cpu.items():
        lg = gpu.get(q, [])
        score_c = dict(lc)
        for r, ((dc, sc), (dg, _)) in enumerate(zip(lc, lg)):
            if dc == dg:
                same += 1
            elif dg in score_c and abs(score_c[dg] - sc) <= 1e-5 * max(1.0, abs(sc)):
                swaps += 1
            else:
                breaks += 1
        if len(lg) != len(lc):
            breaks += abs(len(lg) - len(lc))
    ok = breaks == 0 and set(cpu) == set(gpu)
    print(f"{'PASS' if ok else 'FAIL'} {label}: {len(cpu)} queries, {same} ranks identical, {swaps} swaps of "
          f"tied documents, {breaks} other differences (want 0)")
    return ok


def cmd_ndcg(args):
    def ndcg(path):
        with open(path) as f:
            return json.loads([line for line in f if line.startswith("{")][-1])["ndcg@10"]

    a, b, label, mx = ndcg(args[0]), ndcg(args[1]), args[2], float(args[3])
    ok = abs(a - b) <= mx
    print(f"{'PASS' if ok else 'FAIL'} {label}: nDCG@10 {b:.4f} vs CPU {a:.4f}, diff {abs(a - b):.4f} (<= {mx})")
    return ok


def load_lists(d):
    return np.load(os.path.join(d, "neighbors.npy")), np.load(os.path.join(d, "scores.npy"))


def compare_lists(ci, cs, gi, gs, tol):
    """(same, swaps, breaks, max |score diff| of equal documents, queries whose lists differ)"""
    same = swaps = breaks = 0
    diff = 0.0
    differ = set()
    for q in range(ci.shape[0]):
        score_c = dict(zip(ci[q].tolist(), cs[q].tolist()))
        for r in range(ci.shape[1]):
            dc, dg = int(ci[q, r]), int(gi[q, r])
            if dc == dg:
                same += 1
                diff = max(diff, abs(float(gs[q, r]) - float(cs[q, r])))
                continue
            differ.add(q)
            # the GPU's document at rank r: its CPU score if the CPU ranked it,
            # else (it is past the CPU's last rank) the GPU's own
            ref = score_c.get(dg, float(gs[q, r]))
            if abs(ref - float(cs[q, r])) <= tol:
                swaps += 1
            else:
                breaks += 1
    return same, swaps, breaks, diff, differ


def cmd_lists(args):
    (ci, cs), (gi, gs) = load_lists(args[0]), load_lists(args[1])
    label, tol = args[2], float(args[3])
    if ci.shape != gi.shape:
        print(f"FAIL {label}: ranked lists of shape {gi.shape}, the CPU's {ci.shape}")
        return False
    same, swaps, breaks, diff, differ = compare_lists(ci, cs, gi, gs, tol)
    ok = breaks == 0
    print(f"{'PASS' if ok else 'FAIL'} {label}: {ci.shape[0]} queries x {ci.shape[1]} ranks: {same} identical, "
          f"{swaps} swaps of documents tied within {tol:g}, {breaks} other differences (want 0); "
          f"{len(differ)} queries' lists differ; max |score diff| {diff:.2e}")
    return ok


def read_triples(path):
    by_q = collections.defaultdict(collections.Counter)
    n = 0
    with open(path) as f:
        for line in f:
            t = json.loads(line)
            by_q[t[0]][tuple(t)] += 1
            n += 1
    return by_q, n


def cmd_triples(args):
    (ci, _), (gi, _) = load_lists(args[0]), load_lists(args[1])
    ct, n = read_triples(args[2])
    gt, ng = read_triples(args[3])
    label, k = args[4], int(args[5])
    if ci.shape != gi.shape:
        print(f"FAIL {label}: ranked lists of shape {gi.shape}, the CPU's {ci.shape}")
        return False
    same_cands = {q for q in range(ci.shape[0]) if np.array_equal(ci[q, k:], gi[q, k:])}
    moved = bad = 0
    bad_q = []
    for q in set(ct) | set(gt):
        a, b = ct.get(q, collections.Counter()), gt.get(q, collections.Counter())
        if a == b:
            continue
        d = sum((a - b).values())   # the CPU's triples the GPU lacks
        if q in same_cands:
            bad += d
            bad_q.append(q)
        else:
            moved += d
    ok = bad == 0 and n == ng
    print(f"{'PASS' if ok else 'FAIL'} {label}: {ng} triples (CPU {n}); {moved} differ ({100.0 * moved / max(n, 1):.2f}%), "
          f"all of queries whose candidates (ranks {k}+) moved by tied swaps ({ci.shape[0] - len(same_cands)} of "
          f"{ci.shape[0]} queries); {bad} differ with the CPU's candidates (want 0)"
          + (f": queries {sorted(bad_q)[:10]}" if bad_q else ""))
    return ok


def read_losses(path):
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("{"):
                j = json.loads(line)
                if "loss" in j and "step" in j:
                    out[j["step"]] = j["loss"]
    return out


def cmd_losses(args):
    a, b, label, tol = read_losses(args[0]), read_losses(args[1]), args[2], float(args[3])
    steps = sorted(a)
    if not steps or sorted(b) != steps:
        print(f"FAIL {label}: steps {sorted(b)[:3]}..{len(b)} vs the CPU's {steps[:3]}..{len(a)}")
        return False
    rel = [abs(b[t] - a[t]) / max(abs(a[t]), 1e-12) for t in steps]
    worst = int(np.argmax(rel))
    ok = max(rel) <= tol
    print(f"{'PASS' if ok else 'FAIL'} {label}: {len(steps)} steps, loss {b[steps[0]]:.6f} .. {b[steps[-1]]:.6f} "
          f"(CPU {a[steps[0]]:.6f} .. {a[steps[-1]]:.6f}); worst rel diff {rel[worst]:.2e} at step {steps[worst]} "
          f"(<= {tol:g}); first step {rel[0]:.2e}")
    return ok


if __name__ == "__main__":
    cmds = {"st": cmd_st, "npy": cmd_npy, "run": cmd_run, "ndcg": cmd_ndcg, "lists": cmd_lists, "triples": cmd_triples,
            "losses": cmd_losses}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    ok = cmds[sys.argv[1]](sys.argv[2:])
    sys.exit(0 if ok else 1)
