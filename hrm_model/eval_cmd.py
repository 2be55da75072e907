"""`hrm-train eval RUN`: evaluate a run's checkpoint, write predictions, print a summary table,
and draw some predictions (input / label / prediction side by side, wrong cells marked)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import checkpoint as ckpt
from .train import BadInput, eval_only

METRIC_COLUMNS = (("n", "count"), ("accuracy", "accuracy"), ("exact", "exact_accuracy"),
                  ("q_halt_acc", "q_halt_accuracy"), ("steps", "steps"), ("lm_loss", "lm_loss"))


def resolve_checkpoint(run: str, checkpoint: str | None) -> tuple[Path, Path | None, int | None]:
    """(checkpoint file, run folder or None, step or None) from RUN and --checkpoint (a step number,
    a file, or nothing for the newest)."""
    r = Path(run)
    if r.is_file():
        if checkpoint is not None:
            raise BadInput(f"{run}: is a checkpoint file; --checkpoint N picks a step of a run folder")
        m = ckpt._CKPT_RE.match(r.name)
        run_dir = r.parent.parent if (r.parent.parent / "config.yaml").exists() else None
        return r, run_dir, int(m.group(1)) if m else None
    if not r.is_dir():
        raise BadInput(f"{run}: no such run folder or checkpoint file")
    found = ckpt.list_checkpoints(r)
    if checkpoint is None:
        if not found:
            raise BadInput(f"{run}: no checkpoint in this run folder (train it first, or pass a checkpoint file)")
        step, path = found[-1]
        return path, r, step
    if checkpoint.isdigit():
        steps = {s: p for s, p in found}
        if int(checkpoint) not in steps:
            have = ", ".join(str(s) for s in sorted(steps)) or "none"
            raise BadInput(f"{run}: no checkpoint at step {checkpoint} (steps: {have}); pass one of them to --checkpoint")
        return steps[int(checkpoint)], r, int(checkpoint)
    p = Path(checkpoint)
    if not p.exists():
        raise BadInput(f"{checkpoint}: no such checkpoint; --checkpoint takes a step number of {run} or a file")
    m = ckpt._CKPT_RE.match(p.name)
    return p, r, int(m.group(1)) if m else None


def summary_table(results: dict[str, dict[str, Any]]) -> str:
    """Per-set evaluation numbers and the task metric as a small aligned table."""
    task_keys: list[str] = []
    for m in results.values():
        task_keys += [k for k in m.get("task", {}) if k not in task_keys]
    head = ["set"] + [h for h, _ in METRIC_COLUMNS] + task_keys
    rows = []
    for set_name, m in results.items():
        row = [set_name]
        for _, k in METRIC_COLUMNS:
            v = m.get(k)
            row.append("-" if v is None else (str(int(v)) if k == "count" else f"{v:.4f}" if k != "steps" else f"{v:.2f}"))
        for k in task_keys:
            v = m.get("task", {}).get(k)
            row.append("n/a" if v is None else (str(int(v)) if float(v).is_integer() and k == "examples" else f"{v:.4f}"))
        rows.append(row)
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(head), "  ".join("-" * w for w in widths)] + [fmt(r) for r in rows])


def draw_predictions(dataset, table, png_dir: Path, count: int, only_wrong: bool, cell: int | None = None) -> list[Path]:
    """The first ``count`` examples (wrong ones only, if asked) as PNGs named <set>_<example>.png."""
    from hrm_data.render import example_title, grid_style
    from hrm_data.render_png import draw_example, save_png, wrong_cells
    from hrm_data.predictions import BASE_COLUMNS
    sp = dataset.test
    style = grid_style(sp.metadata)
    rows = table[~table["correct"].astype(bool)] if only_wrong else table
    fields = [c for c in table.columns if c not in BASE_COLUMNS]
    written = []
    for _, r in rows.head(count).iterrows():
        set_name, i = str(r["set"]), int(r["example"])
        arr = sp.set(set_name)
        x, y = np.asarray(arr.inputs[i]), np.asarray(arr.labels[i])
        p = np.asarray(r["prediction"])
        wrong = wrong_cells(y, p, style["ignore_label_id"])
        facts = [f"{'correct' if r['correct'] else 'wrong'}", f"token acc {r['token_accuracy']:.3f}"]
        if r.get("halt_step") is not None and not _isnan(r.get("halt_step")):
            facts.append(f"halt step {int(r['halt_step'])}/{int(r['steps'])}  q_halt {float(r['q_halt']):+.2f}")
        facts += [f"{k} {_short(r[k])}" for k in fields]
        title = example_title(dataset, "test", set_name, i) + "\n" + "  ".join(facts)
        img = draw_example([("input", x), ("label", y), (f"prediction: {int(wrong.sum())} wrong", p)], style,
                           wrong=wrong, title=title, cell=cell)
        written.append(save_png(img, png_dir / f"{set_name}_{i:06d}.png"))
    return written


def _isnan(v) -> bool:
    try:
        return v is None or bool(np.isnan(v))
    except TypeError:
        return False


def _short(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (float, np.floating)):
        return "-" if np.isnan(v) else f"{v:.3f}"
    return str(v)


def run_eval(run: str, data: str | None, checkpoint: str | None, out: str | None, show: int, png: str | None,
             only_wrong: bool, cfg: dict | None = None, echo: Callable[[str], None] = print) -> Path:
    """The whole `hrm-train eval` job; returns the folder with predictions.parquet."""
    path, run_dir, step = resolve_checkpoint(run, checkpoint)
    if out is None:
        base = run_dir if run_dir is not None else path.parent
        out = str(base / "eval" / (f"step_{step}" if step is not None else path.stem))
    png_dir = None
    if show:
        if png is None:
            raise BadInput("--show N draws pictures: give --png DIR (the folder for them)")
        from hrm_data.extras import MissingExtra, need
        try:
            need("PIL.Image", package="Pillow")
        except MissingExtra as e:
            raise BadInput(str(e)) from None
        png_dir = Path(png)
        if png_dir.exists() and not png_dir.is_dir():
            raise BadInput(f"{png}: exists and is not a folder; --png takes a folder for the pictures")
        try:
            png_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BadInput(f"{png}: cannot create ({e.strerror or e}); choose another --png") from None
    elif png is not None:
        raise BadInput("--png DIR needs --show N (how many predictions to draw)")
    echo(f"evaluating {path}")
    results = eval_only(str(path), data, cfg, echo=echo, out_dir=out)
    echo("")
    echo(summary_table(results))
    table_path = Path(out) / "predictions.parquet"
    echo(f"\nwrote {table_path}" if table_path.exists() else f"\nwrote predictions_<set>.npy to {out}")
    if png_dir is not None and table_path.exists():
        from hrm_data.format import Dataset
        from hrm_data.predictions import read_predictions
        table = read_predictions(table_path)
        ds = Dataset(data) if data else Dataset(_data_path_of(path, run_dir))
        written = draw_predictions(ds, table, png_dir, show, only_wrong)
        what = "wrong " if only_wrong else ""
        echo(f"drew {len(written)} {what}prediction(s) to {png_dir}" +
             ("" if len(written) == show else f" (only {len(written)} {what}example(s) in the test split)"))
    return Path(out)


def _data_path_of(path: Path, run_dir: Path | None) -> str:
    if run_dir is not None and (run_dir / "config.yaml").exists():
        import yaml
        d = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("data_path")
        if d:
            return d
    obj = ckpt.load(path)
    d = obj.get("data_path") if ckpt.is_full_checkpoint(obj) else None
    if not d:
        raise BadInput(f"{path}: which dataset? pass DATA")
    return d
