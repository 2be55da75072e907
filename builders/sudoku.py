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
CHUNK_ROWS = 1 << 16    # rows per written batch (bounds memory; fixed, so the bytes never depend on it)
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


def _line_of_row(path: Path, row: int) -> int:
    """File line (1-based) of data row ``row`` (0-based, after the header), as the csv module
    counts them; only used to word an error."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        next(reader, None)
        k = -1
        for rec in reader:
            if rec:
                k += 1
            if k == row:
                return reader.line_num
    return row + 2


def _find_bad_line(path: Path) -> str:
    """The first line whose field count is not 4 (what pyarrow refused), as csv reads it."""
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f)
        head = next(reader, None)
        if head is None:
            return f"{path}: empty file; expected a header line 'source,question,answer,rating'"
        if len(head) != 4:
            return f"{path}:1: header has {len(head)} columns; expected 4 (source,question,answer,rating)"
        for rec in reader:
            if rec and len(rec) != 4:
                return (f"{path}:{reader.line_num}: {len(rec)} columns, expected 4 "
                        "(source,question,answer,rating); fix or delete that line")
    return f"{path}: not a readable CSV"


def read_csv_batches(path: str | Path, n: int, block_rows: int = CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Stream a Sudoku CSV (header, then source,question,answer,rating by position, as HRM reads
    it): yields (first row index, questions (b, n*n) uint8 values 0..n, answers, ratings int64).
    Any malformed row raises CSVError naming the file and line."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    path = Path(path)
    if not path.is_file():
        raise CSVError(f"{path}: not found (or not a file); --source needs a folder with train.csv and test.csv")
    C = n * n
    lut_q, lut_a = _lut(n, True), _lut(n, False)
    ropts = pacsv.ReadOptions(skip_rows=1, column_names=["source", "question", "answer", "rating"],
                              block_size=max(1 << 20, block_rows * (2 * C + 40)))
    copts = pacsv.ConvertOptions(column_types={k: pa.string() for k in ("source", "question", "answer", "rating")})
    try:
        reader = pacsv.open_csv(path, read_options=ropts, convert_options=copts,
                                parse_options=pacsv.ParseOptions(newlines_in_values=False))
    except pa.ArrowInvalid as e:
        if "Empty CSV file" in str(e):
            return
        raise CSVError(_find_bad_line(path)) from None
    first = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid:
            raise CSVError(_find_bad_line(path)) from None
        b = batch.num_rows
        if b == 0:
            continue
        cols = []
        for name, lut in (("question", lut_q), ("answer", lut_a)):
            arr = batch.column(name)
            offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset:arr.offset + b + 1]
            data = np.frombuffer(arr.buffers()[2], np.uint8) if arr.buffers()[2] is not None else np.zeros(0, np.uint8)
            bad = np.flatnonzero(np.diff(offsets) != C)
            if bad.size:
                i = int(bad[0])
                raise CSVError(f"{path}:{_line_of_row(path, first + i)}: {name} has {int(offsets[i + 1] - offsets[i])} "
                               f"characters, expected {C} for a {n} x {n} Sudoku (--size {n})")
            vals = lut[data[offsets[0]:offsets[-1]]].reshape(b, C)
            badc = np.flatnonzero((vals == 255).any(axis=1))
            if badc.size:
                i = int(badc[0])
                j = int(np.flatnonzero(vals[i] == 255)[0])
                ch = chr(int(data[offsets[i] + j]))
                allowed = f"digits 1-{n}" + (" and '.' or '0' for blanks" if name == "question" else " (a complete grid)")
                raise CSVError(f"{path}:{_line_of_row(path, first + i)}: {name} character {j + 1} is {ch!r}; "
                               f"allowed: {allowed}")
            cols.append(vals)
        try:
            ratings = np.asarray(batch.column("rating").cast(pa.int64()).to_numpy(zero_copy_only=False))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raw = batch.column("rating").to_pylist()
            i = next(k for k, v in enumerate(raw) if not _is_int(v))
            raise CSVError(f"{path}:{_line_of_row(path, first + i)}: rating {raw[i]!r} is not an integer") from None
        yield first, cols[0], cols[1], ratings
        first += b


def _is_int(v: Any) -> bool:
    try:
        int(v)
        return True
    except (TypeError, ValueError):
        return False


def read_csv(path: str | Path, n: int = 9, min_difficulty: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A whole CSV as arrays (questions, answers, ratings, data-row index), rows with rating >=
    ``min_difficulty`` only (small files; the builder streams)."""
    qs, as_, rs, idx = [], [], [], []
    for first, q, a, r in read_csv_batches(path, n):
        keep = r >= min_difficulty
        qs.append(q[keep]), as_.append(a[keep]), rs.append(r[keep]), idx.append(first + np.flatnonzero(keep))
    C = n * n
    if not qs:
        return np.zeros((0, C), np.uint8), np.zeros((0, C), np.uint8), np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(qs), np.concatenate(as_), np.concatenate(rs), np.concatenate(idx)


