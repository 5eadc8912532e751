#!/usr/bin/env bash
# gpu_check.sh: the checks of issues 12 and 13 that need a GPU, as ONE call
# of the device tool (one NVIDIA H200). It compiles nothing: the binaries,
# their libraries, the model and the data come prepared in gpu/.
#
# How to run it:
#   1. here, on the development machine (no GPU needed), in this checkout:
#        make -j2 && make gpu-bundle
#      (builds build-gpu/ for any x86-64 with AVX2 and writes
#      gpu/bundle.tar.xz, about 50 MiB; gpu/ is git-ignored)
#   2. the device tool, from this checkout:
#        run(command="bash scripts/gpu_check.sh", carry=["gpu"], timeout_s=540)
#   3. the reply's output_tail ends with the summary ("PASS ..."/"FAIL ..."
#      lines, then "N passed, N failed"); $OUT brings back summary.txt and
#      log.txt (everything printed). Then give_back.
# It takes about 5 minutes; every step has its own timeout.
#
# The checks:
#   - colbert info sees the GPU (driver, cuBLASLt, kernels);
#   - tests/cuda/run.sh: test_cuda_ops (every op and its backward against
#     the CPU backend, fp32 and bf16) and test_cuda_model (ColBERT vectors,
#     sentence embeddings, one training step's loss and gradients in six
#     cases + dropout, 10 AdamW steps, bf16 gradient cosines);
#   - sentence embeddings of 1000 NFCorpus texts: colbert encode on the GPU
#     (fp32, bf16) and on the CPU against sentence-transformers on PyTorch
#     CUDA (fp32), cosine >= 0.99999 / 0.999;
#   - colbert eval of NFCorpus test: the GPU fp32 run file is the CPU's
#     (ties aside), nDCG@10 within 1e-4 (fp32) and 0.002 (bf16);
#   - mining (colbert prepare on NFCorpus test): GPU fp32 writes the CPU's
#     triples byte for byte;
#   - colbert train --device cuda: 30 steps run, the checkpoint's query
#     vectors on the CPU equal the GPU's (fp32, max |diff| <= 1e-5), and the
#     run resumes on the CPU.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-/tmp/colbert-gpu-out}
mkdir -p "$OUT"
W=/tmp/colbert-gpu
SUM=$OUT/summary.txt
: > "$SUM"

note() { echo "$*" | tee -a "$SUM"; }
# step NAME TIMEOUT CMD...: PASS or FAIL by the exit status
step() {
    local name=$1 t=$2
    shift 2
    echo "== $name"
    local t0=$(date +%s)
    timeout "$t" "$@"
    local rc=$?
    if [ $rc -eq 0 ]; then note "PASS $name ($(( $(date +%s) - t0 )) s)"
    else note "FAIL $name (exit $rc$([ $rc -eq 124 ] && echo ': timed out'), $(( $(date +%s) - t0 )) s)"; fi
    return $rc
}
# compare ARGS...: gpu_compare.py's PASS/FAIL lines into the summary
compare() {
    local out rc
    out=$(timeout 240 python3 "$ROOT/scripts/gpu_compare.py" "$@" 2>&1)
    rc=$?
    echo "$out" | tee -a "$OUT/compare.txt"
    echo "$out" | grep -E '^(PASS|FAIL)' >> "$SUM"
    [ $rc -eq 0 ] || echo "$out" | grep -q '^FAIL' || note "FAIL gpu_compare.py $1 (exit $rc, see compare.txt)"
}

