#!/usr/bin/env bash
# setup_peers.sh: the "peers" Python environment for tests/test_train_compat.py:
# colbert-ai, PyLate and RAGatouille from PyPI, on CPU, loading checkpoints
# that `colbert train` writes. They need transformers 4.x (colbert-ai's
# HF_ColBERT breaks under transformers 5, which the main venv has), so they
# live in their own venv, $COLBERT_PEERS_VENV (default
# ~/.cache/colbert.c/venv-peers), outside the checkout so that fresh clones
# on the same machine reuse it. Re-running is cheap: a stamp holds the hash
# of the pins below.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${COLBERT_PEERS_VENV:-$HOME/.cache/colbert.c/venv-peers}"
PY="${PYTHON:-python3}"
PINS=(
    "transformers>=4.41,<5"
    "colbert-ai==0.2.22"
    "ragatouille==0.0.9.post2"
    "langchain<0.4"
    "pylate"
    "ninja"
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
