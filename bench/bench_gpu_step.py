"""bench_gpu_step.py: ColBERT training-step throughput on one GPU, colbert.c
against PyTorch on the same GPU in the same run (issue 13's benchmark; not a
test).

Both sides: nway 2, query_maxlen 32, doc_maxlen 256, in-batch negatives,
dropout on, AdamW, clip 2.0, real NFCorpus queries and documents, bsize 32
and 128, all-MiniLM-L6-v2 (real weights) and a BERT-base shape (random):
  - colbert.c: build-gpu/bench/bench_step --device cuda --precision bf16;
  - PyTorch eager: colbert-ai's formulas (as bench/bench_step.py) on
    transformers' BertModel under torch.autocast(bfloat16), CUDA;
  - the same with torch.compile on the encoder;
  - PyLate's trainer: not run here (PyLate is not installed on the GPU
    machine; its wheels would have to be carried).
Prints triplets/s, peak GPU memory and MFU (model FLOPs per step over the
step time, against the 989 TFLOP/s dense bf16 peak of an H100/H200 SXM).
usage: bench_gpu_step.py --bench-step BIN --model MINILM_DIR --datasets DIR [--steps 10] [--bsizes 32,128]
                         [--no-compile] [--models minilm,base]
Run on the GPU machine by bench/bench_gpu_step.sh.
"""
import argparse
import json
import os
import string
import subprocess
import sys
import threading
import time

