"""Progress bars: the library draws its own on stderr (as the CLI does); in a
notebook, with tqdm installed, they become tqdm bars instead.

The library calls a hook (progress.h) on every bar; the hook only records
the latest bar's state (C, under a mutex). While a long call runs without
the GIL, a Python thread polls that state ten times a second and moves a
tqdm bar. So no Python code ever runs inside the library's threads.
"""
import sys
import threading

from . import _native

_MODES = ("auto", "stderr", "tqdm", "none")
_mode = "auto"


def set_progress(mode="auto"):
    """How long calls show progress: "auto" (tqdm bars in a Jupyter notebook
    when tqdm is installed, else the library's bars on stderr), "stderr",
    "tqdm" or "none"."""
    global _mode
    if mode not in _MODES:
        raise ValueError(f"progress mode {mode!r}: expected one of {', '.join(_MODES)}")
    _mode = mode


def _in_notebook():
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _tqdm():
    try:
        from tqdm.auto import tqdm
        return tqdm
    except Exception:
        return None


def resolve(quiet):
    """-> (quiet for the library, tqdm class or None)"""
    if quiet or _mode == "none":
        return True, None
    if _mode == "stderr":
        return False, None
    tqdm = _tqdm() if (_mode == "tqdm" or _in_notebook()) else None
    if tqdm is None:
        if _mode == "tqdm":
            raise RuntimeError("set_progress('tqdm'): tqdm is not installed (pip install tqdm)")
        return False, None
    return False, tqdm


class Bars:
    """with Bars(tqdm): ... shows the library's bars as tqdm bars (tqdm None:
    does nothing, the library draws on stderr)."""

    def __init__(self, tqdm):
        self.tqdm = tqdm
        self.bar = None

    def __enter__(self):
        if self.tqdm is None:
            return self
        self.serial = _native.progress_poll()[0]
        _native.progress_hook(True, False)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="colbert_c-progress", daemon=True)
        self.thread.start()
        return self

    def _run(self):
        while not self.stop.wait(0.1):
            self._poll()

    def _poll(self):
        serial, label, unit, done, total, ended = _native.progress_poll()
        if serial != self.serial:
            self._close()
            self.serial = serial
            self.bar = self.tqdm(total=total or None, desc=label, unit=" " + unit if unit else "it",
                                 leave=True, dynamic_ncols=True)
        if self.bar is None:
            return
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()
        if ended:
            self._close()

    def _close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __exit__(self, *exc):
        if self.tqdm is None:
            return False
        self.stop.set()
        self.thread.join()
        _native.progress_hook(False, True)
        self._poll()
        self._close()
        return False
