"""test_quality.py: a small training run makes retrieval better on held-out data.

colbert.c trains a new ColBERT from all-MiniLM-L6-v2 on NFCorpus *train*
queries (colbert prepare, random negatives), then `colbert eval` scores the
untrained start (the same seeded projection train began from) and the trained
model on NFCorpus *test* queries, which training never saw. The test corpus is
cut to the documents relevant to those queries plus a seeded random sample of
the rest, so that both evaluations stay quick on 2 cores.

The margins asserted are far below what the run reaches (see the printed
numbers), and far above the noise of a run that learns nothing: a broken
backward, optimiser or checkpoint leaves nDCG@10 where it started.
"""
import json
import os
import random
import subprocess

BIN = os.environ["COLBERT_BIN"]
MODEL = os.environ["COLBERT_MODEL"]
DATA = os.environ["COLBERT_DATASETS"]
TMP = os.environ["COLBERT_TMP"]
NF = os.path.join(DATA, "nfcorpus")
N_QUERIES = 120     # held-out test queries
N_DOCS = 1500       # documents in the held-out corpus
DOC_MAXLEN = 64


def heldout():
    """A BEIR directory: the first N_QUERIES test queries with qrels, every
    document relevant to them, and random other documents up to N_DOCS."""
    out = os.path.join(TMP, "quality_heldout")
    if os.path.exists(os.path.join(out, "qrels", "test.tsv")):
        return out
    os.makedirs(os.path.join(out, "qrels"), exist_ok=True)
    lines = open(os.path.join(NF, "qrels", "test.tsv")).read().splitlines()
    qids = []
    for ln in lines[1:]:
        q = ln.split("\t")[0]
        if q not in qids:
            qids.append(q)
    qids = set(qids[:N_QUERIES])
    rel = [ln for ln in lines[1:] if ln.split("\t")[0] in qids]
    keep = {ln.split("\t")[1] for ln in rel}
    corpus = open(os.path.join(NF, "corpus.jsonl")).read().splitlines()
    others = [i for i, ln in enumerate(corpus) if json.loads(ln)["_id"] not in keep]
    random.Random(7).shuffle(others)
    fill = set(others[:max(0, N_DOCS - len(keep))])
    with open(os.path.join(out, "corpus.jsonl"), "w") as f:
        for i, ln in enumerate(corpus):
            if i in fill or json.loads(ln)["_id"] in keep:
                f.write(ln + "\n")
    with open(os.path.join(out, "queries.jsonl"), "w") as f:
        for ln in open(os.path.join(NF, "queries.jsonl")):
            if json.loads(ln)["_id"] in qids:
                f.write(ln)
    with open(os.path.join(out, "qrels", "test.tsv"), "w") as f:
        f.write(lines[0] + "\n" + "\n".join(rel) + "\n")
    return out


def run(args):
    r = subprocess.run([BIN, *args, "--threads", "2", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_training_improves_heldout_ndcg():
    data = os.path.join(TMP, "quality_train")
    run(["prepare", "--beir", NF, "--split", "train", "--no-mining", "--out", data])
    best = run(["train", "--model-name", "quality", "--pretrained", MODEL, "--data", data,
                "--output-dir", os.path.join(TMP, "quality_runs"), "--batch-size", "16", "--maxsteps", "40",
                "--lr", "1e-4", "--warmup", "4", "--doc-maxlen", str(DOC_MAXLEN), "--val-fraction", "0",
                "--save-every", "40"]).strip().splitlines()[-1]
    ds = heldout()
    base = json.loads(run(["eval", "--model", MODEL, "--dataset", ds, "--doc-maxlen", str(DOC_MAXLEN)]))
    trained = json.loads(run(["eval", "--model", best, "--dataset", ds]))
    print(f"held-out NFCorpus test ({N_QUERIES} queries, {N_DOCS} documents): nDCG@10 "
          f"{base['ndcg@10']:.4f} -> {trained['ndcg@10']:.4f}, MRR@10 {base['mrr@10']:.4f} -> "
          f"{trained['mrr@10']:.4f}, Recall@100 {base['recall@100']:.4f} -> {trained['recall@100']:.4f}")
    assert trained["ndcg@10"] >= base["ndcg@10"] + 0.05
    assert trained["ndcg@10"] >= 1.5 * base["ndcg@10"]
    assert trained["recall@100"] > base["recall@100"]
