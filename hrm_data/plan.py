"""HRM's step / epoch / warmup arithmetic, counted with the real sampler (``hrm-data plan``).

How HRM trains (see docs/training-math.md): an *epoch* is a permutation of the groups, one
random puzzle per group, each puzzle giving all its examples clipped to the room left in the
batch; an *iteration* concatenates ``eval_interval`` epochs of group order and drops only its
last partial batch. Steps are counted with :mod:`hrm_data.sampler` (``GroupSampler`` /
``pack_batches``), from ``puzzle_indices`` and ``group_indices`` only: no example is loaded.

Stable API (the trainer relies on it)
-------------------------------------
``compute_plan(train_split_or_path, global_batch_size, epochs, eval_interval=None,
lr_warmup_steps=None, lr_warmup_examples=None, world_size=1, seed=0) -> Plan``
    ``train_split_or_path``: a dataset directory (str / PathLike), a ``format.Dataset`` (its
    train split is used) or a ``format.Split``. Reads dataset.json's ``total_groups`` and
    ``mean_puzzle_examples`` for HRM's own schedule estimate. Raises ``FormatError`` when the
    input is not a readable dataset, ``ValueError`` for bad arguments.

``plan_from_counts(index_arrays, global_batch_size, epochs, eval_interval=None,
lr_warmup_steps=None, lr_warmup_examples=None, world_size=1, seed=0, *,
metadata_total_groups=None, metadata_mean_puzzle_examples=None) -> Plan``
    ``index_arrays``: ``(puzzle_indices, group_indices)`` or ``{set_name: (puzzle_indices,
    group_indices)}`` exactly as ``GroupSampler`` takes them. The two metadata arguments are
    what dataset.json says (default: the true counts). ``plan_from_indices`` is the same function.

``Plan`` (dataclass): ``total_steps`` (optimizer steps the sampler yields in the whole run),
``steps_per_iteration`` (iteration 0, this seed), ``iterations`` (= epochs // eval_interval),
``warmup_steps`` / ``warmup_examples`` (optimizer steps / examples), ``hrm_estimated_total_steps``
(HRM's cosine-schedule length), ``warnings`` (list of ``PlanWarning(code, message, level)``,
level ``"error"`` or ``"warning"``), ``errors`` / ``ok`` (any error-level warning), ``recommended``
(``{eval_interval, lr_warmup_steps, lr_warmup_examples}``), ``to_dict()`` (what ``--json`` prints)
and ``format_text()`` (the text report). ``steps_per_iteration_of[i]`` is iteration i's count
where it was simulated.

Warning codes (stable) and levels
---------------------------------
error (HRM would refuse to start or never step; ``hrm-data plan`` exits 1):
    ``eval_interval_not_divisor``   eval_interval does not divide epochs (HRM asserts)
    ``batch_not_divisible``         global batch not divisible by world size (HRM asserts)
    ``zero_steps``                  an iteration draws fewer examples than one batch
warning:
    ``eval_ratio``                  eval_interval is not epochs / 10 (the 10:1 epochs-to-evaluations rule)
                                    and not already the recommended divisor
    ``batch_exceeds_groups``        global batch > number of groups
    ``warmup_too_short``            fewer than 10 optimizer updates of warmup
    ``warmup_exceeds_total``        warmup >= total steps: the LR never reaches its base value
    ``schedule_mismatch``           HRM's schedule length is more than 10% away from total_steps
    ``metadata_mean_mismatch``      dataset.json's mean_puzzle_examples != examples / puzzles
    ``metadata_groups_mismatch``    dataset.json's total_groups != the number of groups

Recommendations: ``eval_interval`` is the divisor of epochs nearest epochs / 10 (ties go to the
larger) among those whose iteration surely fills a batch. ``lr_warmup_examples`` is the
document's rule, 2 x training examples, converted to ceil(examples / global batch) steps and
clamped to at least 10 steps and at most half the run (then ``lr_warmup_examples`` = steps x
global batch).
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .sampler import GroupSampler, expected_examples_per_epoch, pack_constant

MIN_WARMUP_UPDATES = 10
SCHEDULE_TOLERANCE = 0.10
WARMUP_EXAMPLES_FACTOR = 2          # the document's "2x data exposure" rule
PERCENTILE_SAMPLES = 200            # iterations simulated for the range when counts depend on the draw
MAX_SIMULATED_SLOTS = 4_000_000     # work budget (group slots drawn, ~0.5 us each) for the simulation
ITERATION_OVERHEAD_SLOTS = 1_000    # one plan_iteration call costs about as much as this many slots
MAX_EXACT_ITERATION_SLOTS = 50_000_000  # above this one iteration is estimated, not simulated (memory, time)
MAX_ARGUMENT = 10**18               # epochs / batch / eval interval / warmup / world size: beyond any real run

TRAINER_DEFAULT_BATCH = 768        # hrm-train's global_batch_size (hrm_model.config.DEFAULTS; a test keeps them equal)
TRAINER_CPU_BATCH = 32             # hrm-train's cpu-small preset

ERROR_CODES = frozenset({"eval_interval_not_divisor", "batch_not_divisible", "zero_steps"})


@dataclass(frozen=True)
class PlanWarning:
    code: str
    message: str
    level: str = "warning"  # "warning" | "error"

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "level": self.level}


@dataclass
class Plan:
    # inputs
    global_batch_size: int
    epochs: int
    eval_interval: int
    world_size: int
    seed: int
    # dataset (train split, all sets together)
    groups: int
    puzzles: int
    examples: int
    mean_puzzle_examples: float             # true examples / puzzles
    metadata_total_groups: int               # what dataset.json says (HRM reads these)
    metadata_mean_puzzle_examples: float
    sets: list[str]
    # per epoch (one puzzle per group), expected over the draw, and its bounds
    examples_per_epoch: float
    examples_per_epoch_min: int
    examples_per_epoch_max: int
    steps_per_epoch: float                  # examples_per_epoch / global batch (a rate: HRM never stops mid-iteration)
    # iterations, counted with the sampler
    iterations: int
    steps_per_iteration: int                # iteration 0 with this seed
    steps_per_iteration_of: list[int]       # iterations 0.. simulated (one entry when deterministic: all equal)
    steps_per_iteration_min: int            # hard bounds over every possible draw
    steps_per_iteration_max: int
    steps_per_iteration_p5: int             # percentiles over the simulated iterations (= min/max if deterministic)
    steps_per_iteration_p95: int
    deterministic: bool                     # True when the count cannot depend on the draw
    total_steps: int
    total_steps_exact: bool                 # False only when the simulation budget forced an extrapolation
    examples_drawn_per_iteration: int       # iteration 0
    examples_clipped_per_iteration: int     # discarded by clipping a puzzle to the batch's room
    examples_dropped_per_iteration: int     # in the last, partial batch
    # HRM's own estimate and the document's naive formula
    hrm_estimated_total_steps: int
    naive_steps_per_iteration: int          # ceil(steps_per_epoch) x eval_interval
    naive_total_steps: int
    # warmup
    warmup_steps: int
    warmup_examples: int
    warmup_source: str                      # "steps" | "examples" | "recommended"
    warnings: list[PlanWarning] = field(default_factory=list)
    recommended: dict = field(default_factory=dict)
    recommended_notes: list[str] = field(default_factory=list)
    source: str | None = None

    @property
    def local_batch_size(self) -> int:
        return self.global_batch_size // self.world_size

    @property
    def errors(self) -> list[PlanWarning]:
        return [w for w in self.warnings if w.level == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self) -> list[str]:
        return [w.code for w in self.warnings]

    # ---------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": self.groups,
            "puzzles": self.puzzles,
            "examples": self.examples,
            "mean_puzzle_examples": self.mean_puzzle_examples,
            "examples_per_epoch": self.examples_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "eval_interval": self.eval_interval,
            "iterations": self.iterations,
            "steps_per_iteration": self.steps_per_iteration,
            "total_steps": self.total_steps,
            "hrm_estimated_total_steps": self.hrm_estimated_total_steps,
            "warmup_steps": self.warmup_steps,
            "warmup_examples": self.warmup_examples,
            "warnings": [w.to_dict() for w in self.warnings],
            "recommended": dict(self.recommended),
            # extras
            "ok": self.ok,
            "global_batch_size": self.global_batch_size,
            "epochs": self.epochs,
            "world_size": self.world_size,
            "local_batch_size": self.local_batch_size,
            "seed": self.seed,
            "sets": list(self.sets),
            "metadata": {"total_groups": self.metadata_total_groups,
                         "mean_puzzle_examples": self.metadata_mean_puzzle_examples},
            "examples_per_epoch_range": {"min": self.examples_per_epoch_min, "max": self.examples_per_epoch_max},
            "steps_per_iteration_range": {
                "min": self.steps_per_iteration_min, "max": self.steps_per_iteration_max,
                "p5": self.steps_per_iteration_p5, "p95": self.steps_per_iteration_p95,
                "samples": 0 if self.deterministic else len(self.steps_per_iteration_of),
                "deterministic": self.deterministic,
            },
            "total_steps_exact": self.total_steps_exact,
            "examples_drawn_per_iteration": self.examples_drawn_per_iteration,
            "examples_clipped_per_iteration": self.examples_clipped_per_iteration,
            "examples_dropped_per_iteration": self.examples_dropped_per_iteration,
            "naive_steps_per_iteration": self.naive_steps_per_iteration,
            "naive_total_steps": self.naive_total_steps,
            "warmup_source": self.warmup_source,
            "recommended_notes": list(self.recommended_notes),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def format_text(self, keys: bool = False) -> str:
        """The text report; ``keys``: advice as hrm-train's ``key=value`` instead of hrm-data plan's flags."""
        text = self._format_text()
        return as_keys(text) if keys else text

    def _format_text(self) -> str:
        B, E, I = self.global_batch_size, self.epochs, self.eval_interval
        L: list[str] = []
        title = "HRM training plan" + (f" for {self.source}" if self.source else "")
        L.append(f"{title} (train split, seed {self.seed})")
        L.append("")
        meta_mean = "" if _same(self.metadata_mean_puzzle_examples, self.mean_puzzle_examples) else \
            f"  dataset.json says {_num(self.metadata_mean_puzzle_examples)}"
        if self.deterministic:
            spi_note = f"floor-packing {self.examples_drawn_per_iteration} examples into batches of {B}"
            if self.examples_clipped_per_iteration:
                spi_note += f"; {self.examples_clipped_per_iteration} clipped"
        else:
            spi_note = (f"iteration 0; p5-p95 {self.steps_per_iteration_p5}-{self.steps_per_iteration_p95} over "
                        f"{len(self.steps_per_iteration_of)} simulated iterations, possible "
                        f"{self.steps_per_iteration_min}-{self.steps_per_iteration_max}")
        epe = _num(self.examples_per_epoch)
        if self.examples_per_epoch_min != self.examples_per_epoch_max:
            epe_note = f"one puzzle per group, expected; {self.examples_per_epoch_min}-{self.examples_per_epoch_max} possible"
        else:
            epe_note = "one puzzle per group"
        warm_note = {"steps": f"--lr-warmup-steps {self.warmup_steps}",
                     "examples": f"--lr-warmup-examples {self.warmup_examples} / {B}, rounded up",
                     "recommended": "recommended; none given"}[self.warmup_source]
        rows = [
            ("groups", f"{self.groups}", ""),
            ("puzzles", f"{self.puzzles}", ""),
            ("examples", f"{self.examples}", ""),
            ("mean examples per puzzle", _num(self.mean_puzzle_examples), meta_mean.strip()),
            ("examples per epoch", epe, epe_note),
            ("steps per epoch", _num(self.steps_per_epoch), f"{epe} / {B}"),
            ("eval interval", f"{I}", "epochs per iteration"),
            ("iterations", f"{self.iterations}", f"{E} // {I}"),
            ("steps per iteration", f"{self.steps_per_iteration}", spi_note),
            ("total steps", f"{self.total_steps}", "" if self.total_steps_exact else "extrapolated from the simulated iterations"),
            ("HRM schedule length", f"{self.hrm_estimated_total_steps}",
             f"int({E} x {self.metadata_total_groups} x {_num(self.metadata_mean_puzzle_examples)} / {B})"),
            ("warmup steps", f"{self.warmup_steps}", warm_note),
            ("warmup examples", f"{self.warmup_examples}", f"{self.warmup_steps} x {B}" if self.warmup_source == "steps" else ""),
        ]
        if self.world_size > 1:
            rows.insert(6, ("world size / local batch", f"{self.world_size} / {self.local_batch_size}", ""))
        w1 = max(len(r[0]) for r in rows)
        w2 = max(len(r[1]) for r in rows)
        for name, value, note in rows:
            L.append(f"  {name:<{w1}}  {value:>{w2}}" + (f"   ({note})" if note else ""))
        L.append("")
        naive = self.naive_total_steps
        if naive != self.total_steps:
            L.append(
                f"Why not {naive}: the naive formula rounds {_num(self.steps_per_epoch)} steps per epoch up to "
                f"{math.ceil(self.steps_per_epoch)} ({self.naive_steps_per_iteration} per iteration, {naive} in total); "
                f"the sampler concatenates {I} epoch{'s' if I != 1 else ''} into one iteration and drops only its last partial batch: "
                + (f"floor({self.examples_drawn_per_iteration} / {B}) = {self.steps_per_iteration} per iteration, "
                   if self.deterministic and not self.examples_clipped_per_iteration
                   else f"{self.steps_per_iteration} per iteration, ")
                + f"{self.total_steps} in total.")
            L.append("")
        if self.warnings:
            L.append("Warnings:")
            for w in self.warnings:
                L.append(f"  [{w.level}] {w.code}: {w.message}")
        else:
            L.append("Warnings: none")
        L.append("")
        r = self.recommended
        L.append("Recommended:")
        L.append(f"  --eval-interval {r['eval_interval']}")
        L.append(f"  --lr-warmup-examples {r['lr_warmup_examples']}   (= --lr-warmup-steps {r['lr_warmup_steps']})")
        for note in self.recommended_notes:
            L.append(f"  - {note}")
        return "\n".join(L)


# ------------------------------------------------------------------------------ helpers

FLAG_KEYS = {"--global-batch-size": "global_batch_size", "--epochs": "epochs", "--eval-interval": "eval_interval",
             "--lr-warmup-steps": "lr_warmup_steps", "--lr-warmup-examples": "lr_warmup_examples"}


def as_keys(text: str) -> str:
    """``hrm-data plan``'s advice (``--eval-interval 10``) in hrm-train's syntax (``eval_interval=10``)."""
    import re
    text = re.sub(r"(--[a-z-]+) (\d+)", lambda m: f"{FLAG_KEYS[m[1]]}={m[2]}" if m[1] in FLAG_KEYS else m[0], text)
    return re.sub(r"(--[a-z-]+)\b", lambda m: FLAG_KEYS.get(m[1], m[1]), text)


def _num(x: float) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:.4g}"


def _same(a: float, b: float) -> bool:
    return abs(float(a) - float(b)) <= 1e-9 * max(1.0, abs(float(b)))


def _is_prime(n: int) -> bool:
    """Miller-Rabin; deterministic for n < 3.3e24 with these bases, and overwhelmingly right beyond."""
    if n < 2:
        return False
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for p in bases:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d, r = d // 2, r + 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _factor(n: int, out: dict[int, int]) -> None:
    """Prime factors of n into ``out`` (Pollard's rho: fast for any epoch count, never a trial
    division up to sqrt(n), which for ``plan -e 1e19`` would take hours)."""
    if n == 1:
        return
    for p in (2, 3, 5, 7, 11, 13):
        while n % p == 0:
            out[p] = out.get(p, 0) + 1
            n //= p
    if n == 1:
        return
    if _is_prime(n):
        out[n] = out.get(n, 0) + 1
        return
    c = 1
    while True:
        x = y = 2
        d = 1
        while d == 1:
            x = (x * x + c) % n
            y = (y * y + c) % n
            y = (y * y + c) % n
            d = math.gcd(abs(x - y), n)
        if d != n:
            _factor(d, out)
            _factor(n // d, out)
            return
        c += 1


def _divisors(n: int) -> list[int]:
    """Every divisor of n, ascending."""
    factors: dict[int, int] = {}
    _factor(n, factors)
    divs = [1]
    for p, k in factors.items():
        divs = [d * p ** e for d in divs for e in range(k + 1)]
    return sorted(divs)


def _check_indices(name: str, p: np.ndarray, g: np.ndarray) -> None:
    """The index arrays must be countable; anything else is a broken dataset (ValueError)."""
    if p.ndim != 1 or g.ndim != 1 or p.shape[0] < 1 or g.shape[0] < 1:
        raise ValueError(f"set {name!r}: puzzle_indices and group_indices must be 1-D with at least one entry")
    if p[0] != 0 or g[0] != 0:
        raise ValueError(f"set {name!r}: puzzle_indices and group_indices must start at 0")
    if np.any(np.diff(p) <= 0):
        raise ValueError(f"set {name!r}: a puzzle with no examples (puzzle_indices not strictly increasing); "
                         "run `hrm-data validate`")
    if np.any(np.diff(g) <= 0):
        raise ValueError(f"set {name!r}: a group with no puzzles (group_indices not strictly increasing); "
                         "run `hrm-data validate`")
    if g[-1] != p.shape[0] - 1:
        raise ValueError(f"set {name!r}: group_indices ends at {int(g[-1])} but there are {p.shape[0] - 1} puzzles")


@dataclass
class _SetCount:
    name: str
    groups: int
    puzzles: int
    examples: int
    sizes: np.ndarray
    epoch_mean: float
    epoch_min: int
    epoch_max: int

    @property
    def constant_size(self) -> int | None:
        """The one size every puzzle has (then the count does not depend on the draw), else None."""
        if self.groups == 0:
            return 1
        s = self.sizes
        return int(s[0]) if int(s.min()) == int(s.max()) else None

    @property
    def max_size(self) -> int:
        return int(self.sizes.max()) if self.sizes.size else 1


def _bounds(sc: _SetCount, batch: int, epochs_per_iter: int) -> tuple[int, int]:
    """Hard bounds on one set's steps per iteration, over every possible draw."""
    s = sc.constant_size
    if s is not None:
        n = pack_constant(epochs_per_iter * sc.groups, s, batch)[0]
        return n, n
    lo_drawn, hi_drawn = epochs_per_iter * sc.epoch_min, epochs_per_iter * sc.epoch_max
    hi = hi_drawn // batch
    # each full batch consumes at most batch + (largest puzzle - 1) drawn examples
    lo = 0 if lo_drawn < batch else (lo_drawn - batch) // (batch + sc.max_size - 1) + 1
    return lo, hi


