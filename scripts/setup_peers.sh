#!/usr/bin/env bash
# setup_peers.sh: the "peers" Python environment for tests/test_train_compat.py:
# colbert-ai, PyLate and RAGatouille from PyPI, on CPU, loading checkpoints
# that `colbert train` writes. They need transformers 4.x (colbert-ai's
# HF_ColBERT breaks under transformers 5, which the main venv has), so they
# live in their own venv, $COLBERT_PEERS_VENV (default
# ~/.cache/colbert.c/venv-peers), outside the checkout so that fresh clones
# on the same machine reuse it. Re-running is cheap: a stamp holds the hash
# of the pins below. A fresh install takes about 5 minutes (torch with its
# CUDA wheels from PyPI, about 4 GB; the tests run on the CPU). RAGatouille
# 0.0.9 needs langchain < 0.4 (it imports langchain.retrievers); colbert-ai
# compiles its segmented_maxsim extension with ninja on first use
# (~/.cache/torch_extensions).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${COLBERT_PEERS_VENV:-$HOME/.cache/colbert.c/venv-peers}"
PY="${PYTHON:-python3}"
PINS=(
    "torch==2.11.0"
    "transformers==4.57.6"
    "sentence-transformers==5.3.0"
    "colbert-ai==0.2.22"
    "pylate==1.6.0"
    "ragatouille==0.0.9.post2"
    "langchain==0.3.30"
    "langchain-core==0.3.86"
    "ninja==1.11.1.4"
    "voyager==2.0.9"     # RAGatouille 0.0.9 passes lists to add_items; voyager >= 2.1 wants ndarrays
)
want=$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -d' ' -f1)
stamp="$VENV/.colbert-peers"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    t0=$(date +%s)
    echo "setup_peers: creating $VENV (colbert-ai, PyLate, RAGatouille; torch from PyPI: a few GB)" >&2
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q "${PINS[@]}"
    "$VENV/bin/python" -c "import colbert, pylate, ragatouille, transformers; print('transformers', transformers.__version__)"
    echo "$want" > "$stamp"
    echo "setup_peers: ready in $(( $(date +%s) - t0 )) s" >&2
fi
