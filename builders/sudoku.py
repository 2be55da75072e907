"""Sudoku (Sudoku-Extreme's encoding): read the public CSVs, or generate puzzles of a given size
and difficulty; augment with the Sudoku symmetries.

Encoding as sapientinc/HRM's ``dataset/build_sudoku_dataset.py``: PAD 0, blank 1, digit d ->
d + 1; seq_len n*n (81, or 16 / 36 for 4 x 4 and 6 x 6); one identifier. One group per base
puzzle; its first puzzle is the original, the ``--num-aug`` others are random symmetric copies
(train only). See docs/builders/sudoku.md. Solver, generator, rating and symmetries:
``sudoku_solver.py``.
"""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from hrm_data.builder import Builder, GroupBatch, Info, Option

from . import sudoku_solver as ss

SPLIT_IDS = {"train": 0, "test": 1}
IDENTIFIER = "<blank>"   # as HRM: every puzzle has identifier 0, so num_puzzle_identifiers is 1
CHUNK_ROWS = 1 << 15    # rows per written batch (bounds memory; fixed, so the bytes never depend on it)
MAX_DRAWS = 20_000      # generator draws per puzzle before --min-rating is declared unreachable
PALETTE_DIGITS = ("#f4a3a3", "#f7c68f", "#f3e58c", "#b9e59a", "#8fd9c4", "#95c8f0", "#b3a7ee", "#e3a6e0", "#d0d0d0")


class CSVError(ValueError):
    """A malformed row in a Sudoku CSV; the message names the file and line."""


def vocab_size(n: int) -> int:
    return n + 2


def token_names(n: int) -> list[str]:
    return ["PAD", "blank"] + [str(d) for d in range(1, n + 1)]


def size_of(seq_len: int, metadata: dict | None = None) -> int:
    meta = (metadata or {}).get("sudoku") or {}
    n = int(meta.get("size") or round(seq_len ** 0.5))
    if n not in ss.BOXES or n * n != seq_len:
        raise ValueError(f"seq_len {seq_len} is not a Sudoku of size 4, 6 or 9")
    return n


# ----------------------------------------------------------------------------- CSV

def _lut(n: int, blanks: bool) -> np.ndarray:
    """Byte -> value; 255 marks a character that is not allowed."""
    t = np.full(256, 255, np.uint8)
    for d in range(1, n + 1):
        t[ord(str(d))] = d
    if blanks:
        t[ord(".")] = 0
        t[ord("0")] = 0
    return t


CSV_CHUNK_BYTES = 4 << 20


class _Quoted(Exception):
    """A chunk with quotes: read on with the csv module from this byte offset, row and line."""

    def __init__(self, offset: int, row: int, line: int):
        super().__init__(offset, row, line)
        self.offset, self.row, self.line = offset, row, line


