#!/usr/bin/env bash
# fresh_check.sh: `make test` as a new user meets it, on a machine made fresh
# for the project (issue 23). It
#   1. purges the Debian packages that set-up installs and a bare Debian
#      image does not have (Open MPI, cairo's -dev package, OpenBLAS,
#      utf8proc, jansson's -dev package; FRESH_PURGE overrides the list), so
#      the build cannot find them when make starts;
#   2. runs everything with HOME set to an empty directory, so no
#      ~/.cache/colbert.c (the two Python environments), no pip cache and no
#      torch or Hugging Face cache exist: the venvs are made anew, every wheel
#      is downloaded;
#   3. clones the committed HEAD of this checkout into a new folder, with
#      ../shared beside it as CI has it, and runs `CI=true bash .ci/run` there
#      with no standard input, as CI does;
#   4. checks that `build/colbert info` says "mpi: yes" and "curve png: yes",
#      and prints the minutes and the disk the run took.
# It changes the machine (the packages are reinstalled by set-up, so the end
# state has them again). Usage:
#   bash scripts/fresh_check.sh [WORKDIR]     (default /tmp/colbert-fresh)
# The log is WORKDIR/ci.log; the summary is the last lines printed.
# FRESH_KEEP=1 keeps WORKDIR (the clone and the fresh HOME, about 12 GB).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
W=${1:-/tmp/colbert-fresh}
SHARED=${FRESH_SHARED:-$SRC/../shared}
PURGE=${FRESH_PURGE:-"libopenmpi-dev openmpi-bin openmpi-common libopenmpi3 libcairo2-dev libopenblas-openmp-dev libopenblas0-openmp libopenblas-dev libutf8proc-dev libjansson-dev"}

[ -d "$SHARED/datasets" ] || { echo "fresh_check: $SHARED/datasets not found (FRESH_SHARED=DIR)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || SUDO=sudo
SUDO=${SUDO:-}

echo "fresh_check: purging what set-up installs: $PURGE" >&2
installed=()
for p in $PURGE; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" && installed+=("$p")
done
if [ ${#installed[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get purge -y -qq "${installed[@]}" >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get autoremove --purge -y -qq >/dev/null
fi
for c in mpicc mpirun; do
    if command -v $c >/dev/null; then echo "fresh_check: $c is still installed after the purge" >&2; exit 1; fi
done
pkg-config --exists cairo 2>/dev/null && { echo "fresh_check: cairo's -dev package is still installed" >&2; exit 1; }

rm -rf "$W"
mkdir -p "$W/home"
git clone -q "$SRC" "$W/repo"
ln -s "$(cd "$SHARED" && pwd)" "$W/shared"
echo "fresh_check: clone of $(git -C "$W/repo" log -1 --format='%h %s' | cut -c1-70) in $W/repo, HOME=$W/home" >&2

df0=$(df -B1M --output=used / | tail -1)
t0=$(date +%s)
# what the machine's environment has, less anything pointing at old caches
rc=0
(cd "$W/repo" && env -u COLBERT_VENV -u COLBERT_PEERS_VENV -u VIRTUAL_ENV HOME="$W/home" CI=true \
    bash .ci/run </dev/null >"$W/ci.log" 2>&1) || rc=$?
t1=$(date +%s)
df1=$(df -B1M --output=used / | tail -1)

echo "---- the end of $W/ci.log"
grep -a 'peaked at' "$W/ci.log" | tail -1 || true   # the tests' scratch space in /tmp (tests/conftest.py)
tail -5 "$W/ci.log"
echo "---- build/colbert info"
info=$("$W/repo/build/colbert" info 2>&1 || true)
echo "$info" | grep -E '^(mpi|curve png):' || true
fail=0
[ $rc -eq 0 ] || { echo "fresh_check: .ci/run exited $rc"; fail=1; }
echo "$info" | grep -q '^mpi: yes' || { echo "fresh_check: the build has no MPI"; fail=1; }
echo "$info" | grep -q '^curve png: yes' || { echo "fresh_check: the build draws no PNG curve"; fail=1; }
du_home=$(du -sm "$W/home" | cut -f1)
du_repo=$(du -sm "$W/repo" | cut -f1)
printf 'fresh_check: %.1f min; disk in use rose by %d MB (the fresh HOME %d MB: venvs and pip cache; the clone %d MB)\n' \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print (b-a)/60}')" $((df1 - df0)) "$du_home" "$du_repo"
[ "${FRESH_KEEP:-0}" = 1 ] || { [ $fail -ne 0 ] || rm -rf "$W"; }
if [ $fail -eq 0 ]; then echo "fresh_check: passed"; else echo "fresh_check: FAILED (log: $W/ci.log)"; fi
exit $fail
