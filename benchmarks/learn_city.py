"""The demo's training, reproduced: build `make demo`'s city dataset, train with its settings,
print the test curve against the naive baseline.

    python benchmarks/learn_city.py                      # exactly `make demo`'s build and training
    python benchmarks/learn_city.py --threads 1          # one thread (a busy machine)
    python benchmarks/learn_city.py epochs=40 eval_interval=4   # more hrm-train key=value overrides

The build options are read from the Makefile (DEMO_BUILD) and the trainer's settings from
configs/demo-city.yaml, so this measures what the demo runs. Results: README, "The demo".
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "demo-city.yaml"


def demo_build_options() -> list[str]:
    m = re.search(r"^DEMO_BUILD\s*:?=\s*(.+)$", (ROOT / "Makefile").read_text(), re.M)
    if not m:
        sys.exit("Makefile: no DEMO_BUILD line")
    return shlex.split(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/hrm-learn-city")
    ap.add_argument("--threads", type=int, default=None, help="cpu_threads (default: hrm-train's choice)")
    ap.add_argument("extra", nargs="*", help="more hrm-train key=value overrides")
    a = ap.parse_args()
    out = Path(a.out)
    data = out / "data"
    bin_dir = Path(sys.executable).parent
    if data.exists():
        shutil.rmtree(data)
    t0 = time.time()
    subprocess.run([str(bin_dir / "hrm-data"), "build", "city-logistics", "--out", str(data), *demo_build_options(),
                    "-q"], check=True)
    print(f"built {data} in {time.time() - t0:.1f} s ({' '.join(demo_build_options())})", flush=True)
    run_name = f"learn-{time.strftime('%Y%m%d-%H%M%S')}"
    cmd = [str(bin_dir / "hrm-train"), str(data), "--config", str(CONFIG), f"runs_dir={out / 'runs'}",
           f"run_name={run_name}", "progress=false", *(f"cpu_threads={a.threads}",) * bool(a.threads), *a.extra]
    print(" ".join(cmd), flush=True)
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stdout[-2000:] + r.stderr[-3000:])
    print(f"trained in {(time.time() - t0) / 60:.1f} min (wall, evaluations included)")
    lines = [json.loads(l) for l in (out / "runs" / run_name / "metrics.jsonl").read_text().splitlines()]
    train = [l for l in lines if l["type"] == "train"]
    if len(train) > 2:
        sps = (train[-1]["time"] - train[1]["time"]) / max(1, train[-1]["step"] - train[1]["step"])
        print(f"{sps:.3f} s per training step (wall)")
    print("\n  step   epoch  exact_acc  naive  route_optimal  route_valid  accuracy  lm_loss")
    for l in lines:
        if l["type"] == "eval":
            t = l.get("task", {})
            print(f"{l['step']:6d} {l['epoch']:7g} {l['exact_accuracy']:10.3f} {t.get('naive_baseline', float('nan')):6.3f} "
                  f"{t.get('route_optimal', float('nan')):14.3f} {t.get('route_valid', float('nan')):12.3f} "
                  f"{l['accuracy']:9.3f} {l['lm_loss']:8.4f}")


if __name__ == "__main__":
    main()
