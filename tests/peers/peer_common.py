"""peer_common.py: what the peer loaders (load_checkpoint.py,
load_family_checkpoint.py) share. Runs in the peers venv, CPU only, two
threads: the command line CKPT QUERIES.txt DOCS.txt OUT_DIR, and colbert-ai's
vectors of the texts (Checkpoint.queryFromText / docFromText) saved as
OUT_DIR/colbert_ai_q.npy, colbert_ai_d.npy and colbert_ai_d.lengths.npy."""
import os
import sys
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


def args():
    """(ckpt, queries, docs, out) from the command line; out is made."""
    ckpt, qpath, dpath, out = sys.argv[1:5]
    os.makedirs(out, exist_ok=True)
    queries = [line.rstrip("\n") for line in open(qpath, encoding="utf-8")]
    docs = [line.rstrip("\n") for line in open(dpath, encoding="utf-8")]
    return ckpt, queries, docs, out


def colbert_ai(ckpt, queries, docs, out):
    """colbert-ai's Checkpoint of ckpt, its vectors of the texts saved into out;
    returns (Checkpoint, its ColBERTConfig)."""
    from colbert.infra import ColBERTConfig
    from colbert.modeling.checkpoint import Checkpoint

    cfg = ColBERTConfig.load_from_checkpoint(ckpt)
    ck = Checkpoint(ckpt, colbert_config=cfg, verbose=0)
    with torch.no_grad():
        Q = ck.queryFromText(queries, bsize=16)
        D, lens = ck.docFromText(docs, bsize=16, keep_dims="flatten")
    np.save(os.path.join(out, "colbert_ai_q.npy"), Q.float().numpy())
    np.save(os.path.join(out, "colbert_ai_d.npy"), D.float().numpy())
    np.save(os.path.join(out, "colbert_ai_d.lengths.npy"), np.array(lens, dtype=np.int32))
    print(f"colbert-ai: config query_maxlen {cfg.query_maxlen} doc_maxlen {cfg.doc_maxlen} dim {cfg.dim}; "
          f"Q {tuple(Q.shape)} D {tuple(D.shape)}", file=sys.stderr)
    return ck, cfg
