#!/usr/bin/env bash
# gpu_bundle.sh BUILD OUT: pack what scripts/gpu_check.sh runs on the GPU
# machine into OUT/bundle.tar.xz (called by `make gpu-bundle`, which first
# builds BUILD = build-gpu for any x86-64 with AVX2). The device tool carries
# at most 64 MiB with the checkout, and the GPU machine can fetch nothing, so
# the bundle holds:
#   colbert, tests-cuda/test_cuda_*,   the binaries (CUDA runtime static;
#   bench_step
#                                      cuBLASLt is the GPU machine's own)
#   lib/                               the shared libraries they need that a
#                                      CUDA/PyTorch image lacks (OpenBLAS,
#                                      gfortran, jansson, utf8proc, gomp)
#   model/                             all-MiniLM-L6-v2 with its weights
#                                      rounded to fp16 (45 MB instead of 91:
#                                      the fp32 file alone is over the limit);
#                                      every comparison (CPU, CUDA,
#                                      sentence-transformers) loads these same
#                                      weights
#   data/nfcorpus                      corpus, queries, test qrels
# Environment: COLBERT_MODEL (default: tests/ref/find_model.py),
# COLBERT_DATASETS (default ../shared/datasets), PY (the venv's python).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
OUT=${2:-gpu}
PY=${PY:-.venv/bin/python}
MODEL=${COLBERT_MODEL:-$("$PY" tests/ref/find_model.py)}
DATASETS=${COLBERT_DATASETS:-$PWD/../shared/datasets}
STAGE=$(mktemp -d /tmp/colbert-gpu-bundle.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT

mkdir -p "$STAGE/tests-cuda" "$STAGE/lib" "$STAGE/model" "$STAGE/data/nfcorpus/qrels"
cp "$BUILD/colbert" "$STAGE/"
cp "$BUILD"/tests-cuda/test_cuda_* "$STAGE/tests-cuda/"
[ -x "$BUILD/bench/bench_step" ] && cp "$BUILD/bench/bench_step" "$STAGE/"
strip --strip-debug "$STAGE/colbert" "$STAGE"/tests-cuda/* "$STAGE"/bench_step 2>/dev/null || true

# shared libraries beyond glibc and the C++ runtime every image has
for bin in "$STAGE/colbert" "$STAGE"/tests-cuda/* "$STAGE"/bench_step; do
    [ -e "$bin" ] || continue
    ldd "$bin" | awk '/=> \// {print $1, $3}'
done | sort -u | while read -r name path; do
    case "$name" in
    libc.so*|libm.so*|libpthread.so*|libdl.so*|librt.so*|ld-linux*|libgcc_s.so*|libstdc++.so*) ;;
    *) cp -L "$path" "$STAGE/lib/$name" ;;
    esac
done

# the model, fp16
for f in config.json tokenizer.json tokenizer_config.json vocab.txt special_tokens_map.json modules.json \
         sentence_bert_config.json config_sentence_transformers.json; do
    [ -f "$MODEL/$f" ] && cp "$MODEL/$f" "$STAGE/model/"
done
[ -d "$MODEL/1_Pooling" ] && cp -r "$MODEL/1_Pooling" "$STAGE/model/"
"$PY" - "$MODEL/model.safetensors" "$STAGE/model/model.safetensors" <<'EOF'
import sys
import numpy as np
from safetensors.numpy import load_file, save_file
t = load_file(sys.argv[1])
save_file({k: v.astype(np.float16) for k, v in t.items()}, sys.argv[2], metadata={"format": "pt"})
EOF

cp "$DATASETS/nfcorpus/corpus.jsonl" "$DATASETS/nfcorpus/queries.jsonl" "$STAGE/data/nfcorpus/"
cp "$DATASETS/nfcorpus/qrels/test.tsv" "$STAGE/data/nfcorpus/qrels/"

rm -rf "$OUT"
mkdir -p "$OUT"
tar -C "$STAGE" -cf - . | xz -T2 -6 > "$OUT/bundle.tar.xz"
size=$(stat -c %s "$OUT/bundle.tar.xz")
echo "gpu_bundle: $OUT/bundle.tar.xz, $((size / 1048576)) MiB (the device tool carries 64 MiB with the checkout)"
(cd "$STAGE" && find . -type f -printf '%8s %p\n' | sort -k2) > "$OUT/manifest.txt"
[ "$size" -lt $((60 * 1048576)) ] || { echo "gpu_bundle: too large for one device call" >&2; exit 1; }
