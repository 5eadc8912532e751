#!/usr/bin/env bash
# demo.sh: the main job of colbert.c end to end (`make demo`, after setup and
# the build):
#   1. training data from NFCorpus train, hard negatives mined with
#      all-MiniLM-L6-v2 (colbert prepare);
#   2. a new ColBERT trained from all-MiniLM-L6-v2 (colbert train);
#   3. the dense model it starts from (sentence embeddings, cosine), the
#      untrained ColBERT and the best checkpoint (picked by validation
#      nDCG@10 on held-out training queries) evaluated on NFCorpus test by
#      the same evaluator (colbert eval), the scores side by side, the best
#      checkpoint's path, the log and the curve.
# Sized for about 30 minutes on a 2-core machine. Every size is an environment
# variable, so the same script runs on other data or at full size, e.g.
#   DEMO_DATASET=/data/scifact DEMO_TRAIN_SPLIT=train DEMO_EVAL_SPLIT=test \
#   DEMO_STEPS=5000 DEMO_BATCH=32 DEMO_LR=5e-6 DEMO_DOC_MAXLEN=256 bash scripts/demo.sh
# (DEMO_LOSS=colbert trains with colbert-ai's loss, as RAGatouille does)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN="$ROOT/build/colbert"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

DATASET="${DEMO_DATASET:-$ROOT/../shared/datasets/nfcorpus}"
TRAIN_SPLIT="${DEMO_TRAIN_SPLIT:-train}"
EVAL_SPLIT="${DEMO_EVAL_SPLIT:-test}"
MODEL="${DEMO_MODEL:-}"
OUT="${DEMO_OUT:-$ROOT/build/demo}"   # build/ is ignored by git
STEPS="${DEMO_STEPS:-300}"          # training steps (about 21 minutes on 2 cores, validation included: docs/train.md, recipe)
BATCH="${DEMO_BATCH:-32}"           # triples per step
LR="${DEMO_LR:-1e-4}"               # a new projection needs more than RAGatouille's 5e-6 in 150 steps
WARMUP="${DEMO_WARMUP:-auto}"       # 10% of the run
SAVE_EVERY="${DEMO_SAVE_EVERY:-$(( (STEPS + 2) / 3 ))}"   # three validated checkpoints (five would add 22% to the run)
DOC_MAXLEN="${DEMO_DOC_MAXLEN:-128}"  # document tokens in training
EVAL_DOC_MAXLEN="${DEMO_EVAL_DOC_MAXLEN:-256}"  # in both ColBERT evaluations: what the dense model reads
NEGATIVES="${DEMO_NEGATIVES:-10}"
LOSS="${DEMO_LOSS:-contrastive}"    # PyLate's loss; "colbert" for colbert-ai's (docs/benchmarks.md, quality)

if [ -z "$MODEL" ]; then
    MODEL=$("$ROOT/.venv/bin/python" tests/ref/find_model.py) || {
        echo "demo: cannot find all-MiniLM-L6-v2 (run 'make setup', or set DEMO_MODEL=DIR)" >&2; exit 1; }
fi
[ -x "$BIN" ] || { echo "demo: $BIN is missing: run 'make' first" >&2; exit 1; }
[ -d "$DATASET" ] || { echo "demo: $DATASET: no such dataset directory (set DEMO_DATASET)" >&2; exit 1; }
mkdir -p "$OUT"
t0=$(date +%s)
stamp() { echo "== demo [$(( $(date +%s) - t0 )) s] $*" >&2; }

stamp "1/5 prepare: $DATASET ($TRAIN_SPLIT), $NEGATIVES mined hard negatives per query"
"$BIN" prepare --beir "$DATASET" --split "$TRAIN_SPLIT" --miner-model "$MODEL" \
    --num-new-negatives "$NEGATIVES" --out "$OUT/data"

stamp "2/5 train: new ColBERT from $MODEL, $STEPS steps of $BATCH triples, lr $LR, loss $LOSS"
rm -rf "$OUT/checkpoints/demo"
"$BIN" train --model-name demo --pretrained "$MODEL" --data "$OUT/data" --output-dir "$OUT/checkpoints" \
    --batch-size "$BATCH" --maxsteps "$STEPS" --lr "$LR" --warmup "$WARMUP" --save-every "$SAVE_EVERY" \
    --doc-maxlen "$DOC_MAXLEN" --loss "$LOSS" > "$OUT/train.out" 2> >(tee "$OUT/train.err" >&2)
BEST=$(tail -n 1 "$OUT/train.out")
[ -d "$BEST" ] || { echo "demo: colbert train printed no checkpoint path (see $OUT/train.out)" >&2; exit 1; }

# The dense model as it is (its sentence-transformers pooling, cosine): the
# retriever a ColBERT trained from it should beat. The untrained ColBERT is
# the same new ColBERT colbert train began from (same seed, same
# projection). Both ColBERTs are evaluated on the first 256 tokens of each
# document, as many as the dense model reads (its max_seq_length); training
# reads 128. On NFCorpus dev that lifts a trained model's nDCG@10 by 0.003
# (docs/train.md, recipe).
stamp "3/5 eval: the dense start on $EVAL_SPLIT"
"$BIN" eval --dense --model "$MODEL" --dataset "$DATASET" --split "$EVAL_SPLIT" --quiet > "$OUT/dense.json"
stamp "4/5 eval: the untrained ColBERT on $EVAL_SPLIT"
"$BIN" eval --model "$MODEL" --dataset "$DATASET" --split "$EVAL_SPLIT" --doc-maxlen "$EVAL_DOC_MAXLEN" \
    --run "$OUT/base.run" --quiet > "$OUT/base.json"
stamp "5/5 eval: the best checkpoint on $EVAL_SPLIT"
"$BIN" eval --model "$BEST" --dataset "$DATASET" --split "$EVAL_SPLIT" --doc-maxlen "$EVAL_DOC_MAXLEN" \
    --run "$OUT/trained.run" --quiet > "$OUT/trained.json"

"$ROOT/.venv/bin/python" - "$OUT" "$BEST" "$(( $(date +%s) - t0 ))" <<'EOF'
import json, os, re, sys
out, best, secs = sys.argv[1], sys.argv[2], int(sys.argv[3])
dense, base, trained = (json.load(open(os.path.join(out, f))) for f in ("dense.json", "base.json", "trained.json"))
print()
print(f"{'':12} {'dense start':>12} {'untrained':>10} {'trained':>10} {'vs dense':>10}")
for k in ("ndcg@10", "mrr@10", "recall@10", "recall@100"):
    print(f"{k:12} {dense[k]:12.4f} {base[k]:10.4f} {trained[k]:10.4f} {trained[k] - dense[k]:+10.4f}")
err = open(os.path.join(out, "train.err")).read()
done = re.search(r"done: \d+ steps in ([\d.]+) s \(validation ([\d.]+) s, (\d+)%\)", err)
run = os.path.dirname(best)
print(f"\nbest checkpoint: {best}")
for line in err.splitlines():
    if line.startswith("colbert: best:"):
        print(line[len("colbert: "):])
if done:
    print(f"training: {float(done.group(1)):.0f} s, of which validation {float(done.group(2)):.0f} s ({done.group(3)}%)")
print(f"log: {run}/train.jsonl, curve: {run}/curve.svg" + (f" and {run}/curve.png" if os.path.exists(f"{run}/curve.png") else ""))
print(f"demo: {secs} s in all")
if trained["ndcg@10"] < dense["ndcg@10"]:
    print("demo: note: the trained ColBERT is below the dense start here; see docs/train.md, recipe")
EOF
