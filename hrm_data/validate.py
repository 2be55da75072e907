"""`hrm-data validate`: every way an HRM puzzle dataset on disk can be wrong.

Library use (the trainer calls this before training and refuses on errors)::

    from hrm_data.validate import validate
    report = validate("data/city")
    if not report.valid:
        raise SystemExit(report.format_text())

Every finding has a stable code (``E1xx`` layout, ``E2xx`` shapes and dtypes, ``E3xx`` index
structure, ``E4xx`` value ranges, ``E5xx`` metadata consistency, ``E6xx`` leakage, ``E7xx``
well-posedness, ``E8xx`` degenerate data, ``E9xx`` deep checks; ``W`` instead of ``E`` marks a
warning). The codes are documented in docs/validate.md; builders' own ``check`` hooks return
:class:`Finding` objects too (codes of their choosing, e.g. ``B101``).

Everything is vectorised over memory-mapped arrays, one bounded chunk at a time. Duplicate
and conflicting rows are found by hashing each row to 64 bits and sorting, never by comparing
pairs; every candidate a hash finds is confirmed by comparing the actual rows, so a hash
collision can cost time but never produce a false finding.
"""
from __future__ import annotations

import json
import errno
import math
import os
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import safe_io
from .format import (
    BLANK_IDENTIFIER, FIELDS, PROVENANCE_KEY, SIDE_TABLE, SPLITS, FormatError, Metadata,
)

__all__ = ["Finding", "Report", "NotADataset", "CODES", "validate", "run_cli"]

ERROR, WARNING = "error", "warning"

# code -> (name, one-line meaning). The severity is the code's first letter (E error, W warning).
CODES: dict[str, tuple[str, str]] = {
    # layout
    "E101": ("missing-split", "a split folder (train/ or test/) or its dataset.json is missing"),
    "E102": ("bad-metadata", "dataset.json is not valid JSON, or a required field is missing or of the wrong type"),
    "E103": ("missing-file", "a .npy file of a set listed in dataset.json is missing"),
    "E104": ("unreadable-npy", "a .npy file has no valid header or cannot be opened"),
    "E105": ("truncated-npy", "a .npy file is shorter than its header says"),
    "E106": ("oversized-npy", "a .npy file is longer than its header says (unfinished or appended write)"),
    "E107": ("bad-identifiers", "identifiers.json is missing, not JSON, or not a JSON list"),
    "W108": ("identifiers-blank", "identifiers.json's index 0 is not \"<blank>\""),
    "E109": ("no-sets", "dataset.json's sets is empty or names a set twice"),
    "E110": ("bad-set-name", "a set name is not a plain name (it has '/', '..' or other path parts)"),
    "E111": ("bad-provenance", "dataset.json's \"hrm_data\" provenance entry is not a JSON object"),
    "E113": ("not-a-file", "a directory, FIFO, device or symlink loop is where a dataset file belongs"),
    "E114": ("permission-denied", "a dataset file or folder cannot be read (permission denied)"),
    # shapes and dtypes
    "E201": ("bad-dtype", "an array is not of an integer dtype (bool, float, object...), or an index array is uint64"),
    "E202": ("bad-shape", "an array has the wrong number of dimensions, or inputs and labels differ in shape"),
    "E203": ("index-length", "puzzle_indices is not one longer than puzzle_identifiers, or group_indices is empty"),
    # index structure
    "E301": ("puzzle-indices-bounds", "puzzle_indices does not start at 0 and end at the number of examples"),
    "E302": ("puzzle-indices-order", "puzzle_indices is not strictly increasing (a puzzle with no examples, or out of order)"),
    "E303": ("group-indices-bounds", "group_indices does not start at 0 and end at the number of puzzles"),
    "E304": ("group-indices-order", "group_indices is not strictly increasing (a group with no puzzles, or out of order)"),
    # value ranges
    "E401": ("input-out-of-range", "an input token is outside [0, vocab_size)"),
    "E402": ("label-out-of-range", "a label token is outside [0, vocab_size) and is not ignore_label_id"),
    "E403": ("identifier-out-of-range", "a puzzle identifier is outside [0, num_puzzle_identifiers)"),
    "W404": ("blank-identifier-used", "real puzzles use blank_identifier_id, which HRM also uses for padding"),
    # metadata consistency
    "E501": ("total-groups-mismatch", "total_groups differs from the number of groups in the arrays"),
    "E502": ("mean-puzzle-examples-mismatch", "mean_puzzle_examples differs from examples / puzzles"),
    "E503": ("seq-len-mismatch", "seq_len differs from the width of inputs and labels"),
    "E504": ("num-identifiers-mismatch", "num_puzzle_identifiers differs from len(identifiers.json)"),
    "E505": ("total-puzzles-mismatch", "total_puzzles differs from the number of puzzles in the arrays"),
    "W506": ("total-puzzles-missing", "dataset.json has no total_puzzles (TinyRecursiveModels' loader needs it)"),
    "E507": ("splits-disagree", "train and test disagree on vocab_size, seq_len, pad_id, ignore_label_id, "
                                "blank_identifier_id or num_puzzle_identifiers"),
    "E508": ("bad-metadata-value", "a metadata value is impossible (vocab_size < 1, pad_id outside the vocabulary, ...)"),
    "E509": ("metadata-value-too-large", "a metadata value no model can be built from (vocab_size > 2^24, "
                                         "seq_len > 2^20, ...; limits in docs/validate.md)"),
    # leakage
    "E601": ("test-example-in-train", "a test example (input and label) also appears in train"),
    "E602": ("group-key-in-both-splits", "a side-table group_key appears in both train and test"),
    "E603": ("test-pair-in-train-under-symmetry", "ARC-encoded grids: a test pair is a train pair rotated, reflected, "
                                                  "recoloured (colours 1-9) or translated"),
    "W603": ("bad-side-table", "examples.parquet is unreadable or does not have one row per example"),
    # well-posedness
    "E701": ("ill-posed", "two examples of a split have the same input and puzzle identifier but different labels"),
    "E702": ("ill-posed-across-splits", "a test example has the same input and puzzle identifier as a train "
                                        "example but a different label"),
    # degenerate data
    "W801": ("all-pad-input", "an example's input is entirely pad_id"),
    "E802": ("empty-train-set", "a train set has no examples"),
    "W803": ("empty-test-set", "a test set has no examples"),
    "W804": ("labels-equal-inputs", "every label row of a set equals its input row"),
    "W805": ("all-ignore-label", "a label row is entirely ignore_label_id, so it contributes nothing to the loss"),
    # deep
    "W901": ("deep-check-skipped", "--deep was asked for but the builder's check could not run"),
    "E902": ("deep-check-failed", "the builder's check raised an exception"),
}

