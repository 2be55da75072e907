"""`hrm-data import`: a user's own tasks, one JSON record (or Parquet row) per example, into a dataset.

Record (JSONL line or Parquet row)::

    {"split": "train", "group": "task7", "puzzle": "task7", "input": [[0, 1], [1, 0]], "output": [[1, 0], [0, 1]]}

``input`` / ``output`` are 2-D grids (lists of equal-length rows) or 1-D sequences of small
non-negative integers (or of the values named by ``--vocab``). ``split`` may be left out when
``--test-fraction`` is given; ``puzzle`` defaults to ``group`` and ``group`` to ``puzzle`` (neither:
every record is its own puzzle); ``identifier`` names the puzzle embedding (default: the puzzle key).

Why two passes over a spill file: the writer needs a group's records together, but users' files
are rarely sorted by group, and padding needs the largest grid before the first example is
written. Pass 1 streams the file once, checks every record, and appends each record's values to a
temporary flat file on disk (beside the output) plus compact bookkeeping in memory (~135 bytes
per record measured, keys included); pass 2 reads records back group by group from the spill
(pread, never mapped) and writes them with the DatasetWriter. Memory grows with the number of
records and groups, never with the file size. Records of a group need not be contiguous.

Token layout (as sapientinc/HRM's ARC builder): 0 = pad, then with EOS framing (the default for
grids) 1 = <eos> and value v -> v + 2; without it v -> v + 1. A grid is padded at the bottom and
right to ``--pad-to HxW`` (default: the largest grid, over inputs and outputs), and with EOS a
row of <eos> below and a column right of the grid mark its extent, so the model can predict
output shapes. Labels use pad = ignore_label_id 0, so padding never counts in the loss.
"""
from __future__ import annotations

import hashlib
import json
from array import array
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .augment import DIHEDRAL_NAMES, NUM_DIHEDRAL, dihedral
from .format import DatasetWriter, Group, Puzzle

MAX_VALUE = 65535          # largest raw value accepted without --vocab (a vocabulary beyond is surely a mistake)
SPILL_DTYPE = np.uint16    # value ids in the spill file (MAX_VALUE and --vocab sizes fit)
MAX_REPORTED = 50          # malformed records listed before "... and N more"
NO_IDENTIFIER = "<task>"   # --no-identifiers: one shared identifier (id 0 is HRM's padding "<blank>")
ARC_PALETTE = ["#000000", "#0074D9", "#FF4136", "#2ECC40", "#FFDC00", "#AAAAAA", "#F012BE", "#FF851B",
               "#7FDBFF", "#870C25"]


