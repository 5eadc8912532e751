"""gen_bert.py: PyTorch reference tensors for tests/test_bert.c.

Runs transformers' BertModel (eval mode, fp32, CPU) on the real
all-MiniLM-L6-v2 weights over real NFCorpus documents of mixed length
(some longer than 256 tokens, up to 512) and over ColBERT-style queries
padded with [MASK] and an attention mask of 0 on the padding, and writes
ids, lengths, masks and the last hidden states of every real token to
OUT_DIR/bert_ref.safetensors.
usage: gen_bert.py MODEL_DIR DATASETS_DIR OUT_DIR
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import BertModel, BertTokenizerFast


def main():
    model_dir, datasets, out_dir = sys.argv[1:4]
    torch.manual_seed(0)
    tok = BertTokenizerFast.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()

    docs = []
    with open(os.path.join(datasets, "nfcorpus", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append((d["title"] + " " + d["text"]).strip())
    # 20 documents spread over the length range: the 4 longest, then evenly
    # spaced by length, then the 2 shortest.
    lens = [len(tok(d)["input_ids"]) for d in docs[:2000]]
    order = np.argsort(lens)
    pick = list(order[-4:]) + list(order[np.linspace(0, len(order) - 5, 14).astype(int)]) + list(order[:2])
    texts = [docs[i] for i in pick]

    ids_all, len_all, mask_all, hid_all = [], [], [], []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, truncation=True, max_length=512, return_tensors="pt")
            h = model(**enc).last_hidden_state[0]
            ids_all.append(enc["input_ids"][0].numpy())
            mask_all.append(np.ones(len(enc["input_ids"][0]), np.int32))
            hid_all.append(h.numpy())
        # ColBERT-style queries: [CLS] [unused0] pieces [SEP] [MASK]... to 32,
        # attention mask 0 on the [MASK] padding.
        queries = ["what are the health effects of red meat?",
                   "vitamin d deficiency and depression in older adults",
                   "statins"]
        qid = tok.convert_tokens_to_ids("[unused0]")
        for q in queries:
            pieces = tok(q, add_special_tokens=False)["input_ids"][:29]
            ids = [tok.cls_token_id, qid] + pieces + [tok.sep_token_id]
            mask = [1] * len(ids) + [0] * (32 - len(ids))
            ids = ids + [tok.mask_token_id] * (32 - len(ids))
            h = model(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([mask])).last_hidden_state[0]
            ids_all.append(np.array(ids))
            mask_all.append(np.array(mask, np.int32))
            hid_all.append(h.numpy())

    # a padded batch through HF too, to check that padding changes nothing
    # on the real tokens (what packing relies on)
    out = {
        "ids": np.concatenate(ids_all).astype(np.int32),
        "lengths": np.array([len(x) for x in ids_all], np.int32),
        "mask": np.concatenate(mask_all).astype(np.int32),
        "hidden": np.concatenate(hid_all).astype(np.float32),
    }
    os.makedirs(out_dir, exist_ok=True)
    save_file(out, os.path.join(out_dir, "bert_ref.safetensors"))
    print(f"gen_bert: {len(ids_all)} sequences, {out['ids'].size} tokens, "
          f"longest {out['lengths'].max()}", file=sys.stderr)


if __name__ == "__main__":
    main()
