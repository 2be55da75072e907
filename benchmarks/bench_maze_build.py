"""`hrm-data build maze --source` against sapientinc/HRM's dataset/build_maze_dataset.py on one CSV.

    git -C HRM_MIRROR archive HEAD | tar -x -C /tmp/hrm-ref     # the reference, outside this repo
    PYTHONPATH=DIR_WITH_PYDANTIC python benchmarks/bench_maze_build.py --reference /tmp/hrm-ref

Writes a public-layout CSV pair (``--rows`` generated 30 x 30 train mazes, ``--test-rows`` test), then
builds it alternately with the reference (its hub download replaced by the local files, argdantic
stubbed if absent; it needs pydantic, numpy, tqdm) and with this builder, each in a fresh process,
``--repeats`` times; prints the median wall time of the build call (after each side's module imports)
and of the whole process (interpreter start, imports, build), the process's peak RSS, and
whether both wrote the same inputs, labels and indices.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD_REF = r"""
import os, sys, time, types, resource
ref, src, out, aug = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
hub = types.ModuleType("huggingface_hub")
hub.hf_hub_download = lambda repo, filename, repo_type=None: os.path.join(repo, filename)
sys.modules["huggingface_hub"] = hub
try:
    import argdantic  # noqa: F401
except ImportError:
    stub = types.ModuleType("argdantic")
    class ArgParser:
        def command(self, *a, **k):
            return lambda f: f
    stub.ArgParser = ArgParser
    sys.modules["argdantic"] = stub
sys.path.insert(0, os.path.join(ref, "dataset"))
import build_maze_dataset as b
t = time.perf_counter()
cfg = b.DataProcessConfig(source_repo=src, output_dir=out, aug=aug)
b.convert_subset("train", cfg)
b.convert_subset("test", cfg)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

CHILD_OURS = r"""
import sys, time, resource
src, out, aug = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
from hrm_builders.maze import Maze
from hrm_data.builder import build
t = time.perf_counter()
build(Maze(), out, {"source": src, "aug": aug}, progress=False)
print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def write_csvs(root: Path, rows: int, test_rows: int, seed: int) -> None:
    from hrm_builders import maze as mz
    from hrm_builders.maze_solver import CHARSET
    root.mkdir(parents=True, exist_ok=True)
    for split, count, salt in (("train", rows, 0), ("test", test_rows, 1)):
        rng = np.random.default_rng([seed, salt])
        xs, ys, ls = [], [], []
        while sum(len(x) for x in xs) < count:
            g = mz.generate_batch(rng, 30, 29, limit=count)
            xs.append(g.inputs), ys.append(g.labels), ls.append(g.length)
        x, y, length = (np.concatenate(a)[:count] for a in (xs, ys, ls))
        table = np.frombuffer((" " + CHARSET).encode(), np.uint8)
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["source", "question", "answer", "rating"])
            for i in range(count):
                w.writerow([f"bench-{split}-{i}", table[x[i]].tobytes().decode(), table[y[i]].tobytes().decode(),
                            int(length[i])])


def same_arrays(a: Path, b: Path) -> bool:
    for split in ("train", "test"):
        for f in ("inputs", "labels", "puzzle_indices", "group_indices"):
            x, y = np.load(a / split / f"all__{f}.npy"), np.load(b / split / f"all__{f}.npy")
            if x.shape != y.shape or not np.array_equal(x, y):
                return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, help="a sapientinc/HRM checkout (exported outside this repo)")
    ap.add_argument("--rows", type=int, default=20000)
    ap.add_argument("--test-rows", type=int, default=1000)
    ap.add_argument("--aug", action="store_true", help="both builders add the 8 dihedral variants (train)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-maze-") as tmp:
        tmp = Path(tmp)
        src = tmp / "csv"
        write_csvs(src, a.rows, a.test_rows, a.seed)
        res: dict[str, list[tuple[float, int, float]]] = {"reference": [], "hrm-data": []}
        for r in range(a.repeats):
            for name in ("reference", "hrm-data"):
                out = tmp / f"{name}-{r}"
                cmd = ([sys.executable, "-c", CHILD_REF, a.reference, str(src), str(out), str(int(a.aug))]
                       if name == "reference" else
                       [sys.executable, "-c", CHILD_OURS, str(src), str(out), str(int(a.aug))])
                t0 = time.perf_counter()
                p = subprocess.run(cmd, capture_output=True, text=True)
                whole = time.perf_counter() - t0
                if p.returncode != 0:
                    sys.exit(f"{name} failed:\n{p.stderr[-2000:]}")
                sec, rss_kb = p.stdout.split()[-2:]
                res[name].append((float(sec), int(rss_kb), whole))
        same = same_arrays(tmp / "reference-0", tmp / "hrm-data-0")
    med = {k: (statistics.median(r[0] for r in v), max(r[1] for r in v) / 1024, statistics.median(r[2] for r in v))
           for k, v in res.items()}
    print(json.dumps({"rows": a.rows, "test_rows": a.test_rows, "aug": a.aug, "load": round(os.getloadavg()[0], 1),
                      "build_call_s": {k: round(v[0], 2) for k, v in med.items()},
                      "whole_process_s": {k: round(v[2], 2) for k, v in med.items()},
                      "peak_rss_mb": {k: round(v[1]) for k, v in med.items()},
                      "speedup_build_call": round(med["reference"][0] / med["hrm-data"][0], 2),
                      "speedup_whole_process": round(med["reference"][2] / med["hrm-data"][2], 2),
                      "same_inputs_labels_indices": same}, indent=1))


if __name__ == "__main__":
    main()
