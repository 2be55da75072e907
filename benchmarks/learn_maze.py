"""Does a small HRM learn shortest paths through small mazes on a CPU? Build, train, print the curve.

    python benchmarks/learn_maze.py                          # the documented configuration (~15 min)
    python benchmarks/learn_maze.py --minutes 4 --size 6     # a quicker look

Builds ``--out``/data with ``hrm-data build maze`` (generated ``--size`` x ``--size`` mazes, unique
shortest paths so that exact match is a fair measure), trains ``hrm-train`` with a model smaller than
``preset=cpu-small`` for a wall-clock budget (epochs chosen from a measured step time) and prints test
``exact_accuracy`` and the maze score (``path_optimal``: any shortest path counts) per evaluation.
Results are in docs/builders/maze.md ("Learning on a CPU").
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from learn_common import HRM_DATA, SMALL_MODEL, train_with_budget  # noqa: E402

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/hrm-learn-maze")
    ap.add_argument("--size", type=int, default=6)
    ap.add_argument("--count", type=int, default=3000, help="train mazes")
    ap.add_argument("--test-count", type=int, default=200)
    ap.add_argument("--min-path", type=int, default=0, help="0 = size - 1")
    ap.add_argument("--minutes", type=float, default=13.0, help="training budget (wall clock)")
    ap.add_argument("--evals", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("extra", nargs="*", help="more hrm-train key=value overrides")
    a = ap.parse_args()
    out = Path(a.out)
    data = out / "data"
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([HRM_DATA, "build", "maze", "--out", str(data), "--size", str(a.size), "--count", str(a.count),
                    "--test-count", str(a.test_count), "--min-path", str(a.min_path), "--unique-path", "--aug",
                    "--seed", str(a.seed), "-q"], check=True)
    common = [str(data), *SMALL_MODEL, f"global_batch_size={a.batch}", f"lr={a.lr}", "lr_min_ratio=0.1",
              "weight_decay=0.1", "beta2=0.95", "progress=false", "log_every=20", f"runs_dir={out / 'runs'}",
              f"cpu_threads={a.threads}", f"seed={a.seed}", *a.extra]
    train_with_budget(data, out, common, batch=a.batch, minutes=a.minutes, evals=a.evals, probe_epochs=1,
                      describe=f" (x8 dihedral puzzles), {a.test_count} test, {a.size}x{a.size}")


if __name__ == "__main__":
    main()
