"""Sudoku build speed and peak memory: ours against sapientinc/HRM's builder on one CSV, and
the generator's rate per size and rating band.

    python benchmarks/bench_sudoku_build.py --csv /tmp/sudoku-csv --make-csv \\
        --reference /tmp/hrm-ref --reference-python /tmp/refvenv/bin/python --repeat 2
    python benchmarks/bench_sudoku_build.py --generation
    python benchmarks/bench_sudoku_build.py          # CSV made in /tmp if missing, ours only, then --generation

``--make-csv`` writes train.csv / test.csv in the public sudoku-extreme layout with the public
row counts (3,831,994 / 422,786; ``--train-rows``/``--test-rows`` to change): generated puzzles
with unique solutions, multiplied by random Sudoku symmetries. The reference runs from a temp
folder, a copy of its ``dataset/build_sudoku_dataset.py`` and ``common.py`` with the hub download
replaced by the local path (its own dependencies: numpy, pydantic, argdantic, tqdm, in the
interpreter given by ``--reference-python``). Both sides run as subprocesses, alternating; time
is wall clock, memory the peak RSS of the process (``wait4``). Nothing of the reference is kept.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builders import sudoku_solver as ss  # noqa: E402


def make_csv(out: Path, train_rows: int, test_rows: int, base: int, seed: int) -> None:
    """Public-layout CSVs from ``base`` generated puzzles and random symmetric copies of them."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    gen = [ss.generate_one(rng, 9) for _ in range(base)]
    print(f"generated {base} base puzzles in {time.perf_counter() - t:.1f} s ({ss.backend()})", flush=True)
    q0 = np.stack([g[0] for g in gen]).astype(np.uint8)
    a0 = np.stack([g[1] for g in gen]).astype(np.uint8)
    r0 = np.array([g[2] for g in gen])
    for name, rows in (("train", train_rows), ("test", test_rows)):
        with open(out / f"{name}.csv", "wb") as f:
            f.write(b"source,question,answer,rating\n")
            for a in range(0, rows, 200_000):
                b = min(rows, a + 200_000)
                pick = rng.integers(0, base, b - a)
                cm, dm = ss.random_symmetries(rng, b - a, 9)
                q = ss.apply_symmetries(q0[pick], cm, dm)
                s = ss.apply_symmetries(a0[pick], cm, dm)
                qc = np.where(q == 0, ord("."), q + ord("0")).astype(np.uint8)
                sc = (s + ord("0")).astype(np.uint8)
                rating = np.char.encode(r0[pick].astype(str)).astype(object)
                src = np.array([b"synthetic,"] * (b - a), object)
                lines = src + np.array([r.tobytes() for r in qc], object) + b"," + \
                    np.array([r.tobytes() for r in sc], object) + b"," + rating + b"\n"
                f.write(b"".join(lines.tolist()))
        print(f"wrote {out / (name + '.csv')}: {rows} rows", flush=True)


def reference_copy(checkout: Path, tmp: Path) -> Path:
    """The reference builder with hf_hub_download(...) replaced by the local file path."""
    src = (checkout / "dataset" / "build_sudoku_dataset.py").read_text()
    src = src.replace("from huggingface_hub import hf_hub_download\n", "")
    call = 'hf_hub_download(config.source_repo, f"{set_name}.csv", repo_type="dataset")'
    if call not in src:
        raise SystemExit("the reference's hub download line was not found; update reference_copy()")
    src = src.replace(call, 'os.path.join(config.source_repo, f"{set_name}.csv")')
    (tmp / "build_sudoku_dataset.py").write_text(src)
    shutil.copy(checkout / "dataset" / "common.py", tmp / "common.py")
    return tmp / "build_sudoku_dataset.py"


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one subprocess."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env={**os.environ, **(env or {})})
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{err[-2000:]}")
    return dt, ru.ru_maxrss / 1024


def _has_numba() -> bool:
    import importlib.util
    return importlib.util.find_spec("numba") is not None and os.environ.get("HRM_SUDOKU_NO_NUMBA", "") in ("", "0")


