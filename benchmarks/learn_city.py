"""Does HRM learn city logistics on a CPU? Build a small city dataset, train, print the curve.

    python benchmarks/learn_city.py                       # the documented configuration
    python benchmarks/learn_city.py --minutes 5 --threads 1  # quicker look, 1 thread (busy machine)

Builds ``--out`` (default /tmp/hrm-learn-city/data) with ``hrm-data build city-logistics``,
trains with ``hrm-train`` under a wall-clock budget (``--minutes``: epochs are chosen from a
measured step time), and prints test ``exact_accuracy`` / ``accuracy`` / task metrics per eval.
Results and the configuration are documented in docs/trainer.md ("Learning on a CPU").
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

from learn_common import train_with_budget

MODEL = ["arch.hidden_size=64", "arch.num_heads=2", "arch.expansion=4", "arch.H_layers=2", "arch.L_layers=2",
         "arch.H_cycles=2", "arch.L_cycles=2", "arch.halt_max_steps=2", "arch.puzzle_emb_ndim=64",
         "arch.forward_dtype=float32", "arch.pos_encodings=rope"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/hrm-learn-city")
    ap.add_argument("--size", type=int, default=6)
    ap.add_argument("--train-scenarios", type=int, default=1000)
    ap.add_argument("--test-scenarios", type=int, default=50)
    ap.add_argument("--vehicles", default="bike,car,van,truck")
    ap.add_argument("--minutes", type=float, default=13.0, help="training budget (wall clock)")
    ap.add_argument("--evals", type=int, default=10, help="evaluations over the run")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sec-per-step", type=float, default=None, help="skip the timing probe")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("extra", nargs="*", help="more hrm-train key=value overrides")
    a = ap.parse_args()
    out = Path(a.out)
    data = out / "data"
    if data.exists():
        shutil.rmtree(data)
    subprocess.run(["hrm-data", "build", "city-logistics", "--out", str(data), "--size", str(a.size),
                    "--train-scenarios", str(a.train_scenarios), "--test-scenarios", str(a.test_scenarios),
                    "--vehicles", a.vehicles, "-q"], check=True)
    common = [str(data), *MODEL, f"global_batch_size={a.batch}", f"lr={a.lr}", "lr_min_ratio=0.1",
              "puzzle_emb_lr=1e-2", "weight_decay=0.1", "beta2=0.95", "progress=false", "log_every=50",
              f"runs_dir={out / 'runs'}", *(f"cpu_threads={a.threads}",) * bool(a.threads), *a.extra]
    train_with_budget(data, out, common, batch=a.batch, minutes=a.minutes, evals=a.evals,
                      sec_per_step=a.sec_per_step, describe=f" (size {a.size})")


if __name__ == "__main__":
    main()
