"""texts.py: real texts for the tests, from the shared BEIR datasets."""
import json
import os


def first_texts(path, n):
    """The first n "text" fields of a BEIR JSONL file, whitespace runs as one space."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            out.append(" ".join(json.loads(line)["text"].split()))
            if len(out) == n:
                break
    return out


def nfcorpus_texts(datasets, nq=12, nd=24):
    """(the first nq NFCorpus queries, its first nd documents)."""
    nf = os.path.join(str(datasets), "nfcorpus")
    return first_texts(os.path.join(nf, "queries.jsonl"), nq), first_texts(os.path.join(nf, "corpus.jsonl"), nd)
