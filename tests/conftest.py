"""conftest.py: keeps the suite's disk use bounded and says what it was.

Every test module writes under $COLBERT_TMP (tests/run.sh makes it and removes
it at the end). Left to pile up, the modules' checkpoints (about 90 MB each
for MiniLM, 260 MB with the optimizer state) filled a CI machine's disk. So:

  - what a module made under $COLBERT_TMP is removed when the module ends,
    and, in a module that sets TMP_PER_TEST = True (its tests share only
    what module-scoped fixtures make), what each test made when the test
    ends (COLBERT_KEEP_TMP=1 keeps everything, to look at after a failure);
  - a thread samples the size of $COLBERT_TMP every second, and the summary
    at the end prints the peak and the modules that wrote the most.

pytest's own tmp_path folders go when their test passes
(tmp_path_retention_policy = "failed" in pyproject.toml).
"""
import os
import shutil
import threading
import time

import pytest

TMP = os.environ.get("COLBERT_TMP")
KEEP = os.environ.get("COLBERT_KEEP_TMP") == "1"


def tree_bytes(path):
    """Bytes allocated under path; links are not followed, files that vanish
    while we look are skipped."""
    total = 0
    for root, dirs, files in os.walk(path, onerror=lambda e: None):
        for name in files + dirs:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


class DiskWatch:
    def __init__(self, path):
        self.path, self.module, self.peak = path, None, {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop.wait(1.0):
            self.sample()

    def sample(self):
        size, module = tree_bytes(self.path), self.module
        if module is not None:
            self.peak[module] = max(self.peak.get(module, 0), size)


WATCH = DiskWatch(TMP) if TMP and os.path.isdir(TMP) else None


def remove_new(before):
    """Remove the entries of $COLBERT_TMP that are not in before."""
    if KEEP:
        return
    for name in set(os.listdir(TMP)) - before:
        p = os.path.join(TMP, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass


@pytest.fixture(scope="module", autouse=True)
def colbert_tmp_module(request):
    """Removes what this module wrote under $COLBERT_TMP when it ends."""
    if WATCH is None:
        yield
        return
    before = set(os.listdir(TMP))
    WATCH.module = request.module.__name__
    yield
    WATCH.sample()
    WATCH.module = None
    remove_new(before)


@pytest.fixture(autouse=True)
def colbert_tmp_test(request):
    """In a module with TMP_PER_TEST = True: removes what the test wrote
    under $COLBERT_TMP (module-scoped fixtures are set up before this)."""
    if WATCH is None or not getattr(request.module, "TMP_PER_TEST", False):
        yield
        return
    before = set(os.listdir(TMP))
    yield
    WATCH.sample()
    remove_new(before)


def pytest_terminal_summary(terminalreporter):
    if WATCH is None or not WATCH.peak:
        return
    WATCH.stop.set()
    top = sorted(WATCH.peak.items(), key=lambda kv: -kv[1])
    mib = lambda b: f"{b / 2**20:.0f} MiB"  # noqa: E731
    terminalreporter.write_line(
        f"disk: $COLBERT_TMP peaked at {mib(top[0][1])} (in {top[0][0]}); "
        "largest: " + ", ".join(f"{m} {mib(b)}" for m, b in top[:5]))
