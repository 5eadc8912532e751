"""test_pylate.py: PyLate model directories, read and written (issue 24,
point 4; src/pylate.h).

The PyLate directories are made by PyLate itself, in the peers venv of
scripts/setup_peers.sh: models.ColBERT(all-MiniLM-L6-v2).save(DIR), once with
PyLate's defaults (markers "[Q] " / "[D] " added to the tokenizer, the
embeddings grown to 30524 rows, query_length 32, document_length 180) and
once with other settings (query_length 24, document_length 64,
attend_to_expansion_tokens true, markers "[unused0]" / "[unused1]"); and
from the small ModernBERT of tests/ref/gen_modernbert.py (issue 27: a PyLate
ColBERT of that family, as GTE-ModernColBERT is).
  - `colbert encode --colbert query|doc` on each directory equals PyLate's
    ColBERT.encode of it within 1e-5: the projection of 1_Dense, the settings
    and markers of config_sentence_transformers.json are read.
  - `colbert train --pretrained DIR` fine-tunes it (it says so, and keeps its
    markers and lengths; MiniLM with other settings, and the ModernBERT); the checkpoint holds PyLate's files beside
    colbert-ai's (modules.json, 1_Dense with the same projection as
    linear.weight, config_sentence_transformers.json with the settings);
    PyLate loads it as its own model (it reads the settings from
    config_sentence_transformers.json) and colbert-ai as its own, both with
    the vectors of `colbert encode --colbert`.
  - A PyLate directory colbert.c cannot honour (a bias, a residual, another
    activation, no query expansion, its own skiplist, an empty prefix, two
    Dense modules, the encoder in a sub-folder, a missing or mis-shaped
    projection) is refused, naming the file and the setting, in one line,
    writing nothing (the ASan/UBSan build: no leak or undefined behaviour on
    the way out).
"""
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

TMP_PER_TEST = True   # each test's files go when it ends (tests/conftest.py)

BIN = os.environ["COLBERT_BIN"]
SAN = os.environ.get("COLBERT_SAN_BIN", BIN)   # the ASan/UBSan build reads the refused directories
MODEL = os.environ["COLBERT_MODEL"]
DATA = os.environ["COLBERT_DATASETS"]
TMP = os.environ["COLBERT_TMP"]
PEERS = os.environ.get("COLBERT_PEERS_PY",
                       os.path.expanduser("~/.cache/colbert.c/venv-peers/bin/python"))
TOL = 1e-5
PEER_ENV = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="")

MAKE = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
from pylate import models
m = models.ColBERT(sys.argv[1], device="cpu", **json.loads(sys.argv[3]))
m.save(sys.argv[2])
"""

# PyLate's encode of a directory, and what it read: its settings, whether it
# loaded as a sentence-transformers model of its own (config read) or
# converted a colbert-ai checkpoint
ENCODE = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch
torch.set_num_threads(2)
from pylate import models
m = models.ColBERT(sys.argv[1], device="cpu")
texts = open(sys.argv[2], encoding="utf-8").read().splitlines()
q = m.encode(texts, is_query=True, batch_size=16, convert_to_numpy=True)
d = m.encode(texts, is_query=False, batch_size=16, convert_to_numpy=True)
np.save(sys.argv[3] + "_q.npy", np.stack(q).astype(np.float32))
np.save(sys.argv[3] + "_d.npy", np.concatenate(d).astype(np.float32))
json.dump({"query_prefix": m.query_prefix, "document_prefix": m.document_prefix, "query_length": m.query_length,
           "document_length": m.document_length, "attend": m.attend_to_expansion_tokens,
           "own": "query_prefix" in getattr(m, "_model_config", {}), "vocab": len(m.tokenizer)},
          open(sys.argv[3] + ".json", "w"))
"""

COLBERT_AI = r"""
import sys, warnings
warnings.filterwarnings("ignore")
import numpy as np, torch
torch.set_num_threads(2)
from colbert.infra import ColBERTConfig
from colbert.modeling.checkpoint import Checkpoint
cfg = ColBERTConfig.load_from_checkpoint(sys.argv[1])
ck = Checkpoint(sys.argv[1], colbert_config=cfg, verbose=0)
texts = open(sys.argv[2], encoding="utf-8").read().splitlines()
with torch.no_grad():
    Q = ck.queryFromText(texts, bsize=16)
    D, lens = ck.docFromText(texts, bsize=16, keep_dims="flatten")
np.save(sys.argv[3] + "_q.npy", Q.float().numpy())
np.save(sys.argv[3] + "_d.npy", D.float().numpy())
"""

# name: (the encoder PyLate starts from, models.ColBERT's arguments)
REF = os.environ.get("COLBERT_REF", "")
VARIANTS = {
    "defaults": (MODEL, {}),
    "settings": (MODEL, {"query_length": 24, "document_length": 64, "attend_to_expansion_tokens": True,
                         "query_prefix": "[unused0]", "document_prefix": "[unused1]"}),
    # the small seeded ModernBERT of tests/ref/gen_modernbert.py (byte-level BPE, no [unused0])
    "modernbert": (os.path.join(REF, "modernbert_plain"), {"document_length": 96}),
}


