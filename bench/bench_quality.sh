#!/usr/bin/env bash
# bench_quality.sh: NFCorpus test nDCG@10 after training, colbert.c vs PyLate
# from the same base model, triples and settings, in one run (see
# bench_quality.py). Long (about an hour per seed at the defaults); never in
# make test. Three seeds, mean and spread (docs/benchmarks.md):
#   Q_SEEDS="1 2 3" Q_STEPS=100 Q_BATCH=32 Q_LR=1e-4 Q_DOC_MAXLEN=128 bash bench/bench_quality.sh
# Every model's scores land in $BENCH_TMP/results.jsonl as soon as it is
# scored; `python bench/bench_quality.py summary FILE` prints them again.
# The training triples (mined hard negatives, 10 per query) are prepared once
# into $BENCH_TMP/data and reused; delete that directory to mine again.
# PyLate runs in the peers venv of scripts/setup_peers.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${BENCH_TMP:-/tmp/colbert-bench-quality}"
MODEL="${COLBERT_MODEL:-$(.venv/bin/python tests/ref/find_model.py)}"
DATASET="${COLBERT_DATASETS:-../shared/datasets}/nfcorpus"
PEERS="${COLBERT_PEERS_VENV:-$HOME/.cache/colbert.c/venv-peers}"
[ -x "$PEERS/bin/python" ] && "$PEERS/bin/python" -c "import pylate" 2>/dev/null || bash scripts/setup_peers.sh
make -s build/colbert
mkdir -p "$WORK"
rm -rf "$WORK"/colbert-runs-* "$WORK"/pylate-run* "$WORK"/pylate-model* "$WORK/results.jsonl"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ ! -f "$WORK/data/triples.train.colbert.jsonl" ]; then
    build/colbert prepare --beir "$DATASET" --split train --miner-model "$MODEL" --num-new-negatives 10 \
        --out "$WORK/data" --quiet
fi
.venv/bin/python bench/bench_quality.py compare "$PWD/build/colbert" "$PEERS/bin/python" "$MODEL" "$DATASET" \
    "$WORK/data" "$WORK"
