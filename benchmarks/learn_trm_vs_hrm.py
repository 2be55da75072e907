"""TRM next to HRM on a CPU: the same small-maze data, the same wall-clock budget, both curves.

    python benchmarks/learn_trm_vs_hrm.py                 # 6 x 6 mazes, 12 minutes each, side by side
    python benchmarks/learn_trm_vs_hrm.py --minutes 5     # a quicker look

Builds ``--out``/data with ``hrm-data build maze`` (generated mazes with a unique shortest path,
so exact match is fair, and their 8 dihedral variants), then trains ``preset=trm-cpu-small`` and
``preset=cpu-small`` at the same time, one thread each (the two cores of the machine), each for
as many epochs as fit in ``--minutes`` (timed by a short probe), and prints both test curves:
exact accuracy and ``path_optimal`` (any shortest path counts). Results: docs/trainer.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from learn_common import HRM_DATA, train_with_budget  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/hrm-learn-trm-vs-hrm")
    ap.add_argument("--size", type=int, default=6)
    ap.add_argument("--count", type=int, default=3000, help="train mazes (each with its 8 dihedral variants)")
    ap.add_argument("--test-count", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=12.0, help="training budget of each model (they run together)")
    ap.add_argument("--evals", type=int, default=6)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: train one preset on built data
    a = ap.parse_args()
    out = Path(a.out)
    data = out / "data"
    if a.one:
        return train_one(a, a.one, data, out / a.one)
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run([HRM_DATA, "build", "maze", "--out", str(data), "--size", str(a.size),
                    "--count", str(a.count), "--test-count", str(a.test_count), "--unique-path", "--aug",
                    "--seed", str(a.seed), "-q"], check=True)
    args = [sys.executable, __file__, *sys.argv[1:]]

    def one(preset: str) -> str:
        r = subprocess.run([*args, "--one", preset], capture_output=True, text=True)
        return r.stdout + (f"\nfailed (exit {r.returncode}):\n{r.stderr[-3000:]}" if r.returncode else "")

    print(f"load {os.getloadavg()[0]:.1f}; {a.count} train mazes x 8 variants, {a.test_count} test, "
          f"{a.size} x {a.size}; both models train at once, one thread each", flush=True)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, ["trm-cpu-small", "cpu-small"]))
    for preset, text in zip(["trm-cpu-small", "cpu-small"], results):
        print(f"\n==== {preset}\n{text}", flush=True)
    print(f"load at the end {os.getloadavg()[0]:.1f}")


def train_one(a, preset: str, data: Path, run_out: Path) -> None:
    common = [str(data), f"preset={preset}", f"global_batch_size={a.batch}", f"lr={a.lr}", "lr_min_ratio=0.1",
              "arch.puzzle_emb_ndim=0", *(["arch.puzzle_emb_len=0"] if preset.startswith("trm") else []),
              "progress=false", "log_every=20", f"runs_dir={run_out / 'runs'}", "cpu_threads=1", f"seed={a.seed}"]
    train_with_budget(data, run_out, common, batch=a.batch, minutes=a.minutes, evals=a.evals,
                      describe=f", {a.size} x {a.size} mazes, preset={preset}")


if __name__ == "__main__":
    main()
