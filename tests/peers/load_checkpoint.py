"""load_checkpoint.py: runs in the peers venv (scripts/setup_peers.sh), CPU only.
Loads a checkpoint written by `colbert train` with colbert-ai's Checkpoint,
PyLate's ColBERT and RAGatouille's RAGPretrainedModel, and writes what each
computes for tests/test_train_compat.py to compare with `colbert encode`.
usage: load_checkpoint.py CKPT QUERIES.txt DOCS.txt OUT_DIR
  OUT_DIR/colbert_ai_q.npy  [n, query_maxlen, dim]   Checkpoint.queryFromText
  OUT_DIR/colbert_ai_d.npy  [sum kept, dim] + colbert_ai_d.lengths.npy  docFromText(keep_dims="flatten")
  OUT_DIR/pylate_q.npy, pylate_d.npy, pylate_d.lengths.npy   ColBERT.encode
  OUT_DIR/ragatouille.json  RAGPretrainedModel.from_pretrained(CKPT).rerank of the first query over all
                            documents, and the query/doc lengths it chose for that
"""
import json
import os
import sys
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)
ckpt, qpath, dpath, out = sys.argv[1:5]
os.makedirs(out, exist_ok=True)
queries = [line.rstrip("\n") for line in open(qpath, encoding="utf-8")]
docs = [line.rstrip("\n") for line in open(dpath, encoding="utf-8")]

# colbert-ai
from colbert.infra import ColBERTConfig  # noqa: E402
from colbert.modeling.checkpoint import Checkpoint  # noqa: E402

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

# PyLate
from pylate import models  # noqa: E402

pl = models.ColBERT(model_name_or_path=ckpt, device="cpu")
qe = pl.encode(queries, is_query=True, batch_size=16, convert_to_numpy=True)
de = pl.encode(docs, is_query=False, batch_size=16, convert_to_numpy=True)
np.save(os.path.join(out, "pylate_q.npy"), np.stack(qe).astype(np.float32))
np.save(os.path.join(out, "pylate_d.npy"), np.concatenate(de).astype(np.float32))
np.save(os.path.join(out, "pylate_d.lengths.npy"), np.array([len(x) for x in de], dtype=np.int32))
print(f"pylate: query_length {pl.query_length} document_length {pl.document_length}", file=sys.stderr)

# RAGatouille
from ragatouille import RAGPretrainedModel  # noqa: E402

rag = RAGPretrainedModel.from_pretrained(ckpt, n_gpu=0, verbose=0)
res = rag.rerank(query=queries[0], documents=docs, k=len(docs))
ck = rag.model.inference_ckpt  # rerank sets its own lengths (documents up to the base model's 512 tokens)
with open(os.path.join(out, "ragatouille.json"), "w") as f:
    json.dump({"query_maxlen": ck.query_tokenizer.query_maxlen, "doc_maxlen": ck.doc_tokenizer.doc_maxlen,
               "results": [{"rank": r["rank"], "score": float(r["score"]), "content": r["content"]} for r in res]}, f)
print(f"ragatouille: reranked {len(res)} documents", file=sys.stderr)
