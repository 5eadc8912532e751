#!/usr/bin/env bash
# run.sh: the benchmarks of colbert.c (make bench). Long; never part of
# make test. Each prints the peer and us side by side, and the ratio.
#   bench/run.sh            all
#   bench/run.sh sgemm      SGEMM GFLOP/s at BERT shapes (OpenBLAS, and BLIS if installed)
#   bench/run.sh encode     colbert encode vs sentence-transformers
#   bench/run.sh prepare    colbert prepare vs RAGatouille's TrainingDataProcessor (1M pairs)
#   bench/run.sh mine       hard-negative mining vs RAGatouille's SimpleMiner path
#   bench/run.sh step       training step vs PyTorch eager (MiniLM and BERT-base shapes)
#   bench/run.sh mpi        training step: 2 ranks x 1 thread (mpirun) vs 1 process x 2 threads
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
what="${1:-all}"
threads="${THREADS:-$(nproc)}"
if [ "$what" = all ] || [ "$what" = sgemm ]; then
    mkdir -p build/bench
    cc -O2 -fopenmp bench/bench_sgemm.c $(pkg-config --cflags --libs openblas) -o build/bench/sgemm_openblas

    core=$(build/colbert info | sed -n "s/^kernels: //p")
    OPENBLAS_CORETYPE=$core OMP_NUM_THREADS=$threads build/bench/sgemm_openblas openblas
    if [ -e /usr/lib/x86_64-linux-gnu/libblis.so ]; then
        cc -O2 -fopenmp bench/bench_sgemm.c -I/usr/include/blis -lblis -lm -o build/bench/sgemm_blis
        OMP_NUM_THREADS=$threads BLIS_NUM_THREADS=$threads build/bench/sgemm_blis blis
    fi
fi
if [ "$what" = all ] || [ "$what" = encode ]; then
    HF_HUB_OFFLINE=1 $PY bench/bench_encode.py --threads "$threads"
fi
if [ "$what" = all ] || [ "$what" = prepare ]; then
    bash bench/bench_prepare.sh
fi
if [ "$what" = all ] || [ "$what" = mine ]; then
    [ -f bench/bench_mine.sh ] && bash bench/bench_mine.sh
fi
if [ "$what" = all ] || [ "$what" = step ]; then
    $PY bench/bench_step.py --threads "$threads"
fi
if [ "$what" = all ] || [ "$what" = mpi ]; then
    if command -v mpirun >/dev/null; then $PY bench/bench_mpi.py; else echo "bench mpi: no mpirun, skipped" >&2; fi
fi
