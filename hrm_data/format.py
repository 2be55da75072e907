"""HRM's puzzle-dataset directory as a library: metadata, memory-mapped reader,
streaming atomic writer, content fingerprint.

The layout is sapientinc/HRM's (``puzzle_dataset.py``): see docs/format.md.
Everything here is numpy only, so the CLI never pays for importing torch.
"""
from __future__ import annotations

import errno
import hashlib
import json
import math
import mmap
import os
import shutil
import stat
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from . import safe_io

SPLITS = ("train", "test")
FIELDS = ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices")
BLANK_IDENTIFIER = "<blank>"
SIDE_TABLE = "examples.parquet"  # per-split, one row per example, optional
# Our own side files, the only entries besides the arrays and dataset.json that a folder may hold
# and still count as a dataset (--force replaces only datasets: see commit.dataset_problems).
SIDE_FILES = (SIDE_TABLE,)             # per split folder
ROOT_SIDE_FILES = ("test_puzzles.json",)  # beside identifiers.json (TinyRecursiveModels' ARC builder)
PROVENANCE_KEY = "hrm_data"      # our extra key in dataset.json (HRM's loader ignores it)

# name -> accepted Python types; order is HRM's PuzzleDatasetMetadata order.
REQUIRED_FIELDS: dict[str, tuple[type, ...]] = {
    "pad_id": (int,),
    "ignore_label_id": (int, type(None)),
    "blank_identifier_id": (int,),
    "vocab_size": (int,),
    "seq_len": (int,),
    "num_puzzle_identifiers": (int,),
    "total_groups": (int,),
    "mean_puzzle_examples": (int, float),
    "sets": (list,),
}


class FormatError(Exception):
    """A dataset on disk that cannot be read as HRM's format. The message names the file and the fix;
    ``code`` is the validate code (docs/validate.md) where one applies."""

    def __init__(self, message: str = "", code: str | None = None):
        super().__init__(message)
        self.code = code


@dataclass
class Metadata:
    """One split's dataset.json. Unknown keys are kept in ``extra`` and written back."""

    pad_id: int
    ignore_label_id: int | None
    blank_identifier_id: int
    vocab_size: int
    seq_len: int
    num_puzzle_identifiers: int
    total_groups: int
    mean_puzzle_examples: float
    sets: list[str]
    total_puzzles: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "dataset.json") -> "Metadata":
        if not isinstance(d, dict):
            raise FormatError(f"{source}: expected a JSON object, got {type(d).__name__}")
        for key, types in REQUIRED_FIELDS.items():
            if key not in d:
                raise FormatError(f"{source}: missing required field '{key}'; add it (see docs/format.md)")
            value = d[key]
            if isinstance(value, bool) or not isinstance(value, types):
                want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
                raise FormatError(f"{source}: field '{key}' is {value!r}; it must be {want}")
        if not all(isinstance(s, str) for s in d["sets"]):
            raise FormatError(f"{source}: field 'sets' must be a list of set names (strings)")
        for s in d["sets"]:
            safe_io.check_plain_name(s, source)
        _check_bounds(d, source)
        prov = d.get(PROVENANCE_KEY)
        if prov is not None and not isinstance(prov, dict):
            raise FormatError(f"{source}: field '{PROVENANCE_KEY}' is {_short(prov)}; it must be a JSON object "
                              f"(the build's provenance) or be left out: rebuild or delete the key", code="E111")
        known = set(REQUIRED_FIELDS) | {"total_puzzles"}
        tp = d.get("total_puzzles")
        if tp is not None and (isinstance(tp, bool) or not isinstance(tp, int)):
            raise FormatError(f"{source}: field 'total_puzzles' is {tp!r}; it must be int (the number of puzzles)")
        return cls(
            **{k: d[k] for k in REQUIRED_FIELDS},
            total_puzzles=tp,
            extra={k: v for k, v in d.items() if k not in known},
        )

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in REQUIRED_FIELDS}
        d["mean_puzzle_examples"] = float(d["mean_puzzle_examples"])
        if self.total_puzzles is not None:
            d["total_puzzles"] = self.total_puzzles
        d.update(self.extra)
        return d

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(self.extra.get(PROVENANCE_KEY) or {})


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


# field -> upper bound (safe_io's documented limits; validate code E509)
_UPPER_BOUNDS = {
    "vocab_size": safe_io.MAX_VOCAB_SIZE, "seq_len": safe_io.MAX_SEQ_LEN,
    "num_puzzle_identifiers": safe_io.MAX_PUZZLE_IDENTIFIERS, "total_groups": safe_io.MAX_COUNT,
    "total_puzzles": safe_io.MAX_COUNT, "mean_puzzle_examples": safe_io.MAX_COUNT,
    "pad_id": safe_io.MAX_VOCAB_SIZE, "blank_identifier_id": safe_io.MAX_PUZZLE_IDENTIFIERS,
}


