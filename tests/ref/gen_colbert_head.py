"""gen_colbert_head.py: PyTorch reference tensors for tests/test_colbert_head.c.

colbert-ai's training step after the encoder, on real data: 8 NFCorpus
training queries, each with a positive document from qrels/train.tsv and a
seeded random negative (nway 2), laid out as colbert-ai's QueryTokenizer /
DocTokenizer do (HF BertTokenizerFast on the all-MiniLM-L6-v2 directory),
encoded by transformers' BertModel (eval mode: no dropout). The last hidden
states are then leaf tensors, and a seeded `linear` [128, H] gives scores
and losses with the formulas of colbert-ai (colbert/modeling/colbert.py:
query, doc, colbert_score, compute_ib_loss; colbert/training/training.py:
CE or KLDivLoss(batchmean, log_target), ib loss, / accumsteps). Every case
dumps scores, loss, d_hidden and d_linear. Plus 10 optimizer steps:
clip_grad_norm_(2.0), torch.optim.AdamW(wd 0.01), LambdaLR with
transformers' get_linear_schedule_with_warmup.

Output: OUT_DIR/colbert_head_ref.safetensors.
usage: gen_colbert_head.py MODEL_DIR DATASETS_DIR OUT_DIR
"""
import csv
import json
import os
import random
import string
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file
from transformers import BertModel, BertTokenizerFast, get_linear_schedule_with_warmup

B, NWAY, QMAX, DMAX, DIM = 8, 2, 32, 180, 128


