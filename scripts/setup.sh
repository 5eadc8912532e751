#!/usr/bin/env bash
# setup.sh: install what colbert.c and its tests need on a fresh Debian machine.
#   1. Debian packages (compiler, BLAS, utf8proc, jansson; cairo for the
#      training curve's PNG; Open MPI for data-parallel runs under mpirun;
#      clang and its libFuzzer runtime for fuzz/; Python's headers for the
#      colbert_c package)
#      with apt-get.
#   2. A Python virtual environment with the reference packages of
#      requirements.txt (torch, transformers, sentence-transformers, ...).
# The venv lives outside the checkout, in $COLBERT_VENV (default
# ~/.cache/colbert.c/venv), so that a fresh clone on the same machine reuses
# it; .venv in the checkout is a link to it. Re-running is cheap: each step is
# skipped when it is already done (a stamp holds the hash of requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="build-essential pkg-config libopenblas-openmp-dev libutf8proc-dev libjansson-dev libcairo2-dev python3-venv python3-dev libopenmpi-dev openmpi-bin clang libclang-rt-14-dev"

need_apt=()
for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
done
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: apt-get install ${need_apt[*]}" >&2
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

VENV="${COLBERT_VENV:-$HOME/.cache/colbert.c/venv}"
PY="${PYTHON:-python3}"
stamp="$VENV/.colbert-requirements"
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    t0=$(date +%s)
    echo "setup: creating the Python environment in $VENV (torch from PyPI: about 5 GB, 1-3 minutes)" >&2
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip >/dev/null
    "$VENV/bin/pip" install -q -r requirements.txt
    "$VENV/bin/python" -c "import torch, transformers, sentence_transformers, tokenizers, safetensors" 
    echo "$want" > "$stamp"
    echo "setup: Python environment ready in $(( $(date +%s) - t0 )) s" >&2
fi
ln -sfn "$VENV" .venv