CAP = 5                     # findings of one kind per file before "... and N more"
CHUNK_BYTES = 8 << 20       # rows per chunk are sized so one chunk is about this many bytes
PROGRESS_MIN_ROWS = 200_000


class NotADataset(Exception):
    """PATH does not exist or is not a dataset at all (the CLI's exit code 2)."""


@dataclass
class Finding:
    """One thing wrong with a dataset. Builders' ``check`` hooks return these too::

        Finding("B101", "error", split="train", set="all", file="all__labels.npy", index=17,
                message="route is not connected; rebuild with --seed ...")
    """

    code: str
    severity: str
    split: str | None = None
    set: str | None = None
    file: str | None = None
    index: int | None = None
    message: str = ""

    def __post_init__(self) -> None:
        if self.severity not in (ERROR, WARNING):
            raise ValueError(f"severity must be 'error' or 'warning', got {self.severity!r}")
        if self.index is not None:
            self.index = int(self.index)

    @property
    def location(self) -> str:
        if self.split is None and self.file is None:
            where = self.set or "dataset"
        elif self.file is not None:
            where = f"{self.split}/{self.file}" if self.split else self.file
        else:
            where = f"{self.split}/{self.set}" if self.set else str(self.split)
        return where if self.index is None else f"{where}[{self.index}]"

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "split": self.split, "set": self.set,
                "file": self.file, "index": self.index, "message": self.message}

    def format(self) -> str:
        return f"{self.severity} {self.code} {self.location}: {self.message}"


@dataclass
class Report:
    path: str
    findings: list[Finding] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)   # code -> occurrences (capped ones included)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def valid(self) -> bool:
        return not self.errors

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.valid, "errors": [f.to_dict() for f in self.errors],
                "warnings": [f.to_dict() for f in self.warnings], "stats": self.stats}

    def _totals(self) -> tuple[int, int]:
        # validator codes: every occurrence (capped ones included); builder codes: one per finding
        err = sum(n for c, n in self.counts.items() if c in CODES and _severity(c) == ERROR)
        warn = sum(n for c, n in self.counts.items() if c in CODES and _severity(c) == WARNING)
        err += sum(1 for f in self.errors if f.code not in CODES)
        warn += sum(1 for f in self.warnings if f.code not in CODES)
        return err, warn

    def format_text(self) -> str:
        lines = [f.format() for f in self.findings]
        if lines:
            lines.append("")
        s = self.stats
        for name, sp in s.get("splits", {}).items():
            lines.append(f"{name}: {_plural(sp['examples'], 'example')}, {_plural(sp['puzzles'], 'puzzle')}, "
                         f"{_plural(sp['groups'], 'group')}"
                         f" (sets: {', '.join(sp['sets']) or 'none'})")
        if s.get("vocab_size") is not None:
            lines.append(f"vocab_size {s['vocab_size']}, seq_len {s['seq_len']}, "
                         f"{s.get('num_puzzle_identifiers')} puzzle identifiers, checked in {s.get('seconds', 0):.1f} s")
        err, warn = self._totals()
        verdict = "valid" if self.valid else "INVALID"
        lines.append(f"{verdict}: {_plural(err, 'error')}, {_plural(warn, 'warning')} ({self.path})")
        return "\n".join(lines)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def _severity(code: str) -> str:
    return WARNING if code.startswith("W") else ERROR


