"""Maze: the shortest path from S to G on an N x N grid of walls (HRM's Maze-Hard task).

Two sources of mazes:

* ``--source DIR``: ``train.csv`` / ``test.csv`` in the public layout (``source,question,answer,
  rating``, N*N characters of ``# SGo``), read as sapientinc/HRM's build_maze_dataset.py reads them
  (same rows, same order, same groups), with a one-line error naming the file and line of a bad row.
* generated (the default): walls as the "Beyond A*" (searchformer) generator draws them, start and
  goal found by a BFS double sweep so that paths of 110+ moves on 30 x 30 take seconds, not hours.
  See docs/builders/maze.md for the sampler, how it differs from plain rejection, and its rates.

One group per maze; ``--aug`` makes the 8 dihedral variants of each train maze puzzles of its group.
Encoding as HRM: PAD 0, ``# SGo`` -> 1..5, vocab 6, seq_len N*N; the label is the maze with the
path cells (strictly between S and G) marked ``o``.
"""
from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from hrm_data.augment import DIHEDRAL_NAMES, NUM_DIHEDRAL, dihedral
from hrm_data.builder import Builder, GroupBatch, Info, Option

from . import maze_solver as ms
from .maze_solver import CHARSET, GLYPHS, GOAL, MAX_PACKED, OPEN, PALETTE, PATH, START, TOKEN_NAMES, VOCAB_SIZE, WALL

SPLIT_IDS = {"train": 0, "test": 1}
IDENTIFIER = "maze"
BATCH = 2048                 # layouts screened per generator batch (fixed: part of what a seed means)
MAX_BATCHES = 20_000
GIVE_UP_BATCHES = 50         # ... without a single hard layout: the floor is out of reach
CHUNK = 4096               # CSV rows per GroupBatch


class SourceError(ValueError):
    """A malformed source CSV (the CLI prints it as one line and exits 2)."""


# ----------------------------------------------------------------------------- CSV source

_LUT = np.full(256, 255, np.uint8)
_LUT[np.frombuffer(CHARSET.encode(), np.uint8)] = np.arange(1, len(CHARSET) + 1, dtype=np.uint8)


@dataclass
class CsvMazes:
    inputs: np.ndarray       # (R, N*N) uint8 tokens
    labels: np.ndarray
    size: int
    sources: list[str]
    ratings: list[str]


