"""Benchmark `hrm_data.validate.validate` on a 1,000,000 x 81 sudoku-like dataset.

    python benchmarks/bench_validate.py [--examples 1000000] [--repeats 3] [--keep DIR]

Builds train (~90%) and test (~10%) with np.lib.format.open_memmap in a temp dir: vocab 11,
random tokens 1..10, one example per puzzle, groups of 1..8 puzzles, HRM's dtypes (uint8
tokens, int32 indices). Then times validate() (median of --repeats) and prints the figures.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def build(root: Path, n_examples: int, seq_len: int = 81, vocab: int = 11, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "identifiers.json").write_text(json.dumps(["<blank>"] + [f"p{i}" for i in range(1, 64)]))
    n_train = n_examples * 9 // 10
    for split, n in (("train", n_train), ("test", n_examples - n_train)):
        d = root / split
        d.mkdir()
        block = 1 << 16
        for f in ("inputs", "labels"):
            arr = np.lib.format.open_memmap(d / f"all__{f}.npy", mode="w+", dtype=np.uint8, shape=(n, seq_len))
            for lo in range(0, n, block):
                hi = min(n, lo + block)
                arr[lo:hi] = rng.integers(1, vocab, (hi - lo, seq_len), dtype=np.uint8)
            arr.flush()
            del arr
        P = n  # one example per puzzle
        sizes = rng.integers(1, 9, P // 4 + 8)
        ends = np.cumsum(sizes)
        ends = ends[ends < P]
        gi = np.concatenate([[0], ends, [P]]).astype(np.int32)
        np.save(d / "all__puzzle_indices.npy", np.arange(P + 1, dtype=np.int32))
        np.save(d / "all__puzzle_identifiers.npy", rng.integers(1, 64, P, dtype=np.int32))
        np.save(d / "all__group_indices.npy", gi)
        meta = dict(pad_id=0, ignore_label_id=0, blank_identifier_id=0, vocab_size=vocab, seq_len=seq_len,
                    num_puzzle_identifiers=64, total_groups=len(gi) - 1, mean_puzzle_examples=1.0, sets=["all"],
                    total_puzzles=P)
        (d / "dataset.json").write_text(json.dumps(meta))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", default=None, help="build here and keep it (default: a temp dir, removed)")
    args = ap.parse_args()

    from hrm_data.validate import validate

    tmp = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-validate-")) / "ds"
    try:
        t0 = time.perf_counter()
        build(tmp, args.examples)
        t_build = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            report = validate(tmp)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        print(f"dataset: {args.examples:,} x 81 uint8 (train {args.examples * 9 // 10:,}, test "
              f"{args.examples - args.examples * 9 // 10:,}), {report.stats['splits']['train']['groups']:,} train groups")
        print(f"build:    {t_build:.2f} s")
        print(f"validate: median {med:.2f} s of {args.repeats} ({', '.join(f'{t:.2f}' for t in times)})")
        print(f"rate:     {args.examples / med:,.0f} rows/s")
        print(f"verdict:  {'valid' if report.valid else 'INVALID'}, {len(report.errors)} errors, "
              f"{len(report.warnings)} warnings")
    finally:
        if not args.keep:
            shutil.rmtree(tmp.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
