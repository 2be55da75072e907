"""Sudoku for the builder: a bitmask propagate-and-guess solver, the puzzle generator, the
search-effort rating, the symmetry group (augmentation) and a symmetry-invariant key.

Sizes: n x n grids with boxes of ``bh`` rows x ``bw`` columns (4: 2x2, 6: 2x3, 9: 3x3). Grids
are flat row-major arrays of values 0..n (0 = blank). Candidates are bitmasks (bit d-1 = digit d).

The solver is written in the subset of Python that numba compiles. With numba installed
(``pip install 'hrm-data[fast]'``) it is compiled on first use; without it the same functions
run as plain Python (about 100x slower, same results: the search order is fixed, and every
random choice comes from numpy arrays passed in). ``HRM_SUDOKU_NO_NUMBA=1`` forces plain Python.

The rating is the number of dead ends (contradictions) in the complete search tree that
solves the puzzle and proves its solution unique, with fixed rules: propagate naked and hidden
singles to a fixpoint, branch on the first cell with the fewest candidates, digits ascending.
0 means singles alone solve it.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

BOXES = {4: (2, 2), 6: (2, 3), 9: (3, 3)}


# ----------------------------------------------------------------------------- geometry

@dataclass(frozen=True)
class Geometry:
    n: int
    bh: int
    bw: int
    units: np.ndarray      # (3n, n) cells of each row, column, box
    peers: np.ndarray      # (C, P) the other cells sharing a unit with each cell
    popcount: np.ndarray   # (2^n,) bits set
    bitpos: np.ndarray     # (2^n,) digit (1..n) of a single-bit mask, 0 otherwise

    @property
    def cells(self) -> int:
        return self.n * self.n


@lru_cache(maxsize=None)
def geometry(n: int) -> Geometry:
    if n not in BOXES:
        raise ValueError(f"--size must be one of {', '.join(map(str, BOXES))}, got {n}")
    bh, bw = BOXES[n]
    r, c = np.divmod(np.arange(n * n), n)
    box = (r // bh) * (n // bw) + c // bw
    units = np.concatenate([np.arange(n * n).reshape(n, n), np.arange(n * n).reshape(n, n).T,
                            np.stack([np.flatnonzero(box == b) for b in range(n)])]).astype(np.int64)
    peers = np.stack([np.flatnonzero(((r == r[i]) | (c == c[i]) | (box == box[i])) & (np.arange(n * n) != i))
                      for i in range(n * n)]).astype(np.int64)
    masks = np.arange(1 << n)
    popcount = np.array([bin(m).count("1") for m in masks], np.int64)
    bitpos = np.where(popcount == 1, np.log2(np.maximum(masks, 1)).astype(np.int64) + 1, 0).astype(np.int64)
    return Geometry(n, bh, bw, units, peers, popcount, bitpos)


# ----------------------------------------------------------------------------- the solver (numba subset)

def _propagate(cand, units, peers, popcount, full):
    """Naked and hidden singles to a fixpoint, in place. False on a contradiction."""
    C = cand.shape[0]
    changed = True
    while changed:
        changed = False
        for i in range(C):
            m = cand[i]
            if m == 0:
                return False
            if popcount[m] == 1:
                for j in range(peers.shape[1]):
                    p = peers[i, j]
                    if cand[p] & m:
                        cand[p] &= ~m
                        if cand[p] == 0:
                            return False
                        changed = True
        for u in range(units.shape[0]):
            once = 0
            twice = 0
            for k in range(units.shape[1]):
                m = cand[units[u, k]]
                twice |= once & m
                once |= m
            if once != full:
                return False
            only = once & ~twice
            if only == 0:
                continue
            for k in range(units.shape[1]):
                i = units[u, k]
                h = cand[i] & only
                if h:
                    if h & (h - 1):
                        return False
                    if cand[i] != h:
                        cand[i] = h
                        changed = True
    return True


def _pick(cand, popcount):
    """First cell with the fewest candidates (more than one); -1 when every cell is decided."""
    best = -1
    best_n = 1 << 30
    for i in range(cand.shape[0]):
        k = popcount[cand[i]]
        if 1 < k < best_n:
            best = i
            best_n = k
    return best


def _search(cand0, units, peers, popcount, full, limit, order, sol):
    """Depth-first search; returns (solutions found up to ``limit``, dead ends). The first
    solution's masks go into ``sol``. ``order[c]`` lists the digits (0-based) to try at cell c."""
    C = cand0.shape[0]
    n = order.shape[1]
    st = np.empty((C + 1, C), np.int64)
    cell = np.zeros(C + 1, np.int64)
    rem = np.zeros(C + 1, np.int64)
    for i in range(C):
        st[0, i] = cand0[i]
    found = 0
    dead = 0
    K = 0
    ok = _propagate(st[0], units, peers, popcount, full)
    while True:
        if ok:
            c = _pick(st[K], popcount)
            if c < 0:
                found += 1
                if found == 1:
                    for i in range(C):
                        sol[i] = st[K, i]
                if found >= limit:
                    return found, dead
            else:
                cell[K] = c
                rem[K] = st[K, c]
                K += 1
        else:
            dead += 1
        while K > 0 and rem[K - 1] == 0:
            K -= 1
        if K == 0:
            return found, dead
        b = K - 1
        c = cell[b]
        bit = 0
        for j in range(n):
            t = 1 << order[c, j]
            if rem[b] & t:
                bit = t
                break
        rem[b] &= ~bit
        for i in range(C):
            st[K, i] = st[b, i]
        st[K, c] = bit
        ok = _propagate(st[K], units, peers, popcount, full)