def _check_bounds(d: dict[str, Any], source: str) -> None:
    """Values no model can be built from are refused by every reader (before anything allocates)."""
    for key, hi in _UPPER_BOUNDS.items():
        v = d.get(key)
        if isinstance(v, float) and not math.isfinite(v):
            raise FormatError(f"{source}: field '{key}' is {v}; it must be a finite number: fix dataset.json or "
                              f"rebuild the dataset", code="E508")
        if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(v) > hi:
            raise FormatError(f"{source}: field '{key}' is {_short(v)}; no model can be built from it (the limit "
                              f"is {hi:,}, see docs/validate.md E509): fix dataset.json or rebuild", code="E509")
    ign = d.get("ignore_label_id")
    if isinstance(ign, int) and abs(ign) > safe_io.MAX_VOCAB_SIZE:
        raise FormatError(f"{source}: field 'ignore_label_id' is {_short(ign)}; it must fit the token dtype "
                          f"(|value| <= {safe_io.MAX_VOCAB_SIZE:,}, see docs/validate.md E509)", code="E509")


def read_json(path: Path) -> Any:
    """One JSON file of a dataset; directories, FIFOs, loops, deep nesting... raise FormatError."""
    return safe_io.read_json(path)


def load_npy(path: Path, mmap: bool = True) -> np.ndarray:
    """Open one .npy, memory-mapped where possible; truncated or corrupt files raise FormatError."""
    shape, _, dtype, offset, size = safe_io.read_npy_header(path)  # type, permission and header first
    if dtype.hasobject:
        raise FormatError(f"{path}: holds Python objects (dtype {dtype}); HRM arrays are integers, rebuild it",
                          code="E201")
    try:
        return safe_io.open_npy(path, mmap)
    except (ValueError, EOFError) as e:
        raise FormatError(f"{path}: unreadable .npy ({e}); the file is truncated or corrupt, rebuild it") from None


