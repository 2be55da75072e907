"""HRM's group sampler, in numpy: the one implementation `plan` counts with and the trainer draws from.

The rules are sapientinc/HRM's ``puzzle_dataset.py`` (training mode):

* an *iteration* is ``epochs_per_iter`` epochs; each epoch is a random permutation of the groups,
  and the iteration concatenates them into one group order;
* each group in that order contributes one puzzle, drawn uniformly from the group;
* a puzzle contributes all its examples, in random order, clipped to the room left in the batch
  (the clipped remainder is discarded, not carried over);
* only the last, partial batch of an iteration is dropped;
* with ``world_size`` ranks each takes a contiguous slice of ``global_batch_size / world_size``.

Differences from the reference, on purpose: every draw comes from the seed (the reference picks
a clipped puzzle's examples with numpy's global RNG), and batch ``k`` of iteration ``i`` has its
own counter-based stream, so resuming at (i, k) needs no replay. Group order and puzzle choice
use the reference's stream, ``Philox(seed + iteration_number)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np


@dataclass(frozen=True)
class SamplerState:
    """Where the sampler stands: the next batch is batch ``batch`` of iteration ``iteration``."""

    iteration: int = 0
    batch: int = 0

    def to_dict(self) -> dict:
        return {"iteration": self.iteration, "batch": self.batch}

    @classmethod
    def from_dict(cls, d: dict) -> "SamplerState":
        return cls(int(d["iteration"]), int(d["batch"]))


@dataclass
class Batch:
    """One training batch for this rank: example rows and the puzzle each row came from."""

    set_name: str
    iteration: int
    index: int           # batch number within the iteration (same on every rank)
    examples: np.ndarray  # (local_batch,) int64 row indices into inputs/labels
    puzzles: np.ndarray   # (local_batch,) int64 puzzle indices (-> puzzle_identifiers)

    @property
    def next_state(self) -> SamplerState:
        return SamplerState(self.iteration, self.index + 1)


@dataclass
class IterationPlan:
    """The draw of one iteration before any example is chosen: enough to count steps."""

    puzzles: np.ndarray       # (slots,) puzzle chosen for each group in the iteration's order
    sizes: np.ndarray         # (slots,) examples in that puzzle
    batch_starts: np.ndarray  # (steps + 1,) slot boundaries of the full batches
    last_take: np.ndarray     # (steps,) examples taken from each batch's last slot

    @property
    def steps(self) -> int:
        return int(self.last_take.shape[0])


def pack_constant(slots: int, size: int, batch_size: int) -> tuple[int, int, int]:
    """HRM's packing in closed form when every puzzle has ``size`` examples: (steps, examples
    clipped off batches' last puzzles, examples of the dropped partial batch)."""
    per_batch = -(-batch_size // size)  # puzzles that fill one batch, the last one clipped
    steps = slots // per_batch
    return steps, steps * (per_batch * size - batch_size), (slots - steps * per_batch) * size


def pack_batches(sizes: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """HRM's greedy packing of puzzles (of ``sizes`` examples) into full batches.

    Returns slot boundaries (steps + 1,) and the take of each batch's last, possibly clipped slot.
    Closed form when all puzzles have one size (the common case), else one ``searchsorted`` per
    batch, never a loop per example.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    n = sizes.shape[0]
    if n and sizes.min() == sizes.max() > 0:
        size = int(sizes[0])
        per_batch = -(-batch_size // size)
        steps = pack_constant(n, size, batch_size)[0]
        return (np.arange(steps + 1, dtype=np.int64) * per_batch,
                np.full(steps, batch_size - (per_batch - 1) * size, np.int64))
    cs = np.concatenate([[0], np.cumsum(sizes)])
    starts, takes = [0], []
    s = 0
    while s < n:
        e = int(np.searchsorted(cs, cs[s] + batch_size, side="left"))
        if e > n:  # fewer than batch_size examples left: HRM drops this partial batch
            break
        takes.append(batch_size - int(cs[e - 1] - cs[s]))
        starts.append(e)
        s = e
    return np.asarray(starts, np.int64), np.asarray(takes, np.int64)


class GroupSampler:
    """Training batches exactly as HRM's sampler forms them, seeded and resumable.

    ``puzzle_indices`` (P+1,) and ``group_indices`` (G+1,) are all it needs: no example data.
    Several sets are visited in turn within an iteration, as the reference does.
    """

    def __init__(self, index_arrays: dict[str, tuple[np.ndarray, np.ndarray]] | tuple[np.ndarray, np.ndarray],
                 global_batch_size: int, epochs_per_iter: int = 1, seed: int = 0, rank: int = 0, world_size: int = 1):
        if not isinstance(index_arrays, dict):
            index_arrays = {"all": index_arrays}
        if global_batch_size < 1:
            raise ValueError("global_batch_size must be >= 1")
        if global_batch_size % world_size:
            raise ValueError(f"global_batch_size {global_batch_size} is not divisible by world size {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.sets = {k: (np.asarray(p, np.int64), np.asarray(g, np.int64)) for k, (p, g) in index_arrays.items()}
        self.global_batch_size = int(global_batch_size)
        self.epochs_per_iter = int(epochs_per_iter)
        self.seed = int(seed)
        self.rank, self.world_size = rank, world_size
        self.local_batch_size = global_batch_size // world_size

    # ---- the draw -------------------------------------------------------------------------
    def _stream_number(self, iteration: int, set_pos: int) -> int:
        # The reference bumps one counter per (iteration, set) before drawing: first draw is seed + 1.
        return self.seed + iteration * len(self.sets) + set_pos + 1

    def plan_iteration(self, iteration: int, set_name: str | None = None) -> IterationPlan:
        set_name = set_name or next(iter(self.sets))
        set_pos = list(self.sets).index(set_name)
        puzzle_indices, group_indices = self.sets[set_name]
        G = group_indices.shape[0] - 1
        rng = np.random.Generator(np.random.Philox(seed=self._stream_number(iteration, set_pos)))
        order = np.concatenate([rng.permutation(G) for _ in range(self.epochs_per_iter)]) if G else np.zeros(0, np.int64)
        puzzles = rng.integers(group_indices[order], group_indices[order + 1]) if G else np.zeros(0, np.int64)
        sizes = puzzle_indices[puzzles + 1] - puzzle_indices[puzzles]
        starts, takes = pack_batches(sizes, self.global_batch_size)
        return IterationPlan(puzzles.astype(np.int64), sizes, starts, takes)

    def steps_per_iteration(self, iteration: int = 0) -> int:
        return sum(self.plan_iteration(iteration, s).steps for s in self.sets)

    def _batch_rows(self, plan: IterationPlan, puzzle_indices: np.ndarray, k: int, stream: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(plan.batch_starts[k]), int(plan.batch_starts[k + 1])
        puzzles, sizes = plan.puzzles[a:b], plan.sizes[a:b]
        take = sizes.copy()
        take[-1] = plan.last_take[k]
        if sizes.min() == sizes.max() == 1:
            rows, row_puzzle = puzzle_indices[puzzles], puzzles
        else:
            rng = np.random.Generator(np.random.Philox(key=stream, counter=[0, 0, k, 1]))
            slot = np.repeat(np.arange(b - a), sizes)
            first = np.repeat(np.cumsum(sizes) - sizes, sizes)
            offset = np.arange(slot.shape[0]) - first
            order = np.lexsort((rng.random(slot.shape[0]), slot))  # shuffle within each puzzle
            rank_in_slot = np.arange(slot.shape[0]) - first        # slot-sorted positions keep `first`
            keep = rank_in_slot < take[slot]
            chosen = order[keep]
            rows = puzzle_indices[puzzles[slot[chosen]]] + offset[chosen]
            row_puzzle = puzzles[slot[chosen]]
        lo, hi = self.rank * self.local_batch_size, (self.rank + 1) * self.local_batch_size
        return rows[lo:hi].astype(np.int64), row_puzzle[lo:hi].astype(np.int64)

    def iteration(self, iteration: int, start_batch: int = 0) -> Iterator[Batch]:
        """The batches of one iteration for this rank, from ``start_batch`` on."""
        index = 0
        for set_pos, (name, (puzzle_indices, _)) in enumerate(self.sets.items()):
            plan = self.plan_iteration(iteration, name)
            stream = self._stream_number(iteration, set_pos)
            for k in range(plan.steps):
                if index >= start_batch:
                    rows, puzzles = self._batch_rows(plan, puzzle_indices, k, stream)
                    yield Batch(name, iteration, index, rows, puzzles)
                index += 1

    def batches(self, num_iterations: int, state: SamplerState = SamplerState()) -> Iterator[Batch]:
        """Every batch from ``state`` to the end of ``num_iterations`` iterations."""
        for it in range(state.iteration, num_iterations):
            yield from self.iteration(it, state.batch if it == state.iteration else 0)


def eval_batches(puzzle_indices: np.ndarray, global_batch_size: int, rank: int = 0,
                 world_size: int = 1) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """The reference's test-mode order: every example once, in order, last batch partial.

    Yields (rows, puzzles, global_valid) for this rank; the caller pads rows up to the local
    batch size (blank identifier, pad inputs, ignored labels) because the model's puzzle
    embedding needs full batches.
    """
    puzzle_indices = np.asarray(puzzle_indices, np.int64)
    N = int(puzzle_indices[-1])
    local = global_batch_size // world_size
    for start in range(0, N, global_batch_size):
        end = min(N, start + global_batch_size)
        lo, hi = min(end, start + rank * local), min(end, start + (rank + 1) * local)
        rows = np.arange(lo, hi, dtype=np.int64)
        puzzles = np.searchsorted(puzzle_indices, rows, side="right") - 1
        yield rows, puzzles, end - start


def expected_examples_per_epoch(puzzle_indices: np.ndarray, group_indices: np.ndarray) -> tuple[float, int, int]:
    """Mean, min and max examples one epoch draws (one uniform puzzle per group)."""
    p = np.asarray(puzzle_indices, np.int64)
    g = np.asarray(group_indices, np.int64)
    sizes = np.diff(p)
    G = g.shape[0] - 1
    if G == 0:
        return 0.0, 0, 0
    group_of = np.repeat(np.arange(G), np.diff(g))
    per_group_mean = np.bincount(group_of, weights=sizes, minlength=G) / np.maximum(np.diff(g), 1)
    mins = np.minimum.reduceat(sizes, g[:-1]) if sizes.size else np.zeros(G)
    maxs = np.maximum.reduceat(sizes, g[:-1]) if sizes.size else np.zeros(G)
    return float(per_group_mean.sum()), int(mins.sum()), int(maxs.sum())


def sampler_for_split(split, global_batch_size: int, epochs_per_iter: int, seed: int,
                      rank: int = 0, world_size: int = 1) -> GroupSampler:
    """A sampler over a format.Split's sets (reads only the small index arrays)."""
    arrays = {name: (s.puzzle_indices, s.group_indices) for name, s in split.sets.items()}
    return GroupSampler(arrays, global_batch_size, epochs_per_iter, seed, rank, world_size)

