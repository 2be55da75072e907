"""The sampler follows HRM's rules: checked against a plain loop written from the rules."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hrm_data.sampler import GroupSampler, SamplerState, eval_batches, expected_examples_per_epoch, pack_batches


def structure(puzzle_sizes, group_sizes):
    p = np.concatenate([[0], np.cumsum(puzzle_sizes)]).astype(np.int32)
    g = np.concatenate([[0], np.cumsum(group_sizes)]).astype(np.int32)
    return p, g


def naive_pack(sizes, B):
    """HRM's _sample_batch loop, one puzzle at a time."""
    batches, i = [], 0
    while i < len(sizes):
        cur, takes = 0, []
        while i < len(sizes) and cur < B:
            t = min(sizes[i], B - cur)
            takes.append(t)
            cur += t
            i += 1
        if cur < B:
            break
        batches.append(takes)
    return batches


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=0, max_size=60), st.integers(1, 17))
def test_pack_matches_naive_loop(sizes, B):
    starts, takes = pack_batches(np.array(sizes, np.int64), B)
    naive = naive_pack(sizes, B)
    assert len(takes) == len(naive)
    for k, batch in enumerate(naive):
        assert starts[k + 1] - starts[k] == len(batch)
        assert takes[k] == batch[-1]


def test_single_example_puzzles_document_example():
    p, g = structure([1] * 960, [4] * 240)
    s = GroupSampler((p, g), global_batch_size=32, epochs_per_iter=10, seed=0)
    assert s.steps_per_iteration(0) == 75  # floor(2400 / 32), not 8 x 10
    batches = list(s.iteration(0))
    assert len(batches) == 75
    rows = np.concatenate([b.examples for b in batches])
    # every group appears once per epoch: each of 10 epochs is a permutation of the 240 groups
    group_of_row = np.searchsorted(g, np.searchsorted(p, rows, side="right") - 1, side="right") - 1
    first_epoch = group_of_row[:240]
    assert sorted(first_epoch) == list(range(240))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=40), st.integers(1, 9), st.integers(1, 3), st.integers(0, 5))
def test_batches_follow_the_rules(puzzle_sizes, B, I, seed):
    # random grouping of the puzzles
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(puzzle_sizes)), size=rng.integers(0, len(puzzle_sizes)), replace=False))
    group_sizes = np.diff(np.concatenate([[0], cuts, [len(puzzle_sizes)]]))
    p, g = structure(puzzle_sizes, group_sizes)
    s = GroupSampler((p, g), B, I, seed)
    plan = s.plan_iteration(0)
    assert len(plan.puzzles) == I * len(group_sizes)
    # each chosen puzzle belongs to the group at that slot, and each epoch is a permutation
    groups = np.searchsorted(g, plan.puzzles, side="right") - 1
    for e in range(I):
        assert sorted(groups[e * len(group_sizes):(e + 1) * len(group_sizes)]) == list(range(len(group_sizes)))
    naive = naive_pack(list(plan.sizes), B)
    batches = list(s.iteration(0))
    assert len(batches) == len(naive)
    for b, takes in zip(batches, naive):
        assert b.examples.shape == (B,)
        # rows belong to their puzzles, and no example repeats within one puzzle slot
        assert np.all((p[b.puzzles] <= b.examples) & (b.examples < p[b.puzzles + 1]))
        assert len(np.unique(b.examples)) == len(b.examples) or len(set(b.puzzles.tolist())) < len(takes)


def test_same_seed_same_batches_and_resume():
    p, g = structure([1, 3, 2, 5, 1, 2, 4, 1], [2, 3, 1, 2])
    a = [b.examples for b in GroupSampler((p, g), 5, 3, seed=7).batches(4)]
    b = [b.examples for b in GroupSampler((p, g), 5, 3, seed=7).batches(4)]
    c = [b.examples for b in GroupSampler((p, g), 5, 3, seed=8).batches(4)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    all_batches = list(GroupSampler((p, g), 5, 3, seed=7).batches(4))
    mid = all_batches[len(all_batches) // 2]
    resumed = list(GroupSampler((p, g), 5, 3, seed=7).batches(4, mid.next_state))
    assert len(resumed) == len(all_batches) - len(all_batches) // 2 - 1
    for x, y in zip(resumed, all_batches[len(all_batches) // 2 + 1:]):
        assert (x.iteration, x.index) == (y.iteration, y.index)
        np.testing.assert_array_equal(x.examples, y.examples)
    assert SamplerState.from_dict(mid.next_state.to_dict()) == mid.next_state


def test_ranks_partition_the_global_batch():
    p, g = structure([2, 1, 3, 1, 1, 2, 2, 1, 3], [3, 3, 3])
    full = list(GroupSampler((p, g), 8, 4, seed=1).batches(2))
    parts = [list(GroupSampler((p, g), 8, 4, seed=1, rank=r, world_size=2).batches(2)) for r in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(full)
    for k, b in enumerate(full):
        np.testing.assert_array_equal(np.concatenate([parts[0][k].examples, parts[1][k].examples]), b.examples)
    with pytest.raises(ValueError, match="not divisible"):
        GroupSampler((p, g), 7, 1, world_size=2)


def test_eval_batches_cover_every_example_once():
    p, g = structure([2, 1, 3, 1], [2, 2])
    seen = []
    for rows, puzzles, valid in eval_batches(p, 4):
        assert np.all((p[puzzles] <= rows) & (rows < p[puzzles + 1]))
        seen.extend(rows.tolist())
    assert seen == list(range(7))
    r0 = [r for r, _, _ in eval_batches(p, 4, rank=0, world_size=2)]
    r1 = [r for r, _, _ in eval_batches(p, 4, rank=1, world_size=2)]
    assert sorted(np.concatenate(r0 + r1).tolist()) == list(range(7))


def test_expected_examples_per_epoch():
    p, g = structure([1, 3, 2, 2], [2, 2])
    mean, lo, hi = expected_examples_per_epoch(p, g)
    assert (mean, lo, hi) == (4.0, 3, 5)
