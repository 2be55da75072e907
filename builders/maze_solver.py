"""Shortest paths on 4-neighbour mazes, vectorized over a batch of mazes (numpy only).

Two BFS flavours:

* ``sweep``: bit-packed, one uint64 word per maze row (sizes up to 64), used by the generator to
  screen thousands of random layouts per batch: every BFS step is a few whole-array word ops.
* ``distances``: dense int32 distance grids for any size, used for labels, path counting, the deep
  check and the score (on the few mazes that need them).

Tokens are HRM's: PAD 0, then ``# SGo`` -> 1..5 (wall, open, start, goal, path).
"""
from __future__ import annotations

import numpy as np

CHARSET = "# SGo"
PAD, WALL, OPEN, START, GOAL, PATH = 0, 1, 2, 3, 4, 5
VOCAB_SIZE = len(CHARSET) + 1
TOKEN_NAMES = ("pad", "wall", "open", "start", "goal", "path")
GLYPHS = (" ", "#", ".", "S", "G", "o")
PALETTE = ("#000000", "#303030", "#f4f4f4", "#2e7d32", "#c62828", "#1e88e5")
MAX_PACKED = 64          # sweep packs a row into one uint64
COUNT_CAP = 1 << 60      # path counts saturate here (sums of 4 stay inside int64)

# neighbour order for the deterministic label walk: up, down, left, right
_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))
_ONE = np.uint64(1)


# ----------------------------------------------------------------------------- bit-packed sweep

def pack_rows(mask: np.ndarray) -> np.ndarray:
    """(B, N, N) bool -> (B, N) uint64, bit j of word i = cell (i, j)."""
    B, H, n = mask.shape
    if n > MAX_PACKED:
        raise ValueError(f"packed BFS handles sizes up to {MAX_PACKED}, got {n}")
    packed = np.packbits(mask, axis=-1, bitorder="little")
    words = np.zeros((B, H, 8), np.uint8)
    words[..., :packed.shape[-1]] = packed
    return words.view("<u8")[..., 0].astype(np.uint64)


def unpack_rows(words: np.ndarray, n: int) -> np.ndarray:
    """(B, N) uint64 -> (B, N, N) bool."""
    return ((words[..., None] >> np.arange(n, dtype=np.uint64)) & _ONE).astype(bool)


