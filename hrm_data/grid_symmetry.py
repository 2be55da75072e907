"""ARC-style grids on HRM's 30 x 30 canvas, and keys that are equal for two pairs of grids
exactly when one is the other under a dihedral transform and a permutation of colours 1-9.

The encoding is sapientinc/HRM's (``dataset/build_arc_dataset.py``): PAD 0, EOS 1, colour c as
token c + 2; the grid sits at some offset on the canvas, EOS fills the row below it and the
column right of it (not the corner). Used by the ARC builder (leaks, augmentation classes,
decoding predictions) and by ``hrm-data validate`` (code E603). numpy only.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .augment import NUM_DIHEDRAL, dihedral

CANVAS = 30
PAD, EOS, COLOUR0 = 0, 1, 2
NUM_COLOURS = 10
VOCAB = COLOUR0 + NUM_COLOURS


def is_arc_layout(vocab_size: int, seq_len: int) -> bool:
    """Datasets in HRM's ARC encoding (ours or the paper repos')."""
    return vocab_size == VOCAB and seq_len == CANVAS * CANVAS


# ----------------------------------------------------------------------------- canvases

def grid_boxes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(r0, c0, h, w) per canvas row (n, 900): the bounding box of its colour tokens (a grid
    placed anywhere, e.g. translated). Empty canvases give h = w = 0."""
    colour = (np.asarray(rows).reshape(-1, CANVAS, CANVAS) >= COLOUR0)
    rany, cany = colour.any(2), colour.any(1)
    h, w = rany.sum(1), cany.sum(1)
    return rany.argmax(1), cany.argmax(1), h, w


def crop_sizes(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) of the largest top-left rectangle of colour tokens per canvas row: how the paper
    repos read a prediction (a row stops at its first non-colour token; ties keep the first)."""
    g = np.asarray(rows).reshape(-1, CANVAS, CANVAS)
    ok = (g >= COLOUR0) & (g < VOCAB)
    lead = np.where(ok.all(2), CANVAS, (~ok).argmax(2))          # leading colour cells per row
    width = np.minimum.accumulate(lead, axis=1)                    # rectangle width using rows 0..r
    area = width * np.arange(1, CANVAS + 1)
    best = area.argmax(1)
    h = np.where(area.max(1) > 0, best + 1, 0)
    w = width[np.arange(len(g)), best] * (h > 0)
    return h, w


def to_top_left(rows: np.ndarray, r0: np.ndarray, c0: np.ndarray, h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Each row's h x w box at (r0, c0) moved to the top-left corner; everything else PAD."""
    g = np.asarray(rows).reshape(-1, CANVAS, CANVAS)
    n = len(g)
    r = np.arange(CANVAS)
    ri = np.minimum(r[None, :] + r0[:, None], CANVAS - 1)          # (n, 30)
    ci = np.minimum(r[None, :] + c0[:, None], CANVAS - 1)
    out = g[np.arange(n)[:, None, None], ri[:, :, None], ci[:, None, :]]
    mask = (r[None, :, None] < h[:, None, None]) & (r[None, None, :] < w[:, None, None])
    return np.where(mask, out, PAD).reshape(n, CANVAS * CANVAS)


def canvas_grid(row: np.ndarray, h: int, w: int, r0: int = 0, c0: int = 0) -> np.ndarray:
    """One grid (colours 0-9) read off a canvas row."""
    return np.asarray(row).reshape(CANVAS, CANVAS)[r0:r0 + h, c0:c0 + w].astype(np.int64) - COLOUR0


def encode_grid(grid: np.ndarray, r0: int = 0, c0: int = 0) -> np.ndarray:
    """One grid onto a canvas (900,) uint8 at offset (r0, c0), with HRM's EOS frame."""
    g = np.asarray(grid)
    h, w = g.shape
    out = np.zeros((CANVAS, CANVAS), np.uint8)
    out[r0:r0 + h, c0:c0 + w] = g + COLOUR0
    if r0 + h < CANVAS:
        out[r0 + h, c0:c0 + w] = EOS
    if c0 + w < CANVAS:
        out[r0:r0 + h, c0 + w] = EOS
    return out.reshape(-1)


