"""test_train_compat.py: a checkpoint written by `colbert train` loads in
colbert-ai (Checkpoint), PyLate (models.ColBERT) and RAGatouille
(RAGPretrainedModel.from_pretrained), from PyPI, on the CPU, in the peers venv
of scripts/setup_peers.sh (transformers 4.x: colbert-ai's HF_ColBERT does not
load under transformers 5). Their query and document vectors for real
NFCorpus texts equal `colbert encode --colbert query|doc` within 1e-4, and
RAGatouille's rerank of a small collection orders it by our MaxSim scores.
"""
import json
import os
import shutil
import subprocess

import numpy as np
from texts import nfcorpus_texts

BIN = os.environ["COLBERT_BIN"]
MODEL = os.environ["COLBERT_MODEL"]
DATA = os.environ["COLBERT_DATASETS"]
TMP = os.environ["COLBERT_TMP"]
PEERS = os.environ.get("COLBERT_PEERS_PY",
                       os.path.expanduser("~/.cache/colbert.c/venv-peers/bin/python"))
LOADER = os.path.join(os.path.dirname(__file__), "peers", "load_checkpoint.py")


def texts(nq=12, nd=24):
    return nfcorpus_texts(DATA, nq, nd)


def ours(ckpt, kind, items):
    inp, out = os.path.join(TMP, f"compat_{kind}.txt"), os.path.join(TMP, f"compat_{kind}.npy")
    with open(inp, "w", encoding="utf-8") as f:
        f.write("\n".join(items) + "\n")
    r = subprocess.run([BIN, "encode", "--colbert", kind, "--model", ckpt, "--input", inp, "--output", out,
                        "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


def test_peers_load_our_checkpoint():
    assert os.path.exists(PEERS), f"{PEERS} missing: run scripts/setup_peers.sh (make test does)"
    data = os.path.join(TMP, "compat_data")
    r = subprocess.run([BIN, "prepare", "--beir", os.path.join(DATA, "nfcorpus"), "--split", "train",
                        "--no-mining", "--out", data, "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # two steps from the plain encoder: a new projection, trained a little
    r = subprocess.run([BIN, "train", "--threads", "2", "--model-name", "compat", "--pretrained", MODEL, "--data",
                        data, "--output-dir", os.path.join(TMP, "compat_runs"), "--batch-size", "4", "--maxsteps",
                        "2", "--doc-maxlen", "96", "--val-fraction", "0", "--lr", "1e-4"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    ckpt = r.stdout.strip().splitlines()[-1]
    q, d = texts()
    oq, od = np.load(ours(ckpt, "query", q)), ours(ckpt, "doc", d)
    od, ol = np.load(od), np.load(od[:-4] + ".lengths.npy")
    qf, df = os.path.join(TMP, "compat_query.txt"), os.path.join(TMP, "compat_doc.txt")
    out = os.path.join(TMP, "compat_peers")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")
    r = subprocess.run([PEERS, LOADER, ckpt, qf, df, out], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-4000:]
    for peer in ("colbert_ai", "pylate"):
        pq = np.load(os.path.join(out, f"{peer}_q.npy"))
        pd, pl = np.load(os.path.join(out, f"{peer}_d.npy")), np.load(os.path.join(out, f"{peer}_d.lengths.npy"))
        assert pq.shape == oq.shape, (peer, pq.shape, oq.shape)
        assert list(pl) == list(ol), peer
        dq, dd = np.abs(pq - oq).max(), np.abs(pd - od).max()
        print(f"\n{peer}: {len(q)} queries {pq.shape}, max abs diff {dq:.3g}; {len(d)} documents, "
              f"{pd.shape[0]} vectors, max abs diff {dd:.3g}")
        assert dq <= 1e-4 and dd <= 1e-4
    # PyLate read the checkpoint as its own model (modules.json, 1_Dense,
    # config_sentence_transformers.json), with our markers and lengths
    pj = json.load(open(os.path.join(out, "pylate.json")))
    meta = json.load(open(os.path.join(ckpt, "artifact.metadata")))
    assert pj["own"] and pj["query_prefix"] == meta["query_token_id"] == "[unused0]", pj
    assert (pj["query_length"], pj["document_length"]) == (meta["query_maxlen"], meta["doc_maxlen"]), pj
    # RAGatouille: its rerank of the collection for the first query equals our MaxSim scores, computed
    # with the lengths rerank picks for itself (documents up to 512 tokens)
    rag = json.load(open(os.path.join(out, "ragatouille.json")))
    same = os.path.join(TMP, "compat_rag_lengths")
    shutil.copytree(ckpt, same, dirs_exist_ok=True)
    meta = json.load(open(os.path.join(same, "artifact.metadata")))
    meta.update(query_maxlen=rag["query_maxlen"], doc_maxlen=rag["doc_maxlen"])
    json.dump(meta, open(os.path.join(same, "artifact.metadata"), "w"))
    rq, rd = np.load(ours(same, "query", q[:1])), ours(same, "doc", d)
    rd, rl = np.load(rd), np.load(rd[:-4] + ".lengths.npy")
    offs = np.concatenate([[0], np.cumsum(rl)])
    mine = {d[i]: float((rq[0] @ rd[offs[i]:offs[i + 1]].T).max(axis=1).sum()) for i in range(len(d))}
    res = rag["results"]
    assert len(res) == len(d) and [x["rank"] for x in res] == list(range(len(d)))
    assert [x["score"] for x in res] == sorted((x["score"] for x in res), reverse=True)
    diff = max(abs(x["score"] - mine[x["content"]]) for x in res)
    print(f"ragatouille: reranked {len(res)} documents (query_maxlen {rag['query_maxlen']}, doc_maxlen "
          f"{rag['doc_maxlen']}), max score diff to ours {diff:.3g}")
    assert diff <= 1e-3
