"""test_docs.py: every documented command runs as written on a fresh clone.

The shell blocks of README.md and docs/*.md (fenced ```sh) run one after the
other, each file in its own sandbox that looks like a fresh clone after the
README's set-up: `build/colbert` and `colbert` on PATH are the real binary,
`.venv` the real environment, `tests/`, `scripts/` and `examples/` the
repository's, and `../shared/datasets/nfcorpus` a small cut of NFCorpus (the
first train, dev and test queries, their judged documents and a sample of
the rest). Commands run as written, at small size: `colbert train` gets
`--batch-size 4 --doc-maxlen 32 --val-docs 80` appended, `colbert eval`
`--max-queries 4` (a later option wins). A documented run of 150 steps
takes min(150, one epoch) steps: the cut's training triples make about 110
batches of 4, and a run stops after --epochs (default 1), as colbert-ai's.

Not run: `make` lines (this test runs inside `make test`, which has built
everything; `make demo` is the demo), `pip install` lines (the Python
package: tests/test_python.py installs it into a fresh venv and tests that
install), `scripts/setup.sh` (the set-up itself), blocks fenced ```sh bench
(benchmarks, each tens of minutes, documented with the machine they were
measured on) and blocks fenced ```sh synopsis (the shape of a command, with
placeholders such as DIR and M, or what needs several machines). Python and C blocks are
examples of the APIs; their tests are tests/test_python*.py and
tests/test_libcolbert.c.

The README's three-command example is also checked for what issue 18 asks:
the run takes the steps it announced, warms up over the first 10% of them
(15 of 150 on the full NFCorpus) and saves at least three checkpoints.
"""
import glob
import json
import os
import re
import shutil
import subprocess

import pytest

import beir_cut  # tests/beir_cut.py

ROOT = os.environ["COLBERT_ROOT"]
BIN = os.environ["COLBERT_BIN"]
DATA = os.environ["COLBERT_DATASETS"]
TMP = os.environ["COLBERT_TMP"]
NF = os.path.join(DATA, "nfcorpus")
DOCS = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))

WRAPPER = """#!/usr/bin/env bash
# the real colbert, at small size for train and eval (a later option wins)
case "$1" in
    train) exec "{bin}" "$@" --batch-size 4 --doc-maxlen 32 --val-docs 80 --val-queries 16 --threads 2 ;;
    eval) exec "{bin}" "$@" --max-queries 4 --threads 2 ;;
    *) exec "{bin}" "$@" ;;
esac
"""


def blocks(path):
    """(first line number, text) of each ```sh block of a Markdown file."""
    out, cur, start, kind = [], None, 0, None
    for i, line in enumerate(open(path, encoding="utf-8"), 1):
        m = re.match(r"^```(\S*)(?:\s+(\S+))?\s*$", line)
        if m and cur is None:
            kind = (m.group(1), m.group(2))
            cur, start = [], i + 1
        elif line.startswith("```") and cur is not None:
            if kind[0] == "sh" and kind[1] not in ("bench", "synopsis"):
                out.append((start, "".join(cur)))
            cur = None
        elif cur is not None:
            cur.append(line)
    return out


def runnable(text):
    """The block without what this test does not run (see the docstring)."""
    keep = []
    for line in text.replace("\\\n", " ").splitlines():
        s = line.strip()
        if re.match(r"^make(\s|$)", s) or re.match(r"^pip install(\s|$)", s) or s.startswith("bash scripts/setup"):
            continue
        keep.append(line)
    return "\n".join(keep)


def small_nfcorpus(dst):
    """NFCorpus cut: the first 8 train, 6 dev and 6 test queries, their
    judged documents and 60 others."""
    beir_cut.cut(NF, dst, {"train": 8, "dev": 6, "test": 6}, seed=18, n_other=60)


def sandbox(name):
    base = os.path.join(TMP, "docs", name)
    repo = os.path.join(base, "repo")
    os.makedirs(os.path.join(repo, "build"))
    os.makedirs(os.path.join(base, "bin"))
    for d in ("tests", "scripts", "examples", "src", "cli", "bench", "docs"):
        if os.path.exists(os.path.join(ROOT, d)):
            os.symlink(os.path.join(ROOT, d), os.path.join(repo, d))
    os.symlink(os.path.join(ROOT, ".venv"), os.path.join(repo, ".venv"))
    for f in ("Makefile", "README.md", "requirements.txt"):
        os.symlink(os.path.join(ROOT, f), os.path.join(repo, f))
    for p in (os.path.join(repo, "build", "colbert"), os.path.join(base, "bin", "colbert")):
        with open(p, "w") as f:
            f.write(WRAPPER.format(bin=BIN))
        os.chmod(p, 0o755)
    for lib in glob.glob(os.path.join(ROOT, "build", "libcolbert.a")):
        os.symlink(lib, os.path.join(repo, "build", "libcolbert.a"))
    shared = os.path.join(base, "shared", "datasets")
    small_nfcorpus(os.path.join(shared, "nfcorpus"))
    return base, repo


@pytest.mark.parametrize("doc", [d for d in DOCS if blocks(os.path.join(ROOT, d))])
def test_documented_commands_run(doc):
    bl = blocks(os.path.join(ROOT, doc))
    base, repo = sandbox(doc.replace("/", "_"))
    env = dict(os.environ, PATH=os.path.join(base, "bin") + os.pathsep + os.environ["PATH"],
               COLBERT_DATASETS=os.path.join(base, "shared", "datasets"))
    for line, text in bl:
        script = runnable(text)
        if not script.strip():
            continue
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=repo, env=env,
                           capture_output=True, text=True, timeout=1200)
        print(f"\n{doc}:{line}: exit {r.returncode}")
        assert r.returncode == 0, f"{doc}:{line}: the documented block fails:\n{script}\n--- stderr:\n{r.stderr[-3000:]}"
        if doc == "README.md" and "colbert train" in script and "--maxsteps 150" in script:
            check_readme_run(repo, r.stderr)


def check_readme_run(repo, stderr):
    """The README's example: the announced steps (150, or one epoch of the cut
    if that is fewer), warmup over the first 10% of them, >= 3 checkpoints."""
    readme = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"--model-name (\S+)", readme)
    run = os.path.join(repo, "checkpoints", m.group(1))
    log = [json.loads(x) for x in open(os.path.join(run, "train.jsonl"))]
    steps = [x for x in log if "event" not in x]
    ckpts = [x for x in log if x.get("event") == "checkpoint"]
    a = re.search(r"(\d+) steps \((\d+) per epoch\)", stderr)
    assert a, stderr[-2000:]
    total = min(150, int(a.group(2)))
    assert int(a.group(1)) == total and len(steps) == total
    assert [x["step"] for x in steps] == list(range(1, total + 1))
    w = int(total * 0.1)
    assert f"linear warmup over {w} steps" in stderr
    peak = max(x["lr"] for x in steps)
    assert steps[w]["lr"] == peak and steps[w - 1]["lr"] < peak     # the rate peaks at step w + 1
    assert steps[-1]["lr"] < peak / 10                                # and decays towards 0 at the end
    assert len(ckpts) >= 3, ckpts