# ----------------------------------------------------------------------------- hashing

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)
_S27, _S29, _S30, _S31 = (np.uint64(k) for k in (27, 29, 30, 31))


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, in place on a uint64 array."""
    h ^= h >> _S30
    h *= _M2
    h ^= h >> _S27
    h *= _M3
    h ^= h >> _S31
    return h


def row_hash(rows: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
    """64-bit hash of each row's values (as ``dtype``), (n,) uint64. Equal rows hash equal."""
    c = np.ascontiguousarray(rows, dtype=dtype)
    n = c.shape[0]
    b = c.view(np.uint8).reshape(n, -1)
    nb = b.shape[1]
    if nb % 8 or nb == 0:
        buf = np.zeros((n, nb + 8 - nb % 8), np.uint8)
        buf[:, :nb] = b
        b = buf
    words = b.view(np.uint64)
    h = np.full(n, nb, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            h ^= words[:, j]
            h *= _M1
            h ^= h >> _S29
        return _mix(h)


def _combine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return _mix(a * _M2 ^ b)


# ----------------------------------------------------------------------------- helpers

def _rel(e: Exception, root: Path) -> str:
    """An error message with the dataset root left out (the finding's location names the file)."""
    msg = str(e)
    for prefix in (f"{root}{os.sep}", f"{root}"):
        if msg.startswith(prefix):
            return msg[len(prefix):].lstrip(":" + os.sep + " ") or msg
    return msg


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _read_bytes(p: Path) -> bytes:
    with safe_io.open_regular(p) as f:
        data = f.read(safe_io.MAX_JSON_BYTES + 1)
    if len(data) > safe_io.MAX_JSON_BYTES:
        raise FormatError(f"{p}: larger than {safe_io.MAX_JSON_BYTES >> 20} MiB; not a dataset metadata file",
                          code="E102")
    return data


def _side_table_type_problem(schema) -> str | None:
    """examples.parquet's key columns must be scalars: integer examples, string or integer keys."""
    import pyarrow as pa
    for col, ok, want in (("example", pa.types.is_integer, "integers"),
                          ("group_key", lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
                           or pa.types.is_integer(t) or pa.types.is_null(t), "strings (or integers)")):
        if col in schema.names:
            t = schema.field(col).type
            if not ok(t):
                return f"column {col!r} has type {t}; it must hold {want}"
    return None


def _is_int_dtype(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.integer) and dtype != np.bool_


@dataclass
class _SetState:
    name: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    rows_ok: bool = False         # inputs and labels readable, integer, 2-D and same shape
    pindex_ok: bool = False       # puzzle_identifiers / puzzle_indices usable to map examples -> identifier
    gindex_ok: bool = False       # group_indices usable
    N: int = 0
    P: int = 0
    G: int = 0
    hi: np.ndarray | None = None  # input row hashes
    hl: np.ndarray | None = None  # label row hashes
    pid: np.ndarray | None = None  # identifier of every example


@dataclass
class _SplitState:
    name: str
    meta: Metadata | None = None
    sets: list[_SetState] = field(default_factory=list)
    wp: Any = None                # sorted well-posedness keys, reused by the cross-split check
    has_total_puzzles: bool = False


class _Validator:
    def __init__(self, root: Path, deep: bool, progress: bool):
        self.root, self.deep, self.progress = root, deep, progress
        self.report = Report(str(root))
        self.identifiers: list | None = None
        self.splits: dict[str, _SplitState] = {}
        self.bar = None

    # ---- recording
    def add(self, code: str, message: str, split: str | None = None, set: str | None = None,
            file: str | None = None, index: int | None = None, count: int = 1) -> None:
        self.report.findings.append(Finding(code, _severity(code), split, set, file, index, message))
        self.report.counts[code] = self.report.counts.get(code, 0) + count

    def add_rows(self, code: str, rows: np.ndarray, message, split: str, set: str | None, file: str | None,
                 what: str = "rows") -> None:
        """Findings for offending rows: the first CAP individually, then one '... and N more'."""
        rows = np.asarray(rows)
        total = int(rows.shape[0])
        if not total:
            return
        for r in rows[:CAP]:
            self.add(code, message(int(r)), split, set, file, int(r))
        if total > CAP:
            self.add(code, f"... and {total - CAP:,} more {what} like this ({total:,} in all)", split, set, file,
                     None, count=0)
        self.report.counts[code] += total - min(total, CAP)

    # ---- driver
    def run(self) -> Report:
        t0 = time.perf_counter()
        self.check_identifiers()
        for name in SPLITS:
            self.splits[name] = self.load_split(name)
        self.check_split_agreement()
        total_rows = sum(s.N for sp in self.splits.values() for s in sp.sets if s.rows_ok)
        if self.progress and total_rows >= PROGRESS_MIN_ROWS:
            from tqdm import tqdm
            self.bar = tqdm(total=total_rows, desc="validate", unit="row", unit_scale=True, file=sys.stderr,
                            leave=False)
        dtype = self.hash_dtype()
        for sp in self.splits.values():
            for s in sp.sets:
                if s.rows_ok:
                    self.scan_rows(sp, s, dtype)
            self.check_well_posed(sp)
        if self.bar is not None:
            self.bar.close()
        self.check_leakage()
        self.check_symmetric_leakage()
        self.check_group_keys()
        if self.deep:
            self.run_deep()
        self.report.stats = self.stats(time.perf_counter() - t0)
        return self.report

    def stats(self, seconds: float) -> dict[str, Any]:
        st: dict[str, Any] = {"splits": {}}
        meta = None
        for name, sp in self.splits.items():
            if sp.meta is None:
                continue
            meta = meta or sp.meta
            st["splits"][name] = {
                "examples": sum(s.N for s in sp.sets), "puzzles": sum(s.P for s in sp.sets),
                "groups": sum(s.G for s in sp.sets), "sets": [s.name for s in sp.sets],
            }
        st["vocab_size"] = meta.vocab_size if meta else None
        st["seq_len"] = meta.seq_len if meta else None
        st["num_puzzle_identifiers"] = meta.num_puzzle_identifiers if meta else None
        st["identifiers"] = len(self.identifiers) if self.identifiers is not None else None
        st["finding_counts"] = dict(sorted(self.report.counts.items()))
        st["seconds"] = round(seconds, 3)
        return st

    # ---- storage hooks: npy files here; storage_zarr.ZarrValidator reads a Zarr store instead
    # (they raise FormatError with a code for a directory, FIFO, loop or unreadable file)
    def read_identifiers_text(self) -> bytes | None:
        p = self.root / "identifiers.json"
        return _read_bytes(p) if os.path.lexists(p) else None

    def read_split_text(self, name: str) -> tuple[bytes | None, bool]:
        """(dataset.json bytes or None, whether the split folder exists)."""
        mp, sd = self.root / name / "dataset.json", self.root / name
        if os.path.isdir(sd) and not os.access(sd, os.R_OK | os.X_OK):
            raise FormatError(f"the {name}/ folder cannot be read: permission denied; make it readable (chmod a+rx) "
                              "or run as its owner", code="E114")
        return (_read_bytes(mp) if os.path.lexists(mp) else None), os.path.isdir(sd)

    def side_table_source(self, name: str):
        p = self.root / name / SIDE_TABLE
        return p if os.path.lexists(p) else None

    def open_dataset(self):
        from .format import Dataset
        return Dataset(self.root)

    # ---- layout
    def check_identifiers(self) -> None:
        f = "identifiers.json"
        try:
            text = self.read_identifiers_text()
            ids = None if text is None else safe_io.loads_json(text, "identifiers.json")
        except FormatError as e:
            code = e.code if e.code in ("E113", "E114") else "E107"
            self.add(code, f"{_rel(e, self.root)}; rebuild the dataset or rewrite it as a JSON list of names", file=f)
            return
        if text is None:
            self.add("E107", "identifiers.json is missing; write a JSON list of puzzle identifier names with "
                             "\"<blank>\" at index 0 (rebuild the dataset)", file=f)
            return
        if not isinstance(ids, list):
            self.add("E107", f"identifiers.json holds a {type(ids).__name__}, not a JSON list of names; rewrite it "
                             "as a list with \"<blank>\" at index 0", file=f)
            return
        bad = [k for k, i in enumerate(ids) if not isinstance(i, str)]
        if bad:
            self.add("E107", f"entry {bad[0]} is {_short(ids[bad[0]])} ({_plural(len(bad), 'entry')} not a string); every "
                             "entry must be an identifier name: rebuild the dataset", file=f, index=bad[0])
        self.identifiers = ids
        if not ids or ids[0] != BLANK_IDENTIFIER:
            got = repr(ids[0]) if ids else "nothing (empty list)"
            self.add("W108", f"index 0 is {got}, not \"<blank>\"; HRM reserves identifier 0 for padding, so put "
                             "\"<blank>\" first and shift the other ids by one", file=f, index=0)

    def load_split(self, name: str) -> _SplitState:
        sp = _SplitState(name)
        try:
            text, folder = self.read_split_text(name)
        except FormatError as e:
            self.add(e.code if e.code in CODES else "E102", _rel(e, self.root), split=name, file="dataset.json")
            return sp
        if text is None:
            what = "folder" if not folder else "dataset.json"
            self.add("E101", f"the {name}/ {what} is missing; HRM's loader needs both train/ and test/ "
                             f"(rebuild the dataset)", split=name, file="dataset.json")
            return sp
        try:
            raw = safe_io.loads_json(text, f"{name}/dataset.json")
            sp.meta = Metadata.from_dict(raw, f"{name}/dataset.json")
        except FormatError as e:
            self.add(e.code if e.code in CODES else "E102", _rel(e, self.root), split=name, file="dataset.json")
            return sp
        m = sp.meta
        tp = raw.get("total_puzzles")
        sp.has_total_puzzles = "total_puzzles" in raw
        if sp.has_total_puzzles and (isinstance(tp, bool) or not isinstance(tp, int)):
            # Metadata.from_dict drops a mistyped total_puzzles silently; it must not pass as "missing"
            self.add("E102", f"{name}/dataset.json: field 'total_puzzles' is {tp!r}; it must be int (the number of "
                             "puzzles) or be left out", split=name, file="dataset.json")
        if not m.sets or len(set(m.sets)) != len(m.sets):
            self.add("E109", f"sets is {m.sets!r}; it must name each set (usually [\"all\"]) exactly once",
                     split=name, file="dataset.json")
        self.check_metadata_values(sp)
        for set_name in dict.fromkeys(m.sets):
            s = _SetState(set_name)
            sp.sets.append(s)
            self.load_set(sp, s)
        self.check_metadata_consistency(sp)
        return sp

    def check_metadata_values(self, sp: _SplitState) -> None:
        m, n = sp.meta, sp.name
        probs = []
        if m.vocab_size < 1:
            probs.append(f"vocab_size is {m.vocab_size}; it must be at least 1")
        elif not 0 <= m.pad_id < m.vocab_size:
            probs.append(f"pad_id {m.pad_id} is outside [0, vocab_size={m.vocab_size})")
        if m.seq_len < 1:
            probs.append(f"seq_len is {m.seq_len}; it must be at least 1")
        if m.num_puzzle_identifiers < 1:
            probs.append(f"num_puzzle_identifiers is {m.num_puzzle_identifiers}; it must be at least 1 (\"<blank>\")")
        elif not 0 <= m.blank_identifier_id < m.num_puzzle_identifiers:
            probs.append(f"blank_identifier_id {m.blank_identifier_id} is outside "
                         f"[0, num_puzzle_identifiers={m.num_puzzle_identifiers})")
        if m.total_groups < 0:
            probs.append(f"total_groups is {m.total_groups}; it cannot be negative")
        if not math.isfinite(m.mean_puzzle_examples) or m.mean_puzzle_examples < 0:
            probs.append(f"mean_puzzle_examples is {m.mean_puzzle_examples}; it must be a finite number >= 0")
        for p in probs:
            self.add("E508", p + "; fix dataset.json or rebuild the dataset", split=n, file="dataset.json")

    def load_set(self, sp: _SplitState, s: _SetState) -> None:
        ok: dict[str, bool] = {}
        for f in FIELDS:
            fname = f"{s.name}__{f}.npy"
            ok[f] = False
            loc = dict(split=sp.name, set=s.name, file=fname)
            arr = self.open_array(sp, s, f, loc)
            if arr is None:
                continue
            s.arrays[f] = arr
            ok[f] = True
        self.check_shapes(sp, s, ok)
        self.check_indices(sp, s)

    def dtype_ok(self, dtype: np.dtype, f: str, loc: dict) -> bool:
        if dtype.hasobject or not _is_int_dtype(dtype):
            self.add("E201", f"dtype is {dtype}; HRM needs integers (uint8/uint16/int32/int64): rebuild with "
                             "an integer dtype (e.g. arr.astype(np.int32))", **loc)
            return False
        if dtype == np.uint64 and f in ("puzzle_indices", "group_indices", "puzzle_identifiers"):
            # numpy promotes uint64 with int64 to float64, and HRM's sampler then indexes with floats
            self.add("E201", "dtype is uint64; index arrays used in arithmetic must be signed: rebuild with "
                             "arr.astype(np.int32)", **loc)
            return False
        return True

    def open_array(self, sp: _SplitState, s: _SetState, f: str, loc: dict):
        """One array of a set, or None after adding the finding that says why it cannot be read."""
        path = self.root / sp.name / loc["file"]
        if not os.path.lexists(path):
            self.add("E103", f"missing; every set needs all five arrays ({', '.join(FIELDS)}); rebuild the "
                             "dataset or copy the file", **loc)
            return None
        try:
            shape, fortran, dtype, offset, size = safe_io.read_npy_header(path)
        except FormatError as e:
            self.add(e.code if e.code in CODES else "E104", _rel(e, self.root), **loc)
            return None
        if not self.dtype_ok(dtype, f, loc):
            return None
        want = offset + int(np.prod(shape, dtype=object)) * dtype.itemsize
        if size < want:
            self.add("E105", f"truncated: the file is {size:,} bytes but its header (shape {shape}, {dtype}) "
                             f"needs {want:,}; the write or copy was interrupted, rebuild or re-copy it", **loc)
            return None
        if size > want:
            self.add("E106", f"{size - want:,} bytes past the end its header (shape {shape}, {dtype}) "
                             "describes: an unfinished or appended write; rebuild the dataset", **loc)
            return None
        try:
            arr = safe_io.open_npy(path, mmap=f in ("inputs", "labels"))
        except FormatError as e:
            self.add(e.code if e.code in CODES else "E104", _rel(e, self.root), **loc)
            return None
        except (ValueError, OSError, EOFError) as e:
            self.add("E104", f"cannot be opened ({e}); it is corrupt, rebuild the dataset", **loc)
            return None
        return arr

    # ---- shapes
    def check_shapes(self, sp: _SplitState, s: _SetState, ok: dict[str, bool]) -> None:
        a, n, m = s.arrays, sp.name, sp.meta
        loc = lambda f: dict(split=n, set=s.name, file=f"{s.name}__{f}.npy")  # noqa: E731
        rows_ok = ok["inputs"] and ok["labels"]
        for f in ("inputs", "labels"):
            if ok[f] and a[f].ndim != 2:
                self.add("E202", f"shape {a[f].shape}; {f} must be 2-D (examples, seq_len={m.seq_len})", **loc(f))
                rows_ok = False
        if rows_ok and a["inputs"].shape != a["labels"].shape:
            self.add("E202", f"labels shape {a['labels'].shape} differs from inputs shape {a['inputs'].shape}; "
                             "every example needs one label row of the same length", **loc("labels"))
            rows_ok = False
        if rows_ok and a["inputs"].shape[1] != m.seq_len:
            self.add("E503", f"rows are {a['inputs'].shape[1]} tokens wide but dataset.json says seq_len="
                             f"{m.seq_len}; fix seq_len or rebuild", **loc("inputs"))
        for f in ("puzzle_identifiers", "puzzle_indices", "group_indices"):
            if ok[f] and a[f].ndim != 1:
                self.add("E202", f"shape {a[f].shape}; {f} must be 1-D", **loc(f))
                ok[f] = False
        s.rows_ok = rows_ok
        s.N = int(a["inputs"].shape[0]) if ok["inputs"] and a["inputs"].ndim >= 1 else 0
        s.P = int(a["puzzle_identifiers"].shape[0]) if ok["puzzle_identifiers"] else 0
        s.G = int(a["group_indices"].shape[0]) - 1 if ok["group_indices"] and a["group_indices"].shape[0] else 0
        if ok["puzzle_identifiers"] and ok["puzzle_indices"] and a["puzzle_indices"].shape[0] != s.P + 1:
            self.add("E203", f"puzzle_indices has {a['puzzle_indices'].shape[0]:,} entries for {s.P:,} puzzles; "
                             "it must have one more (a 0 start, then each puzzle's end row)", **loc("puzzle_indices"))
            ok["puzzle_indices"] = False
        if ok["group_indices"] and a["group_indices"].shape[0] == 0:
            self.add("E203", "group_indices is empty; it must hold at least [0] (then each group's end puzzle)",
                     **loc("group_indices"))
            ok["group_indices"] = False
        self._ok = ok
        s.pindex_ok = ok["puzzle_identifiers"] and ok["puzzle_indices"]
        s.gindex_ok = ok["group_indices"]

    # ---- index structure and identifiers
    def check_indices(self, sp: _SplitState, s: _SetState) -> None:
        a, n, m, ok = s.arrays, sp.name, sp.meta, self._ok
        loc = lambda f: dict(split=n, set=s.name, file=f"{s.name}__{f}.npy")  # noqa: E731
        n_rows = s.N if s.rows_ok else None
        if ok["puzzle_indices"]:
            pi = np.asarray(a["puzzle_indices"]).astype(np.int64)
            if pi[0] != 0 or (n_rows is not None and pi[-1] != n_rows):
                end = f" and end at the number of examples ({n_rows:,})" if n_rows is not None else ""
                self.add("E301", f"starts at {pi[0]:,} and ends at {pi[-1]:,}; it must start at 0{end}; "
                                 "rebuild the dataset", **loc("puzzle_indices"), index=0 if pi[0] != 0 else len(pi) - 1)
                s.pindex_ok = False
            bad = np.flatnonzero(np.diff(pi) <= 0)
            if bad.size:
                i = int(bad[0]) + 1
                self.add("E302", f"puzzle_indices[{i}] = {pi[i]:,} is not greater than [{i - 1}] = {pi[i - 1]:,} "
                                 f"({_plural(bad.size, 'such place')}): puzzle {i - 1} has no examples or the order is broken; "
                                 "drop empty puzzles and rebuild", **loc("puzzle_indices"), index=i)
                s.pindex_ok = False
        if ok["group_indices"]:
            gi = np.asarray(a["group_indices"]).astype(np.int64)
            P = s.P if ok["puzzle_identifiers"] else None
            if gi[0] != 0 or (P is not None and gi[-1] != P):
                end = f" and end at the number of puzzles ({P:,})" if P is not None else ""
                self.add("E303", f"starts at {gi[0]:,} and ends at {gi[-1]:,}; it must start at 0{end}; "
                                 "rebuild the dataset", **loc("group_indices"), index=0 if gi[0] != 0 else len(gi) - 1)
            bad = np.flatnonzero(np.diff(gi) <= 0)
            if bad.size:
                i = int(bad[0]) + 1
                self.add("E304", f"group_indices[{i}] = {gi[i]:,} is not greater than [{i - 1}] = {gi[i - 1]:,} "
                                 f"({_plural(bad.size, 'such place')}): group {i - 1} has no puzzles or the order is broken; "
                                 "drop empty groups and rebuild", **loc("group_indices"), index=i)
        if ok["puzzle_identifiers"] and s.P:
            ids = np.asarray(a["puzzle_identifiers"]).astype(np.int64)
            K = m.num_puzzle_identifiers
            bad = np.flatnonzero((ids < 0) | (ids >= K))
            self.add_rows("E403", bad, lambda r: f"puzzle {r} has identifier {ids[r]}, outside [0, "
                                                 f"num_puzzle_identifiers={K}); its puzzle embedding does not exist: "
                                                 "fix identifiers.json / num_puzzle_identifiers or rebuild",
                          n, s.name, f"{s.name}__puzzle_identifiers.npy", what="puzzles")
            if K > 1:
                blank = np.flatnonzero(ids == m.blank_identifier_id)
                if blank.size:
                    self.add("W404", f"{blank.size:,} of {s.P:,} puzzles use blank_identifier_id "
                                     f"{m.blank_identifier_id}, which HRM also gives the padding rows of a batch: "
                                     "those puzzles share the padding's embedding; give them their own identifier",
                             **loc("puzzle_identifiers"), index=int(blank[0]), count=int(blank.size))
            if s.pindex_ok:
                sizes = np.diff(np.asarray(a["puzzle_indices"]).astype(np.int64))
                s.pid = np.repeat(ids, sizes)

    # ---- metadata consistency
    def check_metadata_consistency(self, sp: _SplitState) -> None:
        m, n = sp.meta, sp.name
        loc = dict(split=n, file="dataset.json")
        if not sp.sets:
            return
        N = sum(s.N for s in sp.sets)
        P = sum(s.P for s in sp.sets)
        G = sum(s.G for s in sp.sets)
        counts_ok = all(s.rows_ok and s.pindex_ok and s.gindex_ok for s in sp.sets)
        if counts_ok and m.total_groups != G:
            self.add("E501", f"total_groups is {m.total_groups:,} but group_indices holds {G:,} groups; HRM sizes "
                             "its epochs and LR schedule from total_groups: set it to len(group_indices) - 1",
                     **loc)
        if counts_ok and P and not math.isclose(m.mean_puzzle_examples, N / P, rel_tol=1e-4, abs_tol=1e-6):
            want = N / P
            ratio = m.mean_puzzle_examples / want
            msg = (f"mean_puzzle_examples is {m.mean_puzzle_examples:g} but the arrays hold {N:,} examples in "
                   f"{P:,} puzzles ({want:.6g} per puzzle). HRM's LR schedule is epochs * total_groups * "
                   f"mean_puzzle_examples / global_batch_size steps long, so training would run "
                   f"{ratio:.3g}x {'too long' if ratio > 1 else 'too short'}")
            if G and math.isclose(m.mean_puzzle_examples, N / G, rel_tol=1e-4):
                msg += " (the value is examples per GROUP; it must be examples per PUZZLE)"
            self.add("E502", msg + f": set it to {want:.6g} (examples / puzzles)", **loc)
        if counts_ok and m.total_puzzles is not None and m.total_puzzles != P:
            self.add("E505", f"total_puzzles is {m.total_puzzles:,} but puzzle_identifiers holds {P:,} puzzles; "
                             "set it to len(puzzle_identifiers)", **loc)
        if not sp.has_total_puzzles:
            self.add("W506", "no total_puzzles field; HRM does not need it but TinyRecursiveModels' loader does: "
                             f"add \"total_puzzles\": {P}" + ("" if counts_ok else " (the number of puzzles)"), **loc)
        if self.identifiers is not None and m.num_puzzle_identifiers != len(self.identifiers):
            self.add("E504", f"num_puzzle_identifiers is {m.num_puzzle_identifiers:,} but identifiers.json lists "
                             f"{len(self.identifiers):,} names; HRM sizes the puzzle embedding table from "
                             "num_puzzle_identifiers: make them agree", **loc)
        for s in sp.sets:
            if s.rows_ok and s.N == 0:
                if n == "train":
                    self.add("E802", "the set has no examples: there is nothing to train on; rebuild with more data",
                             split=n, set=s.name, file=f"{s.name}__inputs.npy")
                else:
                    self.add("W803", "the set has no examples: evaluation will measure nothing; rebuild with a "
                                     "test split", split=n, set=s.name, file=f"{s.name}__inputs.npy")

    def check_split_agreement(self) -> None:
        tr, te = self.splits["train"].meta, self.splits["test"].meta
        if tr is None or te is None:
            return
        for k in ("vocab_size", "seq_len", "pad_id", "ignore_label_id", "blank_identifier_id",
                  "num_puzzle_identifiers"):
            if getattr(tr, k) != getattr(te, k):
                self.add("E507", f"{k} is {getattr(te, k)!r} here but {getattr(tr, k)!r} in train/dataset.json; "
                                 "HRM builds one model for both splits: rebuild so they agree",
                         split="test", file="dataset.json")

    # ---- row scans
    def hash_dtype(self) -> np.dtype:
        dts = [s.arrays[f].dtype for sp in self.splits.values() for s in sp.sets if s.rows_ok
               for f in ("inputs", "labels")]
        if not dts:
            return np.dtype(np.int64)
        dt = np.result_type(*dts)
        if not np.issubdtype(dt, np.integer):
            dt = np.dtype(np.int64)
        return dt.newbyteorder("=")

    def scan_rows(self, sp: _SplitState, s: _SetState, dtype: np.dtype) -> None:
        m, n = sp.meta, sp.name
        X, Y = s.arrays["inputs"], s.arrays["labels"]
        N, S = X.shape
        V, pad, ign = m.vocab_size, m.pad_id, m.ignore_label_id
        fin, flab = f"{s.name}__inputs.npy", f"{s.name}__labels.npy"
        s.hi = np.empty(N, np.uint64)
        s.hl = np.empty(N, np.uint64)
        itemsize = max(X.dtype.itemsize, Y.dtype.itemsize, dtype.itemsize)
        step = max(1024, CHUNK_BYTES // max(1, S * itemsize))
        bad_in: list[np.ndarray] = []
        bad_lab: list[np.ndarray] = []
        all_pad: list[np.ndarray] = []
        all_ign: list[np.ndarray] = []
        n_bad_in = n_bad_lab = n_pad = n_ign = 0
        labels_eq_inputs = N > 0
        ign_in_range = ign is not None and 0 <= ign < V
        for lo in range(0, N, step):
            hi_ = min(N, lo + step)
            x = np.asarray(X[lo:hi_])
            y = np.asarray(Y[lo:hi_])
            if S:
                if int(x.max()) >= V or int(x.min()) < 0:
                    rows = np.flatnonzero(((x < 0) | (x >= V)).any(axis=1)) + lo
                    n_bad_in += rows.size
                    if sum(map(len, bad_in)) < CAP:
                        bad_in.append(rows[:CAP])
                if int(y.max()) >= V or int(y.min()) < 0:
                    mask = (y < 0) | (y >= V)
                    if ign is not None and not ign_in_range:
                        mask &= y != ign
                    rows = np.flatnonzero(mask.any(axis=1)) + lo
                    n_bad_lab += rows.size
                    if rows.size and sum(map(len, bad_lab)) < CAP:
                        bad_lab.append(rows[:CAP])
                rows = np.flatnonzero((x == pad).all(axis=1)) + lo
                if rows.size:
                    n_pad += rows.size
                    if sum(map(len, all_pad)) < CAP:
                        all_pad.append(rows[:CAP])
                if ign is not None:
                    rows = np.flatnonzero((y == ign).all(axis=1)) + lo
                    if rows.size:
                        n_ign += rows.size
                        if sum(map(len, all_ign)) < CAP:
                            all_ign.append(rows[:CAP])
            if labels_eq_inputs and not np.array_equal(x, y):
                labels_eq_inputs = False
            s.hi[lo:hi_] = row_hash(x, dtype)
            s.hl[lo:hi_] = row_hash(y, dtype)
            if self.bar is not None:
                self.bar.update(hi_ - lo)

        def emit(code, parts, total, msg, file):
            rows = np.concatenate(parts)[:CAP] if parts else np.zeros(0, np.int64)
            for r in rows:
                self.add(code, msg(int(r)), n, s.name, file, int(r))
            if total > CAP:
                self.add(code, f"... and {total - CAP:,} more rows like this ({total:,} in all)", n, s.name, file,
                         None, count=0)
            if total:
                self.report.counts[code] += total - rows.size

        def bad_token(arr, r, allowed):
            row = np.asarray(arr[r]).astype(np.int64)
            cols = np.flatnonzero(~allowed(row))
            c = int(cols[0]) if cols.size else 0
            return f"token {row[c]} at position {c} is outside [0, vocab_size={V})"

        emit("E401", bad_in, n_bad_in,
             lambda r: bad_token(X, r, lambda v: (v >= 0) & (v < V)) + "; fix vocab_size or the builder's tokeniser",
             fin)
        label_ok = (lambda v: ((v >= 0) & (v < V)) | (v == ign)) if ign is not None else (lambda v: (v >= 0) & (v < V))
        emit("E402", bad_lab, n_bad_lab,
             lambda r: bad_token(Y, r, label_ok) + f" and is not ignore_label_id ({ign}); fix vocab_size, "
                                                   "ignore_label_id or the builder", flab)
        emit("W801", all_pad, n_pad, lambda r: f"the input is all pad_id ({pad}): the model sees nothing; "
                                               "drop the example or fix the builder", fin)
        emit("W805", all_ign, n_ign, lambda r: f"every label is ignore_label_id ({ign}): the example adds nothing "
                                               "to the loss; drop it or fix the builder", flab)
        if labels_eq_inputs:
            self.add("W804", f"every label row equals its input row ({N:,} examples): the task is the identity; "
                             "labels were probably written from the inputs by mistake", n, s.name, flab)

    # ---- row fetch helpers (for confirming hash candidates)
    @staticmethod
    def _offsets(sets: list[_SetState]) -> np.ndarray:
        return np.concatenate([[0], np.cumsum([s.N for s in sets])]).astype(np.int64)

    @staticmethod
    def _fetch(sets: list[_SetState], offsets: np.ndarray, idx: np.ndarray, f: str) -> np.ndarray:
        """Rows ``idx`` (global over ``sets``) of field f, as int64."""
        out = np.empty((idx.size, sets[0].arrays[f].shape[1]), np.int64) if sets else np.empty((0, 0), np.int64)
        which = np.searchsorted(offsets, idx, side="right") - 1
        for k, s in enumerate(sets):
            sel = np.flatnonzero(which == k)
            if not sel.size:
                continue
            local = idx[sel] - offsets[k]
            order = np.argsort(local, kind="stable")
            rows = np.asarray(s.arrays[f][local[order]]).astype(np.int64)
            out[sel[order]] = rows
        return out

    def _locate(self, sets, offsets, g: int) -> tuple[str, int]:
        k = int(np.searchsorted(offsets, g, side="right") - 1)
        return sets[k].name, int(g - offsets[k])

    def _rows_equal(self, sets_a, off_a, ia, sets_b, off_b, ib, fields, block=1 << 14) -> np.ndarray:
        eq = np.ones(ia.size, bool)
        if sets_a and sets_b and sets_a[0].arrays["inputs"].shape[1] != sets_b[0].arrays["inputs"].shape[1]:
            return ~eq
        for lo in range(0, ia.size, block):
            sl = slice(lo, lo + block)
            for f in fields:
                eq[sl] &= (self._fetch(sets_a, off_a, ia[sl], f) == self._fetch(sets_b, off_b, ib[sl], f)).all(axis=1)
        return eq

    # ---- well-posedness within a split
    def _wp_sets(self, sp: _SplitState) -> list[_SetState]:
        return [s for s in sp.sets if s.rows_ok and s.hi is not None and s.pid is not None and s.N]

    def _keys(self, sets: list[_SetState]) -> tuple[np.ndarray, np.ndarray]:
        hi = np.concatenate([s.hi for s in sets])
        pid = np.concatenate([s.pid for s in sets]).astype(np.uint64)
        hl = np.concatenate([s.hl for s in sets])
        with np.errstate(over="ignore"):
            k = _combine(hi, _mix(pid + _M3))
        return k, hl

    def check_well_posed(self, sp: _SplitState) -> None:
        sets = self._wp_sets(sp)
        if not sets:
            return
        off = self._offsets(sets)
        k, hl = self._keys(sets)
        order = np.argsort(k, kind="stable")
        ks, hls = k[order], hl[order]
        new_run = np.ones(ks.size, bool)
        new_run[1:] = ks[1:] != ks[:-1]
        start = np.maximum.accumulate(np.where(new_run, np.arange(ks.size), 0))
        cand = np.flatnonzero(hls != hls[start])
        sp.wp = (sets, off, ks, hls, order, start)
        if not cand.size:
            return
        a, b = order[start[cand]], order[cand]
        pid = np.concatenate([s.pid for s in sets])
        ok = pid[a] == pid[b]
        ok[ok] = self._rows_equal(sets, off, a[ok], sets, off, b[ok], ("inputs",))
        a, b = a[ok], b[ok]
        srt = np.argsort(b, kind="stable")
        a, b = a[srt], b[srt]
        total = int(b.size)
        for i in range(min(total, CAP)):
            set_b, rb = self._locate(sets, off, int(b[i]))
            set_a, ra = self._locate(sets, off, int(a[i]))
            self.add("E701", f"same input and puzzle identifier ({int(pid[b[i]])}) as {sp.name}/{set_a} row {ra} but "
                             "a different label: the target is not a function of what the model sees; drop one, or "
                             "give them different identifiers", sp.name, set_b, f"{set_b}__labels.npy", rb)
        if total > CAP:
            self.add("E701", f"... and {total - CAP:,} more rows like this ({total:,} in all)", sp.name, None, None,
                     None, count=0)
        if total:
            self.report.counts["E701"] += total - min(total, CAP)

    # ---- leakage and well-posedness across splits
    def check_leakage(self) -> None:
        tr, te = self.splits["train"], self.splits["test"]
        trs = [s for s in tr.sets if s.rows_ok and s.hi is not None and s.N]
        tes = [s for s in te.sets if s.rows_ok and s.hi is not None and s.N]
        if not trs or not tes:
            return
        off_tr, off_te = self._offsets(trs), self._offsets(tes)
        p_tr = _combine(np.concatenate([s.hi for s in trs]), np.concatenate([s.hl for s in trs]))
        p_te = _combine(np.concatenate([s.hi for s in tes]), np.concatenate([s.hl for s in tes]))
        order = np.argsort(p_tr, kind="stable")
        ps = p_tr[order]
        pos = np.minimum(np.searchsorted(ps, p_te), ps.size - 1)
        cand = np.flatnonzero(ps[pos] == p_te)
        if cand.size:
            j = order[pos[cand]]
            ok = self._rows_equal(tes, off_te, cand, trs, off_tr, j, ("inputs", "labels"))
            cand, j = cand[ok], j[ok]
            self._emit_pairs("E601", cand, j, tes, off_te, trs, off_tr, "labels",
                             lambda st, r: f"this test example (input and label) is also train/{st} row {r}: the test "
                                           "score measures memorisation; remove it from one split (split by group "
                                           "before augmenting)")
        # ill-posed across splits
        wtr, wte = tr.wp, self._wp_sets(te)
        if wtr is None or not wte:
            return
        sets, off, ks, hls, order, start = wtr
        k_te, hl_te = self._keys(wte)
        off_w = self._offsets(wte)
        pos = np.minimum(np.searchsorted(ks, k_te), ks.size - 1)
        cand = np.flatnonzero((ks[pos] == k_te) & (hls[pos] != hl_te))
        if not cand.size:
            return
        j = order[pos[cand]]
        pid_te = np.concatenate([s.pid for s in wte])
        pid_tr = np.concatenate([s.pid for s in sets])
        ok = pid_te[cand] == pid_tr[j]
        ok[ok] = self._rows_equal(wte, off_w, cand[ok], sets, off, j[ok], ("inputs",))
        self._emit_pairs("E702", cand[ok], j[ok], wte, off_w, sets, off, "labels",
                         lambda st, r: f"same input and puzzle identifier as train/{st} row {r} but a different "
                                       "label: the target is not a function of what the model sees; fix the labels "
                                       "or give the puzzles different identifiers")

    def check_symmetric_leakage(self) -> None:
        """E603, for datasets in HRM's ARC encoding (vocab 12, 30 x 30): see grid_symmetry."""
        from .grid_symmetry import is_arc_layout, symmetric_leaks
        tr, te = self.splits["train"], self.splits["test"]
        if tr.meta is None or not is_arc_layout(tr.meta.vocab_size, tr.meta.seq_len):
            return
        trs = [s for s in tr.sets if s.rows_ok and s.N]
        tes = [s for s in te.sets if s.rows_ok and s.N]
        if not trs or not tes:
            return
        pairs = symmetric_leaks([(s.arrays["inputs"], s.arrays["labels"]) for s in trs],
                                [(s.arrays["inputs"], s.arrays["labels"]) for s in tes])
        if not pairs:
            return
        te_idx, tr_idx = (np.array(v, np.int64) for v in zip(*pairs))
        self._emit_pairs("E603", te_idx, tr_idx, tes, self._offsets(tes), trs, self._offsets(trs), "labels",
                         lambda st, r: f"this test pair is train/{st} row {r} rotated, reflected, recoloured or "
                                       "translated: augmented training has seen it; drop the train puzzle (hrm-data "
                                       "build arc --leaks drop) or move the pair")

    def _emit_pairs(self, code, te_idx, tr_idx, tes, off_te, trs, off_tr, field_, msg) -> None:
        total = int(te_idx.size)
        for i in range(min(total, CAP)):
            set_te, r_te = self._locate(tes, off_te, int(te_idx[i]))
            set_tr, r_tr = self._locate(trs, off_tr, int(tr_idx[i]))
            self.add(code, msg(set_tr, r_tr), "test", set_te, f"{set_te}__{field_}.npy", r_te)
        if total > CAP:
            self.add(code, f"... and {total - CAP:,} more test rows like this ({total:,} in all)", "test", None, None,
                     None, count=0)
        if total:
            self.report.counts[code] += total - min(total, CAP)

    # ---- side-table group keys
    def check_group_keys(self) -> None:
        keys: dict[str, Any] = {}
        for name, sp in self.splits.items():
            p = self.side_table_source(name)
            if p is None or sp.meta is None:
                continue
            try:
                import io

                import pyarrow.parquet as pq
                # bytes from a Zarr store, else a checked file object (pyarrow cannot open non-UTF-8 paths)
                with (io.BytesIO(p) if isinstance(p, bytes) else safe_io.open_regular(p)) as fh:
                    pf = pq.ParquetFile(fh)
                    schema = pf.schema_arrow
                    bad = _side_table_type_problem(schema)
                    if bad:
                        self.add("W603", f"{bad}; group-key leakage was not checked: rebuild the dataset",
                                 split=name, file=SIDE_TABLE)
                        continue
                    cols = [c for c in ("example", "group_key") if c in schema.names]
                    table = pf.read(columns=cols).to_pandas() if cols else None
                    nrows = pf.metadata.num_rows
            except Exception as e:  # noqa: BLE001
                self.add("W603", f"unreadable ({_rel(e, self.root)}); group-key leakage was not checked: rebuild "
                                 "the dataset", split=name, file=SIDE_TABLE)
                continue
            N = sum(s.N for s in sp.sets)
            if nrows != N:
                self.add("W603", f"{nrows:,} rows for {N:,} examples; it must have one row per example: rebuild "
                                 "the dataset", split=name, file=SIDE_TABLE)
            if table is not None and "group_key" in table:
                gk = table["group_key"]
                ex = table["example"] if "example" in table else table.index.to_series()
                keys[name] = (gk, ex)
        if len(keys) < 2:
            return
        (gk_tr, _), (gk_te, ex_te) = keys["train"], keys["test"]
        train_keys = set(gk_tr.dropna().unique())
        hit = gk_te.notna() & gk_te.isin(train_keys)
        if not hit.any():
            return
        df = ex_te[hit].to_frame("example").assign(key=gk_te[hit].values).drop_duplicates("key")
        total = len(df)
        for ex, key in list(zip(df["example"], df["key"]))[:CAP]:
            self.add("E602", f"group_key {key!r} is in both train and test: variants of one base example leak "
                             "into the test split; assign whole groups to one split before augmenting", "test",
                     None, SIDE_TABLE, int(ex))
        if total > CAP:
            self.add("E602", f"... and {total - CAP:,} more shared keys ({total:,} in all)", "test", None, SIDE_TABLE,
                     None, count=0)
        self.report.counts["E602"] += total - min(total, CAP)

    # ---- deep
    def run_deep(self) -> None:
        sp = self.splits["train"]
        if sp.meta is None:
            self.add("W901", "deep checks skipped: train/dataset.json is missing or unreadable")
            return
        prov = sp.meta.provenance
        name = prov.get("builder")
        if not name:
            self.add("W901", f"deep checks skipped: train/dataset.json has no \"{PROVENANCE_KEY}\": {{\"builder\": "
                             "...} naming the builder that made it", split="train", file="dataset.json")
            return
        from . import registry
        try:
            builder = registry.get(name)
        except Exception as e:  # noqa: BLE001  (unknown name or a plugin that fails to import)
            why = e.args[0] if isinstance(e, KeyError) and e.args else e
            self.add("W901", f"deep checks skipped: builder {name!r} is not available ({why}); install the package "
                             "that provides it", split="train", file="dataset.json")
            return
        if getattr(builder, "check", None) is None:
            self.add("W901", f"deep checks skipped: builder {name!r} defines no check", split="train",
                     file="dataset.json")
            return
        structural = [f for f in self.report.errors if f.code[1] in "123"]
        if structural:
            self.add("W901", f"deep checks skipped: the dataset has {len(structural)} layout/shape/index errors; "
                             "fix those first")
            return
        try:
            found = builder.check(self.open_dataset()) or []
        except Exception as e:  # noqa: BLE001
            self.add("E902", f"builder {name!r} check raised {type(e).__name__}: {e}; the data does not parse as "
                             "the builder's domain (or the check has a bug)")
            return
        for f in found:
            if isinstance(f, dict):
                f = Finding(**f)
            self.report.findings.append(f)
            self.report.counts[f.code] = self.report.counts.get(f.code, 0) + 1


# ----------------------------------------------------------------------------- API

def validate(path, deep: bool = False, progress: bool = False) -> Report:
    """Check the dataset at ``path``; raises NotADataset when it is not one at all."""
    from .format import is_zarr_path
    if is_zarr_path(path):
        from .storage_zarr import validate_zarr
        return validate_zarr(path, deep, progress)
    root = Path(path)
    try:
        st = os.stat(root)
    except OSError as e:
        raise NotADataset(safe_io.describe_os_error(root, e)[0] if e.errno != errno.ENOENT
                          else f"{root}: no such file or directory") from None
    if not stat.S_ISDIR(st.st_mode):
        raise NotADataset(f"{root}: is {safe_io.file_kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else 'a file'}, "
                          "not a directory; a dataset is a folder with identifiers.json, train/ and test/")
    if not os.access(root, os.R_OK | os.X_OK):
        raise NotADataset(f"{root}: permission denied; make the folder readable (chmod a+rx) or run as its owner")
    if not any(os.path.lexists(root / s / "dataset.json") for s in SPLITS) and not os.path.lexists(root / "identifiers.json"):
        raise NotADataset(f"{root}: not an HRM dataset: no train/dataset.json, test/dataset.json or identifiers.json")
    return _Validator(root, deep, progress).run()


def run_cli(path, as_json: bool = False, deep: bool = False, progress: bool = False) -> int:
    import click
    try:
        report = validate(path, deep=deep, progress=progress)
    except NotADataset as e:
        click.echo(f"Error: {e}", err=True)
        return 2
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.format_text())
    return 0 if report.valid else 1
