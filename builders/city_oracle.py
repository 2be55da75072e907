"""City-logistics world model: vocabulary, vehicles, costs, the exact routing oracle and the route check.

Everything the oracle uses is read from the *token grid* (the model's input), never from a
hidden scenario object, so "the label is a function of the input" holds by construction:
the builder solves the very grid it writes, and ``check``/``score`` re-solve what is on disk.

Movement is 4-neighbour. The cost of a route is the sum of the costs of the cells it enters;
the start and end cells cost 0 (they are always on large roads, open to every vehicle).
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

# ----------------------------------------------------------------------------- vocabulary

ROAD_CLASSES = ("large", "diag", "small")          # avenues/streets, the diagonal thoroughfare, side streets
LEVELS = ("free", "light", "busy", "heavy")        # graded congestion, visible in the tokens
STATES = LEVELS + ("jam", "closed")                # jam: expensive, keeps its class; closed: impassable
NUM_LEVELS, JAM, CLOSED = len(LEVELS), len(LEVELS), len(LEVELS) + 1

VEHICLES = ("bike", "car", "van", "truck")         # the catalogue; --vehicles picks from it

PAD, BUILDING, PARK = 0, 1, 2
ROAD0 = 3


def road_token(cls: int, state: int) -> int:
    """Token of a road cell of class ``cls`` (index into ROAD_CLASSES) in ``state`` (index into STATES)."""
    return ROAD0 + cls * len(STATES) + state


START0 = ROAD0 + len(ROAD_CLASSES) * len(STATES)   # START_<vehicle>: the start cell, marked with the vehicle
END = START0 + len(VEHICLES)
PATH = END + 1
VOCAB_SIZE = PATH + 1


def start_token(vehicle: str) -> int:
    return START0 + VEHICLES.index(vehicle)


TOKEN_NAMES: tuple[str, ...] = (
    ("pad", "building", "park")
    + tuple(f"{c}_{s}" for c in ROAD_CLASSES for s in STATES)
    + tuple(f"start_{v}" for v in VEHICLES)
    + ("end", "path")
)
assert len(TOKEN_NAMES) == VOCAB_SIZE < 40

_CLASS_SHADES = {  # free, light, busy, heavy, jam, closed
    "large": ("#f2f2f2", "#dcdcdc", "#bdbdbd", "#9e9e9e", "#e53935", "#212121"),
    "diag": ("#e1bee7", "#ce93d8", "#ba68c8", "#9c27b0", "#c62828", "#311b92"),
    "small": ("#fff3e0", "#ffe0b2", "#ffcc80", "#ffb74d", "#ef6c00", "#3e2723"),
}
PALETTE: tuple[str, ...] = (
    ("#000000", "#546e7a", "#43a047")
    + tuple(col for c in ROAD_CLASSES for col in _CLASS_SHADES[c])
    + ("#00bcd4", "#1e88e5", "#fb8c00", "#6d4c41")   # start: bike, car, van, truck
    + ("#d81b60", "#ffeb3b")                           # end, path
)
assert len(PALETTE) == VOCAB_SIZE

# Two characters per cell for `hrm-data show`: road class letter + congestion (0-3, J jam, X closed).
GLYPHS: tuple[str, ...] = (
    ("  ", "##", "..")
    + tuple(f"{c[0].upper() if c != 'small' else 's'}{s}" for c in ROAD_CLASSES for s in "0123JX")
    + tuple(f"S{v[0]}" for v in VEHICLES)
    + ("EE", "**")
)
assert len(set(GLYPHS)) == len(GLYPHS) == VOCAB_SIZE

# ----------------------------------------------------------------------------- vehicles and costs

INF = 1 << 40  # impassable

# Cost of entering one cell, per vehicle, class and state (free, light, busy, heavy, jam); closed
# is impassable for everyone, a class missing from a vehicle's table is forbidden to it.
# The values are deliberately irregular integers (no small common factors, no c1 + c2 == c3 + c4
# coincidences among a class's levels), so two different routes rarely cost exactly the same:
# that, with the four visible congestion levels, is what keeps optimal routes unique.
COSTS: dict[str, dict[str, tuple[int, int, int, int, int]]] = {
    # bikes filter through traffic (congestion matters little) and prefer quiet side streets
    "bike": {"large": (22, 24, 27, 31, 52), "diag": (20, 23, 26, 30, 49), "small": (12, 14, 17, 21, 38)},
    # the diagonal is a priority thoroughfare: cheaper per cell than an avenue, and it cuts blocks
    "car": {"large": (10, 13, 17, 22, 83), "diag": (8, 11, 15, 20, 79), "small": (12, 15, 19, 25, 90)},
    "van": {"large": (11, 15, 21, 29, 89), "diag": (9, 13, 18, 26, 86)},
    # trucks suffer most from congestion, so they detour around it
    "truck": {"large": (13, 22, 37, 58, 140)},
}


def allowed_classes(vehicle: str) -> tuple[str, ...]:
    return tuple(COSTS[vehicle])


@lru_cache(maxsize=None)
def cost_table(vehicle: str) -> tuple[int, ...]:
    """Cost of entering a cell, indexed by the cell's token (INF: the vehicle may not enter it)."""
    t = [INF] * VOCAB_SIZE
    for ci, cls in enumerate(ROAD_CLASSES):
        for s in range(CLOSED):
            if cls in COSTS[vehicle]:
                t[road_token(ci, s)] = COSTS[vehicle][cls][s]
    for v in VEHICLES:
        t[START0 + VEHICLES.index(v)] = 0
    t[END] = 0
    return tuple(t)


