"""gpu_compare.py: the comparisons of scripts/gpu_check.sh that need Python
(the GPU machine's python3 with torch and sentence-transformers).

  gpu_compare.py st MODEL TEXTS OURS.npy LABEL MIN_COSINE [OURS.npy LABEL MIN_COSINE ...]
      sentence embeddings of every line of TEXTS by sentence-transformers
      (PyTorch CUDA, fp32: no TF32, no autocast) against ours
  gpu_compare.py run CPU.run GPU.run LABEL
      a TREC run against the CPU's: the same documents in the same order,
      a swap allowed only between documents whose CPU scores tie within
      1e-5 relative
  gpu_compare.py ndcg CPU.json GPU.json LABEL MAX_DIFF
      nDCG@10 of `colbert eval`'s JSON lines
Each prints "PASS <label>: ..." or "FAIL <label>: ..." lines; exit 1 on a FAIL.
"""
import json
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


if __name__ == "__main__":
    ok = {"st": cmd_st, "run": cmd_run, "ndcg": cmd_ndcg}[sys.argv[1]](sys.argv[2:])
    sys.exit(0 if ok else 1)
