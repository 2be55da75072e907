"""The words at the end of a run: what the model learned, against which baseline, and where the
run, its checkpoint and its predictions are. A pure function of the final evaluation's numbers."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def final_summary(results: dict[str, dict[str, Any]], *, run_dir: Path | str, checkpoint: Path | str | None,
                  predictions: list[Path | str], steps: int, seconds: float, task_name: str | None = None,
                  task_description: str | None = None) -> str:
    """Several lines for the console. ``results``: the final evaluation ({set: metrics}); the
    builder's metric, if any, is under ``"task"``; ``naive_baseline`` there is the exact accuracy
    a naive solver reaches, so the model's is compared with it."""
    from .eta import format_duration
    L = [f"Result after {steps:,} steps ({format_duration(seconds)}):"]
    if task_description:
        L.append(f"  task: {task_description}" + (f" ({task_name})" if task_name else ""))
    for set_name, m in results.items():
        exact = float(m.get("exact_accuracy", 0.0))
        n = int(m.get("count", 0))
        where = f"the {n} test examples" + (f" of set {set_name!r}" if len(results) > 1 else "")
        L.append(f"  exact accuracy {exact:.3f}: {_pct(exact)} of {where} are answered entirely right "
                 f"(every cell); cells right: {_pct(float(m.get('accuracy', 0.0)))}")
        task = m.get("task") or {}
        naive = task.get("naive_baseline")
        if naive is not None:
            gap = exact - float(naive)
            verdict = (f"the model is {100 * gap:.1f} points better" if gap > 0.005 else
                       f"the model is {100 * -gap:.1f} points worse: it has not learned the task yet" if gap < -0.005
                       else "no better: it has not learned the task yet")
            L.append(f"  naive baseline {float(naive):.3f}: the answer a naive solver gives is right for {_pct(float(naive))} "
                     f"of them; {verdict}")
        if task.get("route_optimal") is not None:
            L.append(f"  routes: {_pct(task['route_optimal'])} least-cost, {_pct(task.get('route_valid') or 0.0)} valid"
                     + (f", valid routes cost {_pct(task['cost_excess'])} more than the least cost on average"
                        if task.get("cost_excess") is not None else ", no valid route to price (cost_excess n/a)"))
        else:
            others = [f"{k} {v}" for k, v in task.items() if k not in ("naive_baseline", "examples")]
            if others:
                L.append("  task metric: " + ", ".join(others))
    L.append(f"  run folder:  {run_dir}   (metrics.jsonl, config.yaml, plan.json)")
    if checkpoint is not None:
        L.append(f"  checkpoint:  {checkpoint}")
        L.append(f"               evaluate again: hrm-train --eval-only --checkpoint {run_dir}")
    for p in predictions:
        L.append(f"  predictions: {p}   (test examples in order, one predicted grid per row)")
    return "\n".join(L)
