"""test_prepare.py: `colbert prepare` on real data (../shared/datasets) in every
input kind and form, checked against the rules of SPEC section 2; our files
read back with colbert-ai's own loaders; byte-identical re-runs; and each bad
input rejected by the ASan/UBSan build with one clear line and nothing left in
--out.

colbert-ai (PyPI) imports fine next to transformers 5.x for what we use: the
package __init__ pulls in its trainer and indexer modules, which only warn
(no CUDA, no faiss); the data loaders themselves are plain Python. If that
import ever breaks, the fallback below loads the three loader modules without
running the package __init__.
"""
import importlib
import importlib.util
import json
import os
import random
import subprocess
import sys
import types
from collections import defaultdict
from pathlib import Path

import pytest

BIN = os.environ.get("COLBERT_BIN", "build/colbert")
SAN = os.environ.get("COLBERT_SAN_BIN", "build-san/colbert")
DATA = Path(os.environ.get("COLBERT_DATASETS", "../shared/datasets"))
TMP = Path(os.environ.get("COLBERT_TMP", "/tmp"))
NAMES = ("queries.train.colbert.tsv", "corpus.train.colbert.tsv", "triples.train.colbert.jsonl")


def colbert_loaders():
    try:
        from colbert.data import Collection, Examples, Queries
        return Queries, Collection, Examples
    except Exception:  # the package __init__ broke: load the modules alone
        spec = importlib.util.find_spec("colbert")
        assert spec is not None, "colbert-ai is not installed (requirements.txt has it: make setup)"
        root = Path(spec.origin).parent
        for name, path in (("colbert", root), ("colbert.data", root / "data")):
            mod = types.ModuleType(name)
            mod.__path__ = [str(path)]
            sys.modules[name] = mod
        q = importlib.import_module("colbert.data.queries")
        c = importlib.import_module("colbert.data.collection")
        e = importlib.import_module("colbert.data.examples")
        return q.Queries, c.Collection, e.Examples


# ---- reading the datasets -------------------------------------------------

def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def beir(name, split):
    corpus = {d["_id"]: d for d in read_jsonl(DATA / name / "corpus.jsonl")}
    queries = {q["_id"]: q["text"] for q in read_jsonl(DATA / name / "queries.jsonl")}
    qrels = []
    with open(DATA / name / "qrels" / f"{split}.tsv", encoding="utf-8") as f:
        next(f)
        for line in f:
            q, d, s = line.rstrip("\r\n").split("\t")
            qrels.append((q, d, int(s)))
    return corpus, queries, qrels


def doc_text(d):
    return f"{d['title']} {d['text']}" if d.get("title", "").strip() else d["text"]


def clean(s):
    return s.replace("\t", " ").replace("\n", " ").replace("\r", " ")


# ---- running and checking ---------------------------------------------------

