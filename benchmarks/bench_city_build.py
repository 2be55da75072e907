"""Build rate of the city-logistics builder, streaming into the writer.

    python benchmarks/bench_city_build.py                       # 10,000 scenarios, 2 workers
    python benchmarks/bench_city_build.py --scenarios 100000    # the full-scale run (minutes)

Prints scenarios/s, examples/s, the redraw report and peak RSS of this process and of its
worker processes (resource.getrusage). The dataset goes to a temporary folder, removed after.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from hrm_data.builder import build
from hrm_builders.city_logistics import CityLogistics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=10_000, help="train scenarios (test gets a tenth)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--size", type=int, default=30)
    ap.add_argument("--label", default="route", choices=["route", "optimal-cells"])
    ap.add_argument("--num-aug", type=int, default=0)
    ap.add_argument("--keep", default=None, help="write the dataset here and keep it")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-city-"))
    out = Path(a.keep) if a.keep else tmp / "city"
    opts = dict(train_scenarios=a.scenarios, test_scenarios=max(1, a.scenarios // 10), size=a.size,
                workers=a.workers, label=a.label, num_aug=a.num_aug)
    b = CityLogistics()
    t0 = time.perf_counter()
    try:
        build(b, out, opts, progress=True, force=bool(a.keep))
        dt = time.perf_counter() - t0
        scen = opts["train_scenarios"] + opts["test_scenarios"]
        n_vehicles = 4
        examples = scen * n_vehicles * (1 + a.num_aug)
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 2**20
    finally:
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"city-logistics: {scen:,} scenarios ({examples:,} examples, {a.size}x{a.size}, label {a.label}, "
          f"workers {a.workers}) in {dt:.1f} s")
    print(f"  {scen / dt:,.0f} scenarios/s, {examples / dt:,.0f} examples/s, dataset {size_mb:,.0f} MiB")
    print(f"  peak RSS: main {self_rss:,.0f} MiB, largest worker {child_rss:,.0f} MiB")
    print(f"  report: {b.report()}")


if __name__ == "__main__":
    main()
