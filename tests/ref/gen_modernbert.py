"""gen_modernbert.py: a small ModernBERT model and its PyTorch reference
tensors, for tests/test_modernbert.c.

No package here ships ModernBERT weights, so the model is made here: a
byte-level BPE tokenizer trained on NFCorpus texts with ModernBERT's
special tokens ([UNK] [CLS] [SEP] [PAD] [MASK] added after the vocabulary,
[MASK] with lstrip, the post-processor "[CLS] $A [SEP]"), PyLate's ColBERT
markers "[Q] " and "[D] " added to it, and a randomly initialised
transformers ModernBertModel (seeded; 3 layers, hidden 64, 4 heads,
intermediate 96, 512 positions, global attention every 2 layers so that
layers 0 and 2 are global and layer 1 local, local_attention 8: a window of
|i - j| <= 4 that cuts every real sequence) whose embeddings were resized
for the markers as PyLate does (resize_token_embeddings).
OUT_DIR/modernbert_model is a sentence-transformers directory too (mean
pooling); OUT_DIR/modernbert_plain is the encoder before the markers were
added; OUT_DIR/modernbert_oldcfg is modernbert_model with its config.json in
the older keys (global_attn_every_n_layers, global_rope_theta,
local_rope_theta, no layer_types / rope_parameters), as configs on the Hub
still are.

References, into OUT_DIR/modernbert_ref.safetensors (prefix "mb."):
  ids, lengths, mask, hidden   transformers' last hidden states (eval, eager
      attention) of real NFCorpus documents (the 3 longest truncated at 512
      tokens) and ColBERT queries ([CLS] [Q] pieces [SEP] [MASK]... to 32,
      attention mask 0 on the [MASK] padding: in the local layer most of
      those rows see no key and get transformers' uniform row);
  n_docs, embed, doc_text.<k>   sentence-transformers' embeddings of the
      documents, and their texts (UTF-8);
  text.<k>, text_ids.<k>   a few texts and the tokenizer's ids for them
      (special tokens included), for the C tokenizer;
  q_ids, q_mask, d_ids, d_len, linear, config, vocab    a ColBERT training
      batch (8 NFCorpus triplets, nway 2, colbert-ai's layout with the
      markers) and its ids (cls sep mask pad q d, then punctuation);
  <case>.loss, <case>.grad.<name>   loss and every parameter gradient of one
      training step (dropout off) for case ce and ib, colbert-ai's formulas
      (gen_colbert_head.py, gen_train_step.py);
  adam.losses, adam.param.<name>   10 optimizer steps with in-batch
      negatives as colbert-ai takes them (clip_grad_norm_ 2.0, AdamW lr 1e-4
      wd 0.01, linear warmup 3 and decay to 0 at 12; gen_train_step.py's
      adam_steps on this model): each step's loss and the final parameters.
usage: gen_modernbert.py MODEL_DIR DATASETS_DIR OUT_DIR (MODEL_DIR unused)
"""
import json
import os
import shutil
import string
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from tokenizers import AddedToken, ByteLevelBPETokenizer
from tokenizers.processors import TemplateProcessing
from transformers import (ModernBertConfig, ModernBertModel, PreTrainedTokenizerFast,
                          get_linear_schedule_with_warmup)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_colbert_head as ref  # noqa: E402
import gen_roberta as rob  # noqa: E402
import gen_train_step as step  # noqa: E402

B, NWAY, QMAX, DMAX, DIM = ref.B, ref.NWAY, ref.QMAX, ref.DMAX, ref.DIM
KEY = "mb"
H = 64


