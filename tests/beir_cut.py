"""beir_cut.py: a small BEIR directory cut out of a real one, for tests.

cut(src, dst, {split: n}, seed, n_other=N | n_docs=N) writes dst with
qrels/SPLIT.tsv for the first n queries (in qrels order) of each split,
queries.jsonl with those queries, and corpus.jsonl with every document
judged for them plus a seeded random sample of the others: n_other of them,
or as many as fill the corpus up to n_docs. Lines are copied unchanged and
keep the source's order.
"""
import json
import os
import random


def cut(src, dst, splits, seed, n_other=None, n_docs=None):
    os.makedirs(os.path.join(dst, "qrels"), exist_ok=True)
    keep_q, keep_d, qrels = set(), set(), {}
    for split, n in splits.items():
        lines = open(os.path.join(src, "qrels", f"{split}.tsv"), encoding="utf-8").read().splitlines()
        qids = list(dict.fromkeys(ln.split("\t")[0] for ln in lines[1:]))
        qs = set(qids[:n])
        rel = [ln for ln in lines[1:] if ln.split("\t")[0] in qs]
        keep_q |= qs
        keep_d |= {ln.split("\t")[1] for ln in rel}
        qrels[split] = lines[0] + "\n" + "\n".join(rel) + "\n"
    corpus = open(os.path.join(src, "corpus.jsonl"), encoding="utf-8").read().splitlines()
    judged = [json.loads(ln)["_id"] in keep_d for ln in corpus]
    others = [i for i, j in enumerate(judged) if not j]
    random.Random(seed).shuffle(others)
    fill = set(others[:n_other if n_other is not None else max(0, n_docs - len(keep_d))])
    with open(os.path.join(dst, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for i, ln in enumerate(corpus):
            if i in fill or judged[i]:
                f.write(ln + "\n")
    with open(os.path.join(dst, "queries.jsonl"), "w", encoding="utf-8") as f:
        for ln in open(os.path.join(src, "queries.jsonl"), encoding="utf-8"):
            if json.loads(ln)["_id"] in keep_q:
                f.write(ln)
    for split, text in qrels.items():          # last: their presence means the cut is whole
        with open(os.path.join(dst, "qrels", f"{split}.tsv"), "w", encoding="utf-8") as f:
            f.write(text)
    return dst
