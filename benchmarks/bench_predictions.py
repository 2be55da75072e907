"""Benchmark the prediction table and the viewer on a sudoku-sized test split.

    python benchmarks/bench_predictions.py [--examples 400000] [--limit 3000]

Writes a test split of --examples x 81 random tokens (vocab 11, one example per puzzle) in a
temp dir, predictions that are the labels with ~1% of the rows changed, then times
predictions_table + write_predictions (predictions.parquet, zstd), pandas.read_parquet, and the
viewer's page for --limit sampled examples. Prints seconds and file sizes.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from hrm_data.format import Dataset, write_arrays
from hrm_data.predictions import predictions_table, read_predictions, write_predictions
from hrm_data.render_html import write_page


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=400_000)
    ap.add_argument("--limit", type=int, default=3000)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    n, s = a.examples, 81
    x = rng.integers(1, 11, size=(n, s), dtype=np.uint8)
    arrays = {"inputs": x, "labels": x, "puzzle_identifiers": np.ones(n, np.int32),
              "puzzle_indices": np.arange(n + 1, dtype=np.int32), "group_indices": np.arange(n + 1, dtype=np.int32)}
    with tempfile.TemporaryDirectory() as tmp:
        root = write_arrays(Path(tmp) / "d", {"train": arrays, "test": arrays}, vocab_size=11,
                            identifiers=["<blank>", "p"], metadata_overrides={"test": {"grid_shape": [9, 9]}})
        ds = Dataset(root)
        preds = x.copy()
        bad = rng.choice(n, n // 100, replace=False)
        preds[bad, 0] = preds[bad, 0] % 10 + 1
        t = time.perf_counter()
        path = write_predictions(predictions_table(ds, {"all": preds}), tmp)
        t_write = time.perf_counter() - t
        t = time.perf_counter()
        df = read_predictions(path)
        t_read = time.perf_counter() - t
        t = time.perf_counter()
        page = write_page(ds, Path(tmp) / "v.html", df, limit=a.limit)
        t_view = time.perf_counter() - t
        print(f"test split {n} x {s}: predictions.parquet {os.path.getsize(path) / 1e6:.1f} MB written in {t_write:.2f} s, "
              f"read by pandas in {t_read:.2f} s; view page ({a.limit} examples) {os.path.getsize(page) / 1e6:.2f} MB "
              f"in {t_view:.2f} s; wrong rows {int((~df['correct']).sum())}")


if __name__ == "__main__":
    main()
