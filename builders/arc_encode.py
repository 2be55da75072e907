"""ARC augmentation and encoding as sapientinc/HRM's builder does it, vectorized per task.

A *version* of a task is a dihedral transform t and a permutation of colours 1-9 (0 fixed),
applied to every grid. Versions are distinct when their images differ; the number of distinct
images is (number of transforms that give different grids up to recolouring) x 9!/(9-k)! for a
task with k non-zero colours, so a task with few colours is capped exactly instead of after
blind retries. Encoding puts each grid on HRM's 30 x 30 canvas (see hrm_data.grid_symmetry),
translated at random on train except one example per version.
"""
from __future__ import annotations

import hashlib
import itertools
import math
from typing import Sequence

import numpy as np

from hrm_data.augment import NUM_DIHEDRAL, dihedral
from hrm_data.grid_symmetry import CANVAS, COLOUR0, EOS, NUM_COLOURS, dihedral_classes

SWAPS = np.array([0, 1, 0, 1, 0, 0, 1, 1], bool)   # transforms that exchange height and width


def task_rng(seed: int, name: str, stream: int) -> np.random.Generator:
    """A generator for one task and purpose, from the seed and the task's name only (so the
    result never depends on listing order, PYTHONHASHSEED or worker count)."""
    words = np.frombuffer(hashlib.blake2b(name.encode(), digest_size=16).digest(), np.uint32)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(*map(int, words), stream)))


def perm_string(perm: np.ndarray) -> str:
    return "".join(str(int(v)) for v in perm)


def perm_strings(perms: np.ndarray) -> list[str]:
    """perm_string of each row of (V, 10) digit maps, at once."""
    b = (np.asarray(perms) + ord("0")).astype(np.uint8).tobytes().decode("ascii")
    return [b[i:i + 10] for i in range(0, len(b), 10)]


def plan_versions(grids: Sequence[np.ndarray], num_aug: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray, int]:
    """Up to ``num_aug`` distinct augmented versions plus the original (first).

    Returns (transforms (V,), colour maps (V, 10), number of distinct images there are)."""
    cls, orders, _ = dihedral_classes(grids)
    k = orders.shape[1]
    distinct = int(cls.max() + 1) * math.perm(9, k)
    ident = np.arange(10, dtype=np.int64)
    scale = 10 ** np.arange(k - 1, -1, -1, dtype=np.int64)

    def keys(t: np.ndarray, perms: np.ndarray) -> np.ndarray:
        mapped = np.take_along_axis(perms, orders[t], axis=1) if k else np.zeros((len(t), 0), np.int64)
        return cls[t] * 10 ** k + mapped @ scale

    ts, ps = [np.zeros(1, np.int64)], [ident[None]]
    if num_aug <= 0:
        return ts[0], ps[0], distinct
    taken = {int(keys(ts[0], ps[0])[0])}
    want = min(num_aug, distinct - 1)
    if want == distinct - 1 and distinct <= 4096:   # every image: enumerate them (few colours)
        reps = [int(np.flatnonzero(cls == c)[0]) for c in range(int(cls.max()) + 1)]
        t_all, p_all = [], []
        for t in reps:
            for tup in itertools.permutations(range(1, 10), k):
                perm = ident.copy()
                perm[orders[t]] = tup
                rest = [c for c in range(1, 10) if c not in tup]
                free = [c for c in range(1, 10) if c not in set(orders[t].tolist())]
                perm[free] = rest
                t_all.append(t)
                p_all.append(perm)
        t_all, p_all = np.array(t_all, np.int64), np.array(p_all, np.int64)
        kk = keys(t_all, p_all)
        keep = np.array([int(v) not in taken for v in kk])
        order = rng.permutation(int(keep.sum()))
        ts.append(t_all[keep][order])
        ps.append(p_all[keep][order])
    else:
        got = 0
        while got < want:
            m = 2 * (want - got) + 16
            t = rng.integers(0, NUM_DIHEDRAL, m)
            perms = np.concatenate([np.zeros((m, 1), np.int64), np.argsort(rng.random((m, 9)), axis=1) + 1], 1)
            kk = keys(t, perms)
            _, first = np.unique(kk, return_index=True)
            first.sort()
            new = [i for i in first.tolist() if int(kk[i]) not in taken][:want - got]
            taken.update(int(kk[i]) for i in new)
            ts.append(t[new])
            ps.append(perms[new])
            got += len(new)
    return np.concatenate(ts), np.concatenate(ps), distinct