PEAK_BF16 = 989e12
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def texts(datasets):
    docs, qs = [], []
    with open(os.path.join(datasets, "nfcorpus", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append(" ".join((d.get("title", "") + " " + d["text"]).split()))
    with open(os.path.join(datasets, "nfcorpus", "queries.jsonl"), encoding="utf-8") as f:
        for line in f:
            qs.append(" ".join(json.loads(line)["text"].split()))
    return docs[:2560], qs[:1280]


def step_flops(tokens, H, I, L):
    """forward + backward (3x the forward's 2 FLOPs per multiply-add) of the dense layers"""
    return 6.0 * tokens * L * (4 * H * H + 2 * H * I)


def torch_side(model_dir, dp, qp, base, steps, bsize, compiled):
    import torch
    import torch.nn.functional as F
    from transformers import BertConfig, BertModel, BertTokenizerFast
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = "cuda"
    torch.manual_seed(0)
    tok = BertTokenizerFast.from_pretrained(model_dir)
    if base:
        cfg = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
        bert = BertModel(cfg, add_pooling_layer=False)
    else:
        bert = BertModel.from_pretrained(model_dir, add_pooling_layer=False)
    bert = bert.to(dev).train()
    H, I, L = bert.config.hidden_size, bert.config.intermediate_size, bert.config.num_hidden_layers
    linear = torch.nn.Linear(H, 128, bias=False).to(dev)
    params = list(bert.parameters()) + list(linear.parameters())
    opt = torch.optim.AdamW(params, lr=5e-6, weight_decay=0.01)
    enc = torch.compile(bert) if compiled else bert
    skip = torch.tensor(sorted({tok.encode(s, add_special_tokens=False)[0] for s in string.punctuation}), device=dev)
    docs = open(dp, encoding="utf-8").read().splitlines()
    qs = open(qp, encoding="utf-8").read().splitlines()
    qmark, dmark = tok.convert_tokens_to_ids("[unused0]"), tok.convert_tokens_to_ids("[unused1]")
    B, N = bsize, 2 * bsize

    def batch(it):
        q = [qs[(it * B + i) % len(qs)] for i in range(B)]
        d = [docs[(it * N + i) % len(docs)] for i in range(N)]
        qo = tok(q, padding="max_length", truncation=True, max_length=31, return_tensors="pt")
        qi = torch.cat([qo.input_ids[:, :1], torch.full((B, 1), qmark), qo.input_ids[:, 1:]], 1)
        qm = torch.cat([qo.attention_mask[:, :1], torch.ones(B, 1, dtype=torch.long), qo.attention_mask[:, 1:]], 1)
        qi[qi == tok.pad_token_id] = tok.mask_token_id
        do = tok(d, padding="longest", truncation=True, max_length=255, return_tensors="pt")
        di = torch.cat([do.input_ids[:, :1], torch.full((N, 1), dmark), do.input_ids[:, 1:]], 1)
        dm = torch.cat([do.attention_mask[:, :1], torch.ones(N, 1, dtype=torch.long), do.attention_mask[:, 1:]], 1)
        ntok = int(qi.numel() + dm.sum())
        return qi.to(dev), qm.to(dev), di.to(dev), dm.to(dev), ntok

    times, toks = [], 0
    cols = torch.tensor([list(range(0, 2 * b + 1)) + list(range(2 * b + 2, N)) for b in range(B)], device=dev)
    warm = 3 if compiled else 1
    for it in range(steps + warm):
        qi, qm, di, dm, ntok = batch(it)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            Q = F.normalize(linear(enc(input_ids=qi, attention_mask=qm).last_hidden_state).float(), dim=2)
            D = linear(enc(input_ids=di, attention_mask=dm).last_hidden_state).float()
        keep = (~torch.isin(di, skip)) & (dm > 0)
        D = F.normalize(D * keep.unsqueeze(2), dim=2)
        sc = torch.einsum("qid,njd->qnij", Q, D).masked_fill(~keep[None, :, None, :], -9999)
        allsc = sc.max(3).values.sum(2)
        own = allsc.view(B, B, 2)[torch.arange(B), torch.arange(B)]
        loss = F.cross_entropy(own, torch.zeros(B, dtype=torch.long, device=dev))
        loss = loss + F.cross_entropy(torch.gather(allsc, 1, cols), torch.arange(B, device=dev) * 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        opt.step()
        opt.zero_grad()
        torch.cuda.synchronize()
        if it >= warm:
            times.append(time.perf_counter() - t0)
            toks += ntok
        if it == warm - 1:
            torch.cuda.reset_peak_memory_stats()
    step = sum(times) / len(times)
    print(json.dumps({"step_s": step, "triplets_per_s": B / step, "peak_gpu_bytes": torch.cuda.max_memory_allocated(),
                      "flops_per_step": step_flops(toks / len(times), H, I, L)}))


def run_child(args, poll=False):
    peak = [0]
    base = [0]
    stop = [False]

    def read():
        try:
            return int(subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                      capture_output=True, text=True, timeout=10).stdout.split()[0])
        except Exception:
            return 0

    def loop():
        while not stop[0]:
            peak[0] = max(peak[0], read())
            time.sleep(0.05)

    if poll:
        base[0] = peak[0] = read()
        t = threading.Thread(target=loop, daemon=True)
        t.start()
    r = subprocess.run(args, capture_output=True, text=True)
    if poll:
        stop[0] = True
        t.join()
    if r.returncode:
        print(f"    failed: {' '.join(args)}\n{r.stderr[-2000:]}")
        return None
    out = json.loads([x for x in r.stdout.splitlines() if x.startswith("{")][-1])
    if poll:
        out["peak_gpu_bytes"] = (peak[0] - base[0]) * 2**20
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench-step")
    ap.add_argument("--model")
    ap.add_argument("--datasets")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default="/tmp/colbert-bench-step")
    ap.add_argument("--torch-child", nargs=6)
    ap.add_argument("--bsizes", default="32,128", help="comma-separated batch sizes")
    ap.add_argument("--no-compile", action="store_true", help="PyTorch eager only (torch.compile takes minutes)")
    ap.add_argument("--models", default="minilm,base", help="minilm (all-MiniLM-L6-v2), base (BERT-base shape)")
    args = ap.parse_args()
    if args.torch_child:
        model_dir, dp, qp, base, bsize, compiled = args.torch_child
        return torch_side(model_dir, dp, qp, base == "1", args.steps, int(bsize), compiled == "1")
    os.makedirs(args.out, exist_ok=True)
    docs, qs = texts(args.datasets)
    dp, qp = os.path.join(args.out, "docs.txt"), os.path.join(args.out, "queries.txt")
    open(dp, "w", encoding="utf-8").write("\n".join(docs) + "\n")
    open(qp, "w", encoding="utf-8").write("\n".join(qs) + "\n")
    print(f"training step on one GPU: nway 2, query_maxlen 32, doc_maxlen 256, in-batch negatives, dropout on, "
          f"{args.steps} timed steps after warm-up; MFU against {PEAK_BF16 / 1e12:.0f} TFLOP/s dense bf16")
    print("PyLate's trainer: not run (not installed on the GPU machine)")
    res = []
    models = {"minilm": ("all-MiniLM-L6-v2", 0, 384, 1536, 6), "base": ("BERT-base shape (random)", 1, 768, 3072, 12)}
    for name, base, H, I, L in [models[m] for m in args.models.split(",")]:
        for bsize in [int(b) for b in args.bsizes.split(",")]:
            print(f"  {name}, bsize {bsize}:")
            ours = run_child([args.bench_step, args.model, dp, qp, "--steps", str(args.steps), "--bsize", str(bsize),
                              "--device", "cuda", "--precision", "bf16"] + (["--base"] if base else []), poll=True)
            row = {"model": name, "bsize": bsize, "colbert": ours}
            if ours:
                ours["flops_per_step"] = ours["encoder_gflops"] * 1e9 * ours["step_s"]
                print(f"    colbert.c          {ours['triplets_per_s']:8.1f} triplets/s  {ours['step_s'] * 1e3:7.1f} ms/step  "
                      f"peak {ours['peak_gpu_bytes'] / 2**30:5.2f} GiB  MFU {100 * ours['encoder_gflops'] * 1e9 / PEAK_BF16:5.1f}%  "
                      f"(attention {ours['attention_s'] * 1e3:.1f} ms)")
            for label, comp in [("PyTorch eager", 0)] + ([] if args.no_compile else [("torch.compile", 1)]):
                th = run_child([sys.executable, __file__, "--steps", str(args.steps), "--torch-child", args.model, dp, qp,
                                str(base), str(bsize), str(comp)])
                row[label] = th
                if th:
                    mfu = th["flops_per_step"] / th["step_s"] / PEAK_BF16
                    ratio = f"colbert.c {ours['triplets_per_s'] / th['triplets_per_s']:.2f}x" if ours else ""
                    print(f"    {label:<18} {th['triplets_per_s']:8.1f} triplets/s  {th['step_s'] * 1e3:7.1f} ms/step  "
                          f"peak {th['peak_gpu_bytes'] / 2**30:5.2f} GiB  MFU {100 * mfu:5.1f}%  {ratio}")
            res.append(row)
            with open(os.path.join(args.out, "bench_gpu_step.json"), "w") as f:   # after each row
                json.dump(res, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
