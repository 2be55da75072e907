"""How long a run will take, measured before its first step, and schedules that fit a CPU.

Before step 1 the trainer times a few throwaway steps of the same model on random tokens
(:func:`measure`; the run's own model, RNG and data are untouched), turns them into an
estimate of the whole run (:func:`estimate_seconds`: training steps plus evaluations), prints
it, and on a CPU:

* chooses ``epochs`` and ``eval_interval`` when the user gave no ``epochs``
  (:func:`fit_schedule`: about ``cpu_fit_hours`` of wall time, evaluations included, with up to
  10 evaluations as the 10:1 epochs-to-evaluations rule asks);
* refuses to start a run estimated above ``cpu_max_hours`` (:func:`verdict`), naming the
  ``key=value`` that makes it fit.

Everything but :func:`measure` is a pure function of numbers, so it is tested as such.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any

PROBE_TOKENS = 4096     # rows x seq_len of a probe batch: a 30 x 30 map probes 4 rows, not 32
PROBE_STEPS = 1         # timed steps, after one untimed warmup step
MAX_EVALS = 10          # the 10:1 epochs-to-evaluations rule
EVAL_SHARE = 0.25       # evaluations may take at most this share of a fitted run


@dataclass(frozen=True)
class Timing:
    """Measured seconds per training step (a full local batch) and per evaluation segment (a
    full evaluation batch), and how they were measured."""

    step_s: float
    eval_segment_s: float
    probe_rows: int
    rows: int

    @property
    def scaled(self) -> bool:
        return self.probe_rows < self.rows


# ----------------------------------------------------------------------------- pure arithmetic

def probe_rows(rows: int, seq_len: int, tokens: int = PROBE_TOKENS) -> int:
    """Rows to time: the whole batch when it is small, else a power of two near ``tokens`` tokens
    (time grows linearly with rows at such sizes, so the full batch's time is scaled from it)."""
    if rows * seq_len <= tokens:
        return rows
    return max(1, min(rows, 2 ** int(math.log2(max(1, tokens // max(1, seq_len))))))


def eval_seconds(n_test: int, eval_batch: int, halt_max_steps: int, timing: Timing) -> float:
    """One evaluation: every test batch runs ``halt_max_steps`` segments."""
    return math.ceil(n_test / max(1, eval_batch)) * halt_max_steps * timing.eval_segment_s


def estimate_seconds(total_steps: int, n_evals: int, one_eval_s: float, step_s: float) -> float:
    return total_steps * step_s + n_evals * one_eval_s


def fit_schedule(budget_s: float, epoch_s: float, one_eval_s: float, eval_interval: int | None = None,
                 max_evals: int = MAX_EVALS) -> tuple[int, int]:
    """``(epochs, eval_interval)`` for a run of about ``budget_s`` seconds (at least one epoch).

    ``epoch_s``: seconds of training per epoch; ``one_eval_s``: seconds per evaluation. Up to
    ``max_evals`` evaluations (the 10:1 rule), fewer when they would take more than a quarter of
    the budget; epochs is a multiple of the evaluation interval, as HRM requires. A fixed
    ``eval_interval`` (the user's) is kept and epochs made a multiple of it."""
    epoch_s = max(epoch_s, 1e-9)
    if eval_interval:
        per_block = eval_interval * epoch_s + one_eval_s
        blocks = max(1, int(budget_s // per_block))
        return blocks * eval_interval, eval_interval
    n_evals = max(1, min(max_evals, int(EVAL_SHARE * budget_s // one_eval_s) if one_eval_s > 0 else max_evals))
    epochs = max(1, int((budget_s - n_evals * one_eval_s) // epoch_s))
    n_evals = min(n_evals, epochs)
    epochs -= epochs % n_evals
    return epochs, epochs // n_evals


def verdict(eta_s: float, limit_hours: float | None, fit_epochs: int, fit_hours: float) -> str | None:
    """None when the run may start; else the one-line refusal with the keys that fix it."""
    if limit_hours is None or eta_s <= limit_hours * 3600:
        return None
    return (f"this run would take about {format_duration(eta_s)} on this CPU (more than cpu_max_hours="
            f"{limit_hours:g}); set epochs={fit_epochs} for about {format_duration(fit_hours * 3600)}, "
            f"or leave epochs out to let hrm-train fit the run to cpu_fit_hours={fit_hours:g}, "
            "or set cpu_max_hours=null to start it anyway")


def format_duration(s: float) -> str:
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        m, sec = divmod(int(round(s)), 60)
        return f"{m} min {sec:02d} s"
    if s < 2 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:,.0f} days"


def default_threads(cores: int | None = None, load: float | None = None) -> int:
    """Torch threads for CPU training when ``cpu_threads`` is null: the cores not already busy.

    Measured on a 2-core machine (docs/trainer.md, "Threads"): on a busy machine one thread is
    fastest (a second thread waits for a core other jobs hold); on an idle one, all cores."""
    if cores is None:
        cores = os.cpu_count() or 1
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (OSError, AttributeError):
            load = 0.0
    return max(1, min(cores, int(cores - load + 0.5)))


# ----------------------------------------------------------------------------- measurement

def dist_initialized() -> bool:
    import torch.distributed as dist
    return dist.is_available() and dist.is_initialized()


def measure(cfg: dict[str, Any], meta, device, local_batch: int, eval_batch: int,
            steps: int = PROBE_STEPS) -> Timing:
    """Time throwaway training steps and one evaluation segment of this configuration's model on
    random tokens. The torch RNG is restored afterwards, so the run itself is unchanged."""
    import torch

    from .train import _build, _optimizers
    rows = probe_rows(local_batch, meta.seq_len)
    erows = probe_rows(eval_batch, meta.seq_len)
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    with torch.random.fork_rng(devices=[device] if cuda else []):
        torch.manual_seed(12345)
        model = _build(cfg, meta, rows, device)
        optimizers, _ = _optimizers(model, cfg, 1)
        if dist_initialized():   # the sparse optimizer would all-gather across ranks: time the dense one only
            optimizers = optimizers[-1:]
        for o in optimizers:
            for g in o.param_groups:
                g["lr"] = 0.0

        def batch(n: int) -> dict[str, torch.Tensor]:
            x = torch.randint(0, meta.vocab_size, (n, meta.seq_len), dtype=torch.int32, device=device)
            ids = torch.randint(0, max(1, meta.num_puzzle_identifiers), (n,), dtype=torch.int32, device=device)
            return {"inputs": x, "labels": x.clone(), "puzzle_identifiers": ids}

        b = batch(rows)
        with torch.device(device):
            carry = model.initial_carry(b)
        times = []
        for i in range(steps + 1):
            sync()
            t = time.perf_counter()
            carry, loss, _, _, _ = model(carry=carry, batch=b, return_keys=())
            (loss / rows).backward()
            for o in optimizers:
                o.step()
                o.zero_grad()
            sync()
            if i:
                times.append(time.perf_counter() - t)
        model.eval()
        eb = batch(erows)
        with torch.no_grad(), torch.device(device):
            ecarry = model.initial_carry(eb)
            sync()
            t = time.perf_counter()
            model(carry=ecarry, batch=eb, return_keys=("preds",))
            sync()
            eval_t = time.perf_counter() - t
        del model, optimizers
    step = min(times) * local_batch / rows
    return Timing(step_s=step, eval_segment_s=eval_t * eval_batch / erows, probe_rows=rows, rows=local_batch)


# ----------------------------------------------------------------------------- the trainer's hook

def prepare(cfg: dict[str, Any], dataset, device, world_size: int, *, fresh: bool, say, make_plan,
            broadcast=lambda obj: obj):
    """Measure, fit ``epochs`` when it is None, plan, print the estimate, refuse days on a CPU.

    Returns ``(cfg, plan, line)``: ``line`` is the estimate, to print after the plan. ``broadcast``: rank 0's value to every rank (torchrun), so
    all ranks fit the same schedule."""
    B = cfg["global_batch_size"]
    eval_B = cfg.get("eval_batch_size") or B
    meta = dataset.train.metadata
    test = dataset.test
    n_test = sum(test.set(s).num_examples for s in test.metadata.sets)
    halt = int(cfg["arch"]["halt_max_steps"])
    timing = broadcast(measure(cfg, meta, device, max(1, B // world_size), max(1, eval_B // world_size)))
    one_eval = eval_seconds(n_test, eval_B // world_size, halt, timing)
    fit_hours = cfg.get("cpu_fit_hours") or 1.0
    how = (f"{timing.step_s:.3g} s/step measured on a probe step"
           + (f" of {timing.probe_rows} rows, scaled to {timing.rows}" if timing.scaled else "")
           + (" (eager; torch.compile is usually faster)" if cfg.get("compile") else ""))
    if cfg["epochs"] is None:
        probe = dict(cfg, epochs=1, eval_interval=None)
        epoch_steps = make_plan(dataset, probe, world_size).steps_per_epoch
        epochs, interval = fit_schedule(fit_hours * 3600, epoch_steps * timing.step_s, one_eval, cfg["eval_interval"])
        cfg = dict(cfg, epochs=epochs, eval_interval=interval)
        say(f"fitted to about {format_duration(fit_hours * 3600)} (cpu_fit_hours={fit_hours:g}, {how}): "
            f"epochs={epochs} eval_interval={interval}, so {epochs // interval} evaluation(s) and checkpoint(s)")
    plan = make_plan(dataset, cfg, world_size)
    evals = cfg["epochs"] // (cfg["eval_interval"] or cfg["epochs"])
    eta = estimate_seconds(plan.total_steps, evals, one_eval, timing.step_s)
    line = (f"estimated wall time: {format_duration(eta)} ({plan.total_steps:,} steps x {timing.step_s:.3g} s + "
            f"{evals} evaluation(s) x {format_duration(one_eval)}; {how})")
    if fresh and device.type == "cpu":
        budget_epochs, _ = fit_schedule(fit_hours * 3600, plan.steps_per_epoch * timing.step_s, 0.0, 1)
        refusal = verdict(eta, cfg.get("cpu_max_hours"), budget_epochs, fit_hours)
        if refusal:
            from .train import BadInput
            raise BadInput(refusal)
    return cfg, plan, line
