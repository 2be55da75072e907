"""City logistics: least-cost routes on a city grid for vehicles with different road access.

One group per base scenario (a map, an hour of day, a start and an end); one puzzle per vehicle
(identifier = the vehicle), one example per puzzle; ``--num-aug K`` adds K dihedral variants per
vehicle as further puzzles of the group. Everything is generated here from ``--seed``; the exact
oracle lives in ``city_oracle.py``. See docs/builders/city-logistics.md for the vocabulary, the
costs and why every example is well-posed.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from hrm_data.augment import DIHEDRAL_NAMES, NUM_DIHEDRAL, dihedral, dihedral_flat
from hrm_data.builder import Builder, Group, Info, Option, Puzzle

from . import city_oracle as oracle
from .city_oracle import (BUILDING, CLOSED, END, GLYPHS, JAM, NUM_LEVELS, PALETTE, PARK, TOKEN_NAMES,
                          VEHICLES, VOCAB_SIZE, road_token, start_token)

LABEL_MODES = ("route", "optimal-cells")
SPLIT_IDS = {"train": 0, "test": 1}
MAX_ATTEMPTS = 10_000

# internal class codes of the generated map (tokens are derived from these)
K_BUILDING, K_PARK, K_LARGE, K_DIAG, K_SMALL = -1, -2, 0, 1, 2

# hour -> (probabilities of the congestion levels free/light/busy/heavy, jam share, closure share)
TRAFFIC = {
    "rush": ((0.15, 0.30, 0.30, 0.25), 0.10, 0.010),    # 7-9 and 17-19
    "lunch": ((0.30, 0.35, 0.25, 0.10), 0.05, 0.010),   # 12-13
    "night": ((0.75, 0.20, 0.05, 0.00), 0.00, 0.050),   # 22-5: construction closures
    "day": ((0.50, 0.30, 0.15, 0.05), 0.03, 0.010),     # otherwise
}


def period(hour: int) -> str:
    if hour in (7, 8, 9, 17, 18, 19):
        return "rush"
    if hour in (12, 13):
        return "lunch"
    if hour >= 22 or hour <= 5:
        return "night"
    return "day"


# ----------------------------------------------------------------------------- map generator

def generate_map(rng: np.random.Generator, n: int) -> np.ndarray:
    """An n x n city: avenues and streets (large), side streets (small), maybe a diagonal
    thoroughfare, parks and building blocks. Returns class codes (K_*)."""
    kind = np.full((n, n), K_BUILDING, np.int8)
    lo = max(3, round(n / 6))
    hi = max(lo + 1, round(n / 4))

    def lines() -> list[int]:
        sp = int(rng.integers(lo, hi + 1))
        off = int(rng.integers(0, sp))
        return list(range(off, n, sp))

    avenues, streets = lines(), lines()
    kind[:, avenues] = K_LARGE
    kind[streets, :] = K_LARGE

    # side streets: one small street in some gaps between large roads, across some of the blocks
    def side_streets(large: list[int], cross: list[int], vertical: bool) -> None:
        bounds = [-1] + large + [n]
        cuts = [-1] + cross + [n]
        for a, b in zip(bounds[:-1], bounds[1:]):
            if b - a < 4 or rng.random() > 0.85:
                continue
            pos = int(rng.integers(a + 2, b - 1))
            for c0, c1 in zip(cuts[:-1], cuts[1:]):
                if c1 - c0 > 1 and rng.random() < 0.8:
                    seg = slice(c0 + 1, c1)
                    if vertical:
                        kind[seg, pos] = np.where(kind[seg, pos] == K_BUILDING, K_SMALL, kind[seg, pos])
                    else:
                        kind[pos, seg] = np.where(kind[pos, seg] == K_BUILDING, K_SMALL, kind[pos, seg])

    side_streets(avenues, streets, vertical=True)
    side_streets(streets, avenues, vertical=False)

    # the diagonal: a 4-connected staircase from the top edge, down-right or down-left
    if rng.random() < 0.85:
        step = 1 if rng.random() < 0.5 else -1
        c = int(rng.integers(0, n // 2 + 1)) if step == 1 else int(rng.integers(n - 1 - n // 2, n))
        r, down = 0, bool(rng.random() < 0.5)
        while 0 <= r < n and 0 <= c < n:
            if kind[r, c] != K_LARGE:
                kind[r, c] = K_DIAG
            if down:
                r += 1
            else:
                c += step
            down = not down

    # parks: rectangles over buildings and side streets (never over large roads or the diagonal)
    for _ in range(int(rng.integers(0, 1 + max(1, n // 12)))):
        h, w = (int(v) for v in rng.integers(3, max(4, n // 4 + 3), size=2))
        r0, c0 = int(rng.integers(0, max(1, n - h))), int(rng.integers(0, max(1, n - w)))
        block = kind[r0:r0 + h, c0:c0 + w]
        block[(block == K_BUILDING) | (block == K_SMALL)] = K_PARK
    return kind


def generate_traffic(rng: np.random.Generator, kind: np.ndarray, hour: int) -> np.ndarray:
    """State (index into city_oracle.STATES) of every road cell; -1 off the roads."""
    levels_p, jam_share, closed_share = TRAFFIC[period(hour)]
    road = kind >= 0
    state = np.where(road, rng.choice(NUM_LEVELS, size=kind.shape, p=levels_p), -1).astype(np.int8)
    cells = np.argwhere(road)
    n_road = len(cells)

    def segments(share: float, max_len: int, value: int) -> None:
        k = int(rng.binomial(n_road, share / ((max_len + 1) / 2))) if share > 0 else 0
        for _ in range(k):
            r, c = cells[int(rng.integers(0, n_road))]
            dr, dc = ((0, 1), (1, 0), (0, -1), (-1, 0))[int(rng.integers(0, 4))]
            for _ in range(int(rng.integers(1, max_len + 1))):
                if not (0 <= r < kind.shape[0] and 0 <= c < kind.shape[1]) or not road[r, c]:
                    break
                state[r, c] = value
                r, c = r + dr, c + dc

    segments(jam_share, 4, JAM)
    segments(closed_share, 3, CLOSED)
    return state


@dataclass
class Scenario:
    kind: np.ndarray     # (n, n) class codes
    state: np.ndarray    # (n, n) road states
    start: int           # flat index
    end: int
    hour: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.kind.shape

    def base_map(self) -> np.ndarray:
        """Tokens of the map without start and end (jams and closures keep their class)."""
        tok = np.full(self.kind.shape, BUILDING, np.int64)
        tok[self.kind == K_PARK] = PARK
        road = self.kind >= 0
        tok[road] = road_token(self.kind[road].astype(np.int64), self.state[road].astype(np.int64))
        return tok.reshape(-1)

    def encode(self, vehicle: str) -> np.ndarray:
        """The input: the map with START_<vehicle> on the start cell and END on the end cell."""
        x = self.base_map()
        x[self.start] = start_token(vehicle)
        x[self.end] = END
        return x

    def transformed(self, tid: int) -> "Scenario":
        n = self.shape[0]
        marks = np.zeros(n * n, np.int8)
        marks[self.start], marks[self.end] = 1, 2
        m = dihedral(marks.reshape(n, n), tid).reshape(-1)
        return Scenario(np.ascontiguousarray(dihedral(self.kind, tid)), np.ascontiguousarray(dihedral(self.state, tid)),
                        int(np.flatnonzero(m == 1)[0]), int(np.flatnonzero(m == 2)[0]), self.hour)

    def key(self) -> str:
        """Scenario key: hash of the road network, start, end and hour, canonical under the 8
        dihedral transforms (a rotated copy of a scenario has the same key)."""
        n = self.shape[0]
        marks = self.kind.astype(np.int16).reshape(-1).copy()
        marks[self.start], marks[self.end] = 10, 11
        g = marks.reshape(n, n)
        digests = [hashlib.blake2b(np.ascontiguousarray(dihedral(g, t)).tobytes() + bytes([self.hour]),
                                   digest_size=12).hexdigest() for t in range(NUM_DIHEDRAL)]
        return min(digests)


def draw_scenario(rng: np.random.Generator, n: int, min_distance: int) -> Scenario | None:
    """One candidate scenario; None when no start/end pair is far enough apart."""
    kind = generate_map(rng, n)
    hour = int(rng.integers(0, 24))
    state = generate_traffic(rng, kind, hour)
    open_large = np.flatnonzero(((kind == K_LARGE) & (state != CLOSED)).reshape(-1))
    if len(open_large) < 2:
        return None
    start = int(open_large[int(rng.integers(0, len(open_large)))])
    sr, sc = divmod(start, n)
    rr, cc = np.divmod(open_large, n)
    far = open_large[np.abs(rr - sr) + np.abs(cc - sc) >= min_distance]
    if len(far) == 0:
        return None
    end = int(far[int(rng.integers(0, len(far)))])
    return Scenario(kind, state, start, end, hour)


# ----------------------------------------------------------------------------- one scenario, solved

@dataclass
class Built:
    """One accepted base scenario, encoded: what a Group needs plus redraw statistics."""

    index: int
    key: str
    identifiers: list[str]
    inputs: np.ndarray      # (P, n*n) uint8
    labels: np.ndarray
    rows: list[dict[str, Any]]
    stats: Counter = field(default_factory=Counter)


def min_distance_for(size: int, min_distance: int) -> int:
    return size // 2 if min_distance <= 0 else min_distance


def build_scenario(seed: int, split: str, index: int, size: int, vehicles: tuple[str, ...], label: str,
                   num_aug: int, min_distance: int, salt: int = 0) -> Built:
    """Draw base scenario ``index`` of ``split`` from its own seed stream until it is well-posed:
    every vehicle has a route and (label "route") a unique optimal one. Never relaxes anything."""
    key = (SPLIT_IDS[split], index) + ((salt,) if salt else ())
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))
    md = min_distance_for(size, min_distance)
    shape = (size, size)
    order = sorted(vehicles, key=lambda v: len(oracle.allowed_classes(v)))  # most restricted first: cheap rejects
    stats: Counter = Counter()
    for _ in range(MAX_ATTEMPTS):
        stats["attempts"] += 1
        sc = draw_scenario(rng, size, md)
        if sc is None:
            stats["redrawn_no_endpoints"] += 1
            continue
        sols: dict[str, oracle.Solution] = {}
        reason = None
        for v in order:
            sol = oracle.solve(sc.encode(v), shape, v, cells=label == "optimal-cells")
            if sol is None:
                reason = "redrawn_no_route"
                break
            if label == "route" and sol.count != 1:
                reason = "redrawn_not_unique"
                break
            sols[v] = sol
        if reason:
            stats[reason] += 1
            continue
        break
    else:
        raise RuntimeError(f"{split} scenario {index}: no well-posed scenario in {MAX_ATTEMPTS} draws; "
                           f"relax --min-distance or use --label optimal-cells")
    tids = [0] + [int(t) + 1 for t in rng.permutation(NUM_DIHEDRAL - 1)[:num_aug]]
    xs, ys, ids, rows = [], [], [], []
    for v in vehicles:
        x = sc.encode(v)
        y = oracle.label_for(x, sols[v], label)
        for t in tids:
            xs.append(dihedral_flat(x, t, shape))
            ys.append(dihedral_flat(y, t, shape))
            ids.append(v)
            sol = sols[v]
            rows.append({"scenario": index, "vehicle": v, "hour": sc.hour, "period": period(sc.hour),
                         "transform": DIHEDRAL_NAMES[t],
                         "route_length": len(sol.route) - 1 if sol.route is not None else -1,
                         "route_cost": int(sol.cost), "optimal_routes": int(min(sol.count, 1 << 62))})
    return Built(index=index, key=sc.key(), identifiers=ids, inputs=np.stack(xs).astype(np.uint8),
                 labels=np.stack(ys).astype(np.uint8), rows=rows, stats=stats)


def _build_chunk(args: tuple) -> list[Built]:
    """Pool worker (top level, so spawn can import it)."""
    seed, split, indices, size, vehicles, label, num_aug, min_distance = args
    return [build_scenario(seed, split, i, size, vehicles, label, num_aug, min_distance) for i in indices]


# ----------------------------------------------------------------------------- the builder

def parse_vehicles(spec: str | Iterable[str]) -> tuple[str, ...]:
    names = [v.strip().lower() for v in (spec.split(",") if isinstance(spec, str) else spec) if v.strip()]
    unknown = [v for v in names if v not in VEHICLES]
    if unknown or not names:
        raise ValueError(f"--vehicles: unknown vehicle(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(VEHICLES)}")
    if len(set(names)) != len(names):
        raise ValueError("--vehicles: each vehicle may be named once")
    return tuple(names)


MAX_WORKERS = 256  # each worker is a process: a million of them would hang the machine


class CityLogistics(Builder):
    name = "city-logistics"
    description = "Least-cost routes on a city grid for vehicles with different road access"
    default_out = "data/city"
    version = "1"
    options = (
        Option("train_scenarios", 240, "Base scenarios (groups) in train."),
        Option("test_scenarios", 100, "Base scenarios (groups) in test."),
        Option("size", 30, "Map side length: an N x N grid, seq_len N*N."),
        Option("vehicles", ",".join(VEHICLES), f"Comma-separated vehicles, from {','.join(VEHICLES)}."),
        Option("num_aug", 0, "Dihedral variants (0-7) added per vehicle as further puzzles of the group."),
        Option("label", "route", "route: the unique optimal route (tied scenarios are redrawn); "
               "optimal-cells: every cell on some optimal route.", choices=LABEL_MODES),
        Option("seed", 0, "Seed; train and test come from disjoint seed streams."),
        Option("workers", 1, "Worker processes (output is identical for any number).", recorded=False),
        Option("min_distance", 0, "Minimum Manhattan distance start-end; 0 = size // 2."),
    )

    def __init__(self) -> None:
        self._stats: dict[str, Counter] = {}
        self._seen: set[str] = set()

    # -- options -------------------------------------------------------------------
    def _opts(self, options: dict[str, Any]) -> dict[str, Any]:
        o = {**self.defaults(), **options}
        size = int(o["size"])
        if size < 5:
            raise ValueError("--size must be at least 5")
        if not 0 <= int(o["num_aug"]) <= NUM_DIHEDRAL - 1:
            raise ValueError("--num-aug must be between 0 and 7")
        if o["label"] not in LABEL_MODES:
            raise ValueError(f"--label must be one of {', '.join(LABEL_MODES)}")
        if min_distance_for(size, int(o["min_distance"])) > 2 * (size - 1):
            raise ValueError(f"--min-distance larger than the map allows ({2 * (size - 1)})")
        if not 1 <= int(o["workers"]) <= MAX_WORKERS:
            raise ValueError(f"--workers must be between 1 and {MAX_WORKERS}, got {o['workers']}")
        for name, low in (("train_scenarios", 1), ("test_scenarios", 0), ("min_distance", 0), ("seed", 0)):
            if int(o[name]) < low:
                raise ValueError(f"--{name.replace('_', '-')} must be at least {low}, got {o[name]}")
        return dict(train_scenarios=int(o["train_scenarios"]), test_scenarios=int(o["test_scenarios"]), size=size,
                    vehicles=parse_vehicles(o["vehicles"]), num_aug=int(o["num_aug"]), label=o["label"],
                    seed=int(o["seed"]), workers=int(o["workers"]), min_distance=int(o["min_distance"]))

    def info(self, options: dict[str, Any]) -> Info:
        o = self._opts(options)
        n = o["size"]
        return Info(vocab_size=VOCAB_SIZE, seq_len=n * n, pad_id=0, ignore_label_id=0, identifiers=o["vehicles"],
                    grid_shape=(n, n), token_names=TOKEN_NAMES, palette=PALETTE, glyphs=GLYPHS,
                    extra={"city_logistics": {
                        "label": o["label"], "vehicles": list(o["vehicles"]), "movement": "4-neighbour",
                        "costs": {v: {c: list(cs) for c, cs in oracle.COSTS[v].items()} for v in o["vehicles"]},
                        "cost_states": ["free", "light", "busy", "heavy", "jam"],
                        "route_cost": "sum of the costs of the cells entered; start and end cost 0",
                    }})

    def count(self, split: str, options: dict[str, Any]) -> int:
        return int({**self.defaults(), **options}[f"{split}_scenarios"])

    # -- generation ----------------------------------------------------------------
    def _built(self, split: str, o: dict[str, Any]) -> Iterator[Built]:
        n_scen = o[f"{split}_scenarios"]
        args = (o["seed"], split)
        rest = (o["size"], o["vehicles"], o["label"], o["num_aug"], o["min_distance"])
        if o["workers"] == 1 or n_scen < 2:
            for i in range(n_scen):
                yield build_scenario(*args, i, *rest)
            return
        import multiprocessing as mp
        chunk = max(1, min(64, n_scen // (4 * o["workers"]) or 1))
        tasks = [(*args, range(a, min(a + chunk, n_scen)), *rest) for a in range(0, n_scen, chunk)]
        with mp.get_context("spawn").Pool(o["workers"]) as pool:
            for built in pool.imap(_build_chunk, tasks):   # imap keeps the order
                yield from built

    def groups(self, split: str, options: dict[str, Any]) -> Iterator[Group]:
        o = self._opts(options)
        if split == "train":
            self._seen = set()
            self._stats = {}
        stats = self._stats.setdefault(split, Counter())
        for b in self._built(split, o):
            salt = 0
            while b.key in self._seen:   # identical to an earlier scenario (either split): redraw it
                stats["redrawn_duplicate"] += 1
                salt += 1
                b = build_scenario(o["seed"], split, b.index, o["size"], o["vehicles"], o["label"], o["num_aug"],
                                   o["min_distance"], salt=salt)
            self._seen.add(b.key)
            stats.update(b.stats)
            stats["scenarios"] += 1
            yield Group(puzzles=[Puzzle(ident, b.inputs[j:j + 1], b.labels[j:j + 1])
                                 for j, ident in enumerate(b.identifiers)],
                        key=b.key, rows=b.rows)

    def report(self) -> dict[str, Any]:
        total = Counter()
        for s in self._stats.values():
            total.update(s)
        out: dict[str, Any] = {k: int(total.get(k, 0)) for k in
                               ("scenarios", "attempts", "redrawn_no_route", "redrawn_not_unique",
                                "redrawn_no_endpoints", "redrawn_duplicate")}
        if total.get("attempts"):
            out["redraw_rate"] = round(1 - total["scenarios"] / (total["attempts"] + total.get("redrawn_duplicate", 0)), 4)
        return out

    # -- domain check and metric -----------------------------------------------------
    def check(self, dataset, progress: bool = False, **_: Any) -> list:
        """validate --deep: every label is the valid optimal route (or the exact optimal cell set)
        of its input, and every identifier names the vehicle marked on the start cell."""
        return check_dataset(dataset, progress=progress)

    def score(self, dataset, split: str, predictions: np.ndarray) -> dict:
        """Task metric of a split's predictions (example order): shares of examples whose predicted
        route is valid (``route_valid``) and optimal (``route_optimal``), the mean relative extra cost
        of valid routes (``cost_excess``; None, shown as n/a, when no predicted route is valid),
        ``naive_baseline`` (the exact accuracy a solver reaches that takes a fewest-cells route over
        open roads, ignoring costs and vehicle rules: what the model has to beat) and ``examples``.
        Per example: :meth:`score_examples`."""
        r = self.score_examples(dataset, split, predictions)
        n = len(r["valid"])
        ok = ~np.isnan(r["cost_excess"])
        return {"route_valid": float(r["valid"].mean()) if n else 0.0,
                "route_optimal": float(r["optimal"].mean()) if n else 0.0,
                "cost_excess": float(r["cost_excess"][ok].mean()) if ok.any() else None,
                "naive_baseline": naive_baseline(dataset, split), "examples": int(n)}

    def score_examples(self, dataset, split: str, predictions: np.ndarray) -> dict[str, np.ndarray]:
        """Per example (columns of predictions.parquet): ``valid`` route, ``optimal`` route,
        ``cost`` of the predicted route (-1 if invalid), ``optimal_cost`` and ``cost_excess``
        ((cost - optimal) / optimal; NaN where the route is invalid)."""
        from hrm_data.format import Dataset
        ds = dataset if isinstance(dataset, Dataset) else Dataset(dataset)
        sp = ds.split(split)
        x = np.concatenate([np.asarray(sp.set(s).inputs) for s in sp.metadata.sets])
        p = np.asarray(predictions).reshape(x.shape[0], -1)
        r = score_routes(x, p, metadata=sp.metadata.extra)
        ok = r["valid"] & (r["optimal_cost"] > 0)
        excess = np.full(len(x), np.nan)
        excess[ok] = (r["cost"][ok] - r["optimal_cost"][ok]) / r["optimal_cost"][ok]
        return {"valid": r["valid"].astype(bool), "optimal": r["optimal"].astype(bool),
                "cost": r["cost"].astype(np.int64), "optimal_cost": r["optimal_cost"].astype(np.int64),
                "cost_excess": excess}


def naive_baseline(dataset, split: str) -> float:
    """Expected exact accuracy of the naive solver (fewest cells over open roads, ignoring costs and
    vehicle rules, a random one among equally short routes) on a split's labels; 0.0 when empty."""
    from hrm_data.format import Dataset
    sp = (dataset if isinstance(dataset, Dataset) else Dataset(dataset)).split(split)
    x = np.concatenate([np.asarray(sp.set(s).inputs) for s in sp.metadata.sets])
    y = np.concatenate([np.asarray(sp.set(s).labels) for s in sp.metadata.sets])
    if not len(x):
        return 0.0
    shape, mode = _shape_and_mode(x.shape[1], None, None, sp.metadata.extra)
    if mode != "route":
        return 0.0   # optimal-cells labels mark every optimal cell: a single route is never exactly right
    return float(oracle.naive_exact(x, y, shape).mean())