def cost_array(vehicle: str) -> np.ndarray:
    return np.array(cost_table(vehicle), np.int64)


# token -> road class index (-1: not a road) and state index, for decoding and tests
TOKEN_CLASS = np.full(VOCAB_SIZE, -1, np.int64)
TOKEN_STATE = np.full(VOCAB_SIZE, -1, np.int64)
for _c in range(len(ROAD_CLASSES)):
    for _s in range(len(STATES)):
        TOKEN_CLASS[road_token(_c, _s)] = _c
        TOKEN_STATE[road_token(_c, _s)] = _s

# ----------------------------------------------------------------------------- oracle


@lru_cache(maxsize=None)
def neighbours(shape: tuple[int, int]) -> tuple[tuple[int, ...], ...]:
    """4-neighbourhood of every flat cell index of an H x W grid."""
    H, W = shape
    out = []
    for i in range(H * W):
        r, c = divmod(i, W)
        n = []
        if r > 0:
            n.append(i - W)
        if c > 0:
            n.append(i - 1)
        if c < W - 1:
            n.append(i + 1)
        if r < H - 1:
            n.append(i + W)
        out.append(tuple(n))
    return tuple(out)


@dataclass
class Solution:
    """The oracle's answer for one (grid, vehicle): cost of an optimal route, how many optimal
    routes there are, the route itself (start..end, flat indices) when it is unique, and the
    set of cells on *some* optimal route (a bool mask, start and end included)."""

    cost: int
    count: int
    route: list[int] | None
    cells: np.ndarray | None


def find_endpoints(grid: np.ndarray) -> tuple[int, int, str]:
    """(start index, end index, vehicle) of a flat input grid; ValueError if not exactly one of each."""
    g = np.asarray(grid).reshape(-1)
    starts = np.flatnonzero((g >= START0) & (g < END))
    ends = np.flatnonzero(g == END)
    if len(starts) != 1 or len(ends) != 1:
        raise ValueError(f"expected one start and one end cell, found {len(starts)} and {len(ends)}")
    s = int(starts[0])
    return s, int(ends[0]), VEHICLES[int(g[s]) - START0]


def solve(grid: np.ndarray, shape: tuple[int, int], vehicle: str | None = None, *,
          cells: bool = False) -> Solution | None:
    """Exact least-cost route on a token grid: Dijkstra with path counting on the shortest-path DAG.

    ``vehicle`` defaults to the one marked on the start cell. Returns None when there is no route.
    ``cells=True`` also returns the mask of cells on some optimal route.
    """
    g = np.asarray(grid).reshape(-1)
    s, t, marked = find_endpoints(g)
    vehicle = vehicle or marked
    table = cost_table(vehicle)
    w = [table[x] for x in g.tolist()]
    w[t] = 1   # internally the end costs 1 (subtracted below): Dijkstra's counting needs every entered cost > 0
    nb = neighbours(tuple(shape))
    n = len(w)
    dist = [INF] * n
    cnt = [0] * n
    done = bytearray(n)
    dist[s], cnt[s] = 0, 1
    heap = [(0, s)]
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        d, u = pop(heap)
        if done[u]:
            continue
        done[u] = 1
        if u == t:
            break
        cu = cnt[u]
        for v in nb[u]:
            wv = w[v]
            if wv >= INF:
                continue
            nd = d + wv
            dv = dist[v]
            if nd < dv:
                dist[v], cnt[v] = nd, cu
                push(heap, (nd, v))
            elif nd == dv:
                cnt[v] += cu
    if not done[t]:
        return None
    # Every tight predecessor p of a settled cell (dist[p] + w[cur] == dist[cur]) has dist[p] < dist[cur]
    # (every entered cost is > 0), so it was settled, with its final count, before cur: the counts are
    # exact and walking tight edges back from t stays on optimal routes.
    route = None
    if cnt[t] == 1:
        route = [t]
        cur = t
        while cur != s:
            wc = w[cur]
            cur = next(p for p in nb[cur] if done[p] and dist[p] + wc == dist[cur])
            route.append(cur)
        route.reverse()
    mask = None
    if cells:
        mask = np.zeros(n, bool)
        mask[t] = True
        stack = [t]
        while stack:
            cur = stack.pop()
            if cur == s:
                continue
            wc = w[cur]
            for p in nb[cur]:
                if done[p] and not mask[p] and dist[p] + wc == dist[cur]:
                    mask[p] = True
                    stack.append(p)
    return Solution(cost=dist[t] - 1, count=cnt[t], route=route, cells=mask)


