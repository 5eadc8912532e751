#!/usr/bin/env bash
# tests/cuda/run.sh BUILD_DIR: run every CUDA test program of BUILD_DIR/tests-cuda
# (built by `make cuda-tests`) and print one closing line "N passed, N failed".
# Called by `make test-cuda`, and by scripts/gpu_check.sh on the GPU machine.
# Environment (set here when missing):
#   COLBERT_MODEL     all-MiniLM-L6-v2 (tests/ref/find_model.py)
#   COLBERT_DATASETS  the BEIR datasets (../shared/datasets)
#   COLBERT_DEVICE    the GPU to test (default cuda)
# Each program compares the CUDA backend with the CPU backend; none needs
# PyTorch. Must finish within 5 minutes on one H200.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BUILD=${1:-build}
export COLBERT_DATASETS="${COLBERT_DATASETS:-$ROOT/../shared/datasets}"
export COLBERT_DEVICE="${COLBERT_DEVICE:-cuda}"
if [ -z "${COLBERT_MODEL:-}" ]; then
    COLBERT_MODEL=$("$ROOT/.venv/bin/python" tests/ref/find_model.py) || {
        echo "tests/cuda/run.sh: cannot find the all-MiniLM-L6-v2 model (set COLBERT_MODEL)" >&2; exit 1; }
    export COLBERT_MODEL
fi
passed=0; failed=0; failures=()
for t in "$BUILD"/tests-cuda/test_cuda_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    t0=$(date +%s.%N)
    if "$t"; then passed=$((passed+1)); s=ok; else failed=$((failed+1)); failures+=("$name"); s=FAILED; fi
    printf '== %-40s %s (%.1f s)\n' "$name" "$s" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')"
done
echo
[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
