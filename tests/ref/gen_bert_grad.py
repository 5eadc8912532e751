"""gen_bert_grad.py: PyTorch gradients of every BERT parameter, for
tests/test_bert_grad.c.

transformers' BertModel (train() with dropout probabilities set to 0, fp32,
CPU) on the real all-MiniLM-L6-v2 weights; input: 6 real NFCorpus documents
(truncated to 160 tokens) and 2 ColBERT-style queries with [MASK] padding
under attention mask 0. Loss = sum over real tokens of <last_hidden, R> with
a fixed random R. Writes ids, lengths, mask, R, the last hidden states, the loss and the gradient of
every parameter (Hugging Face names) to OUT_DIR/bert_grad_ref.safetensors.
usage: gen_bert_grad.py MODEL_DIR DATASETS_DIR OUT_DIR
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import BertConfig, BertModel, BertTokenizerFast


def main():
    model_dir, datasets, out_dir = sys.argv[1:4]
    torch.manual_seed(0)
    tok = BertTokenizerFast.from_pretrained(model_dir)
    cfg = BertConfig.from_pretrained(model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertModel.from_pretrained(model_dir, config=cfg, attn_implementation="eager",
                                      add_pooling_layer=False).train()

    docs = []
    with open(os.path.join(datasets, "nfcorpus", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            docs.append((d["title"] + " " + d["text"]).strip())
            if len(docs) == 40:
                break
    seqs = []  # (ids, mask)
    for t in docs[::7][:6]:
        ids = tok(t, truncation=True, max_length=160)["input_ids"]
        seqs.append((ids, [1] * len(ids)))
    qid = tok.convert_tokens_to_ids("[unused0]")
    for q in ["do cholesterol statin drugs cause breast cancer?", "exercise and cognition"]:
        p = tok(q, add_special_tokens=False)["input_ids"][:29]
        ids = [tok.cls_token_id, qid] + p + [tok.sep_token_id]
        mask = [1] * len(ids) + [0] * (32 - len(ids))
        seqs.append((ids + [tok.mask_token_id] * (32 - len(ids)), mask))

    g = torch.Generator().manual_seed(1)
    H = cfg.hidden_size
    loss = 0.0
    R_all = []
    for ids, mask in seqs:
        R_all.append(torch.randn(len(ids), H, generator=g))
    total = None
    hidden = []
    for (ids, mask), R in zip(seqs, R_all):
        h = model(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([mask])).last_hidden_state[0]
        hidden.append(h.detach().clone())
        # the sum in float64: PyTorch's float32 sum of ~10^5 products of
        # either sign is off by more than the forward's own error (1.5e-5
        # relative on Intel AVX-512); the gradient is R either way
        l = (h.double() * R.double()).sum()
        total = l if total is None else total + l
    total.backward()

    out = {
        "ids": np.concatenate([np.array(s[0]) for s in seqs]).astype(np.int32),
        "lengths": np.array([len(s[0]) for s in seqs], np.int32),
        "mask": np.concatenate([np.array(s[1]) for s in seqs]).astype(np.int32),
        "R": torch.cat(R_all).numpy().astype(np.float32),
        "hidden": torch.cat(hidden).numpy().astype(np.float32),
        "loss": np.array([total.item()], np.float32),
    }
    for name, p in model.named_parameters():
        out["grad." + name] = p.grad.numpy().astype(np.float32)
    os.makedirs(out_dir, exist_ok=True)
    save_file(out, os.path.join(out_dir, "bert_grad_ref.safetensors"))
    print(f"gen_bert_grad: {len(seqs)} sequences, {out['ids'].size} tokens, loss {total.item():.4f}",
          file=sys.stderr)


if __name__ == "__main__":
    main()
