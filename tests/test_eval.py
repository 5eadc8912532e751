"""test_eval.py: `colbert eval` against pytrec_eval (trec_eval's own code).

- A small BEIR directory cut from real NFCorpus test data (the first queries of
  the split with all their judged documents, plus random other documents) is
  ranked by all-MiniLM-L6-v2 as a new ColBERT ($COLBERT_MODEL); the metrics
  colbert eval prints equal pytrec_eval's on the run file it wrote (1e-6), and
  nDCG@10 is far above a random ranking's.
- Runs with many tied scores on the full NFCorpus test qrels (--score-run, no
  model) equal pytrec_eval too: ties are ordered as trec_eval orders them.
- Bad input (missing dataset, split without qrels, ids not in the corpus or the
  queries, broken run files) ends with exit status 1 and one clear
  "colbert: error:" line, through the ASan/UBSan build.
"""
import json
import os
import random
import subprocess

import pytest
import pytrec_eval  # requirements.txt: pytrec-eval-terrier

BIN = os.environ["COLBERT_BIN"]
SAN_BIN = os.environ["COLBERT_SAN_BIN"]
MODEL = os.environ["COLBERT_MODEL"]
NF = os.path.join(os.environ["COLBERT_DATASETS"], "nfcorpus")
TMP = os.path.join(os.environ["COLBERT_TMP"], "eval")
KEYS = ("ndcg@10", "mrr@10", "recall@10", "recall@100")


def read_qrels(path):
    qrels = {}
    with open(path, newline="") as f:
        for i, line in enumerate(f):
            q, d, s = line.rstrip("\r\n").split("\t")
            if i == 0 and s == "score":
                continue
            qrels.setdefault(q, {})[d] = int(s)
    return qrels


def read_run(path):
    run = {}
    with open(path) as f:
        for line in f:
            q, q0, d, rank, score, tag = line.split()
            assert q0 == "Q0" and d not in run.get(q, {})
            run.setdefault(q, {})[d] = float(score)
    return run


def write_run(path, run):
    with open(path, "w") as f:
        for q, docs in run.items():
            for r, (d, s) in enumerate(docs.items()):
                f.write(f"{q} Q0 {d} {r + 1} {s!r} test\n")


def trec_metrics(qrels, run):
    """Mean nDCG@10, MRR@10, Recall@10, Recall@100 by pytrec_eval. MRR@10 is
    trec_eval's recip_rank on the run cut to its top 10 (trec_eval's order:
    score descending, then docid descending)."""
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.10", "recall.100"})
    res = ev.evaluate(run)
    top10 = {q: dict(sorted(ds.items(), key=lambda x: (x[1], x[0]), reverse=True)[:10]) for q, ds in run.items()}
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    n = len(res)
    assert n == len(rr)
    return n, {
        "ndcg@10": sum(v["ndcg_cut_10"] for v in res.values()) / n,
        "mrr@10": sum(v["recip_rank"] for v in rr.values()) / n,
        "recall@10": sum(v["recall_10"] for v in res.values()) / n,
        "recall@100": sum(v["recall_100"] for v in res.values()) / n,
    }


def colbert_eval(*args, binary=BIN):
    p = subprocess.run([binary, "eval", *args], capture_output=True, text=True)
    return p


@pytest.fixture(scope="module")
def subset():
    """nf_small: the first NFCorpus test queries until 150 judged documents,
    all their judged documents and random others, 300 documents in all."""
    d = os.path.join(TMP, "nf_small")
    os.makedirs(os.path.join(d, "qrels"), exist_ok=True)
    with open(os.path.join(NF, "qrels", "test.tsv"), newline="") as f:
        lines = f.read().split("\r\n")
    header, lines = lines[0], [l for l in lines[1:] if l]
    queries, judged, keep = [], set(), []
    for l in lines:
        q, doc, _ = l.split("\t")
        if q not in queries:
            if len(queries) >= 8 and len(judged) >= 150:
                continue
            queries.append(q)
        keep.append(l)
        judged.add(doc)
    with open(os.path.join(NF, "corpus.jsonl")) as f:
        corpus = f.read().splitlines()
    ids = [json.loads(c)["_id"] for c in corpus]
    rng = random.Random(5)
    others = rng.sample([i for i in ids if i not in judged], max(0, 300 - len(judged)))
    chosen = judged | set(others)
    with open(os.path.join(d, "corpus.jsonl"), "w") as f:
        f.write("".join(c + "\n" for c, i in zip(corpus, ids) if i in chosen))
    qset = set(queries)
    with open(os.path.join(NF, "queries.jsonl")) as src, open(os.path.join(d, "queries.jsonl"), "w") as f:
        f.write("".join(l for l in src if json.loads(l)["_id"] in qset))
    with open(os.path.join(d, "qrels", "test.tsv"), "w", newline="") as f:
        f.write("\r\n".join([header] + keep) + "\r\n")
    return d, len(queries), len(chosen)


