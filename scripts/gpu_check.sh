#!/usr/bin/env bash
# gpu_check.sh [--dry-run]: every check of the CUDA backend that needs a GPU
# (issues 12, 13, 25), as ONE call of the device tool, within a deadline.
# It compiles nothing and computes no CPU reference: the binaries, their
# libraries, the model, the data and the CPU's outputs come prepared in
# gpu/bundle.tar.xz (make gpu-bundle, on the development machine).
#
# How to run it (docs/cuda.md, "On the GPU machine"):
#   1. here, no GPU needed:   make -j2 && make gpu-bundle
#   2. the device tool:       run(command="bash scripts/gpu_check.sh",
#                                 carry=["gpu"], timeout_s=540)
#   3. output_tail ends with the summary (PASS/FAIL/SKIP/INFO lines, then
#      "N passed, N failed, N skipped"); $OUT brings back summary.txt,
#      log.txt (everything printed), tests.txt (the CUDA tests' output),
#      sanitizer.txt, compare.txt, bench_gpu_encode.json,
#      bench_gpu_step.json and bench_gpu_step_base.json (8 files, the device
#      tool's limit), each written as its step ends. Then give_back.
# DEADLINE (default 450 s) bounds the whole script: every step's timeout is
# cut to the time left, a step that cannot start in time is SKIPped, and the
# summary is printed at the end whatever happened (the device tool's own
# timeout, 540 s, kills without a summary: it must not be reached).
# --dry-run (here, no GPU): unpacks the bundle, checks its contents, prints
# the GPU commands instead of running them, and runs every comparison on the
# CPU references themselves (the plumbing and gpu_compare.py on real files).
#
# The checks, most diagnostic first:
#   1. colbert info sees the GPU, the driver and cuBLASLt;
#   2. test_cuda_ops with COLBERT_CUDA_SYNC=1 (a faulting kernel is named at
#      its launch): every op and its backward against the CPU backend, fp32
#      and bf16 (bf16 that is bf16: no fp32 fallback on aligned shapes);
#   3. test_cuda_model: ColBERT vectors, sentence embeddings, one training
#      step's loss and gradients in seven cases, 10 AdamW steps, bf16;
#      test_cuda_modernbert: the ModernBERT arch, hidden states and every
#      gradient (sliding windows, rotary embeddings, GeGLU, dropout);
#   4. compute-sanitizer memcheck and racecheck of test_cuda_ops --small;
#   5. colbert encode of 1000 NFCorpus texts on the GPU (fp32, bf16) against
#      sentence-transformers (fp32, computed here on the CPU) and colbert's
#      CPU output: cosine >= 0.99999 fp32, 0.999 bf16;
#   6. colbert eval of NFCorpus test on the GPU: the CPU's run file up to
#      ties, nDCG@10 within 1e-4 (fp32) and 0.002 (bf16);
#   7. mining (colbert prepare, NFCorpus test): the ranked lists are the
#      CPU's up to swaps of documents tied within 1e-5 (fp32); triples of
#      queries with the CPU's candidates identical, the others' differing
#      triples reported as a figure; bf16 reported;
#   8. colbert train --device cuda fp32 from the CPU's triples (a mining
#      failure cannot take it down): 20 steps of 16, each loss within 1e-3
#      of the CPU's run (precomputed), the checkpoint's query vectors on the
#      CPU equal the GPU's, and the run resumes on the CPU;
#   9. the benchmarks, in the time left: encode vs sentence-transformers
#      (bf16 autocast), the training step vs PyTorch eager autocast bf16,
#      same GPU (MiniLM first, then the BERT-base shape if time remains).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=0
[ "${1:-}" = "--dry-run" ] && DRY=1
OUT=${OUT:-/tmp/colbert-gpu-out}
W=${W:-/tmp/colbert-gpu}
DEADLINE=${DEADLINE:-450}
T0=$(date +%s)
mkdir -p "$OUT"
SUM=$OUT/summary.txt
: > "$SUM"
exec > >(tee "$OUT/log.txt") 2>&1
ulimit -c 0
export PYTHONUNBUFFERED=1
# the GPU machine's python3 holds PyTorch; a dry run here takes the venv's
PY=${PY:-python3}
[ $DRY = 1 ] && [ -x "$ROOT/.venv/bin/python" ] && PY=$ROOT/.venv/bin/python

