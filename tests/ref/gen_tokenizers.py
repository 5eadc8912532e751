"""gen_tokenizers.py: tokenizer directories beside BERT's for the tokenizer
parity tests (tests/test_tokenizer.py, tests/test_tokenizer.c), made here
from the shared corpora (no hub download), shaped like the real ones:

  xlmr        sentencepiece Unigram trained with sentencepiece (its default
              nmt_nfkc rules give a real precompiled charsmap), converted by
              transformers' XLMRobertaConverter: Precompiled + Strip +
              Replace normalizers, Metaspace, Unigram, TemplateProcessing
              <s> $A </s>; <pad> <unk> <mask> added as xlm-roberta-base has
              them (<mask> with lstrip)
  xlmr-ws     the same with transformers 5's own XLM-R pre-tokenizer:
              Sequence [WhitespaceSplit, Metaspace]
  xlmr-first  xlm-roberta-base's older normalizer (Precompiled, Replace " {2,}"
              -> " ") with Metaspace prepend_scheme "first", split false
  unigram     a Unigram trained by `tokenizers` (UnigramTrainer) behind
              Nmt + NFKC + Lowercase + Replace, Metaspace, BertProcessing,
              with the 256 "<0xXX>" byte pieces and byte_fallback
  roberta     byte-level BPE trained by `tokenizers` (ByteLevelBPETokenizer),
              RobertaProcessing, <mask> with lstrip; merges as [a, b] pairs
  roberta-str the same with merges as "a b" strings and add_prefix_space
  modernbert  answerdotai/ModernBERT-base's structure: NFC, ByteLevel, BPE
              (continuing_subword_prefix "", end_of_word_suffix "", no unk),
              OLMo's added tokens (|||IP_ADDRESS|||, <|padding|>, runs of
              spaces, normalized), [UNK] [CLS] [SEP] [PAD] [MASK] (lstrip),
              TemplateProcessing [CLS] $A [SEP]
  modernbert-split  the same with Sequence [Split(GPT-2 regex), ByteLevel
              (use_regex false)]

Each directory gets tokenizer.json and tokenizer_config.json, and
added.json: the ids transformers' add_tokens(["[Q] ", "[D] "]) gives (as
PyLate adds its markers), the added_tokens entries and added_tokens_decoder
entries save_pretrained writes for them, and the ids of a few texts with
them, for tests/test_tokenizer.c.

Output: OUT_DIR/tokenizers/NAME/.
usage: gen_tokenizers.py MODEL_DIR DATASETS_DIR OUT_DIR
"""
import base64
import copy
import json
import os
import sys

import sentencepiece as spm
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers.implementations import ByteLevelBPETokenizer
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import XLMRobertaConverter

GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# A few lines in other scripts, so that the vocabularies hold some of them.
MULTI = [
    "Les maladies cardiovasculaires sont la première cause de décès dans le monde.",
    "Die Ernährung beeinflusst das Risiko für Herz-Kreislauf-Erkrankungen erheblich.",
    "La vitamina D y el calcio son esenciales para la salud ósea.",
    "Витамин D важен для здоровья костей и иммунной системы.",
    "营养与健康密切相关，饮食结构影响慢性病风险。",
    "栄養と健康は密接に関係しており、食事は慢性疾患のリスクに影響する。",
    "영양과 건강은 밀접한 관련이 있습니다.",
    "Η διατροφή επηρεάζει την υγεία της καρδιάς.",
    "التغذية تؤثر على صحة القلب.",
    "पोषण और स्वास्थ्य का गहरा संबंध है।",
]

ADD_TEXTS = ["[Q] what is vitamin D?", "[D] Vitamin D deficiency [Q] [D] x", "no markers here",
             "[q] lowercase [Q]  double space [D]"]


def corpus(datasets):
    texts = []
    for ds in ("nfcorpus", "scifact"):
        with open(os.path.join(datasets, ds, "corpus.jsonl"), encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= 1500:
                    break
                doc = json.loads(line)
                texts.append(doc.get("title") or "")
                texts.append(doc["text"])
    return texts + MULTI * 20


def save(tok_json, d, cfg):
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok_json, f, ensure_ascii=False, indent=1)
    with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(dict(cfg, tokenizer_class="PreTrainedTokenizerFast"), f, indent=1)
    # what transformers does when PyLate adds its markers
    ref = PreTrainedTokenizerFast(tokenizer_file=os.path.join(d, "tokenizer.json"), **cfg)
    n_before = len(ref)
    n_new = ref.add_tokens(["[Q] ", "[D] "])
    out = os.path.join(d, "added-by-transformers")
    ref.save_pretrained(out)
    with open(os.path.join(out, "tokenizer.json"), encoding="utf-8") as f:
        saved = json.load(f)
    with open(os.path.join(out, "tokenizer_config.json"), encoding="utf-8") as f:
        saved_cfg = json.load(f)
    ids = {t: ref.convert_tokens_to_ids(t) for t in ("[Q] ", "[D] ")}
    entries = [e for e in saved["added_tokens"] if e["content"] in ids]
    dec = {k: v for k, v in saved_cfg.get("added_tokens_decoder", {}).items() if v["content"] in ids}
    with open(os.path.join(d, "added.json"), "w", encoding="utf-8") as f:
        json.dump({"vocab_size_before": n_before, "added": n_new, "ids": ids, "added_tokens": entries,
                   "added_tokens_decoder": dec, "texts": ADD_TEXTS,
                   "expected": [ref.encode(t, add_special_tokens=False) for t in ADD_TEXTS]},
                  f, ensure_ascii=False, indent=1)


