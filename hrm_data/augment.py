"""Augmentation shared by every builder and by evaluation: the dihedral group D4 on grids and
token permutations, vectorized over leading batch axes.

Transform ids follow sapientinc/HRM's ``dataset/common.py`` so augmented identifiers mean the
same thing in both: 0 identity, 1 rot90, 2 rot180, 3 rot270 (counter-clockwise), 4 flip left-right,
5 flip up-down, 6 transpose, 7 anti-transpose.
"""
from __future__ import annotations

import numpy as np

NUM_DIHEDRAL = 8
DIHEDRAL_NAMES = ("id", "rot90", "rot180", "rot270", "flip_lr", "flip_ud", "transpose", "antitranspose")


def dihedral(grids: np.ndarray, tid: int) -> np.ndarray:
    """Apply transform ``tid`` to the last two axes of ``grids`` (..., H, W).

    Plain slicing and axis swaps (views, as np.rot90 / np.flip return, at a fraction of their
    call cost: builders call this per grid)."""
    g = np.asarray(grids)
    if tid == 0:
        return g
    if tid == 1:      # np.rot90(g, 1): counter-clockwise
        return np.swapaxes(g[..., ::-1], -2, -1)
    if tid == 2:
        return g[..., ::-1, ::-1]
    if tid == 3:      # np.rot90(g, 3)
        return np.swapaxes(g, -2, -1)[..., ::-1]
    if tid == 4:
        return g[..., ::-1]
    if tid == 5:
        return g[..., ::-1, :]
    if tid == 6:
        return np.swapaxes(g, -2, -1)
    if tid == 7:      # flip left-right after rot90
        return np.swapaxes(g[..., ::-1], -2, -1)[..., ::-1]
    raise ValueError(f"dihedral transform id must be 0..7, got {tid}")


def _table() -> tuple[np.ndarray, np.ndarray]:
    probe = np.arange(6).reshape(2, 3)  # asymmetric, so every transform is distinguishable
    images = [dihedral(probe, t) for t in range(NUM_DIHEDRAL)]

    def which(img: np.ndarray) -> int:
        return next(t for t, ref in enumerate(images) if ref.shape == img.shape and np.array_equal(ref, img))

    compose = np.array([[which(dihedral(dihedral(probe, b), a)) for b in range(8)] for a in range(8)], np.int64)
    inverse = np.array([int(np.where(compose[t] == 0)[0][0]) for t in range(8)], np.int64)
    return compose, inverse


# COMPOSE[a, b]: the single transform equal to "apply b, then a". INVERSE[t] undoes t.
COMPOSE, INVERSE = _table()


def inverse_dihedral(grids: np.ndarray, tid: int) -> np.ndarray:
    return dihedral(grids, int(INVERSE[tid]))


def dihedral_flat(seqs: np.ndarray, tid: int, shape: tuple[int, int]) -> np.ndarray:
    """Transform flattened grids (..., H*W) laid out row-major, as HRM sequences are."""
    H, W = shape
    s = np.asarray(seqs)
    out = dihedral(s.reshape(*s.shape[:-1], H, W), tid)
    return np.ascontiguousarray(out).reshape(*s.shape[:-1], -1)


def permute_tokens(tokens: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Map every token t to perm[t] (a lookup, vectorized over any shape)."""
    return np.asarray(perm)[np.asarray(tokens)]


def random_permutation(rng: np.random.Generator, vocab_size: int, fixed: tuple[int, ...] = (),
                       permutable: tuple[int, ...] | None = None) -> np.ndarray:
    """A permutation of 0..vocab_size-1 that shuffles ``permutable`` tokens among themselves
    (all tokens not in ``fixed`` when None) and keeps the rest where they are."""
    perm = np.arange(vocab_size)
    movable = np.array([t for t in range(vocab_size) if t not in fixed] if permutable is None else permutable, np.int64)
    perm[movable] = rng.permutation(movable)
    return perm


def inverse_permutation(perm: np.ndarray) -> np.ndarray:
    inv = np.empty_like(np.asarray(perm))
    inv[np.asarray(perm)] = np.arange(len(perm))
    return inv
