"""test_colbert_encode.py: `colbert encode --colbert query|doc` against
colbert-ai's formulas in PyTorch on a ColBERT checkpoint.

The checkpoint is the one tests/ref/gen_train_step.py writes the way
colbert-ai saves one (bert.* weights + linear.weight, artifact.metadata
with query_maxlen 32, doc_maxlen 180). The PyTorch side lays out ids like
colbert-ai's QueryTokenizer / DocTokenizer (tests/ref/gen_colbert_head.py)
and computes ColBERT.query / ColBERT.doc: BertModel, linear, mask,
normalize. Queries keep all query_maxlen vectors; documents keep the
non-punctuation ones. Max abs diff <= 1e-4 on real NFCorpus texts.
"""
import json
import os
import string
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from transformers import BertConfig, BertModel, BertTokenizerFast

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "ref"))
import gen_colbert_head as ref  # noqa: E402

BIN = os.environ["COLBERT_BIN"]
DATA = os.environ["COLBERT_DATASETS"]
TMP = os.environ["COLBERT_TMP"]
CKPT = os.path.join(os.environ["COLBERT_REF"], "colbert_ckpt")


def texts():
    q, d = [], []
    with open(os.path.join(DATA, "nfcorpus", "queries.jsonl"), encoding="utf-8") as f:
        for line in f:
            q.append(" ".join(json.loads(line)["text"].split()))
            if len(q) == 40:
                break
    with open(os.path.join(DATA, "nfcorpus", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d.append(" ".join(json.loads(line)["text"].split()))
            if len(d) == 40:
                break
    return q, d


def encode(kind, items):
    inp = os.path.join(TMP, f"cb_{kind}.txt")
    out = os.path.join(TMP, f"cb_{kind}.npy")
    with open(inp, "w", encoding="utf-8") as f:
        f.write("\n".join(items) + "\n")
    r = subprocess.run([BIN, "encode", "--colbert", kind, "--model", CKPT, "--input", inp, "--output", out,
                        "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def model():
    cfg = BertConfig.from_pretrained(CKPT)
    sd = load_file(os.path.join(CKPT, "model.safetensors"))
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    bert.load_state_dict({k[5:]: v for k, v in sd.items() if k.startswith("bert.")})
    return bert, sd["linear.weight"], BertTokenizerFast.from_pretrained(CKPT)


def test_query_vectors_equal_colbert_ai():
    q, _ = texts()
    bert, linear, tok = model()
    ids, mask = ref.tensorize_queries(tok, q)
    with torch.no_grad():
        Q = F.normalize(bert(input_ids=ids, attention_mask=mask).last_hidden_state @ linear.T, p=2, dim=2)
    ours = np.load(encode("query", q))
    assert ours.shape == tuple(Q.shape)
    diff = np.abs(ours - Q.numpy()).max()
    print(f"{len(q)} queries x {Q.shape[1]} vectors: max abs diff {diff:.3g}")
    assert diff <= 1e-4


def test_doc_vectors_equal_colbert_ai():
    _, d = texts()
    bert, linear, tok = model()
    ids, mask = ref.tensorize_docs(tok, d)
    skip = {tok.encode(s, add_special_tokens=False)[0] for s in string.punctuation}
    with torch.no_grad():
        D = bert(input_ids=ids, attention_mask=mask).last_hidden_state @ linear.T
        keep = torch.tensor([[(x not in skip) and (x != tok.pad_token_id) for x in row] for row in ids.tolist()])
        D = F.normalize(D * keep.unsqueeze(2).float(), p=2, dim=2)
    out = encode("doc", d)
    ours, lens = np.load(out), np.load(out[:-4] + ".lengths.npy")
    want = [D[i][keep[i]].numpy() for i in range(len(d))]
    assert list(lens) == [w.shape[0] for w in want]
    diff = np.abs(ours - np.concatenate(want)).max()
    print(f"{len(d)} documents, {ours.shape[0]} kept vectors: max abs diff {diff:.3g}")
    assert diff <= 1e-4
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