class ImportError_(ValueError):
    """The input cannot be imported; ``problems`` lists (where, what) for every malformed record."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None, total: int = 0):
        super().__init__(message)
        self.problems = problems or []
        self.total = total


@dataclass
class Options:
    out: str
    pad_to: tuple[int, ...] | None = None       # (H, W) for grids, (L,) for sequences; None: automatic
    eos: bool | None = None                      # None: on for grids, off for sequences
    dihedral: bool = False
    test_fraction: float | None = None
    seed: int = 0
    vocab: list | None = None                    # allowed values, in token order (index = value id)
    vocab_names: list[str] | None = None
    no_identifiers: bool = False
    skip_bad: bool = False
    force: bool = False
    progress: bool = True


@dataclass
class _Pass1:
    """What pass 1 keeps per record (parallel lists, turned into arrays) and per key."""

    ndim: int | None = None
    max_h: int = 0
    max_w: int = 0
    max_value: int = -1
    # per record, compact (array.array: 8 + 16 + 8 + 8 + 8 bytes, not Python objects)
    offset: array = field(default_factory=lambda: array("q"))   # start of the record's values in the spill
    shape: array = field(default_factory=lambda: array("i"))    # hi, wi, ho, wo
    group: array = field(default_factory=lambda: array("q"))
    puzzle: array = field(default_factory=lambda: array("q"))
    where: array = field(default_factory=lambda: array("q"))    # line (1-based) or row (0-based)
    group_keys: dict[str, int] = field(default_factory=dict)
    puzzle_keys: dict[str, int] = field(default_factory=dict)
    puzzle_group: list[int] = field(default_factory=list)
    puzzle_ident: list[str] = field(default_factory=list)
    group_split: list[int] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    bad: int = 0
    spilled: int = 0


# ----------------------------------------------------------------------------- reading records

def _records(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record or exception) for every line / row, streaming."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq
        try:
            pf = pq.ParquetFile(path)
        except Exception as e:  # noqa: BLE001
            raise ImportError_(f"{path}: not a readable Parquet file ({e})") from None
        row = 0
        for batch in pf.iter_batches(batch_size=4096):
            for rec in batch.to_pylist():
                yield f"row {row}", rec
                row += 1
        return
    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield f"line {n}", json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                yield f"line {n}", ValueError(f"not valid JSON ({e.msg if hasattr(e, 'msg') else e})")


def _grid(value: Any, name: str, lookup: dict | None) -> np.ndarray:
    """A record's grid as an int64 array of value ids; ValueError says what is wrong."""
    if value is None:
        raise ValueError(f"missing key '{name}'")
    if not isinstance(value, (list, tuple)) or not len(value):
        raise ValueError(f"'{name}' must be a non-empty list (a sequence) or a list of equal-length rows (a grid)")
    if isinstance(value[0], (list, tuple)):
        widths = {len(r) if isinstance(r, (list, tuple)) else -1 for r in value}
        if -1 in widths:
            raise ValueError(f"'{name}' mixes rows and single values; a grid is a list of rows")
        if len(widths) != 1:
            raise ValueError(f"'{name}' is ragged: rows of lengths {sorted(widths)}; every row must be as long")
        if 0 in widths:
            raise ValueError(f"'{name}' has empty rows")
        flat = [v for r in value for v in r]
        shape = (len(value), len(value[0]))
    else:
        flat = list(value)
        shape = (len(flat),)
    if lookup is not None:
        try:
            ids = [lookup[v] for v in flat]
        except (KeyError, TypeError):
            bad = next(v for v in flat if not _hashable_in(v, lookup))
            raise ValueError(f"'{name}' holds {bad!r}, which is not in --vocab") from None
        return np.asarray(ids, np.int64).reshape(shape)
    try:
        arr = np.asarray(flat)
    except (OverflowError, ValueError):
        arr = np.asarray(flat, dtype=object)
    if arr.dtype.kind not in "iu":   # floats, strings, None, bools, ints beyond int64 (object)
        bad = next((v for v in flat if type(v) is not int), None)
        if bad is not None:
            raise ValueError(f"'{name}' holds {bad!r}; values must be integers (or give --vocab)")
        arr = np.asarray(flat, dtype=object)
    lo, hi = (int(arr.min()), int(arr.max())) if arr.size else (0, 0)
    if lo < 0 or hi > MAX_VALUE:
        bad = lo if lo < 0 else hi
        raise ValueError(f"'{name}' value {bad} out of range [0, {MAX_VALUE}]; map values to small integers or "
                         "give --vocab")
    arr = arr.astype(np.int64)
    return arr.reshape(shape)


def _hashable_in(v, lookup) -> bool:
    try:
        return v in lookup
    except TypeError:
        return False


