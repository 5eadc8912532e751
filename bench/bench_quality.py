"""bench_quality.py: what training buys, colbert.c versus PyLate, on NFCorpus.

Both sides train a new ColBERT from the same base encoder (all-MiniLM-L6-v2),
on the same triples (the first STEPS x BATCH lines of the
triples.train.colbert.jsonl that `colbert prepare` wrote, with mined hard
negatives), with the same batch size, learning rate, warmup, linear decay,
number of steps, query_maxlen 32, doc_maxlen and projection size 128, and the
same markers ([unused0] / [unused1], as colbert-ai). Both are then scored by
the same evaluator on NFCorpus test: `colbert eval` ranks with our model;
PyLate's model encodes the corpus and the queries itself, ranks every document
by exact MaxSim, writes a TREC run, and `colbert eval --score-run` scores it.

  python bench/bench_quality.py compare COLBERT_BIN PEERS_PYTHON MODEL DATASET DATA WORK
  python bench/bench_quality.py pylate MODEL DATASET DATA WORK SEED   (child, in the peers venv)
  python bench/bench_quality.py summary WORK/results.jsonl          (mean and spread again)

Settings come from the environment (bench/bench_quality.sh sets them):
Q_STEPS, Q_BATCH, Q_LR, Q_WARMUP, Q_DOC_MAXLEN, Q_THREADS, Q_SPLIT, Q_LOSSES
(default "colbert contrastive": colbert.c trains once per `--loss`) and Q_SEEDS
(default "12345"; "1 2 3" trains every system once per seed). The dense start
(`colbert eval --dense`) and the untrained ColBERT are scored once. Each
model's scores are appended to WORK/results.jsonl as soon as it is scored;
the summary gives each system's mean and spread over its seeds.

Differences that remain, named: colbert.c trains in file order, PyLate's
trainer shuffles the same triples (its default sampler); colbert.c's default
loss is colbert-ai's (n-way cross-entropy plus the in-batch loss), PyLate's
Contrastive loss is one cross-entropy over every document of the batch
(colbert.c's `--loss contrastive`);
PyLate's optimiser is Hugging Face's AdamW, which skips weight decay on biases
and LayerNorms. Dropout is on for both.
"""
import json
import os
import statistics
import subprocess
import sys
import time


def env(name, default):
    return type(default)(os.environ.get(name, default))