def special(content, **kw):
    return dict({"id": None, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": True}, **kw)


def make_xlmr(texts, tmp, out):
    with open(os.path.join(tmp, "spm_corpus.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(t.replace("\n", " ") for t in texts if t))
    spm.SentencePieceTrainer.train(input=os.path.join(tmp, "spm_corpus.txt"), model_prefix=os.path.join(tmp, "spm"),
                                   vocab_size=4000, model_type="unigram", minloglevel=2)

    class Slow:  # what XLMRobertaConverter reads of the slow tokenizer
        vocab_file = os.path.join(tmp, "spm.model")
        add_prefix_space = True
        legacy = True

        def convert_tokens_to_ids(self, t):
            return {"<s>": 0, "</s>": 2}[t]

    tok = XLMRobertaConverter(Slow()).converted()
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>"])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    j = json.loads(tok.to_str())
    assert j["normalizer"]["normalizers"][0]["type"] == "Precompiled" and j["model"]["type"] == "Unigram"
    assert base64.b64decode(j["normalizer"]["normalizers"][0]["precompiled_charsmap"])
    cfg = {"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>",
           "unk_token": "<unk>", "mask_token": "<mask>"}
    save(j, os.path.join(out, "xlmr"), cfg)
    ws = copy.deepcopy(j)
    ws["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "WhitespaceSplit"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}]}
    save(ws, os.path.join(out, "xlmr-ws"), cfg)
    first = copy.deepcopy(j)
    first["normalizer"] = {"type": "Sequence", "normalizers": [
        j["normalizer"]["normalizers"][0], {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "}]}
    first["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}
    save(first, os.path.join(out, "xlmr-first"), cfg)


def make_unigram(texts, out):
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.Nmt(), normalizers.NFKC(), normalizers.Lowercase(),
                                           normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    specials = ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    # (UnigramTrainer is the slow one: a third of the corpus)
    tok.train_from_iterator(texts[::3], trainers.UnigramTrainer(vocab_size=2000, special_tokens=specials,
                                                           unk_token="<unk>", show_progress=False))
    j = json.loads(tok.to_str())
    low = min(s for _, s in j["model"]["vocab"])
    j["model"]["vocab"] += [[f"<0x{b:02X}>", low - 1.0] for b in range(256)]
    j["model"]["byte_fallback"] = True
    ids = {p: i for i, (p, _) in enumerate(j["model"]["vocab"])}
    j["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", ids["[SEP]"]], "cls": ["[CLS]", ids["[CLS]"]]}
    save(j, os.path.join(out, "unigram"), {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "<pad>",
                                           "unk_token": "<unk>", "mask_token": "[MASK]"})


def make_roberta(texts, out):
    tok = ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train_from_iterator(texts, vocab_size=5000, min_frequency=2, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True)])
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    j = json.loads(tok.to_str())
    assert isinstance(j["model"]["merges"][0], list), "tokenizers now writes merges as pairs"
    cfg = {"bos_token": "<s>", "eos_token": "</s>", "cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>",
           "unk_token": "<unk>", "mask_token": "<mask>"}
    save(j, os.path.join(out, "roberta"), cfg)
    s = copy.deepcopy(j)
    s["model"]["merges"] = [f"{a} {b}" for a, b in j["model"]["merges"]]
    s["pre_tokenizer"]["add_prefix_space"] = True
    save(s, os.path.join(out, "roberta-str"), cfg)


def make_modernbert(texts, out):
    tok = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False,
                               byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=5000, show_progress=False,
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                       special_tokens=["|||IP_ADDRESS|||", "<|padding|>"]))
    j = json.loads(tok.to_str())
    # OLMo's added tokens as ModernBERT-base lists them: |||IP_ADDRESS||| and
    # runs of spaces are normalized, not special; the rest special.
    added = [dict(special("|||IP_ADDRESS|||"), id=0, normalized=True, special=False), dict(special("<|padding|>"), id=1)]
    vocab = j["model"]["vocab"]
    nid = len(vocab)
    for n in range(24, 1, -1):
        added.append(dict(special(" " * n), id=nid, normalized=True, special=False))
        nid += 1
    for name in ("|||EMAIL_ADDRESS|||", "|||PHONE_NUMBER|||"):
        added.append(dict(special(name), id=nid, normalized=True, special=False))
        nid += 1
    for name in ("<|endoftext|>", "[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"):
        added.append(dict(special(name), id=nid, lstrip=name == "[MASK]"))
        nid += 1
    j["added_tokens"] = added
    ids = {a["content"]: a["id"] for a in added}
    j["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                      {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"SpecialToken": {"id": "[SEP]", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}},
                                    {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                           "special_tokens": {n: {"id": n, "ids": [ids[n]], "tokens": [n]} for n in ("[CLS]", "[SEP]")}}
    cfg = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]"}
    save(j, os.path.join(out, "modernbert"), cfg)
    s = copy.deepcopy(j)
    s["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": GPT2_REGEX}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
    save(s, os.path.join(out, "modernbert-split"), cfg)


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: gen_tokenizers.py MODEL_DIR DATASETS_DIR OUT_DIR")
    _, _, datasets, out_dir = sys.argv
    out = os.path.join(out_dir, "tokenizers")
    tmp = os.path.join(out, "tmp")
    os.makedirs(tmp, exist_ok=True)
    texts = corpus(datasets)
    make_xlmr(texts, tmp, out)
    make_unigram(texts, out)
    make_roberta(texts, out)
    make_modernbert(texts, out)


if __name__ == "__main__":
    main()
