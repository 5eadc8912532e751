"""gen_train_step.py: PyTorch reference of whole ColBERT training steps for
tests/test_step.c: gradients through BERT, not only the head.

The model is transformers' BertModel built from the real all-MiniLM-L6-v2
safetensors (train mode, dropout probabilities 0) plus a seeded `linear`
[128, H]; scores and losses follow colbert-ai's formulas (the functions of
gen_colbert_head.py: ColBERT.query/doc, colbert_score, compute_ib_loss,
CE / KLDivLoss(batchmean, log_target), / accumsteps). Data: 8 real NFCorpus
triplets, nway 2, laid out as colbert-ai's tokenizers do.

Cases (loss and the gradient of every parameter): ce (no in-batch
negatives), ib, kl (teacher scores), relu, finetune (a start from a ColBERT
checkpoint written here the way colbert-ai saves one: bert.* keys +
linear.weight in model.safetensors, config.json, artifact.metadata). And
10 optimizer steps (clip_grad_norm_ 2.0, AdamW wd 0.01, linear warmup 3 /
decay to 0 at 12) with in-batch negatives: each step's loss and the final
parameters.
usage: gen_train_step.py MODEL_DIR DATASETS_DIR OUT_DIR
"""
import json
import os
import shutil
import string
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch
from transformers import BertConfig, BertModel, BertTokenizerFast, get_linear_schedule_with_warmup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_colbert_head as ref  # noqa: E402

B, NWAY, DIM = ref.B, ref.NWAY, ref.DIM


def build(model_dir):
    cfg = BertConfig.from_pretrained(model_dir, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return BertModel.from_pretrained(model_dir, config=cfg, attn_implementation="eager",
                                     add_pooling_layer=False).train()


def loss_of(bert, linear, q_ids, q_mask, d_ids, d_mask, skiplist, pad, relu, ib, teacher, alpha, accum,
            contrastive=False):
    total = 0.0
    mb = B // accum
    for s in range(accum):
        qs, ds = slice(s * mb, (s + 1) * mb), slice(s * mb * NWAY, (s + 1) * mb * NWAY)
        hq = bert(input_ids=q_ids[qs], attention_mask=q_mask[qs]).last_hidden_state
        hd = bert(input_ids=d_ids[ds], attention_mask=d_mask[ds]).last_hidden_state
        scores, allsc, ib_loss = ref.colbert_scores(hq, hd, q_ids[qs], d_ids[ds], linear, skiplist, pad, relu,
                                                    NWAY, ib or contrastive)
        scores = scores.view(-1, NWAY)
        if contrastive:
            # PyLate's losses.Contrastive: one cross-entropy over every
            # document of the batch, labels arange * N (query-major)
            loss = F.cross_entropy(allsc, torch.arange(allsc.size(0)) * NWAY)
        elif teacher is not None:
            t = F.log_softmax(teacher[qs].reshape(-1, NWAY) * alpha, dim=-1)
            loss = torch.nn.KLDivLoss(reduction="batchmean", log_target=True)(F.log_softmax(scores, dim=-1), t)
        else:
            loss = torch.nn.CrossEntropyLoss()(scores, torch.zeros(scores.size(0), dtype=torch.long))
        if ib and not contrastive:
            loss = loss + ib_loss
        loss = loss / accum
        loss.backward()
        total += loss.item()
    return total


def grads(bert, linear):
    out = {"grad." + n: p.grad.detach().numpy().copy() for n, p in bert.named_parameters()}
    out["grad.linear"] = linear.grad.detach().numpy().copy()
    return out


def batch(model_dir, datasets):
    """The 8 real NFCorpus triplets as colbert-ai tokenizes them, the
    punctuation skiplist, the pad id and the seeded linear [DIM, H]."""
    tok = BertTokenizerFast.from_pretrained(model_dir)
    queries, corpus, pos = ref.load_data(datasets)
    trip = ref.pick_triplets(queries, corpus, pos)
    q_ids, q_mask = ref.tensorize_queries(tok, [t[0] for t in trip])
    d_ids, d_mask = ref.tensorize_docs(tok, [d for t in trip for d in t[1:]])
    skiplist = {w: True for symbol in string.punctuation
                for w in [symbol, tok.encode(symbol, add_special_tokens=False)[0]]}
    H = BertConfig.from_pretrained(model_dir).hidden_size
    linear0 = torch.randn(DIM, H, generator=torch.Generator().manual_seed(3)) * 0.02
    return q_ids, q_mask, d_ids, d_mask, skiplist, tok.pad_token_id, linear0


def adam_steps(model_dir, linear0, steps, out, prefix, loss_fn):
    """`steps` optimizer steps from the plain model and linear0, as colbert-ai
    takes them (clip_grad_norm_ 2.0, AdamW lr 1e-4 wd 0.01, linear warmup 3
    and decay to 0 at 12); loss_fn(bert, linear) back-propagates one step's
    loss and returns it. Writes <prefix>losses and <prefix>param.* into out;
    returns the losses."""
    bert = build(model_dir)
    linear = linear0.clone().requires_grad_(True)
    params = list(bert.parameters()) + [linear]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=12)
    losses = []
    for _ in range(steps):
        losses.append(loss_fn(bert, linear))
        torch.nn.utils.clip_grad_norm_(params, 2.0)
        opt.step()
        sched.step()
        opt.zero_grad()
    out[prefix + "losses"] = np.array(losses, np.float64)
    out.update({prefix + "param." + n: p.detach().numpy().copy() for n, p in bert.named_parameters()})
    out[prefix + "param.linear"] = linear.detach().numpy().copy()
    return losses


