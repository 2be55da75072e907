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
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

MODEL = ["arch.hidden_size=64", "arch.num_heads=2", "arch.expansion=4", "arch.H_layers=2", "arch.L_layers=2",
         "arch.H_cycles=2", "arch.L_cycles=2", "arch.halt_max_steps=2", "arch.puzzle_emb_ndim=0",
         "arch.forward_dtype=float32", "arch.pos_encodings=rope"]


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


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
    bindir = Path(sys.executable).parent
    hrm_data, hrm_train = str(bindir / "hrm-data"), str(bindir / "hrm-train")
    subprocess.run([hrm_data, "build", "maze", "--out", str(data), "--size", str(a.size), "--count", str(a.count),
                    "--test-count", str(a.test_count), "--min-path", str(a.min_path), "--unique-path", "--aug",
                    "--seed", str(a.seed), "-q"], check=True)
    n_groups = json.loads((data / "train" / "dataset.json").read_text())["total_groups"]
    common = [str(data), *MODEL, f"global_batch_size={a.batch}", f"lr={a.lr}", "lr_min_ratio=0.1",
              "weight_decay=0.1", "beta2=0.95", "progress=false", "log_every=20", f"runs_dir={out / 'runs'}",
              f"cpu_threads={a.threads}", f"seed={a.seed}", *a.extra]
    probe = subprocess.run([hrm_train, *common, "epochs=1", "run_name=probe", "log_every=1",
                            "checkpoint_every_eval=false"], capture_output=True, text=True)
    if probe.returncode != 0:
        sys.exit(probe.stderr[-3000:])
    t = [m for m in _metrics(out / "runs" / "probe") if m["type"] == "train"]
    sps = (t[-1]["time"] - t[1]["time"]) / max(1, t[-1]["step"] - t[1]["step"])
    shutil.rmtree(out / "runs" / "probe")
    steps_per_epoch = n_groups / a.batch
    epochs = max(1, int(a.minutes * 60 / (sps * steps_per_epoch * 1.08)))   # ~8% for evaluation
    evals = min(a.evals, epochs)                                            # never past the budget
    epochs -= epochs % evals
    print(f"load {os.getloadavg()[0]:.1f}; data: {n_groups} train groups (x8 dihedral puzzles), {a.test_count} test, "
          f"{a.size}x{a.size}; {sps:.3f} s/step; {epochs} epochs, eval every {epochs // evals}", flush=True)
    cmd = [hrm_train, *common, f"epochs={epochs}", f"eval_interval={epochs // evals}",
           f"lr_warmup_examples={2 * n_groups}", "run_name=learn"]
    print(" ".join(cmd), flush=True)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr[-3000:])
    print(f"trained in {(time.time() - t0) / 60:.1f} min (load {os.getloadavg()[0]:.1f})\n\n"
          "  step  epoch  exact_acc  accuracy  lm_loss  path_valid  path_optimal")
    for m in _metrics(out / "runs" / "learn"):
        if m["type"] == "eval":
            task = m.get("task", {})
            print(f"{m['step']:6d} {m['epoch']:6d} {m['exact_accuracy']:10.3f} {m['accuracy']:9.3f} "
                  f"{m['lm_loss']:8.4f} {task.get('path_valid', float('nan')):11.3f} "
                  f"{task.get('path_optimal', float('nan')):13.3f}", flush=True)


if __name__ == "__main__":
    main()