def _key(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        return str(v)
    raise ValueError(f"keys must be strings or integers, got {type(v).__name__}")


# ----------------------------------------------------------------------------- pass 1

def _pass1(path: Path, opts: Options, spill) -> _Pass1:
    from tqdm import tqdm
    st = _Pass1()
    lookup = {v: i for i, v in enumerate(opts.vocab)} if opts.vocab is not None else None
    splits = {"train": 0, "test": 1}
    bar = tqdm(desc="import (check)", unit="rec", disable=not opts.progress, leave=False)

    def bad(where: str, what: str) -> None:
        st.bad += 1
        if len(st.problems) < MAX_REPORTED:
            st.problems.append((where, what))

    for where, rec in _records(path):
        bar.update(1)
        wnum = int(where.split()[1])
        if isinstance(rec, Exception):
            bad(where, str(rec))
            continue
        if not isinstance(rec, dict):
            bad(where, f"a record must be a JSON object, got {type(rec).__name__}")
            continue
        try:
            unknown = set(rec) - {"split", "group", "puzzle", "input", "output", "identifier"}
            if unknown:
                raise ValueError(f"unknown key(s) {sorted(unknown)}; a record has split, group, puzzle, input, "
                                 "output, identifier")
            x = _grid(rec.get("input"), "input", lookup)
            y = _grid(rec.get("output"), "output", lookup)
            if x.ndim != y.ndim:
                raise ValueError(f"input is {x.ndim}-D but output is {y.ndim}-D; both must be grids or both sequences")
            if st.ndim is None:
                st.ndim = x.ndim
            elif x.ndim != st.ndim:
                raise ValueError(f"a {x.ndim}-D record in a file of {st.ndim}-D records; use one kind per file")
            if opts.dihedral and x.ndim != 2:
                raise ValueError("--dihedral needs 2-D grids, this record holds sequences")
            split = rec.get("split")
            if split is None:
                if opts.test_fraction is None:
                    raise ValueError("missing key 'split' (\"train\" or \"test\"); or give --test-fraction to split "
                                     "by group")
                sid = -1
            elif split not in splits:
                raise ValueError(f"split is {split!r}; it must be \"train\" or \"test\"")
            else:
                sid = splits[split]
            gkey, pkey = _key(rec.get("group")), _key(rec.get("puzzle"))
            ident = rec.get("identifier")
            if ident is not None and not isinstance(ident, str):
                raise ValueError(f"identifier must be a string, got {type(ident).__name__}")
            if gkey is None and pkey is None:
                gkey = pkey = f"{where}"
            gkey = gkey if gkey is not None else pkey
            pkey = pkey if pkey is not None else gkey
            if opts.pad_to is not None:
                _check_fits(x, y, opts.pad_to, opts)
            g = st.group_keys.get(gkey)
            if g is not None and st.group_split[g] != sid:
                raise ValueError(f"group {gkey!r} is in split {_sname(sid)} here but {_sname(st.group_split[g])} "
                                 "in an earlier record; a group (all variants of one base example) must stay in "
                                 "one split, or it leaks into the test set")
            pk = st.puzzle_keys.get(pkey)
            if pk is not None and st.puzzle_group[pk] != g:
                raise ValueError(f"puzzle {pkey!r} appears in group {gkey!r} here but in another group earlier; a "
                                 "puzzle belongs to one group")
        except ValueError as e:
            bad(where, str(e))
            continue
        if g is None:
            g = st.group_keys[gkey] = len(st.group_split)
            st.group_split.append(sid)
        p = st.puzzle_keys.get(pkey)
        if p is None:
            p = st.puzzle_keys[pkey] = len(st.puzzle_group)
            st.puzzle_group.append(g)
            st.puzzle_ident.append(ident if ident is not None else pkey)
        vals = np.concatenate([x.reshape(-1), y.reshape(-1)]).astype(SPILL_DTYPE)
        spill.write(vals.tobytes())
        st.offset.append(st.spilled)
        st.spilled += vals.size
        hx, wx = (x.shape if x.ndim == 2 else (1, x.shape[0]))
        hy, wy = (y.shape if y.ndim == 2 else (1, y.shape[0]))
        st.shape.extend((hx, wx, hy, wy))
        st.max_h, st.max_w = max(st.max_h, hx, hy), max(st.max_w, wx, wy)
        st.max_value = max(st.max_value, int(vals.max()))
        st.group.append(g)
        st.puzzle.append(p)
        st.where.append(wnum)
    bar.close()
    return st


def _sname(sid: int) -> str:
    return {0: "train", 1: "test", -1: "(none: --test-fraction)"}[sid]


def _check_fits(x: np.ndarray, y: np.ndarray, pad_to: tuple[int, ...], opts: Options) -> None:
    for name, a in (("input", x), ("output", y)):
        if a.ndim == 2 and len(pad_to) == 2:
            if a.shape[0] > pad_to[0] or a.shape[1] > pad_to[1]:
                raise ValueError(f"{name} grid {a.shape[0]}x{a.shape[1]} does not fit --pad-to "
                                 f"{pad_to[0]}x{pad_to[1]}")
        elif a.ndim == 1:
            L = pad_to[0] * (pad_to[1] if len(pad_to) == 2 else 1)
            if a.shape[0] > L:
                raise ValueError(f"{name} of length {a.shape[0]} does not fit --pad-to {L}")
        else:
            raise ValueError(f"--pad-to {'x'.join(map(str, pad_to))} is a length but the record holds grids; "
                             "give HxW")


def _eos_on(opts: Options, ndim: int) -> bool:
    return (ndim == 2) if opts.eos is None else opts.eos


# ----------------------------------------------------------------------------- encoding

def encode(grid: np.ndarray, shape: tuple[int, ...], eos: bool) -> np.ndarray:
    """One grid (h, w) or sequence (n,) of value ids -> a flat padded token row (see module doc)."""
    shift = 2 if eos else 1
    if len(shape) == 1:
        out = np.zeros(shape[0], np.int64)
        n = grid.shape[0]
        out[:n] = grid + shift
        if eos and n < shape[0]:
            out[n] = 1
        return out
    H, W = shape
    h, w = grid.shape
    out = np.zeros((H, W), np.int64)
    out[:h, :w] = grid + shift
    if eos:
        if h < H:
            out[h, :w] = 1
        if w < W:
            out[:h, w] = 1
    return out.reshape(-1)


def _palette(n_values: int) -> list[str]:
    if n_values <= len(ARC_PALETTE):
        return ARC_PALETTE[:n_values]
    out = []
    for i in range(n_values):  # distinct hues, deterministic
        h = (i * 0.618033988749895) % 1.0
        r, g, b = (int(255 * (0.5 + 0.45 * np.cos(2 * np.pi * (h + k / 3)))) for k in range(3))
        out.append(f"#{r:02x}{g:02x}{b:02x}")
    return out


# ----------------------------------------------------------------------------- entry point

def import_records(path: str | os.PathLike, opts: Options) -> dict[str, Any]:
    """Import ``path`` into a dataset at ``opts.out``; returns a summary (counts, skipped, seq_len)."""
    path = Path(path)
    if not path.exists():
        raise ImportError_(f"{path}: no such file")
    if not path.is_file():
        raise ImportError_(f"{path}: not a regular file; give a .jsonl or .parquet file")
    if opts.test_fraction is not None and not 0 < opts.test_fraction < 1:
        raise ImportError_(f"--test-fraction {opts.test_fraction}: must be between 0 and 1 (exclusive)")
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from .convert import remove_stale_files
    remove_stale_files(out.parent, f".{out.name}.import-")
    fd, spill_path = tempfile.mkstemp(prefix=f".{out.name}.import-{os.getpid()}-", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as spill:
            st = _pass1(path, opts, spill)
        if st.bad and not opts.skip_bad:
            raise ImportError_(f"{path}: {st.bad} malformed record(s); fix them, or pass --skip-bad to import the "
                               "rest", st.problems, st.bad)
        if not st.group:
            raise ImportError_(f"{path}: no usable records" + (f" ({st.bad} malformed)" if st.bad else ""),
                               st.problems, st.bad)
        return _pass2(path, opts, st, spill_path)
    finally:
        Path(spill_path).unlink(missing_ok=True)


def _assign_test_groups(st: _Pass1, opts: Options) -> np.ndarray:
    """Split of every group: records' own split, else a seeded choice of round(fraction x groups)."""
    gsplit = np.asarray(st.group_split, np.int64)
    free = np.flatnonzero(gsplit == -1)
    if free.size:
        n_test = int(round(opts.test_fraction * free.size))
        n_test = min(max(n_test, 1 if free.size >= 2 else 0), free.size - 1) if free.size >= 2 else 0
        rng = np.random.default_rng(opts.seed)
        test = rng.permutation(free.size)[:n_test]
        gsplit[free] = 0
        gsplit[free[test]] = 1
    return gsplit


def _pass2(path: Path, opts: Options, st: _Pass1, spill_path: str) -> dict[str, Any]:
    from tqdm import tqdm
    ndim = st.ndim
    eos = _eos_on(opts, ndim)
    if opts.pad_to is not None:
        shape = tuple(opts.pad_to) if ndim == 2 else (int(np.prod(opts.pad_to)),)
    else:  # like ARC's 30x30: the largest grid fills the frame and has no <eos> border
        shape = (st.max_h, st.max_w) if ndim == 2 else (st.max_w,)
    if opts.dihedral and shape[0] != shape[1]:
        if opts.pad_to is not None:
            raise ImportError_(f"--dihedral with --pad-to {shape[0]}x{shape[1]}: transposes turn HxW into WxH, "
                               "so the frame must be square")
        shape = (max(shape), max(shape))
    seq_len = int(np.prod(shape))
    n_values = len(opts.vocab) if opts.vocab is not None else st.max_value + 1
    shift = 2 if eos else 1
    vocab_size = n_values + shift
    names = opts.vocab_names or ([str(v) for v in opts.vocab] if opts.vocab is not None
                                 else [str(v) for v in range(n_values)])
    token_names = ["pad"] + (["eos"] if eos else []) + names
    extra: dict[str, Any] = {"token_names": token_names,
                             "palette": ["#FFFFFF"] + (["#BBBBBB"] if eos else []) + _palette(n_values),
                             "glyphs": [" ", "|"][:shift] + _glyphs(names)}
    if ndim == 2:
        extra["grid_shape"] = list(shape)
    gsplit = _assign_test_groups(st, opts)
    offset = np.frombuffer(st.offset, np.int64)
    shp = np.frombuffer(st.shape, np.int32).reshape(-1, 4)
    group = np.frombuffer(st.group, np.int64)
    puzzle = np.frombuffer(st.puzzle, np.int64)
    where = np.frombuffer(st.where, np.int64)
    spill_fd = os.open(spill_path, os.O_RDONLY)
    item = np.dtype(SPILL_DTYPE).itemsize

    def values(start: int, n: int) -> np.ndarray:
        # pread, not a memory map: what pass 2 reads back never accumulates in resident memory
        return np.frombuffer(os.pread(spill_fd, n * item, start * item), SPILL_DTYPE).astype(np.int64)
    # record order: group (first appearance), puzzle (first appearance), then file order
    order = np.lexsort((np.arange(group.size), puzzle, group))
    bounds = np.flatnonzero(np.diff(group[order])) + 1
    per_group = np.split(order, bounds)
    kind = "row" if path.suffix.lower() in (".parquet", ".pq") else "line"
    provenance = {"importer": "hrm-data import", "source": path.name,
                  "source_sha256": _sha256(path), "options": {
                      "pad_to": list(shape), "eos": eos, "dihedral": opts.dihedral,
                      "test_fraction": opts.test_fraction, "seed": opts.seed, "vocab": opts.vocab,
                      "no_identifiers": opts.no_identifiers, "skip_bad": opts.skip_bad}}
    from .format import PROVENANCE_KEY
    extra[PROVENANCE_KEY] = provenance
    counts = {"train": 0, "test": 0}
    transforms = range(NUM_DIHEDRAL) if opts.dihedral else range(1)
    try:
        with DatasetWriter(opts.out, vocab_size=vocab_size, seq_len=seq_len, pad_id=0, ignore_label_id=0,
                           force=opts.force, extra=extra,
                           identifiers=[NO_IDENTIFIER] if opts.no_identifiers else ()) as w:
            bar = tqdm(total=len(st.group), desc="import (write)", unit="rec", disable=not opts.progress, leave=False)
            for sid, split in enumerate(("train", "test")):
                with w.split(split) as sw:
                    for recs in per_group:
                        g = int(group[recs[0]])
                        if gsplit[g] != sid:
                            continue
                        pz_bounds = np.flatnonzero(np.diff(puzzle[recs])) + 1
                        augment = transforms if split == "train" else range(1)
                        puzzles, rows = [], []
                        for t in augment:
                            for prs in np.split(recs, pz_bounds):
                                p = int(puzzle[prs[0]])
                                xs, ys = [], []
                                for r in prs:
                                    hx, wx, hy, wy = (int(v) for v in shp[r])
                                    o = int(offset[r])
                                    xy = values(o, hx * wx + hy * wy)
                                    x, y = xy[:hx * wx], xy[hx * wx:]
                                    if ndim == 2:
                                        x, y = dihedral(x.reshape(hx, wx), t), dihedral(y.reshape(hy, wy), t)
                                    xs.append(encode(x, shape, eos))
                                    ys.append(encode(y, shape, eos))
                                    rows.append({kind: int(where[r])})
                                ident = NO_IDENTIFIER if opts.no_identifiers else st.puzzle_ident[p]
                                if t and not opts.no_identifiers:
                                    ident = f"{ident}|{DIHEDRAL_NAMES[t]}"
                                puzzles.append(Puzzle(ident, np.stack(xs), np.stack(ys)))
                        sw.add_group(Group(puzzles, key=_group_key(st, g), rows=rows))
                        counts[split] += len(rows)
                        bar.update(len(recs))
            bar.close()
    finally:
        os.close(spill_fd)
    return {"out": str(opts.out), "train_examples": counts["train"], "test_examples": counts["test"],
            "seq_len": seq_len, "vocab_size": vocab_size, "grid": "x".join(map(str, shape)),
            "skipped": st.bad, "problems": st.problems}


def _group_key(st: _Pass1, g: int) -> str:
    if not hasattr(st, "_gnames"):
        st._gnames = list(st.group_keys)   # type: ignore[attr-defined]  (insertion order = id order)
    return st._gnames[g]                    # type: ignore[attr-defined]


def _glyphs(names: list[str]) -> list[str]:
    from .render import token_glyphs
    if all(len(n) == 1 for n in names) and len(set(names)) == len(names):
        return list(names)
    return token_glyphs(None, len(names)) if len(names) <= 10 else [format(i, "x") for i in range(len(names))]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def parse_pad_to(text: str | None) -> tuple[int, ...] | None:
    if text is None or text == "auto":
        return None
    try:
        parts = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        parts = ()
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise ValueError(f"--pad-to {text!r}: give HxW (e.g. 30x30) for grids, a length (e.g. 64) for sequences, "
                         "or auto")
    return parts


def parse_vocab(text: str | None) -> tuple[list | None, list[str] | None]:
    """--vocab: a JSON list of values in token order, a JSON object value -> name, a file holding
    either, or comma-separated values. Values that look like integers are integers."""
    if text is None:
        return None, None
    p = Path(text)
    if p.is_file():
        text = p.read_text(encoding="utf-8")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = [v.strip() for v in text.split(",") if v.strip()]
        obj = [int(v) if v.lstrip("-").isdigit() else v for v in obj]
    if isinstance(obj, dict):
        values = [int(k) if k.lstrip("-").isdigit() else k for k in obj]
        names = [str(v) for v in obj.values()]
    elif isinstance(obj, list):
        values, names = obj, [str(v) for v in obj]
    else:
        raise ValueError("--vocab: give a JSON list of values, a JSON object value -> name, or a,b,c")
    if not values or len(set(map(repr, values))) != len(values):
        raise ValueError("--vocab: the values must be non-empty and distinct")
    if len(values) > MAX_VALUE + 1:
        raise ValueError(f"--vocab: {len(values)} values; at most {MAX_VALUE + 1}")
    return values, names
