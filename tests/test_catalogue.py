"""test_catalogue.py: a catalogue of hostile inputs, one case per way a file
the program reads (or an option that names one) can be wrong.

Every case runs the ASan/UBSan build ($COLBERT_SAN_BIN) in a directory of
its own and must end with:
  - the expected exit status (1 for bad input, 2 for a bad command line),
    never a signal, never 0;
  - exactly one error line, "colbert: error: ...", last on stderr (train
    prints its set-up notes before it), naming the file and, where the
    format has them, the line or byte (the `names` of the case);
  - no sanitizer report (leaks included) and nothing on stdout;
  - no output left behind: the case's directory is byte for byte what it
    was before the run (a refused train leaves no run directory, a refused
    encode or prepare no file, not even a temporary one).

The cases complement tests/test_bad_input.py (damaged safetensors headers
and config files under encode), tests/test_cli.py (option syntax),
tests/test_prepare.py (malformed records), tests/test_eval.py (BEIR
directories) and tests/test_train.py (train's own refusals); none of theirs
is repeated here. Models are copies of all-MiniLM-L6-v2 ($COLBERT_MODEL)
with symbolic links for the files left intact.
"""
import json
import os
import shutil
import struct
import subprocess
import time

import numpy as np
import pytest

SAN_BIN = os.environ["COLBERT_SAN_BIN"]
MODEL = os.environ["COLBERT_MODEL"]
ROOT = os.path.join(os.environ["COLBERT_TMP"], "catalogue")
os.makedirs(ROOT, exist_ok=True)

# ---- building broken inputs ------------------------------------------------------


def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), f.read()


def st_bytes(header, data):
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


_REAL = {}


def real_st():
    if not _REAL:
        _REAL["st"] = read_st(os.path.join(MODEL, "model.safetensors"))
    return _REAL["st"]


def set_values(header, data, name, index, values):
    """data with tensor `name` (F32) element `index` onward set to values."""
    e = header[name]
    data = bytearray(data)
    off = e["data_offsets"][0] + 4 * index
    data[off:off + 4 * len(values)] = np.asarray(values, dtype="<f4").tobytes()
    return bytes(data)