@dataclass
class SetArrays:
    """The five arrays of one set of one split. inputs/labels are memory-mapped."""

    name: str
    inputs: np.ndarray
    labels: np.ndarray
    puzzle_identifiers: np.ndarray
    puzzle_indices: np.ndarray
    group_indices: np.ndarray

    @property
    def num_examples(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def num_puzzles(self) -> int:
        return int(self.puzzle_identifiers.shape[0])

    @property
    def num_groups(self) -> int:
        return int(self.group_indices.shape[0]) - 1

    def groups(self) -> Iterator[list[tuple[int, np.ndarray, np.ndarray]]]:
        """Walk groups -> puzzles -> examples: yields, per group, [(identifier, inputs, labels), ...]."""
        gi, pi = self.group_indices, self.puzzle_indices
        for g in range(self.num_groups):
            yield [
                (int(self.puzzle_identifiers[p]), self.inputs[pi[p]:pi[p + 1]], self.labels[pi[p]:pi[p + 1]])
                for p in range(int(gi[g]), int(gi[g + 1]))
            ]

    def example_puzzle(self) -> np.ndarray:
        """Puzzle index of every example, (N,)."""
        sizes = np.diff(self.puzzle_indices.astype(np.int64))
        return np.repeat(np.arange(self.num_puzzles, dtype=np.int64), sizes)


class Split:
    """One split folder (train/ or test/): metadata plus its sets, arrays opened lazily.

    ``store`` is another storage backend (a Zarr store, see storage_zarr.py) behind the same
    interface; None for HRM's npy directory."""

    def __init__(self, root: Path, name: str, store: Any = None):
        self.root = Path(root)
        self.name = name
        self.path = self.root / name
        self.store = store
        if store is not None:
            self.metadata = Metadata.from_dict(store.metadata_dict(name), f"{store.url}/{name} (attribute dataset.json)")
        else:
            self.metadata = Metadata.from_dict(read_json(self.path / "dataset.json"), str(self.path / "dataset.json"))
        self._sets: dict[str, SetArrays] = {}

    def array_path(self, set_name: str, field_name: str) -> Path:
        safe_io.check_plain_name(set_name, str(self.path / "dataset.json"))  # never leave the split folder
        return self.path / f"{set_name}__{field_name}.npy"

    def set(self, set_name: str) -> SetArrays:
        if set_name not in self._sets and self.store is not None:
            self._sets[set_name] = self.store.set_arrays(self.name, set_name)
        if set_name not in self._sets:
            arrays = {f: load_npy(self.array_path(set_name, f), mmap=f in ("inputs", "labels")) for f in FIELDS}
            self._sets[set_name] = SetArrays(set_name, **arrays)
        return self._sets[set_name]

    def index_arrays(self, set_name: str) -> tuple[np.ndarray, np.ndarray]:
        """(puzzle_indices, group_indices) of one set, in memory; reads nothing else."""
        if self.store is not None:
            return self.store.index_arrays(self.name, set_name)
        return (np.asarray(load_npy(self.array_path(set_name, "puzzle_indices"), mmap=False)),
                np.asarray(load_npy(self.array_path(set_name, "group_indices"), mmap=False)))

    @property
    def sets(self) -> dict[str, SetArrays]:
        return {s: self.set(s) for s in self.metadata.sets}

    def side_table(self):
        """The per-example table (pandas DataFrame) if the builder wrote one, else None."""
        if self.store is not None:
            return self.store.side_table(self.name)
        p = self.path / SIDE_TABLE
        if not (p.exists() or p.is_symlink()):
            return None
        safe_io.check_regular(p)
        import pandas as pd  # deferred: pandas costs ~0.3 s to import
        try:
            with safe_io.open_regular(p) as f:  # a file object: pyarrow cannot open non-UTF-8 paths
                return pd.read_parquet(f)
        except Exception as e:  # noqa: BLE001  (pyarrow raises many types on a corrupt file)
            raise FormatError(f"{p}: unreadable side table ({type(e).__name__}: {e}); rebuild the dataset",
                              code="W603") from None


class Dataset:
    """A dataset directory: identifiers.json plus train/ and test/, or the same in a Zarr store."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.store = _open_store(path)
        self._splits: dict[str, Split] = {}
        if self.store is not None:
            return
        try:
            st = os.stat(self.path)
        except OSError as e:
            if e.errno == errno.ENOENT:
                raise FormatError(f"{self.path}: no such dataset directory") from None
            raise FormatError(safe_io.describe_os_error(self.path, e)[0]) from None
        if not stat.S_ISDIR(st.st_mode):
            kind = "a file" if stat.S_ISREG(st.st_mode) else safe_io.file_kind(st.st_mode)
            raise FormatError(f"{self.path}: is {kind}; give the dataset directory (the one holding train/ and test/)")

    @property
    def identifiers(self) -> list[str]:
        if self.store is not None:
            return self.store.identifiers()
        if not ((self.path / "identifiers.json").exists() or (self.path / "identifiers.json").is_symlink()):
            raise FormatError(f"{self.path / 'identifiers.json'}: missing; every dataset has one at its root "
                              f"(a JSON list of names, entry 0 \"<blank>\"): rebuild the dataset or copy it")
        ids = read_json(self.path / "identifiers.json")
        if not isinstance(ids, list):
            raise FormatError(f"{self.path / 'identifiers.json'}: expected a JSON list of names")
        if not all(isinstance(i, str) for i in ids):
            bad = next(k for k, i in enumerate(ids) if not isinstance(i, str))
            raise FormatError(f"{self.path / 'identifiers.json'}: entry {bad} is {_short(ids[bad])}; every entry must "
                              f"be a name (a JSON string): rebuild the dataset", code="E107")
        return ids

    def has_split(self, name: str) -> bool:
        if self.store is not None:
            return self.store.has_split(name)
        p = self.path / name / "dataset.json"
        return p.exists() or p.is_symlink()

    def split(self, name: str) -> Split:
        if name not in self._splits and self.store is not None:
            self._splits[name] = Split(self.path, name, store=self.store)
        if name not in self._splits:
            if not (self.path / name).is_dir():
                raise FormatError(f"{self.path / name}: split folder missing; a dataset needs train/ and test/")
            self._splits[name] = Split(self.path, name)
        return self._splits[name]

    @property
    def train(self) -> Split:
        return self.split("train")

    @property
    def test(self) -> Split:
        return self.split("test")

    def fingerprint(self) -> str:
        return fingerprint(self.store.url if self.store is not None else self.path)


def open_dataset(path: str | os.PathLike) -> Dataset:
    return Dataset(path)


def is_zarr_path(path: str | os.PathLike) -> bool:
    """A Zarr store (folder with zarr.json, a *.zarr name, or an fsspec URL) rather than an npy folder."""
    s = str(path)
    if "://" in s:
        return True
    if Path(s).exists():
        return (Path(s) / "zarr.json").is_file()
    return s.rstrip("/").endswith(".zarr")


def _open_store(path: str | os.PathLike):
    if not is_zarr_path(path):
        return None
    from .storage_zarr import ZarrStore
    return ZarrStore(str(path))


# ----------------------------------------------------------------------------- fingerprint

def _hash_array(h: "hashlib._Hash", arr: np.ndarray, chunk_bytes: int = 1 << 25) -> None:
    # Values, not bytes-on-disk: the same tokens stored as uint8 or int32 hash alike, because
    # every array is hashed in the smallest dtype that holds its value range.
    mapped, arr = arr, np.asarray(arr)
    h.update(f"{arr.shape}".encode())
    if arr.ndim == 0 or arr.shape[0] == 0:
        return
    row_bytes = max(1, arr[:1].nbytes)
    step = max(1, chunk_bytes // row_bytes)
    chunks = [slice(s, s + step) for s in range(0, arr.shape[0], step)]
    if arr.dtype.kind in "iub" and arr.size == 0:  # zero-width rows: no values to size a dtype by
        dt = np.dtype(np.uint8)
    elif arr.dtype == np.uint8:   # every value fits, so no pass for the range (token arrays: the bulk)
        dt = np.dtype(np.uint8)
    elif arr.dtype.kind in "iub":
        lo, hi = None, None
        for c in chunks:
            part = arr[c]
            lo = int(part.min()) if lo is None else min(lo, int(part.min()))
            hi = int(part.max()) if hi is None else max(hi, int(part.max()))
            _drop_pages(mapped)
        dt = smallest_int_dtype(hi, lo).newbyteorder("<")
    else:  # a broken dataset (float tokens): hash what is there
        dt = arr.dtype.newbyteorder("<")
    h.update(dt.str.encode())
    for c in chunks:
        h.update(np.ascontiguousarray(arr[c], dtype=dt))   # a view when no conversion is needed: no copy
        _drop_pages(mapped)


def _drop_pages(arr: np.ndarray) -> None:
    """Let the kernel drop the pages of a memory-mapped array already read, so hashing a large
    dataset does not hold it all in this process's resident memory (they stay in the page cache)."""
    mm = getattr(arr, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        try:
            mm.madvise(mmap.MADV_DONTNEED)
        except (OSError, ValueError):
            pass


def fingerprint(path: str | os.PathLike) -> str:
    """Content hash of a dataset: identifiers, HRM metadata fields and every array's values.

    Provenance keys are left out, so rebuilding the same content gives the same fingerprint
    and a checkpoint can tell whether it is being resumed on the data it was trained on.
    """
    ds = Dataset(path)
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(ds.identifiers).encode())
    for split_name in SPLITS:
        if not ds.has_split(split_name):
            continue
        sp = ds.split(split_name)
        meta = {k: sp.metadata.to_dict()[k] for k in REQUIRED_FIELDS}
        h.update(split_name.encode() + json.dumps(meta, sort_keys=True).encode())
        for set_name in sp.metadata.sets:
            arrays = sp.set(set_name)
            for f in FIELDS:
                h.update(f.encode())
                _hash_array(h, getattr(arrays, f))
    return h.hexdigest()


# ----------------------------------------------------------------------------- writer

def smallest_int_dtype(max_value: int, min_value: int = 0) -> np.dtype:
    """Smallest integer dtype that holds min_value..max_value (unsigned when nothing is negative)."""
    candidates = (np.uint8, np.uint16, np.int32) if min_value >= 0 else (np.int8, np.int16, np.int32)
    for dt in candidates:
        info = np.iinfo(dt)
        if info.min <= min_value and max_value <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


_NPY_HEADER_LEN = 128  # bytes; room for any 2-D shape, rewritten in place when the file closes


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    d = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (dtype.str, tuple(shape))
    body_len = _NPY_HEADER_LEN - 10
    d = d.ljust(body_len - 1) + "\n"
    assert len(d) == body_len, "shape too large for reserved .npy header"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", body_len) + d.encode("latin1")


class _NpyAppender:
    """A .npy file written row block by row block; the header is fixed up on close."""

    def __init__(self, path: Path, dtype: np.dtype, row_shape: tuple[int, ...]):
        self.path, self.dtype, self.row_shape, self.rows = path, np.dtype(dtype), tuple(row_shape), 0
        self.f = open(path, "wb")
        self.f.write(_npy_header(self.dtype, (0, *self.row_shape)))

    def append(self, block: np.ndarray) -> None:
        block = np.asarray(block)
        if block.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: rows of shape {block.shape[1:]}, expected {self.row_shape}")
        self.f.write(np.ascontiguousarray(block, dtype=self.dtype).data)  # no intermediate bytes copy
        self.rows += block.shape[0]

    def close(self) -> None:
        self.f.seek(0)
        self.f.write(_npy_header(self.dtype, (self.rows, *self.row_shape)))
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()


@dataclass
class Puzzle:
    """One puzzle: an identifier name and its examples, (n, seq_len) arrays of token ids."""

    identifier: str
    inputs: np.ndarray
    labels: np.ndarray


@dataclass
class PuzzleBlock:
    """Many puzzles as one array pair: puzzle i owns ``sizes[i]`` consecutive rows. The writer
    checks and appends the block at once (for builders with hundreds of augmented puzzles per
    group, where a Puzzle object each would cost more than the data)."""

    identifiers: Sequence[str]
    sizes: np.ndarray
    inputs: np.ndarray
    labels: np.ndarray


@dataclass
class Group:
    """Puzzles that are variants of one base example (HRM samples one puzzle per group per epoch).

    ``key`` names the base example (e.g. a scenario hash) so validate can check it never
    crosses splits; ``rows`` are optional per-example side-table rows, one dict per example,
    or one dict of columns (each a sequence with one value per example).
    """

    puzzles: list[Puzzle] | PuzzleBlock
    key: str | None = None
    rows: list[dict[str, Any]] | dict[str, Any] | None = None


@dataclass
class GroupBatch:
    """Many groups of one-example puzzles with one identifier, as whole arrays: the fast path
    for builders that write millions of rows (e.g. Sudoku with 1000 augmented copies each).

    ``inputs``/``labels`` are (N, seq_len); ``group_sizes`` (G,) counts the puzzles of each
    group in order and sums to N. ``columns`` are optional side-table columns, each (N,).
    """

    identifier: str
    inputs: np.ndarray
    labels: np.ndarray
    group_sizes: np.ndarray
    columns: dict[str, np.ndarray] | None = None

    @property
    def num_groups(self) -> int:
        return int(len(self.group_sizes))


class DatasetExistsError(FileExistsError):
    pass


class DatasetWriter:
    """Streams groups into a new dataset and commits it atomically.

    Everything goes into a hidden temporary folder beside the target; ``close()`` renames it
    into place, so a crash or kill leaves nothing at the target path. Metadata counts are
    computed here, never taken from the builder.

        with DatasetWriter("data/x", vocab_size=12, seq_len=81, pad_id=0) as w:
            with w.split("train") as s:
                s.add_group(Group([Puzzle("p1", inputs, labels)]))
    """

    def __init__(self, path: str | os.PathLike, *, vocab_size: int, seq_len: int, pad_id: int = 0,
                 ignore_label_id: int | None = 0, identifiers: Sequence[str] = (), force: bool = False,
                 extra: dict[str, Any] | None = None, set_name: str = "all"):
        self.path = Path(path)
        if self.path.name in ("", ".", ".."):
            raise ValueError(f"{str(path)!r}: name the dataset folder itself (e.g. data/mine), not '.' or '..'")
        from .commit import dataset_problems
        for key, value, hi in (("vocab_size", vocab_size, safe_io.MAX_VOCAB_SIZE), ("seq_len", seq_len, safe_io.MAX_SEQ_LEN)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= hi:
                raise ValueError(f"{key} is {value!r}; it must be an integer in [1, {hi:,}] (no model can be built "
                                 f"from more, see docs/validate.md E509)")
        self.force = force
        if self.path.exists() or self.path.is_symlink():
            if not force:
                raise DatasetExistsError(f"{self.path}: already exists; pass --force to replace it, or choose another --out")
            probs = dataset_problems(self.path)
            if probs:
                raise DatasetExistsError(f"{self.path}: exists and is not an HRM dataset ({'; '.join(probs[:4])}); "
                                         f"refusing to replace it even with --force (choose another --out)")
        self.vocab_size, self.seq_len, self.pad_id, self.ignore_label_id = vocab_size, seq_len, pad_id, ignore_label_id
        self.set_name = set_name
        self.extra = dict(extra or {})
        self.identifiers: list[str] = [BLANK_IDENTIFIER]
        self._ids: dict[str, int] = {BLANK_IDENTIFIER: 0}
        for name in identifiers:
            self.identifier_id(name)
        stored = (vocab_size - 1, pad_id) + (() if ignore_label_id is None else (ignore_label_id,))
        self.token_dtype = smallest_int_dtype(max(stored), min(stored))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _recover_stale(self.path)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.tmp-{os.getpid()}-", dir=self.path.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(self.tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a dataset is for everyone the umask allows
        self._splits: dict[str, SplitWriter] = {}
        self._closed = False

    def identifier_id(self, name: str) -> int:
        if name not in self._ids:
            self._ids[name] = len(self.identifiers)
            self.identifiers.append(name)
        return self._ids[name]

    def split(self, name: str) -> "SplitWriter":
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        if name in self._splits:
            raise ValueError(f"split {name!r} already written")
        self._splits[name] = SplitWriter(self, name)
        return self._splits[name]

    def close(self) -> Path:
        """Finish every split, write identifiers.json and the fingerprint, move into place."""
        if self._closed:
            return self.path
        from .commit import commit
        try:
            self._finish()
            commit(self.tmp, self.path, self.force)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def _finish(self) -> None:
        for name in SPLITS:
            if name not in self._splits:
                self.split(name)  # an empty split still gets its files: HRM's loader needs both
        for sw in self._splits.values():
            sw.close()
        with open(self.tmp / "identifiers.json", "w") as f:
            json.dump(self.identifiers, f)
        for sw in self._splits.values():
            sw.write_metadata(None)
        fp = fingerprint(self.tmp)  # provenance is not hashed, so writing it in afterwards is safe
        for sw in self._splits.values():
            sw.write_metadata(fp)

    def abort(self) -> None:
        """Remove the temp folder. Must survive a second error (disk full: closing a file re-flushes
        and raises again), or the full-size temp folder would stay behind and keep the disk full."""
        self._closed = True
        for sw in self._splits.values():
            try:
                sw.abort()
            except Exception:  # noqa: BLE001  (the first error is the one the user sees)
                pass
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _pid_alive(name: str, marker: str) -> bool:
    try:
        pid = int(name.split(marker)[1].split("-")[0])
    except (IndexError, ValueError):
        return True  # not ours: leave it alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _recover_stale(target: Path) -> None:
    """Undo what a killed writer left beside ``target``: its temp folders are removed; a dataset
    it had moved aside to make room is put back if the target is missing, else removed."""
    for p in target.parent.glob(f".{target.name}.tmp-*"):
        if not _pid_alive(p.name, ".tmp-"):
            shutil.rmtree(p, ignore_errors=True)
    for p in target.parent.glob(f".{target.name}.old-*"):
        if _pid_alive(p.name, ".old-"):
            continue
        from .commit import remove_dataset, rename_noreplace
        try:
            rename_noreplace(p, target)
        except FileExistsError:
            remove_dataset(p)  # only the dataset's own files; anything foreign stays


class SplitWriter:
    def __init__(self, parent: DatasetWriter, name: str):
        self.parent, self.name = parent, name
        self.dir = parent.tmp / name
        self.dir.mkdir()
        s, S = parent.set_name, parent.seq_len
        dt = parent.token_dtype
        self._inputs = _NpyAppender(self.dir / f"{s}__inputs.npy", dt, (S,))
        self._labels = _NpyAppender(self.dir / f"{s}__labels.npy", dt, (S,))
        self._pids: list[np.ndarray] = []
        self._psizes: list[np.ndarray] = []
        self._gsizes: list[int] = []
        self.num_examples = 0
        self._rows: dict[str, list] = {}
        self._buffered = 0       # rows held in self._rows, not yet written
        self._row_count = 0
        self._parquet = None
        self._closed = False

    def add_group(self, group: Group | Sequence[Puzzle]) -> None:
        if not isinstance(group, Group):
            group = Group(list(group))
        if isinstance(group.puzzles, PuzzleBlock):
            return self._add_block(group)
        if not group.puzzles:
            raise ValueError("a group needs at least one puzzle")
        S = self.parent.seq_len
        arrays = []
        for pz in group.puzzles:  # check the whole group first, so a rejected group writes nothing
            x, y = np.asarray(pz.inputs), np.asarray(pz.labels)
            if x.ndim == 1:
                x, y = x[None], y[None]
            if x.shape != y.shape or x.ndim != 2 or x.shape[1] != S or x.shape[0] == 0:
                raise ValueError(f"puzzle {pz.identifier!r}: inputs {x.shape} and labels {y.shape} "
                                 f"must both be (n>=1, seq_len={S})")
            if x.dtype.kind not in "iu" or y.dtype.kind not in "iu":
                raise ValueError(f"puzzle {pz.identifier!r}: tokens must be integer arrays, "
                                 f"got {x.dtype} inputs and {y.dtype} labels")
            self._check_range(pz.identifier, x, y)
            arrays.append((x, y))
        n = sum(x.shape[0] for x, _ in arrays)
        if group.rows is not None and len(group.rows) != n:
            raise ValueError(f"group {group.key!r}: {len(group.rows)} side-table rows for {n} examples")
        sizes = []
        for x, y in arrays:
            self._inputs.append(x)
            self._labels.append(y)
            sizes.append(x.shape[0])
        self._pids.append(np.array([self.parent.identifier_id(p.identifier) for p in group.puzzles], np.int32))
        self._psizes.append(np.array(sizes, np.int64))
        self._gsizes.append(len(group.puzzles))
        n = int(sum(sizes))
        self.num_examples += n
        if group.rows is not None or group.key is not None:
            rows = group.rows if group.rows is not None else [{} for _ in range(n)]
            if len(rows) != n:
                raise ValueError(f"group {group.key!r}: {len(rows)} side-table rows for {n} examples")
            self._add_rows(rows, group.key, n)

    def add_batch(self, batch: GroupBatch) -> None:
        """Write a GroupBatch: the same checks and bytes as add_group per group, without a
        Python loop per puzzle."""
        S = self.parent.seq_len
        x, y = np.asarray(batch.inputs), np.asarray(batch.labels)
        gs = np.asarray(batch.group_sizes, np.int64).reshape(-1)
        n = x.shape[0] if x.ndim == 2 else -1
        if x.shape != y.shape or x.ndim != 2 or x.shape[1] != S:
            raise ValueError(f"batch {batch.identifier!r}: inputs {x.shape} and labels {y.shape} must both be (n, seq_len={S})")
        if x.dtype.kind not in "iu" or y.dtype.kind not in "iu":
            raise ValueError(f"batch {batch.identifier!r}: tokens must be integer arrays, got {x.dtype} and {y.dtype}")
        if (gs < 1).any() or int(gs.sum()) != n:
            raise ValueError(f"batch {batch.identifier!r}: group_sizes must be >= 1 and sum to the {n} rows")
        if n == 0:
            return
        self._check_range(batch.identifier, x, y)
        cols = batch.columns or {}
        if any(np.shape(v) != (n,) for v in cols.values()):
            raise ValueError(f"batch {batch.identifier!r}: every side-table column must have {n} values")
        self._inputs.append(x)
        self._labels.append(y)
        self._pids.append(np.full(n, self.parent.identifier_id(batch.identifier), np.int32))
        self._psizes.append(np.ones(n, np.int64))
        self._gsizes.extend(gs.tolist())
        self.num_examples += n
        if cols:
            first = self.num_examples - n
            if self._row_count != first:
                raise ValueError("side-table rows must be given for every group or for none")
            self._flush_rows()
            import pyarrow as pa
            named = {"example": np.arange(first, first + n, dtype=np.int64), **{k: np.asarray(v) for k, v in cols.items()}}
            table = pa.Table.from_arrays([_arrow_array(v) for v in named.values()], names=list(named))
            if self._parquet is None:
                self._open_parquet(table.schema)
                self._rows = {k: [] for k in table.column_names}
            elif table.column_names != self._parquet.schema.names:
                raise ValueError(f"side-table columns {table.column_names} differ from the earlier "
                                 f"{self._parquet.schema.names}; give every batch the same columns")
            self._parquet.write_table(table.cast(self._parquet.schema))
            self._row_count += n

    def _add_block(self, group: Group) -> None:
        b = group.puzzles
        S = self.parent.seq_len
        x, y = np.asarray(b.inputs), np.asarray(b.labels)
        sizes = np.asarray(b.sizes, np.int64)
        if (x.shape != y.shape or x.ndim != 2 or x.shape[1] != S or len(b.identifiers) != len(sizes)
                or len(sizes) == 0 or (sizes < 1).any() or int(sizes.sum()) != x.shape[0]):
            raise ValueError(f"group {group.key!r}: a puzzle block needs (n, seq_len={S}) inputs and labels "
                             f"and one size >= 1 per identifier summing to n")
        if x.dtype.kind not in "iu" or y.dtype.kind not in "iu":
            raise ValueError(f"group {group.key!r}: tokens must be integer arrays, got {x.dtype} and {y.dtype}")
        self._check_range(str(group.key), x, y)
        n = x.shape[0]
        if isinstance(group.rows, dict):
            bad = [k for k, v in group.rows.items() if len(v) != n]
            if bad:
                raise ValueError(f"group {group.key!r}: side-table column {bad[0]!r} has {len(group.rows[bad[0]])} "
                                 f"values for {n} examples")
        elif group.rows is not None and len(group.rows) != n:
            raise ValueError(f"group {group.key!r}: {len(group.rows)} side-table rows for {n} examples")
        self._inputs.append(x)
        self._labels.append(y)
        self._pids.append(np.array([self.parent.identifier_id(i) for i in b.identifiers], np.int32))
        self._psizes.append(sizes)
        self._gsizes.append(len(sizes))
        self.num_examples += n
        if group.rows is not None or group.key is not None:
            self._add_rows(group.rows if group.rows is not None else [{} for _ in range(n)], group.key, n)

    def _open_parquet(self, schema) -> None:
        import pyarrow.parquet as pq
        # a file object, not a path: pyarrow cannot open non-UTF-8 paths
        import pyarrow as pa
        self._parquet_file = open(self.dir / SIDE_TABLE, "wb")
        # Dictionary encoding only where values repeat as text (task names, keys): on numeric
        # columns it made Sudoku's million-row table 10x slower to write, and larger.
        text = [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
                or pa.types.is_binary(f.type)]
        self._parquet = pq.ParquetWriter(self._parquet_file, schema, use_dictionary=text)

    def _check_range(self, ident: str, x: np.ndarray, y: np.ndarray) -> None:
        V, ign = self.parent.vocab_size, self.parent.ignore_label_id
        if x.dtype.kind == "u" and y.dtype.kind == "u" and x.size and x.max() < V and y.max() < V:
            return  # the common case in two passes
        if x.min() < 0 or x.max() >= V:
            raise ValueError(f"puzzle {ident!r}: input token out of range [0, {V})")
        bad = (y < 0) | (y >= V)
        if ign is not None:
            bad &= y != ign
        if bad.any():
            raise ValueError(f"puzzle {ident!r}: label token out of range [0, {V}) and not ignore_label_id")

    def _add_rows(self, rows: list[dict], key: str | None, n: int) -> None:
        first = self._row_count
        if first != self.num_examples - n:
            raise ValueError("side-table rows must be given for every group or for none")
        if isinstance(rows, dict):  # columns: no Python object per example
            rows = {**rows}
            rows.setdefault("example", np.arange(first, first + n, dtype=np.int64))
            if key is not None:
                rows.setdefault("group_key", np.full(n, key, object))
            self._new_columns(rows, first)
            for k in self._rows:
                v = rows.get(k)
                self._rows[k].append(_Column(np.full(n, None, object) if v is None else np.asarray(v)))
            rows = []
        for i, r in enumerate(rows):
            r = dict(r)
            r.setdefault("example", first + i)
            if key is not None:
                r.setdefault("group_key", key)
            self._new_columns(r, first + i)
            for k in self._rows:
                self._rows[k].append(r.get(k))
        self._row_count += n
        self._buffered += n
        if self._buffered >= 65536:
            self._flush_rows()

    def _new_columns(self, keys, example: int) -> None:
        """Start the columns ``keys`` brings that are new (in order: same columns, same bytes)."""
        buffered = self._buffered + example - self._row_count   # rows of this call already added
        for k in keys:
            if k not in self._rows:
                if self._parquet is not None:
                    raise ValueError(f"side-table column {k!r} first appears at example {example}, after "
                                     f"rows were written without it; give every row the same keys")
                self._rows[k] = [None] * buffered

    def _flush_rows(self) -> None:
        if not self._rows or not self._buffered:
            return
        import pyarrow as pa
        table = pa.table({k: _column_values(v) for k, v in self._rows.items()})
        if self._parquet is None:
            self._open_parquet(table.schema)
        else:
            table = table.cast(self._parquet.schema)
        self._parquet.write_table(table)
        self._rows = {k: [] for k in self._rows}
        self._buffered = 0

    def close(self) -> None:
        if self._closed:
            return
        self._inputs.close()
        self._labels.close()
        s = self.parent.set_name
        psizes = np.concatenate(self._psizes) if self._psizes else np.zeros(0, np.int64)
        pids = np.concatenate(self._pids) if self._pids else np.zeros(0, np.int32)
        np.save(self.dir / f"{s}__puzzle_identifiers.npy", pids.astype(np.int32))
        np.save(self.dir / f"{s}__puzzle_indices.npy", np.concatenate([[0], np.cumsum(psizes)]).astype(np.int32))
        np.save(self.dir / f"{s}__group_indices.npy",
                np.concatenate([[0], np.cumsum(np.array(self._gsizes, np.int64))]).astype(np.int32))
        if self._row_count and self._row_count != self.num_examples:
            raise ValueError(f"{self.name}: side-table rows given for {self._row_count} of {self.num_examples} examples")
        self._flush_rows()
        if self._parquet is not None:
            self._parquet.close()
            self._parquet_file.close()
        self.num_puzzles, self.num_groups = int(pids.shape[0]), len(self._gsizes)
        self._closed = True

    def write_metadata(self, fp: str | None) -> None:
        p = self.parent
        extra = dict(p.extra)
        prov = dict(extra.get(PROVENANCE_KEY) or {})
        if fp is not None:
            prov["fingerprint"] = fp
        extra[PROVENANCE_KEY] = prov
        meta = Metadata(
            pad_id=p.pad_id, ignore_label_id=p.ignore_label_id, blank_identifier_id=0,
            vocab_size=p.vocab_size, seq_len=p.seq_len, num_puzzle_identifiers=len(p.identifiers),
            total_groups=self.num_groups,
            mean_puzzle_examples=(self.num_examples / self.num_puzzles) if self.num_puzzles else 0.0,
            sets=[p.set_name], total_puzzles=self.num_puzzles, extra=extra,
        )
        write_metadata(self.dir, meta)

    def abort(self) -> None:
        for close in (self._inputs.f.close, self._labels.f.close,
                      self._parquet.close if self._parquet is not None else None,
                      self._parquet_file.close if self._parquet is not None else None):
            try:
                if close is not None:
                    close()
            except Exception:  # noqa: BLE001  (e.g. ENOSPC again while flushing: the file is closed anyway)
                pass

    def __enter__(self) -> "SplitWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


class _Column:
    """A block of side-table values given as a column (kept as an array until written)."""

    __slots__ = ("values",)

    def __init__(self, values: np.ndarray):
        self.values = values


def _arrow_array(values: np.ndarray):
    """pa.array of a numpy column. Plain numbers go in as a buffer: pa.array would first probe
    for pandas objects, and that probe imports pandas (0.3 s of a 3 s Sudoku build)."""
    import pyarrow as pa
    v = np.asarray(values)
    if v.ndim == 1 and v.dtype.kind in "iuf":
        v = np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("="))
        return pa.Array.from_buffers(pa.from_numpy_dtype(v.dtype), len(v), [None, pa.py_buffer(v)])
    return pa.array(v)


def _column_values(chunks: list):
    """One side-table column: Python values and column blocks, in order, as one array."""
    import pyarrow as pa
    if not any(isinstance(c, _Column) for c in chunks):
        return chunks
    parts = [c.values if isinstance(c, _Column) else np.array([c], object) for c in chunks]
    if all(p.dtype != object for p in parts) and len({p.dtype for p in parts}) == 1:
        return _arrow_array(np.concatenate(parts))
    values = np.concatenate([p.astype(object) for p in parts])
    try:   # the common case, text: no per-value type inference
        return pa.array(values, type=pa.string(), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array(values, from_pandas=True)


def write_metadata(split_dir: Path, meta: Metadata) -> None:
    with open(Path(split_dir) / "dataset.json", "w") as f:
        json.dump(meta.to_dict(), f, indent=2)
        f.write("\n")


def write_arrays(path: str | os.PathLike, splits: dict[str, dict[str, np.ndarray]], *, vocab_size: int,
                 identifiers: Sequence[str] = (BLANK_IDENTIFIER,), pad_id: int = 0,
                 ignore_label_id: int | None = 0, set_name: str = "all",
                 metadata_overrides: dict[str, dict[str, Any]] | None = None) -> Path:
    """Write raw arrays exactly as given (no checks, no atomic rename).

    For tests and importers that must reproduce a layout byte for byte, including broken
    ones; builders use DatasetWriter instead.
    """
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "identifiers.json", "w") as f:
        json.dump(list(identifiers), f)
    for split_name, arrays in splits.items():
        d = root / split_name
        d.mkdir(exist_ok=True)
        for k, v in arrays.items():
            np.save(d / f"{set_name}__{k}.npy", v)
        P = int(arrays["puzzle_identifiers"].shape[0])
        N = int(arrays["inputs"].shape[0])
        meta = dict(pad_id=pad_id, ignore_label_id=ignore_label_id, blank_identifier_id=0, vocab_size=vocab_size,
                    seq_len=int(arrays["inputs"].shape[-1]), num_puzzle_identifiers=len(identifiers),
                    total_groups=int(arrays["group_indices"].shape[0]) - 1,
                    mean_puzzle_examples=N / P if P else 0.0, sets=[set_name])
        meta.update((metadata_overrides or {}).get(split_name, {}))
        with open(d / "dataset.json", "w") as f:
            json.dump(meta, f)
    return root