def load_data(datasets):
    root = os.path.join(datasets, "nfcorpus")
    queries = {}
    with open(os.path.join(root, "queries.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            queries[d["_id"]] = d["text"]
    corpus = {}
    with open(os.path.join(root, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            corpus[d["_id"]] = d["text"]
    pos = {}
    with open(os.path.join(root, "qrels", "train.tsv"), encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["query-id"] in queries and row["corpus-id"] in corpus:
                pos.setdefault(row["query-id"], row["corpus-id"])
    return queries, corpus, pos


def pick_triplets(queries, corpus, pos):
    rng = random.Random(12345)
    qids = sorted(pos)
    # the longest training query (more than query_maxlen - 3 pieces, so the
    # truncation is exercised), then seeded picks
    longest = max(qids, key=lambda q: len(queries[q]))
    chosen = [longest] + rng.sample([q for q in qids if q != longest], B - 1)
    pids = sorted(corpus)
    trip = []
    for q in chosen:
        neg = rng.choice(pids)
        while neg == pos[q]:
            neg = rng.choice(pids)
        trip.append((queries[q], corpus[pos[q]], corpus[neg]))
    return trip


def tensorize_queries(tok, texts):
    # QueryTokenizer.tensorize: max_length query_maxlen - 1, [Q] inserted
    # after [CLS], [PAD] -> [MASK]
    obj = tok(texts, padding="max_length", truncation=True, return_tensors="pt", max_length=QMAX - 1)
    qmark = tok.convert_tokens_to_ids("[unused0]")
    ids, mask = obj["input_ids"], obj["attention_mask"]
    ids = torch.cat([ids[:, :1], torch.full_like(ids[:, :1], qmark), ids[:, 1:]], 1)
    mask = torch.cat([mask[:, :1], torch.ones_like(mask[:, :1]), mask[:, 1:]], 1)
    ids[ids == tok.pad_token_id] = tok.mask_token_id
    return ids, mask


def tensorize_docs(tok, texts):
    # DocTokenizer.tensorize: max_length doc_maxlen - 1, [D] after [CLS]
    obj = tok(texts, padding="longest", truncation="longest_first", return_tensors="pt", max_length=DMAX - 1)
    dmark = tok.convert_tokens_to_ids("[unused1]")
    ids, mask = obj["input_ids"], obj["attention_mask"]
    ids = torch.cat([ids[:, :1], torch.full_like(ids[:, :1], dmark), ids[:, 1:]], 1)
    mask = torch.cat([mask[:, :1], torch.ones_like(mask[:, :1]), mask[:, 1:]], 1)
    return ids, mask


def colbert_scores(hq, hd, q_ids, d_ids, linear, skiplist, pad, relu, nway, ib):
    """colbert-ai ColBERT.forward after the encoder: nway scores, and the
    in-batch score matrix [nq, nd] and ib loss when ib."""
    Q = hq @ linear.T
    if relu:
        Q = F.relu(Q)
    Q = Q * (q_ids != pad).unsqueeze(2).float()
    Q = F.normalize(Q, p=2, dim=2)
    D = hd @ linear.T
    if relu:
        D = F.relu(D)
    dmask = torch.tensor([[(x not in skiplist) and (x != pad) for x in d] for d in d_ids.tolist()]).unsqueeze(2)
    D = D * dmask.float()
    D = F.normalize(D, p=2, dim=2)
    D_mask = dmask.bool()

    def reduce(sc, m):  # colbert_score_reduce
        sc = sc.masked_fill(~m.view(sc.size(0), sc.size(1), 1), -9999)
        return sc.max(1).values.sum(-1)

    Qd = Q.repeat_interleave(nway, dim=0).contiguous()
    scores = reduce(D @ Qd.permute(0, 2, 1), D_mask)
    if not ib:
        return scores, None, None
    # compute_ib_loss
    allsc = (D.unsqueeze(0) @ Q.permute(0, 2, 1).unsqueeze(1)).flatten(0, 1)
    allsc = reduce(allsc, D_mask.repeat(Q.size(0), 1, 1))
    nd = D.size(0)
    keep = [list(range(q * nd, q * nd + nway * q + 1)) + list(range(q * nd + nway * (q + 1), q * nd + nd))
            for q in range(Q.size(0))]
    ibsc = allsc[[i for row in keep for i in row]].view(Q.size(0), -1)
    labels = torch.arange(0, Q.size(0)) * nway
    ib_loss = torch.nn.CrossEntropyLoss()(ibsc, labels)
    return scores, allsc.view(Q.size(0), nd), ib_loss


def run_case(hq, hd, q_ids, d_ids, linear0, skiplist, pad, relu, ib, teacher, alpha, accum):
    hq = hq.clone().requires_grad_(True)
    hd = hd.clone().requires_grad_(True)
    linear = linear0.clone().requires_grad_(True)
    total, sc_all, ib_all = 0.0, [], []
    mb = B // accum
    for s in range(accum):
        qs, ds = slice(s * mb, (s + 1) * mb), slice(s * mb * NWAY, (s + 1) * mb * NWAY)
        scores, allsc, ib_loss = colbert_scores(hq[qs], hd[ds], q_ids[qs], d_ids[ds], linear, skiplist, pad,
                                                relu, NWAY, ib)
        scores = scores.view(-1, NWAY)
        if teacher is not None:
            t = teacher[qs].reshape(-1, NWAY) * alpha
            t = F.log_softmax(t, dim=-1)
            loss = torch.nn.KLDivLoss(reduction="batchmean", log_target=True)(F.log_softmax(scores, dim=-1), t)
        else:
            loss = torch.nn.CrossEntropyLoss()(scores, torch.zeros(scores.size(0), dtype=torch.long))
        if ib:
            loss = loss + ib_loss
            ib_all.append(allsc.detach())
        loss = loss / accum
        loss.backward()
        total += loss.item()
        sc_all.append(scores.detach())
    return {
        "loss": np.array([total], np.float64),
        "scores": torch.cat(sc_all).numpy(),
        "ib_scores": (torch.cat([x.reshape(-1) for x in ib_all]).numpy() if ib else np.zeros(1, np.float32)),
        "d_hq": hq.grad.numpy(),
        "d_hd": hd.grad.numpy(),
        "d_linear": linear.grad.numpy(),
    }


def pack_texts(texts):
    data = [t.encode("utf-8") for t in texts]
    off = np.cumsum([0] + [len(d) for d in data]).astype(np.int32)
    return np.frombuffer(b"".join(data), np.uint8).copy(), off


def adamw_reference():
    g = torch.Generator().manual_seed(7)
    shapes = [(50,), (20, 30), (7,)]
    params = [torch.nn.Parameter(torch.randn(s, generator=g) * 0.5) for s in shapes]
    p0 = torch.cat([p.detach().reshape(-1) for p in params]).numpy().copy()
    opt = torch.optim.AdamW(params, lr=1e-3, eps=1e-8)   # colbert-ai's call; weight_decay default 0.01
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=12)
    grads, after, lrs, norms = [], [], [], []
    for step in range(10):
        scale = [0.02, 0.2, 0.05, 1.0, 0.01][step % 5]   # norms about 0.5 .. 25: clipped or not
        gs = [torch.randn(s, generator=g) * scale for s in shapes]
        for p, gg in zip(params, gs):
            p.grad = gg.clone()
        grads.append(torch.cat([x.reshape(-1) for x in gs]).numpy())
        lrs.append(opt.param_groups[0]["lr"])
        norms.append(torch.nn.utils.clip_grad_norm_(params, 2.0).item())
        opt.step()
        sched.step()
        opt.zero_grad()
        after.append(torch.cat([p.detach().reshape(-1) for p in params]).numpy().copy())
    return {
        "adam_p0": p0, "adam_grads": np.stack(grads), "adam_params": np.stack(after),
        "adam_lr": np.array(lrs, np.float64), "adam_norm": np.array(norms, np.float32),
    }


def main():
    model_dir, datasets, out_dir = sys.argv[1:4]
    torch.manual_seed(0)
    tok = BertTokenizerFast.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    queries, corpus, pos = load_data(datasets)
    trip = pick_triplets(queries, corpus, pos)
    q_texts = [t[0] for t in trip]
    d_texts = [d for t in trip for d in t[1:]]      # query b: docs 2b (positive), 2b+1

    q_ids, q_mask = tensorize_queries(tok, q_texts)
    d_ids, d_mask = tensorize_docs(tok, d_texts)
    with torch.no_grad():
        hq = model(input_ids=q_ids, attention_mask=q_mask).last_hidden_state
        hd = model(input_ids=d_ids, attention_mask=d_mask).last_hidden_state
    skiplist = {w: True for symbol in string.punctuation
                for w in [symbol, tok.encode(symbol, add_special_tokens=False)[0]]}
    pad = tok.pad_token_id
    H = hq.size(2)
    linear = torch.randn(DIM, H, generator=torch.Generator().manual_seed(3)) * 0.02
    teacher = torch.randn(B, NWAY, generator=torch.Generator().manual_seed(5)) * 4.0

    d_len = d_mask.sum(1)
    out = {
        "q_ids": q_ids.numpy().astype(np.int32), "q_mask": q_mask.numpy().astype(np.int32),
        "d_len": d_len.numpy().astype(np.int32),
        "d_ids": np.concatenate([d_ids[i, :d_len[i]].numpy() for i in range(len(d_texts))]).astype(np.int32),
        "d_keep": np.concatenate([[int((x not in skiplist) and (x != pad)) for x in d_ids[i, :d_len[i]].tolist()]
                                  for i in range(len(d_texts))]).astype(np.int32),
        "hq": hq.numpy().reshape(-1, H),
        "hd": np.concatenate([hd[i, :d_len[i]].numpy() for i in range(len(d_texts))]),
        "linear": linear.numpy(), "teacher": teacher.numpy(),
        "config": np.array([B, NWAY, QMAX, DMAX, DIM], np.int32),
    }
    out["q_text"], out["q_text_off"] = pack_texts(q_texts)
    out["d_text"], out["d_text_off"] = pack_texts(d_texts)

    # name, relu, ib, teacher, alpha, accumsteps
    cases = [("ce", 0, 0, None, 1.0, 1), ("ib", 0, 1, None, 1.0, 1), ("relu", 1, 1, None, 1.0, 1),
             ("kl", 0, 0, teacher, 0.5, 1), ("kl_ib", 0, 1, teacher, 2.0, 1), ("acc2", 0, 1, None, 1.0, 2)]
    for name, relu, ib, t, alpha, accum in cases:
        r = run_case(hq, hd, q_ids, d_ids, linear, skiplist, pad, relu, ib, t, alpha, accum)
        out[f"{name}.case"] = np.array([relu, ib, t is not None, accum], np.int32)
        out[f"{name}.alpha"] = np.array([alpha], np.float32)
        out[f"{name}.loss"] = r["loss"]
        out[f"{name}.scores"] = r["scores"]
        out[f"{name}.ib_scores"] = r["ib_scores"]
        out[f"{name}.d_hidden"] = np.concatenate([r["d_hq"].reshape(-1, H),
                                                  np.concatenate([r["d_hd"][i, :d_len[i]]
                                                                  for i in range(len(d_texts))])])
        out[f"{name}.d_linear"] = r["d_linear"]
        print(f"gen_colbert_head: {name}: loss {r['loss'][0]:.6f}", file=sys.stderr)
    out.update(adamw_reference())
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    os.makedirs(out_dir, exist_ok=True)
    save_file(out, os.path.join(out_dir, "colbert_head_ref.safetensors"))
    print(f"gen_colbert_head: {B} triplets, {int(d_len.sum())} doc tokens "
          f"(longest {int(d_len.max())}), query pieces up to "
          f"{max(len(tok(q, add_special_tokens=False)['input_ids']) for q in q_texts)}", file=sys.stderr)


if __name__ == "__main__":
    main()