@pytest.fixture(scope="module")
def model_run(subset):
    """colbert eval of MiniLM as a new ColBERT on nf_small: (JSON, run path)."""
    d, _, _ = subset
    run = os.path.join(TMP, "nf_small.run")
    p = colbert_eval("--model", MODEL, "--dataset", d, "--split", "test", "--run", run, "--doc-maxlen", "128",
                     "--quiet")
    assert p.returncode == 0, p.stderr
    print(p.stderr)
    return json.loads(p.stdout), run


def test_model_run_equals_pytrec_eval(subset, model_run):
    d, nq, nd = subset
    res, run_path = model_run
    assert res["queries"] == nq and res["documents"] == nd
    run = read_run(run_path)
    assert sorted(run) == sorted(read_qrels(os.path.join(d, "qrels", "test.tsv")))
    for q, docs in run.items():
        scores = list(docs.values())
        assert len(docs) == 100 and scores == sorted(scores, reverse=True), q
    n, ref = trec_metrics(read_qrels(os.path.join(d, "qrels", "test.tsv")), run)
    assert n == nq
    for k in KEYS:
        assert abs(res[k] - ref[k]) <= 1e-6, (k, res[k], ref[k])
    # the run file scored back gives the same numbers
    p = colbert_eval("--score-run", run_path, "--dataset", d)
    assert p.returncode == 0, p.stderr
    back = json.loads(p.stdout)
    for k in KEYS:
        assert abs(back[k] - res[k]) <= 1e-12, (k, back[k], res[k])


def test_model_beats_random(subset, model_run):
    """The untrained MiniLM-as-ColBERT ranks far better than chance."""
    d, _, _ = subset
    res, _ = model_run
    qrels = read_qrels(os.path.join(d, "qrels", "test.tsv"))
    with open(os.path.join(d, "corpus.jsonl")) as f:
        ids = [json.loads(l)["_id"] for l in f]
    rng = random.Random(0)
    rand = []
    for _ in range(20):
        run = {}
        for q in qrels:
            order = rng.sample(ids, 100)
            run[q] = {doc: float(100 - r) for r, doc in enumerate(order)}
        rand.append(trec_metrics(qrels, run)[1])
    mean = {k: sum(r[k] for r in rand) / len(rand) for k in KEYS}
    print("model", {k: round(res[k], 4) for k in KEYS}, "random", {k: round(mean[k], 4) for k in KEYS})
    assert res["ndcg@10"] > 2 * mean["ndcg@10"] and res["ndcg@10"] > mean["ndcg@10"] + 0.15
    assert res["recall@100"] > mean["recall@100"] + 0.1


