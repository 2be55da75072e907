"""Putting a finished dataset at ``--out`` without ever destroying what someone else put there.

A build writes into a hidden temp folder beside the target and, at the end, moves it into
place with a rename that *cannot replace* (Linux ``renameat2(RENAME_NOREPLACE)``; elsewhere an
exclusive ``mkdir`` of the target followed by a rename onto that empty folder, which fails if
anything was put in it). So a folder or file that appears at ``--out`` while the build runs, or a
second build that finished first, is never overwritten: this build is refused instead.

``--force`` replaces only what is *still a dataset* at commit time (:func:`dataset_problems`
lists why something is not), by swapping it out atomically (``RENAME_EXCHANGE``) and then
removing only files of the dataset layout; anything foreign that appears meanwhile is kept.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import sys
import tempfile
from pathlib import Path

from .format import FIELDS, ROOT_SIDE_FILES, SIDE_FILES, SPLITS, DatasetExistsError

_ARRAY = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.\-]*)__(%s)\.npy\Z" % "|".join(FIELDS))

AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


class CommitRefused(DatasetExistsError):
    """The target changed under the build (or is not a dataset); nothing was replaced."""


def dataset_problems(path: str | os.PathLike) -> list[str]:
    """Why ``path`` is not a whole dataset (empty list: it is one, or it is an empty folder).

    A dataset is identifiers.json plus train/ and test/, each holding dataset.json, the five
    arrays of every set, and nothing else but our own side files (format.SIDE_FILES /
    ROOT_SIDE_FILES). Only names and file types are looked at: no file is opened.
    """
    p = Path(path)
    try:
        st = os.lstat(p)
    except OSError as e:
        return [f"cannot be inspected ({e.strerror})"]
    if stat.S_ISLNK(st.st_mode):
        return ["is a symlink (the link's target is never replaced)"]
    if not stat.S_ISDIR(st.st_mode):
        return ["is not a folder"]
    try:
        entries = {e.name: e for e in os.scandir(p)}
    except OSError as e:
        return [f"cannot be listed ({e.strerror})"]
    if not entries:
        return []
    probs: list[str] = []
    want = {"identifiers.json": "file", **{s: "dir" for s in SPLITS}}
    for name, e in sorted(entries.items()):
        kind = want.get(name, "file" if name in ROOT_SIDE_FILES else None)
        if kind is None:
            probs.append(f"foreign entry {name!r}")
        elif not _is(e, kind):
            probs.append(f"{name!r} is not a {'folder' if kind == 'dir' else 'regular file'}")
    for name in want:
        if name not in entries:
            probs.append(f"no {name}")
    for split in SPLITS:
        e = entries.get(split)
        if e is None or not _is(e, "dir"):
            continue
        try:
            files = {f.name: f for f in os.scandir(e.path)}
        except OSError as err:
            probs.append(f"{split}/ cannot be listed ({err.strerror})")
            continue
        sets: dict[str, set[str]] = {}
        for name, f in sorted(files.items()):
            m = _ARRAY.match(name)
            if name == "dataset.json" or name in SIDE_FILES or m:
                if not _is(f, "file"):
                    probs.append(f"{split}/{name} is not a regular file")
                if m:
                    sets.setdefault(m.group(1), set()).add(m.group(2))
            else:
                probs.append(f"foreign entry {split}/{name!r}")
        if "dataset.json" not in files:
            probs.append(f"no {split}/dataset.json")
        for s, have in sorted(sets.items()):
            missing = [f for f in FIELDS if f not in have]
            if missing:
                probs.append(f"{split}/ set {s!r} lacks {', '.join(missing)}")
    return probs


def _is(entry: os.DirEntry, kind: str) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False) if kind == "dir" else entry.is_file(follow_symlinks=False)
    except OSError:
        return False


def _renameat2(a: Path, b: Path, flags: int) -> int:
    """0 on success, else the errno; ENOSYS where renameat2 is unavailable."""
    if sys.platform != "linux":
        return errno.ENOSYS
    try:
        import ctypes
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return errno.ENOSYS
    if fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), flags) == 0:
        return 0
    return ctypes.get_errno() or errno.EIO


def rename_noreplace(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``; FileExistsError if anything is (or appears) at ``dst``."""
    err = _renameat2(src, dst, RENAME_NOREPLACE)
    if err == 0:
        return
    if err == errno.EEXIST:
        raise FileExistsError(errno.EEXIST, "already exists", str(dst))
    if err not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        raise OSError(err, os.strerror(err), str(dst))
    # Fallback: claim the name with an exclusive mkdir, then rename onto our own empty folder.
    # rename() only replaces an *empty* directory, so anything put into it meanwhile makes it fail.
    try:
        os.mkdir(dst)
    except FileExistsError:
        raise FileExistsError(errno.EEXIST, "already exists", str(dst)) from None
    try:
        os.rename(src, dst)
    except OSError as e:
        try:
            os.rmdir(dst)  # only succeeds if it is still our empty folder
        except OSError:
            pass
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise FileExistsError(errno.EEXIST, "appeared while committing", str(dst)) from None
        raise


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux RENAME_EXCHANGE); False where unsupported."""
    return _renameat2(a, b, RENAME_EXCHANGE) == 0


def remove_dataset(path: Path) -> list[str]:
    """Delete a dataset's own files and folders only; returns what was left (foreign entries)."""
    for split in SPLITS:
        d = path / split
        if d.is_dir() and not d.is_symlink():
            for f in os.scandir(d):
                if (f.name == "dataset.json" or f.name in SIDE_FILES or _ARRAY.match(f.name)) and _is(f, "file"):
                    os.unlink(f.path)
            try:
                os.rmdir(d)
            except OSError:
                pass
    for name in ("identifiers.json", *ROOT_SIDE_FILES):
        f = path / name
        if f.is_file() and not f.is_symlink():
            f.unlink()
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return sorted(os.listdir(path))
    return []


