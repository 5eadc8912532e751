"""test_curve.py: the training curve (src/train_curve.c), RUN/curve.svg and RUN/curve.png.

- synthetic runs (build/tests/test_curve DIR writes them: validated, 1 step,
  no validation, NaN losses, steps lost before a resume, a run stopped part
  way, 500000 steps): each SVG parses as XML and has its axis titles, round
  x ticks (at least 4), y ticks on every axis, a legend below the plot whose
  entries do not overlap, one nDCG@10 marker per validated checkpoint, a
  mark per checkpoint, the best labelled with its step; each PNG is a PNG of
  the SVG's size (when the build has cairo);
- a tiny real run with validation, then a resume: the plotted smoothed loss
  is train.jsonl's loss_avg (read back through the axis ticks), the markers
  are the logged validations, the best label is RUN/best's step and score.
"""
import json
import math
import os
import re
import shutil
import struct
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

BIN = os.environ["COLBERT_BIN"]
MODEL = os.environ["COLBERT_MODEL"]
DATA = os.environ["COLBERT_DATASETS"]
TMP = os.environ["COLBERT_TMP"]
SYNTH = os.path.join(os.path.dirname(BIN), "tests", "test_curve")
NS = "{http://www.w3.org/2000/svg}"
FILES = ("queries.train.colbert.tsv", "corpus.train.colbert.tsv", "triples.train.colbert.jsonl")


def has_cairo():
    """The build links cairo (the Makefile found it and CAIRO=0 was not given)."""
    return "libcairo" in subprocess.run(["ldd", BIN], capture_output=True, text=True).stdout


def parse(path):
    root = ET.parse(path).getroot()
    assert root.tag == NS + "svg"
    return root


def by_class(root, cls, tag=None):
    return [e for e in root.iter() if cls in e.get("class", "").split() and (tag is None or e.tag == NS + tag)]


def texts(root, cls):
    return by_class(root, cls, "text")


def tick_values(root, cls):
    out = []
    for t in texts(root, cls):
        s = t.text
        v = float(s[:-1]) * 1000 if s.endswith("k") else float(s)
        out.append((v, t))
    return out


def check_round(vals):
    """Ticks are evenly spaced at 1, 2 or 5 x 10^k."""
    assert len(vals) >= 2
    d = [b - a for a, b in zip(vals, vals[1:])]
    assert all(abs(x - d[0]) <= 1e-9 * max(1, abs(d[0])) for x in d), vals
    m = d[0] / 10 ** math.floor(math.log10(d[0]))
    assert any(abs(m - c) < 1e-6 for c in (1, 2, 5)), vals
    assert all(abs(v / d[0] - round(v / d[0])) < 1e-6 for v in vals), vals


def png_size(path):
    b = open(path, "rb").read(32)
    assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR", path
    return struct.unpack(">II", b[16:24])


def check_picture(run_dir, validated, best_step, steps_total):
    """What every curve must show; returns the parsed SVG."""
    root = parse(os.path.join(run_dir, "curve.svg"))
    titles = [t.text for t in texts(root, "axis-title")]
    assert {"step", "loss", "learning rate"} <= set(titles), titles
    assert ("validation" in titles) == (validated > 0), titles
    xs = tick_values(root, "xtick")
    if steps_total >= 4:
        assert len(xs) >= 4, [v for v, _ in xs]
    if len(xs) >= 2:
        check_round([v for v, _ in xs])
    assert all(0 <= v <= steps_total for v, _ in xs)
    for axis in ["ytick-loss", "ytick-lr"] + (["ytick-val"] if validated else []):
        vals = [v for v, _ in tick_values(root, axis)]
        assert len(vals) >= 3, (axis, vals)
        check_round(vals)
    # the legend: below the x tick labels, entries apart from each other
    leg = texts(root, "legend")
    labels = [t.text for t in leg]
    assert any("loss per step" in x or "mean of every" in x for x in labels), labels
    assert any(x.startswith("smoothed loss") for x in labels) and any(x.startswith("learning rate") for x in labels)
    assert "checkpoint" in labels
    if validated:
        assert "validation nDCG@10" in labels
    low = max(float(t.get("y")) for _, t in xs)
    assert all(float(t.get("y")) > low + 20 for t in leg)
    rows = {}
    for t in leg:
        rows.setdefault(t.get("y"), []).append((float(t.get("x")), len(t.text) * 0.6 * float(t.get("font-size"))))
    for r in rows.values():
        r.sort()
        assert all(a[0] + a[1] < b[0] for a, b in zip(r, r[1:])), r
    assert float(root.get("height")) > max(float(t.get("y")) for t in leg)
    # validation markers and the best
    assert len(by_class(root, "ndcg", "circle")) == validated
    assert len(by_class(root, "best-star")) == (1 if validated else 0)
    best = [t.text for t in texts(root, "best")]
    assert len(best) == 1 and best[0].startswith(f"best: step {best_step}"), best
    png = os.path.join(run_dir, "curve.png")
    if has_cairo():
        w, h = png_size(png)
        assert (w, h) == (int(root.get("width")), int(root.get("height")))
    else:
        assert not os.path.exists(png)
    return root