def label_for(grid: np.ndarray, sol: Solution, mode: str) -> np.ndarray:
    """The label grid: the input with the route's cells (``route``) or every optimal cell
    (``optimal-cells``) set to PATH; start and end keep their tokens."""
    g = np.asarray(grid).reshape(-1)
    y = g.copy()
    if mode == "route":
        if sol.route is None:
            raise ValueError("label mode 'route' needs a unique optimal route")
        y[np.asarray(sol.route[1:-1], np.int64)] = PATH
    elif mode == "optimal-cells":
        m = sol.cells.copy()
        m[(g >= START0) & (g <= END)] = False
        y[m] = PATH
    else:
        raise ValueError(f"unknown label mode {mode!r}")
    return y


# ----------------------------------------------------------------------------- domain check / metric

def _shift_sum(m: np.ndarray) -> np.ndarray:
    """Number of 4-neighbours of every cell that are set in ``m`` (..., H, W) bool."""
    k = np.zeros(m.shape, np.int8)
    k[..., 1:, :] += m[..., :-1, :]
    k[..., :-1, :] += m[..., 1:, :]
    k[..., :, 1:] += m[..., :, :-1]
    k[..., :, :-1] += m[..., :, 1:]
    return k


def _dilate(m: np.ndarray) -> np.ndarray:
    return _shift_sum(m) > 0