@pytest.mark.parametrize("seed", [1, 2])
def test_tied_runs_equal_pytrec_eval(seed):
    """Full NFCorpus test qrels, runs whose scores tie a lot (integers 0..3),
    given in random line order, some queries of other splits mixed in."""
    qrels = read_qrels(os.path.join(NF, "qrels", "test.tsv"))
    dev = read_qrels(os.path.join(NF, "qrels", "dev.tsv"))
    with open(os.path.join(NF, "corpus.jsonl")) as f:
        ids = [json.loads(l)["_id"] for l in f]
    rng = random.Random(seed)
    run = {}
    for q in list(qrels) + list(dev)[:20]:
        pool = rng.sample(ids, 150) + rng.sample(list(qrels.get(q, {})), min(5, len(qrels.get(q, {}))))
        run[q] = {doc: float(rng.randint(0, 3)) for doc in dict.fromkeys(pool)}
    path = os.path.join(TMP, f"tied{seed}.run")
    os.makedirs(TMP, exist_ok=True)
    lines = [f"{q} Q0 {doc} 0 {s} t\n" for q, ds in run.items() for doc, s in ds.items()]
    rng.shuffle(lines)
    with open(path, "w") as f:
        f.writelines(lines)
    p = colbert_eval("--score-run", path, "--dataset", NF, "--split", "test", "--depth", "150")
    assert p.returncode == 0, p.stderr
    res = json.loads(p.stdout)
    n, ref = trec_metrics(qrels, {q: ds for q, ds in run.items() if q in qrels})
    assert res["queries"] == n == 323
    for k in KEYS:
        assert abs(res[k] - ref[k]) <= 1e-6, (k, res[k], ref[k])


def small_beir(name, qrels_text, corpus=None):
    d = os.path.join(TMP, "bad", name)
    os.makedirs(os.path.join(d, "qrels"), exist_ok=True)
    with open(os.path.join(d, "corpus.jsonl"), "w") as f:
        f.write(corpus if corpus is not None else
                '{"_id": "d1", "title": "t", "text": "a"}\n{"_id": "d2", "title": "", "text": "b"}\n')
    with open(os.path.join(d, "queries.jsonl"), "w") as f:
        f.write('{"_id": "q1", "text": "x"}\n{"_id": "q2", "text": "y"}\n')
    if qrels_text is not None:
        with open(os.path.join(d, "qrels", "test.tsv"), "w") as f:
            f.write(qrels_text)
    return d