def _normalize(index_arrays) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    if isinstance(index_arrays, Mapping):
        items = dict(index_arrays)
    else:
        items = {"all": tuple(index_arrays)}
    out = {}
    for name, (p, g) in items.items():
        p = np.asarray(p).astype(np.int64)
        g = np.asarray(g).astype(np.int64)
        _check_indices(name, p, g)
        out[name] = (p, g)
    return out


# ------------------------------------------------------------------------------ core

def plan_from_counts(index_arrays, global_batch_size: int, epochs: int, eval_interval: int | None = None,
                     lr_warmup_steps: int | None = None, lr_warmup_examples: int | None = None,
                     world_size: int = 1, seed: int = 0, *, metadata_total_groups: int | None = None,
                     metadata_mean_puzzle_examples: float | None = None,
                     max_simulated_slots: int = MAX_SIMULATED_SLOTS, source: str | None = None) -> Plan:
    """The plan for a training split given only its index arrays (see the module docstring)."""
    B, E = int(global_batch_size), int(epochs)
    I = E if eval_interval is None else int(eval_interval)
    K = int(world_size)
    if B < 1 or E < 1 or I < 1 or K < 1:
        raise ValueError("global_batch_size, epochs, eval_interval and world_size must be >= 1")
    for name, v in (("global_batch_size", B), ("epochs", E), ("eval_interval", I), ("world_size", K),
                    ("lr_warmup_steps", lr_warmup_steps or 0), ("lr_warmup_examples", lr_warmup_examples or 0)):
        if int(v) > MAX_ARGUMENT:
            raise ValueError(f"{name} is {v}; at most {MAX_ARGUMENT:.0e} is accepted (no run is that long)")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"seed is {seed}; it must be in [0, 2^63)")
    if metadata_mean_puzzle_examples is not None and not math.isfinite(float(metadata_mean_puzzle_examples)):
        raise ValueError(f"dataset.json's mean_puzzle_examples is {metadata_mean_puzzle_examples}; it must be a "
                         "finite number (run `hrm-data validate`)")
    if lr_warmup_steps is not None and lr_warmup_examples is not None:
        raise ValueError("give lr_warmup_steps or lr_warmup_examples, not both")
    if (lr_warmup_steps is not None and lr_warmup_steps < 0) or (lr_warmup_examples is not None and lr_warmup_examples < 0):
        raise ValueError("warmup must be >= 0")

    sets = _normalize(index_arrays)
    counts: list[_SetCount] = []
    for name, (p, g) in sets.items():
        mean, lo, hi = expected_examples_per_epoch(p, g)
        counts.append(_SetCount(name, g.shape[0] - 1, p.shape[0] - 1, int(p[-1]), np.diff(p), mean, lo, hi))

    G = sum(c.groups for c in counts)
    P = sum(c.puzzles for c in counts)
    N = sum(c.examples for c in counts)
    true_mean = N / P if P else 0.0
    meta_groups = G if metadata_total_groups is None else int(metadata_total_groups)
    meta_mean = true_mean if metadata_mean_puzzle_examples is None else float(metadata_mean_puzzle_examples)

    epoch_mean = float(sum(c.epoch_mean for c in counts))
    epoch_min = sum(c.epoch_min for c in counts)
    epoch_max = sum(c.epoch_max for c in counts)
    steps_per_epoch = epoch_mean / B
    iterations = E // I

    # --- count steps per iteration with the sampler ---------------------------------
    counted = _count_iterations(sets, counts, B, I, seed, iterations, max_simulated_slots)
    per_iter, deterministic, drawn0, clipped0, dropped0 = counted
    spi = per_iter[0]
    bmin = sum(_bounds(c, B, I)[0] for c in counts)
    bmax = sum(_bounds(c, B, I)[1] for c in counts)
    if deterministic:
        total = spi * iterations
        exact = True
        p5 = p95 = spi
    else:
        arr = np.asarray(per_iter, dtype=np.float64)
        p5 = int(math.floor(np.percentile(arr, 5)))
        p95 = int(math.ceil(np.percentile(arr, 95)))
        if len(per_iter) >= iterations:
            total, exact = int(sum(per_iter[:iterations])), True
        else:
            known = int(sum(per_iter))
            total = known + int(round(float(arr.mean()) * (iterations - len(per_iter))))
            exact = False

    hrm_est = int(E * meta_groups * meta_mean / B)  # HRM's expression, same order of operations
    naive_spi = math.ceil(steps_per_epoch) * I
    naive_total = math.ceil(steps_per_epoch) * E

    # --- warmup ---------------------------------------------------------------------
    rec_warm_steps, rec_warm_examples, warm_notes = _recommend_warmup(N, B, total)
    if lr_warmup_steps is not None:
        warm_steps, warm_examples, warm_src = int(lr_warmup_steps), int(lr_warmup_steps) * B, "steps"
    elif lr_warmup_examples is not None:
        warm_steps, warm_examples, warm_src = -(-int(lr_warmup_examples) // B), int(lr_warmup_examples), "examples"
    else:
        warm_steps, warm_examples, warm_src = rec_warm_steps, rec_warm_examples, "recommended"

    # --- eval interval recommendation -------------------------------------------------
    def surely_fills(i: int) -> bool:
        return sum(_bounds(c, B, i)[0] for c in counts) >= 1

    cands = [d for d in _divisors(E) if surely_fills(d)]
    if cands:
        rec_I = min(cands, key=lambda d: (abs(d - E / 10), -d))
    else:
        rec_I = E
    notes = []
    if rec_I * 10 != E:
        why = "no divisor of epochs is epochs / 10" if E % 10 else "epochs / 10 draws less than one batch per iteration"
        notes.append(f"eval_interval {rec_I}: the divisor of {E} nearest {_num(E / 10)} ({why})")
    else:
        notes.append(f"eval_interval {rec_I} = epochs / 10 (the 10:1 epochs-to-evaluations rule; it divides epochs, as HRM requires)")
    notes.extend(warm_notes)

    plan = Plan(
        global_batch_size=B, epochs=E, eval_interval=I, world_size=K, seed=int(seed),
        groups=G, puzzles=P, examples=N, mean_puzzle_examples=float(true_mean),
        metadata_total_groups=meta_groups, metadata_mean_puzzle_examples=float(meta_mean), sets=list(sets),
        examples_per_epoch=epoch_mean, examples_per_epoch_min=int(epoch_min), examples_per_epoch_max=int(epoch_max),
        steps_per_epoch=float(steps_per_epoch), iterations=iterations, steps_per_iteration=int(spi),
        steps_per_iteration_of=[int(x) for x in per_iter], steps_per_iteration_min=int(bmin),
        steps_per_iteration_max=int(bmax), steps_per_iteration_p5=int(p5), steps_per_iteration_p95=int(p95),
        deterministic=deterministic, total_steps=int(total), total_steps_exact=exact,
        examples_drawn_per_iteration=int(drawn0), examples_clipped_per_iteration=int(clipped0),
        examples_dropped_per_iteration=int(dropped0), hrm_estimated_total_steps=hrm_est,
        naive_steps_per_iteration=int(naive_spi), naive_total_steps=int(naive_total),
        warmup_steps=int(warm_steps), warmup_examples=int(warm_examples), warmup_source=warm_src,
        recommended={"eval_interval": int(rec_I), "lr_warmup_steps": int(rec_warm_steps),
                     "lr_warmup_examples": int(rec_warm_examples)},
        recommended_notes=notes, source=source,
    )
    plan.warnings = _warnings(plan)
    return plan


plan_from_indices = plan_from_counts


def _count_iterations(sets, counts: list[_SetCount], B: int, I: int, seed: int, iterations: int,
                      max_slots: int) -> tuple[list[int], bool, int, int, int]:
    """Steps of iterations 0.. (all of the run's where the budget allows, and enough for percentiles).

    Returns (steps per simulated iteration, deterministic, drawn, clipped, dropped of iteration 0).
    """
    const = {c.name: c.constant_size for c in counts}
    const_steps = drawn = clipped = dropped = 0
    for c in counts:
        s = const[c.name]
        if s is not None:
            st, cl, dr = pack_constant(I * c.groups, s, B)
            const_steps += st
            drawn += I * c.groups * s if c.groups else 0
            clipped += cl
            dropped += dr if c.groups else 0
    variable = [c for c in counts if const[c.name] is None]
    if not variable:
        return [const_steps], True, drawn, clipped, dropped

    slots = I * sum(c.groups for c in variable)
    if slots > MAX_EXACT_ITERATION_SLOTS:  # one iteration is too big to draw: estimate from the bounds
        lo = sum(_bounds(c, B, I)[0] for c in variable)
        hi = sum(_bounds(c, B, I)[1] for c in variable)
        est = const_steps + (lo + hi) // 2
        exp = int(sum(I * c.epoch_mean for c in variable))
        return [est], False, drawn + exp, clipped, dropped
    sampler = GroupSampler({name: sets[name] for name in sets}, B, I, seed)
    affordable = max(1, max_slots // (slots + ITERATION_OVERHEAD_SLOTS))  # iteration 0 is always counted
    n_sim = min(max(iterations, PERCENTILE_SAMPLES), affordable)
    per_iter = []
    for it in range(n_sim):
        steps = const_steps
        for c in variable:
            pl = sampler.plan_iteration(it, c.name)
            steps += pl.steps
            if it == 0:
                used = int(pl.batch_starts[-1])
                drawn += int(pl.sizes.sum())
                clipped += int(pl.sizes[:used].sum()) - B * pl.steps
                dropped += int(pl.sizes[used:].sum())
        per_iter.append(steps)
    return per_iter, False, drawn, clipped, dropped


def _recommend_warmup(N: int, B: int, total: int) -> tuple[int, int, list[str]]:
    want_examples = WARMUP_EXAMPLES_FACTOR * N
    want_steps = -(-want_examples // B)
    hi = total // 2 if total > 0 else max(want_steps, MIN_WARMUP_UPDATES)  # no run to cap against
    lo = min(MIN_WARMUP_UPDATES, hi)
    steps = min(max(want_steps, lo), hi)
    notes = [f"lr_warmup_examples {want_examples} = 2 x {N} training examples (the 2x-examples warmup rule, counted in "
             f"examples) -> ceil({want_examples} / {B}) = {want_steps} optimizer steps, which is what HRM's "
             f"lr_warmup_steps counts"]
    if steps == want_steps:
        return steps, want_examples, notes
    if steps > want_steps:
        notes.append(f"raised to {steps} steps = {steps * B} examples: fewer than {MIN_WARMUP_UPDATES} warmup "
                     "updates make the LR ramp too steep")
    else:
        notes.append(f"capped at {steps} steps = {steps * B} examples, half of the {total}-step run, so the LR "
                     "reaches its base value and has time to decay")
    return steps, steps * B, notes


def _warnings(p: Plan) -> list[PlanWarning]:
    B, E, I, K = p.global_batch_size, p.epochs, p.eval_interval, p.world_size
    rec = p.recommended
    out: list[PlanWarning] = []

    def add(code: str, msg: str) -> None:
        out.append(PlanWarning(code, msg, "error" if code in ERROR_CODES else "warning"))

    if E % I:
        add("eval_interval_not_divisor",
            f"eval_interval {I} does not divide epochs {E}: HRM asserts and refuses to start; "
            f"use --eval-interval {rec['eval_interval']}")
    if B % K:
        down, up = (B // K) * K, (B // K + 1) * K
        alt = f"--global-batch-size {up}" if down == 0 else f"--global-batch-size {down} or {up}"
        add("batch_not_divisible",
            f"global batch {B} is not divisible by world size {K}: HRM asserts and refuses to start; use {alt}")
    if p.steps_per_iteration == 0:
        fix = []
        if rec["eval_interval"] > I:
            fix.append(f"more epochs per iteration (--eval-interval {rec['eval_interval']})")
        fix.append(f"--global-batch-size {max(1, p.examples_drawn_per_iteration)} or less")
        if I == E:
            fix.append("more --epochs")
        add("zero_steps",
            f"one iteration draws {p.examples_drawn_per_iteration} examples, fewer than one batch of {B}, so the "
            f"sampler drops it whole and training makes no step; use " + ", or ".join(fix))
    if I * 10 != E and I != rec["eval_interval"]:
        add("eval_ratio",
            f"eval_interval {I} is not epochs / 10 (the 10:1 epochs-to-evaluations rule: {E} epochs -> "
            f"{_num(E / 10)}); use --eval-interval {rec['eval_interval']}")
    if B > p.groups:
        add("batch_exceeds_groups",
            f"global batch {B} exceeds the {p.groups} groups: a batch spans more than one epoch's group order, so a "
            f"group can appear twice in it (it still fills); use --global-batch-size {max(1, p.groups)} or less "
            "for one draw per group per batch")
    if p.warmup_steps < MIN_WARMUP_UPDATES and p.total_steps > 0:
        want = MIN_WARMUP_UPDATES
        add("warmup_too_short",
            f"warmup is {p.warmup_steps} optimizer updates, fewer than {want}: the LR ramp is too steep; use "
            f"--lr-warmup-steps {want} (= --lr-warmup-examples {want * B}) or more"
            + (", or a smaller --global-batch-size" if p.warmup_source == "examples" else ""))
    if p.total_steps > 0 and p.warmup_steps >= p.total_steps:
        unit = ""
        if p.warmup_source == "steps":
            unit = (f" (HRM's lr_warmup_steps counts optimizer steps; the 2x-examples warmup rule counts examples: "
                    f"{p.warmup_steps} examples would be {-(-p.warmup_steps // B)} steps)")
        add("warmup_exceeds_total",
            f"warmup of {p.warmup_steps} steps >= the {p.total_steps} total steps: the LR never reaches its base "
            f"value{unit}; use --lr-warmup-examples {rec['lr_warmup_examples']} "
            f"(= --lr-warmup-steps {rec['lr_warmup_steps']})")
    if not _same(p.metadata_mean_puzzle_examples, p.mean_puzzle_examples):
        add("metadata_mean_mismatch",
            f"dataset.json says mean_puzzle_examples {_num(p.metadata_mean_puzzle_examples)} but the split has "
            f"{p.examples} examples in {p.puzzles} puzzles = {_num(p.mean_puzzle_examples)} per puzzle (per puzzle, "
            f"not per group); HRM reads the stored value; set mean_puzzle_examples to "
            f"{_num(p.mean_puzzle_examples)} in train/dataset.json or rebuild the dataset")
    if p.metadata_total_groups != p.groups:
        add("metadata_groups_mismatch",
            f"dataset.json says total_groups {p.metadata_total_groups} but group_indices has {p.groups} groups; "
            f"set total_groups to {p.groups} in train/dataset.json or rebuild the dataset")
    T, H = p.total_steps, p.hrm_estimated_total_steps
    if T > 0 and abs(H - T) > SCHEDULE_TOLERANCE * T:
        fix = ("fix dataset.json (see above)" if (p.metadata_total_groups != p.groups or
                                                not _same(p.metadata_mean_puzzle_examples, p.mean_puzzle_examples))
               else "size the schedule by this plan's total_steps (Plan.total_steps) instead of HRM's estimate")
        if H > T:
            W = min(p.warmup_steps, T)
            frac = (T - W) / max(1, H - W) if H > W else 0.0
            what = (f"the run ends after {T} steps, {frac:.0%} of the way through the cosine decay, "
                    "so the LR never decays fully")
        else:
            what = f"HRM's train_batch skips every step after {H}: the last {T - H} batches are drawn but not trained on"
        add("schedule_mismatch",
            f"HRM sizes its LR schedule for {H} steps (int(epochs x total_groups x mean_puzzle_examples / batch)) "
            f"but the sampler makes {T}; {what}; {fix}")
    return out


# ------------------------------------------------------------------------------ dataset entry points

def _train_split(obj):
    from .format import Dataset, Split
    if isinstance(obj, Split) or (hasattr(obj, "metadata") and hasattr(obj, "sets")):  # any reader's split
        return obj
    if isinstance(obj, Dataset) or hasattr(obj, "train"):
        return obj.train
    if isinstance(obj, (str, os.PathLike)):
        return Dataset(obj).train
    raise TypeError(f"expected a dataset path, Dataset or Split, got {type(obj).__name__}")


def compute_plan(train_split_or_path, global_batch_size: int, epochs: int, eval_interval: int | None = None,
                 lr_warmup_steps: int | None = None, lr_warmup_examples: int | None = None, world_size: int = 1,
                 seed: int = 0) -> Plan:
    """The plan for a dataset's train split (see the module docstring). Loads only the index arrays."""
    from .format import FormatError
    split = _train_split(train_split_or_path)
    arrays = {}
    for name in split.metadata.sets:
        arrays[name] = split.index_arrays(name)
    if not arrays:
        raise FormatError(f"{split.path / 'dataset.json'}: 'sets' is empty; a split needs at least one set")
    source = (str(train_split_or_path) if isinstance(train_split_or_path, (str, os.PathLike))
              else str(getattr(split, "root", split.path)))
    try:
        _normalize(arrays)
    except ValueError as e:
        raise FormatError(f"{split.path}: {e}") from None
    return plan_from_counts(arrays, global_batch_size, epochs, eval_interval, lr_warmup_steps, lr_warmup_examples,
                            world_size, seed, metadata_total_groups=split.metadata.total_groups,
                            metadata_mean_puzzle_examples=split.metadata.mean_puzzle_examples, source=source)


def run_cli(path: str, *, global_batch_size: int, epochs: int, eval_interval: int | None = None,
            lr_warmup_steps: int | None = None, lr_warmup_examples: int | None = None, world_size: int = 1,
            seed: int = 0, as_json: bool = False) -> int:
    """`hrm-data plan`: 0 plan printed (warnings allowed), 1 error-level problem, 2 PATH not a readable dataset."""
    import click
    from .format import FormatError
    try:
        plan = compute_plan(path, global_batch_size, epochs, eval_interval, lr_warmup_steps, lr_warmup_examples,
                            world_size, seed)
    except FormatError as e:
        msg = str(e)
        click.echo(f"Error: {msg}" if msg.startswith(str(path)) else f"Error: {path}: {msg}", err=True)
        return 2
    except ValueError as e:
        click.echo(f"Error: {path}: {e}", err=True)
        return 2
    click.echo(plan.to_json() if as_json else plan.format_text())
    return 0 if plan.ok else 1
