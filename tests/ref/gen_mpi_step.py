"""gen_mpi_step.py: PyTorch reference of colbert-ai's data-parallel training
step, for tests/mpi_step.c (run under `mpirun -np 2` by tests/test_mpi.py):
`colbert train --ib-scope local`.

colbert-ai under DistributedDataParallel with N GPUs: each GPU takes bsize / N
consecutive triples, computes its loss (n-way cross-entropy plus the in-batch
loss over ITS OWN documents only, means over its own queries) and DDP averages
the gradients over the GPUs. In one process that is the loss
(1/N) sum_r L_r, back-propagated once. Here N = 2 on the 8 real NFCorpus
triplets of gen_train_step.py (the same tokens, model and seeded linear),
dropout off:
  local.loss, local.grad.*        one step's loss and every gradient
  local.adam.losses, .param.*     3 AdamW steps (clip 2.0, wd 0.01, lr 1e-4,
                                  warmup 3, decay to 0 at 12, as
                                  gen_train_step.py's): the losses and the
                                  final parameters
usage: gen_mpi_step.py MODEL_DIR DATASETS_DIR OUT_DIR
"""
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_colbert_head as ref  # noqa: E402
import gen_train_step as ts  # noqa: E402

B, NWAY, DIM = ref.B, ref.NWAY, ref.DIM
RANKS = 2
STEPS = 3


def per_gpu_loss(bert, linear, q_ids, q_mask, d_ids, d_mask, skiplist, pad):
    """(1/N) sum over the ranks of colbert-ai's loss on each rank's share."""
    per = B // RANKS
    total = 0.0
    for r in range(RANKS):
        qs, ds = slice(r * per, (r + 1) * per), slice(r * per * NWAY, (r + 1) * per * NWAY)
        hq = bert(input_ids=q_ids[qs], attention_mask=q_mask[qs]).last_hidden_state
        hd = bert(input_ids=d_ids[ds], attention_mask=d_mask[ds]).last_hidden_state
        scores, _, ib_loss = ref.colbert_scores(hq, hd, q_ids[qs], d_ids[ds], linear, skiplist, pad, 0, NWAY, True)
        scores = scores.view(-1, NWAY)
        loss = torch.nn.CrossEntropyLoss()(scores, torch.zeros(scores.size(0), dtype=torch.long)) + ib_loss
        (loss / RANKS).backward()   # DDP's gradient average
        total += loss.item() / RANKS
    return total


def main():
    model_dir, datasets, out_dir = sys.argv[1:4]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    q_ids, q_mask, d_ids, d_mask, skiplist, pad, linear0 = ts.batch(model_dir, datasets)
    out = {}

    bert = ts.build(model_dir)
    linear = linear0.clone().requires_grad_(True)
    loss = per_gpu_loss(bert, linear, q_ids, q_mask, d_ids, d_mask, skiplist, pad)
    out["local.loss"] = np.array([loss], np.float64)
    out.update({f"local.{k}": v for k, v in ts.grads(bert, linear).items()})
    print(f"gen_mpi_step: per-GPU loss over {RANKS} ranks: {loss:.6f}", file=sys.stderr)

    losses = ts.adam_steps(model_dir, linear0, STEPS, out, "local.adam.",
                           lambda bert, linear: per_gpu_loss(bert, linear, q_ids, q_mask, d_ids, d_mask,
                                                             skiplist, pad))
    print(f"gen_mpi_step: {STEPS} AdamW steps: losses {losses[0]:.4f} .. {losses[-1]:.4f}", file=sys.stderr)
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    save_file(out, os.path.join(out_dir, "mpi_step_ref.safetensors"))


if __name__ == "__main__":
    main()
