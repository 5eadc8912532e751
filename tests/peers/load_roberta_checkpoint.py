"""load_roberta_checkpoint.py CKPT SRC OUT.json: load a ColBERT checkpoint of
a RoBERTa family in colbert-ai (Checkpoint) and PyLate (models.ColBERT), run
by tests/test_roberta_compat.py in the peers venv. Writes, for each peer, the
encoder class it built, the largest difference of its last hidden states
from transformers' AutoModel on SRC (the model the checkpoint was made from)
over a few id sequences, and of its projection from the file's
linear.weight."""
import json
import logging
import sys
import warnings

import torch
from safetensors.torch import load_file

warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)


def main():
    ckpt, src, out = sys.argv[1:4]
    from transformers import AutoModel
    ref = AutoModel.from_pretrained(src).eval()
    lin = load_file(f"{ckpt}/model.safetensors")["linear.weight"]
    gen = torch.Generator().manual_seed(0)
    n = ref.config.vocab_size
    ids = torch.cat([torch.zeros(3, 1, dtype=torch.long), torch.randint(5, n, (3, 40), generator=gen),
                     torch.full((3, 1), 2, dtype=torch.long)], 1)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        want = ref(input_ids=ids, attention_mask=mask).last_hidden_state
    res = {}
    from colbert.infra import ColBERTConfig
    from colbert.modeling.checkpoint import Checkpoint
    cp = Checkpoint(ckpt, colbert_config=ColBERTConfig(), verbose=0)
    with torch.no_grad():
        h = cp.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    res["colbert-ai"] = {"class": type(cp.bert).__name__, "hidden": (h - want).abs().max().item(),
                         "linear": (cp.linear.weight - lin).abs().max().item()}
    from pylate import models
    pm = models.ColBERT(ckpt, device="cpu")
    with torch.no_grad():
        h = pm[0].auto_model(input_ids=ids, attention_mask=mask).last_hidden_state
    res["pylate"] = {"class": type(pm[0].auto_model).__name__, "hidden": (h - want).abs().max().item(),
                     "linear": (pm[1].linear.weight - lin).abs().max().item()}
    with open(out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
