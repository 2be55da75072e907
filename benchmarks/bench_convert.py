"""Convert a 1,000,000 x 81 dataset between npy, Parquet and Zarr, and compare loader rates.

    python benchmarks/bench_convert.py [--rows 1000000] [--reference /tmp/hrm-ref] [--batches 200]

Prints, with the machine load: seconds (whole `hrm-data convert` command) and peak resident memory
for npy -> parquet -> npy and npy -> zarr -> npy, sizes on
disk of the three formats, `hrm-data stats` seconds, and training batches/s (global batch 768)
from npy, from Zarr (warm chunk cache, and with a cache too small to hold the arrays) and from
the reference loader (sapientinc/HRM's puzzle_dataset.py from ``--reference``, an exported
checkout; it needs pydantic). Loaders are timed alternately, three rounds each, best kept.

The data is sudoku-like (HRM's layout: uint8, vocab 11, 1 example per puzzle, 1 puzzle per
group): labels are random digits 2..10, inputs the labels with 55 % of cells blanked to 1.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hrm_data.format import fingerprint, write_arrays  # noqa: E402


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" ({os.cpu_count()} CPUs)"


def du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def make(path: Path, rows: int) -> Path:
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", rows), ("test", max(1, rows // 100))):
        y = rng.integers(2, 11, (n, 81), dtype=np.uint8)
        x = np.where(rng.random((n, 81)) < 0.55, np.uint8(1), y)
        splits[split] = dict(inputs=x, labels=y, puzzle_identifiers=np.zeros(n, np.int32),
                             puzzle_indices=np.arange(n + 1, dtype=np.int32),
                             group_indices=np.arange(n + 1, dtype=np.int32))
    return write_arrays(path, splits, vocab_size=11, identifiers=["<blank>"])


def cli_with_peak_rss(cmd: list[str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of a command, run under a small launcher: a child's ru_maxrss
    starts from its parent's size at fork, and this process holds the generated arrays."""
    launcher = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-S", "-c", launcher, *cmd], check=True, capture_output=True, text=True)
    return time.perf_counter() - t, int(out.stdout.split()[-1]) / 1024


def our_rate(path: Path, batches: int, cache_mb: int | None = None) -> float:
    from hrm_data.format import Dataset
    from hrm_data.sampler import GroupSampler
    from hrm_model.data import TrainLoader
    if cache_mb is not None:
        import hrm_data.storage_zarr as sz
        sz.DEFAULT_CACHE_MB, old = cache_mb, sz.DEFAULT_CACHE_MB
    sp = Dataset(path).train
    pi, gi = sp.index_arrays("all")
    sampler = GroupSampler({"all": (pi, gi)}, global_batch_size=768, epochs_per_iter=1, seed=0)
    it = iter(TrainLoader(sp, sampler, 0, threaded=False))
    next(it)  # open the arrays (and, for Zarr, fill the chunk cache once)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches / (time.perf_counter() - t)
    if cache_mb is not None:
        sz.DEFAULT_CACHE_MB = old
    return rate


def reference_rate(ref: str, path: Path, batches: int) -> float:
    sys.path.insert(0, ref)
    from puzzle_dataset import PuzzleDataset, PuzzleDatasetConfig
    cfg = PuzzleDatasetConfig(seed=0, dataset_path=str(path), global_batch_size=768, test_set_mode=False,
                              epochs_per_iter=1, rank=0, num_replicas=1)
    it = iter(PuzzleDataset(cfg, "train"))
    next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--reference", default=None, help="exported sapientinc/HRM checkout (for its loader)")
    ap.add_argument("--tmp", default=None, help="where to write (default: a temp folder, removed afterwards)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(dir=args.tmp, prefix="bench-convert-"))
    try:
        print(f"rows {args.rows:,} x 81, {load()}")
        src = make(root / "npy", args.rows)
        fp = fingerprint(src)
        hd = str(Path(sys.executable).parent / "hrm-data")
        for name, a, b in (("npy -> parquet", src, root / "d.parquet"), ("parquet -> npy", root / "d.parquet", root / "npy2"),
                           ("npy -> zarr", src, root / "d.zarr"), ("zarr -> npy", root / "d.zarr", root / "npy3")):
            (secs, rss) = cli_with_peak_rss([hd, "convert", str(a), str(b), "-q"])
            print(f"{name:16s} {secs:7.2f} s  peak RSS {rss:5.0f} MB   {load()}")
        assert fingerprint(root / "npy2") == fp == fingerprint(root / "npy3"), "round trip changed the data"
        for name, p in (("npy", src), ("parquet", root / "d.parquet"), ("zarr", root / "d.zarr")):
            print(f"size {name:8s} {du(p) / 1e6:8.1f} MB")
        for p in (src, root / "d.zarr"):
            t = time.perf_counter()
            subprocess.run([hd, "stats", str(p), "-e", "10", "-i", "10"], check=True, capture_output=True)
            print(f"hrm-data stats {p.name}: {time.perf_counter() - t:.2f} s (whole command)   {load()}")
        rates: dict[str, list[float]] = {}
        for _ in range(3):
            rates.setdefault("npy", []).append(our_rate(src, args.batches))
            rates.setdefault("zarr (warm cache)", []).append(our_rate(root / "d.zarr", args.batches))
            rates.setdefault("zarr (16 MB cache)", []).append(our_rate(root / "d.zarr", max(5, args.batches // 20), 16))
            if args.reference:
                rates.setdefault("reference (npy)", []).append(reference_rate(args.reference, src, args.batches))
        for k, v in rates.items():
            print(f"loader {k:20s} {max(v):8.1f} batches/s of 768 (best of {len(v)}: "
                  f"{', '.join(f'{x:.1f}' for x in v)})")
        print(load())
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
