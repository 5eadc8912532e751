"""test_model.py: the reference values that the C tests of the model
directory compare against, checked here with Python's safetensors and
transformers, so that a constant in tests/test_safetensors.c or
tests/test_model.c cannot drift from what the real files hold."""
import json
import os
import struct

import numpy as np
from safetensors.numpy import load_file

MODEL = os.environ["COLBERT_MODEL"]


def test_safetensors_constants():
    """tests/test_safetensors.c (test_real_model) checks these bit patterns."""
    t = load_file(os.path.join(MODEL, "model.safetensors"))
    assert len(t) == 104
    assert t["embeddings.position_ids"].dtype == np.int64
    assert t["embeddings.position_ids"].shape == (1, 512)
    assert "bert.embeddings.word_embeddings.weight" not in t
    w = t["encoder.layer.0.attention.self.query.weight"]
    assert w.dtype == np.float32 and w.shape == (384, 384)
    bits = {(i, j): int(w[i, j].view(np.uint32)) for i, j in
            [(0, 0), (0, 1), (1, 0), (17, 250), (383, 383)]}
    assert bits == {(0, 0): 3189256126, (0, 1): 1026720086, (1, 0): 1024677099,
                    (17, 250): 3187972042, (383, 383): 3182334400}
    e = t["embeddings.word_embeddings.weight"]
    assert e.shape == (30522, 384)
    assert abs(float(e.astype(np.float64).sum()) - 138.05072214923618) < 1e-6


def test_safetensors_header_is_what_c_sees():
    """Every entry has the fields test_safetensors.c validates, no overlaps."""
    with open(os.path.join(MODEL, "model.safetensors"), "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    ranges = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
    for (b0, e0), (b1, e1) in zip(ranges, ranges[1:]):
        assert e0 <= b1


def test_config_constants():
    """tests/test_model.c checks bert_config and sbert_config against these."""
    from transformers import BertConfig
    c = BertConfig.from_pretrained(MODEL)
    assert (c.model_type, c.vocab_size, c.hidden_size, c.num_hidden_layers) == \
        ("bert", 30522, 384, 6)
    assert (c.num_attention_heads, c.intermediate_size, c.max_position_embeddings) == \
        (12, 1536, 512)
    assert (c.type_vocab_size, c.pad_token_id, c.layer_norm_eps) == (2, 0, 1e-12)
    assert (c.hidden_dropout_prob, c.attention_probs_dropout_prob) == (0.1, 0.1)
    assert c.initializer_range == 0.02 and c.hidden_act == "gelu"
    # defaults of BertConfig that bert_config_load copies for missing keys
    d = BertConfig()
    assert (d.type_vocab_size, d.pad_token_id, d.layer_norm_eps, d.initializer_range,
            d.hidden_dropout_prob, d.attention_probs_dropout_prob) == \
        (2, 0, 1e-12, 0.02, 0.1, 0.1)
    with open(os.path.join(MODEL, "1_Pooling", "config.json")) as f:
        pool = json.load(f)
    assert pool["pooling_mode_mean_tokens"] and not pool["pooling_mode_cls_token"]
    with open(os.path.join(MODEL, "sentence_bert_config.json")) as f:
        assert json.load(f)["max_seq_length"] == 256
    with open(os.path.join(MODEL, "modules.json")) as f:
        types = [m["type"] for m in json.load(f)]
    assert "sentence_transformers.models.Normalize" in types
