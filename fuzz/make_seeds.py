"""make_seeds.py: (re)generate fuzz/data/ and the seed corpora fuzz/corpus/<target>/
from the real all-MiniLM-L6-v2 files and NFCorpus lines, small and real-looking
(and, for the Unigram and BPE tokenizers, trained here on NFCorpus lines).

    .venv/bin/python fuzz/make_seeds.py MODEL_DIR NFCORPUS_DIR

MODEL_DIR: the all-MiniLM-L6-v2 directory (tests/ref/find_model.py prints it);
NFCORPUS_DIR: ../shared/datasets/nfcorpus. The output is committed; rerun only
to change it. Multi-file inputs are cut at SEP (fuzz.h's FUZZ_SEP).
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

SEP = b"\n--8<--\n"
ROOT = os.path.dirname(os.path.abspath(__file__))
MODEL, NF = sys.argv[1], sys.argv[2]


def out(target, name, data):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def js(o, **kw):
    return json.dumps(o, ensure_ascii=False, **kw).encode()


def lines(path, n):
    with open(path, encoding="utf-8") as f:
        return [next(f) for _ in range(n)]


for sub in ("corpus", "data"):
    shutil.rmtree(os.path.join(ROOT, sub), ignore_errors=True)

# ---- real files ------------------------------------------------------------
tok = json.load(open(os.path.join(MODEL, "tokenizer.json"), encoding="utf-8"))
vocab_lines = open(os.path.join(MODEL, "vocab.txt"), encoding="utf-8").read().split("\n")
tcfg = json.load(open(os.path.join(MODEL, "tokenizer_config.json"), encoding="utf-8"))
config = open(os.path.join(MODEL, "config.json"), "rb").read()
modules = open(os.path.join(MODEL, "modules.json"), "rb").read()
pooling = open(os.path.join(MODEL, "1_Pooling", "config.json"), "rb").read()
sbert = open(os.path.join(MODEL, "sentence_bert_config.json"), "rb").read()
corpus = [json.loads(l) for l in lines(os.path.join(NF, "corpus.jsonl"), 12)]
queries = [json.loads(l) for l in lines(os.path.join(NF, "queries.jsonl"), 12)]
qrels = lines(os.path.join(NF, "qrels", "train.tsv"), 10)
for d in corpus:
    d["text"] = d["text"][:160]


def small_tokenizer(keep):
    """tokenizer.json with the vocabulary entries whose id passes keep(id)."""
    t = json.loads(json.dumps(tok))
    t["model"]["vocab"] = {k: v for k, v in tok["model"]["vocab"].items() if keep(v)}
    t["truncation"] = t["padding"] = None
    return t


# ---- fuzz/data: the two tokenizers of fuzz_tokenizer_encode -------------------
d = os.path.join(ROOT, "data", "tok-json")
os.makedirs(d)
t = small_tokenizer(lambda i: i < 3000)
t["added_tokens"].append({"id": 2999, "content": "<extra>", "single_word": True, "lstrip": True,
                          "rstrip": True, "normalized": False, "special": True})
json.dump(t, open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)
d = os.path.join(ROOT, "data", "tok-vocab")
os.makedirs(d)
open(os.path.join(d, "vocab.txt"), "w", encoding="utf-8").write("\n".join(vocab_lines[:3000]) + "\n")
json.dump({"do_lower_case": False, "strip_accents": False, "tokenize_chinese_chars": True,
           "model_max_length": 512}, open(os.path.join(d, "tokenizer_config.json"), "w"))

# ---- fuzz/data: a Unigram (sentencepiece, with a small charsmap) and a
# byte-level BPE (ModernBERT's shape) for fuzz_tokenizer_encode -------------------
import tempfile

import sentencepiece as spm
from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers.convert_slow_tokenizer import XLMRobertaConverter

nf_texts = [c["title"] + " " + c["text"] for c in corpus] + [q["text"] for q in queries]
nf_texts += [json.loads(l)["text"] for l in lines(os.path.join(NF, "corpus.jsonl"), 400)]
nf_texts += ["Crème brûlée, naïve café — 日本語 テキスト 中文 한국어 !!! ???", "ＦＵＬＬ ｗｉｄｔｈ ①②③ ﬁ Ⅻ"] * 5
with tempfile.TemporaryDirectory() as tmp:
    with open(os.path.join(tmp, "c.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(nf_texts))
    # a few rules instead of nmt_nfkc: a charsmap of a few hundred bytes
    with open(os.path.join(tmp, "rules.tsv"), "w", encoding="utf-8") as f:
        for src, dst in (("FB01", "66 69"), ("FF21", "41"), ("2460", "31"), ("41 30A", "C5"), ("3000", "20"),
                         ("9", "20"), ("200B", "")):
            f.write(f"{src}\t{dst}\n")
    spm.SentencePieceTrainer.train(input=os.path.join(tmp, "c.txt"), model_prefix=os.path.join(tmp, "sp"),
                                   vocab_size=600, model_type="unigram", minloglevel=2,
                                   normalization_rule_tsv=os.path.join(tmp, "rules.tsv"))

    class Slow:
        vocab_file = os.path.join(tmp, "sp.model")
        add_prefix_space = True
        legacy = True

        def convert_tokens_to_ids(self, t):
            return {"<s>": 0, "</s>": 2}[t]

    uni = XLMRobertaConverter(Slow()).converted()
uni.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", AddedToken("<mask>", lstrip=True, special=True)])
uni_json = json.loads(uni.to_str())
d = os.path.join(ROOT, "data", "tok-unigram")
os.makedirs(d)
json.dump(uni_json, open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)
json.dump({"cls_token": "<s>", "sep_token": "</s>", "pad_token": "<pad>", "mask_token": "<mask>",
           "unk_token": "<unk>"}, open(os.path.join(d, "tokenizer_config.json"), "w"))

bpe = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
bpe.normalizer = normalizers.NFC()
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
bpe.train_from_iterator(nf_texts, trainers.BpeTrainer(vocab_size=700, show_progress=False,
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
bpe.add_tokens([AddedToken("   ", normalized=True), AddedToken("  ", normalized=True)])
bpe.add_special_tokens(["[UNK]", "[CLS]", "[SEP]", "[PAD]", AddedToken("[MASK]", lstrip=True, special=True)])
bpe.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[
    ("[CLS]", bpe.token_to_id("[CLS]")), ("[SEP]", bpe.token_to_id("[SEP]"))])
bpe_json = json.loads(bpe.to_str())
d = os.path.join(ROOT, "data", "tok-bpe")
os.makedirs(d)
json.dump(bpe_json, open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8"), ensure_ascii=False)

# ---- tokenizer_load ------------------------------------------------------------
cfg = js({k: tcfg[k] for k in ("do_lower_case", "model_max_length", "strip_accents",
                                "tokenize_chinese_chars", "unk_token", "cls_token", "sep_token",
                                "pad_token", "mask_token") if k in tcfg})
out("tokenizer_load", "json_small", b"J" + js(small_tokenizer(lambda i: i < 120 or 999 <= i < 1100
                                                              or 1996 <= i < 2100)) + SEP + cfg)
t = small_tokenizer(lambda i: i < 110 or 2000 <= i < 2050)
t["normalizer"] = {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": False,
                   "strip_accents": None, "lowercase": False}
t["model"]["max_input_chars_per_word"] = 12
t["model"]["continuing_subword_prefix"] = "@@"
t["added_tokens"].append({"id": 2001, "content": "the", "single_word": True, "lstrip": True,
                          "rstrip": False, "normalized": True, "special": False})
out("tokenizer_load", "json_cased_added", b"J" + js(t))
out("tokenizer_load", "vocab_cfg", b"V" + "\n".join(vocab_lines[:130] + vocab_lines[1996:2060]).encode()
    + b"\n" + SEP + cfg)
dec = {"0": {"content": "[PAD]", "special": True}, "100": {"content": "[UNK]", "special": True},
       "101": {"content": "[CLS]", "special": True, "lstrip": False},
       "102": {"content": "[SEP]", "special": True}, "103": {"content": "[MASK]", "special": True,
                                                             "lstrip": True, "normalized": False}}
out("tokenizer_load", "vocab_decoder", b"V" + "\r\n".join(vocab_lines[:110]).encode() + SEP
    + js({"do_lower_case": True, "added_tokens_decoder": dec, "unk_token": {"content": "[UNK]"}}))
out("tokenizer_load", "vocab_only", b"V" + "\n".join(vocab_lines[:104]).encode())
out("tokenizer_load", "json_unigram", b"J" + js(uni_json))
t = json.loads(json.dumps(bpe_json))
t["model"]["merges"] = [" ".join(m) for m in t["model"]["merges"][:200]]
t["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": " ?[a-z]+|\\s+\\z|[^ a-z]{1,3}"}, "behavior": "MergedWithNext",
     "invert": True}, {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": False}]}
# (HF itself panics on Strip beside normalized added tokens: not here)
t["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Lowercase"}, {"type": "Replace", "pattern": {
                   "String": "ab"}, "content": "x"}, {"type": "NFKD"}, {"type": "Prepend", "prepend": "_"}]}
out("tokenizer_load", "json_bpe", b"J" + js(t))

# ---- tokenizer_encode ----------------------------------------------------------
texts = [q["text"] for q in queries[:4]] + [c["title"] + " " + c["text"] for c in corpus[:3]]
texts += ["Crème brûlée, naïve café — 日本語 テキスト 中文 한국어 !!! ???",
          "[CLS] hello [MASK] world [SEP] <extra> the end",
          "a" * 130 + " superlongwordwithoutanyspacesatallthatexceedsthelimit",
          "\t tabs\u00a0nbsp\u2003em-space\u200bzero-width \x01\x02 control \ufffd",
          "ＦＵＬＬ ｗｉｄｔｈ ＡＢＣ ①②③ ﬁ ligature Ⅻ",
          "e\u0301 combining, Å vs A\u030a, İstanbul ß ẞ"]
for i, s in enumerate(texts):
    out("tokenizer_encode", "text%02d" % i, bytes([(i * 37) & 255]) + s.encode("utf-8"))
out("tokenizer_encode", "invalid_utf8", b"\x41\xc3\x28 \xa0\xa1 \xe2\x28\xa1 \xf0\x90\x28\xbc \xff\xfe end")

# ---- safetensors ---------------------------------------------------------------
with open(os.path.join(MODEL, "model.safetensors"), "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    base = 8 + n
    def tensor(name, count):
        e = header[name]
        f.seek(base + e["data_offsets"][0])
        return np.frombuffer(f.read(4 * count), dtype="<f4").copy()
    ln = tensor("embeddings.LayerNorm.weight", 16)
    emb = tensor("embeddings.word_embeddings.weight", 24)


def st(tensors, meta=None, pad=True):
    """tensors: [(name, dtype, shape, bytes)] -> safetensors bytes."""
    h, data = {}, b""
    if meta is not None:
        h["__metadata__"] = meta
    for name, dt, shape, b in tensors:
        h[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    hb = json.dumps(h).encode()
    if pad:
        hb += b" " * (-len(hb) % 8)
    return struct.pack("<Q", len(hb)) + hb + data


f16 = emb.astype("<f2").tobytes()
bf16 = (emb.view("<u4") >> 16).astype("<u2").tobytes()
out("safetensors", "f32_two", st([("embeddings.LayerNorm.weight", "F32", [16], ln.tobytes()),
                                  ("embeddings.word_embeddings.weight", "F32", [3, 8], emb.tobytes())],
                                 {"format": "pt"}))
out("safetensors", "f16_bf16", st([("a", "F16", [4, 6], f16), ("b", "BF16", [2, 3, 4], bf16)]))
out("safetensors", "ints_empty", st([("ids", "I64", [3], struct.pack("<3q", 1, 2, 3)),
                                     ("mask", "BOOL", [2], b"\x01\x00"), ("empty", "F32", [0, 4], b""),
                                     ("scalar", "F32", [], struct.pack("<f", 1.5))], pad=False))
out("safetensors", "linear", st([("linear.weight", "F32", [2, 12], np.resize(emb, 24).tobytes()),
                                  ("bert.embeddings.LayerNorm.bias", "F32", [4], ln[:4].tobytes())],
                                 {"format": "pt"}))

# ---- npy -----------------------------------------------------------------------
def npy(a, version=1):
    import io
    b = io.BytesIO()
    np.lib.format.write_array(b, a, version=(version, 0))
    return b.getvalue()


out("npy", "f32_3x4", npy(emb[:12].reshape(3, 4)))
out("npy", "f32_v2", npy(ln[:6].reshape(2, 3), 2))
out("npy", "empty", npy(np.zeros((0, 4), "<f4")))
out("npy", "i4", npy(np.arange(6, dtype="<i4").reshape(2, 3)))

# ---- config ------------------------------------------------------------------
out("config", "minilm", config + SEP + modules + SEP + pooling + SEP + sbert)
c = json.loads(config)
c.update({"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072,
          "model_type": "bert", "architectures": ["BertModel"], "position_embedding_type": "absolute"})
out("config", "bert_base", js(c, indent=2))
cls_pool = json.loads(pooling)
cls_pool.update({"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True})
mods = json.loads(modules)
mods = [m for m in mods if not m["type"].endswith("Normalize")]
out("config", "cls_pooling", js(c) + SEP + js(mods) + SEP + js(cls_pool) + SEP + b'{"max_seq_length": 128}')
c2 = json.loads(config)
c2.update({"model_type": "electra", "embedding_size": 384, "hidden_act": "gelu_new"})
out("config", "electra", js(c2))

# ---- metadata ----------------------------------------------------------------
meta = {"query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_token": "[Q]",
        "doc_token": "[D]", "ncells": None, "centroid_score_threshold": None, "ndocs": None,
        "load_index_with_mmap": False, "index_path": None, "nbits": 2, "kmeans_niters": 4,
        "resume": False, "similarity": "cosine", "bsize": 32, "accumsteps": 1, "lr": 5e-06,
        "maxsteps": 500000, "save_every": None, "warmup": None, "warmup_bert": None, "relu": False,
        "nway": 2, "use_ib_negatives": True, "reranker": False, "distillation_alpha": 1.0,
        "ignore_scores": False, "model_name": "my-colbert", "query_maxlen": 32,
        "attend_to_mask_tokens": False, "interaction": "colbert", "dim": 128, "doc_maxlen": 256,
        "mask_punctuation": True, "checkpoint": "sentence-transformers/all-MiniLM-L6-v2",
        "triples": "data/triples.train.colbert.jsonl", "collection": "data/corpus.train.colbert.tsv",
        "queries": "data/queries.train.colbert.tsv", "index_name": None, "overwrite": False,
        "root": ".ragatouille/", "experiment": "colbert", "index_root": None, "name": "2024-01/01/12.00.00",
        "rank": 0, "nranks": 1, "amp": True, "gpus": 0, "avoid_fork_if_possible": False,
        "meta": {"hostname": "localhost", "git_branch": None, "git_hash": None,
                 "git_commit_datetime": None, "current_datetime": "Jan 01, 2024 ; 12:00PM UTC",
                 "cmd": "colbert train", "version": "colbert-v0.4", "step": 120,
                 "val_ndcg10": 0.3312}}
out("metadata", "colbert_train", js(meta, indent=4))
out("metadata", "nested_config", js({"config": {"dim": 96, "query_maxlen": 24, "doc_maxlen": 180,
                                                "mask_punctuation": 1, "relu": True}}))
out("metadata", "minimal", b'{"dim": 64}')

# ---- prepare ---------------------------------------------------------------------
ids = {q["_id"]: q["text"] for q in queries}
docs = {c["_id"]: c["title"] + " " + c["text"] for c in corpus}
dl = list(docs.values())
pairs = [js([q["text"], dl[i % len(dl)]]) for i, q in enumerate(queries[:6])]
out("prepare", "pairs_jsonl", bytes([0]) + b"\n".join(pairs) + b"\n" + SEP
    + b"\n".join(js({"title": c["title"], "text": c["text"][:80]}) for c in corpus[6:9]) + b"\n")
trip = [js([q["text"], [dl[i % 12], dl[(i + 1) % 12]], dl[(i + 5) % 12]]) for i, q in enumerate(queries[:5])]
out("prepare", "triplets_lists", bytes([0x0c | 0x10]) + b"\n".join(trip) + b"\n")
lab = ["query\tpassage\tlabel"] + ["%s\t%s\t%d" % (q["text"], dl[i % 12][:90], i % 2) for i, q in enumerate(queries[:8])]
out("prepare", "labeled_tsv", bytes([0x01 | 0x08 | 0x20]) + "\n".join(lab).encode() + b"\n" + SEP
    + "\n".join("%d\t%s" % (i, c["text"][:70]) for i, c in enumerate(corpus[8:11])).encode() + b"\n")
out("prepare", "pairs_dict_plain", bytes([0x02 | 0x30 | 0x40])
    + b"\n".join(js([q["text"], {"content": dl[i % 12][:100]}]) for i, q in enumerate(queries[:4]))
    + b"\n" + SEP + "\n".join(c["text"][:60] for c in corpus[:3]).encode() + b"\n")
beir_c = b"\n".join(js(c) for c in corpus[:10]) + b"\n"
beir_q = b"\n".join(js({"_id": q["_id"], "text": q["text"]}) for q in queries[:6]) + b"\n"
beir_r = "query-id\tcorpus-id\tscore\n" + "".join(
    "%s\t%s\t%d\n" % (q["_id"], corpus[(i * 3 + k) % 10]["_id"], 1 + (k == 0)) for i, q in enumerate(queries[:6])
    for k in range(2))
out("prepare", "beir", bytes([0x03 | 0x10]) + beir_c + SEP + beir_q + SEP + beir_r.encode())
out("prepare", "beir_trec", bytes([0x03]) + beir_c + SEP + beir_q + SEP
    + "".join("%s 0 %s 1\n" % (q["_id"], corpus[i]["_id"]) for i, q in enumerate(queries[:4])).encode())

# ---- train_data ------------------------------------------------------------------
qtsv = "".join("%d\t%s\n" % (i, q["text"]) for i, q in enumerate(queries[:6])).encode()
ctsv = "".join("%d\t%s\n" % (i, c["text"][:100]) for i, c in enumerate(corpus[:10])).encode()
trip = b"".join(js([i % 6, (i * 3) % 10, (i * 7 + 1) % 10]) + b"\n" for i in range(8))
out("train_data", "prepare_set", qtsv + SEP + ctsv + SEP + trip)
scored = b"".join(js([i % 6, [(i * 3) % 10, 9.5], [(i + 4) % 10, 3.25], [(i + 7) % 10, -1.0e-3]]) + b"\n"
                  for i in range(6))
titled = "".join("%d\t%s\t%s\n" % (i, c["text"][:80], c["title"][:40]) for i, c in enumerate(corpus[:10]))
out("train_data", "scored_titles", "".join("%d\t%s\n" % (1000 + i * 7, q["text"]) for i, q in
                                           enumerate(queries[:6])).encode() + SEP + titled.encode() + SEP
    + b"".join(js([1000 + (i % 6) * 7, [(i * 3) % 10, 9.5], [(i + 4) % 10, 3.25]]) + b"\n" for i in range(6)))
out("train_data", "scored_nway", qtsv + SEP + ctsv + SEP + scored)


def h64(b):   # the manifest's hash (data.c cb_data_hash_*), for a seed that matches
    M = (1 << 64) - 1
    def word(h, w):
        h ^= (w * 0x9e3779b97f4a7c15) & M
        h = (((h << 31) | (h >> 33)) & M) * 0xbf58476d1ce4e5b9 & M
        return h
    h = 0
    full = len(b) // 8 * 8
    for i in range(0, full, 8):
        h = word(h, int.from_bytes(b[i:i + 8], "little"))
    h = word(word(h, int.from_bytes(b[full:], "little")), len(b))
    h ^= h >> 30; h = h * 0xbf58476d1ce4e5b9 & M
    h ^= h >> 27; h = h * 0x94d049bb133111eb & M
    return h ^ (h >> 31)


man = {"format": "colbert.c prepare manifest", "version": 1,
       "files": {n: {"bytes": len(b), "hash": "%016x" % h64(b)} for n, b in
                 (("queries.train.colbert.tsv", qtsv), ("corpus.train.colbert.tsv", ctsv),
                  ("triples.train.colbert.jsonl", trip))}}
out("train_data", "with_manifest", qtsv + SEP + ctsv + SEP + trip + SEP + js(man, indent=2, sort_keys=True))

total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(ROOT) for f in fs
            if "/corpus/" in dp + "/" or "/data/" in dp + "/")
print("fuzz/corpus and fuzz/data: %d bytes" % total)
