"""Shared helpers for the data-safety tests: a small dataset, a runner that cannot hang, a tree snapshot."""
from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from hrm_data.format import DatasetWriter, Group, Puzzle

SEQ, VOCAB = 6, 9


def small_dataset(path: Path, groups: int = 4, seed: int = 0, force: bool = False, vary: bool = False) -> Path:
    """Train and test with a side table and provenance; ``vary`` gives puzzles of 1 and 2 examples."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, vocab_size=VOCAB, seq_len=SEQ, force=force,
                       extra={"hrm_data": {"builder": "none"}, "grid_shape": [2, 3]}) as w:
        for split, n in (("train", groups), ("test", 2)):
            with w.split(split) as s:
                for g in range(n):
                    k = 1 + (g % 2 if vary else 0)
                    x = rng.integers(1, VOCAB, (k, SEQ))
                    x[:, 0] = 1 + g  # unique rows: no leakage findings
                    x[:, 1] = 1 + (split == "test")
                    s.add_group(Group([Puzzle(f"p{g}", x, x[:, ::-1].copy())], key=f"{split}{g}",
                                      rows=[{"cost": g}] * k))
    return path


class Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise Timeout("command did not finish in time (a hang)")


def invoke(args, timeout: int = 20):
    """Run `hrm-data ARGS` in-process with a wall-clock alarm; returns click's Result."""
    from hrm_data.cli import main
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    try:
        return CliRunner().invoke(main, [str(a) for a in args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def snapshot(root: Path) -> dict[str, tuple]:
    """(type, size, mtime, mode) of every entry under root, links not followed, nothing opened."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns,
                                             stat.S_IMODE(st.st_mode))
    return out


def assert_clean_exit(res, allowed=(0, 1, 2)):
    out = res.output
    assert res.exit_code in allowed, (res.exit_code, out, res.exception)
    assert "Traceback" not in out and "internal error" not in out, out
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    if res.exit_code == 2:
        errs = [ln for ln in out.splitlines() if ln.startswith("Error:")]
        assert len(errs) == 1, out