def main():
    model_dir, datasets, out_dir = sys.argv[1:4]
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(0)
    q_ids, q_mask, d_ids, d_mask, skiplist, pad, linear0 = batch(model_dir, datasets)
    d_len = d_mask.sum(1)
    teacher = torch.randn(B, NWAY, generator=torch.Generator().manual_seed(5)) * 4.0
    out = {
        "q_ids": q_ids.numpy().astype(np.int32), "q_mask": q_mask.numpy().astype(np.int32),
        "d_len": d_len.numpy().astype(np.int32),
        "d_ids": np.concatenate([d_ids[i, :d_len[i]].numpy() for i in range(d_ids.size(0))]).astype(np.int32),
        "teacher": teacher.numpy(), "linear": linear0.numpy(),
        "config": np.array([B, NWAY, ref.QMAX, ref.DMAX, DIM], np.int32),
    }

    # name, relu, ib, teacher, alpha, contrastive
    for name, relu, ib, t, alpha, con in [("ce", 0, 0, None, 1.0, 0), ("ib", 0, 1, None, 1.0, 0),
                                          ("kl", 0, 0, teacher, 0.5, 0), ("relu", 1, 1, None, 1.0, 0),
                                          ("contrastive", 0, 0, None, 1.0, 1)]:
        bert = build(model_dir)
        linear = linear0.clone().requires_grad_(True)
        loss = loss_of(bert, linear, q_ids, q_mask, d_ids, d_mask, skiplist, pad, relu, ib, t, alpha, 1, con)
        out[f"{name}.loss"] = np.array([loss], np.float64)
        out.update({f"{name}.{k}": v for k, v in grads(bert, linear).items()})
        print(f"gen_train_step: {name}: loss {loss:.6f}", file=sys.stderr)

    # fine-tune start: a ColBERT checkpoint as colbert-ai writes it, with
    # encoder weights that differ from the plain model (one small SGD step) and
    # its own linear
    bert = build(model_dir)
    linear = linear0.clone().requires_grad_(True)
    loss_of(bert, linear, q_ids, q_mask, d_ids, d_mask, skiplist, pad, 0, 1, None, 1.0, 1)
    with torch.no_grad():
        for p in list(bert.parameters()) + [linear]:
            p -= 0.01 * p.grad
            p.grad = None
    ckpt = os.path.join(out_dir, "colbert_ckpt")
    shutil.rmtree(ckpt, ignore_errors=True)
    os.makedirs(ckpt)
    state = {"bert." + n: p.detach().contiguous() for n, p in bert.named_parameters()}
    state["linear.weight"] = linear.detach().contiguous()
    save_torch(state, os.path.join(ckpt, "model.safetensors"), metadata={"format": "pt"})
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"]:
        if os.path.exists(os.path.join(model_dir, f)):
            shutil.copy(os.path.join(model_dir, f), ckpt)
    with open(os.path.join(ckpt, "artifact.metadata"), "w") as f:
        json.dump({"query_maxlen": ref.QMAX, "doc_maxlen": ref.DMAX, "dim": DIM, "nway": NWAY,
                   "mask_punctuation": True, "attend_to_mask_tokens": False, "similarity": "cosine",
                   "meta": {"written_by": "tests/ref/gen_train_step.py"}}, f)
    linear_ft = linear.detach().clone().requires_grad_(True)
    loss = loss_of(bert, linear_ft, q_ids, q_mask, d_ids, d_mask, skiplist, pad, 0, 1, None, 1.0, 1)
    out["finetune.loss"] = np.array([loss], np.float64)
    out.update({f"finetune.{k}": v for k, v in grads(bert, linear_ft).items()})
    print(f"gen_train_step: finetune: loss {loss:.6f}", file=sys.stderr)

    # 10 optimizer steps with in-batch negatives
    losses = adam_steps(model_dir, linear0, 10, out, "adam.",
                        lambda bert, linear: loss_of(bert, linear, q_ids, q_mask, d_ids, d_mask, skiplist, pad,
                                                     0, 1, None, 1.0, 1))
    print(f"gen_train_step: 10 AdamW steps: losses {losses[0]:.4f} .. {losses[-1]:.4f}", file=sys.stderr)

    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    save_file(out, os.path.join(out_dir, "train_step_ref.safetensors"))


if __name__ == "__main__":
    main()