# ----------------------------------------------------------------------------- symmetry keys

def colour_canonical(grids: Sequence[np.ndarray]) -> tuple[bytes, np.ndarray]:
    """Relabel colours 1-9 by order of first appearance (row-major, grid after grid); returns the
    relabelled content as bytes (shapes included) and the original colours in that order."""
    flat = np.concatenate([np.asarray(g, np.uint8).ravel() for g in grids]) if grids else np.zeros(0, np.uint8)
    vals, first = np.unique(flat, return_index=True)
    nz = vals != 0
    order = vals[nz][np.argsort(first[nz], kind="stable")]
    lut = np.zeros(NUM_COLOURS, np.uint8)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.uint8)
    shapes = b"".join(bytes([*np.shape(g), 255]) for g in grids)
    return shapes + lut[flat].tobytes(), order.astype(np.int64)


def dihedral_classes(grids: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, list[bytes]]:
    """For each of the 8 transforms t: the class of t(grids) up to colour relabelling (equal class
    = equal after some recolouring), and the first-appearance colour order of t(grids).

    Returns (class id per t (8,), colour order (8, k), canonical bytes per t)."""
    forms, orders = [], []
    for t in range(NUM_DIHEDRAL):
        b, order = colour_canonical([dihedral(g, t) for g in grids])
        forms.append(b)
        orders.append(order)
    first: dict[bytes, int] = {}
    cls = np.array([first.setdefault(b, len(first)) for b in forms], np.int64)
    return cls, np.stack(orders) if orders[0].size else np.zeros((NUM_DIHEDRAL, 0), np.int64), forms


def symmetry_key(grids: Sequence[np.ndarray]) -> bytes:
    """Equal for two lists of grids exactly when one is a dihedral transform (the same for all)
    plus a permutation of colours 1-9 of the other."""
    return min(colour_canonical([dihedral(g, t) for g in grids])[0] for t in range(NUM_DIHEDRAL))


# ----------------------------------------------------------------------------- canvases, in bulk

