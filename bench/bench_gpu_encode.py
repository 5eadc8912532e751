"""bench_gpu_encode.py: encoding speed on one GPU, colbert.c against
sentence-transformers on PyTorch CUDA, same GPU, same run (issue 12's
benchmark; not a test).

Encodes N (default 20,000) NFCorpus documents (title + text; the corpus
repeated) with all-MiniLM-L6-v2 and with a BERT-base-shaped model (12
layers, 768 hidden, 3072 intermediate; random weights, MiniLM's
tokenizer), max_seq_length 256:
  - colbert.c: `colbert encode --device cuda --precision bf16`, timed as a
    whole process (model load and tokenization included; a warm-up run
    first), peak GPU memory polled with nvidia-smi;
  - sentence-transformers under torch.autocast(bfloat16), its default batch
    size (32) and its own length-sorted batches, peak memory from
    torch.cuda.max_memory_allocated.
Prints texts/s, the ratio, peak memory, and the encoder's achieved bf16
FLOP rate over the whole run against the dense bf16 peak (989 TFLOP/s by
the H100/H200 SXM datasheet; about 790 measured on this machine kind), a
lower bound for the matmuls' own share.
usage: bench_gpu_encode.py --colbert BIN --model MINILM_DIR --datasets DIR [--n 20000] [--out DIR] [--minilm-only]
Run on the GPU machine by bench/bench_gpu_encode.sh.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

PEAK_BF16 = 989e12


def texts_of(datasets, n):
    docs = []
    with open(os.path.join(datasets, "nfcorpus", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append(" ".join((d.get("title", "") + " " + d["text"]).split()))
    return [docs[i % len(docs)] for i in range(n)]


def make_base(minilm, path):
    """A BERT-base-shaped sentence-transformers directory, random weights."""
    import torch
    from transformers import BertConfig, BertModel
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return path
    os.makedirs(path, exist_ok=True)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                     intermediate_size=3072, max_position_embeddings=512)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(path, safe_serialization=True)
    for f in ["tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "modules.json",
              "sentence_bert_config.json", "config_sentence_transformers.json"]:
        if os.path.exists(os.path.join(minilm, f)):
            shutil.copy(os.path.join(minilm, f), path)
    os.makedirs(os.path.join(path, "1_Pooling"), exist_ok=True)
    with open(os.path.join(minilm, "1_Pooling", "config.json")) as f:
        pool = json.load(f)
    pool["word_embedding_dimension"] = 768
    with open(os.path.join(path, "1_Pooling", "config.json"), "w") as f:
        json.dump(pool, f)
    return path


class GpuMemPoller:
    """Max of nvidia-smi's memory.used (MiB) while running, minus the start."""

    def __init__(self):
        self.base = self.read()
        self.peak = self.base
        self.stop = False
        self.t = threading.Thread(target=self.loop, daemon=True)

    @staticmethod
    def read():
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=10).stdout
            return int(out.split()[0])
        except Exception:
            return 0

    def loop(self):
        while not self.stop:
            self.peak = max(self.peak, self.read())
            time.sleep(0.05)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *a):
        self.stop = True
        self.t.join()


def encoder_flops(tokens_per_text, H, I, L):
    """2 FLOPs per multiply-add: the dense layers and attention's two products."""
    dense = 2 * L * (4 * H * H + 2 * H * I)
    return sum(n * dense + L * 4 * n * n * H for n in tokens_per_text)


def bench(name, model, texts, colbert, out_dir, H, I, L):
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    lens = [len(x) for x in tok(texts, truncation=True, max_length=256)["input_ids"]]
    flops = encoder_flops(lens, H, I, L)
    inp, out = os.path.join(out_dir, "texts.txt"), os.path.join(out_dir, "emb.npy")
    with open(inp, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    cmd = [colbert, "encode", "--model", model, "--input", inp, "--output", out, "--device", "cuda",
           "--precision", "bf16", "--quiet"]
    subprocess.run(cmd, check=True)          # warm-up: page cache, driver
    with GpuMemPoller() as mem:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        t_c = time.perf_counter() - t0
    ours = np.load(out)
    mem_c = (mem.peak - mem.base) * 2**20

    st = SentenceTransformer(model, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        st.encode(texts[:256])                # warm-up
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        ref = st.encode(texts, convert_to_numpy=True)
        torch.cuda.synchronize()
        t_st = time.perf_counter() - t0
    mem_st = torch.cuda.max_memory_allocated()
    cos = (ours * ref).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1) + 1e-30)
    r = {"model": name, "texts": len(texts), "tokens": int(sum(lens)),
         "colbert_texts_per_s": len(texts) / t_c, "st_texts_per_s": len(texts) / t_st,
         "ratio": t_st / t_c, "colbert_peak_gpu_bytes": mem_c, "st_peak_gpu_bytes": mem_st,
         "colbert_tflops": flops / t_c / 1e12, "st_tflops": flops / t_st / 1e12,
         "colbert_fraction_of_peak": flops / t_c / PEAK_BF16, "min_cosine_vs_st": float(cos.min())}
    print(f"  {name}: {len(texts)} texts, {sum(lens)} tokens")
    print(f"    sentence-transformers (bf16 autocast, batch 32, length-sorted): {r['st_texts_per_s']:9.0f} texts/s, "
          f"peak {mem_st / 2**30:.2f} GiB allocated, {r['st_tflops']:.1f} TFLOP/s")
    print(f"    colbert.c (--device cuda --precision bf16, whole process):    {r['colbert_texts_per_s']:9.0f} texts/s, "
          f"peak {mem_c / 2**30:.2f} GiB used, {r['colbert_tflops']:.1f} TFLOP/s "
          f"({100 * r['colbert_fraction_of_peak']:.1f}% of the 989 TFLOP/s dense bf16 peak)")
    print(f"    ratio {r['ratio']:.2f}x; min cosine between the two {r['min_cosine_vs_st']:.5f}")
    del st
    torch.cuda.empty_cache()
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--colbert", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--datasets", required=True)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--out", default="/tmp/colbert-bench-encode")
    ap.add_argument("--minilm-only", action="store_true", help="skip the BERT-base shape")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    texts = texts_of(args.datasets, args.n)
    print(f"encode benchmark: {args.n} NFCorpus documents, max_seq_length 256, one GPU")
    res = []

    def save():   # after each model: a run cut short keeps what it measured
        with open(os.path.join(args.out, "bench_gpu_encode.json"), "w") as f:
            json.dump(res, f, indent=1)

    res.append(bench("all-MiniLM-L6-v2", args.model, texts, args.colbert, args.out, 384, 1536, 6))
    save()
    if not args.minilm_only:
        base = make_base(args.model, os.path.join(args.out, "bert-base-random"))
        res.append(bench("BERT-base shape (random weights)", base, texts, args.colbert, args.out, 768, 3072, 12))
        save()


if __name__ == "__main__":
    sys.exit(main())
