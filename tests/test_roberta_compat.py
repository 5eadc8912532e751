"""test_roberta_compat.py: ColBERT checkpoints of the RoBERTa families, as
cb_colmodel_save writes them (build/tests/test_roberta writes one per family,
from the small seeded models of tests/ref/gen_roberta.py), load in colbert-ai
(Checkpoint: its HF_ColBERT class is built from config.json's model_type) and
PyLate (models.ColBERT), in the peers venv of scripts/setup_peers.sh: the
encoder class is the family's, its hidden states equal transformers' on the
model the checkpoint was made from (the same weights: exactly), and the
projection equals the file's linear.weight. ColBERT vectors of texts, from
checkpoints that `colbert train` writes for these families, are compared
end to end in tests/test_family_train.py.
"""
import json
import os
import subprocess

ROOT = os.environ["COLBERT_ROOT"]
REF = os.environ["COLBERT_REF"]
TMP = os.environ["COLBERT_TMP"]
PEERS = os.environ.get("COLBERT_PEERS_PY",
                       os.path.expanduser("~/.cache/colbert.c/venv-peers/bin/python"))
LOADER = os.path.join(os.path.dirname(__file__), "peers", "load_roberta_checkpoint.py")


def test_peers_load_roberta_checkpoints():
    assert os.path.exists(PEERS), f"{PEERS} missing: run scripts/setup_peers.sh (make test does)"
    tmp = os.path.join(TMP, "roberta_compat")
    os.makedirs(tmp, exist_ok=True)
    env = dict(os.environ, COLBERT_TMP=tmp)
    r = subprocess.run([os.path.join(ROOT, "build", "tests", "test_roberta")], capture_output=True, text=True,
                       env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for fam, cls in [("roberta", "RobertaModel"), ("xlmr", "XLMRobertaModel")]:
        ckpt, out = os.path.join(tmp, f"{fam}_ckpt"), os.path.join(tmp, f"{fam}_peers.json")
        with open(os.path.join(ckpt, "config.json")) as f:
            cfg = json.load(f)
        assert cfg["architectures"] == ["HF_ColBERT"]
        r = subprocess.run([PEERS, LOADER, ckpt, os.path.join(REF, f"{fam}_model"), out], capture_output=True,
                           text=True, env=dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"))
        assert r.returncode == 0, r.stderr[-3000:]
        with open(out) as f:
            res = json.load(f)
        print(fam, res)
        for peer in ("colbert-ai", "pylate"):
            assert res[peer]["class"] == cls, (fam, peer, res[peer])
            assert res[peer]["hidden"] == 0.0, (fam, peer, res[peer])
            assert res[peer]["linear"] == 0.0, (fam, peer, res[peer])
