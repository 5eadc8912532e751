#!/usr/bin/env bash
# tests/cuda/run.sh BUILD_DIR [NAME...]: run the CUDA test programs of
# BUILD_DIR/tests-cuda (built by `make cuda-tests`), or only those NAMEd
# (test_cuda_ops, ...), and print one closing line "N passed, N failed".
# Called by `make test-cuda`, and by scripts/gpu_check.sh on the GPU machine.
# Order: the op tests first (they say which op is wrong), the whole-model
# test (test_cuda_model) last: a crash in the model test then comes after
# the diagnosis. The programs' stdout is line-buffered (a crash keeps the
# lines before it); no core files are written.
# Environment (set here when missing):
#   COLBERT_MODEL     all-MiniLM-L6-v2 (tests/ref/find_model.py)
#   COLBERT_DATASETS  the BEIR datasets (../shared/datasets)
#   COLBERT_DEVICE    the GPU to test (default cuda)
#   COLBERT_CUDA_SYNC 1: check every kernel launch at once (names a faulting
#                     kernel; slower)
# Each program compares the CUDA backend with the CPU backend; none needs
# PyTorch. Must finish within 5 minutes on one H200.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${1:-build}
[ $# -gt 0 ] && shift
ulimit -c 0
export COLBERT_DATASETS="${COLBERT_DATASETS:-$ROOT/../shared/datasets}"
export COLBERT_DEVICE="${COLBERT_DEVICE:-cuda}"
if [ -z "${COLBERT_MODEL:-}" ]; then
    COLBERT_MODEL=$("$ROOT/.venv/bin/python" tests/ref/find_model.py) || {
        echo "tests/cuda/run.sh: cannot find the all-MiniLM-L6-v2 model (set COLBERT_MODEL)" >&2; exit 1; }
    export COLBERT_MODEL
fi
# the programs, op tests first, whole-model tests (*_model) last
order=()
for t in "$BUILD"/tests-cuda/test_cuda_*; do
    [ -x "$t" ] && [[ $(basename "$t") != *_model ]] && order+=("$t")
done
for t in "$BUILD"/tests-cuda/test_cuda_*_model "$BUILD"/tests-cuda/test_cuda_model; do
    [ -x "$t" ] && order+=("$t")
done
if [ $# -gt 0 ]; then   # only the NAMEd ones, in the order above
    keep=()
    for t in "${order[@]}"; do
        for n in "$@"; do [ "$(basename "$t")" = "$n" ] && keep+=("$t"); done
    done
    order=("${keep[@]}")
fi
passed=0; failed=0; failures=()
for t in "${order[@]}"; do
    name=$(basename "$t")
    t0=$(date +%s.%N)
    if "$t"; then passed=$((passed+1)); s=ok; else failed=$((failed+1)); failures+=("$name"); s=FAILED; fi
    printf '== %-40s %s (%.1f s)\n' "$name" "$s" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')"
done
echo
[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