def _tokens(texts: list[str], lines: list[int], nn: int, path: Path, column: str) -> np.ndarray:
    """Map rows of ``# SGo`` text to tokens in one vectorized pass; the first bad row is reported."""
    for t, line in zip(texts, lines):
        if len(t) != nn:
            raise SourceError(f"{path} line {line}: {column} has {len(t)} characters, expected {nn} "
                              f"(every maze of a file has the first row's size); fix or remove the row")
    try:
        raw = np.frombuffer("".join(texts).encode("ascii"), np.uint8).reshape(len(texts), nn)
    except UnicodeEncodeError:
        i = next(i for i, t in enumerate(texts) if not t.isascii())
        ch = next(c for c in texts[i] if not c.isascii())
        raise SourceError(f"{path} line {lines[i]}: {column} has the character {ch!r}; mazes use only "
                          f"'#', ' ', 'S', 'G', 'o'") from None
    tok = _LUT[raw]
    bad = (tok == 255).any(1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        ch = chr(raw[i][tok[i] == 255][0])
        raise SourceError(f"{path} line {lines[i]}: {column} has the character {ch!r}; mazes use only "
                          f"'#', ' ', 'S', 'G', 'o'")
    return tok


def read_csv(path: str | Path) -> CsvMazes:
    """Rows of a public-layout maze CSV as HRM reads them: header skipped, four columns by
    position, grid side from the first row's length."""
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: not a file; --source names a folder with train.csv and test.csv")
    qs, ans, sources, ratings, lines = [], [], [], [], []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            if next(reader, None) is None:
                raise SourceError(f"{path}: empty file; expected a header row and then "
                                  f"source,question,answer,rating rows")
            for row in reader:
                if len(row) != 4:
                    raise SourceError(f"{path} line {reader.line_num}: {len(row)} columns, expected 4 "
                                      f"(source,question,answer,rating)")
                sources.append(row[0])
                qs.append(row[1])
                ans.append(row[2])
                ratings.append(row[3])
                lines.append(reader.line_num)
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise SourceError(f"{path}: not a CSV file ({e})") from None
    if not qs:
        raise SourceError(f"{path}: no mazes after the header row")
    nn = len(qs[0])
    n = int(round(nn ** 0.5))
    if n < 2 or n * n != nn:
        raise SourceError(f"{path} line {lines[0]}: question has {nn} characters, which is not N*N for "
                          f"a square maze")
    return CsvMazes(_tokens(qs, lines, nn, path, "question"), _tokens(ans, lines, nn, path, "answer"), n,
                    sources, ratings)


# ----------------------------------------------------------------------------- generator

def default_min_path(size: int, min_path: int) -> int:
    """0 means the searchformer generator's own floor: a plan of at least N cells (N - 1 moves)."""
    return max(1, size - 1) if min_path <= 0 else min_path


@dataclass
class Generated:
    inputs: np.ndarray       # (A, N*N) uint8
    labels: np.ndarray
    walls: np.ndarray        # (A,) wall count
    length: np.ndarray       # (A,) shortest path moves
    paths: np.ndarray        # (A,) number of shortest paths (saturating)
    stats: Counter


def random_layouts(rng: np.random.Generator, n: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walls as searchformer draws them: a wall count k uniform in [30%, 50%] of the cells
    (``cells // 10 * 3`` to ``cells // 10 * 5``, inclusive) at uniformly random cells: the k cells
    with the smallest random keys. Also returns a uniformly random open cell per layout (the one
    with the next key)."""
    cells = n * n
    k = rng.integers(cells // 10 * 3, cells // 10 * 5 + 1, size=count)
    keys = rng.random((count, cells))
    kth = np.sort(keys, axis=1)[np.arange(count)[:, None], np.stack([k - 1, k], 1)]
    wall = keys <= kth[:, :1]
    first_open = (keys == kth[:, 1:]).argmax(1)
    return wall.reshape(count, n, n), k, first_open


def generate_batch(rng: np.random.Generator, n: int, min_path: int, batch: int = BATCH,
                   limit: int | None = None) -> Generated:
    """Screen ``batch`` random layouts; return the mazes with a shortest path of >= ``min_path`` moves
    (the first ``limit`` of them, when given; the others cost no label work).

    Per layout: BFS from a random open cell v; u = the first cell of its last layer; BFS from u.
    The layout is hard when some cell is >= min_path from u (ecc(u) >= min_path; when 2 ecc(v) <
    min_path no pair can be, and the second BFS is skipped). Endpoints: x uniform among the
    cells >= min_path from u, then y uniform among the cells >= min_path from x (u is one of them),
    start/goal order by a coin flip. Labels and path counts come from a dense BFS from the goal."""
    L = int(min_path)
    stats: Counter = Counter(layouts=batch)
    wall, k, v = random_layouts(rng, n, batch)
    open_ = ~wall
    u_x, u_y, coin = rng.random(batch), rng.random(batch), rng.random(batch) < 0.5
    bits = ms.pack_rows(open_)
    s1 = ms.sweep(bits, v, L, need_far=False)
    cand = np.flatnonzero(2 * s1["ecc"] >= L)
    empty = Generated(np.zeros((0, n * n), np.uint8), np.zeros((0, n * n), np.uint8), np.zeros(0, np.int64),
                      np.zeros(0, np.int64), np.zeros(0, np.int64), stats)
    if not cand.size:
        return empty
    u = ms.pick_bit(s1["last"][cand], np.zeros(cand.size))
    s2 = ms.sweep(bits[cand], u, L)
    hard = s2["ecc"] >= L
    cand, far_u = cand[hard], s2["far"][hard]
    stats["hard_layouts"] += int(cand.size)
    if limit is not None:
        cand, far_u = cand[:limit], far_u[:limit]
    if not cand.size:
        return empty
    x = ms.pick_bit(far_u, u_x[cand])
    s3 = ms.sweep(bits[cand], x, L)
    y = ms.pick_bit(s3["far"], u_y[cand])
    s = np.where(coin[cand], x, y)
    g = np.where(coin[cand], y, x)
    A = cand.size
    grid = np.where(wall[cand], WALL, OPEN).astype(np.uint8).reshape(A, -1)
    grid[np.arange(A), s] = START
    grid[np.arange(A), g] = GOAL
    dist = ms.distances(open_[cand], g)
    length = dist.reshape(A, -1)[np.arange(A), s].astype(np.int64)
    paths = ms.count_paths(dist, s)
    label = grid.copy()
    label[ms.label_path(dist, s).reshape(A, -1)] = PATH
    return Generated(grid, label, k[cand], length, paths, stats)


def canonical_key(grid: np.ndarray, n: int) -> str:
    """Hash of a maze (walls, S, G) that is the same for all 8 dihedral variants."""
    g = np.asarray(grid, np.uint8).reshape(n, n)
    return min(hashlib.blake2b(np.ascontiguousarray(dihedral(g, t)).tobytes(), digest_size=12).hexdigest()
               for t in range(NUM_DIHEDRAL))


def exact_key(grid: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(grid, np.uint8).tobytes(), digest_size=12).hexdigest()


# ----------------------------------------------------------------------------- the builder

class Maze(Builder):
    name = "maze"
    description = "Shortest paths through N x N mazes (HRM's Maze-Hard): generated, or read from the public CSVs"
    default_out = "data/maze"
    version = "1"
    options = (
        Option("source", "", "Folder with train.csv and test.csv in the public maze layout "
               "(source,question,answer,rating); read as HRM reads them. Empty: generate mazes."),
        Option("generate", False, "Generate mazes (the default when --source is not given)."),
        Option("size", 30, "Generated mazes are N x N (4..64); seq_len N*N."),
        Option("count", 1000, "Generated train mazes (groups)."),
        Option("test_count", 1000, "Generated test mazes."),
        Option("min_path", 0, "Keep mazes whose shortest path has at least this many moves; 0 = N - 1 "
               "(searchformer's floor). Maze-Hard keeps > 110 at 30 x 30, i.e. --min-path 111."),
        Option("unique_path", False, "Keep only mazes whose shortest path is unique (so exact match is fair)."),
        Option("aug", False, "Add the 8 dihedral variants of each train maze as puzzles of its group."),
        Option("subsample_size", 0, "With --source: keep this many random train rows (0 = all), as HRM's "
               "--subsample-size but drawn from --seed."),
        Option("seed", 0, "Seed of every random choice; train and test use disjoint streams."),
    )

    def __init__(self) -> None:
        self._stats: dict[str, Counter] = {}
        self._seen: set[str] = set()
        self._csv: dict[str, CsvMazes] = {}

    # -- options -------------------------------------------------------------------
    def _opts(self, options: dict[str, Any]) -> dict[str, Any]:
        o = {**self.defaults(), **options}
        src = str(o["source"] or "")
        if src and o["generate"]:
            raise ValueError("give either --source or --generate, not both")
        size = int(o["size"])
        if not src and not 4 <= size <= MAX_PACKED:
            raise ValueError(f"--size must be between 4 and {MAX_PACKED}, got {size}")
        for name, low in (("count", 1), ("test_count", 0), ("min_path", 0), ("subsample_size", 0), ("seed", 0)):
            if int(o[name]) < low:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, got {o[name]}")
        L = default_min_path(size, int(o["min_path"]))
        if not src and L > size * size // 2:
            raise ValueError(f"--min-path {L} is longer than any {size} x {size} maze of 30-50% walls can "
                             f"plausibly have; use at most {size * size // 2}")
        return dict(source=src, size=size, count=int(o["count"]), test_count=int(o["test_count"]), min_path=L,
                    unique_path=bool(o["unique_path"]), aug=bool(o["aug"]),
                    subsample_size=int(o["subsample_size"]), seed=int(o["seed"]))

    def _read(self, o: dict[str, Any], split: str) -> CsvMazes:
        if split not in self._csv:
            root = Path(o["source"])
            if not root.is_dir():
                raise SourceError(f"{root}: --source must be a folder with train.csv and test.csv")
            self._csv[split] = read_csv(root / f"{split}.csv")
        return self._csv[split]

    def info(self, options: dict[str, Any]) -> Info:
        o = self._opts(options)
        self._csv = {}
        if o["source"]:
            tr, te = self._read(o, "train"), self._read(o, "test")
            if tr.size != te.size:
                raise SourceError(f"{o['source']}: train.csv mazes are {tr.size} x {tr.size} but test.csv's "
                                  f"are {te.size} x {te.size}")
            n = tr.size
        else:
            n = o["size"]
        return Info(vocab_size=VOCAB_SIZE, seq_len=n * n, pad_id=0, ignore_label_id=0, identifiers=(IDENTIFIER,),
                    grid_shape=(n, n), token_names=TOKEN_NAMES, palette=PALETTE, glyphs=GLYPHS,
                    extra={"maze": {
                        "source": "csv" if o["source"] else "generated", "charset": CHARSET,
                        "movement": "4-neighbour", "min_path": None if o["source"] else o["min_path"],
                        "label": "the shortest path's cells strictly between S and G marked o; generated "
                                 "mazes with several shortest paths: the walk from S that steps to the first "
                                 "of up, down, left, right one move closer to G",
                    }})

    def count(self, split: str, options: dict[str, Any]) -> int | None:
        o = {**self.defaults(), **options}
        if o["source"]:
            return None
        return int(o["count"] if split == "train" else o["test_count"])

    # -- groups ----------------------------------------------------------------------
    def groups(self, split: str, options: dict[str, Any]) -> Iterator[GroupBatch]:
        o = self._opts(options)
        if split == "train":
            self._seen, self._stats = set(), {}
        stats = self._stats.setdefault(split, Counter())
        aug = o["aug"] and split == "train"
        if o["source"]:
            yield from self._csv_groups(o, split, aug, stats)
        else:
            yield from self._generated_groups(o, split, aug, stats)

    def _batch(self, x: np.ndarray, y: np.ndarray, n: int, aug: bool, columns: dict[str, list]) -> GroupBatch:
        """Mazes (m, N*N) as m groups: one puzzle each, or the 8 dihedral variants (HRM's order:
        transform 0..7) as 8 one-example puzzles of the maze's group."""
        m = x.shape[0]
        tids = range(NUM_DIHEDRAL) if aug else (0,)
        k = len(tids)
        xs, ys = np.empty((m, k, n, n), x.dtype), np.empty((m, k, n, n), y.dtype)
        for j, t in enumerate(tids):     # one copy per transform, straight into place
            xs[:, j] = dihedral(x.reshape(m, n, n), t)
            ys[:, j] = dihedral(y.reshape(m, n, n), t)
        xs, ys = xs.reshape(m * k, -1), ys.reshape(m * k, -1)
        cols = {name: np.repeat(np.asarray(v), k) for name, v in columns.items()}
        cols["transform"] = np.tile(np.array([DIHEDRAL_NAMES[t] for t in tids]), m)
        return GroupBatch(IDENTIFIER, xs, ys, np.full(m, k, np.int64), cols)

    def _csv_groups(self, o, split, aug, stats) -> Iterator[GroupBatch]:
        m = self._read(o, split)
        order = np.arange(len(m.sources))
        if split == "train" and 0 < o["subsample_size"] < len(order):
            rng = np.random.default_rng(np.random.SeedSequence(o["seed"], spawn_key=(SPLIT_IDS[split],)))
            order = rng.choice(len(order), size=o["subsample_size"], replace=False)
        for a in range(0, len(order), CHUNK):
            idx = order[a:a + CHUNK]
            stats["mazes"] += len(idx)
            yield self._batch(m.inputs[idx], m.labels[idx], m.size, aug,
                              {"row": idx, "source": [m.sources[i] for i in idx],
                               "rating": [m.ratings[i] for i in idx]})

    def _generated_groups(self, o, split, aug, stats) -> Iterator[GroupBatch]:
        n, L = o["size"], o["min_path"]
        want = o["count"] if split == "train" else o["test_count"]
        made = 0
        for b in range(MAX_BATCHES):
            if made >= want:
                return
            rng = np.random.default_rng(np.random.SeedSequence(o["seed"], spawn_key=(SPLIT_IDS[split], b)))
            gen = generate_batch(rng, n, L, batch=BATCH, limit=2 * (want - made) + 16)
            stats.update(gen.stats)
            if b + 1 == GIVE_UP_BATCHES and not stats["hard_layouts"]:
                raise RuntimeError(f"{split}: not one of {GIVE_UP_BATCHES * BATCH:,} random {n} x {n} layouts has a "
                                   f"shortest path of {L} moves; lower --min-path")
            keep, keys = [], []
            for j in range(gen.inputs.shape[0]):
                if made >= want:
                    break
                stats["found"] += 1
                several = int(gen.paths[j]) > 1
                stats["several_shortest"] += several
                if several and o["unique_path"]:
                    stats["dropped_several_shortest"] += 1
                    continue
                key = canonical_key(gen.inputs[j], n)
                if key in self._seen:
                    stats["dropped_duplicate"] += 1
                    continue
                self._seen.add(key)
                keep.append(j)
                keys.append(key)
                made += 1
            if keep:
                stats["mazes"] += len(keep)
                yield self._batch(gen.inputs[keep], gen.labels[keep], n, aug,
                                  {"group_key": keys, "walls": gen.walls[keep], "path_length": gen.length[keep],
                                   "shortest_paths": np.minimum(gen.paths[keep], ms.COUNT_CAP)})
        raise RuntimeError(f"{split}: only {made} of {want} mazes after {MAX_BATCHES * BATCH:,} layouts; lower "
                           f"--min-path or --count")

    def report(self) -> dict[str, Any]:
        total = Counter()
        for s in self._stats.values():
            total.update(s)
        out: dict[str, Any] = {"mazes": int(total["mazes"])}
        if total.get("layouts"):
            out.update(layouts=int(total["layouts"]), hard_layouts=int(total["hard_layouts"]),
                       found=int(total["found"]), several_shortest=int(total["several_shortest"]),
                       dropped_several_shortest=int(total["dropped_several_shortest"]),
                       dropped_duplicate=int(total["dropped_duplicate"]))
            if total["found"]:
                out["several_shortest_rate"] = round(total["several_shortest"] / total["found"], 4)
        return out

    # -- domain check and metric -----------------------------------------------------
    def check(self, dataset, progress: bool = False, **_: Any) -> list:
        """validate --deep: every input is a maze with one S and one G and no path marks; every
        label is that maze with one shortest S-G path marked (connected, through open cells)."""
        return check_dataset(dataset)

    def score(self, dataset, split: str, predictions: np.ndarray) -> dict:
        """Shares of examples whose predicted grid marks a valid S-G path (``path_valid``) and a
        shortest one (``path_optimal``; any shortest path counts, not only the label's)."""
        r = self.score_examples(dataset, split, predictions)
        n = len(r["valid"])
        return {"path_valid": float(r["valid"].mean()) if n else 0.0,
                "path_optimal": float(r["optimal"].mean()) if n else 0.0, "examples": int(n)}

    def score_examples(self, dataset, split: str, predictions: np.ndarray) -> dict[str, np.ndarray]:
        """Per example: ``valid``, ``optimal`` (bool), ``path_length`` and ``shortest`` (moves; -1 when
        the prediction is no path / the maze has none)."""
        from hrm_data.format import Dataset
        ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
        sp = ds.split(split)
        x = np.concatenate([np.asarray(sp.set(s).inputs) for s in sp.metadata.sets])
        shape = _shape(sp.metadata.seq_len, sp.metadata.extra)
        p = np.asarray(predictions).reshape(x.shape[0], -1)
        r = _grade_chunked(x, p, shape)
        return {"valid": r["valid"], "optimal": r["optimal"], "path_length": r["length"], "shortest": r["shortest"]}


def _shape(seq_len: int, extra: dict) -> tuple[int, int]:
    gs = extra.get("grid_shape")
    if gs and int(gs[0]) * int(gs[1]) == seq_len:
        return int(gs[0]), int(gs[1])
    side = int(round(seq_len ** 0.5))
    return side, side


def _grade_chunked(x: np.ndarray, p: np.ndarray, shape, chunk: int = 4096) -> dict[str, np.ndarray]:
    parts = [ms.grade(x[i:i + chunk], p[i:i + chunk], shape) for i in range(0, len(x), chunk)]
    if not parts:
        return {k: np.zeros(0, dt) for k, dt in (("valid", bool), ("optimal", bool), ("length", np.int64),
                                                 ("shortest", np.int64))}
    return {k: np.concatenate([q[k] for q in parts]) for k in parts[0]}


def check_dataset(dataset, max_per_code: int = 20) -> list:
    from hrm_data.validate import Finding
    findings: list = []
    per_code: Counter = Counter()

    def add(code, split, set_name, idx, message, file="labels"):
        per_code[code] += 1
        if per_code[code] <= max_per_code:
            findings.append(Finding(code=code, severity="error", split=split, set=set_name,
                                    file=f"{set_name}__{file}.npy", index=int(idx), message=message))

    for split in ("train", "test"):
        if not dataset.has_split(split):
            continue
        sp = dataset.split(split)
        shape = _shape(sp.metadata.seq_len, sp.metadata.extra)
        for set_name, arr in sp.sets.items():
            x, y = np.asarray(arr.inputs), np.asarray(arr.labels)
            bad_tok = ((x < WALL) | (x > GOAL)).any(1)
            s, g, one_each = ms.endpoints(x.reshape(-1, *shape))
            for i in np.flatnonzero(bad_tok | ~one_each):
                add("B301", split, set_name, i, "the input is not a maze: it needs exactly one S, one G and "
                    "only '#', ' ', 'S', 'G' cells (no path marks, no padding)", file="inputs")
            r = _grade_chunked(x, y, shape)
            ok_in = ~bad_tok & one_each
            for i in np.flatnonzero(ok_in & (r["shortest"] < 0)):
                add("B302", split, set_name, i, "G cannot be reached from S", file="inputs")
            for i in np.flatnonzero(ok_in & (r["shortest"] >= 0) & ~r["valid"]):
                add("B303", split, set_name, i, "the label does not mark one connected path from S to G through "
                    "open cells (or changes cells other than the path)")
            for i in np.flatnonzero(ok_in & r["valid"] & ~r["optimal"]):
                add("B304", split, set_name, i, f"the labelled path has {int(r['length'][i])} moves; the shortest "
                    f"has {int(r['shortest'][i])}")
    for code, n in per_code.items():
        if n > max_per_code:
            findings.append(Finding(code=code, severity="error", message=f"{n - max_per_code} more {code} findings "
                                                                          "not listed"))
    return findings
