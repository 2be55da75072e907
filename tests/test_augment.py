import numpy as np
import pytest

from hrm_data.augment import (
    COMPOSE, INVERSE, dihedral, dihedral_flat, inverse_dihedral, inverse_permutation, permute_tokens,
    random_permutation,
)


def test_eight_distinct_transforms_and_inverses():
    g = np.arange(12).reshape(3, 4)
    images = {dihedral(g, t).tobytes() + bytes(dihedral(g, t).shape) for t in range(8)}
    assert len(images) == 8
    for t in range(8):
        np.testing.assert_array_equal(inverse_dihedral(dihedral(g, t), t), g)
    assert list(INVERSE) == [0, 3, 2, 1, 4, 5, 6, 7]  # sapientinc/HRM's table


def test_composition_table():
    g = np.random.default_rng(0).integers(0, 9, (5, 5))
    for a in range(8):
        for b in range(8):
            np.testing.assert_array_equal(dihedral(dihedral(g, b), a), dihedral(g, COMPOSE[a, b]))


def test_vectorized_over_batches_and_flat():
    batch = np.random.default_rng(0).integers(0, 9, (7, 4, 4))
    for t in range(8):
        out = dihedral(batch, t)
        for i in range(7):
            np.testing.assert_array_equal(out[i], dihedral(batch[i], t))
        flat = dihedral_flat(batch.reshape(7, 16), t, (4, 4))
        np.testing.assert_array_equal(flat, out.reshape(7, 16))
    with pytest.raises(ValueError):
        dihedral(batch, 8)


def test_token_permutation():
    rng = np.random.default_rng(0)
    perm = random_permutation(rng, 10, fixed=(0, 1))
    assert perm[0] == 0 and perm[1] == 1 and sorted(perm) == list(range(10))
    x = rng.integers(0, 10, (3, 5))
    np.testing.assert_array_equal(permute_tokens(permute_tokens(x, perm), inverse_permutation(perm)), x)
