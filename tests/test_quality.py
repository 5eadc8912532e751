"""test_quality.py: a small training run makes retrieval better on held-out data,
and validation by retrieval names the checkpoint that retrieves best.

colbert.c trains a new ColBERT from all-MiniLM-L6-v2 on NFCorpus *train*
queries (colbert prepare, random negatives), then `colbert eval` scores the
untrained start (the same seeded projection train began from) and the trained
model on NFCorpus *test* queries, which training never saw. The test corpus is
cut to the documents relevant to those queries plus a seeded random sample of
the rest, so that both evaluations stay quick on 2 cores.

The run validates every 10 steps on NFCorpus *dev* (a cut of it: the first
dev queries, their judged documents and a sample of the rest, all ranked):
each checkpoint's validation nDCG@10 equals `colbert eval` of that
checkpoint on the same split, the checkpoint the run names best is the one
`colbert eval` scores highest, and it is a later one than the first.

The margins asserted are far below what the run reaches (see the printed
numbers), and far above the noise of a run that learns nothing: a broken
backward, optimiser or checkpoint leaves nDCG@10 where it started.
"""
import json
import os
import subprocess

import beir_cut  # tests/beir_cut.py

BIN = os.environ["COLBERT_BIN"]
MODEL = os.environ["COLBERT_MODEL"]
DATA = os.environ["COLBERT_DATASETS"]
TMP = os.environ["COLBERT_TMP"]
NF = os.path.join(DATA, "nfcorpus")
N_QUERIES = 120     # held-out test queries
N_DOCS = 1500       # documents in the held-out corpus
DOC_MAXLEN = 64


def heldout(split="test", n_queries=N_QUERIES, n_docs=N_DOCS):
    """A BEIR directory: the first n_queries queries of the split with qrels,
    every document judged for them, and random other documents up to n_docs."""
    out = os.path.join(TMP, f"quality_{split}")
    if os.path.exists(os.path.join(out, "qrels", f"{split}.tsv")):
        return out
    return beir_cut.cut(NF, out, {split: n_queries}, seed=7, n_docs=n_docs)


def run(args):
    r = subprocess.run([BIN, *args, "--threads", "2", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_training_improves_heldout_ndcg():
    data = os.path.join(TMP, "quality_train")
    run(["prepare", "--beir", NF, "--split", "train", "--no-mining", "--out", data])
    dev = heldout("dev", 40, 600)
    out = os.path.join(TMP, "quality_runs")
    best = run(["train", "--model-name", "quality", "--pretrained", MODEL, "--data", data,
                "--output-dir", out, "--batch-size", "16", "--maxsteps", "40",
                "--lr", "1e-4", "--warmup", "4", "--doc-maxlen", str(DOC_MAXLEN), "--val-beir", dev,
                "--val-split", "dev", "--val-docs", "100000", "--save-every", "10",
                "--keep-checkpoints", "0"]).strip().splitlines()[-1]
    # validation by retrieval: each checkpoint's score is colbert eval's on the same split
    log = [json.loads(x) for x in open(os.path.join(out, "quality", "train.jsonl"))]
    ckpts = [x for x in log if x.get("event") == "checkpoint"]
    assert [c["step"] for c in ckpts] == [10, 20, 30, 40]
    evals = {}
    for c in ckpts:
        e = json.loads(run(["eval", "--model", c["path"], "--dataset", dev, "--split", "dev"]))
        evals[c["step"]] = e["ndcg@10"]
        assert abs(c["val_ndcg10"] - e["ndcg@10"]) <= 2e-3, (c, e)
    named = int(os.path.basename(best).split("-")[1])
    top = max(evals.values())
    print(f"\nvalidation nDCG@10 on NFCorpus dev (40 queries, 600 documents) by step: "
          f"{ {c['step']: round(c['val_ndcg10'], 4) for c in ckpts} }; colbert eval: "
          f"{ {k: round(v, 4) for k, v in evals.items()} }; named best: step {named}")
    assert evals[named] >= top - 2e-3
    assert named > ckpts[0]["step"] and evals[named] > evals[ckpts[0]["step"]] + 0.02
    ds = heldout()
    base = json.loads(run(["eval", "--model", MODEL, "--dataset", ds, "--doc-maxlen", str(DOC_MAXLEN)]))
    trained = json.loads(run(["eval", "--model", best, "--dataset", ds]))
    print(f"held-out NFCorpus test ({N_QUERIES} queries, {N_DOCS} documents): nDCG@10 "
          f"{base['ndcg@10']:.4f} -> {trained['ndcg@10']:.4f}, MRR@10 {base['mrr@10']:.4f} -> "
          f"{trained['mrr@10']:.4f}, Recall@100 {base['recall@100']:.4f} -> {trained['recall@100']:.4f}")
    assert trained["ndcg@10"] >= base["ndcg@10"] + 0.05
    assert trained["ndcg@10"] >= 1.5 * base["ndcg@10"]
    assert trained["recall@100"] > base["recall@100"]
