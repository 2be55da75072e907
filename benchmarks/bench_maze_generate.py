"""Maze generation rate: `hrm-data build maze` at several sizes and path floors.

    python benchmarks/bench_maze_generate.py                       # the table in docs/builders/maze.md
    python benchmarks/bench_maze_generate.py --case 30:110 --count 1000

Each case builds ``--count`` train + ``--count`` test mazes into a temp folder and prints wall and
CPU seconds, mazes per wall and per CPU second, the share of screened layouts that are hard enough, the share of mazes with several
shortest paths, and the machine load.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from hrm_builders.maze import Maze
from hrm_data.builder import build

CASES = ("30:110", "30:0", "10:0", "6:0", "6:0:unique")


def run(size: int, min_path: int, unique: bool, count: int, seed: int) -> dict:
    b = Maze()
    with tempfile.TemporaryDirectory(prefix="bench-maze-gen-") as tmp:
        w0, c0 = time.perf_counter(), time.process_time()
        build(b, Path(tmp) / "d", {"size": size, "min_path": min_path, "unique_path": unique, "count": count,
                                   "test_count": count, "seed": seed}, progress=False)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    r = b.report()
    return {"size": size, "min_path": min_path or size - 1, "unique_path": unique, "mazes": r["mazes"],
            "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "mazes_per_s": round(r["mazes"] / wall, 1),
            "mazes_per_cpu_s": round(r["mazes"] / cpu, 1), "hard_layout_rate": round(r["hard_layouts"] / r["layouts"], 4),
            "several_shortest_rate": r.get("several_shortest_rate"), "load": round(os.getloadavg()[0], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", help="SIZE:MIN_PATH[:unique] (repeatable); default: the doc's table")
    ap.add_argument("--count", type=int, default=1000, help="mazes per split")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    for case in a.case or CASES:
        parts = case.split(":")
        print(json.dumps(run(int(parts[0]), int(parts[1]), len(parts) > 2 and parts[2] == "unique", a.count, a.seed)),
              flush=True)


if __name__ == "__main__":
    main()
