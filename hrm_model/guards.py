"""Checks that keep a run from blessing what is broken.

* A checkpoint is written only when every weight is finite and, for an evaluation checkpoint,
  every evaluation number is finite (lr=1e30 gives finite 1e30 weights and a NaN evaluation).
* "Last good checkpoint" names one whose state is known good: its evaluation was finite, or the
  step after it had a finite loss.
* The dataset's memory-mapped arrays must stay the files they were when the run started: a file
  truncated or replaced under a running trainer is detected at every evaluation and before
  every checkpoint (instead of training on zeros), and a SIGBUS from reading a truncated map is
  reported in one line.
"""
from __future__ import annotations

import math
import os
import signal
import sys
from pathlib import Path
from typing import Any, Iterable


def first_nonfinite(named: Iterable[tuple[str, Any]]) -> str | None:
    """Name of the first floating tensor holding a NaN or inf, else None."""
    import torch
    for name, t in named:
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


def nonfinite_metric(results: dict[str, dict[str, Any]]) -> str | None:
    """``set/metric=value`` of the first evaluation number that is not finite, else None."""
    for set_name, m in results.items():
        for k, v in m.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isfinite(v):
                return f"{set_name} {k} {v}"
    return None


def last_good_checkpoint(run_dir: Path, bad_step: int, verified: set[int]) -> Path | None:
    """The newest checkpoint before ``bad_step`` whose state is known good.

    A checkpoint at step s is good when the loss of step s + 1 was finite (s < bad_step - 1) or
    when its evaluation was finite (``verified``); the one at bad_step - 1 holds the very weights
    that gave the bad loss, so it counts only if an evaluation vouched for it.
    """
    from .checkpoint import list_checkpoints
    for s, p in reversed(list_checkpoints(run_dir)):
        if s < bad_step - 1 or (s < bad_step and s in verified):
            return p
    return None


# ----------------------------------------------------------------------------- the data under the run

def array_files(dataset) -> list[Path]:
    """The dataset's memory-mapped files (inputs / labels of every set of both splits)."""
    if hasattr(dataset, "parts"):  # several datasets read as one (hrm_data.merge)
        return [f for part in dataset.parts for f in array_files(part)]
    files = []
    for split in (dataset.train, dataset.test):
        for set_name in split.metadata.sets:
            for field in ("inputs", "labels"):
                files.append(split.array_path(set_name, field))
    return files


def _identity(p: Path) -> tuple | None:
    try:
        st = os.stat(p)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class DataWatch:
    """Remembers the array files' identity (device, inode, size, mtime); ``changed()`` names one
    that differs now. Cheap: one stat per file."""

    def __init__(self, files: Iterable[Path]):
        self.files = list(files)
        self.ids = {p: _identity(p) for p in self.files}

    def changed(self) -> str | None:
        for p in self.files:
            now = _identity(p)
            if now != self.ids[p]:
                if now is None:
                    return f"{p} was deleted"
                was = self.ids[p]
                if was is not None and now[2] != was[2]:
                    return f"{p} changed size ({was[2]:,} -> {now[2]:,} bytes)"
                return f"{p} was replaced or rewritten"
        return None


_SIGBUS_MSG = b""


def install_sigbus_message(data_path: str, run_dir: Path | None) -> None:
    """On SIGBUS (reading a memory-mapped file that was truncated) print one line and exit 2.

    A Python signal handler cannot do this (it would run only after the faulting instruction,
    which repeats forever), so the handler is a C-level one: see ``_native_sigbus``. Best
    effort: where it cannot be installed, the data check at each evaluation still catches the
    change (and the process dies of SIGBUS as before).
    """
    global _SIGBUS_MSG
    where = f"; resume from the last checkpoint with `hrm-train --resume {run_dir}`" if run_dir else ""
    _SIGBUS_MSG = (f"Error: {data_path}: a data file was truncated or replaced while training (SIGBUS reading "
                   f"its memory map); rebuild or restore the dataset{where}\n").encode("utf-8", "replace")
    _native_sigbus(_SIGBUS_MSG)


_keep_alive: list[Any] = []


def remove_sigbus_message() -> None:
    """Put back the SIGBUS handler that was there before (e.g. faulthandler's)."""
    if len(_keep_alive) == 4:
        libc, previous = _keep_alive[2], _keep_alive[3]
        try:
            libc.signal(int(signal.SIGBUS), previous)
        except Exception:
            pass
        _keep_alive.clear()


def _native_sigbus(message: bytes) -> bool:
    """Install a SIGBUS handler made of libc calls only: write(2, message) then _exit(2).

    The handler is a ctypes callback whose body is two foreign calls to libc's ``write`` and
    ``_exit`` (no allocation, no Python-level I/O), registered with libc's ``signal``, so it runs
    in the faulting thread at the fault. Linux / macOS.
    """
    if not hasattr(signal, "SIGBUS") or sys.platform == "win32":
        return False
    try:
        import ctypes
        import ctypes.util
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        buf = ctypes.create_string_buffer(message, len(message))
        write, _exit = libc.write, libc._exit
        write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
        _exit.argtypes = (ctypes.c_int,)
        HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_int)

        def handler(signum):  # runs as little Python as possible: two foreign calls
            write(2, buf, len(message))
            _exit(2)

        cb = HANDLER(handler)
        libc.signal.restype = ctypes.c_void_p
        libc.signal.argtypes = (ctypes.c_int, ctypes.c_void_p)
        previous = libc.signal(int(signal.SIGBUS), ctypes.cast(cb, ctypes.c_void_p))
        _keep_alive[:] = [cb, buf, libc, previous]
        return True
    except Exception:
        return False
