#!/usr/bin/env bash
# bench_gpu_encode.sh: issue 12's encode benchmark on the GPU machine (not a
# test): colbert.c vs sentence-transformers on PyTorch CUDA, MiniLM and a
# BERT-base shape, 20,000 NFCorpus documents. Needs gpu/ (make gpu-bundle).
# Device tool: run(command="bash bench/bench_gpu_encode.sh", carry=["gpu"], timeout_s=420)
# Results: stdout and $OUT/bench_gpu_encode.json.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/gpu_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/bench_gpu_encode.py --colbert "$W/colbert" --model "$W/model" --datasets "$W/data" \
    --n "${N:-20000}" --out /tmp/colbert-bench-encode 2>&1 | tee "$OUT/bench_gpu_encode.txt"
cp /tmp/colbert-bench-encode/bench_gpu_encode.json "$OUT/" 2>/dev/null || true