SYNTH_CASES = {  # name: (validated checkpoints, best step, steps of the run, checkpoints)
    "validated": (5, 360, 600, 5),
    "one-step": (0, 1, 1, 1),
    "no-val": (0, 50, 50, 5),
    "nan": (4, 240, 400, 5),
    "resumed": (5, 180, 300, 5),
    "partial": (2, 100, 400, 3),
    "long": (10, 350000, 500000, 10),
    "val-one": (1, 24, 24, 1),
    "odd-text": (3, 20, 30, 3),
}


def test_build_has_png():
    """cairo is installed (make setup installs libcairo2-dev): the build must draw curve.png.

    A make that detected its flags before set-up had installed cairo built
    without it (issue 23); this fails on such a build.
    """
    have = subprocess.run(["pkg-config", "--exists", "cairo"]).returncode == 0
    r = subprocess.run([BIN, "info"], capture_output=True, text=True, check=True)
    line = next(l for l in r.stdout.splitlines() if l.startswith("curve png: "))
    if have:
        assert line.startswith("curve png: yes"), "cairo is installed but colbert was built without it: rebuild with make"
        assert has_cairo()
    else:
        assert line.startswith("curve png: no")


def test_synthetic_curves():
    out = os.path.join(TMP, "curve_synth")
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([SYNTH, out], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for name, (nval, best, total, nckpt) in SYNTH_CASES.items():
        root = check_picture(os.path.join(out, name), nval, best, total)
        assert len(by_class(root, "ckpt")) == nckpt, name
        assert len(by_class(root, "nonfinite")) > 0 if name == "nan" else not by_class(root, "nonfinite")
        assert bool(by_class(root, "future")) == (name == "partial")
        title = texts(root, "title")[0].text
        name = "r\u00e9sum? run" if name == "odd-text" else "synthetic <&> run"
        assert title.startswith(name + ": ") and f"/ {total} steps" in title, title
    # the long run is downsampled: at most ~1000 points a curve
    root = parse(os.path.join(out, "long", "curve.svg"))
    for cls in ("loss", "loss-avg", "lr"):
        pts = sum(len(e.get("points").split()) for e in by_class(root, cls, "polyline"))
        assert 900 <= pts <= 1000, (cls, pts)


# ---- a real run -----------------------------------------------------------

def train(args):
    r = subprocess.run([BIN, "train", "--threads", "1", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def data():
    """480 NFCorpus training triples (about 400 queries: 18 held out)."""
    nf = os.path.join(TMP, "curve_nf")
    d = os.path.join(TMP, "curve_nf480")
    if not os.path.exists(os.path.join(d, FILES[2])):
        r = subprocess.run([BIN, "prepare", "--beir", os.path.join(DATA, "nfcorpus"), "--split", "train",
                            "--no-mining", "--out", nf, "--quiet"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        os.makedirs(d, exist_ok=True)
        for f in FILES[:2]:
            shutil.copy(os.path.join(nf, f), d)
        with open(os.path.join(nf, FILES[2])) as src, open(os.path.join(d, FILES[2]), "w") as dst:
            for i, line in enumerate(src):
                if i == 480:
                    break
                dst.write(line)
    return d


def axis_map(root, cls, coord):
    """value(pixel) of an axis, from its first and last tick labels."""
    ticks = tick_values(root, cls)
    (v0, t0), (v1, t1) = ticks[0], ticks[-1]
    off = -4.0 if coord == "y" else 0.0  # y labels sit 4 px below their tick
    p0, p1 = float(t0.get(coord)) + off, float(t1.get(coord)) + off
    return lambda p: v0 + (p - p0) * (v1 - v0) / (p1 - p0)


def test_training_curve(data):
    out = os.path.join(TMP, "curve_runs")
    shutil.rmtree(out, ignore_errors=True)
    common = ["--pretrained", MODEL, "--data", data, "--output-dir", out, "--batch-size", "4", "--doc-maxlen", "32",
              "--query-maxlen", "16", "--save-every", "4", "--val-docs", "40", "--keep-checkpoints", "0",
              "--lr", "1e-4", "--quiet"]
    train(["--model-name", "c", "--maxsteps", "12", *common])
    run = os.path.join(out, "c")
    lines = [json.loads(x) for x in open(os.path.join(run, "train.jsonl"))]
    steps = {x["step"]: x for x in lines if "event" not in x}
    ckpts = [x for x in lines if x.get("event") == "checkpoint"]
    assert sorted(steps) == list(range(1, 13)) and [c["step"] for c in ckpts] == [4, 8, 12]
    best = int(re.search(r"step-(\d+)$", os.path.realpath(os.path.join(run, "best"))).group(1))
    root = check_picture(run, 3, best, 12)
    assert len(by_class(root, "ckpt")) == 3
    label = texts(root, "best")[0].text
    bc = next(c for c in ckpts if c["step"] == best)
    assert label == f"best: step {best}, nDCG@10 {bc['val_ndcg10']:.3f}", label

    # the plot reads back as the log: smoothed loss = loss_avg, lr, validation
    sx = axis_map(root, "xtick", "x")
    sl = axis_map(root, "ytick-loss", "y")
    sr = axis_map(root, "ytick-lr", "y")
    sv = axis_map(root, "ytick-val", "y")
    (avg,) = by_class(root, "loss-avg", "polyline")
    pts = [tuple(map(float, p.split(","))) for p in avg.get("points").split()]
    assert len(pts) == 12
    lo = min(x["loss_avg"] for x in steps.values())
    hi = max(x["loss_avg"] for x in steps.values())
    for (px, py), st in zip(pts, range(1, 13)):
        assert sx(px) == pytest.approx(st, abs=0.02)
        assert sl(py) == pytest.approx(steps[st]["loss_avg"], abs=0.003 * (hi - lo) + 0.002)
    (lr,) = by_class(root, "lr", "polyline")
    for p, st in zip(lr.get("points").split(), range(1, 13)):
        assert sr(float(p.split(",")[1])) == pytest.approx(steps[st]["lr"], abs=1e-6)
    marks = by_class(root, "ndcg", "circle")
    for m, c in zip(marks, ckpts):
        assert sx(float(m.get("cx"))) == pytest.approx(c["step"], abs=0.02)
        assert sv(float(m.get("cy"))) == pytest.approx(c["val_ndcg10"], abs=0.002)
    assert len(by_class(root, "mrr", "polygon")) == 3

    # the same run killed after its first checkpoint, then resumed from its
    # newest: the same picture (the history before the resume comes back
    # from train.jsonl and the training state)
    p = subprocess.Popen([BIN, "train", "--threads", "1", "--model-name", "c2", "--maxsteps", "12", *common],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run2 = os.path.join(out, "c2")
    t0 = time.time()
    while time.time() - t0 < 300 and p.poll() is None:
        if os.path.isdir(os.path.join(run2, "step-000004")):
            p.kill()
            break
        time.sleep(0.01)
    p.wait()
    newest = max(d for d in os.listdir(run2) if d.startswith("step-"))
    assert newest < "step-000012", "the run ended before it could be killed"
    train(["--resume", os.path.join(run2, newest), "--quiet"])
    root2 = check_picture(run2, 3, best, 12)
    (avg2,) = by_class(root2, "loss-avg", "polyline")
    assert avg2.get("points") == avg.get("points")
    assert [m.get("cy") for m in by_class(root2, "ndcg", "circle")] == [m.get("cy") for m in marks]