def prepare(out, *args, binary=None, check=True):
    cmd = [binary or BIN, "prepare", "--out", str(out), "--no-mining", "--quiet", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def expected_count(P, N, M=20):
    if P == 0 or N == 0:
        return 0
    if P == 1:
        return N
    initial = P * min(N, max(1, M // P))
    return initial if initial >= M else min(M, P * N)


def check_rules(out, pos, neg, extra_docs=(), k=10):
    """pos/neg: query text -> set of passage texts (as given); extra_docs:
    corpus documents. Checks every rule of SPEC section 2 on our files."""
    qlines = (out / NAMES[0]).read_text(encoding="utf-8").split("\n")[:-1]
    clines = (out / NAMES[1]).read_text(encoding="utf-8").split("\n")[:-1]
    queries = {}
    for i, line in enumerate(qlines):
        qid, text = line.split("\t")
        assert int(qid) == i
        queries[i] = text
    coll = []
    for i, line in enumerate(clines):
        pid, text = line.split("\t")
        assert int(pid) == i
        coll.append(text)
    # texts round-trip (tabs and newlines replaced), each distinct text once
    all_q = set(pos) | set(neg)
    assert sorted(queries.values()) == sorted(clean(q) for q in all_q)
    docs = set(extra_docs)
    for s in list(pos.values()) + list(neg.values()):
        docs |= s
    assert sorted(coll) == sorted(clean(d) for d in docs)
    qid_of = {text: i for i, text in queries.items()}
    raw_q = {clean(q): q for q in all_q}
    C = len(coll)
    triples = [json.loads(line) for line in (out / NAMES[2]).read_text().splitlines()]
    per_q = defaultdict(list)
    for t in triples:
        assert len(t) == 3 and all(isinstance(x, int) for x in t)
        q, p, n = t
        assert 0 <= q < len(queries) and 0 <= p < C and 0 <= n < C  # ids resolve
        per_q[q].append((p, n))
    assert len(set(map(tuple, triples))) == len(triples), "duplicate triplets"
    for qtext, qid in qid_of.items():
        q = raw_q[qtext]
        P = {clean(x) for x in pos.get(q, ())}
        given = {clean(x) for x in neg.get(q, ())} - P
        got = per_q.get(qid, [])
        for p, n in got:
            assert coll[p] in P, f"positive of {qtext!r} is not one of its positives"
            assert coll[n] not in P, f"negative of {qtext!r} is one of its positives"
        negs = {n for _, n in got}
        new = {coll[n] for n in negs} - given
        assert len(new) <= k
        N = len(given) + (min(k, C - len(P) - len(given)) if P else 0)
        assert len(got) == expected_count(len(P), N), (qtext, len(P), N, len(got))
    return len(queries), C, len(triples)


# ---- fixtures: the datasets in every form -----------------------------------

@pytest.fixture(scope="module")
def work():
    d = TMP / "prepare_py"
    d.mkdir(parents=True, exist_ok=True)
    return d


def test_beir_nfcorpus(work):
    corpus, queries, qrels = beir("nfcorpus", "train")
    pos = defaultdict(set)
    for q, d, s in qrels:
        if s > 0:
            pos[queries[q]].add(doc_text(corpus[d]))
    out = work / "beir"
    prepare(out, "--beir", DATA / "nfcorpus", "--split", "train")
    nq, C, nt = check_rules(out, pos, {}, [doc_text(d) for d in corpus.values()])
    assert nq == len(pos) and nt > 100000
    # several positives: the 20-triplet rule is exercised
    assert any(len(v) > 20 for v in pos.values()) and any(1 < len(v) < 20 for v in pos.values())


def scifact_pairs():
    corpus, queries, qrels = beir("scifact", "train")
    return corpus, [(queries[q], doc_text(corpus[d])) for q, d, s in qrels if s > 0]


def test_jsonl_pairs_all_forms_and_corpus(work):
    corpus, pairs = scifact_pairs()
    rng = random.Random(0)
    pos = defaultdict(set)
    recs = []
    grouped = defaultdict(list)
    for q, d in pairs:
        if rng.random() < 0.1:  # tabs and newlines inside texts
            q = q.replace(" ", "\t", 1) + "\nend"
        grouped[q].append(d)
    for i, (q, ds) in enumerate(grouped.items()):
        pos[q] |= set(ds)
        if i % 3 == 0 and len(ds) > 1:
            recs.append([q, ds])                       # list of passages
        else:
            for d in ds:
                recs.append([q, {"content": d}] if i % 3 == 1 else [q, d])
    f = work / "pairs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    extra = [doc_text(d) for d in list(corpus.values())[:1000]]
    cf = work / "extra.jsonl"
    cf.write_text("".join(json.dumps({"_id": str(i), "title": "", "text": t}) + "\n"
                          for i, t in enumerate(extra)), encoding="utf-8")
    out = work / "pairs"
    prepare(out, "--train-data", f, "--corpus", cf)
    check_rules(out, pos, {}, extra)
    # re-running gives byte-identical files; another seed does not
    out2 = work / "pairs2"
    prepare(out2, "--train-data", f, "--corpus", cf)
    for n in NAMES:
        assert (out / n).read_bytes() == (out2 / n).read_bytes(), n
    out3 = work / "pairs3"
    prepare(out3, "--train-data", f, "--corpus", cf, "--seed", 7)
    assert (out / NAMES[2]).read_bytes() != (out3 / NAMES[2]).read_bytes()


def test_labeled_jsonl_and_tsv(work):
    corpus, queries, qrels = beir("nfcorpus", "dev")
    pos, neg = defaultdict(set), defaultdict(set)
    recs, tsv = [], []
    for q, d, s in qrels:
        qt, dt = queries[q], doc_text(corpus[d])
        (pos if s == 2 else neg)[qt].add(dt)
        recs.append([qt, dt, 1 if s == 2 else 0])
        tsv.append(f"{clean(qt)}\t{clean(dt)}\t{'good' if s == 2 else 'bad'}\n")
    f = work / "labeled.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    out = work / "labeled"
    prepare(out, "--train-data", f, "--num-new-negatives", 5)  # auto: the label is a number
    check_rules(out, pos, neg, k=5)
    t = work / "labeled.tsv"
    t.write_text("query\tpassage\tlabel\n" + "".join(tsv), encoding="utf-8")
    out = work / "labeled_tsv"
    prepare(out, "--train-data", t, "--kind", "labeled", "--positive-label", "good",
            "--negative-label", "bad", "--num-new-negatives", 0)
    cpos = {clean(q): {clean(x) for x in v} for q, v in pos.items()}
    cneg = {clean(q): {clean(x) for x in v} for q, v in neg.items()}
    check_rules(out, cpos, cneg, k=0)


def test_triplets_jsonl_and_tsv(work):
    corpus, pairs = scifact_pairs()
    docs = [doc_text(d) for d in corpus.values()]
    rng = random.Random(1)
    pos, neg = defaultdict(set), defaultdict(set)
    recs, tsv = [], []
    for i, (q, d) in enumerate(pairs):
        n1, n2 = rng.choice(docs), rng.choice(docs)
        if i % 2:
            recs.append([q, [d], [n1, n2]])
            neg[q] |= {n1, n2}
        else:
            recs.append([q, d, n1])
            neg[q].add(n1)
        pos[q].add(d)
        tsv.append(f"{clean(q)}\t{clean(d)}\t{clean(n1)}\n")
    f = work / "triplets.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    out = work / "triplets"
    prepare(out, "--train-data", f, "--num-new-negatives", 3)
    check_rules(out, pos, neg, k=3)
    t = work / "triplets.tsv"
    t.write_text("".join(tsv), encoding="utf-8")
    out = work / "triplets_tsv"
    prepare(out, "--train-data", t)
    cpos, cneg = defaultdict(set), defaultdict(set)
    for line in tsv:
        q, p, n = line.rstrip("\n").split("\t")
        cpos[q].add(p)
        cneg[q].add(n)
    check_rules(out, cpos, cneg)


def test_tsv_pairs_with_tsv_and_plain_corpus(work):
    corpus, queries, qrels = beir("nfcorpus", "test")
    pos = defaultdict(set)
    lines = []
    for q, d, s in qrels:
        qt, dt = clean(queries[q]), clean(doc_text(corpus[d]))
        pos[qt].add(dt)
        lines.append(f"{qt}\t{dt}\n")
    f = work / "pairs.tsv"
    f.write_text("".join(lines), encoding="utf-8")
    extra = [clean(doc_text(d)) for d in list(corpus.values())[:500]]
    ct = work / "extra.tsv"
    ct.write_text("id\ttext\n" + "".join(f"d{i}\t{t}\n" for i, t in enumerate(extra)), encoding="utf-8")
    cp = work / "extra.txt"
    cp.write_text("".join(t + "\n" for t in extra[250:]) + "one more document\n", encoding="utf-8")
    out = work / "pairs_tsv"
    prepare(out, "--train-data", f, "--corpus", ct, "--corpus", cp)
    check_rules(out, pos, {}, extra + ["one more document"])


def test_colbert_ai_loaders_read_our_files(work):
    Queries, Collection, Examples = colbert_loaders()
    out = work / "beir_loaders"
    r = subprocess.run([BIN, "prepare", "--beir", DATA / "scifact", "--out", out, "--no-mining"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    nq = sum(1 for _ in open(out / NAMES[0], encoding="utf-8"))
    nc = sum(1 for _ in open(out / NAMES[1], encoding="utf-8"))
    nt = sum(1 for _ in open(out / NAMES[2], encoding="utf-8"))
    q = Queries(path=str(out / NAMES[0]))
    c = Collection(path=str(out / NAMES[1]))
    e = Examples(path=str(out / NAMES[2]), nway=2)
    assert (len(q), len(c), len(e.tolist())) == (nq, nc, nt)
    assert f"{nq} queries, {nc} documents, {nt} triplets" in r.stdout
    for qid, pos, negid in e.tolist()[:1000]:
        assert q[qid] and c[pos] and c[negid]
    # the same from labeled pairs with tabs and newlines inside the texts
    f = work / "loaders.jsonl"
    f.write_text(json.dumps(["a\tquery\nwith breaks", "first\tpassage\r\nhere", 1]) + "\n" +
                 json.dumps(["a\tquery\nwith breaks", "second passage", 0]) + "\n", encoding="utf-8")
    out = work / "loaders_small"
    prepare(out, "--train-data", f, "--num-new-negatives", 0)
    q = Queries(path=str(out / NAMES[0]))
    c = Collection(path=str(out / NAMES[1]))
    assert list(q.values()) == ["a query with breaks"]
    assert sorted(c) == ["first passage  here", "second passage"]
    assert len(Examples(path=str(out / NAMES[2]), nway=2).tolist()) == 1


# ---- bad input: one clear line, exit 1, nothing in --out --------------------

BAD = {
    "invalid_json": ('["q", "p"]\n["q2", "p2"\n', r"bad\.jsonl:2: invalid JSON at column 12: expected ',' or ']'"),
    "wrong_field_count": ('["q", "p"]\n["q2", "p2", 1, 2]\n', r"bad\.jsonl:2: expected 2 fields .* found 4"),
    "one_field": ('["q"]\n', r"bad\.jsonl:1: expected 2 fields .* found 1"),
    "mixed_kinds": ('["q", "p"]\n["q2", "p2", "n2"]\n', r"bad\.jsonl:2: mixed kinds: this record has 3 fields but the first record \(.*bad\.jsonl:1\) has 2"),
    "unknown_label": ('["q", "p", 1]\n["q", "p2", 7]\n', r"bad\.jsonl:2: label 7 is neither the positive label 1 nor the negative label 0"),
    "empty_query": ('["q", "p"]\n["  ", "p2"]\n', r"bad\.jsonl:2: empty query"),
    "empty_passage": ('["q", "p"]\n["q2", ""]\n', r"bad\.jsonl:2: empty passage \(field 2\)"),
    "empty_passage_in_list": ('["q", ["p", ""]]\n', r"bad\.jsonl:1: empty passage \(field 2, item 2\)"),
    "invalid_utf8": (b'["q", "p"]\n["q2", "caf\xe9"]\n', r"bad\.jsonl:2: invalid UTF-8 at column 12 \(byte 0xe9\)"),
    "lone_surrogate": ('["q", "p \\ud800 x"]\n', r"bad\.jsonl:1: invalid UTF-8 at column \d+: \\ud800 is an unpaired surrogate"),
    "not_a_list": ('{"query": "q"}\n', r"bad\.jsonl:1: expected a list \[query, passage, \.\.\.\], found an object"),
    "number_as_negative": ('["q", "p", "n"]\n["q", "p", 1]\n', r"bad\.jsonl:2: field 3 is a number, not a negative passage"),
    "empty_file": ("", r"bad\.jsonl: empty file"),
    "blank_file": ("\n  \n", r"bad\.jsonl: empty file"),
    "tsv_invalid_utf8": (b"q\tp\nq2\t\xff\xfe\n", r"bad\.jsonl:2: invalid UTF-8 at column 4"),
    "tsv_fields": ("q\tp\nq2\tp2\tx\ty\n", r"bad\.jsonl:2: expected 2 fields .* found 4"),
}


def run_bad(work, args, pattern):
    import re
    out = work / "bad_out" / "never"
    r = subprocess.run([SAN, "prepare", "--out", str(out), "--no-mining", *map(str, args)],
                       capture_output=True, text=True)
    lines = r.stderr.strip().split("\n")
    assert r.returncode == 1, r.stderr
    assert len(lines) == 1, r.stderr                      # one line, no sanitizer report
    assert lines[0].startswith("colbert: error: "), r.stderr
    assert re.search(pattern, lines[0]), lines[0]
    assert not out.exists() and not (work / "bad_out").exists()


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(work, case):
    text, pattern = BAD[case]
    f = work / "bad.jsonl"
    f.write_bytes(text if isinstance(text, bytes) else text.encode())
    run_bad(work, ["--train-data", f], pattern)


def test_bad_missing_file(work):
    run_bad(work, ["--train-data", work / "nope.jsonl"], r"nope\.jsonl: cannot open: No such file")


def make_beir(work, qrels):
    d = work / "beir_bad"
    (d / "qrels").mkdir(parents=True, exist_ok=True)
    (d / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "doc one"}\n'
                                    '{"_id": "d2", "title": "", "text": "doc two"}\n')
    (d / "queries.jsonl").write_text('{"_id": "q1", "text": "query one"}\n')
    (d / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\r\n" + qrels)
    return d


def test_bad_beir_ids(work):
    d = make_beir(work, "q1\td1\t1\r\nq1\td9\t1\r\n")
    run_bad(work, ["--beir", d], r"train\.tsv:3: corpus-id \"d9\" is not in .*corpus\.jsonl")
    d = make_beir(work, "q7\td1\t1\r\n")
    run_bad(work, ["--beir", d], r"train\.tsv:2: query-id \"q7\" is not in .*queries\.jsonl")
    run_bad(work, ["--beir", d, "--split", "dev"], r"no split \"dev\"")


def test_no_triplet_says_why(work):
    d = make_beir(work, "q1\td1\t1\r\nq1\td2\t1\r\n")
    run_bad(work, ["--beir", d], r"no training triplet: the collection has only 2 documents .* --corpus FILE")
    f = work / "neg_only.jsonl"
    f.write_text('["q", "p", 0]\n')
    run_bad(work, ["--train-data", f], r"no training triplet: none of the 1 queries has a positive")


# ---- the three files are one set ----------------------------------------------

KILL_AT_RENAME = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
/* rename() as libc's, except that call number $KILL_AT_RENAME dies by SIGKILL first */
int rename(const char *from, const char *to) {
    static int (*real)(const char *, const char *);
    static int n;
    if (!real) real = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    const char *k = getenv("KILL_AT_RENAME");
    if (k && ++n == atoi(k)) raise(SIGKILL);
    return real(from, to);
}
"""


def test_killed_between_renames_is_refused_then_repaired(work):
    """prepare renames the manifest, then queries, corpus and triples into
    place. Killed (SIGKILL, through an LD_PRELOAD shim) just before the
    corpus rename, it leaves the new queries beside the old corpus and
    triples, and its temporaries: train refuses the mixed set; the next
    prepare removes the temporaries and makes a whole set again."""
    shim = work / "kill_at_rename.so"
    (work / "kill_at_rename.c").write_text(KILL_AT_RENAME)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", shim, work / "kill_at_rename.c", "-ldl"], check=True)
    out = work / "set"
    old = work / "old.jsonl"
    old.write_text("".join(json.dumps([f"old query {i}", f"old pos {i}", f"old neg {i}"]) + "\n" for i in range(8)))
    new = work / "new.jsonl"
    new.write_text("".join(json.dumps([f"new query {i}", f"new pos {i}", f"new neg {i}"]) + "\n" for i in range(9)))
    prepare(out, "--train-data", old, "--num-new-negatives", 1)
    before = {n: (out / n).read_bytes() for n in NAMES}
    env = dict(os.environ, LD_PRELOAD=str(shim), KILL_AT_RENAME="3")
    r = subprocess.run([BIN, "prepare", "--out", str(out), "--no-mining", "--quiet", "--train-data", str(new),
                        "--num-new-negatives", "1"], capture_output=True, text=True, env=env)
    assert r.returncode == -9, (r.returncode, r.stderr)
    assert (out / NAMES[0]).read_bytes() != before[NAMES[0]]          # the new queries
    assert all((out / n).read_bytes() == before[n] for n in NAMES[1:])  # the old corpus and triples
    stale = sorted(x.name for x in out.iterdir() if ".tmp." in x.name)
    assert [x.split(".tmp.")[0] for x in stale] == [NAMES[1], NAMES[2]], stale
    listed = json.loads((out / "manifest.train.colbert.json").read_text())["files"][NAMES[1]]["bytes"]
    t = subprocess.run([SAN, "train", "--model-name", "x", "--pretrained", "/nonexistent", "--data", str(out),
                        "--output-dir", str(work / "never")], capture_output=True, text=True)
    assert t.returncode == 1 and t.stderr.strip() == (
        f"colbert: error: {out}/{NAMES[1]} does not match manifest.train.colbert.json ({len(before[NAMES[1]])} bytes, "
        f"the manifest says {listed}): "
        "these files are not one set (a `colbert prepare` was interrupted while replacing them, or a file changed "
        f"since) (HINT: re-run `colbert prepare --out {out}`, or delete the manifest to use the files as they are)"
    ), t.stderr
    assert not (work / "never").exists()
    # the next prepare: whole again, the killed one's temporaries gone
    prepare(out, "--train-data", new, "--num-new-negatives", 1)
    assert sorted(x.name for x in out.iterdir()) == sorted([*NAMES, "manifest.train.colbert.json"])
    t = subprocess.run([SAN, "train", "--model-name", "x", "--pretrained", "/nonexistent", "--data", str(out),
                        "--output-dir", str(work / "never")], capture_output=True, text=True)
    assert t.returncode == 1 and "/nonexistent" in t.stderr and "manifest" not in t.stderr, t.stderr


def test_nul_bytes_and_json_nul_escapes(work):
    """A raw NUL byte in a record is refused (FILE:LINE:column); a JSON
    "\\u0000" is a character of the text and goes out as a space, like a tab."""
    f = work / "nul.tsv"
    f.write_bytes(b"q one\tp one\tn one\nq two\tp\x00two\tn two\n")
    run_bad(work, ["--train-data", f], r"nul\.tsv:2: a NUL byte at column 8")
    f = work / "nul_escape.jsonl"
    f.write_text('["q\\u0000one", "p one", "n\\u0000one"]\n["q two", "p two", "n two"]\n')
    out = work / "nul_escape_out"
    prepare(out, "--train-data", f, "--num-new-negatives", 0)
    assert b"\x00" not in (out / NAMES[0]).read_bytes() + (out / NAMES[1]).read_bytes()
    assert "q one" in (out / NAMES[0]).read_text()
