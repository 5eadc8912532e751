#!/usr/bin/env bash
# bench_prepare.sh: colbert prepare vs RAGatouille's TrainingDataProcessor on
# 1 million pairs (NFCorpus train qrels repeated with distinct suffixes),
# without mining, in the same run. Prints seconds, peak RSS and the ratio.
# RAGatouille runs from its own venv ($RAG_VENV, default
# ~/.cache/colbert.c/venv-ragatouille): the PyPI package without its heavy
# dependencies (--no-deps; the processor and its utils need only srsly and requests), since it pins old
# libraries that do not mix with the test venv.
set -euo pipefail
cd "$(dirname "$0")/.."
RAG_VENV="${RAG_VENV:-$HOME/.cache/colbert.c/venv-ragatouille}"
WORK="${BENCH_TMP:-/tmp/colbert-bench-prepare}"
N="${N_PAIRS:-1000000}"
if [ ! -x "$RAG_VENV/bin/python" ]; then
    python3 -m venv "$RAG_VENV"
    "$RAG_VENV/bin/pip" install -q --no-deps "ragatouille==0.0.9post2"
    "$RAG_VENV/bin/pip" install -q srsly requests
fi
make -s build/colbert
mkdir -p "$WORK"
rm -rf "$WORK/colbert" "$WORK/ragatouille"
IN="$WORK/pairs_$N.jsonl"
[ -f "$IN" ] || python3 bench/bench_prepare.py gen "$IN" "$N"
python3 bench/bench_prepare.py compare "$PWD/build/colbert" "$RAG_VENV/bin/python" "$IN" "$WORK"
