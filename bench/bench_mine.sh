#!/usr/bin/env bash
# bench_mine.sh: hard-negative mining on NFCorpus, colbert prepare vs
# RAGatouille's SimpleMiner (sentence-transformers + Voyager), same run.
# RAGatouille runs from a venv that has ragatouille, voyager and
# sentence-transformers: $RAG_VENV, else the peers venv of
# scripts/setup_peers.sh ($COLBERT_PEERS_VENV, default
# ~/.cache/colbert.c/venv-peers) when it has them, else a venv made here
# (~/.cache/colbert.c/venv-miner: ragatouille --no-deps, since only
# simpleminer.py is loaded, plus voyager and sentence-transformers).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK="${BENCH_TMP:-/tmp/colbert-bench-mine}"
MODEL="${COLBERT_MODEL:-$(.venv/bin/python tests/ref/find_model.py)}"
DATASETS="${COLBERT_DATASETS:-../shared/datasets}"
has() { [ -x "$1/bin/python" ] && "$1/bin/python" -c "import ragatouille, voyager, sentence_transformers" 2>/dev/null; }
RAG_VENV="${RAG_VENV:-}"
if [ -z "$RAG_VENV" ]; then
    PEERS="${COLBERT_PEERS_VENV:-$HOME/.cache/colbert.c/venv-peers}"
    if has "$PEERS"; then RAG_VENV="$PEERS"; else RAG_VENV="$HOME/.cache/colbert.c/venv-miner"; fi
fi
if ! has "$RAG_VENV"; then
    python3 -m venv "$RAG_VENV"
    "$RAG_VENV/bin/pip" install -q --no-deps "ragatouille==0.0.9post2"
    "$RAG_VENV/bin/pip" install -q voyager sentence-transformers tqdm
fi
make -s build/colbert
rm -rf "$WORK"; mkdir -p "$WORK"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/python bench/bench_mine.py compare "$PWD/build/colbert" "$RAG_VENV/bin/python" "$MODEL" "$DATASETS" "$WORK"
