"""predictions.parquet: one row per test example with what the model predicted and how it did.

Written by the trainer's final evaluation and by `hrm-train eval`; read by pictures and the
viewer. pandas / pyarrow open it as it is. Columns: ``set``, ``example`` (index within the set),
``group``, ``puzzle``, ``puzzle_identifier``, ``puzzle_name``, ``input`` / ``label`` /
``prediction`` (lists of token ids), ``correct`` (every labelled token right, as HRM's
exact_accuracy), ``token_accuracy`` (share of labelled tokens right; NaN without labels),
``labelled`` (number of labelled tokens), ``steps`` / ``halt_step`` / ``q_halt`` (ACT, when the
evaluation kept them), then the builder's per-example task fields (``Builder.score_examples``;
a name that clashes with a column above gets a ``task_`` prefix).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

FILENAME = "predictions.parquet"
BASE_COLUMNS = ("set", "example", "group", "puzzle", "puzzle_identifier", "puzzle_name", "input", "label",
                "prediction", "correct", "token_accuracy", "labelled", "steps", "halt_step", "q_halt")


def example_index(arrays) -> tuple[np.ndarray, np.ndarray]:
    """(puzzle, group) of every example of one set, vectorized."""
    pi = np.asarray(arrays.puzzle_indices)
    n = int(pi[-1]) if len(pi) else 0
    puzzle = np.searchsorted(pi, np.arange(n), side="right") - 1
    group = np.searchsorted(np.asarray(arrays.group_indices), puzzle, side="right") - 1
    return puzzle.astype(np.int64), group.astype(np.int64)


def exactness(labels: np.ndarray, preds: np.ndarray, ignore_label_id: int | None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(correct, token_accuracy, labelled) per row, counting labelled tokens as HRM's loss head does."""
    labels = np.asarray(labels)
    mask = labels != ignore_label_id if ignore_label_id is not None else np.ones(labels.shape, bool)
    labelled = mask.sum(-1)
    right = (mask & (np.asarray(preds) == labels)).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(labelled > 0, right / np.maximum(labelled, 1), np.nan)
    return (labelled > 0) & (right == labelled), acc, labelled


def task_fields(dataset, split: str, preds: Mapping[str, np.ndarray]
                ) -> tuple[dict[str, dict[str, np.ndarray]], str | None]:
    """The builder's ``score_examples`` per set ({set: {field: (N,)}}, note). The hook scores a
    split's examples in set order, so it runs only when every set of the split has predictions."""
    sp = dataset.split(split)
    builder_name = sp.metadata.provenance.get("builder")
    if not builder_name or any(s not in preds for s in sp.metadata.sets):
        return {}, None
    try:
        from . import registry
        builder = registry.get(builder_name)
    except Exception as e:
        return {}, f"task fields skipped: builder {builder_name!r} not available ({e})"
    if getattr(builder, "score_examples", None) is None:
        return {}, None
    sets = list(sp.metadata.sets)
    joined = np.concatenate([np.asarray(preds[s]) for s in sets])
    try:
        fields = builder.score_examples(dataset, split, joined)
    except Exception as e:  # a plugin's fields must never cost the user their predictions
        return {}, f"task fields skipped: {builder_name}.score_examples failed ({type(e).__name__}: {e})"
    out: dict[str, dict[str, np.ndarray]] = {s: {} for s in sets}
    bounds = np.cumsum([0] + [len(preds[s]) for s in sets])
    for name, values in fields.items():
        v = np.asarray(values)
        if v.ndim != 1 or len(v) != bounds[-1]:
            return {}, (f"task fields skipped: {builder_name}.score_examples gave {name!r} with shape "
                        f"{v.shape}, expected ({bounds[-1]},)")
        for s, a, b in zip(sets, bounds[:-1], bounds[1:]):
            out[s][name] = v[a:b]
    return out, None


