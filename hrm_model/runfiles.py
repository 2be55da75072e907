"""The run folder's files: written atomically, read defensively, pruned carefully.

* Text files (config.yaml, plan.json, metrics.jsonl rewrites) go to a temp file in the same
  folder, are fsync'd and renamed into place: a kill or a full disk leaves the old file or the
  new one, and the temp file is removed even when the cleanup itself hits a second error.
* Resume takes its configuration from the checkpoint, not from config.yaml (a human-readable
  copy the user may have edited or damaged): differences are reported, never applied.
* Old checkpoints are pruned to ``keep_last``, always keeping the best by exact accuracy.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

MAX_TEXT_BYTES = 16 << 20
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.EFBIG}


def read_text_file(path: str | os.PathLike, what: str, error: type[Exception]) -> str:
    """A small UTF-8 text file, or ``error`` with one line saying what is wrong with it.

    Refuses before opening anything that is not a regular file (a FIFO would block forever).
    """
    p = Path(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        raise error(f"{p}: {what} not found") from None
    except OSError as e:
        raise error(f"{p}: cannot read {what} ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise error(f"{p}: {what} is {kind}; give a YAML file")
    if st.st_size > MAX_TEXT_BYTES:
        raise error(f"{p}: {what} is {st.st_size:,} bytes, more than a config file can be")
    try:
        with open(p, "rb") as f:
            raw = f.read(MAX_TEXT_BYTES + 1)
    except OSError as e:
        raise error(f"{p}: cannot read {what} ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{p}: {what} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None


def _unlink_quietly(p: str | os.PathLike) -> None:
    try:
        os.unlink(p)
    except OSError:  # already gone, or a second error while cleaning up: the first one matters
        pass


def fsync_dir(d: str | os.PathLike) -> None:
    """Make a rename durable (best effort: not every OS / file system allows it)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def is_disk_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in DISK_ERRNOS


# ----------------------------------------------------------------------------- metrics.jsonl

def read_metrics(path: str | os.PathLike) -> tuple[list[tuple[str, dict]], int]:
    """(line, record) pairs of a metrics.jsonl that parse as records with an integer step, and
    the number of lines that did not (a line cut by a kill, junk written by someone else)."""
    p = Path(path)
    if not p.is_file():
        return [], 0
    good, bad = [], 0
    for raw in p.read_bytes().splitlines():
        try:
            line = raw.decode("utf-8")
            rec = json.loads(line)
        except (UnicodeDecodeError, ValueError, RecursionError):
            bad += bool(raw.strip())
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step", 0), int) and not isinstance(rec.get("step", 0), bool):
            good.append((line, rec))
        else:
            bad += 1
    return good, bad


def truncate_metrics(path: str | os.PathLike, step: int, drop_eval_at_step: bool = False) -> int:
    """On resume, keep the lines logged up to the checkpoint; returns how many junk lines went."""
    p = Path(path)
    if not p.exists():
        return 0
    good, bad = read_metrics(p)
    keep = [line for line, rec in good
            if rec.get("step", 0) < step or (rec.get("step", 0) == step
                                             and not (drop_eval_at_step and rec.get("type") == "eval"))]
    atomic_write_text(p, "".join(l + "\n" for l in keep))
    return bad


# ----------------------------------------------------------------------------- pruning

