"""gen_roberta.py: small RoBERTa and XLM-RoBERTa models and their PyTorch
reference tensors, for tests/test_roberta.c.

No package ships real XLM-R weights, so the models are made here: for each
family, a tokenizer of that family's kind trained on NFCorpus texts
(byte-level BPE for roberta, Unigram for xlm-roberta, with <s> <pad> </s>
<unk> <mask> as ids 0..4), PyLate's ColBERT markers "[Q] " and "[D] " added
to it, and a randomly initialised transformers RobertaModel /
XLMRobertaModel (seeded, 2 layers, hidden 64, 4 heads, 514 positions,
pad_token_id 1, type_vocab_size 1, layer_norm_eps 1e-5) whose embeddings
were resized for the markers as PyLate does (resize_token_embeddings).
Each model directory is a sentence-transformers directory too (mean
pooling): OUT_DIR/roberta_model, OUT_DIR/xlmr_model; OUT_DIR/roberta_plain,
OUT_DIR/xlmr_plain are the same encoders before the markers were added (no
"[Q] " / "[D] ", vocab_size = the tokenizer's), as a plain encoder comes
from the hub.

References, per family F in (roberta, xlmr), into OUT_DIR/roberta_ref.safetensors:
  F.ids, F.lengths, F.mask, F.hidden   transformers' last hidden states (eval)
      of real NFCorpus documents (some truncated at 512 tokens: positions up
      to 513) and ColBERT queries (<s> [Q] pieces </s> <mask>... to 32,
      attention mask 0 on the <mask> padding);
  F.n_docs, F.embed     sentence-transformers' embeddings of the documents;
  F.q_ids, F.q_mask, F.d_ids, F.d_len, F.linear, F.config, F.vocab
      a ColBERT training batch (8 NFCorpus triplets, nway 2, laid out as
      colbert-ai's tokenizers do with the markers) and the ids the layout
      uses (cls sep mask pad q d, then the punctuation skiplist);
  F.<case>.loss, F.<case>.grad.<name>   loss and every parameter gradient of
      one training step (dropout off) for case ce (n-way cross-entropy) and
      ib (plus in-batch negatives), colbert-ai's formulas
      (gen_colbert_head.py, gen_train_step.py).
usage: gen_roberta.py MODEL_DIR DATASETS_DIR OUT_DIR (MODEL_DIR unused: the
models are made here)
"""
import json
import os
import shutil
import string
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from tokenizers import ByteLevelBPETokenizer, SentencePieceUnigramTokenizer
from transformers import (RobertaConfig, RobertaModel, RobertaTokenizerFast, XLMRobertaConfig, XLMRobertaModel,
                          XLMRobertaTokenizerFast)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_colbert_head as ref  # noqa: E402
import gen_train_step as step  # noqa: E402

B, NWAY, QMAX, DMAX, DIM = ref.B, ref.NWAY, ref.QMAX, ref.DMAX, ref.DIM
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
FAMILIES = {
    # prefix of the reference keys: model_type, config, model, tokenizer class, tokenizer trainer, seed
    "roberta": ("roberta", RobertaConfig, RobertaModel, RobertaTokenizerFast, "bpe", 11),
    "xlmr": ("xlm-roberta", XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast, "unigram", 12),
}


