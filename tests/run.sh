#!/usr/bin/env bash
# run.sh: run every test of colbert.c and print one closing line
# "N passed, N failed". Called by `make test` after the builds.
#   - each C unit test, release build, then the ASan/UBSan build
#   - each libFuzzer target of fuzz/ for 30 s (fuzz/run.sh)
#   - the Python tests (pytest) that compare against PyTorch & co.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export COLBERT_ROOT="$ROOT"
export COLBERT_BIN="$ROOT/build/colbert"
export COLBERT_SAN_BIN="$ROOT/build-san/colbert"
export COLBERT_DATASETS="${COLBERT_DATASETS:-$ROOT/../shared/datasets}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY="$ROOT/.venv/bin/python"
if [ -z "${COLBERT_MODEL:-}" ]; then
    COLBERT_MODEL=$("$PY" tests/ref/find_model.py) || { echo "run.sh: cannot find the all-MiniLM-L6-v2 model" >&2; exit 1; }
    export COLBERT_MODEL
fi
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0" UBSAN_OPTIONS="print_stacktrace=1"
export COLBERT_TMP=$(mktemp -d /tmp/colbert-test.XXXXXX)
# removed at the end; COLBERT_KEEP_TMP=1 keeps everything the tests wrote
trap '[ "${COLBERT_KEEP_TMP:-}" = 1 ] && echo "run.sh: kept $COLBERT_TMP" || rm -rf "$COLBERT_TMP"' EXIT

# Reference tensors from PyTorch for the C parity tests (tests/ref/gen_*.py).
export COLBERT_REF="$COLBERT_TMP/ref"
for g in tests/ref/gen_*.py; do
    "$PY" "$g" "$COLBERT_MODEL" "$COLBERT_DATASETS" "$COLBERT_REF" || { echo "run.sh: $g failed" >&2; exit 1; }
done

passed=0; failed=0; failures=()
run() {  # run NAME CMD...
    local name=$1; shift
    local t0=$(date +%s.%N)
    if "$@"; then passed=$((passed+1)); s=ok; else failed=$((failed+1)); failures+=("$name"); s=FAILED; fi
    printf '== %-40s %s (%.1f s)\n' "$name" "$s" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')"
}
# each C test writes under a scratch $COLBERT_TMP of its own, removed after it
# (COLBERT_KEEP_TMP=1 keeps it), so the suite's disk use stays small
scratch() {  # scratch NAME CMD...: run CMD with COLBERT_TMP=$COLBERT_TMP/scratch/NAME
    local name=$1; shift
    local d="$COLBERT_TMP/scratch/$name"
    mkdir -p "$d"
    COLBERT_TMP="$d" "$@"; local rc=$?
    [ "${COLBERT_KEEP_TMP:-}" = 1 ] || rm -rf "$d"
    return $rc
}
for t in build/tests/test_*; do run "$(basename "$t")" scratch "$(basename "$t")" "$t"; done
for t in build-san/tests/test_*; do run "$(basename "$t") [asan]" scratch "$(basename "$t").san" "$t"; done
# each libFuzzer target of fuzz/ for 30 s from its seed corpus (new inputs
# in a scratch directory); a crash, leak or sanitizer report fails it
for t in fuzz/fuzz_*.c; do
    t=${t#fuzz/fuzz_}; t=${t%.c}
    run "fuzz_$t (30 s)" bash fuzz/run.sh 30 "$COLBERT_TMP/fuzz" "$t"
    [ "${COLBERT_KEEP_TMP:-}" = 1 ] || rm -rf "$COLBERT_TMP/fuzz"
done
# colbert-ai, PyLate and RAGatouille (transformers 4.x) for tests/test_train_compat.py
bash scripts/setup_peers.sh || { echo "run.sh: scripts/setup_peers.sh failed" >&2; exit 1; }
export COLBERT_PEERS_PY="${COLBERT_PEERS_VENV:-$HOME/.cache/colbert.c/venv-peers}/bin/python"
run "pytest" "$PY" -m pytest -q -p no:cacheprovider tests
echo
[ ${#failures[@]} -eq 0 ] || echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