main() {
T0=$(date +%s)
echo "== unpacking gpu/bundle.tar.xz"
[ -f gpu/bundle.tar.xz ] || { note "FAIL bundle: gpu/bundle.tar.xz missing (make gpu-bundle; carry [\"gpu\"])"; return 1; }
rm -rf "$W" && mkdir -p "$W" && tar -C "$W" -xJf gpu/bundle.tar.xz || { note "FAIL bundle: cannot unpack"; return 1; }
export LD_LIBRARY_PATH="$W/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export COLBERT_MODEL=$W/model COLBERT_DATASETS=$W/data COLBERT_DEVICE=cuda
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
CB=$W/colbert
nvidia-smi -L || true
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true

# cuBLASLt: the loader's path or the toolkit's, else PyTorch's copy
if "$CB" info | grep -q "cuBLASLt not found"; then
    lt=$(find /usr/local /opt /usr/lib /usr/lib64 -name 'libcublasLt.so.1[0-9]*' 2>/dev/null | sort | tail -1)
    [ -n "$lt" ] && export COLBERT_CUBLASLT=$lt && echo "cuBLASLt: $lt"
fi
"$CB" info | tee "$OUT/info.txt"
if grep -q "^cuda:0 " "$OUT/info.txt" && ! grep -q "no usable GPU\|not found" "$OUT/info.txt"; then
    note "PASS colbert info lists the GPU, the driver and cuBLASLt"
else
    note "FAIL colbert info: no usable GPU (see info.txt)"
fi

# 1. the CUDA tests (op level and whole model, against the CPU backend)
step "make test-cuda's programs (tests/cuda/run.sh)" 300 bash tests/cuda/run.sh "$W"

# 2. sentence embeddings against sentence-transformers
python3 - "$W/data/nfcorpus/corpus.jsonl" "$W/texts.txt" <<'EOF'
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as o:
    for i, line in enumerate(f):
        if i == 1000:
            break
        d = json.loads(line)
        t = (d.get("title", "") + " " + d["text"]).strip() if d.get("title") else d["text"]
        o.write(" ".join(t.split()) + "\n")
EOF
step "encode, cuda fp32" 120 "$CB" encode --model "$W/model" --input "$W/texts.txt" --output "$W/e_g32.npy" --device cuda --precision fp32
step "encode, cuda bf16" 120 "$CB" encode --model "$W/model" --input "$W/texts.txt" --output "$W/e_g16.npy" --device cuda --precision bf16
step "encode, cpu" 120 "$CB" encode --model "$W/model" --input "$W/texts.txt" --output "$W/e_cpu.npy" --device cpu --quiet
compare st "$W/model" "$W/texts.txt" "$W/e_g32.npy" "encode cuda fp32" 0.99999 "$W/e_g16.npy" "encode cuda bf16" 0.999 \
    "$W/e_cpu.npy" "encode cpu" 0.99999

# 3. colbert eval of NFCorpus test: CPU, GPU fp32, GPU bf16
for v in cpu:fp32 cuda:fp32 cuda:bf16; do
    dev=${v%%:*} pr=${v##*:}
    step "eval NFCorpus test, $dev $pr" 180 sh -c "'$CB' eval --model '$W/model' --dataset '$W/data/nfcorpus' --run '$W/r_${dev}_$pr.run' --device $dev --precision $pr --quiet > '$W/j_${dev}_$pr.json'"
    tail -1 "$W/j_${dev}_$pr.json"
done
compare run "$W/r_cpu_fp32.run" "$W/r_cuda_fp32.run" "eval run file, cuda fp32 vs cpu"
compare ndcg "$W/j_cpu_fp32.json" "$W/j_cuda_fp32.json" "eval nDCG@10, cuda fp32 vs cpu" 0.0001
compare ndcg "$W/j_cpu_fp32.json" "$W/j_cuda_bf16.json" "eval nDCG@10, cuda bf16 vs cpu" 0.002

# 4. mining: the GPU in fp32 picks the CPU's negatives
for v in cpu:fp32 cuda:fp32 cuda:bf16; do
    dev=${v%%:*} pr=${v##*:}
    step "prepare (mining) NFCorpus test, $dev $pr" 180 "$CB" prepare --beir "$W/data/nfcorpus" --split test --out "$W/p_${dev}_$pr" --miner-model "$W/model" --device "$dev" --precision "$pr" --quiet
done
if cmp -s "$W/p_cpu_fp32/triples.train.colbert.jsonl" "$W/p_cuda_fp32/triples.train.colbert.jsonl"; then
    note "PASS mining, cuda fp32: the CPU's triples byte for byte ($(wc -l < "$W/p_cpu_fp32/triples.train.colbert.jsonl") lines)"
else
    note "FAIL mining, cuda fp32: triples differ from the CPU's ($(diff "$W/p_cpu_fp32/triples.train.colbert.jsonl" "$W/p_cuda_fp32/triples.train.colbert.jsonl" | grep -c '^<') lines)"
fi
echo "mining bf16: $(diff "$W/p_cpu_fp32/triples.train.colbert.jsonl" "$W/p_cuda_bf16/triples.train.colbert.jsonl" 2>/dev/null | grep -c '^<') of $(wc -l < "$W/p_cpu_fp32/triples.train.colbert.jsonl") triples differ from the CPU's" | tee -a "$SUM"

# 5. training on the GPU, its checkpoint on the CPU, a resume on the CPU
step "train --device cuda, 30 steps" 240 "$CB" train --model-name gpu --pretrained "$W/model" --data "$W/p_cuda_fp32" --output-dir "$W/ck" --device cuda --precision fp32 --maxsteps 30 --batch-size 32 --save-every 10 --val-fraction 0 --doc-maxlen 180
ck=$(ls -d "$W"/ck/gpu/step-* 2>/dev/null | sort | tail -1)
if [ -n "$ck" ]; then
    head -20 "$W/texts.txt" > "$W/q.txt"
    "$CB" encode --model "$ck" --colbert query --input "$W/q.txt" --output "$W/q_cpu.npy" --device cpu --quiet
    "$CB" encode --model "$ck" --colbert query --input "$W/q.txt" --output "$W/q_gpu.npy" --device cuda --precision fp32 --quiet
    python3 - "$W/q_cpu.npy" "$W/q_gpu.npy" <<'EOF' | tee -a "$SUM"
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
d = float(np.abs(a - b).max()) if a.shape == b.shape else float("inf")
print(f"{'PASS' if d <= 1e-5 else 'FAIL'} checkpoint written on the GPU: query vectors on the CPU vs the GPU fp32, max |diff| {d:.2e} (<= 1e-5)")
EOF
    prev=$(ls -d "$W"/ck/gpu/step-* | sort | tail -2 | head -1)
    step "resume on the CPU from $(basename "$prev") (10 steps)" 240 "$CB" train --resume "$prev" --device cpu --quiet
else
    note "FAIL train --device cuda: no checkpoint written"
fi

echo
echo "==== summary ($(( $(date +%s) - T0 )) s on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1))"
cat "$SUM"
p=$(grep -c '^PASS' "$SUM"); f=$(grep -c '^FAIL' "$SUM")
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
}

main 2>&1 | tee "$OUT/log.txt"
exit "${PIPESTATUS[0]}"