def corpus_texts(datasets, n):
    out = []
    with open(os.path.join(datasets, "nfcorpus", "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            out.append((d["title"] + " " + d["text"]).strip())
            if len(out) == n:
                break
    return out


def make_model(key, datasets, model_dir):
    """Tokenizer, model, sentence-transformers files into model_dir."""
    model_type, cfg_cls, model_cls, tok_cls, kind, seed = FAMILIES[key]
    texts = corpus_texts(datasets, 3000)
    if kind == "bpe":
        t = ByteLevelBPETokenizer()
        t.train_from_iterator(texts, vocab_size=3000, special_tokens=SPECIALS, show_progress=False)
    else:
        t = SentencePieceUnigramTokenizer()
        t.train_from_iterator(texts, vocab_size=3000, special_tokens=SPECIALS, unk_token="<unk>",
                              show_progress=False)
    tok = tok_cls(tokenizer_object=t._tokenizer, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                  cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                  model_max_length=512)
    assert [tok.convert_tokens_to_ids(s) for s in SPECIALS] == [0, 1, 2, 3, 4]
    cfg = cfg_cls(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=128, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                  pad_token_id=1, bos_token_id=0, eos_token_id=2, initializer_range=0.1)
    torch.manual_seed(seed)
    model = model_cls(cfg)
    # the plain encoder, without markers (colbert train adds them, as PyLate)
    plain_dir = os.path.join(os.path.dirname(model_dir), f"{key}_plain")
    shutil.rmtree(plain_dir, ignore_errors=True)
    model.save_pretrained(plain_dir)
    tok.save_pretrained(plain_dir)
    st_files(plain_dir)
    # PyLate's markers: resize to the tokenizer, add the tokens, resize again
    tok.add_tokens(["[Q] ", "[D] "])
    model.resize_token_embeddings(len(tok))
    shutil.rmtree(model_dir, ignore_errors=True)
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    st_files(model_dir)
    return tok


def st_files(model_dir):
    """The sentence-transformers files (mean pooling)."""
    with open(os.path.join(model_dir, "modules.json"), "w") as f:
        json.dump([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}], f)
    os.makedirs(os.path.join(model_dir, "1_Pooling"), exist_ok=True)
    with open(os.path.join(model_dir, "1_Pooling", "config.json"), "w") as f:
        json.dump({"word_embedding_dimension": 64, "pooling_mode_cls_token": False,
                   "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
                   "pooling_mode_mean_sqrt_len_tokens": False}, f)
    with open(os.path.join(model_dir, "sentence_bert_config.json"), "w") as f:
        json.dump({"max_seq_length": 512, "do_lower_case": False}, f)


def load(key, model_dir, train):
    _, cfg_cls, model_cls, _, _, _ = FAMILIES[key]
    cfg = cfg_cls.from_pretrained(model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    m = model_cls.from_pretrained(model_dir, config=cfg, attn_implementation="eager", add_pooling_layer=False)
    return m.train() if train else m.eval()


def forward_refs(key, tok, model_dir, datasets, out):
    from sentence_transformers import SentenceTransformer
    model = load(key, model_dir, False)
    docs = corpus_texts(datasets, 2000)
    lens = [len(tok(d)["input_ids"]) for d in docs]
    order = np.argsort(lens)
    # the 3 longest (truncated at 512), 8 spread over the range, the shortest
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
    out[f"{key}.ids"] = np.concatenate(ids_all).astype(np.int32)
    out[f"{key}.lengths"] = np.array([len(x) for x in ids_all], np.int32)
    out[f"{key}.mask"] = np.concatenate(mask_all).astype(np.int32)
    out[f"{key}.hidden"] = np.concatenate(hid_all).astype(np.float32)
    out[f"{key}.n_docs"] = np.array([len(texts)], np.int32)
    out[f"{key}.embed"] = emb.astype(np.float32)
    print(f"gen_roberta: {key}: {len(ids_all)} sequences, longest {max(len(x) for x in ids_all)}", file=sys.stderr)


def tensorize(tok, texts, marker, maxlen, queries):
    """colbert-ai's QueryTokenizer / DocTokenizer with the "[Q] " / "[D] "
    markers: <s> marker pieces </s>; queries padded with <mask> to maxlen."""
    obj = tok(texts, padding="max_length" if queries else "longest", truncation=True, return_tensors="pt",
              max_length=maxlen - 1)
    mid = tok.convert_tokens_to_ids(marker)
    ids, mask = obj["input_ids"], obj["attention_mask"]
    ids = torch.cat([ids[:, :1], torch.full_like(ids[:, :1], mid), ids[:, 1:]], 1)
    mask = torch.cat([mask[:, :1], torch.ones_like(mask[:, :1]), mask[:, 1:]], 1)
    if queries:
        ids[ids == tok.pad_token_id] = tok.mask_token_id
    return ids, mask


def step_refs(key, tok, model_dir, datasets, out):
    queries, corpus, pos = ref.load_data(datasets)
    trip = ref.pick_triplets(queries, corpus, pos)
    q_ids, q_mask = tensorize(tok, [t[0] for t in trip], "[Q] ", QMAX, True)
    d_ids, d_mask = tensorize(tok, [d for t in trip for d in t[1:]], "[D] ", DMAX, False)
    punct = []
    for symbol in string.punctuation:
        p = tok.encode(symbol, add_special_tokens=False)
        if p and p[0] not in punct:
            punct.append(p[0])
    skiplist = {w: True for symbol in string.punctuation for w in [symbol]}
    skiplist.update({p: True for p in punct})
    H = 64
    linear0 = torch.randn(DIM, H, generator=torch.Generator().manual_seed(3)) * 0.1
    d_len = d_mask.sum(1)
    out[f"{key}.q_ids"] = q_ids.numpy().astype(np.int32)
    out[f"{key}.q_mask"] = q_mask.numpy().astype(np.int32)
    out[f"{key}.d_len"] = d_len.numpy().astype(np.int32)
    out[f"{key}.d_ids"] = np.concatenate([d_ids[i, :d_len[i]].numpy() for i in range(d_ids.size(0))]).astype(np.int32)
    out[f"{key}.linear"] = linear0.numpy()
    out[f"{key}.config"] = np.array([B, NWAY, QMAX, DMAX, DIM], np.int32)
    out[f"{key}.vocab"] = np.array([tok.cls_token_id, tok.sep_token_id, tok.mask_token_id, tok.pad_token_id,
                                    tok.convert_tokens_to_ids("[Q] "), tok.convert_tokens_to_ids("[D] ")] + punct,
                                   np.int32)
    for name, ib in [("ce", 0), ("ib", 1)]:
        model = load(key, model_dir, True)
        linear = linear0.clone().requires_grad_(True)
        loss = step.loss_of(model, linear, q_ids, q_mask, d_ids, d_mask, skiplist, tok.pad_token_id, 0, ib, None,
                            1.0, 1)
        out[f"{key}.{name}.loss"] = np.array([loss], np.float64)
        out.update({f"{key}.{name}.{k}": v for k, v in step.grads(model, linear).items()})
        print(f"gen_roberta: {key}: step {name}: loss {loss:.6f}", file=sys.stderr)


def main():
    _, datasets, out_dir = sys.argv[1:4]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(1)
    out = {}
    for key in FAMILIES:
        model_dir = os.path.join(out_dir, f"{key}_model")
        tok = make_model(key, datasets, model_dir)
        forward_refs(key, tok, model_dir, datasets, out)
        step_refs(key, tok, model_dir, datasets, out)
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    save_file(out, os.path.join(out_dir, "roberta_ref.safetensors"))


if __name__ == "__main__":
    main()
