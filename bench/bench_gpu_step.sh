#!/usr/bin/env bash
# bench_gpu_step.sh: issue 13's training-step benchmark on the GPU machine
# (not a test): colbert.c (bench_step --device cuda, bf16) vs PyTorch eager
# with autocast and torch.compile, MiniLM and a BERT-base shape, bsize 32
# and 128. Needs gpu/ (make gpu-bundle, which builds bench_step too).
# Device tool: run(command="bash bench/bench_gpu_step.sh", carry=["gpu"], timeout_s=540)
# Results: stdout and $OUT/bench_gpu_step.json.
set -uo pipefail
cd "$(dirname "$0")/.."
. bench/gpu_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/bench_gpu_step.py --bench-step "$W/bench_step" --model "$W/model" --datasets "$W/data" \
    --steps "${STEPS:-10}" --out /tmp/colbert-bench-step 2>&1 | tee "$OUT/bench_gpu_step.txt"
cp /tmp/colbert-bench-step/bench_gpu_step.json "$OUT/" 2>/dev/null || true