def _shape_and_mode(seq_len: int, grid_shape=None, label=None, metadata=None) -> tuple[tuple[int, int], str]:
    meta = metadata or {}
    shape = tuple(grid_shape or meta.get("grid_shape") or ())
    if not shape:
        side = int(round(seq_len ** 0.5))
        shape = (side, side)
    mode = label or (meta.get("city_logistics") or {}).get("label") or "route"
    return (int(shape[0]), int(shape[1])), mode


def score_routes(inputs: np.ndarray, preds: np.ndarray, vehicles=None, *, grid_shape=None, label=None,
                 metadata=None, puzzle_identifiers=None, identifiers=None) -> dict[str, np.ndarray]:
    """valid / cost / optimal / optimal_cost per example; see city_oracle.score_routes.

    The vehicle is read from the start cell's token; ``vehicles`` (names) or ``puzzle_identifiers``
    with the ``identifiers`` name list may be given instead."""
    inputs = np.asarray(inputs)
    shape, mode = _shape_and_mode(inputs.shape[-1], grid_shape, label, metadata)
    if vehicles is None and puzzle_identifiers is not None and identifiers is not None:
        vehicles = [identifiers[int(i)] for i in np.asarray(puzzle_identifiers)]
    return oracle.score_routes(inputs, preds, shape, vehicles, mode)