STEPS = env("Q_STEPS", 300)
BATCH = env("Q_BATCH", 32)
LR = env("Q_LR", 3e-5)
WARMUP = env("Q_WARMUP", STEPS // 10)
DOC_MAXLEN = env("Q_DOC_MAXLEN", 128)
THREADS = env("Q_THREADS", os.cpu_count())
SPLIT = env("Q_SPLIT", "test")
LOSSES = env("Q_LOSSES", "colbert contrastive").split()
SEEDS = [int(x) for x in env("Q_SEEDS", "12345").split()]
KEYS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")


def read_beir(dataset, split):
    """Corpus texts ("title text", as colbert eval joins them) and the split's
    queries that have qrels, in colbert eval's order (first appearance)."""
    docs = {}
    for line in open(os.path.join(dataset, "corpus.jsonl"), encoding="utf-8"):
        d = json.loads(line)
        title, text = (d.get("title") or "").strip(), d.get("text", "")
        docs[d["_id"]] = text if not title else (title if not text.strip() else d["title"] + " " + text)
    queries = {}
    for line in open(os.path.join(dataset, "queries.jsonl"), encoding="utf-8"):
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    qids = []
    seen = set()
    with open(os.path.join(dataset, "qrels", split + ".tsv"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            parts = line.rstrip("\n").split("\t")
            if i == 0 and not parts[-1].lstrip("-").isdigit():
                continue
            if parts[0] not in seen:
                seen.add(parts[0])
                qids.append(parts[0])
    return docs, [(q, queries[q]) for q in qids]


def read_triples(data, n):
    """The first n triples as text: (query, positive, negative)."""
    def tsv(path):
        out = {}
        for line in open(path, encoding="utf-8"):
            k, v = line.rstrip("\n").split("\t", 1)
            out[k] = v
        return out
    queries = tsv(os.path.join(data, "queries.train.colbert.tsv"))
    corpus = tsv(os.path.join(data, "corpus.train.colbert.tsv"))
    rows = []
    for line in open(os.path.join(data, "triples.train.colbert.jsonl"), encoding="utf-8"):
        t = json.loads(line)
        rows.append({"query": queries[str(t[0])], "positive": corpus[str(t[1])], "negative": corpus[str(t[2])]})
        if len(rows) == n:
            break
    if len(rows) < n:
        sys.exit(f"bench_quality: {data}: {len(rows)} triples, fewer than {n} = STEPS x BATCH")
    return rows


def pylate(model_dir, dataset, data, work, seed):
    """Child process in the peers venv: train with PyLate (seed for its
    projection, dropout and sampler), rank, write pylate-SEED.run."""
    import torch
    torch.set_num_threads(THREADS)
    from datasets import Dataset
    from pylate import losses, models, utils
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    torch.manual_seed(seed)
    rows = read_triples(data, STEPS * BATCH)
    model = models.ColBERT(model_name_or_path=model_dir, device="cpu", embedding_size=128,
                           query_prefix="[unused0]", document_prefix="[unused1]",
                           query_length=32, document_length=DOC_MAXLEN)
    args = SentenceTransformerTrainingArguments(
        output_dir=os.path.join(work, f"pylate-run-{seed}"), max_steps=STEPS, per_device_train_batch_size=BATCH,
        learning_rate=LR, warmup_steps=WARMUP, lr_scheduler_type="linear", weight_decay=0.01,
        max_grad_norm=2.0, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, seed=seed, data_seed=seed,
        save_strategy="no", logging_steps=max(1, STEPS // 10), report_to="none", use_cpu=True,
        dataloader_drop_last=True, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows),
                                         loss=losses.Contrastive(model=model),
                                         data_collator=utils.ColBERTCollator(model.tokenize))
    t0 = time.perf_counter()
    trainer.train()
    t_train = time.perf_counter() - t0
    model.save(os.path.join(work, f"pylate-model-{seed}"))

    model.eval()
    t0 = time.perf_counter()
    docs, queries = read_beir(dataset, SPLIT)
    ids = list(docs)
    with torch.inference_mode():
        dv = model.encode([docs[i] for i in ids], is_query=False, batch_size=32, convert_to_numpy=False,
                          show_progress_bar=False)
        qv = model.encode([q for _, q in queries], is_query=True, batch_size=32, convert_to_numpy=False,
                          show_progress_bar=False)
        lens = torch.tensor([len(v) for v in dv])
        flat = torch.cat([torch.as_tensor(v) for v in dv]).float()          # [tokens, 128]
        seg = torch.repeat_interleave(torch.arange(len(dv)), lens)
        with open(os.path.join(work, f"pylate-{seed}.run"), "w") as out:
            for (qid, _), q in zip(queries, qv):
                sim = torch.as_tensor(q).float() @ flat.T                     # [32, tokens]
                best = torch.full((sim.shape[0], len(dv)), -float("inf"))
                best.scatter_reduce_(1, seg.expand(sim.shape[0], -1), sim, reduce="amax")
                score = best.sum(0)
                top = torch.topk(score, min(100, len(ids)))
                for r, (s, d) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
                    out.write(f"{qid} Q0 {ids[d]} {r + 1} {s:.6f} pylate\n")
    t_eval = time.perf_counter() - t0
    print(json.dumps({"train_s": t_train, "eval_s": t_eval, "loss": trainer.state.log_history[-1].get("train_loss")}))


def run(cmd, **kw):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, text=True, stdout=subprocess.PIPE, **kw)
    if r.returncode != 0:
        sys.exit(f"bench_quality: {' '.join(cmd[:3])} ... failed (exit {r.returncode})")
    return r.stdout, time.perf_counter() - t0


def record(results, row):
    """Append one model's scores to results.jsonl at once, so that a run cut
    short keeps every model it finished (`summary` prints them)."""
    with open(results, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{row['system']:>22} seed {row['seed']}: nDCG@10 {row['ndcg@10']:.4f}"
          + (f", trained in {row['train_s']:.0f} s" if row.get("train_s") else ""), flush=True)


def compare(binary, peers_py, model_dir, dataset, data, work):
    th = ["--threads", str(THREADS)]
    results = os.path.join(work, "results.jsonl")
    print(f"quality: {STEPS} steps x {BATCH} triples, lr {LR}, warmup {WARMUP}, doc_maxlen {DOC_MAXLEN}, "
          f"{THREADS} threads, seeds {' '.join(map(str, SEEDS))}; eval on {os.path.basename(dataset)} {SPLIT}; "
          f"results in {results}", flush=True)
    settings = {"steps": STEPS, "batch": BATCH, "lr": LR, "warmup": WARMUP, "doc_maxlen": DOC_MAXLEN}

    for seed in SEEDS:
        out, _ = run([peers_py, os.path.abspath(__file__), "pylate", model_dir, dataset, data, work, str(seed)])
        py = json.loads(out.strip().splitlines()[-1])
        peer, _ = run([binary, "eval", "--score-run", os.path.join(work, f"pylate-{seed}.run"), "--dataset",
                       dataset, "--split", SPLIT, "--quiet"])
        record(results, {"system": "PyLate", "seed": seed, "train_s": py["train_s"], "eval_s": py["eval_s"],
                         **settings, **json.loads(peer)})
        for loss in LOSSES:
            runs = os.path.join(work, f"colbert-runs-{loss}-{seed}")
            out, t_train = run([binary, "train", "--model-name", "quality", "--pretrained", model_dir,
                                "--data", data, "--output-dir", runs, "--batch-size", str(BATCH),
                                "--maxsteps", str(STEPS), "--lr", str(LR), "--warmup", str(WARMUP),
                                "--doc-maxlen", str(DOC_MAXLEN), "--val-fraction", "0",
                                "--save-every", str(STEPS), "--loss", loss, "--seed", str(seed), "--quiet", *th])
            best = out.strip().splitlines()[-1]
            res, t_eval = run([binary, "eval", "--model", best, "--dataset", dataset, "--split", SPLIT, "--quiet",
                               "--run", os.path.join(work, f"colbert-{loss}-{seed}.run"), *th])
            record(results, {"system": f"colbert.c {loss}", "seed": seed, "train_s": t_train, "eval_s": t_eval,
                             "checkpoint": best, **settings, **json.loads(res)})

    # Deterministic rows, once, after the seeds (a run cut short keeps its
    # trainings): the dense start as a sentence encoder (its own pooling,
    # cosine, 256 tokens) and the untrained ColBERT (random projection).
    out, t = run([binary, "eval", "--model", model_dir, "--dense", "--dataset", dataset, "--split", SPLIT,
                  "--doc-maxlen", "256", "--quiet", *th])
    record(results, {"system": "dense start", "seed": "-", "eval_s": t, **settings, **json.loads(out)})
    out, t = run([binary, "eval", "--model", model_dir, "--dataset", dataset, "--split", SPLIT,
                  "--doc-maxlen", str(DOC_MAXLEN), "--quiet", *th])
    record(results, {"system": "untrained ColBERT", "seed": "-", "eval_s": t, **settings, **json.loads(out)})

    print()
    summary(results)


def summary(results):
    """Mean and spread (sample standard deviation) of every system over its
    seeds, each seed's nDCG@10, and colbert.c against PyLate's mean minus
    its spread."""
    rows = [json.loads(line) for line in open(results, encoding="utf-8") if line.strip()]
    systems = list(dict.fromkeys(r["system"] for r in rows))
    stats = {}
    print(f"{'mean ± spread':24}" + "".join(f" {k:>17}" for k in KEYS) + f" {'train s':>8}  nDCG@10 per seed")
    for name in systems:
        mine = [r for r in rows if r["system"] == name]
        stats[name] = {}
        for k in KEYS:
            v = [r[k] for r in mine]
            stats[name][k] = (statistics.fmean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
        train = [r["train_s"] for r in mine if r.get("train_s")]
        print(f"{name:24}" + "".join(f" {stats[name][k][0]:8.4f} ± {stats[name][k][1]:.4f}" for k in KEYS)
              + (f" {statistics.fmean(train):8.0f}" if train else " " * 9)
              + "  " + " ".join(f"{r['ndcg@10']:.4f} ({r['seed']})" for r in mine))
    if "PyLate" in stats:
        pm, ps = stats["PyLate"]["ndcg@10"]
        for name in systems:
            if name.startswith("colbert.c"):
                m = stats[name]["ndcg@10"][0]
                same = "PyLate's loss" if name.endswith("contrastive") else "colbert-ai's loss, not PyLate's"
                print(f"{name} ({same}): mean nDCG@10 {m:.4f}, PyLate's mean - spread {pm - ps:.4f}: "
                      f"{'not below' if m >= pm - ps else 'BELOW'}; {m / pm:.3f}x PyLate's mean")


if __name__ == "__main__":
    if len(sys.argv) == 8 and sys.argv[1] == "compare":
        compare(*sys.argv[2:])
    elif len(sys.argv) == 7 and sys.argv[1] == "pylate":
        pylate(*sys.argv[2:6], int(sys.argv[6]))
    elif len(sys.argv) == 3 and sys.argv[1] == "summary":
        summary(sys.argv[2])
    else:
        sys.exit(__doc__)