class _Scan:
    """One chunk of a CSV, parsed with array operations: per data row its file line, the file
    offset of its question field and its rating. ``buf`` holds the chunk's bytes."""

    def __init__(self, buf: np.ndarray, offset: int, first_row: int, lines: np.ndarray, qpos: np.ndarray,
                 ratings: np.ndarray):
        self.buf, self.offset, self.first_row, self.lines, self.qpos, self.ratings = buf, offset, first_row, lines, qpos, ratings

    def fields(self, n: int, rows: np.ndarray | None = None, path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(questions, answers) as values, checking every character; ``rows`` selects rows."""
        C = n * n
        q0 = self.qpos - self.offset if rows is None else self.qpos[rows] - self.offset
        lines = self.lines if rows is None else self.lines[rows]
        # question, comma, answer: 2C+1 contiguous bytes from q0, copied row by row from a window view
        both = np.lib.stride_tricks.sliding_window_view(self.buf, 2 * C + 1)[q0]
        q = _checked(_lut(n, True)[both[:, :C]], both[:, :C], lines, "question", n, path)
        a = _checked(_lut(n, False)[both[:, C + 1:]], both[:, C + 1:], lines, "answer", n, path)
        return q, a


def _checked(vals: np.ndarray, raw: np.ndarray, lines: np.ndarray, name: str, n: int, path) -> np.ndarray:
    bad = np.flatnonzero((vals == 255).any(axis=1))
    if bad.size:
        i = int(bad[0])
        j = int(np.flatnonzero(vals[i] == 255)[0])
        allowed = f"digits 1-{n}" + (" and '.' or '0' for blanks" if name == "question" else " (a complete grid)")
        raise CSVError(f"{path}:{int(lines[i])}: {name} character {j + 1} is {chr(int(raw[i, j]))!r}; allowed: {allowed}")
    return vals


def _scan_chunks(path: Path, n: int, chunk_bytes: int = CSV_CHUNK_BYTES) -> Iterator[_Scan]:
    """Split the file at line ends into chunks and parse each with numpy: exactly 4 fields per
    line (3 commas), question and answer of n*n characters, an integer rating. The header line is
    skipped, as HRM does. Files with quotes take the csv-module path (``_scan_quoted``)."""
    C = n * n
    first_row, line_no, offset, header = 0, 1, 0, True
    carry = b""
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk_bytes)
            data = carry + block
            if not block:
                if not data:
                    return
                if not data.endswith(b"\n"):
                    data += b"\n"
                cut = len(data)
            else:
                cut = data.rfind(b"\n") + 1
                if cut == 0:
                    carry = data
                    continue
            carry = data[cut:]
            buf = np.frombuffer(data, np.uint8, count=cut)
            chunk_offset = offset
            offset += cut
            nl = np.flatnonzero(buf == 10)
            starts = np.concatenate([[0], nl[:-1] + 1])
            if header:   # the header: skipped whatever it says, as HRM does
                header = False
                nl, starts = nl[1:], starts[1:]
                line_no += 1
            k = nl.size
            lines = line_no + np.arange(k)
            line_no += k
            if not k:
                continue
            end = nl - (buf[np.maximum(nl - 1, 0)] == 13)      # CRLF files
            # The last comma of a line ends the answer; question and answer are fixed width, so
            # the other two commas' places follow. One count of all commas then proves that no
            # line has a fourth; only a malformed chunk pays for finding its line.
            c3 = np.full(k, -1, np.int64)
            todo = np.arange(k)
            for back in range(1, 20):   # ratings are short: a few passes over ever fewer lines
                pos = end[todo] - back
                hit = (pos > starts[todo]) & (buf[np.maximum(pos, 0)] == 44)
                c3[todo[hit]] = pos[hit]
                todo = todo[~hit]
                if not todo.size:
                    break
            c2, c1 = c3 - C - 1, c3 - 2 * C - 2
            ok = (c3 >= 0) & (c1 >= starts) & (buf[np.maximum(c2, 0)] == 44) & (buf[np.maximum(c1, 0)] == 44)
            if not ok.all() or int(np.count_nonzero(buf[starts[0]:] == 44)) != 3 * k:
                if b'"' in data[:cut]:   # quoted fields: the csv module reads on from this chunk
                    raise _Quoted(chunk_offset + int(starts[0]), first_row, int(lines[0]))
                _raise_structure(buf, starts, nl, end, lines, C, n, path)
            ratings = _parse_ints(buf, c3 + 1, end, lines, path)
            yield _Scan(buf, chunk_offset, first_row, lines, chunk_offset + c1 + 1, ratings)
            first_row += k


def _raise_structure(buf, starts, nl, end, lines, C, n, path) -> None:
    """Name the first line of a chunk whose fields are not 4, or whose question or answer has
    the wrong length."""
    commas = np.flatnonzero(buf == 44)
    lo, hi = np.searchsorted(commas, starts), np.searchsorted(commas, nl)
    for i in range(len(starts)):
        nc = int(hi[i] - lo[i])
        if nc != 3:
            what = "an empty line" if end[i] == starts[i] else f"{nc + 1} columns"
            raise CSVError(f"{path}:{int(lines[i])}: {what}, expected 4 columns (source,question,answer,rating); "
                           "fix or delete that line")
        c1, c2, c3 = commas[lo[i]:lo[i] + 3]
        for name, a, b in (("question", c1 + 1, c2), ("answer", c2 + 1, c3)):
            if b - a != C:
                raise CSVError(f"{path}:{int(lines[i])}: {name} has {int(b - a)} characters, expected {C} "
                               f"for a {n} x {n} Sudoku (--size {n})")
        if end[i] - c3 > 19:
            raise CSVError(f"{path}:{int(lines[i])}: rating {bytes(buf[c3 + 1:end[i]]).decode(errors='replace')!r} "
                           "is not an integer")
    raise CSVError(f"{path}: malformed near line {int(lines[0])}")   # not reached


def _parse_ints(buf: np.ndarray, a: np.ndarray, b: np.ndarray, lines: np.ndarray, path) -> np.ndarray:
    """Decimal integers (optional sign) in buf[a:b] per row, vectorized."""
    L = b - a
    W = int(min(18, max(1, L.max(initial=1))))
    neg = (L > 0) & (buf[np.minimum(a, len(buf) - 1)] == 45)
    a2 = a + neg
    L2 = b - a2
    idx = a2[:, None] + np.arange(W)
    inside = np.arange(W) < L2[:, None]
    d = buf[np.minimum(idx, len(buf) - 1)].astype(np.int64) - 48
    bad = np.flatnonzero((L2 < 1) | (L2 > 18) | (inside & ((d < 0) | (d > 9))).any(axis=1))
    if bad.size:
        i = int(bad[0])
        text = bytes(buf[a[i]:b[i]]).decode(errors="replace")
        raise CSVError(f"{path}:{int(lines[i])}: rating {text!r} is not an integer")
    val = np.zeros(len(a), np.int64)
    for j in range(W):
        val = np.where(inside[:, j], val * 10 + d[:, j], val)
    return np.where(neg, -val, val)


def read_csv_batches(path: str | Path, n: int) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Stream a Sudoku CSV (header, then source,question,answer,rating by position, as HRM reads
    it): yields (first row index, questions (b, n*n) uint8 values 0..n, answers, ratings int64).
    Any malformed row raises CSVError naming the file and line."""
    path = _csv_path(path)
    try:
        for sc in _scan_chunks(path, n):
            q, a = sc.fields(n, path=path)
            yield sc.first_row, q, a, sc.ratings
    except _Quoted as qd:
        yield from _read_quoted(path, n, qd.offset, qd.row, qd.line)


def scan_ratings(path: str | Path, n: int) -> tuple[np.ndarray, np.ndarray | None]:
    """First pass of a subsample: every row's rating and the file offset of its question
    (None for quoted files, which are re-read instead)."""
    path = _csv_path(path)
    rs, qp = [], []
    try:
        for sc in _scan_chunks(path, n):
            rs.append(sc.ratings)
            qp.append(sc.qpos)
    except _Quoted as qd:
        rs += [r for *_, r in _read_quoted(path, n, qd.offset, qd.row, qd.line)]
        return np.concatenate(rs), None
    if not rs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(rs), np.concatenate(qp)


class LineIndex:
    """Where the lines of a file start, from one pass that counts newlines per 64 KiB block (8
    bytes per block, not per line: a 4-million-line CSV is indexed in a few kilobytes); the
    exact offset of a line is found on request by reading its block again. Line 0 is the
    header; data row r is line r + 1."""

    BLOCK = 1 << 16

    def __init__(self, path: str | Path):
        self.path = _csv_path(path)
        counts, size, last = [], 0, b""
        buf = bytearray(64 * self.BLOCK)
        with open(self.path, "rb") as f:
            while True:
                got = f.readinto(buf)
                if not got:
                    break
                counts += [buf.count(b"\n", a, min(a + self.BLOCK, got)) for a in range(0, got, self.BLOCK)]
                size += got
                last = buf[got - 1:got]
        self.size = size
        self.cum = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        # a line starts at 0 and after every newline but one that ends the file
        self.lines = 0 if size == 0 else 1 + int(self.cum[-1]) - (last == b"\n")

    def starts(self, lines: np.ndarray) -> np.ndarray:
        """Byte offset where each line starts (``self.size`` for the line after the last)."""
        lines = np.asarray(lines, np.int64)
        out = np.where(lines >= self.lines, self.size, 0).astype(np.int64)
        want = np.flatnonzero((lines > 0) & (lines < self.lines))
        block = np.searchsorted(self.cum, lines[want], side="left") - 1   # holds newline number `line`
        with open(self.path, "rb") as f:
            for j in np.unique(block).tolist():
                f.seek(j * self.BLOCK)
                nl = np.flatnonzero(np.frombuffer(f.read(self.BLOCK), np.uint8) == 10)
                mine = want[block == j]
                k = lines[mine] - self.cum[j] - 1
                if len(nl) != self.cum[j + 1] - self.cum[j]:
                    raise CSVError(f"{self.path}: changed while it was read; run the build again")
                out[mine] = j * self.BLOCK + nl[k] + 1
        return out


def count_rows(path: str | Path) -> int:
    """Data rows (lines after the header) of a CSV."""
    return max(0, LineIndex(path).lines - 1)


def read_lines_at(path: str | Path, n: int, rows: np.ndarray, index: LineIndex | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Questions, answers and ratings of the given data rows only, each line read at its offset
    and parsed by the csv module exactly as HRM's reader does (errors name the line)."""
    path = _csv_path(path)
    index = index if index is not None else LineIndex(path)
    C = n * n
    rows = np.asarray(rows, np.int64)
    if rows.size and int(rows.max()) + 1 >= index.lines:
        raise CSVError(f"{path}: has no line {int(rows.max()) + 2} (the file changed while it was read?)")
    los, his = index.starts(rows + 1), index.starts(rows + 2)
    q = np.empty((rows.size, C), np.uint8)
    a = np.empty((rows.size, C), np.uint8)
    r = np.empty(rows.size, np.int64)
    lut_q, lut_a = _lut(n, True), _lut(n, False)
    with open(path, "rb") as f:
        for j in np.argsort(rows, kind="stable"):
            line = int(rows[j]) + 1
            lo, hi = int(los[j]), int(his[j])
            f.seek(lo)
            text = f.read(hi - lo).decode("utf-8", errors="replace")
            rec = next(csv.reader([text.rstrip("\r\n")]), [])
            ln = line + 1
            if len(rec) != 4:
                what = "an empty line" if not rec else f"{len(rec)} columns"
                raise CSVError(f"{path}:{ln}: {what}, expected 4 columns (source,question,answer,rating); "
                               "fix or delete that line")
            for name, v, lut, out in (("question", rec[1], lut_q, q), ("answer", rec[2], lut_a, a)):
                if len(v) != C:
                    raise CSVError(f"{path}:{ln}: {name} has {len(v)} characters, expected {C} "
                                   f"for a {n} x {n} Sudoku (--size {n})")
                raw = np.frombuffer(v.encode("latin1", "replace"), np.uint8)
                out[j] = _checked(lut[raw][None], raw[None], np.array([ln]), name, n, path)[0]
            if not _is_int(rec[3]):
                raise CSVError(f"{path}:{ln}: rating {rec[3]!r} is not an integer")
            r[j] = int(rec[3])
    return q, a, r


def _csv_path(path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise CSVError(f"{path}: not found (or not a file); --source needs a folder with train.csv and test.csv")
    return path


def _read_quoted(path: Path, n: int, offset: int = 0, first: int = 0, line: int = 1,
                 block_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """The csv module's reading from a byte offset at a line start, for files with quoted
    fields (slow, exact). ``line`` is the file line at ``offset``; offset 0 skips the header."""
    import io
    C = n * n
    lut_q, lut_a = _lut(n, True), _lut(n, False)
    with open(path, "rb") as raw:
        raw.seek(offset)
        f = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")
        reader = csv.reader(f)
        if offset == 0 and next(reader, None) is None:
            return
        base = line - 1 - (1 if offset == 0 else 0)
        buf: list = []
        for rec in reader:
            ln = base + reader.line_num
            if len(rec) != 4:
                what = "an empty line" if not rec else f"{len(rec)} columns"
                raise CSVError(f"{path}:{ln}: {what}, expected 4 columns (source,question,answer,rating); "
                               "fix or delete that line")
            _, q, a, r = rec
            for name, v in (("question", q), ("answer", a)):
                if len(v) != C:
                    raise CSVError(f"{path}:{ln}: {name} has {len(v)} characters, expected {C} "
                                   f"for a {n} x {n} Sudoku (--size {n})")
            if not _is_int(r):
                raise CSVError(f"{path}:{ln}: rating {r!r} is not an integer")
            buf.append((ln, q, a, int(r)))
            if len(buf) == block_rows:
                yield _quoted_block(buf, first, lut_q, lut_a, n, path)
                first += len(buf)
                buf = []
        if buf:
            yield _quoted_block(buf, first, lut_q, lut_a, n, path)


def _quoted_block(buf, first, lut_q, lut_a, n, path):
    lines = np.array([b[0] for b in buf])
    rq = np.frombuffer("".join(b[1] for b in buf).encode("latin1", "replace"), np.uint8).reshape(len(buf), -1)
    ra = np.frombuffer("".join(b[2] for b in buf).encode("latin1", "replace"), np.uint8).reshape(len(buf), -1)
    return (first, _checked(lut_q[rq], rq, lines, "question", n, path), _checked(lut_a[ra], ra, lines, "answer", n, path),
            np.array([b[3] for b in buf], np.int64))


def _is_int(v: Any) -> bool:
    try:
        int(v)
        return True
    except (TypeError, ValueError):
        return False


def read_csv(path: str | Path, n: int = 9, min_difficulty: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A whole CSV as arrays (questions, answers, ratings, data-row index), rows with rating >=
    ``min_difficulty`` only (small files; the builder streams)."""
    qs, as_, rs, idx = [], [], [], []
    for first, q, a, r in read_csv_batches(path, n):
        keep = r >= min_difficulty if min_difficulty is not None else np.ones(len(r), bool)
        qs.append(q[keep]), as_.append(a[keep]), rs.append(r[keep]), idx.append(first + np.flatnonzero(keep))
    C = n * n
    if not qs:
        return np.zeros((0, C), np.uint8), np.zeros((0, C), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(qs), np.concatenate(as_), np.concatenate(rs), np.concatenate(idx)


# ----------------------------------------------------------------------------- augmentation

def augment_groups(q: np.ndarray, a: np.ndarray, num_aug: int, rng: np.random.Generator, n: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens (B, C) -> (B * (1 + num_aug), C) rows, each base followed by its copies (the first
    copy unchanged), and the index of the copy per row (0 = original)."""
    B, C = q.shape
    k = 1 + num_aug
    xq = np.empty((B, k, C), q.dtype)
    xa = np.empty((B, k, C), a.dtype)
    xq[:, 0], xa[:, 0] = q, a
    if num_aug:
        cell_map, digit_map = ss.random_symmetries(rng, B * num_aug, n)
        src = np.repeat(np.arange(B), num_aug)
        mq, ma = ss.apply_symmetries_many((q, a), cell_map, digit_map, offset=1, source=src)
        xq[:, 1:], xa[:, 1:] = mq.reshape(B, num_aug, C), ma.reshape(B, num_aug, C)
    return xq.reshape(B * k, C), xa.reshape(B * k, C), np.tile(np.arange(k), B)


# ----------------------------------------------------------------------------- generation

def generate_split(seed: int, split: str, count: int, n: int, min_rating: int, avoid: set[str],
                   stats: Counter) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``count`` puzzles with unique solutions and rating >= min_rating, none equivalent (by
    symmetry key) to a puzzle whose key is in ``avoid``; the keys of accepted puzzles are added
    to ``avoid`` for the test split (test puzzles are pairwise inequivalent; train puzzles may
    be equivalent to each other, as augmented copies are). Puzzle i draws from its own seed
    stream (seed, split, i), so a puzzle does not depend on the count."""
    C = n * n
    qs = np.zeros((count, C), np.uint8)
    sols = np.zeros((count, C), np.uint8)
    ratings = np.zeros(count, np.int64)
    keys: list[str] = []
    for i in range(count):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SPLIT_IDS[split], i)))
        for _ in range(MAX_DRAWS):
            stats["draws"] += 1
            p, s, r = ss.generate_one(rng, n)
            if r < min_rating:
                stats["redrawn_rating"] += 1
                continue
            key = ss.symmetry_keys(p[None], n)[0]
            if key in avoid:
                stats["redrawn_equivalent"] += 1
                continue
            break
        else:
            raise RuntimeError(f"{split} puzzle {i}: no {n} x {n} puzzle with rating >= {min_rating} that is "
                               f"inequivalent to the test puzzles in {MAX_DRAWS} draws; lower --min-rating or "
                               f"--test-count (4 x 4 has only a few dozen essentially different minimal puzzles)")
        if split == "test":
            avoid.add(key)
        qs[i], sols[i], ratings[i] = p, s, r
        keys.append(key)
    return qs, sols, ratings, keys


# ----------------------------------------------------------------------------- the builder

class Sudoku(Builder):
    name = "sudoku"
    description = "Sudoku (Sudoku-Extreme encoding) from the public CSVs or generated; 4x4, 6x6, 9x9"
    default_out = "data/sudoku"
    version = "1"
    options = (
        Option("source", "", "Folder with train.csv and test.csv in the public sudoku-extreme layout "
               "(header; source,question,answer,rating). Exclusive with --generate."),
        Option("generate", False, "Generate puzzles instead of reading --source."),
        Option("count", 1000, "--generate: train puzzles (groups)."),
        Option("test_count", 100, "--generate: test puzzles."),
        Option("min_rating", 0, "--generate: keep puzzles whose search effort (dead ends of the fixed solver) is at "
               "least this; 0 keeps all."),
        Option("size", 9, "Grid side: 4 (2x2 boxes), 6 (2x3 boxes) or 9 (3x3 boxes).", type=int),
        Option("seed", 0, "Seed for generation, subsampling and augmentation (same seed, same bytes)."),
        Option("subsample_size", 0, "Train only: keep this many random train puzzles (0 = all), as HRM's "
               "--subsample-size."),
        Option("num_aug", 0, "Train only: random symmetric copies per puzzle (digits, bands/stacks, rows/columns "
               "within, transpose), in the puzzle's group; the first copy is the original."),
        Option("min_difficulty", 0, "--source: keep rows whose rating is at least this (HRM's --min-difficulty)."),
    )

    def __init__(self) -> None:
        self._stats: dict[str, Counter] = {}
        self._seen: set[str] = set()
        self._test: tuple | None = None

    def _opts(self, options: dict[str, Any]) -> dict[str, Any]:
        o = {**self.defaults(), **options}
        n = int(o["size"])
        if n not in ss.BOXES:
            raise ValueError(f"--size must be 4, 6 or 9, got {n}")
        src, gen = str(o["source"] or ""), bool(o["generate"])
        if bool(src) == gen:
            raise ValueError("give exactly one of --source FOLDER (train.csv, test.csv) or --generate")
        for name, low in (("count", 1), ("test_count", 0), ("min_rating", 0), ("seed", 0), ("subsample_size", 0),
                          ("num_aug", 0), ("min_difficulty", 0)):
            if int(o[name]) < low:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, got {o[name]}")
        if int(o["num_aug"]) > 100_000:
            raise ValueError(f"--num-aug {o['num_aug']} is more than 100000 copies per puzzle")
        if src:
            for f in ("train.csv", "test.csv"):
                p = Path(src) / f
                if not p.is_file():
                    raise ValueError(f"{p}: not found; --source needs a folder holding train.csv and test.csv")
        return dict(source=src, generate=gen, count=int(o["count"]), test_count=int(o["test_count"]),
                    min_rating=int(o["min_rating"]), size=n, seed=int(o["seed"]),
                    subsample_size=int(o["subsample_size"]), num_aug=int(o["num_aug"]),
                    min_difficulty=int(o["min_difficulty"]))

    def info(self, options: dict[str, Any]) -> Info:
        o = self._opts(options)
        n = o["size"]
        bh, bw = ss.BOXES[n]
        return Info(vocab_size=vocab_size(n), seq_len=n * n, pad_id=0, ignore_label_id=0, identifiers=(),
                    grid_shape=(n, n), token_names=token_names(n), palette=["#000000", "#ffffff", *PALETTE_DIGITS[:n]],
                    glyphs=["_", "."] + [str(d) for d in range(1, n + 1)],
                    extra={"sudoku": {"size": n, "box": [bh, bw], "blank_token": 1, "digit_token_offset": 1,
                                      "rating": "dead ends of the fixed propagate-and-guess search (generated) or "
                                                "the CSV's rating column (--source)"}})

    def count(self, split: str, options: dict[str, Any]) -> int | None:
        o = {**self.defaults(), **options}
        if o.get("generate"):
            return int(o["count"] if split == "train" else o["test_count"])
        return None

    def groups(self, split: str, options: dict[str, Any]) -> Iterator[GroupBatch]:
        o = self._opts(options)
        if split == "train":
            self._stats, self._seen, self._test = {}, set(), None
        stats = self._stats.setdefault(split, Counter())
        n = o["size"]
        num_aug = o["num_aug"] if split == "train" else 0
        if o["generate"]:
            # test first: train puzzles are then drawn inequivalent to every test puzzle
            if split == "train" or self._test is None:
                self._seen = set()
                self._test = generate_split(o["seed"], "test", o["test_count"], n, o["min_rating"], self._seen,
                                            self._stats.setdefault("test", Counter()))
            if split == "train":
                q, s, r, keys = generate_split(o["seed"], split, o["count"], n, o["min_rating"], self._seen, stats)
            else:
                (q, s, r, keys), self._test = self._test, None
            stats["puzzles"] += len(q)
            yield from self._batches(split, o, q + 1, s + 1, num_aug, {"rating": r, "clues": (q > 0).sum(1),
                                                                       "group_key": np.array(keys, object)})
            return
        path = Path(o["source"]) / f"{split}.csv"
        if split == "train" and o["subsample_size"]:
            q, a, r, rows = self._subsample(path, o, stats)
            if not len(q):
                raise ValueError(f"{path}: no rows" + (f" with rating >= {o['min_difficulty']}" if o["min_difficulty"] else "")
                                 + "; an empty train split cannot be trained on")
            yield from self._batches(split, o, q + 1, a + 1, num_aug, {"rating": r, "csv_line": rows + 2})
            return
        index = 0
        for first, q, a, r in read_csv_batches(path, n):
            stats["rows_read"] += len(r)
            keep = r >= o["min_difficulty"]
            stats["puzzles"] += int(keep.sum())
            rows = first + np.flatnonzero(keep)
            yield from self._batches(split, o, q[keep] + 1, a[keep] + 1, num_aug, {"rating": r[keep], "csv_line": rows + 2},
                                     start=index)
            index += int(keep.sum())
        if split == "train" and index == 0:
            raise ValueError(f"{path}: no rows" + (f" with rating >= {o['min_difficulty']}" if o["min_difficulty"] else "")
                             + "; an empty train split cannot be trained on")

    def _subsample(self, path: Path, o: dict[str, Any], stats: Counter):
        """Memory holds only the chosen rows: one pass counts the rows (or, for --min-difficulty,
        reads every rating); HRM's choice (``choice(total, size, replace=False)``
        over the rows passing --min-difficulty, seeded here, in the chosen order); then only
        those lines are read and checked."""
        n, md = o["size"], o["min_difficulty"]
        index = LineIndex(path)
        total = max(0, index.lines - 1)
        stats["rows_read"] += total
        if md > 0:
            ratings, _ = scan_ratings(path, n)
            elig = np.flatnonzero(ratings >= md)
        else:
            elig = np.arange(total)
        size = o["subsample_size"]
        rng = np.random.default_rng(np.random.SeedSequence(o["seed"], spawn_key=(SPLIT_IDS["train"], 1)))
        sel = elig[rng.choice(elig.size, size=size, replace=False)] if size < elig.size else elig
        stats["puzzles"] += len(sel)
        q, a, r = read_lines_at(path, n, sel, index)
        return q, a, r, sel

    def _batches(self, split: str, o: dict[str, Any], q: np.ndarray, a: np.ndarray, num_aug: int,
                 columns: dict[str, np.ndarray], start: int = 0) -> Iterator[GroupBatch]:
        """Augment and cut into GroupBatches of about CHUNK_ROWS rows. The seed stream of each
        chunk is keyed by its first puzzle's index, so the bytes never depend on CSV block sizes."""
        k = 1 + num_aug
        per = max(1, CHUNK_ROWS // k)
        n = o["size"]
        for b0 in range(0, len(q), per):
            b1 = min(len(q), b0 + per)
            rng = np.random.default_rng(np.random.SeedSequence(o["seed"], spawn_key=(SPLIT_IDS[split], 2, start + b0)))
            xq, xa, aug = augment_groups(q[b0:b1], a[b0:b1], num_aug, rng, n)
            cols = {"puzzle": np.repeat(np.arange(start + b0, start + b1, dtype=np.int32), k),
                    "augmentation": aug.astype(np.int32)}
            cols.update({c: np.repeat(v[b0:b1], k) for c, v in columns.items()})
            yield GroupBatch(IDENTIFIER, xq, xa, np.full(b1 - b0, k, np.int64), columns=cols)

    def report(self) -> dict[str, Any]:
        total: Counter = Counter()
        for s in self._stats.values():
            total.update(s)
        out = {k: int(v) for k, v in sorted(total.items())}
        if ss.BACKEND:
            out["solver"] = ss.BACKEND
        return out

    # -- domain check and metric -----------------------------------------------------
    def check(self, dataset, progress: bool = False, unique: bool | None = None, **_: Any) -> list:
        """validate --deep: every label is a complete valid grid that keeps the input's clues, and
        inputs hold only blanks and digits. ``unique`` (or HRM_SUDOKU_CHECK_UNIQUE=1) also solves
        every puzzle and reports those with more than one solution."""
        return check_dataset(dataset, unique=unique)

    def score(self, dataset, split: str, predictions: np.ndarray) -> dict[str, float]:
        """``solved``: share of predictions that are complete valid grids keeping the clues (any
        solution counts, not only the label); ``exact``: share equal to the label."""
        r = self.score_examples(dataset, split, predictions)
        N = len(r["solved"])
        return {"solved": float(r["solved"].mean()) if N else 0.0,
                "exact": float(r["exact"].mean()) if N else 0.0, "examples": int(N)}

    def score_examples(self, dataset, split: str, predictions: np.ndarray) -> dict[str, np.ndarray]:
        """Per example: ``valid_grid`` (complete, rows/columns/boxes hold each digit once),
        ``keeps_clues``, ``solved`` (both), ``exact`` (equals the label)."""
        x, y = _split_arrays(dataset, split)
        p = np.asarray(predictions).reshape(x.shape[0], -1)
        n = size_of(x.shape[1], _extra(dataset, split))
        return score_grids(x, y, p, n)


def _extra(dataset, split: str) -> dict:
    try:
        return dataset.split(split).metadata.extra
    except Exception:
        return {}


def _split_arrays(dataset, split: str) -> tuple[np.ndarray, np.ndarray]:
    from hrm_data.format import Dataset
    ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
    sp = ds.split(split)
    x = np.concatenate([np.asarray(sp.set(s).inputs) for s in sp.metadata.sets])
    y = np.concatenate([np.asarray(sp.set(s).labels) for s in sp.metadata.sets])
    return x, y


def score_grids(inputs: np.ndarray, labels: np.ndarray, preds: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Token arrays (N, n*n) -> per-example bool arrays valid_grid, keeps_clues, solved, exact."""
    N = len(inputs)
    out = {k: np.zeros(N, bool) for k in ("valid_grid", "keeps_clues", "solved", "exact")}
    for a in range(0, N, CHUNK_ROWS):
        b = min(N, a + CHUNK_ROWS)
        x, p = np.asarray(inputs[a:b]).astype(np.int64), np.asarray(preds[a:b]).astype(np.int64)
        valid = ss.valid_solutions(p - 1, n)
        keeps = ((x <= 1) | (p == x)).all(axis=1)
        out["valid_grid"][a:b] = valid
        out["keeps_clues"][a:b] = keeps
        out["solved"][a:b] = valid & keeps
        out["exact"][a:b] = (p == np.asarray(labels[a:b])).all(axis=1)
    return out


def check_dataset(dataset, unique: bool | None = None, max_per_code: int = 20) -> list:
    import os

    from hrm_data.validate import Finding
    if unique is None:
        unique = os.environ.get("HRM_SUDOKU_CHECK_UNIQUE", "") not in ("", "0")
    findings: list = []
    counts: Counter = Counter()

    def add(code, split, set_name, rows, field, message):
        counts[code] += len(rows)
        for i in rows[:max(0, max_per_code - (counts[code] - len(rows)))]:
            findings.append(Finding(code, "error", split=split, set=set_name, file=f"{set_name}__{field}.npy",
                                    index=int(i), message=message))

    for split in ("train", "test"):
        if not dataset.has_split(split):
            continue
        sp = dataset.split(split)
        n = size_of(sp.metadata.seq_len, sp.metadata.extra)
        for set_name, arr in sp.sets.items():
            X, Y = arr.inputs, arr.labels
            for a in range(0, arr.num_examples, CHUNK_ROWS):
                b = min(arr.num_examples, a + CHUNK_ROWS)
                x, y = np.asarray(X[a:b]).astype(np.int64), np.asarray(Y[a:b]).astype(np.int64)
                bad_in = np.flatnonzero(((x < 1) | (x > n + 1)).any(axis=1))
                add("B201", split, set_name, a + bad_in, "inputs",
                    f"input holds a token other than blank (1) and digits (2..{n + 1})")
                valid = ss.valid_solutions(y - 1, n)
                add("B202", split, set_name, a + np.flatnonzero(~valid), "labels",
                    f"label is not a complete valid {n} x {n} grid (each digit once per row, column and box)")
                disagree = ~((x <= 1) | (x == y)).all(axis=1) & valid
                add("B203", split, set_name, a + np.flatnonzero(disagree), "labels",
                    "label changes a clue of the input")
                if unique:
                    ok = np.flatnonzero(valid & ~disagree)
                    cnt, _, _ = ss.solve(np.clip(x[ok] - 1, 0, n), n)
                    add("B204", split, set_name, a + ok[cnt != 1], "inputs",
                        "the puzzle has more than one solution, so the label is one arbitrary choice")
    for code, k in counts.items():
        if k > max_per_code:
            findings.append(Finding(code, "error", message=f"{k - max_per_code} more {code} findings not listed"))
    return findings