def _finding_cls():
    try:
        from hrm_data.validate import Finding
        return Finding
    except ImportError:   # validate.py not there yet: same fields, so callers can read them alike
        @dataclass
        class Finding:
            code: str
            severity: str
            split: str | None
            set: str | None
            file: str | None
            index: int | None
            message: str
        return Finding


def check_dataset(dataset, progress: bool = False, max_per_code: int = 20) -> list:
    Finding = _finding_cls()
    findings: list = []
    per_code: Counter = Counter()
    names = dataset.identifiers

    def add(code, split, set_name, index, message, file="labels"):
        per_code[code] += 1
        if per_code[code] <= max_per_code:
            findings.append(Finding(code=code, severity="error", split=split, set=set_name,
                                    file=f"{set_name}__{file}.npy", index=index, message=message))

    for split in ("train", "test"):
        if not dataset.has_split(split):
            continue
        sp = dataset.split(split)
        meta = sp.metadata
        shape, mode = _shape_and_mode(meta.seq_len, None, None, meta.extra)
        for set_name, arr in sp.sets.items():
            x_all = np.asarray(arr.inputs)
            y_all = np.asarray(arr.labels)
            ex_puzzle = arr.example_puzzle()
            pids = np.asarray(arr.puzzle_identifiers)
            for i in range(arr.num_examples):
                x, y = x_all[i].astype(np.int64), y_all[i].astype(np.int64)
                try:
                    s, t, vehicle = oracle.find_endpoints(x)
                except ValueError as e:
                    add("B101", split, set_name, i, str(e), file="inputs")
                    continue
                pid = int(pids[ex_puzzle[i]])
                ident = names[pid] if 0 <= pid < len(names) else None
                if ident != vehicle:
                    add("B102", split, set_name, i,
                        f"puzzle identifier {pid} ({ident}) but the start cell is marked {vehicle}",
                        file="puzzle_identifiers")
                route = y == oracle.PATH
                if not np.array_equal(np.where(route, x, y), x) or (x == oracle.PATH).any():
                    add("B103", split, set_name, i,
                        "label differs from the input outside the PATH cells")
                    continue
                sol = oracle.solve(x, shape, vehicle, cells=True)
                if sol is None:
                    add("B104", split, set_name, i, f"no route exists for the {vehicle}", file="inputs")
                    continue
                if mode == "route":
                    if sol.count != 1:
                        add("B105", split, set_name, i,
                            f"{sol.count} optimal routes for the {vehicle}: the label is one arbitrary choice")
                    sc = oracle.score_routes(x[None], y[None], shape, [vehicle], "route")
                    if not sc["valid"][0]:
                        add("B106", split, set_name, i,
                            f"the labelled route is not one simple path from start to end over cells the {vehicle} may use")
                    elif not sc["optimal"][0]:
                        add("B107", split, set_name, i,
                            f"the labelled route costs {int(sc['cost'][0])}, the optimum is {sol.cost}")
                else:
                    cells = route | (x >= oracle.START0) & (x <= END)
                    if not np.array_equal(cells, sol.cells):
                        add("B108", split, set_name, i,
                            f"the PATH cells differ from the cells on some optimal route "
                            f"({int((cells != sol.cells).sum())} cells differ)")
    for code, n in per_code.items():
        if n > max_per_code:
            findings.append(Finding(code=code, severity="error", split=None, set=None, file=None, index=None,
                                    message=f"{n - max_per_code} more {code} findings not listed"))
    return findings