left() { echo $(( DEADLINE - ($(date +%s) - T0) )); }
note() { echo "$*" >> "$SUM"; echo "$*"; }
finish() {
    local rc=$?
    echo
    echo "==== summary ($(( $(date +%s) - T0 )) s of $DEADLINE; $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1))"
    cat "$SUM"
    local p f s
    p=$(grep -c '^PASS' "$SUM"); f=$(grep -c '^FAIL' "$SUM"); s=$(grep -c '^SKIP' "$SUM")
    echo "$p passed, $f failed, $s skipped"
    [ "$f" -eq 0 ] && [ "$rc" -eq 0 ] || exit 1
}
trap finish EXIT

# step NAME TIMEOUT CMD...: PASS or FAIL by the exit status, within the
# deadline (SKIP when under 20 s are left); in a dry run the command is
# printed, not run
step() {
    local name=$1 t=$2 l
    shift 2
    l=$(left)
    if [ "$l" -lt 20 ]; then note "SKIP $name (deadline: $l s left)"; return 125; fi
    [ "$t" -gt $((l - 10)) ] && t=$((l - 10))
    echo "== $name (timeout $t s)"
    if [ $DRY = 1 ]; then echo "   dry run: $*"; return 0; fi
    local t1 rc
    t1=$(date +%s)
    timeout -k 5 "$t" "$@"
    rc=$?
    if [ $rc -eq 0 ]; then note "PASS $name ($(( $(date +%s) - t1 )) s)"
    else note "FAIL $name (exit $rc$([ $rc -eq 124 ] && echo ': timed out'), $(( $(date +%s) - t1 )) s)"; fi
    return $rc
}
# compare ARGS...: gpu_compare.py's PASS/FAIL lines into the summary
compare() {
    local out rc
    out=$(timeout 120 "$PY" "$ROOT/scripts/gpu_compare.py" "$@" 2>&1)
    rc=$?
    echo "$out" | tee -a "$OUT/compare.txt"
    echo "$out" | grep -E '^(PASS|FAIL)' >> "$SUM"
    [ $rc -eq 0 ] || echo "$out" | grep -q '^FAIL' || note "FAIL gpu_compare.py $1 (exit $rc, see compare.txt)"
}
# dry: in a dry run, the CPU reference stands in for the GPU's output
dry() { [ $DRY = 1 ] && rm -rf "$2" && cp -r "$1" "$2"; return 0; }

echo "== gpu_check.sh$([ $DRY = 1 ] && echo ' --dry-run'): deadline $DEADLINE s, results in $OUT"
[ -f gpu/bundle.tar.xz ] || { note "FAIL bundle: gpu/bundle.tar.xz missing (make gpu-bundle here; carry [\"gpu\"])"; exit 1; }
rm -rf "$W" && mkdir -p "$W" && tar -C "$W" -xJf gpu/bundle.tar.xz || { note "FAIL bundle: cannot unpack"; exit 1; }
missing=$(cd "$W" && for f in colbert bench_step tests-cuda/test_cuda_ops tests-cuda/test_cuda_model model/model.safetensors \
    texts.txt data/nfcorpus/corpus.jsonl refs/e_cpu.npy refs/e_st.npy refs/r_cpu.run refs/j_cpu.json \
    refs/mine/neighbors.npy refs/p_cpu/triples.train.colbert.jsonl refs/train.jsonl refs/train_args.txt; do [ -e "$f" ] || echo "$f"; done)
[ -z "$missing" ] || { note "FAIL bundle: missing $(echo $missing)"; exit 1; }
echo "bundle: $(cat "$W/refs/made.txt" 2>/dev/null)"
export LD_LIBRARY_PATH="$W/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export COLBERT_MODEL=$W/model COLBERT_DATASETS=$W/data COLBERT_DEVICE=cuda
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
CB=$W/colbert
R=$W/refs
G=$W/gpu
mkdir -p "$G"
nvidia-smi -L 2>/dev/null || echo "nvidia-smi: not found"

# 1. the device as colbert sees it; cuBLASLt from the loader's path, the
# toolkit, else PyTorch's copy
if "$CB" info | grep -q "cuBLASLt not found"; then
    lt=$(find /usr/local /opt /usr/lib /usr/lib64 -name 'libcublasLt.so.1[0-9]*' 2>/dev/null | sort | tail -1)
    [ -n "$lt" ] && export COLBERT_CUBLASLT=$lt && echo "cuBLASLt: $lt"
fi
"$CB" info > "$G/info.txt" 2>&1
cat "$G/info.txt"
if [ $DRY = 1 ]; then echo "   dry run: the GPU lines of colbert info are not checked"
elif grep -q "^cuda:0 " "$G/info.txt" && ! grep -q "no usable GPU\|not found" "$G/info.txt"; then
    note "PASS colbert info lists the GPU, the driver and cuBLASLt"