def score_routes(inputs: np.ndarray, preds: np.ndarray, shape: tuple[int, int],
                 vehicles: Sequence[str] | None = None, mode: str = "route") -> dict[str, np.ndarray]:
    """Judge predicted grids as routes, vectorized over the batch (the oracle runs per example).

    ``inputs``, ``preds``: (N, H*W) token arrays. The route is the set of cells the prediction
    marks PATH, plus the input's start and end. ``vehicles`` (names, one per example) defaults to
    the vehicle marked on each input's start cell.

    mode "route": ``valid`` = the marked cells are all roads the vehicle may use (not closed) and,
    with start and end, form one simple path from start to end (start and end have one marked
    neighbour, every route cell two, all connected); ``cost`` = the route's cost (-1 if invalid);
    ``optimal`` = valid and cost equals the least cost (any optimal route counts, not only the
    oracle's). mode "optimal-cells": ``valid`` = usable cells connecting start to end, ``cost`` =
    the cheapest route inside the marked cells, ``optimal`` = the marked set is exactly the set of
    cells on some optimal route. Also returns ``optimal_cost`` (-1: no route exists).
    """
    H, W = shape
    x = np.asarray(inputs).reshape(-1, H, W).astype(np.int64)
    p = np.asarray(preds).reshape(-1, H, W).astype(np.int64)
    N = x.shape[0]
    if vehicles is None:
        vehicles = [find_endpoints(x[i])[2] for i in range(N)]
    tables = np.stack([cost_array(v) for v in vehicles]) if N else np.zeros((0, VOCAB_SIZE), np.int64)
    w = np.take_along_axis(tables, x.reshape(N, -1), axis=1).reshape(N, H, W)   # cost of entering each cell
    endpoint = (x >= START0) & (x <= END)
    marked = (p == PATH) & ~endpoint
    usable = (marked <= (w < INF)).all(axis=(1, 2))
    route = marked | endpoint
    deg = _shift_sum(route)
    ok_deg = np.where(endpoint, deg == 1, np.where(marked, deg == 2, True)).all(axis=(1, 2))
    has_ends = (endpoint.sum(axis=(1, 2)) == 2) & ((x >= START0) & (x < END)).any(axis=(1, 2))
    # connectivity: flood from the start inside the route set
    reach = (x >= START0) & (x < END)
    while True:
        nxt = reach | (_dilate(reach) & route)
        if np.array_equal(nxt, reach):
            break
        reach = nxt
    connected = (reach == route).all(axis=(1, 2))
    wz = np.where(route, np.minimum(w, INF), 0)
    cost = wz.sum(axis=(1, 2))
    optimal_cost = np.full(N, -1, np.int64)
    optimal = np.zeros(N, bool)
    if mode == "route":
        valid = usable & ok_deg & connected & has_ends
        cost = np.where(valid, cost, -1)
        for i in range(N):
            sol = solve(x[i].reshape(-1), shape, vehicles[i]) if has_ends[i] else None
            if sol is not None:
                optimal_cost[i] = sol.cost
        optimal = valid & (cost == optimal_cost) & (optimal_cost >= 0)
    elif mode == "optimal-cells":
        valid = np.zeros(N, bool)
        cost = np.full(N, -1, np.int64)
        for i in range(N):
            if not (has_ends[i] and usable[i]):
                continue
            sol = solve(x[i].reshape(-1), shape, vehicles[i], cells=True)
            if sol is not None:
                optimal_cost[i] = sol.cost
                optimal[i] = np.array_equal(sol.cells, route[i].reshape(-1))
            # cheapest route inside the marked cells: everything outside becomes a building
            sub = np.where(route[i], x[i], BUILDING).reshape(-1)
            inner = solve(sub, shape, vehicles[i])
            if inner is not None:
                valid[i] = True
                cost[i] = inner.cost
    else:
        raise ValueError(f"unknown label mode {mode!r}")
    return {"valid": valid, "cost": cost, "optimal": optimal, "optimal_cost": optimal_cost}


# ----------------------------------------------------------------------------- naive baseline

def fewest_cells_routes(inputs: np.ndarray, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """What a solver that ignores costs and vehicle rules sees: over every open road cell, the
    fewest moves from start to end and how many routes have that few. Returns ``(moves, count)``,
    each (N,); moves -1 (count 0) where no route exists. ``count`` is float (it can be huge).

    Vectorized over the batch: a breadth-first flood from the start, one layer per move, with the
    number of shortest routes to each cell carried along (the sum over its previous-layer neighbours)."""
    H, W = shape
    x = np.asarray(inputs).reshape(-1, H, W).astype(np.int64)
    xc = np.clip(x, 0, VOCAB_SIZE - 1)
    open_ = ((TOKEN_CLASS[xc] >= 0) & (TOKEN_STATE[xc] != CLOSED)) | ((x >= START0) & (x <= END))
    frontier = ((x >= START0) & (x < END)).astype(np.float64)   # routes reaching each cell of the layer
    seen = frontier > 0
    end = x == END
    N = x.shape[0]
    moves, count = np.full(N, -1, np.int64), np.zeros(N)
    for step in range(1, H * W):
        nxt = np.zeros_like(frontier)
        nxt[:, 1:, :] += frontier[:, :-1, :]
        nxt[:, :-1, :] += frontier[:, 1:, :]
        nxt[:, :, 1:] += frontier[:, :, :-1]
        nxt[:, :, :-1] += frontier[:, :, 1:]
        nxt[~open_ | seen] = 0.0
        hit = (moves < 0) & (nxt * end).any(axis=(1, 2))
        moves[hit] = step
        count[hit] = (nxt * end).sum(axis=(1, 2))[hit]
        seen |= nxt > 0
        frontier = nxt
        if not frontier.any() or (moves >= 0).all():
            break
    return moves, count


def naive_exact(inputs: np.ndarray, labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N,) float in [0, 1]: the chance that a naive solver (a fewest-cells route over open roads,
    ignoring costs and vehicle rules, one of the ties at random) gives exactly the labelled route.
    0 where the label has more moves than the fewest; 1 / (number of fewest-cells routes) where it
    is one of them."""
    y = np.asarray(labels).reshape(len(labels), -1)
    moves, count = fewest_cells_routes(inputs, shape)
    route_moves = (y == PATH).sum(axis=1) + 1
    return np.where((moves >= 0) & (route_moves == moves), 1.0 / np.maximum(count, 1.0), 0.0)