def prune_checkpoints(run_dir: str | os.PathLike, keep_last: int, protect: set[int] = frozenset()) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints and those whose step is in ``protect``."""
    from .checkpoint import list_checkpoints
    if keep_last <= 0:
        return []
    return unlink_each(p for s, p in list_checkpoints(run_dir)[:-keep_last] if s not in protect)


def unlink_each(paths: Iterable[Path]) -> list[Path]:
    """Delete what can be deleted; returns those that went."""
    removed = []
    for p in paths:
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


# ----------------------------------------------------------------------------- resume

def newest_checkpoint(run_dir: Path, say: Callable[[str], None], error: type[Exception]) -> tuple[dict, Path]:
    """The newest checkpoint that loads and has the structure of ours; older ones on failure."""
    from . import checkpoint as ckpt
    found = ckpt.list_checkpoints(run_dir)
    if not found:
        raise error(f"{run_dir}: no checkpoint to resume from (the run stopped before it wrote one); "
                    "start it again with hrm-train DATA ...")
    bad: list[str] = []
    for _, path in reversed(found):
        try:
            obj = ckpt.load(path)
            ckpt.check_full_checkpoint(obj)
        except ckpt.CheckpointError as e:
            msg = str(e) if str(e).startswith(str(path)) else f"{path}: {e}"
            bad.append(msg)
            say(f"warning: {msg}; delete {path} (falling back to an older checkpoint)")
            continue
        return obj, path
    raise error(f"{run_dir}: no readable checkpoint ({bad[0]})")


def resume_config(run_dir: Path, saved: dict, file_flat: dict[str, Any], overrides: dict[str, Any],
                  error: type[Exception]) -> tuple[dict[str, Any], list[str]]:
    """The resumed run's flat config: the checkpoint's, plus the runtime keys the user changed.

    config.yaml is only compared, never trusted: keys that differ from the checkpoint are named
    in a note (the checkpoint's values are used), and a damaged config.yaml does not matter.
    """
    import yaml
    from .config import RESUME_MUTABLE, complete, flatten

    notes: list[str] = []
    flat = complete(flatten(dict(saved["config"])))  # keys added since the checkpoint: defaults
    cfg_path = run_dir / "config.yaml"
    try:
        on_disk = (yaml.safe_load(read_text_file(cfg_path, "config.yaml", ValueError))
                   if os.path.lexists(cfg_path) else None)
        if on_disk is not None and not isinstance(on_disk, dict):
            raise ValueError("not a mapping")
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        on_disk = None
        notes.append(f"{cfg_path} is damaged; the checkpoint holds the configuration (config.yaml is rewritten)")
    if isinstance(on_disk, dict):
        on_disk = flatten({k: v for k, v in on_disk.items() if k != "data_path"})
        differ = sorted(k for k in set(on_disk) | set(flat)
                        if k in on_disk and k in flat and on_disk[k] != flat[k] and not k.startswith("debug_"))
        if differ:
            from .limits import show
            shown = ", ".join(f"{k} ({show(on_disk[k], 20)} in config.yaml, {show(flat[k], 20)} in the checkpoint)"
                              for k in differ[:6])
            more = f" and {len(differ) - 6} more" if len(differ) > 6 else ""
            notes.append(f"config.yaml differs from the checkpoint in {shown}{more}: the checkpoint's values are "
                         f"used; to change a runtime key on resume pass it as key=value")
    changed = {k: v for k, v in {**file_flat, **overrides}.items() if k not in RESUME_MUTABLE}
    if changed:
        raise error(f"cannot change {', '.join(sorted(changed))} when resuming "
                    f"(allowed: {', '.join(sorted(RESUME_MUTABLE))})")
    flat.update(debug_nan_at_step=0, debug_sigkill_at_step=0)  # debug hooks never carry over
    flat.update(file_flat)
    flat.update(overrides)
    return flat, notes


class RunLock:
    """An exclusive lock on a run folder for the life of one hrm-train (``flock`` on its ``.lock``
    file), so two processes never write one run's checkpoints and metrics.jsonl in turn: a second
    start with the same run_name, or a second ``--resume``, stops with a one-line error. The kernel
    drops the lock when the process ends, however it ends; the file itself stays (removing it
    would race with the next lock). A no-op where flock does not exist."""

    NAME = ".lock"

    def __init__(self, run_dir: Path, error: type[Exception]):
        self.fd: int | None = None
        try:
            import fcntl
        except ImportError:   # not POSIX
            return
        path = Path(run_dir) / self.NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            raise error(f"{path}: cannot open the run's lock file ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise error(f"{run_dir}: another hrm-train (pid {holder}) is using this run folder; wait for it to "
                        "finish or stop it (Ctrl-C writes a checkpoint), then resume") from None
        except OSError:   # a filesystem without locks (some network mounts): run unlocked, as before
            os.close(fd)
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)   # closing drops the flock
            self.fd = None