def peer(code, *args):
    assert os.path.exists(PEERS), f"{PEERS} missing: run scripts/setup_peers.sh (make test does)"
    r = subprocess.run([PEERS, "-c", code, *map(str, args)], capture_output=True, text=True, env=PEER_ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def texts():
    out = []
    for name, n in (("queries.jsonl", 8), ("corpus.jsonl", 8)):
        with open(os.path.join(DATA, "nfcorpus", name), encoding="utf-8") as f:
            for line in f:
                out.append(" ".join(json.loads(line)["text"].split()[:60]))
                if len(out) % 8 == 0:
                    break
    path = os.path.join(TMP, "pylate_texts.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    return path


@pytest.fixture(scope="module")
def pylate_dirs():
    dirs = {}
    for name, (src, kw) in VARIANTS.items():
        d = os.path.join(TMP, f"pylate_{name}")
        shutil.rmtree(d, ignore_errors=True)
        peer(MAKE, src, d, json.dumps(kw))
        dirs[name] = d
    return dirs


def encode(model, kind, inp, out):
    r = subprocess.run([BIN, "encode", "--colbert", kind, "--model", model, "--input", inp, "--output", out,
                        "--threads", "2", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return np.load(out)


def compare_with_pylate(model, tag):
    inp = texts()
    base = os.path.join(TMP, f"pylate_{tag}_peer")
    peer(ENCODE, model, inp, base)
    with open(base + ".json") as f:
        info = json.load(f)
    for kind in ("query", "doc"):
        ours = encode(model, kind, inp, os.path.join(TMP, f"pylate_{tag}_{kind}.npy"))
        theirs = np.load(f"{base}_{kind[0]}.npy")
        assert ours.shape == theirs.shape, (kind, ours.shape, theirs.shape)
        diff = float(np.abs(ours - theirs).max())
        print(f"\n{tag}: {kind} vectors {ours.shape}, max abs diff from PyLate {diff:.3g}")
        assert diff <= TOL
    return info


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_encode_equals_pylate(pylate_dirs, variant):
    d = pylate_dirs[variant]
    with open(os.path.join(d, "config_sentence_transformers.json")) as f:
        cfg = json.load(f)
    info = compare_with_pylate(d, variant)
    assert info["own"] and info["query_length"] == cfg["query_length"]
    if variant == "defaults":
        assert info["query_prefix"] == "[Q] " and info["vocab"] == 30524 and cfg["document_length"] == 180


@pytest.mark.parametrize("variant", ["settings", "modernbert"])
def test_finetune_pylate_dir_and_peers_load_it(pylate_dirs, variant):
    src = pylate_dirs[variant]
    with open(os.path.join(src, "config_sentence_transformers.json")) as f:
        want = json.load(f)
    with open(os.path.join(src, "1_Dense", "config.json")) as f:
        dense_src = json.load(f)
    data = os.path.join(TMP, "pylate_data")
    r = subprocess.run([BIN, "prepare", "--beir", os.path.join(DATA, "nfcorpus"), "--split", "train",
                        "--no-mining", "--out", data, "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([BIN, "train", "--threads", "2", "--model-name", "ft", "--pretrained", src, "--data", data,
                        "--output-dir", os.path.join(TMP, "pylate_runs"), "--batch-size", "4", "--maxsteps", "2",
                        "--val-fraction", "0", "--lr", "1e-4", "--keep-checkpoints", "1", "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    said = f'markers "{want["query_prefix"]}" / "{want["document_prefix"]}"'
    assert "fine-tuning the PyLate ColBERT checkpoint" in r.stderr and said in r.stderr, r.stderr
    assert "added the ColBERT markers" not in r.stderr, r.stderr   # PyLate's tokenizer has them
    ckpt = r.stdout.strip().splitlines()[-1]

    # PyLate's files beside colbert-ai's, saying the same: the source's settings, kept
    with open(os.path.join(ckpt, "modules.json")) as f:
        mods = json.load(f)
    assert [m["path"] for m in mods] == ["", "1_Dense"] and mods[1]["type"] == "pylate.models.Dense.Dense"
    with open(os.path.join(ckpt, "config_sentence_transformers.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(ckpt, "artifact.metadata")) as f:
        meta = json.load(f)
    keys = ("query_length", "document_length", "attend_to_expansion_tokens", "query_prefix", "document_prefix")
    assert [cfg[k] for k in keys] == [want[k] for k in keys]
    assert [meta[k] for k in ("query_maxlen", "doc_maxlen", "attend_to_mask_tokens", "query_token_id",
                              "doc_token_id")] == [want[k] for k in keys]
    with open(os.path.join(ckpt, "1_Dense", "config.json")) as f:
        dense = json.load(f)
    assert dense == {"in_features": dense_src["in_features"], "out_features": 128, "bias": False,
                     "activation_function": "torch.nn.modules.linear.Identity", "use_residual": False}
    code = ("import sys; from safetensors.numpy import load_file as l; import numpy as np; "
            "a = l(sys.argv[1] + '/model.safetensors')['linear.weight']; "
            "b = l(sys.argv[1] + '/1_Dense/model.safetensors')['linear.weight']; "
            "assert a.shape == (128, int(sys.argv[2])) and np.array_equal(a, b)")
    peer(code, ckpt, dense_src["in_features"])

    # PyLate loads it as its own model, colbert-ai as its own: the vectors of colbert encode
    info = compare_with_pylate(ckpt, f"ft_{variant}")
    assert info["own"] and (info["query_length"], info["document_length"], info["attend"]) == \
        (want["query_length"], want["document_length"], want["attend_to_expansion_tokens"])
    inp = texts()
    base = os.path.join(TMP, f"pylate_ft_{variant}_colbert_ai")
    peer(COLBERT_AI, ckpt, inp, base)
    for kind in ("query", "doc"):
        ours = np.load(os.path.join(TMP, f"pylate_ft_{variant}_{kind}.npy"))
        theirs = np.load(f"{base}_{kind[0]}.npy")
        diff = float(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else None
        print(f"{variant}: colbert-ai {kind} vectors {theirs.shape}, max abs diff {diff}")
        assert diff is not None and diff <= 1e-4, (kind, ours.shape, theirs.shape)


def broken(pylate_dirs, name, edit):
    """A copy of the default PyLate directory with edit(dir) applied."""
    src, d = pylate_dirs["defaults"], os.path.join(TMP, f"pylate_bad_{name}")
    shutil.rmtree(d, ignore_errors=True)
    # the encoder's weights linked, not copied (disk)
    shutil.copytree(src, d, ignore=shutil.ignore_patterns("model.safetensors"))
    os.symlink(os.path.join(src, "model.safetensors"), os.path.join(d, "model.safetensors"))
    shutil.copy(os.path.join(src, "1_Dense", "model.safetensors"), os.path.join(d, "1_Dense"))
    edit(d)
    return d


def set_json(rel, **kv):
    def edit(d):
        p = os.path.join(d, rel)
        with open(p) as f:
            j = json.load(f)
        j.update(kv)
        with open(p, "w") as f:
            json.dump(j, f)
    return edit


def set_modules(mods):
    def edit(d):
        with open(os.path.join(d, "modules.json"), "w") as f:
            json.dump(mods, f)
    return edit


T = "sentence_transformers.models.Transformer"
D = "pylate.models.Dense.Dense"
BAD = {
    "bias": (set_json("1_Dense/config.json", bias=True), "1_Dense/config.json", "bias"),
    "residual": (set_json("1_Dense/config.json", use_residual=True), "1_Dense/config.json", "use_residual"),
    "tanh": (set_json("1_Dense/config.json", activation_function="torch.nn.modules.activation.Tanh"),
             "1_Dense/config.json", "Tanh"),
    "in_features": (set_json("1_Dense/config.json", in_features=768), "1_Dense/config.json", "in_features 768"),
    "no_expansion": (set_json("config_sentence_transformers.json", do_query_expansion=False),
                     "config_sentence_transformers.json", "do_query_expansion"),
    "skiplist": (set_json("config_sentence_transformers.json", skiplist_words=["the", "a"]),
                 "config_sentence_transformers.json", "skiplist_words"),
    "empty_prefix": (set_json("config_sentence_transformers.json", query_prefix=""),
                     "config_sentence_transformers.json", "query_prefix"),
    "two_dense": (set_modules([{"idx": 0, "name": "0", "path": "", "type": T},
                               {"idx": 1, "name": "1", "path": "1_Dense", "type": D},
                               {"idx": 2, "name": "2", "path": "2_Dense", "type": D}]), "modules.json", "2 Dense"),
    "sub_folder": (set_modules([{"idx": 0, "name": "0", "path": "0_Transformer", "type": T},
                                {"idx": 1, "name": "1", "path": "1_Dense", "type": D}]), "modules.json",
                   "0_Transformer"),
    "no_weights": (lambda d: os.remove(os.path.join(d, "1_Dense", "model.safetensors")),
                   "1_Dense/model.safetensors", "missing"),
    "shape": (set_json("1_Dense/config.json", out_features=64), "1_Dense/model.safetensors", "linear.weight"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_unsupported_pylate_dir_refused(pylate_dirs, case):
    edit, where, what = BAD[case]
    d = broken(pylate_dirs, case, edit)
    inp = texts()
    out = os.path.join(TMP, f"pylate_bad_{case}.npy")
    r = subprocess.run([SAN, "encode", "--colbert", "query", "--model", d, "--input", inp, "--output", out,
                        "--quiet"], capture_output=True, text=True)
    assert r.returncode == 1 and where in r.stderr and what in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and not os.path.exists(out), r.stderr