def predictions_table(dataset, preds: Mapping[str, np.ndarray], *, split: str = "test",
                      per_example: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                      echo: Callable[[str], None] | None = None):
    """One pyarrow Table for every set of ``split`` that has predictions (example order)."""
    import pyarrow as pa

    sp = dataset.split(split)
    meta = sp.metadata
    names = list(dataset.identifiers)
    fields, note = task_fields(dataset, split, preds)
    if note and echo:
        echo(f"note: {note}")
    token_type = pa.uint8() if meta.vocab_size <= 256 else pa.int16() if meta.vocab_size <= 32767 else pa.int32()
    tables = []
    for set_name in meta.sets:
        if set_name not in preds:
            continue
        arr = sp.set(set_name)
        p = np.asarray(preds[set_name])
        x, y = np.asarray(arr.inputs), np.asarray(arr.labels)
        if p.shape != x.shape:
            raise ValueError(f"{set_name}: predictions have shape {p.shape}, the set has {x.shape}")
        n = len(x)
        puzzle, group = example_index(arr)
        ident = np.asarray(arr.puzzle_identifiers)[puzzle].astype(np.int64)
        ident_names = np.array(names + ["?"], dtype=object)[np.where((ident >= 0) & (ident < len(names)), ident, len(names))]
        correct, acc, labelled = exactness(y, p, meta.ignore_label_id)
        cols: dict[str, Any] = {
            "set": pa.array([set_name] * n, pa.string()),
            "example": pa.array(np.arange(n, dtype=np.int64)), "group": pa.array(group), "puzzle": pa.array(puzzle),
            "puzzle_identifier": pa.array(ident), "puzzle_name": pa.array(ident_names, pa.string()),
            "input": _list_column(x, token_type), "label": _list_column(y, token_type),
            "prediction": _list_column(p, token_type), "correct": pa.array(correct),
            "token_accuracy": pa.array(acc, pa.float64()), "labelled": pa.array(labelled.astype(np.int32)),
        }
        act = (per_example or {}).get(set_name) or {}
        for k in ("steps", "halt_step", "q_halt"):
            cols[k] = pa.array(np.asarray(act[k])) if k in act else pa.nulls(n, pa.float32() if k == "q_halt" else pa.int32())
        for k, v in fields.get(set_name, {}).items():
            cols[k if k not in cols else f"task_{k}"] = pa.array(v)
        tables.append(pa.table(cols))
    if not tables:
        raise ValueError("no predictions to write")
    return pa.concat_tables(tables, promote_options="default") if len(tables) > 1 else tables[0]


def _list_column(a: np.ndarray, token_type):
    """(N, S) tokens as a list column without a Python loop (large offsets past 2**31 values)."""
    import pyarrow as pa
    a = np.ascontiguousarray(a).astype(token_type.to_pandas_dtype())
    n, s = a.shape
    offsets = np.arange(n + 1, dtype=np.int64) * s
    if offsets[-1] < 2**31:
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(a.reshape(-1)))
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(a.reshape(-1)))


def write_predictions(table, out_dir: str | os.PathLike) -> Path:
    """Write ``out_dir/predictions.parquet`` atomically (a temp file renamed into place)."""
    import pyarrow.parquet as pq
    path = Path(out_dir) / FILENAME
    tmp = path.with_name(f".{FILENAME}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_predictions(path: str | os.PathLike):
    """A run folder, an eval folder or the parquet file itself -> pandas DataFrame."""
    import pandas as pd
    p = Path(path)
    if p.is_dir():
        p = p / FILENAME
    if not p.is_file():
        raise FileNotFoundError(f"{path}: no {FILENAME} here; write one with `hrm-train eval RUN`")
    try:
        return pd.read_parquet(p)
    except Exception as e:
        raise ValueError(f"{p}: not a readable predictions table ({type(e).__name__}: {e})") from None


def save_table(dataset, preds: Mapping[str, np.ndarray], per_example, out_dir: str | os.PathLike,
               echo: Callable[[str], None] = print) -> Path | None:
    """The evaluation's hook: write predictions.parquet next to predictions_<set>.npy. A failure
    is a note, never a lost evaluation (the .npy files are already written)."""
    if not preds:
        return None
    try:
        return write_predictions(predictions_table(dataset, preds, per_example=per_example, echo=echo), out_dir)
    except (OSError, ValueError, ImportError) as e:
        echo(f"note: {FILENAME} not written ({type(e).__name__}: {e})")
        return None
