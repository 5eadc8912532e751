"""load_checkpoint.py: runs in the peers venv (scripts/setup_peers.sh), CPU only.
Loads a checkpoint written by `colbert train` with colbert-ai's Checkpoint,
PyLate's ColBERT and RAGatouille's RAGPretrainedModel, and writes what each
computes for tests/test_train_compat.py to compare with `colbert encode`.
usage: load_checkpoint.py CKPT QUERIES.txt DOCS.txt OUT_DIR
  OUT_DIR/colbert_ai_q.npy  [n, query_maxlen, dim]   Checkpoint.queryFromText
  OUT_DIR/colbert_ai_d.npy  [sum kept, dim] + colbert_ai_d.lengths.npy  docFromText(keep_dims="flatten")
  OUT_DIR/pylate_q.npy, pylate_d.npy, pylate_d.lengths.npy   ColBERT.encode
  OUT_DIR/pylate.json       whether PyLate loaded it as its own model (modules.json,
                            config_sentence_transformers.json), its prefix and lengths
  OUT_DIR/ragatouille.json  RAGPretrainedModel.from_pretrained(CKPT).rerank of the first query over all
                            documents, and the query/doc lengths it chose for that
"""
import json
import os
import sys

from peer_common import args, colbert_ai, np

ckpt, queries, docs, out = args()
colbert_ai(ckpt, queries, docs, out)

# PyLate
from pylate import models  # noqa: E402

pl = models.ColBERT(model_name_or_path=ckpt, device="cpu")
qe = pl.encode(queries, is_query=True, batch_size=16, convert_to_numpy=True)
de = pl.encode(docs, is_query=False, batch_size=16, convert_to_numpy=True)
np.save(os.path.join(out, "pylate_q.npy"), np.stack(qe).astype(np.float32))
np.save(os.path.join(out, "pylate_d.npy"), np.concatenate(de).astype(np.float32))
np.save(os.path.join(out, "pylate_d.lengths.npy"), np.array([len(x) for x in de], dtype=np.int32))
with open(os.path.join(out, "pylate.json"), "w") as f:   # loaded as its own model: config_sentence_transformers read
    json.dump({"own": "query_prefix" in getattr(pl, "_model_config", {}), "query_prefix": pl.query_prefix,
               "query_length": pl.query_length, "document_length": pl.document_length}, f)
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