def _generate(units, peers, popcount, full, digit_order, removal_order, ascending, out):
    """A random solved grid (search of the empty grid in ``digit_order``), then every clue in
    ``removal_order`` removed if the solution stays unique. Writes masks: out[0] the puzzle
    (0 = blank), out[1] the solution. Returns the rating of the puzzle (-1 if not unique)."""
    C = out.shape[1]
    cand = np.empty(C, np.int64)
    sol = np.zeros(C, np.int64)
    for i in range(C):
        cand[i] = full
    _search(cand, units, peers, popcount, full, 1, digit_order, sol)
    for i in range(C):
        out[0, i] = sol[i]
        out[1, i] = sol[i]
    scratch = np.zeros(C, np.int64)
    for k in range(C):
        c = removal_order[k]
        v = out[0, c]
        for i in range(C):
            cand[i] = out[0, i] if out[0, i] != 0 else full
        cand[c] = full & ~v      # is there a solution with another digit here?
        f, _ = _search(cand, units, peers, popcount, full, 1, ascending, scratch)
        if f == 0:
            out[0, c] = 0
    for i in range(C):
        cand[i] = out[0, i] if out[0, i] != 0 else full
    f, dead = _search(cand, units, peers, popcount, full, 2, ascending, scratch)
    return dead if f == 1 else -1


def _rate_many(cands, units, peers, popcount, full, ascending, counts, deads, sols):
    for r in range(cands.shape[0]):
        f, d = _search(cands[r], units, peers, popcount, full, 2, ascending, sols[r])
        counts[r] = f
        deads[r] = d


def _apply(g, src, cell_map, digit_map, offset, out):
    for m in range(cell_map.shape[0]):
        row = g[src[m]]
        for i in range(cell_map.shape[1]):
            v = row[cell_map[m, i]]
            out[m, i] = v if v < offset else digit_map[m, v - offset] + offset


_KERNELS = ("_propagate", "_pick", "_search", "_generate", "_rate_many", "_apply")
BACKEND = None   # "numba" or "python", decided on first use (importing numba costs a second)


