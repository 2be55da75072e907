"""Opening a dataset's files without trusting them.

Every reader in hrm_data goes through here, so that what a user (or a broken copy) can put
where a file belongs becomes one clear :class:`~hrm_data.format.FormatError`, never a hang or
a traceback: a directory or FIFO (checked before opening, and opened non-blocking so a FIFO
swapped in afterwards cannot hang us either), a symlink loop, an unreadable file ("permission
denied", not "corrupt"), JSON nested too deep or holding absurdly long numbers, and set names
that would make a reader leave the dataset folder.

Also the documented upper bounds on metadata values (docs/validate.md, E509): values no model
can be built from are refused before anything allocates memory for them.
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

# Sane upper bounds (docs/validate.md, E509). Generous for every known task (ARC: vocab 12,
# seq_len 900, ~1M identifiers with augmentation), far below what would allocate terabytes.
MAX_VOCAB_SIZE = 1 << 24            # token embedding rows (16.8M; LLM vocabularies are ~256k)
MAX_SEQ_LEN = 1 << 20               # tokens per example (1M; attention is quadratic in it)
MAX_PUZZLE_IDENTIFIERS = 1 << 26    # puzzle embedding rows (67M; x 512 floats is already 137 GB)
MAX_COUNT = (1 << 31) - 1           # total_groups / total_puzzles / mean_puzzle_examples: int32 indices
MAX_JSON_BYTES = 256 << 20          # identifiers.json of a huge augmented set is tens of MB
MAX_INT_DIGITS = 40                 # longer integer literals are refused, never parsed

_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")


def _format_error(message: str, code: str | None = None) -> Exception:
    from .format import FormatError
    return FormatError(message, code=code)


def is_plain_name(name: Any) -> bool:
    """A set name is a plain file-name part: letters, digits, ``_ . -``, no path components."""
    return isinstance(name, str) and len(name) <= 200 and bool(_PLAIN_NAME.match(name)) and ".." not in name


def check_plain_name(name: Any, source: str) -> str:
    if not is_plain_name(name):
        raise _format_error(f"{source}: set name {name!r} is not a plain name (letters, digits, '_', '.', '-'; "
                            f"no '/' or '..'): a set's arrays live inside its split folder; rename the set "
                            f"(usually \"all\")", code="E110")
    return name


def describe_os_error(path: Path, e: OSError) -> tuple[str, str]:
    """(message, validate code) for an OSError met while opening ``path``."""
    if e.errno in (errno.EACCES, errno.EPERM):
        return (f"{path}: permission denied; make it readable (chmod a+r, or run as its owner)", "E114")
    if e.errno == errno.ELOOP:
        return (f"{path}: symlink loop; point the link at the real file or replace it with the file", "E113")
    if e.errno == errno.ENOENT:
        return (f"{path}: file not found (a dangling symlink or a missing file); rebuild the dataset or "
                f"copy the file", "E103")
    if e.errno == errno.ENAMETOOLONG:
        return (f"{path}: path too long for this file system", "E113")
    return (f"{path}: cannot be read ({e.strerror or e}); check the disk and the file", "E104")


def file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def check_regular(path: str | os.PathLike) -> os.stat_result:
    """stat ``path`` (following links) and insist it is a regular file; never opens it."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as e:
        msg, code = describe_os_error(path, e)
        raise _format_error(msg, code) from None
    if not stat.S_ISREG(st.st_mode):
        raise _format_error(f"{path}: is {file_kind(st.st_mode)} where a file belongs; remove it and rebuild "
                            f"the dataset (or copy the real file there)", code="E113")
    return st


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open a regular file for reading in binary mode, never blocking on a FIFO or device."""
    path = Path(path)
    check_regular(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        msg, code = describe_os_error(path, e)
        raise _format_error(msg, code) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between the stat and the open
            raise _format_error(f"{path}: is {file_kind(st.st_mode)} where a file belongs; remove it and "
                                f"rebuild the dataset", code="E113")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _parse_int(s: str) -> int:
    if len(s.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(s.lstrip('-')):,} digits (at most {MAX_INT_DIGITS} are accepted)")
    return int(s)


def loads_json(text: str | bytes, source: str) -> Any:
    """json.loads that turns every way a JSON text can be hostile into FormatError (code E102)."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        return json.loads(text, parse_int=_parse_int)
    except UnicodeDecodeError as e:
        raise _format_error(f"{source}: not UTF-8 text ({e.reason} at byte {e.start}); rewrite it as UTF-8 JSON "
                            f"or rebuild the dataset", code="E102") from None
    except json.JSONDecodeError as e:
        raise _format_error(f"{source}: not valid JSON ({e}); rewrite it or rebuild the dataset", code="E102") from None
    except RecursionError:
        raise _format_error(f"{source}: JSON nested too deeply to read; it is not a dataset file, rebuild it",
                            code="E102") from None
    except ValueError as e:  # over-long integers (ours or Python's own limit)
        raise _format_error(f"{source}: not usable JSON ({e}); rebuild the dataset", code="E102") from None


def read_json(path: str | os.PathLike, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Read and parse one JSON file of a dataset; every failure is a FormatError with a code."""
    path = Path(path)
    with open_regular(path) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            msg, code = describe_os_error(path, e)
            raise _format_error(msg, code) from None
    if len(data) > max_bytes:
        raise _format_error(f"{path}: larger than {max_bytes >> 20} MiB; not a dataset metadata file", code="E102")
    return loads_json(data, str(path))


def read_npy_header(path: str | os.PathLike) -> tuple[tuple[int, ...], bool, Any, int, int]:
    """(shape, fortran_order, dtype, data offset, file size) of a .npy, checked for sanity."""
    import numpy as np
    path = Path(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                shape, fortran, dtype = np.lib.format._read_array_header(f, version)  # type: ignore[attr-defined]
        except OSError as e:
            msg, code = describe_os_error(path, e)
            raise _format_error(msg, code) from None
        except Exception as e:  # noqa: BLE001  (numpy raises ValueError, SyntaxError, ... on bad headers)
            raise _format_error(f"{path}: not a readable .npy file ({e}); it is corrupt, rebuild the dataset",
                                code="E104") from None
        offset = f.tell()
    shape = tuple(shape)
    if any((not isinstance(d, int)) or d < 0 for d in shape):
        raise _format_error(f"{path}: .npy header has an impossible shape {shape}; the file is corrupt, rebuild "
                            f"the dataset", code="E104")
    return shape, fortran, dtype, offset, size


def open_npy(path: str | os.PathLike, mmap: bool) -> Any:
    """The array of a .npy whose header read_npy_header accepted, memory-mapped or read, through
    one already-checked file descriptor (a FIFO swapped in by name afterwards cannot hang us)."""
    import numpy as np
    path = Path(path)
    shape, fortran, dtype, offset, size = read_npy_header(path)
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if size < offset + nbytes:
        raise _format_error(f"{path}: truncated or corrupt (shorter than its header says); the write or copy was "
                            f"interrupted, rebuild or re-copy it", code="E105")
    order = "F" if fortran else "C"
    with open_regular(path) as f:
        try:
            if mmap and nbytes:
                return np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape, order=order)
            f.seek(offset)
            data = f.read(nbytes)
        except OSError as e:
            msg, code = describe_os_error(path, e)
            raise _format_error(msg, code) from None
    return np.frombuffer(data, dtype=dtype).reshape(shape, order=order).copy()
