"""`hrm-data import` on a generated JSONL: records/s and peak memory against the file size.

    python benchmarks/bench_import.py [--records 200000] [--side 9]

Writes N records of random side x side grids (groups of 4 records, written interleaved so no
group is contiguous), runs the import command as a subprocess and prints its wall time and peak
resident memory (ru_maxrss of the child), with the machine load.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--side", type=int, default=9)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        rng = np.random.default_rng(0)
        n_groups = args.records // 4
        f = root / "records.jsonl"
        with open(f, "w") as out:
            for k in range(4):                         # group g's records are n_groups lines apart
                grids = rng.integers(0, 10, (n_groups, args.side, args.side))
                for g in range(n_groups):
                    x = grids[g].tolist()
                    out.write(json.dumps({"split": "test" if g % 10 == 0 else "train", "group": f"g{g}",
                                          "input": x, "output": x[::-1]}) + "\n")
        size = f.stat().st_size
        hd = str(Path(sys.executable).parent / "hrm-data")
        load0 = os.getloadavg()
        t = time.perf_counter()
        # a small launcher process: a child's ru_maxrss starts from its parent's size at fork, and
        # this process holds the generated grids
        launcher = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
                    "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        out = subprocess.run([sys.executable, "-S", "-c", launcher, hd, "import", str(f), "--out", str(root / "ds"),
                              "-q"], check=True, capture_output=True, text=True).stdout
        secs = time.perf_counter() - t
        rss = int(out.split()[-1]) / 1024
        print(f"{args.records:,} records of {args.side}x{args.side}, file {size / 1e6:.1f} MB: {secs:.1f} s "
              f"({args.records / secs:,.0f} records/s), peak RSS {rss:.0f} MB; load average before "
              f"{' '.join(f'{x:.2f}' for x in load0)}, after {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
              f"({os.cpu_count()} CPUs)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
