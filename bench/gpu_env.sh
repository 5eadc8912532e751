# gpu_env.sh: sourced by bench/bench_gpu_*.sh on the GPU machine: unpacks
# gpu/bundle.tar.xz (make gpu-bundle) into $W once and sets the environment
# its binaries need (libraries, model, data, cuBLASLt).
W=${W:-/tmp/colbert-gpu}
if [ ! -x "$W/colbert" ]; then
    [ -f gpu/bundle.tar.xz ] || { echo "gpu/bundle.tar.xz missing: make gpu-bundle here, carry [\"gpu\"]" >&2; exit 1; }
    mkdir -p "$W" && tar -C "$W" -xJf gpu/bundle.tar.xz || exit 1
fi
export LD_LIBRARY_PATH="$W/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
if "$W/colbert" info | grep -q "cuBLASLt not found"; then
    lt=$(find /usr/local /opt /usr/lib /usr/lib64 -name 'libcublasLt.so.1[0-9]*' 2>/dev/null | sort | tail -1)
    [ -n "$lt" ] && export COLBERT_CUBLASLT=$lt
fi
OUT=${OUT:-/tmp/colbert-bench-out}
mkdir -p "$OUT"