def du(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def bench_build(args) -> None:
    csv_dir = Path(args.csv)
    work = Path(tempfile.mkdtemp(prefix="bench-sudoku-"))
    try:
        ours_cmd = [sys.executable, "-m", "hrm_data.cli", "build", "sudoku", "--source", str(csv_dir),
                    "--subsample-size", str(args.subsample_size), "--num-aug", str(args.num_aug),
                    "--out", str(work / "ours"), "--force", "--quiet"]
        ref_cmd = None
        if args.reference:
            refdir = work / "ref-code"
            refdir.mkdir()
            script = reference_copy(Path(args.reference), refdir)
            ref_cmd = [args.reference_python, str(script), "--source-repo", str(csv_dir.resolve()),
                       "--output-dir", str(work / "ref"), "--subsample-size", str(args.subsample_size),
                       "--num-aug", str(args.num_aug)]
        ours, ref, plain = [], [], []
        for i in range(args.repeat):
            print(f"load before run {i + 1}: {os.getloadavg()[0]:.2f} (1-min average, {os.cpu_count()} cores)", flush=True)
            ours.append(run(ours_cmd))
            print(f"  ours:      {ours[-1][0]:7.2f} s  peak RSS {ours[-1][1]:7.0f} MB  (solver backend: "
                  f"{'numba' if _has_numba() else 'python'})", flush=True)
            if args.without_numba:
                plain.append(run(ours_cmd, env={"HRM_SUDOKU_NO_NUMBA": "1"}))
                print(f"  ours, no numba: {plain[-1][0]:7.2f} s  peak RSS {plain[-1][1]:7.0f} MB", flush=True)
            if ref_cmd:
                shutil.rmtree(work / "ref", ignore_errors=True)
                ref.append(run(ref_cmd, cwd=work / "ref-code"))
                print(f"  reference: {ref[-1][0]:7.2f} s  peak RSS {ref[-1][1]:7.0f} MB", flush=True)
        t_ours, m_ours = np.median([o[0] for o in ours]), max(o[1] for o in ours)
        print(f"ours: median {t_ours:.2f} s, peak RSS {m_ours:.0f} MB, {du(work / 'ours'):.0f} MB on disk")
        if plain:
            print(f"ours without numba: median {np.median([p[0] for p in plain]):.2f} s, "
                  f"peak RSS {max(p[1] for p in plain):.0f} MB")
        if ref:
            t_ref, m_ref = np.median([r[0] for r in ref]), max(r[1] for r in ref)
            print(f"reference: median {t_ref:.2f} s, peak RSS {m_ref:.0f} MB, {du(work / 'ref'):.0f} MB on disk")
            print(f"speed-up {t_ref / t_ours:.1f}x, memory {m_ref / m_ours:.1f}x less")
            if plain:
                print(f"speed-up without numba {t_ref / np.median([p[0] for p in plain]):.1f}x")
            same = all(np.load(work / "ours" / s / f"all__{k}.npy").shape == np.load(work / "ref" / s / f"all__{k}.npy").shape
                       for s in ("train", "test") for k in ("inputs", "puzzle_indices", "group_indices"))
            print(f"same array shapes as the reference: {same}")
        print(f"load after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_generation(args) -> None:
    """Puzzles/s of generate_one per size, and the share of draws per rating band."""
    print(f"solver backend: {ss.backend()}; load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for n, draws in ((4, 2000), (6, 2000), (9, args.draws)):
        rng = np.random.default_rng(0)
        ss.generate_one(rng, n)   # compile
        t = time.perf_counter()
        ratings = np.array([ss.generate_one(rng, n)[2] for _ in range(draws)])
        dt = time.perf_counter() - t
        rate = draws / dt
        bands = [(0, 0), (1, 4), (5, 19), (20, 99), (100, None)]
        parts = []
        for lo, hi in bands:
            share = float(((ratings >= lo) & ((ratings <= hi) if hi is not None else True)).mean())
            at_least = float((ratings >= lo).mean())
            name = f"{lo}" if hi == lo else (f"{lo}-{hi}" if hi is not None else f">={lo}")
            parts.append(f"{name}: {share:.1%} (>= {lo}: {rate * at_least:.1f}/s)")
        print(f"{n}x{n}: {rate:.1f} puzzles/s over {draws} draws; rating max {ratings.max()}; " + "; ".join(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--csv", help="folder with train.csv and test.csv (made there when missing; default "
                    "/tmp/hrm-bench-sudoku-csv)")
    ap.add_argument("--make-csv", action="store_true", help="write the CSVs into --csv first")
    ap.add_argument("--train-rows", type=int, default=3_831_994)
    ap.add_argument("--test-rows", type=int, default=422_786)
    ap.add_argument("--base", type=int, default=5000, help="generated puzzles the CSV rows are copies of")
    ap.add_argument("--reference", help="a sapientinc/HRM checkout (its dataset/ folder is copied to a temp folder)")
    ap.add_argument("--reference-python", default=sys.executable, help="interpreter with the reference's dependencies")
    ap.add_argument("--subsample-size", type=int, default=1000)
    ap.add_argument("--num-aug", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--without-numba", action="store_true", help="also time ours with HRM_SUDOKU_NO_NUMBA=1")
    ap.add_argument("--generation", action="store_true", help="measure the generator instead")
    ap.add_argument("--draws", type=int, default=2000, help="--generation: 9x9 puzzles to draw")
    args = ap.parse_args()
    if args.generation:
        bench_generation(args)
        return
    default = not args.csv
    args.csv = args.csv or "/tmp/hrm-bench-sudoku-csv"
    if args.make_csv or not (Path(args.csv) / "train.csv").is_file():
        make_csv(Path(args.csv), args.train_rows, args.test_rows, args.base, seed=0)
    bench_build(args)
    if default:   # `make bench`: the generator too
        bench_generation(args)


if __name__ == "__main__":
    main()