else
    note "FAIL colbert info: no usable GPU (see log.txt)"
fi

# 2, 3. the CUDA tests: op tests with a check after every launch, then the
# whole model; line-buffered into tests.txt
step "test_cuda_ops (COLBERT_CUDA_SYNC=1)" 150 \
    bash -c "set -o pipefail; COLBERT_CUDA_SYNC=1 bash tests/cuda/run.sh '$W' test_cuda_ops 2>&1 | tee -a '$OUT/tests.txt'"
step "test_cuda_model" 180 bash -c "set -o pipefail; bash tests/cuda/run.sh '$W' test_cuda_model 2>&1 | tee -a '$OUT/tests.txt'"
step "test_cuda_modernbert" 60 bash -c "set -o pipefail; bash tests/cuda/run.sh '$W' test_cuda_modernbert 2>&1 | tee -a '$OUT/tests.txt'"

# 4. compute-sanitizer on the small op tests (kernels run 10-100x slower)
CS=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null | head -1)
if [ -z "$CS" ] && [ $DRY = 0 ]; then
    note "SKIP compute-sanitizer: not found"
else
    for tool in memcheck racecheck; do
        step "compute-sanitizer --tool $tool test_cuda_ops --small" 60 bash -c \
            "'${CS:-compute-sanitizer}' --tool $tool --error-exitcode 3 --print-limit 20 '$W/tests-cuda/test_cuda_ops' --small \
             > '$G/san_$tool.txt' 2>&1; rc=\$?; { echo '==== $tool'; tail -c 20000 '$G/san_$tool.txt'; } >> '$OUT/sanitizer.txt'; exit \$rc"
        grep -q "Device not supported" "$G/san_$tool.txt" 2>/dev/null &&
            note "INFO compute-sanitizer $tool refused the device (seen on gVisor machines): the FAIL above is no finding"
    done
fi

# 5. sentence embeddings: the GPU against sentence-transformers and colbert
# on the CPU (both computed when the bundle was made)
step "encode, cuda fp32" 60 "$CB" encode --model "$W/model" --input "$W/texts.txt" --output "$G/e_g32.npy" --device cuda --precision fp32 --quiet
step "encode, cuda bf16" 60 "$CB" encode --model "$W/model" --input "$W/texts.txt" --output "$G/e_g16.npy" --device cuda --precision bf16 --quiet
dry "$R/e_cpu.npy" "$G/e_g32.npy"; dry "$R/e_cpu.npy" "$G/e_g16.npy"
compare npy "$R/e_st.npy" "sentence-transformers fp32 (CPU)" "$G/e_g32.npy" "encode cuda fp32" 0.99999 \
    "$G/e_g16.npy" "encode cuda bf16" 0.999 "$R/e_cpu.npy" "encode cpu (bundle)" 0.99999
compare npy "$R/e_cpu.npy" "colbert encode on the CPU" "$G/e_g32.npy" "encode cuda fp32 vs colbert cpu" 0.99999

# 6. colbert eval of NFCorpus test
for pr in fp32 bf16; do
    step "eval NFCorpus test, cuda $pr" 90 sh -c "'$CB' eval --model '$W/model' --dataset '$W/data/nfcorpus' --run '$G/r_$pr.run' --device cuda --precision $pr --quiet > '$G/j_$pr.json'"
    dry "$R/r_cpu.run" "$G/r_$pr.run"; dry "$R/j_cpu.json" "$G/j_$pr.json"
done
compare run "$R/r_cpu.run" "$G/r_fp32.run" "eval run file, cuda fp32 vs cpu"
compare ndcg "$R/j_cpu.json" "$G/j_fp32.json" "eval nDCG@10, cuda fp32 vs cpu" 0.0001
compare ndcg "$R/j_cpu.json" "$G/j_bf16.json" "eval nDCG@10, cuda bf16 vs cpu" 0.002

# 7. mining: ranked lists with ties, triples as a figure
for pr in fp32 bf16; do
    step "prepare (mining) NFCorpus test, cuda $pr" 90 "$CB" prepare --beir "$W/data/nfcorpus" --split test --out "$G/p_$pr" \
        --miner-model "$W/model" --device cuda --precision "$pr" --save-embeddings "$G/mine_$pr" --quiet
    dry "$R/mine" "$G/mine_$pr"; dry "$R/p_cpu" "$G/p_$pr"