def commit(tmp: Path, target: Path, force: bool, problems=dataset_problems, remove=remove_dataset) -> None:
    """Move the finished dataset ``tmp`` to ``target`` (see the module docstring).

    ``problems(path)`` says why what is at ``target`` may not be replaced (default: not a whole
    npy dataset) and ``remove(path)`` deletes a replaced one, returning what it left (convert
    passes versions that also accept its own Zarr stores). Raises CommitRefused (nothing
    replaced; ``tmp`` is left for the caller to remove).
    """
    try:
        rename_noreplace(tmp, target)
        return
    except FileExistsError:
        if not force:
            raise CommitRefused(f"{target}: appeared while this build ran (another build, or someone else's "
                                f"files); nothing was replaced and this build was discarded. Pass --force to "
                                f"replace a dataset, or choose another --out") from None
    probs = problems(target)
    if probs:
        raise CommitRefused(f"{target}: is not an HRM dataset ({'; '.join(probs[:4])}); refusing to replace it "
                            f"even with --force; this build was discarded (choose another --out)")
    if exchange(tmp, target):
        old = tmp  # after the swap, tmp holds what was at target
        probs = problems(old)
        if probs:  # something foreign appeared between the check and the swap: swap back, refuse
            if exchange(tmp, target):
                raise CommitRefused(f"{target}: changed while committing ({'; '.join(probs[:4])}); nothing was "
                                    f"replaced and this build was discarded")
            raise CommitRefused(f"{target}: changed while committing; its previous content is kept at {old}")
        left = remove(old)
        if left:
            print(f"hrm-data: kept {old} (it held files that are not part of a dataset: {', '.join(left[:5])})",
                  file=sys.stderr)
        return
    # No atomic swap on this OS: move the old dataset aside (a fresh, unique name), put the new
    # one in place, then delete the old one's files. A writer killed in between is repaired by
    # the next one (format._recover_stale).
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-{os.getpid()}-", dir=target.parent))
    os.rmdir(old)
    os.rename(target, old)
    try:
        rename_noreplace(tmp, target)
    except FileExistsError:
        raise CommitRefused(f"{target}: appeared while committing; the previous dataset is kept at {old}") from None
    left = remove(old)
    if left:
        print(f"hrm-data: kept {old} (it held files that are not part of a dataset: {', '.join(left[:5])})",
              file=sys.stderr)
