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
#   texts.txt                          1000 NFCorpus texts (the encode check)
#   refs/                              the CPU's outputs, computed here with
#                                      BUILD/colbert on the fp16 model, so the
#                                      GPU machine computes GPU results only:
#     e_cpu.npy, e_st.npy              sentence embeddings of texts.txt by
#                                      colbert (cpu) and sentence-transformers
#                                      (PyTorch CPU, fp32)
#     r_cpu.run, j_cpu.json            colbert eval of NFCorpus test
#     p_cpu/, mine/                    colbert prepare (mining) of NFCorpus
#                                      test: the triples, and the ranked lists
#                                      (neighbors.npy, scores.npy)
#     train.jsonl, train_args.txt      colbert train from p_cpu: 20 steps of
#                                      16 and the arguments (the GPU runs the
#                                      same ones, from these triples)
#     made.txt                         when, from which commit, on which CPU
# The references take 10 to 40 minutes on 2 cores (by the load); kept in
# BUILD/refs and made again only when BUILD/colbert (or this script) is
# newer.
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
"$PY" - "$STAGE/data/nfcorpus/corpus.jsonl" "$STAGE/texts.txt" <<'EOF'
import json, sys
with open(sys.argv[1]) as f, open(sys.argv[2], "w") as o:
    for i, line in enumerate(f):
        if i == 1000:
            break
        d = json.loads(line)
        t = (d.get("title", "") + " " + d["text"]).strip() if d.get("title") else d["text"]
        o.write(" ".join(t.split()) + "\n")
EOF

# the CPU references (see the top), cached in BUILD/refs
REFS=$BUILD/refs
CB=$BUILD/colbert
# the training both sides run: @MODEL@ and @DATA@ are filled in where it runs
TRAIN_ARGS="--pretrained @MODEL@ --data @DATA@ --maxsteps 20 --batch-size 16 --save-every 10 --val-fraction 0 --doc-maxlen 180 --quiet"
if [ ! -f "$REFS/made.txt" ] || [ "$CB" -nt "$REFS/made.txt" ] || [ "$0" -nt "$REFS/made.txt" ]; then
    echo "gpu_bundle: computing the CPU references in $REFS (10 to 40 minutes on 2 cores, by the load)"
    rm -rf "$REFS" && mkdir -p "$REFS"
    M=$STAGE/model D=$STAGE/data/nfcorpus
    t0=$(date +%s)
    "$CB" encode --model "$M" --input "$STAGE/texts.txt" --output "$REFS/e_cpu.npy" --device cpu --quiet
    "$PY" - "$M" "$STAGE/texts.txt" "$REFS/e_st.npy" <<'EOF'
import sys
import numpy as np
from sentence_transformers import SentenceTransformer
lines = open(sys.argv[2], encoding="utf-8").read().split("\n")
if lines and lines[-1] == "":
    lines.pop()
st = SentenceTransformer(sys.argv[1], device="cpu").float()
np.save(sys.argv[3], st.encode(lines, batch_size=64, convert_to_numpy=True).astype(np.float32))
EOF
    echo "gpu_bundle: encode references, $(( $(date +%s) - t0 )) s"
    "$CB" eval --model "$M" --dataset "$D" --run "$REFS/r_cpu.run" --device cpu --quiet > "$REFS/j_cpu.json"
    echo "gpu_bundle: eval reference, $(( $(date +%s) - t0 )) s"
    "$CB" prepare --beir "$D" --split test --out "$REFS/p_cpu" --miner-model "$M" --device cpu --precision fp32 \
        --save-embeddings "$REFS/mine" --quiet
    rm -f "$REFS/mine/docs.npy" "$REFS/mine/queries.npy"   # 6 MB the comparison does not read
    echo "gpu_bundle: mining reference, $(( $(date +%s) - t0 )) s"
    args=${TRAIN_ARGS//@MODEL@/$M}
    args=${args//@DATA@/$REFS/p_cpu}
    rm -rf "$STAGE/ck"
    # shellcheck disable=SC2086
    "$CB" train --model-name cpu $args --output-dir "$STAGE/ck" --device cpu
    cp "$STAGE/ck/cpu/train.jsonl" "$REFS/train.jsonl"
    rm -rf "$STAGE/ck"
    echo "$TRAIN_ARGS" > "$REFS/train_args.txt"
    echo "gpu_bundle: training reference, $(( $(date +%s) - t0 )) s"
    echo "CPU references made $(date -u +%FT%TZ) by $CB ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src || echo ', src modified')) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(( $(date +%s) - t0 )) s" > "$REFS/made.txt"
fi
[ "$(cat "$REFS/train_args.txt")" = "$TRAIN_ARGS" ] || { echo "gpu_bundle: $REFS is stale (train arguments); rm -rf $REFS" >&2; exit 1; }
cp -r "$REFS" "$STAGE/refs"

rm -rf "$OUT"
mkdir -p "$OUT"
tar -C "$STAGE" -cf - . | xz -T2 -6 > "$OUT/bundle.tar.xz"
size=$(stat -c %s "$OUT/bundle.tar.xz")
echo "gpu_bundle: $OUT/bundle.tar.xz, $((size / 1048576)) MiB (the device tool carries 64 MiB with the checkout)"
(cd "$STAGE" && find . -type f -printf '%8s %p\n' | sort -k2) > "$OUT/manifest.txt"
[ "$size" -lt $((60 * 1048576)) ] || { echo "gpu_bundle: too large for one device call" >&2; exit 1; }
