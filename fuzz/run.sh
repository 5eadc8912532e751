#!/usr/bin/env bash
# run.sh: run every libFuzzer target of build-fuzz/ for SECONDS each (one
# after the other), from its committed seed corpus fuzz/corpus/<target>/.
#   bash fuzz/run.sh SECONDS [WORK_DIR] [TARGET...]
# New inputs the fuzzer finds go to WORK_DIR/corpus/<target>/ (default
# build-fuzz/work: they accumulate from run to run; the committed seeds
# are never written), crashes to WORK_DIR/crashes/. One line per target:
# executions, seconds, corpus size. Exit status 1 if any target crashed,
# leaked, hit a sanitizer report or a timeout (the input is kept; replay
# it with `build-fuzz/fuzz_<target> FILE`).
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:?usage: fuzz/run.sh SECONDS [WORK_DIR] [TARGET...]}
WORK=${2:-build-fuzz/work}
shift $(( $# >= 2 ? 2 : 1 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(ls fuzz/fuzz_*.c | sed 's|fuzz/fuzz_||; s|\.c$||'))
export CB_FUZZ_DATA="$PWD/fuzz/data"
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
failed=()
for t in "${targets[@]}"; do
    bin=build-fuzz/fuzz_$t
    [ -x "$bin" ] || { echo "fuzz/run.sh: $bin is not built (make fuzz-build)" >&2; exit 2; }
    mkdir -p "$WORK/corpus/$t" "$WORK/crashes/$t"
    log="$WORK/$t.log"
    "$bin" -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$WORK/crashes/$t/" \
        "$WORK/corpus/$t" "fuzz/corpus/$t" > "$log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*')
    ncorp=$(ls "$WORK/corpus/$t" | wc -l)
    if [ $rc -ne 0 ]; then
        failed+=("$t")
        echo "fuzz_$t: FAILED (exit $rc) after ${execs:-?} executions; log $log, inputs in $WORK/crashes/$t/"
        grep -E "^==[0-9]+==ERROR|runtime error|SUMMARY|Test unit written" "$log" | head -5
    else
        echo "fuzz_$t: ${execs:-?} executions in ${secs:-?} s, no crash ($ncorp new corpus inputs in $WORK/corpus/$t)"
    fi
done
[ ${#failed[@]} -eq 0 ] || { echo "fuzz/run.sh: crashes in: ${failed[*]}"; exit 1; }
