"""`hrm-train plot`: training curves of one or more runs from their metrics.jsonl (matplotlib,
the ``viz`` extra, imported only here and only when called).

Panels against optimizer steps: train loss, learning rate, test exact accuracy, the builder's
task metric (the first one an evaluation recorded, e.g. city's route_optimal) and ACT steps
(train and test). Several runs share the axes, one colour per run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .extras import need


def read_metrics(run: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of RUN/metrics.jsonl (a line cut by a kill is skipped)."""
    p = Path(run)
    p = p / "metrics.jsonl" if p.is_dir() else p
    if not p.is_file():
        raise FileNotFoundError(f"{run}: no metrics.jsonl (is this a run folder of hrm-train?)")
    out = []
    for line in p.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "step" in rec:
            out.append(rec)
    return out


def series(records: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """{curve name: (steps, values)}: train loss / lr / steps, and per test set exact accuracy,
    ACT steps and every task metric (``task/<name>``, ``<set>`` appended when a run has several sets)."""
    curves: dict[str, tuple[list[float], list[float]]] = {}

    def add(name, step, value):
        if isinstance(value, (int, float)) and value == value:
            xs, ys = curves.setdefault(name, ([], []))
            xs.append(step)
            ys.append(float(value))

    sets = sorted({r.get("set", "") for r in records if r.get("type") == "eval"})
    for r in records:
        s = r["step"]
        if r.get("type", "train") == "train":
            add("train/loss", s, r.get("loss"))
            add("train/lr", s, r.get("lr"))
            if r.get("count"):
                add("train/steps", s, r.get("steps"))
        elif r.get("type") == "eval":
            tag = "" if len(sets) == 1 else f" [{r.get('set')}]"
            add(f"test/exact_accuracy{tag}", s, r.get("exact_accuracy"))
            add(f"test/steps{tag}", s, r.get("steps"))
            for k, v in (r.get("task") or {}).items():
                if k != "examples":
                    add(f"task/{k}{tag}", s, v)
    return curves


PANELS = (("train loss", ("train/loss",), "log"), ("learning rate", ("train/lr",), "linear"),
          ("test exact accuracy", ("test/exact_accuracy",), "linear"), ("task metric", ("task/",), "linear"),
          ("ACT steps", ("train/steps", "test/steps"), "linear"))


def _legend(run: str, curve: str, many_curves: bool, many_runs: bool) -> str | None:
    """Name what differs: the run (several runs), the curve (several curves in a panel), or both."""
    what = curve.split("/", 1)[1] if curve.startswith("task/") else curve
    if many_curves and many_runs:
        return f"{run}: {what}"
    return what if many_curves else run if many_runs else None


def plot_runs(runs: list[str], out: str | os.PathLike, title: str | None = None) -> Path:
    """One PNG with the runs' curves on shared panels."""
    mpl = need("matplotlib")
    mpl.use("Agg")  # files only, no display needed
    plt = need("matplotlib.pyplot")
    data = [(Path(r).name or str(r), series(read_metrics(r))) for r in runs]
    fig, grid = plt.subplots(2, 3, figsize=(13, 7), constrained_layout=True)
    axes = list(grid.flat)
    for ax in axes[len(PANELS):]:
        ax.axis("off")
    colours = plt.get_cmap("tab10").colors
    styles = ("-", "--", ":", "-.")
    for ax, (name, prefixes, scale) in zip(axes, PANELS):
        drawn = 0
        for k, (label, curves) in enumerate(data):
            keys = [c for c in curves if any(c.startswith(p) for p in prefixes)]
            for j, c in enumerate(keys):
                xs, ys = curves[c]
                many = len(keys) > 1
                ax.plot(xs, ys, styles[j % len(styles)], color=colours[k % len(colours)],
                        marker="o" if c.startswith(("test/", "task/")) else None, markersize=3,
                        label=_legend(label, c, many, len(data) > 1))
                drawn += 1
        ax.set_title(name)
        ax.set_xlabel("step")
        if scale == "log" and drawn and all(min(curves[c][1], default=1) > 0 for _, curves in data
                                            for c in curves if c.startswith(prefixes)):
            ax.set_yscale("log")
        if not drawn:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes, color="gray")
        elif ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title or ", ".join(label for label, _ in data), fontsize=11)
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if tmp.exists():
            tmp.unlink()
    return out
