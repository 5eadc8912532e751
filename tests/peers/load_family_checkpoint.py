"""load_family_checkpoint.py: runs in the peers venv (scripts/setup_peers.sh),
CPU only. Loads a ColBERT checkpoint of a RoBERTa family written by
`colbert train` (its markers "[Q] " / "[D] " added to the tokenizer, the
embeddings grown for them) with colbert-ai's Checkpoint and PyLate's ColBERT,
and writes what each computes for tests/test_family_train.py to compare with
`colbert encode --colbert query|doc`.
usage: load_family_checkpoint.py CKPT QUERIES.txt DOCS.txt OUT_DIR
  OUT_DIR/colbert_ai_q.npy  [n, query_maxlen, dim]   Checkpoint.queryFromText
  OUT_DIR/colbert_ai_d.npy  [sum kept, dim] + .lengths.npy   docFromText(keep_dims="flatten")
  OUT_DIR/pylate_q.npy      ColBERT.encode(is_query=True)
  OUT_DIR/pylate_d.npy + .lengths.npy   ColBERT.encode of the documents with
      colbert-ai's punctuation skiplist (the first piece of each symbol,
      encoded; colbert.c's), given to PyLate as skiplist_words
  OUT_DIR/info.json         the marker ids each peer uses, the vocabulary
      sizes, and the document lengths PyLate keeps with its own default
      skiplist (convert_tokens_to_ids of each symbol: on these vocabularies
      not colbert-ai's)
"""
import json
import os
import string
import sys

from peer_common import args, colbert_ai, np

ckpt, queries, docs, out = args()
info = {}
ck, _ = colbert_ai(ckpt, queries, docs, out)
tok = ck.query_tokenizer.tok
info["colbert_ai"] = {"q_marker": ck.query_tokenizer.Q_marker_token_id, "d_marker": ck.doc_tokenizer.D_marker_token_id,
                      "len_tokenizer": len(tok), "rows": ck.bert.get_input_embeddings().weight.shape[0]}
punct = []
for s in string.punctuation:
    p = tok.encode(s, add_special_tokens=False)
    if p and p[0] not in punct:
        punct.append(p[0])
skip_words = tok.convert_ids_to_tokens(punct)

from pylate import models  # noqa: E402

pl = models.ColBERT(model_name_or_path=ckpt, device="cpu")
info["pylate"] = {"q_marker": pl.query_prefix_id, "d_marker": pl.document_prefix_id, "query_prefix": pl.query_prefix,
                  "document_prefix": pl.document_prefix, "len_tokenizer": len(pl.tokenizer),
                  "rows": pl[0].auto_model.get_input_embeddings().weight.shape[0]}
qe = pl.encode(queries, is_query=True, batch_size=16, convert_to_numpy=True)
de_default = pl.encode(docs, is_query=False, batch_size=16, convert_to_numpy=True)
info["pylate"]["default_skiplist_lengths"] = [len(x) for x in de_default]
pm = models.ColBERT(model_name_or_path=ckpt, device="cpu", skiplist_words=skip_words)
de = pm.encode(docs, is_query=False, batch_size=16, convert_to_numpy=True)
np.save(os.path.join(out, "pylate_q.npy"), np.stack(qe).astype(np.float32))
np.save(os.path.join(out, "pylate_d.npy"), np.concatenate(de).astype(np.float32))
np.save(os.path.join(out, "pylate_d.lengths.npy"), np.array([len(x) for x in de], dtype=np.int32))
with open(os.path.join(out, "info.json"), "w") as f:
    json.dump(info, f)
print(json.dumps(info)[:400], file=sys.stderr)