CASES = {
    "no dataset": (lambda: os.path.join(TMP, "nonexistent"), "not a directory"),
    "no split": (lambda: small_beir("nosplit", None), 'no split "test"'),
    "unknown split": (lambda: [NF, "--split", "validation"], "the splits there: dev, test, train"),
    "corpus-id not in corpus": (lambda: small_beir("baddoc", "query-id\tcorpus-id\tscore\nq1\td9\t1\n"),
                                'test.tsv:2: corpus-id "d9" is not in'),
    "query-id not in queries": (lambda: small_beir("badq", "q7\td1\t1\n"), 'test.tsv:1: query-id "q7" is not in'),
    "bad grade": (lambda: small_beir("badgrade", "q1\td1\t1\nq1\td2\tx\n"), "test.tsv:2: expected an integer"),
    "bad corpus line": (lambda: small_beir("badjson", "q1\td1\t1\n", corpus='{"_id": "d1", "text": }\n'),
                        "corpus.jsonl:1: "),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_dataset(case):
    make, want = CASES[case]
    target = make()
    target = target if isinstance(target, list) else [target]
    p = colbert_eval("--model", MODEL, "--dataset", *target, binary=SAN_BIN)
    assert p.returncode == 1, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("colbert: error: ") and want in lines[0], p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("text,want", [
    ("q1 Q0 d1 1 2.0\n", "expected \"query-id Q0 doc-id rank score tag\", found 5 fields"),
    ("q1 Q0 d1 1 high t\n", "expected a number as the score"),
    ("q1 Q0 d5 1 1 t\n", 'doc-id "d5" is not in the corpus'),
    ("q1 Q0 d1 1 1 t\nq1 Q0 d1 2 0.5 t\n", "lists document d1 twice"),
])
def test_bad_run(text, want):
    d = small_beir("runs", "q1\td1\t1\n")
    path = os.path.join(d, "x.run")
    with open(path, "w") as f:
        f.write(text)
    p = colbert_eval("--score-run", path, "--dataset", d, binary=SAN_BIN)
    assert p.returncode == 1 and want in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_usage_errors():
    for args in (["--model", MODEL], ["--dataset", NF], ["--dataset", NF, "--depth", "0", "--model", MODEL],
                 ["--dataset", NF, "--bogus", "1"]):
        p = colbert_eval(*args, binary=SAN_BIN)
        assert p.returncode == 2 and p.stderr.startswith("colbert eval: error:"), (args, p.stderr)
        assert p.stderr.endswith("Try 'colbert eval --help'.\n"), (args, p.stderr)


def test_scores_equal_colbert_ai_maxsim():
    """End to end on a ColBERT checkpoint (tests/ref/gen_train_step.py's):
    every score of the run file equals colbert-ai's formulas in PyTorch
    (BertModel, linear, punctuation mask, normalize, MaxSim) to 1e-4."""
    import string
    import sys

    import torch
    import torch.nn.functional as F
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel, BertTokenizerFast

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "ref"))
    import gen_colbert_head as ref

    ckpt = os.path.join(os.environ.get("COLBERT_REF", ""), "colbert_ckpt")
    assert os.path.isdir(ckpt), "no ColBERT checkpoint in $COLBERT_REF (tests/ref/gen_train_step.py writes it)"
    d = os.path.join(TMP, "e2e")
    os.makedirs(os.path.join(d, "qrels"), exist_ok=True)
    docs, queries = [], []
    with open(os.path.join(NF, "corpus.jsonl")) as f:
        for line in f:
            o = json.loads(line)
            docs.append((o["_id"], " ".join((o["title"] + " " + o["text"]).split())))
            if len(docs) == 40:
                break
    with open(os.path.join(NF, "queries.jsonl")) as f:
        for line in f:
            o = json.loads(line)
            queries.append((o["_id"], " ".join(o["text"].split())))
            if len(queries) == 6:
                break
    with open(os.path.join(d, "corpus.jsonl"), "w") as f:
        f.writelines(json.dumps({"_id": i, "title": "", "text": t}) + "\n" for i, t in docs)
    with open(os.path.join(d, "queries.jsonl"), "w") as f:
        f.writelines(json.dumps({"_id": i, "text": t}) + "\n" for i, t in queries)
    with open(os.path.join(d, "qrels", "test.tsv"), "w") as f:
        f.write("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{docs[k][0]}\t1\n" for k, (q, _) in enumerate(queries)))
    run = os.path.join(TMP, "e2e.run")
    p = colbert_eval("--model", ckpt, "--dataset", d, "--run", run, "--depth", "40", "--quiet")
    assert p.returncode == 0, p.stderr
    ours = read_run(run)

    cfg = BertConfig.from_pretrained(ckpt)
    sd = load_file(os.path.join(ckpt, "model.safetensors"))
    bert = BertModel(cfg, add_pooling_layer=False).eval()
    bert.load_state_dict({k[5:]: v for k, v in sd.items() if k.startswith("bert.")})
    linear, tok = sd["linear.weight"], BertTokenizerFast.from_pretrained(ckpt)
    skip = {tok.encode(s, add_special_tokens=False)[0] for s in string.punctuation}
    with torch.no_grad():
        ids, mask = ref.tensorize_queries(tok, [t for _, t in queries])
        Q = F.normalize(bert(input_ids=ids, attention_mask=mask).last_hidden_state @ linear.T, p=2, dim=2)
        ids, mask = ref.tensorize_docs(tok, [t for _, t in docs])
        D = bert(input_ids=ids, attention_mask=mask).last_hidden_state @ linear.T
        keep = torch.tensor([[(x not in skip) and (x != tok.pad_token_id) for x in row] for row in ids.tolist()])
        D = F.normalize(D * keep.unsqueeze(2).float(), p=2, dim=2)
        sim = torch.einsum("qid,njd->qnij", Q, D).masked_fill(~keep[None, :, None, :], -9999)
        S = sim.max(dim=3).values.sum(dim=2)   # [queries, docs]
    worst = 0.0
    for qi, (q, _) in enumerate(queries):
        assert len(ours[q]) == 40
        for di, (doc, _) in enumerate(docs):
            worst = max(worst, abs(ours[q][doc] - S[qi, di].item()))
    print(f"{len(queries)} x {len(docs)} MaxSim scores: max abs diff {worst:.3g}")
    assert worst <= 1e-4
