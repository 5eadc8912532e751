"""test_bad_input.py: broken model directories given to `colbert encode`.

Each case copies the real all-MiniLM-L6-v2 directory ($COLBERT_MODEL) into
$COLBERT_TMP (symlinks for the files left intact), damages one thing, and runs
the ASan/UBSan build of the CLI ($COLBERT_SAN_BIN). Every case must end with
exit status 1 (not 0, not a signal), exactly one stderr line that starts with
"colbert: error: ", names the damaged file and says what is wrong, no
sanitizer report (leaks included), and no output file left behind.
"""
import json
import os
import shutil
import struct
import subprocess

import pytest

SAN_BIN = os.environ["COLBERT_SAN_BIN"]
MODEL = os.environ["COLBERT_MODEL"]
TMP = os.environ["COLBERT_TMP"]
ROOT = os.path.join(TMP, "bad_input")


def read_st(path):
    """(header dict, data bytes) of a safetensors file."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        return header, f.read()


def write_st(path, header, data):
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


@pytest.fixture(scope="module")
def real():
    """The real model.safetensors, read once."""
    return read_st(os.path.join(MODEL, "model.safetensors"))


def model_copy(name, skip=()):
    """A directory with every file of the real model symlinked except `skip`."""
    d = os.path.join(ROOT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    for entry in os.listdir(MODEL):
        if entry in skip:
            continue
        os.symlink(os.path.join(MODEL, entry), os.path.join(d, entry))
    return d


def damaged_st(name, real, edit):
    """A model copy whose model.safetensors header is edit(header) (in place)."""
    d = model_copy(name, skip=("model.safetensors",))
    header, data = real
    h = json.loads(json.dumps(header))
    edit(h, len(data))
    write_st(os.path.join(d, "model.safetensors"), h, data)
    return d


def run_encode(model_dir):
    """Run the ASan CLI on a 2-line input; (returncode, stderr, output path)."""
    out_dir = os.path.join(ROOT, "out")
    os.makedirs(out_dir, exist_ok=True)
    inp = os.path.join(out_dir, "input.txt")
    with open(inp, "w") as f:
        f.write("a short query\nanother text about safetensors files\n")
    out = os.path.join(out_dir, os.path.basename(model_dir) + ".npy")
    if os.path.exists(out):
        os.remove(out)
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    p = subprocess.run([SAN_BIN, "encode", "--model", model_dir, "--input", inp,
                        "--output", out, "--threads", "1"],
                       capture_output=True, text=True, env=env, timeout=300)
    return p.returncode, p.stderr, out


def expect_error(model_dir, *phrases):
    assert os.path.exists(SAN_BIN), f"{SAN_BIN} is not built (make build-san/colbert)"
    rc, err, out = run_encode(model_dir)
    assert "Sanitizer" not in err and "runtime error" not in err, err
    assert rc == 1, f"exit status {rc} (expected 1), stderr:\n{err}"
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith("colbert: error: "), line
    for ph in phrases:
        assert ph in line, f"{ph!r} not in: {line}"
    leftovers = [f for f in os.listdir(os.path.dirname(out))
                 if f.startswith(os.path.basename(out)[:-4])]
    assert not leftovers, f"output left behind: {leftovers}"
    print(line)
    return line


QUERY_W = "encoder.layer.0.attention.self.query.weight"


# ---- model.safetensors --------------------------------------------------------

def test_truncated_safetensors(real):
    d = model_copy("truncated", skip=("model.safetensors",))
    with open(os.path.join(MODEL, "model.safetensors"), "rb") as f:
        head = f.read(os.path.getsize(os.path.join(MODEL, "model.safetensors")) // 2)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(head)
    expect_error(d, "model.safetensors", "past the end of the data area", "truncated")


def test_empty_safetensors():
    d = model_copy("empty_st", skip=("model.safetensors",))
    open(os.path.join(d, "model.safetensors"), "wb").close()
    expect_error(d, "model.safetensors", "too short")


def test_header_length_past_end(real):
    d = model_copy("hlen_past", skip=("model.safetensors",))
    size = os.path.getsize(os.path.join(MODEL, "model.safetensors"))
    with open(os.path.join(MODEL, "model.safetensors"), "rb") as f:
        f.read(8)
        rest = f.read(4096)
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", size) + rest)
    expect_error(d, "model.safetensors", "header length", "past the end of the file")


def test_header_length_absurd():
    d = model_copy("hlen_absurd", skip=("model.safetensors",))
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", 1 << 60) + b"{}" * 64)
    expect_error(d, "model.safetensors", "absurd")


def test_malformed_header_json(real):
    d = model_copy("bad_header_json", skip=("model.safetensors",))
    h = b'{"embeddings.LayerNorm.bias": {"dtype": "F32", "shape": [384]'
    with open(os.path.join(d, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"\0" * 1536)
    expect_error(d, "model.safetensors", "invalid JSON header", "column")


def test_overlapping_offsets(real):
    def edit(h, n):
        h["embeddings.LayerNorm.bias"]["data_offsets"] = h["embeddings.LayerNorm.weight"]["data_offsets"]
    d = damaged_st("overlap", real, edit)
    expect_error(d, "model.safetensors", "embeddings.LayerNorm.bias", "overlap")


def test_out_of_bounds_offsets(real):
    def edit(h, n):
        h["embeddings.LayerNorm.bias"]["data_offsets"] = [n - 768, n + 768]
    d = damaged_st("out_of_bounds", real, edit)
    expect_error(d, "model.safetensors", "embeddings.LayerNorm.bias",
                 "past the end of the data area")


def test_unknown_dtype(real):
    def edit(h, n):
        h[QUERY_W]["dtype"] = "F8_E9M9"
    d = damaged_st("unknown_dtype", real, edit)
    expect_error(d, "model.safetensors", QUERY_W, "unknown dtype 'F8_E9M9'")


def test_integer_dtype(real):
    def edit(h, n):
        h[QUERY_W]["dtype"] = "I32"
    d = damaged_st("int_dtype", real, edit)
    expect_error(d, "model.safetensors", QUERY_W, "dtype I32")


def test_size_mismatch(real):
    def edit(h, n):
        h[QUERY_W]["shape"] = [384, 385]
    d = damaged_st("size_mismatch", real, edit)
    expect_error(d, "model.safetensors", QUERY_W, "needs", "bytes")


def test_missing_tensor(real):
    name = "encoder.layer.3.output.dense.weight"
    def edit(h, n):
        del h[name]
    d = damaged_st("missing_tensor", real, edit)
    expect_error(d, "model.safetensors", name, "not found")


def test_wrong_shape(real):
    def edit(h, n):
        h[QUERY_W]["shape"] = [192, 768]      # same bytes, wrong shape
    d = damaged_st("wrong_shape", real, edit)
    expect_error(d, "model.safetensors", QUERY_W, "shape [192, 768], expected [384, 384]")


def test_missing_safetensors():
    d = model_copy("no_safetensors", skip=("model.safetensors",))
    expect_error(d, "model.safetensors", "cannot open")


# ---- config.json ---------------------------------------------------------------

def test_malformed_config():
    d = model_copy("bad_config", skip=("config.json",))
    with open(os.path.join(MODEL, "config.json")) as f:
        text = f.read()
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(text.replace('"hidden_size": 384,', '"hidden_size": 384,,'))
    expect_error(d, "config.json", "invalid JSON", "line")


def test_missing_config():
    d = model_copy("no_config", skip=("config.json",))
    expect_error(d, "config.json", "cannot open")


def test_config_missing_key():
    d = model_copy("config_no_key", skip=("config.json",))
    with open(os.path.join(MODEL, "config.json")) as f:
        cfg = json.load(f)
    del cfg["num_attention_heads"]
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    expect_error(d, "config.json", "num_attention_heads", "missing")


def test_config_other_model_type():
    d = model_copy("config_deberta", skip=("config.json",))
    with open(os.path.join(MODEL, "config.json")) as f:
        cfg = json.load(f)
    cfg["model_type"] = "deberta-v2"
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    expect_error(d, "config.json", "model_type 'deberta-v2' is not supported yet",
                 "(supported: bert, roberta, xlm-roberta, camembert, modernbert)")


def test_roberta_family_loads_or_names_its_tokenizer():
    # the small RoBERTa / XLM-R directories of tests/ref/gen_roberta.py: the
    # encoder loads (src/backbone.c); until their tokenizers (byte-level
    # BPE, Unigram) are read, one line naming tokenizer.json, never a crash
    for fam in ("roberta", "xlmr"):
        d = os.path.join(os.environ["COLBERT_REF"], f"{fam}_model")
        rc, err, out = run_encode(d)
        assert "Sanitizer" not in err and "runtime error" not in err, err
        if rc != 0:
            assert rc == 1 and len(err.splitlines()) == 1, err
            assert err.startswith("colbert: error: ") and "tokenizer.json" in err, err
            print(err.strip())


def test_config_shape_disagrees_with_weights():
    d = model_copy("config_hidden", skip=("config.json",))
    with open(os.path.join(MODEL, "config.json")) as f:
        cfg = json.load(f)
    cfg["intermediate_size"] = 1024
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    expect_error(d, "model.safetensors", "intermediate.dense.weight",
                 "shape [1536, 384], expected [1024, 384]")


# ---- tokenizer.json, sentence-transformers files, the directory ------------------

def test_malformed_tokenizer():
    d = model_copy("bad_tokenizer", skip=("tokenizer.json",))
    with open(os.path.join(MODEL, "tokenizer.json")) as f:
        text = f.read()
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        f.write(text[: len(text) // 2])
    expect_error(d, "tokenizer.json")


def test_missing_tokenizer_and_vocab():
    # without tokenizer.json the tokenizer falls back to vocab.txt; with
    # neither there is nothing to tokenize with
    d = model_copy("no_tokenizer", skip=("tokenizer.json", "vocab.txt"))
    line = expect_error(d)
    assert "tokenizer.json" in line or "vocab.txt" in line, line


def test_combined_pooling():
    d = model_copy("combined_pooling", skip=("1_Pooling",))
    os.makedirs(os.path.join(d, "1_Pooling"))
    with open(os.path.join(MODEL, "1_Pooling", "config.json")) as f:
        cfg = json.load(f)
    cfg["pooling_mode_cls_token"] = True
    with open(os.path.join(d, "1_Pooling", "config.json"), "w") as f:
        json.dump(cfg, f)
    expect_error(d, "1_Pooling/config.json", "combined pooling")


def test_malformed_modules_json():
    d = model_copy("bad_modules", skip=("modules.json",))
    with open(os.path.join(d, "modules.json"), "w") as f:
        f.write('[{"type": "sentence_transformers.models.Transformer", "path": ""}')
    expect_error(d, "modules.json", "invalid JSON")


def test_missing_model_dir():
    expect_error(os.path.join(ROOT, "no", "such", "model"), "no/such/model", "does not exist")


def test_missing_hub_model(monkeypatch):
    monkeypatch.setenv("HF_HOME", os.path.join(ROOT, "empty_hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    line = expect_error("acme/not-cached-model")
    for ph in ("acme/not-cached-model", "models--acme--not-cached-model", "cache"):
        assert ph in line, line


def test_intact_copy_works():
    """The copies are built right: an undamaged one encodes."""
    d = model_copy("intact")
    rc, err, out = run_encode(d)
    assert rc == 0, err
    assert "Sanitizer" not in err and "runtime error" not in err, err
    assert os.path.getsize(out) > 0