done
compare lists "$R/mine" "$G/mine_fp32" "mining lists, cuda fp32 vs cpu" 1e-5
compare triples "$R/mine" "$G/mine_fp32" "$R/p_cpu/triples.train.colbert.jsonl" "$G/p_fp32/triples.train.colbert.jsonl" \
    "mining triples, cuda fp32 vs cpu" 10
"$PY" "$ROOT/scripts/gpu_compare.py" lists "$R/mine" "$G/mine_bf16" "mining lists, cuda bf16 vs cpu" 1e-5 2>&1 \
    | sed 's/^PASS /INFO /; s/^FAIL /INFO /' | tee -a "$OUT/compare.txt" | grep '^INFO' >> "$SUM"

# 8. training on the GPU from the CPU's triples; its checkpoint on the CPU
TRAIN_ARGS=$(cat "$R/train_args.txt")   # the CPU reference's (gpu_bundle.sh)
TRAIN_ARGS=${TRAIN_ARGS//@MODEL@/$W/model}
TRAIN_ARGS=${TRAIN_ARGS//@DATA@/$R/p_cpu}
# shellcheck disable=SC2086
step "train --device cuda fp32, 20 steps of 16" 120 "$CB" train --model-name gpu $TRAIN_ARGS --output-dir "$G/ck" --device cuda --precision fp32
[ $DRY = 1 ] && mkdir -p "$G/ck/gpu" && cp "$R/train.jsonl" "$G/ck/gpu/train.jsonl"
compare losses "$R/train.jsonl" "$G/ck/gpu/train.jsonl" "training losses, cuda fp32 vs cpu (20 steps)" 1e-3
ck=$(ls -d "$G"/ck/gpu/step-* 2>/dev/null | sort | tail -1)
if [ -n "$ck" ]; then
    head -20 "$W/texts.txt" > "$G/q.txt"
    step "checkpoint's query vectors, cpu" 60 "$CB" encode --model "$ck" --colbert query --input "$G/q.txt" --output "$G/q_cpu.npy" --device cpu --quiet
    step "checkpoint's query vectors, cuda fp32" 60 "$CB" encode --model "$ck" --colbert query --input "$G/q.txt" --output "$G/q_gpu.npy" --device cuda --precision fp32 --quiet
    "$PY" - "$G/q_cpu.npy" "$G/q_gpu.npy" <<'EOF' | tee -a "$SUM"
import sys, numpy as np
try:
    a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
    d = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
except OSError as e:
    d = float("inf")
print(f"{'PASS' if d <= 1e-5 else 'FAIL'} checkpoint written on the GPU: query vectors on the CPU vs the GPU fp32, max |diff| {d:.2e} (<= 1e-5)")
EOF
    prev=$(ls -d "$G"/ck/gpu/step-* | sort | tail -2 | head -1)
    step "resume on the CPU from $(basename "$prev")" 60 "$CB" train --resume "$prev" --device cpu --quiet
elif [ $DRY = 0 ]; then
    note "FAIL train --device cuda: no checkpoint written"
fi

# 9. the benchmarks, in the time left (each writes its JSON after every row)
if [ $DRY = 0 ]; then
    BE=/tmp/colbert-bench-encode BS=/tmp/colbert-bench-step
    step "benchmark: encode, MiniLM, 5000 texts, vs sentence-transformers" 100 "$PY" bench/bench_gpu_encode.py \
        --colbert "$CB" --model "$W/model" --datasets "$W/data" --n 5000 --minilm-only --out "$BE"
    cp "$BE/bench_gpu_encode.json" "$OUT/" 2>/dev/null
    step "benchmark: training step, MiniLM, bsize 32, vs PyTorch eager autocast bf16" 100 "$PY" bench/bench_gpu_step.py \
        --bench-step "$W/bench_step" --model "$W/model" --datasets "$W/data" --steps 5 --bsizes 32 --no-compile \
        --models minilm --out "$BS"
    cp "$BS/bench_gpu_step.json" "$OUT/" 2>/dev/null
    if [ "$(left)" -gt 100 ]; then
        step "benchmark: training step, BERT-base shape, bsize 32, vs PyTorch eager autocast bf16" 90 "$PY" \
            bench/bench_gpu_step.py --bench-step "$W/bench_step" --model "$W/model" --datasets "$W/data" --steps 5 \
            --bsizes 32 --no-compile --models base --out "$BS-base"
        cp "$BS-base/bench_gpu_step.json" "$OUT/bench_gpu_step_base.json" 2>/dev/null
    else
        note "SKIP benchmark: the BERT-base shape ($(left) s left)"
    fi
else
    echo "   dry run: the benchmarks need a GPU and PyTorch CUDA"
fi