def backend() -> str:
    """Compile the kernels with numba if it is installed (once); the backend's name."""
    global BACKEND
    if BACKEND is None:
        BACKEND = "python"
        if os.environ.get("HRM_SUDOKU_NO_NUMBA", "") in ("", "0"):
            try:
                import numba
            except ImportError:
                return BACKEND
            # rebinding the globals makes the compiled functions call each other compiled
            g = globals()
            for name in _KERNELS:
                g[name] = numba.njit(cache=True, nogil=True)(g[name])
            BACKEND = "numba"
    return BACKEND


# ----------------------------------------------------------------------------- public functions

def to_masks(grids: np.ndarray, n: int) -> np.ndarray:
    """Values 0..n -> candidate masks (blank = all digits)."""
    g = np.asarray(grids, np.int64)
    full = (1 << n) - 1
    return np.where(g > 0, np.left_shift(1, np.maximum(g - 1, 0)), full).astype(np.int64)


def solve(grids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each (C,) grid of values 0..n: (solutions found, capped at 2; rating = dead ends of the
    full search; the first solution as values, zeros if none)."""
    backend()
    geo = geometry(n)
    g = np.atleast_2d(np.asarray(grids)).reshape(-1, n * n)
    cands = to_masks(g, n)
    counts = np.zeros(len(g), np.int64)
    deads = np.zeros(len(g), np.int64)
    sols = np.zeros((len(g), n * n), np.int64)
    asc = np.tile(np.arange(n, dtype=np.int64), (n * n, 1))
    _rate_many(cands, geo.units, geo.peers, geo.popcount, (1 << n) - 1, asc, counts, deads, sols)
    values = geo.bitpos[sols]
    values[counts == 0] = 0
    return counts, deads, values


def generate_one(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, int]:
    """One minimal puzzle with a unique solution: (puzzle values, solution values, rating)."""
    backend()
    geo = geometry(n)
    C = n * n
    digit_order = np.argsort(rng.random((C, n)), axis=1).astype(np.int64)
    removal = rng.permutation(C).astype(np.int64)
    asc = np.tile(np.arange(n, dtype=np.int64), (C, 1))
    out = np.zeros((2, C), np.int64)
    rating = _generate(geo.units, geo.peers, geo.popcount, (1 << n) - 1, digit_order, removal, asc, out)
    if rating < 0:   # cannot happen: every removal keeps the solution unique
        raise RuntimeError("generator produced a puzzle without a unique solution (a bug)")
    return geo.bitpos[out[0]], geo.bitpos[out[1]], int(rating)


def valid_solutions(grids: np.ndarray, n: int) -> np.ndarray:
    """(N,) bool: each (C,) grid of values is complete and every row, column and box holds 1..n once."""
    geo = geometry(n)
    g = np.asarray(grids).reshape(-1, n * n).astype(np.int64)
    ok = ((g >= 1) & (g <= n)).all(axis=1)
    bits = np.left_shift(1, np.clip(g - 1, 0, n - 1))
    units = bits[:, geo.units]                       # (N, 3n, n)
    ok &= (np.bitwise_or.reduce(units, axis=2) == (1 << n) - 1).all(axis=1)
    return ok


# ----------------------------------------------------------------------------- symmetries

@lru_cache(maxsize=None)
def permutation_table(k: int) -> np.ndarray:
    """All k! permutations of 0..k-1 in lexicographic order, (k!, k) uint8 (built by arrays)."""
    t = np.zeros((1, 0), np.uint8)
    for m in range(1, k + 1):
        # permutations of m from those of m-1: choose the first element, relabel the rest
        first = np.repeat(np.arange(m, dtype=np.uint8), len(t))
        rest = np.tile(t, (m, 1))
        rest = rest + (rest >= first[:, None])
        t = np.concatenate([first[:, None], rest], axis=1).astype(np.uint8)
    return t


@lru_cache(maxsize=None)
def line_permutations(n_groups: int, size: int) -> np.ndarray:
    """Every permutation of n_groups * size lines that permutes the groups (bands or stacks)
    and the lines within each group: (n_groups! * size!^n_groups, n_groups * size) int16."""
    groups = permutation_table(n_groups).astype(np.int16)
    within = permutation_table(size).astype(np.int16)
    combos = np.stack(np.meshgrid(*([np.arange(len(groups))] + [np.arange(len(within))] * n_groups),
                                  indexing="ij"), -1).reshape(-1, 1 + n_groups)
    g = groups[combos[:, 0]]                                            # (R, n_groups)
    w = np.stack([within[combos[:, 1 + j]] for j in range(n_groups)], axis=1)   # (R, n_groups, size)
    return (g[:, :, None] * size + w).reshape(len(combos), n_groups * size).astype(np.int16)


def random_symmetries(rng: np.random.Generator, count: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random validity-preserving transforms, uniform over the group: (cell maps
    (count, C) int16: new cell i takes old cell map[i]; digit maps (count, n + 1) uint8: value
    v -> map[v], 0 stays 0). Bands/stacks and rows/columns within them are permuted; square
    boxes may also be transposed. One random integer per transform, decoded in mixed radix."""
    bh, bw = BOXES[n]
    rows_t, cols_t, digits_t = line_permutations(n // bh, bh), line_permutations(n // bw, bw), permutation_table(n)
    radix = [len(rows_t), len(cols_t), len(digits_t)] + ([2] if bh == bw else [1])
    u = rng.integers(0, int(np.prod(radix, dtype=object)), count, dtype=np.int64)
    idx = []
    for r in radix:
        u, d = np.divmod(u, r)
        idx.append(d)
    rows, cols = rows_t[idx[0]], cols_t[idx[1]]                          # (count, n)
    t = idx[3].astype(bool)[:, None]
    n16 = np.int16(n)
    a = np.where(t, rows, rows * n16)          # new cell (i, j) takes old (rows[i], cols[j]),
    b = np.where(t, cols * n16, cols)          # or (cols[j], rows[i]) when transposed
    cell_map = (a[:, :, None] + b[:, None, :]).reshape(count, n * n)
    digits = np.zeros((count, n + 1), np.uint8)
    digits[:, 1:] = digits_t[idx[2]] + 1
    return cell_map, digits


def apply_symmetries(grids: np.ndarray, cell_map: np.ndarray, digit_map: np.ndarray, offset: int = 0,
                     source: np.ndarray | None = None) -> np.ndarray:
    """out[m] = digit_map[m][grids[source[m]][cell_map[m]]] (source defaults to m), values
    ``offset`` + 0..n (offset 1 for HRM tokens, where 0 is PAD and stays PAD). numpy gathers in
    cache-sized blocks, or the numba kernel when the solver has loaded numba; the same bytes."""
    return apply_symmetries_many((grids,), cell_map, digit_map, offset, source)[0]


_BLOCK_ROWS = 2048   # rows per numpy gather: the index block (2048 x 81 x 8 bytes) stays in L2


def apply_symmetries_many(grids: Sequence[np.ndarray], cell_map: np.ndarray, digit_map: np.ndarray,
                          offset: int = 0, source: np.ndarray | None = None) -> list[np.ndarray]:
    """apply_symmetries for several grid arrays under the same transforms (a puzzle and its
    solution), computing each block's indices once."""
    gs = [np.ascontiguousarray(g) for g in grids]
    C = gs[0].shape[1]
    M = cell_map.shape[0]
    src = np.arange(M, dtype=np.intp) if source is None else np.asarray(source, np.intp)
    outs = [np.empty((M, C), g.dtype) for g in gs]
    # The numba kernel only when the generator's solver has loaded numba already: for this
    # alone, importing numba costs more than the blocked numpy gathers below.
    if BACKEND == "numba":
        for g, out in zip(gs, outs):
            _apply(g, src, cell_map, digit_map, offset, out)
        return outs
    W = digit_map.shape[1] + offset          # one lookup row per transform: value v -> lut[m, v]
    by_dtype: dict = {}                      # one table per dtype (puzzle and solution share it)
    for g in gs:
        if g.dtype not in by_dtype:
            lut = np.zeros((M, W), g.dtype)
            lut[:, offset:] = digit_map + offset
            by_dtype[g.dtype] = lut.ravel()
    luts = [by_dtype[g.dtype] for g in gs]
    flats = [g.ravel() for g in gs]
    row_base = np.arange(_BLOCK_ROWS, dtype=np.intp)[:, None] * W
    for a in range(0, M, _BLOCK_ROWS):
        b = min(M, a + _BLOCK_ROWS)
        cells = (src[a:b] * C)[:, None] + cell_map[a:b]        # flat index of each moved cell
        for flat, lut, out in zip(flats, luts, outs):
            np.take(lut[a * W:b * W], row_base[:b - a] + flat.take(cells), out=out[a:b])
    return outs


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on uint64."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _wl_colours(g: np.ndarray, n: int, rounds: int = 3) -> np.ndarray:
    """Colour refinement of the cells: a cell's colour hashes its own colour with the multisets
    of colours of the cells sharing its row, column, box, band, stack and (clues only) digit.
    Invariant under relabelling digits and permuting rows/columns within the Sudoku structure."""
    bh, bw = BOXES[n]
    N, C = g.shape
    r, c = np.divmod(np.arange(C), n)
    groups = (r, c, (r // bh) * (n // bw) + c // bw, r // bh, c // bw)
    onehots = [np.eye(int(k.max()) + 1, dtype=np.uint64)[k] for k in groups]      # (C, G)
    clue = g > 0
    dig = np.eye(n + 1, dtype=np.uint64)[g] * clue[:, :, None].astype(np.uint64)   # (N, C, n+1)
    colour = np.where(clue, np.uint64(0x9E3779B97F4A7C15), np.uint64(0x632BE59BD9B4E019))
    with np.errstate(over="ignore"):
        for _ in range(rounds):
            h = _mix(colour)
            acc = colour
            for j, oh in enumerate(onehots):
                s = (h @ oh) @ oh.T                                                   # (N, C)
                acc = _mix(acc ^ _mix(s + np.uint64(j + 1)))
            sd = np.einsum("nc,ncd->nd", h, dig)                                      # (N, n+1)
            s = np.einsum("nd,ncd->nc", sd, dig)
            colour = _mix(acc ^ _mix(s + np.uint64(7)))
    return colour


def symmetry_keys(grids: np.ndarray, n: int) -> list[str]:
    """A key per grid (values 0..n) that is equal for grids equivalent under the Sudoku
    symmetries (digit relabelling, band/stack and row/column-within permutations, transpose
    for square boxes). Different keys prove two puzzles inequivalent; equal keys are treated
    as equivalent (conservative: it can only reject more)."""
    g = np.asarray(grids).reshape(-1, n * n).astype(np.int64)
    if not len(g):
        return []
    bh, bw = BOXES[n]
    variants = [g] + ([g.reshape(-1, n, n).transpose(0, 2, 1).reshape(-1, n * n)] if bh == bw else [])
    keys = []
    for v in variants:
        col = _wl_colours(v, n)
        with np.errstate(over="ignore"):
            a = _mix(col + np.uint64(0x1234567)).sum(axis=1, dtype=np.uint64)
            b = _mix(col ^ np.uint64(0xABCDEF12345)).sum(axis=1, dtype=np.uint64)
        keys.append(np.stack([a, b], axis=1))
    out = []
    for i in range(len(g)):
        ks = sorted(k[i].tobytes() for k in keys)
        out.append(hashlib.blake2b(ks[0], digest_size=12).hexdigest())
    return out