def sweep(open_bits: np.ndarray, src: np.ndarray, far_from: int = 1, need_far: bool = True,
          target: np.ndarray | None = None, width: int | None = None) -> dict[str, np.ndarray]:
    """BFS from one source cell per maze (flat index ``src``), all mazes at once.

    Returns ``ecc`` (steps to the farthest reachable cell), ``last`` (the last non-empty BFS
    layer, packed), ``reached`` (packed) and, with ``need_far``, ``far`` (packed: reachable cells
    at distance >= ``far_from``); with ``target`` (flat cells), ``hit``: steps to it, -1 if not
    reached. ``width``: the grid's width when it is not square. Mazes whose search has ended are
    dropped from the working arrays as they go."""
    B, n = open_bits.shape
    n = width or n
    rows = np.arange(B)
    V = np.zeros_like(open_bits)
    V[rows, src // n] = _ONE << (src % n).astype(np.uint64)
    last = V.copy()
    near = V.copy() if need_far and far_from <= 1 else None     # cells at distance < far_from
    ecc = np.zeros(B, np.int64)
    hit = np.where(np.asarray(src) == target, 0, -1) if target is not None else np.full(B, -1)
    tr, tc = (np.divmod(np.asarray(target, np.int64), n) if target is not None else (rows, rows))
    tc = tc.astype(np.uint64)
    live, f, o, v, lc = rows, V.copy(), open_bits, V.copy(), last.copy()
    step = 0
    while live.size:
        step += 1
        nb = (f << _ONE) | (f >> _ONE)
        nb[:, 1:] |= f[:, :-1]
        nb[:, :-1] |= f[:, 1:]
        nb &= o & ~v
        v |= nb
        f = nb
        alive = nb.any(1)
        ecc[live[alive]] = step
        lc = np.where(alive[:, None], nb, lc)
        if target is not None:
            got = ((nb[np.arange(live.size), tr] >> tc) & _ONE).astype(bool)
            hit[live[got]] = step
        if need_far and step == far_from - 1:
            V[live] = v
            near = V.copy()
        n_alive = int(alive.sum())
        if n_alive < live.size // 2 or n_alive == 0:       # compact: keep only running searches
            V[live], last[live] = v, lc
            live, f, o, v, lc = live[alive], f[alive], o[alive], v[alive], lc[alive]
            tr, tc = tr[alive], tc[alive]
    out = {"ecc": ecc, "last": last, "reached": V, "hit": hit}
    if need_far:
        out["far"] = V & ~(V if near is None else near)         # ended before far_from - 1 steps: none
    return out


def pick_bit(words: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Flat index of a set bit per maze: the floor(u * count)-th in row-major order (u in [0, 1));
    -1 where no bit is set."""
    B, n = words.shape
    cells = unpack_rows(words, n).reshape(B, -1)
    cnt = cells.sum(1)
    k = np.minimum((u * cnt).astype(np.int64), np.maximum(cnt - 1, 0))
    csum = np.cumsum(cells, 1)
    idx = (csum <= k[:, None]).sum(1)
    return np.where(cnt > 0, idx, -1)


# ----------------------------------------------------------------------------- dense BFS

def _shifted(a: np.ndarray, dr: int, dc: int, fill) -> np.ndarray:
    """a shifted so that out[r, c] = a[r + dr, c + dc] (``fill`` outside)."""
    out = np.full_like(a, fill)
    H, W = a.shape[-2:]
    rs_out, rs_in = (slice(0, H - dr), slice(dr, H)) if dr >= 0 else (slice(-dr, H), slice(0, H + dr))
    cs_out, cs_in = (slice(0, W - dc), slice(dc, W)) if dc >= 0 else (slice(-dc, W), slice(0, W + dc))
    out[..., rs_out, cs_out] = a[..., rs_in, cs_in]
    return out


def distances(passable: np.ndarray, src: np.ndarray) -> np.ndarray:
    """BFS distance (steps) from flat cell ``src`` of every maze to every cell; -1 unreachable.

    passable: (B, H, W) bool. A source on a blocked cell still starts the search."""
    B, H, W = passable.shape
    dist = np.full((B, H, W), -1, np.int32)
    front = np.zeros((B, H, W), bool)
    front.reshape(B, -1)[np.arange(B), src] = True
    dist[front] = 0
    step = 0
    while front.any():
        step += 1
        nb = np.zeros_like(front)
        for dr, dc in _MOVES:
            nb |= _shifted(front, dr, dc, False)
        nb &= passable & (dist < 0)
        dist[nb] = step
        front = nb
    return dist


def count_paths(dist: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Number of shortest paths from each maze's BFS source to flat cell ``target`` (saturating at
    2**60), given ``dist`` from :func:`distances`; 0 if unreachable."""
    B = dist.shape[0]
    cnt = (dist == 0).astype(np.int64)
    dmax = int(dist.max(initial=0))
    for t in range(1, dmax + 1):
        layer = dist == t
        if not layer.any():
            break
        prev = np.where(dist == t - 1, cnt, 0)
        s = sum(_shifted(prev, dr, dc, 0) for dr, dc in _MOVES)
        cnt = np.where(layer, np.minimum(s, COUNT_CAP), cnt)
    return cnt.reshape(B, -1)[np.arange(B), target]


def label_path(dist_to_goal: np.ndarray, start: np.ndarray) -> np.ndarray:
    """(B, H, W) bool: the cells strictly between start and goal on the deterministic shortest path:
    from the start, always step to the first neighbour in the order up, down, left, right that is
    one step closer to the goal. Mazes whose goal is unreachable get no cells."""
    B, H, W = dist_to_goal.shape
    d = dist_to_goal.reshape(B, -1)
    rows = np.arange(B)
    r, c = np.divmod(np.asarray(start, np.int64), W)
    on = np.zeros((B, H * W), bool)
    left = d[rows, r * W + c].astype(np.int64)          # steps still to go
    for _ in range(int(left.max(initial=0)) - 1):
        active = left > 1
        nr, nc = r.copy(), c.copy()
        chosen = ~active
        for dr, dc in _MOVES:
            rr, cc = r + dr, c + dc
            inside = (rr >= 0) & (rr < H) & (cc >= 0) & (cc < W)
            flat = np.where(inside, rr * W + cc, 0)
            ok = inside & (d[rows, flat] == left - 1) & ~chosen
            nr, nc = np.where(ok, rr, nr), np.where(ok, cc, nc)
            chosen |= ok
        r, c = np.where(active, nr, r), np.where(active, nc, c)
        on[rows[active], (r * W + c)[active]] = True
        left = np.where(active, left - 1, left)
    return on.reshape(B, H, W)


# ----------------------------------------------------------------------------- grading paths

def endpoints(grids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat start and goal cell of each maze (B, H, W) and whether the maze has exactly one of each."""
    B = grids.shape[0]
    flat = grids.reshape(B, -1)
    ok = ((flat == START).sum(1) == 1) & ((flat == GOAL).sum(1) == 1)
    return (flat == START).argmax(1), (flat == GOAL).argmax(1), ok


def grade(inputs: np.ndarray, marked: np.ndarray, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Grade predicted (or labelled) grids against their mazes, per example.

    ``valid``: the grid equals the maze except that some open cells are marked ``o``, and the ``o``
    cells with S and G form one simple path from S to G; ``optimal``: valid and as short as the
    shortest path (any shortest path counts); ``length``: moves of the marked path (-1 if not
    valid); ``shortest``: moves of a shortest path (-1 if the goal is unreachable)."""
    H, W = shape
    x = np.asarray(inputs).reshape(-1, H, W).astype(np.int64)
    p = np.asarray(marked).reshape(-1, H, W).astype(np.int64)
    B = x.shape[0]
    s, g, one_each = endpoints(x)
    passable = (x == OPEN) | (x == START) | (x == GOAL)
    packed = W <= MAX_PACKED
    if packed:
        shortest = sweep(pack_rows(passable), s, need_far=False, target=g, width=W)["hit"]
    else:
        shortest = distances(passable, s).reshape(B, -1)[np.arange(B), g]
    shortest = np.where(one_each, shortest, -1)
    path = p == PATH
    same = np.where(path, x == OPEN, p == x).reshape(B, -1).all(1)
    on = path | (x == START) | (x == GOAL)
    deg = sum(_shifted(on, dr, dc, False).astype(np.int64) for dr, dc in _MOVES)
    end = (x == START) | (x == GOAL)
    deg_ok = (np.where(end, deg == 1, True) & np.where(path, deg == 2, True)).reshape(B, -1).all(1)
    if packed:
        on_bits = pack_rows(on)
        connected = (sweep(on_bits, s, need_far=False, width=W)["reached"] == on_bits).all(1)
    else:
        connected = ((distances(on, s) >= 0) | ~on).reshape(B, -1).all(1)
    valid = one_each & same & deg_ok & connected & (shortest >= 0)
    length = np.where(valid, path.reshape(B, -1).sum(1) + 1, -1)
    optimal = valid & (length == shortest)
    return {"valid": valid, "optimal": optimal, "length": length, "shortest": shortest}
