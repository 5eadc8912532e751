"""test_encode.py: `colbert encode` against the real peers.

- sentence embeddings equal sentence-transformers' (all-MiniLM-L6-v2, its
  own pooling, normalisation and max_seq_length 256): cosine >= 0.99999 for
  every text, on real NFCorpus and SciFact texts of every length;
- --token-vectors equal transformers' BertModel last hidden states at
  --max-length 512: max abs diff <= 1e-4, over documents longer than 256
  tokens too.
"""
import json
import os
import subprocess

import numpy as np
import pytest
import torch

BIN = os.environ["COLBERT_BIN"]
MODEL = os.environ["COLBERT_MODEL"]
DATA = os.environ["COLBERT_DATASETS"]
TMP = os.environ["COLBERT_TMP"]


def read_texts(name, n, field_join=True):
    out = []
    with open(os.path.join(DATA, name, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            t = (d["title"] + " " + d["text"]).strip() if field_join else d["text"]
            out.append(" ".join(t.split("\n")))
            if len(out) == n:
                break
    return out


def read_queries(name, n):
    out = []
    with open(os.path.join(DATA, name, "queries.jsonl"), encoding="utf-8") as f:
        for line in f:
            out.append(" ".join(json.loads(line)["text"].split("\n")))
            if len(out) == n:
                break
    return out


def run_encode(texts, out, *extra):
    inp = os.path.join(TMP, os.path.basename(out) + ".txt")
    with open(inp, "w", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    r = subprocess.run([BIN, "encode", "--model", MODEL, "--input", inp, "--output", out,
                        "--quiet", *extra], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def texts():
    t = read_texts("nfcorpus", 300) + read_texts("scifact", 150) + read_queries("nfcorpus", 100)
    t += ["", "a", "x " * 600]  # empty, one letter, truncated at 256
    return t


def test_sentence_embeddings_equal_sentence_transformers(texts):
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(MODEL, device="cpu")
    ref = st.encode(texts, batch_size=32, convert_to_numpy=True)
    out = np.load(run_encode(texts, os.path.join(TMP, "sent.npy")))
    assert out.shape == ref.shape
    cos = (out * ref).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(ref, axis=1))
    print(f"{len(texts)} texts: min cosine {cos.min():.8f}, max abs diff {np.abs(out - ref).max():.3g}")
    assert cos.min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_token_vectors_equal_bert_model(texts):
    from transformers import BertModel, BertTokenizerFast
    tok = BertTokenizerFast.from_pretrained(MODEL)
    model = BertModel.from_pretrained(MODEL).eval()
    sample = texts[:40] + texts[-3:]
    out = run_encode(sample, os.path.join(TMP, "tok.npy"), "--token-vectors", "--max-length", "512")
    vec, lens = np.load(out), np.load(out[:-4] + ".lengths.npy")
    assert lens.sum() == vec.shape[0] and vec.shape[1] == 384
    offs = np.concatenate([[0], np.cumsum(lens)])
    worst, over256 = 0.0, 0
    with torch.no_grad():
        for i, t in enumerate(sample):
            enc = tok(t, truncation=True, max_length=512, return_tensors="pt")
            ref = model(**enc).last_hidden_state[0].numpy()
            assert ref.shape[0] == lens[i], f"text {i}: {ref.shape[0]} tokens, we have {lens[i]}"
            worst = max(worst, float(np.abs(vec[offs[i]:offs[i + 1]] - ref).max()))
            over256 += lens[i] > 256
    print(f"{len(sample)} texts ({over256} over 256 tokens): max abs diff {worst:.3g}")
    assert over256 >= 2
    assert worst <= 1e-4


def test_safetensors_output_equals_npy(texts):
    from safetensors.numpy import load_file
    sample = texts[:8]
    npy = np.load(run_encode(sample, os.path.join(TMP, "s8.npy")))
    st = load_file(run_encode(sample, os.path.join(TMP, "s8.safetensors")))
    np.testing.assert_array_equal(st["embeddings"], npy)
    tv = load_file(run_encode(sample, os.path.join(TMP, "t8.safetensors"), "--token-vectors"))
    assert tv["lengths"].dtype == np.int32 and tv["lengths"].shape == (8,)
    assert tv["vectors"].shape == (int(tv["lengths"].sum()), 384)


def _small_file_limit():   # in the child: files beyond 64 KiB fail with EFBIG instead of killing it
    import resource
    import signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))


@pytest.mark.parametrize("extra", [[], ["--token-vectors"], ["--colbert", "query"], ["--colbert", "doc"]],
                         ids=["embeddings", "token-vectors", "colbert-query", "colbert-doc"])
def test_no_room_is_found_before_encoding(texts, extra):
    """The output does not fit (a file size limit stands in for a full
    disk): the error comes before anything is encoded, with the
    `colbert: error:` prefix, and no file is left. Before, encode found out
    only when writing, after encoding everything."""
    d = os.path.join(TMP, "no_room_" + "_".join(extra).strip("-"))
    os.makedirs(d, exist_ok=True)
    inp = os.path.join(d, "in.txt")
    with open(inp, "w", encoding="utf-8") as f:
        f.write("\n".join(texts * 4) + "\n")
    out = os.path.join(d, "out.npy")
    r = subprocess.run([os.environ["COLBERT_SAN_BIN"], "encode", "--model", MODEL, "--input", inp, "--output", out,
                        *extra], capture_output=True, text=True, preexec_fn=_small_file_limit)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith(f"colbert: error: {out}: no room for the output (") and lines[0].endswith(
        "File too large; nothing was encoded"), lines[0]
    assert "encode" not in r.stderr.replace("encoded", ""), r.stderr   # no progress bar ran
    assert sorted(os.listdir(d)) == ["in.txt"]