def _mix64(h: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(30))
        h = h * np.uint64(0xBF58476D1CE4E5B9)
        h = h ^ (h >> np.uint64(27))
        h = h * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def invariant_hash(inputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A 64-bit value per canvas pair that no translation, dihedral transform or colour
    permutation changes (shapes up to a joint swap, colour-0 counts, the sorted per-colour
    (input count, label count) pairs). Equal values are candidates, to be confirmed exactly."""
    x, y = np.asarray(inputs), np.asarray(labels)
    n = len(x)
    _, _, hx, wx = grid_boxes(x)
    _, _, hy, wy = grid_boxes(y)
    idx = np.arange(n, dtype=np.int64)[:, None] * VOCAB
    cx = np.bincount((idx + x).ravel(), minlength=n * VOCAB).reshape(n, VOCAB)
    cy = np.bincount((idx + y).ravel(), minlength=n * VOCAB).reshape(n, VOCAB)
    pairs = np.sort(cx[:, COLOUR0 + 1:] * 1024 + cy[:, COLOUR0 + 1:], axis=1)
    a = ((hx * 32 + wx) * 32 + hy) * 32 + wy
    b = ((wx * 32 + hx) * 32 + wy) * 32 + hy
    shapes = np.minimum(a, b)[:, None]
    feats = np.concatenate([shapes, cx[:, [COLOUR0]], cy[:, [COLOUR0]], pairs], 1).astype(np.uint64)
    h = np.full(n, 0x243F6A8885A308D3, np.uint64)
    with np.errstate(over="ignore"):
        for j in range(feats.shape[1]):
            h = _mix64(h ^ feats[:, j])
    return h


def canvas_symmetry_keys(inputs: np.ndarray, labels: np.ndarray) -> list[bytes]:
    """symmetry_key of each canvas pair (translation ignored). Python per row: use on candidates."""
    x, y = np.asarray(inputs), np.asarray(labels)
    bx, by = grid_boxes(x), grid_boxes(y)
    keys = []
    for i in range(len(x)):
        gi = canvas_grid(x[i], bx[2][i], bx[3][i], bx[0][i], bx[1][i])
        go = canvas_grid(y[i], by[2][i], by[3][i], by[0][i], by[1][i])
        keys.append(symmetry_key([gi, go]))
    return keys


def symmetric_leaks(train: Sequence[tuple[np.ndarray, np.ndarray]], test: Sequence[tuple[np.ndarray, np.ndarray]],
                    chunk: int = 16384) -> list[tuple[int, int]]:
    """(test row, train row) for every test canvas pair that equals a train canvas pair up to
    translation, a dihedral transform and a permutation of colours 1-9. ``train`` and ``test``
    are lists of (inputs, labels) array pairs (memory-mapped is fine), rows counted across them.

    An invariant hash of every row finds candidates in one vectorized pass; each candidate is
    confirmed with exact symmetry keys (computed once per distinct colour pattern), so a hash
    collision costs time but never gives a false finding. Test rows whose label is all PAD
    (unknown outputs) are skipped."""
    def hashes(parts):
        out, known = [], []
        for x, y in parts:
            for lo in range(0, len(x), chunk):
                xb, yb = np.asarray(x[lo:lo + chunk]), np.asarray(y[lo:lo + chunk])
                out.append(invariant_hash(xb, yb))
                known.append((yb != PAD).any(1))
        return (np.concatenate(out) if out else np.zeros(0, np.uint64),
                np.concatenate(known) if known else np.zeros(0, bool))

    def fetch(parts, rows):
        offs = np.cumsum([0] + [len(x) for x, _ in parts])
        xs, ys = [], []
        for r in rows:
            k = int(np.searchsorted(offs, r, side="right") - 1)
            xs.append(np.asarray(parts[k][0][r - offs[k]]))
            ys.append(np.asarray(parts[k][1][r - offs[k]]))
        return np.stack(xs), np.stack(ys)

    h_tr, _ = hashes(train)
    h_te, known = hashes(test)
    hit = np.flatnonzero(np.isin(h_te, h_tr) & known)
    if not hit.size:
        return []
    found: list[tuple[int, int]] = []
    order = np.argsort(h_tr, kind="stable")
    sorted_tr = h_tr[order]
    for value in np.unique(h_te[hit]).tolist():
        te_rows = hit[h_te[hit] == value]
        te_keys = canvas_symmetry_keys(*fetch(test, te_rows))
        wanted = set(te_keys)
        lo, hi = np.searchsorted(sorted_tr, value), np.searchsorted(sorted_tr, value, side="right")
        tr_rows = np.sort(order[lo:hi])
        match: dict[bytes, int] = {}
        seen_patterns: set[bytes] = set()
        for start in range(0, len(tr_rows), 256):
            block = tr_rows[start:start + 256]
            x, y = fetch(train, block)
            bx, by = grid_boxes(x), grid_boxes(y)
            for i, r in enumerate(block.tolist()):
                gi = canvas_grid(x[i], bx[2][i], bx[3][i], bx[0][i], bx[1][i])
                go = canvas_grid(y[i], by[2][i], by[3][i], by[0][i], by[1][i])
                pattern = colour_canonical([gi, go])[0]
                if pattern in seen_patterns:
                    continue
                seen_patterns.add(pattern)
                k = symmetry_key([gi, go])
                if k in wanted and k not in match:
                    match[k] = r
            if len(match) == len(wanted):
                break
        found.extend((int(t), match[k]) for t, k in zip(te_rows.tolist(), te_keys) if k in match)
    return sorted(found)