# ----------------------------------------------------------------------------- augmentation

def augment_groups(q: np.ndarray, a: np.ndarray, num_aug: int, rng: np.random.Generator, n: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tokens (B, C) -> (B * (1 + num_aug), C) rows, each base followed by its copies (the first
    copy unchanged), and the index of the transform per row (0 = original)."""
    B, C = q.shape
    k = 1 + num_aug
    xq = np.repeat(q, k, axis=0)
    xa = np.repeat(a, k, axis=0)
    aug = np.tile(np.arange(k), B)
    if num_aug:
        rows = np.flatnonzero(aug > 0)
        cell_map, digit_map = ss.random_symmetries(rng, rows.size, n)
        xq[rows] = ss.apply_symmetries(xq[rows], cell_map, digit_map, offset=1)
        xa[rows] = ss.apply_symmetries(xa[rows], cell_map, digit_map, offset=1)
    return xq, xa, aug


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
            yield from self._batches(split, o, q + 1, a + 1, num_aug, {"rating": r, "csv_row": rows})
            return
        index = 0
        for first, q, a, r in read_csv_batches(path, n):
            stats["rows_read"] += len(r)
            keep = r >= o["min_difficulty"]
            stats["puzzles"] += int(keep.sum())
            rows = first + np.flatnonzero(keep)
            yield from self._batches(split, o, q[keep] + 1, a[keep] + 1, num_aug, {"rating": r[keep], "csv_row": rows},
                                     start=index)
            index += int(keep.sum())

    def _subsample(self, path: Path, o: dict[str, Any], stats: Counter):
        """Two passes, so memory holds only the chosen rows: count the eligible rows, choose as
        HRM does (``choice(total, size, replace=False)``, seeded here), collect, keep its order."""
        n, md = o["size"], o["min_difficulty"]
        total = 0
        for _, _, _, r in read_csv_batches(path, n):
            stats["rows_read"] += len(r)
            total += int((r >= md).sum())
        size = o["subsample_size"]
        rng = np.random.default_rng(np.random.SeedSequence(o["seed"], spawn_key=(SPLIT_IDS["train"], 1)))
        sel = rng.choice(total, size=size, replace=False) if size < total else np.arange(total)
        wanted = np.sort(sel)
        parts: list[tuple] = []
        seen = 0
        for first, q, a, r in read_csv_batches(path, n):
            elig = np.flatnonzero(r >= md)
            pos = seen + np.arange(elig.size)
            hit = np.isin(pos, wanted)
            parts.append((q[elig[hit]], a[elig[hit]], r[elig[hit]], first + elig[hit]))
            seen += elig.size
        C = n * n
        q = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, C), np.uint8)
        a = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, C), np.uint8)
        r = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
        rows = np.concatenate([p[3] for p in parts]) if parts else np.zeros(0, np.int64)
        order = np.searchsorted(wanted, sel)
        stats["puzzles"] += len(order)
        return q[order], a[order], r[order], rows[order]

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
            cols = {"puzzle": np.repeat(np.arange(start + b0, start + b1), k), "augmentation": aug}
            cols.update({c: np.repeat(v[b0:b1], k) for c, v in columns.items()})
            yield GroupBatch(IDENTIFIER, xq, xa, np.full(b1 - b0, k, np.int64), columns=cols)

    def report(self) -> dict[str, Any]:
        total: Counter = Counter()
        for s in self._stats.values():
            total.update(s)
        out = {k: int(v) for k, v in sorted(total.items())}
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