def make_tokenizer(datasets):
    texts = rob.corpus_texts(datasets, 3000)
    t = ByteLevelBPETokenizer()
    t.train_from_iterator(texts, vocab_size=3000, special_tokens=["<|endoftext|>", "<|padding|>"],
                          show_progress=False)
    t.add_special_tokens(["[UNK]", "[CLS]", "[SEP]", "[PAD]", AddedToken("[MASK]", lstrip=True)])
    cls, sep = t.token_to_id("[CLS]"), t.token_to_id("[SEP]")
    t.post_processor = TemplateProcessing(single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
                                          special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return PreTrainedTokenizerFast(tokenizer_object=t._tokenizer, unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]", model_max_length=512)


def make_model(datasets, model_dir):
    tok = make_tokenizer(datasets)
    cfg = ModernBertConfig(vocab_size=len(tok), hidden_size=H, num_hidden_layers=3, num_attention_heads=4,
                           intermediate_size=96, max_position_embeddings=512, global_attn_every_n_layers=2,
                           local_attention=8, pad_token_id=tok.pad_token_id, cls_token_id=tok.cls_token_id,
                           sep_token_id=tok.sep_token_id, bos_token_id=tok.cls_token_id,
                           eos_token_id=tok.sep_token_id, initializer_range=0.1, norm_eps=1e-5)
    assert cfg.layer_types == ["full_attention", "sliding_attention", "full_attention"], cfg.layer_types
    torch.manual_seed(13)
    model = ModernBertModel(cfg)
    # LayerNorm weights start at 1: give them some spread, so that their
    # gradients and their place in the layout are tested
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "norm" in n:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    plain_dir = os.path.join(os.path.dirname(model_dir), "modernbert_plain")
    shutil.rmtree(plain_dir, ignore_errors=True)
    model.save_pretrained(plain_dir)
    tok.save_pretrained(plain_dir)
    hub_tokenizer_class(plain_dir)
    rob.st_files(plain_dir)
    tok.add_tokens(["[Q] ", "[D] "])
    model.resize_token_embeddings(len(tok))
    shutil.rmtree(model_dir, ignore_errors=True)
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    hub_tokenizer_class(model_dir)
    rob.st_files(model_dir)
    # the same model with the older config keys
    old_dir = os.path.join(os.path.dirname(model_dir), "modernbert_oldcfg")
    shutil.rmtree(old_dir, ignore_errors=True)
    shutil.copytree(model_dir, old_dir)
    with open(os.path.join(old_dir, "config.json")) as f:
        c = json.load(f)
    rp = c.pop("rope_parameters")
    c.pop("layer_types")
    c["global_attn_every_n_layers"] = 2
    c["global_rope_theta"] = rp["full_attention"]["rope_theta"]
    c["local_rope_theta"] = rp["sliding_attention"]["rope_theta"]
    with open(os.path.join(old_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    return tok


def hub_tokenizer_class(model_dir):
    """tokenizer_class and model_input_names as answerdotai/ModernBERT-base's
    tokenizer_config.json has them (transformers 5 writes its own
    "TokenizersBackend", which older transformers, the peers' 4.x, cannot
    load; without model_input_names a PreTrainedTokenizerFast returns
    token_type_ids, which ModernBertModel does not take)."""
    path = os.path.join(model_dir, "tokenizer_config.json")
    with open(path) as f:
        c = json.load(f)
    c["tokenizer_class"] = "PreTrainedTokenizerFast"
    c["model_input_names"] = ["input_ids", "attention_mask"]
    with open(path, "w") as f:
        json.dump(c, f, indent=2)


def load(model_dir, train):
    m = ModernBertModel.from_pretrained(model_dir, attn_implementation="eager", embedding_dropout=0.0,
                                        attention_dropout=0.0, mlp_dropout=0.0)
    return m.train() if train else m.eval()


def forward_refs(tok, model_dir, datasets, out):
    from sentence_transformers import SentenceTransformer
    model = load(model_dir, False)
    docs = rob.corpus_texts(datasets, 2000)
    lens = [len(tok(d)["input_ids"]) for d in docs]
    order = np.argsort(lens)
    pick = list(order[-3:]) + list(order[np.linspace(0, len(order) - 4, 8).astype(int)]) + list(order[:1])
    texts = [docs[i] for i in pick]
    ids_all, mask_all, hid_all = [], [], []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, truncation=True, max_length=512, return_tensors="pt")
            ids_all.append(enc["input_ids"][0].numpy())
            mask_all.append(np.ones(enc["input_ids"].shape[1], np.int32))
            hid_all.append(model(**enc).last_hidden_state[0].numpy())
        qmark = tok.convert_tokens_to_ids("[Q] ")
        for q in ["what are the health effects of red meat?", "vitamin d deficiency and depression",
                  "statins"]:
            pieces = tok(q, add_special_tokens=False)["input_ids"][:QMAX - 3]
            ids = [tok.cls_token_id, qmark] + pieces + [tok.sep_token_id]
            mask = [1] * len(ids) + [0] * (QMAX - len(ids))
            ids = ids + [tok.mask_token_id] * (QMAX - len(ids))
            h = model(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([mask])).last_hidden_state[0]
            ids_all.append(np.array(ids))
            mask_all.append(np.array(mask, np.int32))
            hid_all.append(h.numpy())
    st = SentenceTransformer(model_dir, device="cpu")
    emb = st.encode(texts, batch_size=4, convert_to_numpy=True)
    out[f"{KEY}.ids"] = np.concatenate(ids_all).astype(np.int32)
    out[f"{KEY}.lengths"] = np.array([len(x) for x in ids_all], np.int32)
    out[f"{KEY}.mask"] = np.concatenate(mask_all).astype(np.int32)
    out[f"{KEY}.hidden"] = np.concatenate(hid_all).astype(np.float32)
    out[f"{KEY}.n_docs"] = np.array([len(texts)], np.int32)
    for k, t in enumerate(texts):
        out[f"{KEY}.doc_text.{k}"] = np.frombuffer(t.encode("utf-8"), np.uint8).copy()
    out[f"{KEY}.embed"] = emb.astype(np.float32)
    # texts for the C tokenizer: documents (untruncated, short ones), odd
    # spacing, [MASK] with the spaces before it, unicode
    samples = [docs[order[0]], docs[order[len(order) // 2]], "  Vitamin D3 [MASK] deficiency!! (n=12)  ",
               "caf\u00e9 na\u00efve \u2014 50% of the \U0001F600 cases [MASK][MASK] end", "[CLS] x [SEP]"]
    for k, s in enumerate(samples):
        out[f"{KEY}.text.{k}"] = np.frombuffer(s.encode("utf-8"), np.uint8).copy()
        out[f"{KEY}.text_ids.{k}"] = np.array(tok(s)["input_ids"], np.int32)
    out[f"{KEY}.n_text"] = np.array([len(samples)], np.int32)
    print(f"gen_modernbert: {len(ids_all)} sequences, longest {max(len(x) for x in ids_all)}", file=sys.stderr)


def step_refs(tok, model_dir, datasets, out):
    queries, corpus, pos = ref.load_data(datasets)
    trip = ref.pick_triplets(queries, corpus, pos)
    q_ids, q_mask = rob.tensorize(tok, [t[0] for t in trip], "[Q] ", QMAX, True)
    d_ids, d_mask = rob.tensorize(tok, [d for t in trip for d in t[1:]], "[D] ", DMAX, False)
    punct = []
    for symbol in string.punctuation:
        p = tok.encode(symbol, add_special_tokens=False)
        if p and p[0] not in punct:
            punct.append(p[0])
    skiplist = {w: True for symbol in string.punctuation for w in [symbol]}
    skiplist.update({p: True for p in punct})
    linear0 = torch.randn(DIM, H, generator=torch.Generator().manual_seed(3)) * 0.1
    d_len = d_mask.sum(1)
    out[f"{KEY}.q_ids"] = q_ids.numpy().astype(np.int32)
    out[f"{KEY}.q_mask"] = q_mask.numpy().astype(np.int32)
    out[f"{KEY}.d_len"] = d_len.numpy().astype(np.int32)
    out[f"{KEY}.d_ids"] = np.concatenate([d_ids[i, :d_len[i]].numpy() for i in range(d_ids.size(0))]).astype(np.int32)
    out[f"{KEY}.linear"] = linear0.numpy()
    out[f"{KEY}.config"] = np.array([B, NWAY, QMAX, DMAX, DIM], np.int32)
    out[f"{KEY}.vocab"] = np.array([tok.cls_token_id, tok.sep_token_id, tok.mask_token_id, tok.pad_token_id,
                                    tok.convert_tokens_to_ids("[Q] "), tok.convert_tokens_to_ids("[D] ")] + punct,
                                   np.int32)
    for name, ib in [("ce", 0), ("ib", 1)]:
        model = load(model_dir, True)
        linear = linear0.clone().requires_grad_(True)
        loss = step.loss_of(model, linear, q_ids, q_mask, d_ids, d_mask, skiplist, tok.pad_token_id, 0, ib, None,
                            1.0, 1)
        out[f"{KEY}.{name}.loss"] = np.array([loss], np.float64)
        out.update({f"{KEY}.{name}.{k}": v for k, v in step.grads(model, linear).items()})
        print(f"gen_modernbert: step {name}: loss {loss:.6f}", file=sys.stderr)

    # 10 optimizer steps with in-batch negatives
    model = load(model_dir, True)
    linear = linear0.clone().requires_grad_(True)
    params = list(model.parameters()) + [linear]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=12)
    losses = []
    for _ in range(10):
        losses.append(step.loss_of(model, linear, q_ids, q_mask, d_ids, d_mask, skiplist, tok.pad_token_id, 0, 1,
                                   None, 1.0, 1))
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    out[f"{KEY}.adam.losses"] = np.array(losses, np.float64)
    out.update({f"{KEY}.adam.param.{n}": p.detach().numpy().copy() for n, p in model.named_parameters()})
    out[f"{KEY}.adam.param.linear"] = linear.detach().numpy().copy()
    print(f"gen_modernbert: 10 AdamW steps: losses {losses[0]:.4f} .. {losses[-1]:.4f}", file=sys.stderr)


def main():
    _, datasets, out_dir = sys.argv[1:4]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    out = {}
    model_dir = os.path.join(out_dir, "modernbert_model")
    tok = make_model(datasets, model_dir)
    forward_refs(tok, model_dir, datasets, out)
    step_refs(tok, model_dir, datasets, out)
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    save_file(out, os.path.join(out_dir, "modernbert_ref.safetensors"))


if __name__ == "__main__":
    main()