_FRAMES: dict[tuple[int, int], np.ndarray] = {}


def _frame(h: int, w: int) -> np.ndarray:
    """Positions on the 31-wide scratch canvas of an h x w grid's cells, then its EOS row below
    and EOS column right (what _with_eos gives the colours of)."""
    if (h, w) not in _FRAMES:
        P = CANVAS + 1
        rr = np.concatenate([np.repeat(np.arange(h), w), np.full(w, h), np.arange(h)])
        cc = np.concatenate([np.tile(np.arange(w), h), np.arange(w), np.full(h, w)])
        _FRAMES[(h, w)] = rr * P + cc
    return _FRAMES[(h, w)]


def encode_versions(pairs: Sequence[tuple[np.ndarray, np.ndarray | None]], ts: np.ndarray, perms: np.ndarray,
                    rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of every version on the canvas, version-major: (V*E, 900) inputs and labels
    (uint8), and the (V*E,) row and column offsets. ``rng`` given: translate at random except
    one example per version (HRM's train rule). A pair without output gets an all-PAD label."""
    V, E = len(ts), len(pairs)
    S = CANVAS * CANVAS
    hmax = np.array([max(a.shape[0], b.shape[0] if b is not None else 0) for a, b in pairs])
    wmax = np.array([max(a.shape[1], b.shape[1] if b is not None else 0) for a, b in pairs])
    swap = SWAPS[ts][:, None]
    H = np.where(swap, wmax[None], hmax[None])
    W = np.where(swap, hmax[None], wmax[None])
    if rng is not None and E:
        dr = np.floor(rng.random((V, E)) * (CANVAS - H + 1)).astype(np.int64)
        dc = np.floor(rng.random((V, E)) * (CANVAS - W + 1)).astype(np.int64)
        keep = rng.integers(0, E, V)
        dr[np.arange(V), keep] = 0
        dc[np.arange(V), keep] = 0
    else:
        dr = np.zeros((V, E), np.int64)
        dc = np.zeros((V, E), np.int64)
    # scatter into a 31-wide scratch canvas (the EOS row/column may fall on row/column 30, where
    # the reference clips it), then drop the spare row and column; one scatter per transform and
    # side covers every pair of every version that uses the transform
    P = CANVAS + 1
    lut = np.concatenate([perms + COLOUR0, np.full((V, 1), EOS)], 1).astype(np.uint8)   # 10 = EOS
    shift = dr * P + dc + np.arange(E)[None] * (P * P)                                  # (V, E)
    out = []
    for side in (0, 1):
        big = np.zeros((V * E, P * P), np.uint8)
        flat = big.reshape(-1)
        for t in np.unique(ts).tolist():
            vs = np.flatnonzero(ts == t)
            grids = [(e, dihedral(pair[side], t)) for e, pair in enumerate(pairs) if pair[side] is not None]
            if not grids:
                continue
            local = np.concatenate([_frame(*g.shape) for _, g in grids])
            sizes = [g.size + g.shape[0] + g.shape[1] for _, g in grids]
            e_idx = np.repeat(np.array([e for e, _ in grids]), sizes)
            colours = np.full(local.size, NUM_COLOURS, np.int64)           # EOS unless a cell
            at = 0
            for (_, g), n in zip(grids, sizes):
                colours[at:at + g.size] = g.ravel()
                at += n
            off = (vs * (E * P * P))[:, None] + shift[vs][:, e_idx] + local[None]
            flat[off] = lut[vs][:, colours]
        out.append(np.ascontiguousarray(big.reshape(V * E, P, P)[:, :CANVAS, :CANVAS]).reshape(V * E, S))
    return out[0], out[1], dr.reshape(-1), dc.reshape(-1)
