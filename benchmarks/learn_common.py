"""The part of the learn_*.py benchmarks that does not depend on the task: time a step, fit the
epochs into a wall-clock budget, train with hrm-train, print the test curve."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

# the commands of the Python running this script (its venv), whatever PATH says
BIN = Path(sys.executable).parent
HRM_DATA, HRM_TRAIN = str(BIN / "hrm-data"), str(BIN / "hrm-train")

# the small HRM the maze and Sudoku learning runs train (smaller than preset=cpu-small)
SMALL_MODEL = ["arch.hidden_size=64", "arch.num_heads=2", "arch.expansion=4", "arch.H_layers=2", "arch.L_layers=2",
               "arch.H_cycles=2", "arch.L_cycles=2", "arch.halt_max_steps=2", "arch.puzzle_emb_ndim=0",
               "arch.forward_dtype=float32", "arch.pos_encodings=rope"]


def train_with_budget(data: Path, out: Path, common: list[str], *, batch: int, minutes: float, evals: int,
                      sec_per_step: float | None = None, describe: str = "", probe_epochs: int = 2) -> None:
    """``common``: hrm-train arguments (dataset path first). Probes the step time over
    ``probe_epochs`` unless given, trains for as many epochs as fit in ``minutes`` (about 8% kept for
    evaluation; fewer evaluations rather than past the budget) and prints exact accuracy, accuracy,
    q_halt accuracy, loss and the builder's task metrics per eval."""
    n_groups = json.loads((data / "train" / "dataset.json").read_text())["total_groups"]
    steps_per_epoch = n_groups / batch
    sps = sec_per_step
    if sps is None:  # probe: time per step from its metrics
        probe = subprocess.run([HRM_TRAIN, *common, f"epochs={probe_epochs}", "run_name=probe", "log_every=1",
                                "checkpoint_every_eval=false"], capture_output=True, text=True)
        if probe.returncode != 0:
            sys.exit(probe.stderr[-3000:])
        lines = [json.loads(l) for l in (out / "runs" / "probe" / "metrics.jsonl").read_text().splitlines()]
        t = [l for l in lines if l["type"] == "train"]
        sps = (t[-1]["time"] - t[1]["time"]) / max(1, t[-1]["step"] - t[1]["step"])
        shutil.rmtree(out / "runs" / "probe")
    epochs = max(1, int(minutes * 60 / (sps * steps_per_epoch * 1.08)))  # ~8% for evaluation
    evals = min(evals, epochs)  # never past the budget
    epochs -= epochs % evals
    warmup = f"lr_warmup_examples={2 * n_groups}"
    print(f"load {os.getloadavg()[0]:.1f}; data: {n_groups} train groups{describe}; {sps:.3f} s/step measured; "
          f"{epochs} epochs, eval every {epochs // evals}", flush=True)
    run_name = f"learn-{time.strftime('%H%M%S')}"
    cmd = [HRM_TRAIN, *common, f"epochs={epochs}", f"eval_interval={epochs // evals}", warmup,
           f"run_name={run_name}"]
    print(" ".join(cmd), flush=True)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr[-3000:])
    lines = [json.loads(l) for l in (out / "runs" / run_name / "metrics.jsonl").read_text().splitlines()]
    print(f"trained in {(time.time() - t0) / 60:.1f} min (load {os.getloadavg()[0]:.1f})\n\n  step  epoch  exact_acc  accuracy  q_halt_acc  lm_loss  task")
    for l in lines:
        if l["type"] == "eval":
            task = " ".join(f"{k}={'n/a' if v is None else format(v, '.3f')}"
                            for k, v in l.get("task", {}).items() if k != "examples")
            print(f"{l['step']:6d} {l['epoch']:6d} {l['exact_accuracy']:10.3f} {l['accuracy']:9.3f} "
                  f"{l['q_halt_accuracy']:10.3f} {l['lm_loss']:8.4f}  {task}")
