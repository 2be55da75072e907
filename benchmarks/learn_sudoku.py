"""Does a small HRM learn 4 x 4 Sudoku on a CPU? Generate puzzles, train, print the test curve.

    python benchmarks/learn_sudoku.py                          # the documented configuration
    python benchmarks/learn_sudoku.py --minutes 5 --threads 1  # a quicker look

Builds ``--out``/data with ``hrm-data build sudoku --generate --size 4`` (test puzzles are
inequivalent to every train puzzle under the Sudoku symmetries, so the test measures solving,
not recall), trains a model smaller than ``preset=cpu-small`` for ``--epochs`` (or as many as
fit in ``--minutes``) and prints test exact accuracy and the builder's ``solved`` share
(any valid solution keeping the clues) at each evaluation.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from learn_common import HRM_DATA, SMALL_MODEL, train_with_budget

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/hrm-learn-sudoku")
    ap.add_argument("--count", type=int, default=3000, help="train puzzles")
    ap.add_argument("--test-count", type=int, default=12, help="test puzzles (4 x 4 has few inequivalent ones)")
    ap.add_argument("--num-aug", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=13.0, help="training budget (wall clock)")
    ap.add_argument("--evals", type=int, default=8)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sec-per-step", type=float, default=None, help="skip the timing probe")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("extra", nargs="*", help="more hrm-train key=value overrides")
    a = ap.parse_args()
    out = Path(a.out)
    data = out / "data"
    if data.exists():
        shutil.rmtree(data)
    subprocess.run([HRM_DATA, "build", "sudoku", "--generate", "--size", "4", "--count", str(a.count),
                    "--test-count", str(a.test_count), "--num-aug", str(a.num_aug), "--out", str(data), "-q"],
                   check=True)
    common = [str(data), *SMALL_MODEL, f"global_batch_size={a.batch}", f"lr={a.lr}", "lr_min_ratio=0.1",
              "weight_decay=0.1", "beta2=0.95", "progress=false", "log_every=50",
              f"runs_dir={out / 'runs'}", *(f"cpu_threads={a.threads}",) * bool(a.threads), *a.extra]
    train_with_budget(data, out, common, batch=a.batch, minutes=a.minutes, evals=a.evals,
                      sec_per_step=a.sec_per_step, describe=", 4 x 4")


if __name__ == "__main__":
    main()