def model(name, files=None, base=MODEL):
    """A model directory ROOT/models/name: every entry of base linked, except
    `files` {relative path: bytes or str} written instead."""
    d = os.path.join(ROOT, "models", name)
    if os.path.isdir(d):
        return d
    files = files or {}
    os.makedirs(d)
    tops = {p.split("/")[0] for p in files}
    for entry in os.listdir(base):
        src = os.path.join(base, entry)
        if entry not in tops:
            os.symlink(os.path.realpath(src), os.path.join(d, entry))
        elif os.path.isdir(src):   # a directory with one file replaced
            os.makedirs(os.path.join(d, entry))
            for sub in os.listdir(src):
                if f"{entry}/{sub}" not in files:
                    os.symlink(os.path.realpath(os.path.join(src, sub)), os.path.join(d, entry, sub))
    for rel, content in files.items():
        p = os.path.join(d, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
    return d


def json_of(rel, base=MODEL):
    with open(os.path.join(base, rel), encoding="utf-8") as f:
        return json.load(f)


def tokenizer_with(edit):
    t = json_of("tokenizer.json")
    edit(t)
    return json.dumps(t)


def colbert_ckpt():
    """A ColBERT checkpoint: the encoder plus linear.weight [128, 384] and an
    artifact.metadata saying so."""
    header, data = real_st()
    lin = np.random.default_rng(5).normal(0, 0.02, (128, 384)).astype("<f4").tobytes()
    h = json.loads(json.dumps(header))
    h.pop("__metadata__", None)
    h["linear.weight"] = {"dtype": "F32", "shape": [128, 384], "data_offsets": [len(data), len(data) + len(lin)]}
    meta = {"dim": 128, "query_maxlen": 32, "doc_maxlen": 180, "mask_punctuation": True, "similarity": "cosine"}
    return model("colbert", {"model.safetensors": st_bytes(h, data + lin), "artifact.metadata": json.dumps(meta)})


def colbert_variant(name, files):
    return model(name, files, base=colbert_ckpt())


def write(case_dir, name, content):
    p = os.path.join(case_dir, name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        f.write(content.encode() if isinstance(content, str) else content)
    return p


QUERIES = "".join(f"{i}\tquery number {i} about topic {i % 5}\n" for i in range(20))
CORPUS = "".join(f"{i}\tdocument {i} talks about topic {i % 5} and more\n" for i in range(40))
TRIPLES = "".join(json.dumps([i % 20, (2 * i) % 40, (2 * i + 1) % 40]) + "\n" for i in range(40))


def train_data(case_dir, queries=QUERIES, corpus=CORPUS, triples=TRIPLES, sub="data"):
    write(case_dir, f"{sub}/queries.train.colbert.tsv", queries)
    write(case_dir, f"{sub}/corpus.train.colbert.tsv", corpus)
    write(case_dir, f"{sub}/triples.train.colbert.jsonl", triples)
    return os.path.join(case_dir, sub)


TRAIN = ["--batch-size", "4", "--doc-maxlen", "32", "--query-maxlen", "16", "--maxsteps", "2",
         "--val-fraction", "0", "--quiet", "--threads", "2", "--output-dir", "runs"]


def train_args(data="data", pretrained=None, extra=()):
    return ["train", "--model-name", "run", "--pretrained", pretrained or MODEL, "--data", data, *TRAIN, *extra]


BEIR_CORPUS = "".join(json.dumps({"_id": f"d{i}", "title": f"title {i}", "text": f"text of document {i}"}) + "\n"
                      for i in range(12))
BEIR_QUERIES = "".join(json.dumps({"_id": f"q{i}", "text": f"query {i}"}) + "\n" for i in range(4))
BEIR_QRELS = "query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(4))


def beir(case_dir, corpus=BEIR_CORPUS, queries=BEIR_QUERIES, qrels=BEIR_QRELS, split="train", sub="beir"):
    write(case_dir, f"{sub}/corpus.jsonl", corpus)
    write(case_dir, f"{sub}/queries.jsonl", queries)
    write(case_dir, f"{sub}/qrels/{split}.tsv", qrels)
    return os.path.join(case_dir, sub)


def pairs_file(case_dir, name="pairs.jsonl", n=6):
    return write(case_dir, name, "".join(json.dumps([f"question {i}", f"answer passage {i}"]) + "\n"
                                         for i in range(n)))


ENCODE_IN = "a short query\nanother text about cats\n"


def encode_args(model_dir, *extra, out="out.npy"):
    return ["encode", "--model", model_dir, "--input", "in.txt", "--output", out, "--quiet", "--threads", "2", *extra]


# ---- the catalogue ------------------------------------------------------------------
# Each case: setup(case_dir) -> argv (after the binary); `names`: what the
# error line must contain (the file, and its line or byte where there is
# one); `rc`: the exit status.

CASES = {}
LOCKED = object()   # setup returns (LOCKED, argv, lock path): run while another process holds the lock


def case(name, names, rc=1):
    def deco(setup):
        CASES[name] = (setup, names, rc)
        return setup
    return deco


# -- tokenizer files: ids past the embeddings (encode, tokenize, eval, train, mining) --

def big_id_model():
    return model("tok_big_id", {"tokenizer.json": tokenizer_with(lambda t: t["model"]["vocab"].update(hello=40000))})


@case("encode: tokenizer id beyond vocab_size", ["tok_big_id/tokenizer.json", "token 'hello' has id 40000",
                                                 "vocab_size 30522"])
def _(d):
    write(d, "in.txt", "hello world\n")
    return encode_args(big_id_model())


@case("encode --colbert: tokenizer id beyond vocab_size", ["tok_big_id/tokenizer.json", "id 40000"])
def _(d):
    write(d, "in.txt", "hello world\n")
    return encode_args(big_id_model(), "--colbert", "query")


@case("eval: tokenizer id beyond vocab_size", ["tok_big_id/tokenizer.json", "id 40000"])
def _(d):
    return ["eval", "--model", big_id_model(), "--dataset", beir(d, split="test"), "--quiet"]


@case("train: tokenizer id beyond vocab_size", ["tok_big_id/tokenizer.json", "id 40000"])
def _(d):
    train_data(d)
    return train_args(pretrained=big_id_model())


@case("prepare mining: tokenizer id beyond vocab_size", ["tok_big_id/tokenizer.json", "id 40000"])
def _(d):
    return ["prepare", "--train-data", pairs_file(d), "--out", "out", "--miner-model", big_id_model(),
            "--num-new-negatives", "2", "--quiet"]


@case("tokenizer.json: added token id beyond vocab_size",
      ["tok_added_big/tokenizer.json", "token '[NEW]' has id 30600"])
def _(d):
    def edit(t):
        t["added_tokens"].append({"id": 30600, "content": "[NEW]", "single_word": False, "lstrip": False,
                                  "rstrip": False, "normalized": False, "special": True})
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("tok_added_big", {"tokenizer.json": tokenizer_with(edit)}))


@case("tokenizer.json: negative max_input_chars_per_word",
      ["tok_neg_max/tokenizer.json", "max_input_chars_per_word must be an integer >= 1, found -1"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("tok_neg_max", {"tokenizer.json": tokenizer_with(
        lambda t: t["model"].update(max_input_chars_per_word=-1))}))


@case("tokenizer.json: two tokens with one id", ["tok_same_id/tokenizer.json", "both have id 7592"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("tok_same_id", {"tokenizer.json": tokenizer_with(
        lambda t: t["model"]["vocab"].update(zzzz=7592))}))


@case("tokenizer.json: id past 2^24", ["tok_huge_id/tokenizer.json", "'hello' has no valid id"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("tok_huge_id", {"tokenizer.json": tokenizer_with(
        lambda t: t["model"]["vocab"].update(hello=2 ** 31 - 1))}))


@case("tokenizer.json: a list, not an object", ["tok_list/tokenizer.json", "expected a JSON object"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("tok_list", {"tokenizer.json": "[1, 2, 3]"}))


@case("tokenizer.json: unk_token not in the vocabulary", ["tok_no_unk/tokenizer.json", "unk_token '[NOPE]'"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("tok_no_unk", {"tokenizer.json": tokenizer_with(
        lambda t: t["model"].update(unk_token="[NOPE]"))}))


@case("tokenizer.json: continuing_subword_prefix too long", ["tok_prefix/tokenizer.json", "too long"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("tok_prefix", {"tokenizer.json": tokenizer_with(
        lambda t: t["model"].update(continuing_subword_prefix="#" * 100))}))


@case("tokenizer.json: added token id not an integer", ["tok_added_str/tokenizer.json", "added_tokens[0]"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("tok_added_str", {"tokenizer.json": tokenizer_with(
        lambda t: t["added_tokens"][0].update(id="0"))}))


def vocab_only(name, vocab_text, config=None):
    files = {"vocab.txt": vocab_text}
    if config is not None:
        files["tokenizer_config.json"] = config
    d = model(name, files)
    if os.path.lexists(os.path.join(d, "tokenizer.json")):
        os.unlink(os.path.join(d, "tokenizer.json"))
    return d


def real_vocab():
    with open(os.path.join(MODEL, "vocab.txt"), encoding="utf-8") as f:
        return f.read().split("\n")


@case("vocab.txt: a repeated line", ["vocab_dup/vocab.txt:2001:", "token 'the' repeats line 1997"])
def _(d):
    v = real_vocab()
    v[2000] = "the"
    write(d, "in.txt", ENCODE_IN)
    return ["tokenize", "--model", vocab_only("vocab_dup", "\n".join(v)), "in.txt"]


@case("vocab.txt: a NUL byte", ["vocab_nul/vocab.txt:5:", "NUL byte"])
def _(d):
    v = real_vocab()
    v[4] = "ab\0cd"
    write(d, "in.txt", ENCODE_IN)
    return ["tokenize", "--model", vocab_only("vocab_nul", "\n".join(v)), "in.txt"]


@case("tokenizer_config.json: invalid JSON (vocab.txt model)", ["tokcfg_bad/tokenizer_config.json", "line 1"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return ["tokenize", "--model", vocab_only("tokcfg_bad", "\n".join(real_vocab()), '{"do_lower_case": tru}'),
            "in.txt"]


@case("tokenizer_config.json: added_tokens_decoder key not a number",
      ["tokcfg_dec/tokenizer_config.json", "added token id 'abc' is not a number"])
def _(d):
    cfg = json.dumps({"added_tokens_decoder": {"abc": {"content": "[X]"}}})
    write(d, "in.txt", ENCODE_IN)
    return ["tokenize", "--model", vocab_only("tokcfg_dec", "\n".join(real_vocab()), cfg), "in.txt"]


# -- model.safetensors: values -------------------------------------------------------------

def nan_model(name, tensor, index, value):
    header, data = real_st()
    return model(name, {"model.safetensors": st_bytes(header, set_values(header, data, tensor, index, [value]))})


@case("model.safetensors: a NaN weight (encode)",
      ["st_nan/model.safetensors", "tensor 'embeddings.word_embeddings.weight': element [7592, 3] is NaN", "byte"])
def _(d):
    write(d, "in.txt", "hello world\n")
    return encode_args(nan_model("st_nan", "embeddings.word_embeddings.weight", 7592 * 384 + 3, np.nan))


@case("model.safetensors: an infinite weight (train)",
      ["st_inf/model.safetensors", "tensor 'encoder.layer.2.output.LayerNorm.bias': element [5] is infinite"])
def _(d):
    train_data(d)
    return train_args(pretrained=nan_model("st_inf", "encoder.layer.2.output.LayerNorm.bias", 5, np.inf))


@case("model.safetensors: a NaN weight (eval)", ["st_nan/model.safetensors", "is NaN"])
def _(d):
    return ["eval", "--model", nan_model("st_nan", "embeddings.word_embeddings.weight", 7592 * 384 + 3, np.nan),
            "--dataset", beir(d, split="test"), "--quiet"]


@case("model.safetensors: a NaN weight (prepare mining)", ["st_nan/model.safetensors", "is NaN"])
def _(d):
    return ["prepare", "--train-data", pairs_file(d), "--out", "out", "--quiet", "--num-new-negatives", "2",
            "--miner-model", nan_model("st_nan", "embeddings.word_embeddings.weight", 7592 * 384 + 3, np.nan)]


@case("model.safetensors: a float64 weight", ["st_f64/model.safetensors", "'embeddings.LayerNorm.bias'",
                                               "dtype F64, expected a float tensor"])
def _(d):
    header, data = real_st()
    h = json.loads(json.dumps(header))
    extra = np.zeros(384, "<f8").tobytes()   # the tensor's 384 values as doubles, after the rest
    h["embeddings.LayerNorm.bias"] = {"dtype": "F64", "shape": [384],
                                      "data_offsets": [len(data), len(data) + len(extra)]}
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("st_f64", {"model.safetensors": st_bytes(h, data + extra)}))


@case("model.safetensors: a repeated tensor name", ["st_dup/model.safetensors", "invalid JSON header", "byte"])
def _(d):
    header, data = real_st()
    h = json.dumps(header).encode()
    k = b'"embeddings.LayerNorm.bias": '
    i = h.index(k)
    j = h.index(b"}", i) + 1
    h = h[:j] + b", " + h[i:j] + h[j:]
    h += b" " * (-len(h) % 8)
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("st_dup", {"model.safetensors": struct.pack("<Q", len(h)) + h + data}))


@case("model.safetensors: a shape whose size overflows", ["st_overflow/model.safetensors", "too large"])
def _(d):
    header, data = real_st()
    h = json.loads(json.dumps(header))
    h["embeddings.LayerNorm.bias"]["shape"] = [2 ** 62, 2 ** 62]
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("st_overflow", {"model.safetensors": st_bytes(h, data)}))


@case("model.safetensors: a negative dimension", ["st_negdim/model.safetensors", "shape[0] is not a non-negative"])
def _(d):
    header, data = real_st()
    h = json.loads(json.dumps(header))
    h["embeddings.LayerNorm.bias"]["shape"] = [-384]
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("st_negdim", {"model.safetensors": st_bytes(h, data)}))


# -- config.json and the sentence-transformers files -----------------------------------------

def config_with(**kw):
    c = json_of("config.json")
    c.update(kw)
    return json.dumps(c)


@case("config.json: vocab_size 0", ["cfg_vocab0/config.json", "vocab_size"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("cfg_vocab0", {"config.json": config_with(vocab_size=0)}))


@case("config.json: heads do not divide hidden_size", ["cfg_heads/config.json", "num_attention_heads"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("cfg_heads", {"config.json": config_with(num_attention_heads=5)}))


@case("config.json: pad_token_id past the vocabulary", ["cfg_pad/config.json", "pad_token_id 40000"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("cfg_pad", {"config.json": config_with(pad_token_id=40000)}))


@case("config.json: a huge layer count", ["cfg_layers/config.json", "num_hidden_layers"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("cfg_layers", {"config.json": config_with(num_hidden_layers=10 ** 9)}))


@case("sentence_bert_config.json: negative max_seq_length",
      ["sbert_neg/sentence_bert_config.json", "max_seq_length"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("sbert_neg", {"sentence_bert_config.json": '{"max_seq_length": -3}'}))


@case("modules.json: an unsupported module", ["mods_dense/modules.json", "module 2 'sentence_transformers.models.Dense'"])
def _(d):
    mods = json_of("modules.json")
    mods[2] = {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("mods_dense", {"modules.json": json.dumps(mods)}))


@case("1_Pooling/config.json: not JSON", ["pool_bad/1_Pooling/config.json", "invalid JSON"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(model("pool_bad", {"1_Pooling/config.json": "{'pooling_mode_mean_tokens': True}"}))


# -- ColBERT checkpoints: artifact.metadata and linear.weight ------------------------------------

@case("artifact.metadata: dim disagrees with linear.weight",
      ["meta_dim/artifact.metadata: dim 96 disagrees with linear.weight", "[128, 384]"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(colbert_variant("meta_dim", {"artifact.metadata": '{"dim": 96, "doc_maxlen": 180}'}),
                       "--colbert", "query")


@case("artifact.metadata: dim disagrees with linear.weight (train)", ["meta_dim/artifact.metadata", "dim 96"])
def _(d):
    train_data(d)
    return train_args(pretrained=colbert_variant("meta_dim", {"artifact.metadata": '{"dim": 96}'}))


@case("artifact.metadata: invalid JSON", ["meta_json/artifact.metadata:2:", "invalid JSON"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(colbert_variant("meta_json", {"artifact.metadata": '{"dim": 128,\n "doc_maxlen": }'}),
                       "--colbert", "doc")


@case("artifact.metadata: a string where a number goes",
      ["meta_type/artifact.metadata", "\"query_maxlen\" must be an integer"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(colbert_variant("meta_type", {"artifact.metadata": '{"query_maxlen": "32"}'}),
                       "--colbert", "query")


@case("artifact.metadata: query_maxlen out of range", ["meta_range/artifact.metadata", "query_maxlen -5"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(colbert_variant("meta_range", {"artifact.metadata": '{"query_maxlen": -5}'}),
                       "--colbert", "query")


@case("model.safetensors: NaN in linear.weight", ["colbert_nan/model.safetensors", "tensor 'linear.weight'",
                                                   "is NaN"])
def _(d):
    header, data = read_st(os.path.join(colbert_ckpt(), "model.safetensors"))
    write(d, "in.txt", ENCODE_IN)
    return encode_args(colbert_variant("colbert_nan", {"model.safetensors": st_bytes(
        header, set_values(header, data, "linear.weight", 1000, [np.nan]))}), "--colbert", "doc")


@case("model weights that overflow on a text (finite, but NaN vectors)",
      ["text 1: the model's output is not finite"])
def _(d):
    header, data = real_st()
    vocab = real_vocab()
    data = set_values(header, data, "embeddings.position_embeddings.weight", 2 * 384, [1e38])
    data = set_values(header, data, "embeddings.word_embeddings.weight", vocab.index("zebra") * 384,
                      [np.finfo(np.float32).max])
    write(d, "in.txt", "zebra crossing\nplain text\n")
    return encode_args(model("overflow", {"model.safetensors": st_bytes(header, data)}), "--colbert", "query")


# -- encode: input and output ---------------------------------------------------------------------

@case("encode: --input is a directory", ["indir: read error: Is a directory"])
def _(d):
    os.makedirs(os.path.join(d, "indir"))
    return ["encode", "--model", MODEL, "--input", "indir", "--output", "out.npy", "--quiet"]


@case("encode: --output in a missing directory", ["no/such/dir/out.npy", "cannot create"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(MODEL, out="no/such/dir/out.npy")


@case("encode: --output is a directory", ["out.npy: is a directory"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    os.makedirs(os.path.join(d, "out.npy"))
    return encode_args(MODEL)


@case("encode --token-vectors: --output in a missing directory", ["missing/v.safetensors", "cannot create"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    return encode_args(MODEL, "--token-vectors", out="missing/v.safetensors")


@case("encode --colbert doc: OUT.lengths.npy is a directory", ["out.lengths.npy: is a directory"])
def _(d):
    write(d, "in.txt", ENCODE_IN)
    os.makedirs(os.path.join(d, "out.lengths.npy"))
    return encode_args(MODEL, "--colbert", "doc")


@case("tokenize: FILE missing", ["nothere.txt", "cannot open"])
def _(d):
    return ["tokenize", "--model", MODEL, "nothere.txt"]


# -- prepare: records, corpora, BEIR, embeddings, output ------------------------------------------

@case("prepare: a NUL byte in a TSV field", ["nul.tsv:2:", "NUL byte at column 8"])
def _(d):
    return ["prepare", "--train-data", write(d, "nul.tsv", b"q one\tp one\tn one\nq two\tp\0two\tn two\n"),
            "--out", "out", "--no-mining", "--quiet"]


@case("prepare: a NUL byte in a JSONL record", ["nul.jsonl:1:", "NUL byte"])
def _(d):
    return ["prepare", "--train-data", write(d, "nul.jsonl", b'["q", "p\0"]\n'), "--out", "out", "--no-mining"]


@case("prepare: a NUL byte in a corpus file", ["corpus.txt:2:", "NUL byte"])
def _(d):
    return ["prepare", "--train-data", pairs_file(d), "--corpus", write(d, "corpus.txt", b"doc a\ndoc\0b\n"),
            "--out", "out", "--no-mining"]


@case("prepare: corpus JSONL line without text", ["corpus.jsonl:2:", "text"])
def _(d):
    c = write(d, "corpus.jsonl", '{"text": "doc a"}\n{"title": "no text here"}\n')
    return ["prepare", "--train-data", pairs_file(d), "--corpus", c, "--out", "out", "--no-mining"]


@case("prepare: corpus JSONL invalid JSON", ["corpus.jsonl:1:", "invalid JSON at column"])
def _(d):
    c = write(d, "corpus.jsonl", '{"text": "doc a",}\n')
    return ["prepare", "--train-data", pairs_file(d), "--corpus", c, "--out", "out", "--no-mining"]


@case("prepare: --train-data is a directory", ["pairs_dir: is a directory"])
def _(d):
    os.makedirs(os.path.join(d, "pairs_dir"))
    return ["prepare", "--train-data", "pairs_dir", "--out", "out", "--no-mining"]


@case("prepare: --out is a file", ["out: exists and is not a directory"])
def _(d):
    write(d, "out", "i am a file\n")
    return ["prepare", "--train-data", pairs_file(d), "--out", "out", "--no-mining", "--quiet",
            "--num-new-negatives", "1"]


@case("prepare: the first query has no passage, no new negatives (memcpy from NULL before)",
      ["no training triplet"])
def _(d):
    f = write(d, "empty_first.jsonl", '["q0", []]\n["what is a cat", "a cat is an animal"]\n')
    return ["prepare", "--train-data", f, "--num-new-negatives", "0", "--no-mining", "--out", "out"]


@case("prepare --beir: a repeated _id in corpus.jsonl", ["beir/corpus.jsonl:3:", "d1"])
def _(d):
    corpus = BEIR_CORPUS.split("\n")
    corpus[2] = json.dumps({"_id": "d1", "text": "again"})
    return ["prepare", "--beir", beir(d, corpus="\n".join(corpus)), "--out", "out", "--no-mining"]


@case("prepare --beir: queries.jsonl line without text", ["beir/queries.jsonl:2:", "text"])
def _(d):
    q = BEIR_QUERIES.split("\n")
    q[1] = json.dumps({"_id": "q1"})
    return ["prepare", "--beir", beir(d, queries="\n".join(q)), "--out", "out", "--no-mining"]


@case("prepare --beir: a NUL byte in qrels", ["beir/qrels/train.tsv:3:", "NUL byte"])
def _(d):
    return ["prepare", "--beir", beir(d, qrels="query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td\0\t1\n"),
            "--out", "out", "--no-mining"]


@case("prepare --beir: a qrels score that is no number", ["beir/qrels/train.tsv:3:", "score"])
def _(d):
    return ["prepare", "--beir", beir(d, qrels="query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td1\tmany\n"),
            "--out", "out", "--no-mining"]


def saved_embeddings(d, files):
    """A --save-embeddings directory for pairs_file's data, with files replaced."""
    src = os.path.join(ROOT, "embeddings")
    if not os.path.isdir(src):
        os.makedirs(os.path.join(ROOT, "emb_case"), exist_ok=True)
        pf = pairs_file(os.path.join(ROOT, "emb_case"))
        r = subprocess.run([os.environ["COLBERT_BIN"], "prepare", "--train-data", pf, "--miner-model", MODEL,
                            "--num-new-negatives", "2", "--out", os.path.join(ROOT, "emb_case", "out"),
                            "--save-embeddings", src, "--quiet"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    dst = os.path.join(d, "emb")
    shutil.copytree(src, dst)
    for name, content in files.items():
        write(dst, name, content)
    return dst


def npy_bytes(a):
    import io
    b = io.BytesIO()
    np.lib.format.write_array(b, np.asarray(a))
    return b.getvalue()


@case("prepare --load-embeddings: NaN in docs.npy", ["emb/docs.npy: element [3, 7] is NaN", "byte"])
def _(d):
    x = np.load(os.path.join(saved_embeddings(d, {}), "docs.npy"))
    x[3, 7] = np.nan
    emb = saved_embeddings(os.path.join(d, "b"), {"docs.npy": npy_bytes(x)})
    shutil.rmtree(os.path.join(d, "emb"))
    os.rename(emb, os.path.join(d, "emb"))
    shutil.rmtree(os.path.join(d, "b"))
    return ["prepare", "--train-data", pairs_file(d), "--miner-model", MODEL, "--num-new-negatives", "2",
            "--load-embeddings", "emb", "--out", "out", "--quiet"]


@case("prepare --load-embeddings: queries.npy of the wrong dtype", ["emb/queries.npy", "dtype is not float32"])
def _(d):
    emb = saved_embeddings(d, {"queries.npy": npy_bytes(np.zeros((6, 384), "<f8"))})
    return ["prepare", "--train-data", pairs_file(d), "--miner-model", MODEL, "--num-new-negatives", "2",
            "--load-embeddings", os.path.relpath(emb, d), "--out", "out", "--quiet"]


@case("prepare --load-embeddings: docs.npy truncated", ["emb/docs.npy", "data size does not match"])
def _(d):
    emb = saved_embeddings(d, {})
    with open(os.path.join(emb, "docs.npy"), "r+b") as f:
        f.truncate(os.path.getsize(os.path.join(emb, "docs.npy")) - 4)
    return ["prepare", "--train-data", pairs_file(d), "--miner-model", MODEL, "--num-new-negatives", "2",
            "--load-embeddings", "emb", "--out", "out", "--quiet"]


@case("prepare --load-embeddings: miner.json invalid", ["emb/miner.json", "invalid JSON"])
def _(d):
    saved_embeddings(d, {"miner.json": '{"model": "x", "dim": }'})
    return ["prepare", "--train-data", pairs_file(d), "--miner-model", MODEL, "--num-new-negatives", "2",
            "--load-embeddings", "emb", "--out", "out", "--quiet"]


# -- train: the training files, the manifest, the run directory, resume -------------------------

@case("train: a 19-digit query id (int64 overflow before)",
      ["data/queries.train.colbert.tsv:21:", "id \"9999999999999999999\" is out of range"])
def _(d):
    train_data(d, queries=QUERIES + "9999999999999999999\textra query\n")
    return train_args()


@case("train: a 20-digit query id in the triples", ["data/triples.train.colbert.jsonl:41:",
                                                     "expected an integer query id"])
def _(d):
    train_data(d, triples=TRIPLES + "[99999999999999999999, 1, 2]\n")
    return train_args()


@case("train: a passage id past the corpus", ["data/triples.train.colbert.jsonl:3:", "passage id 40"])
def _(d):
    t = TRIPLES.split("\n")
    t[2] = "[2, 40, 1]"
    train_data(d, triples="\n".join(t))
    return train_args()


@case("train: corpus ids that skip a line", ["data/corpus.train.colbert.tsv:6:", "expected passage id 5"])
def _(d):
    c = CORPUS.split("\n")
    c[5] = "6\tskipped five"
    train_data(d, corpus="\n".join(c))
    return train_args()


@case("train: a teacher score past the float range", ["data/triples.train.colbert.jsonl:2:",
                                                       "out of the float range"])
def _(d):
    t = "".join(json.dumps([i % 20, [i % 40, 1.5], [(i + 1) % 40, 0.5]]) + "\n" for i in range(40))
    t = t.replace("[1, 1.5]", "[1, 1e39]", 1)
    train_data(d, triples=t)
    return train_args()


@case("train: a NUL byte in the queries", ["data/queries.train.colbert.tsv:3:", "NUL byte at column"])
def _(d):
    q = QUERIES.split("\n")
    q[2] = "2\tquery \0 two"
    train_data(d, queries="\n".join(q))
    return train_args()


@case("train: a repeated query id", ["data/queries.train.colbert.tsv", "query id 3 is repeated"])
def _(d):
    train_data(d, queries=QUERIES + "3\tagain\n")
    return train_args()


def prepared(d, sub="data"):
    """Three files and the manifest, as `colbert prepare` writes them."""
    f = write(d, "triplets.jsonl", "".join(json.dumps([f"q {i}", f"pos {i}", f"neg {i}"]) + "\n"
                                            for i in range(12)))
    r = subprocess.run([os.environ["COLBERT_BIN"], "prepare", "--train-data", f, "--no-mining",
                        "--num-new-negatives", "1", "--out", os.path.join(d, sub), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return os.path.join(d, sub)


@case("train: a mixed set (a prepare killed between its renames)",
      ["data/corpus.train.colbert.tsv does not match manifest.train.colbert.json", "not one set"])
def _(d):
    data = prepared(d)
    with open(os.path.join(data, "corpus.train.colbert.tsv"), "a") as f:
        f.write("999\tfrom another run\n")
    return train_args(extra=["--batch-size", "2"])


@case("train: a malformed manifest", ["data/manifest.train.colbert.json", "not a prepare manifest"])
def _(d):
    data = prepared(d)
    write(data, "manifest.train.colbert.json", '{"version": 1}')
    return train_args()


@case("train --val-data: a mixed set", ["val/queries.train.colbert.tsv does not match"])
def _(d):
    train_data(d)
    val = prepared(d, "val")
    with open(os.path.join(val, "queries.train.colbert.tsv"), "a") as f:
        f.write("99\tanother query\n")
    return train_args(extra=["--val-data", "val"])


@case("train --val-beir: a qrels line with a NUL byte", ["vb/qrels/dev.tsv:2:", "NUL byte"])
def _(d):
    train_data(d)
    beir(d, qrels="query-id\tcorpus-id\tscore\nq0\t\0d0\t1\n", split="dev", sub="vb")
    return train_args(extra=["--val-beir", "vb"])


def finished_run(d):
    """RUN = d/runs/run, a finished 2-step run (made with the release build)."""
    train_data(d)
    r = subprocess.run([os.environ["COLBERT_BIN"], *train_args(extra=["--save-every", "1"])], cwd=d,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return os.path.join(d, "runs", "run")


@case("train: the run directory holds a finished run", ["runs/run holds a finished run (step-000002",
                                                         "--overwrite"])
def _(d):
    finished_run(d)
    return train_args()


@case("train: the run directory holds an unfinished run", ["runs/run holds an unfinished run (step 2 of 4)",
                                                           "--resume runs/run/step-000002"])
def _(d):
    run = finished_run(d)
    sp = os.path.join(run, "step-000002", "training_state.json")
    s = json.load(open(sp))
    s["total_steps"] = 4   # as if killed half-way through a 4-step run
    json.dump(s, open(sp, "w"))
    return train_args()


@case("train: the run directory is locked by another run", ["runs/run: another `colbert train` is using this run "
                                                            "directory (pid 4242 on host7, started 2026-01-02"])
def _(d):
    run = finished_run(d)
    write(run, ".lock", "pid 4242\nhost host7\nstarted 2026-01-02 03:04:05 UTC\n")   # as its holder wrote it
    return LOCKED, train_args(extra=["--overwrite"]), os.path.join(run, ".lock")


@case("train --resume: NaN in the optimizer state", ["step-000002/training_state.safetensors",
                                                      "tensor 'adamw.v'", "is NaN"])
def _(d):
    run = finished_run(d)
    p = os.path.join(run, "step-000002", "training_state.safetensors")
    header, data = read_st(p)
    with open(p, "wb") as f:
        f.write(st_bytes(header, set_values(header, data, "adamw.v", 10, [np.nan])))
    # a resumable state: pretend the run has more steps to go
    sp = os.path.join(run, "step-000002", "training_state.json")
    s = json.load(open(sp))
    s["total_steps"], s["opts"]["maxsteps"] = 4, 4
    json.dump(s, open(sp, "w"))
    return ["train", "--resume", os.path.join("runs", "run", "step-000002"), "--quiet", "--threads", "2"]


@case("train --resume: training_state.json not JSON", ["step-000002/training_state.json", "cannot resume"])
def _(d):
    run = finished_run(d)
    write(os.path.join(run, "step-000002"), "training_state.json", '{"version": 1, ')
    return ["train", "--resume", os.path.join("runs", "run", "step-000002"), "--quiet"]


@case("train: --pretrained is an empty directory", ["empty_model: no tokenizer.json and no vocab.txt"])
def _(d):
    os.makedirs(os.path.join(d, "empty_model"))
    train_data(d)
    return train_args(pretrained="empty_model")


# -- eval: run files ------------------------------------------------------------------------------

@case("eval --score-run: a NUL byte", ["x.run:2:", "NUL byte"])
def _(d):
    data = beir(d, split="test")
    run = write(d, "x.run", b"q0 Q0 d0 1 2.0 t\nq0 Q0 d1\0 2 1.0 t\n")
    return ["eval", "--score-run", run, "--dataset", data]


@case("eval --score-run: a score that is no number", ["x.run:1:", "expected a number as the score"])
def _(d):
    data = beir(d, split="test")
    return ["eval", "--score-run", write(d, "x.run", "q0 Q0 d0 1 1e99999x t\n"), "--dataset", data]


@case("eval --run: into a missing directory", ["no/dir/x.run", "cannot create"])
def _(d):
    return ["eval", "--model", MODEL, "--dataset", beir(d, split="test"), "--run", "no/dir/x.run", "--quiet"]


# ---- running them ------------------------------------------------------------------------------


def snapshot(d):
    """Every file under d: path -> (size, bytes hash). A run directory's
    .lock is left out: taking the lock writes the holder into it."""
    out = {}
    for dp, dns, fns in os.walk(d):
        for n in fns + [x for x in dns if os.path.islink(os.path.join(dp, x))]:
            if n == ".lock":
                continue
            p = os.path.join(dp, n)
            if os.path.islink(p):
                out[os.path.relpath(p, d)] = ("link", os.readlink(p))
            else:
                with open(p, "rb") as f:
                    out[os.path.relpath(p, d)] = (os.path.getsize(p), hash(f.read()))
        for n in dns:
            out.setdefault(os.path.relpath(os.path.join(dp, n), d) + "/", "dir")
    return out


def run_case(name):
    setup, names, rc = CASES[name]
    d = os.path.join(ROOT, "cases", "".join(c if c.isalnum() else "_" for c in name)[:80])
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    args = setup(d)
    holder = None
    if args[0] is LOCKED:   # another process holds the lock for the whole run
        _, args, lock = args
        holder = subprocess.Popen(["flock", "-x", lock, "sleep", "600"])
        for _ in range(100):   # until it holds it
            if subprocess.run(["flock", "-n", "-s", lock, "true"]).returncode != 0:
                break
            time.sleep(0.05)
    before = snapshot(d)
    env = dict(os.environ)
    env["ASAN_OPTIONS"] = "detect_leaks=1:abort_on_error=0"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    try:
        p = subprocess.run([SAN_BIN, *args], cwd=d, capture_output=True, text=True, env=env, timeout=900,
                           stdin=subprocess.DEVNULL)
    finally:
        if holder:
            holder.kill()
            holder.wait()
    err = p.stderr
    lines = err.strip().splitlines()
    print(f"\n{name}: exit {p.returncode}: {lines[-1] if lines else ''}")
    assert "Sanitizer" not in err and "runtime error" not in err, err[-3000:]
    assert p.returncode == rc, f"exit {p.returncode}, expected {rc}:\n{err[-3000:]}"
    assert p.stdout == "", p.stdout
    errors = [x for x in lines if x.startswith("colbert: error: ") or ": error: " in x]
    assert len(errors) == 1, f"expected one error line:\n{err[-3000:]}"
    if args[0] != "train":   # train prints its set-up notes first; the others nothing else
        assert len(lines) == (2 if rc == 2 else 1), f"expected only the error on stderr:\n{err[-3000:]}"
    assert lines[-1 if rc == 1 else -2] == errors[0], err[-3000:]
    for n in names:
        assert n in errors[0], f"{n!r} not in: {errors[0]}"
    after = snapshot(d)
    new = sorted(set(after) - set(before))
    changed = sorted(k for k in before if k in after and before[k] != after[k])
    assert not new and not changed and len(after) == len(before), f"left behind: {new}, changed: {changed}"
    shutil.rmtree(d)   # kept only when the case failed


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    """The broken models and runs take gigabytes: gone when the module ends."""
    yield
    shutil.rmtree(ROOT, ignore_errors=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_catalogue(name):
    run_case(name)


def test_catalogue_size():
    assert len(CASES) >= 60, len(CASES)
