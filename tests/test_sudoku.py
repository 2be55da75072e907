"""Sudoku builder: CSV reading as HRM's builder reads it, generator, rating, symmetries, keys,
deep check and score."""
from __future__ import annotations

import csv
import itertools
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from hrm_builders import sudoku as S
from hrm_builders import sudoku_solver as ss
from hrm_data.builder import build
from hrm_data.format import Dataset, DatasetWriter, Group, GroupBatch, Puzzle

ROOT = Path(__file__).resolve().parents[1]
# a valid 9 x 9 solution (the pattern grid), made irregular by a few symmetries in the tests
PATTERN9 = np.array([(3 * (r % 3) + r // 3 + c) % 9 + 1 for r in range(9) for c in range(9)], np.uint8)


def naive_count(grid: np.ndarray, n: int, limit: int = 3) -> int:
    """Plain backtracking, independent of the bitmask solver: solutions up to ``limit``."""
    bh, bw = ss.BOXES[n]
    g = [int(v) for v in grid]

    def ok(i: int, v: int) -> bool:
        r, c = divmod(i, n)
        br, bc = r - r % bh, c - c % bw
        return all(g[r * n + k] != v and g[k * n + c] != v for k in range(n)) and \
            all(g[(br + a) * n + bc + b] != v for a in range(bh) for b in range(bw))

    def rec() -> int:
        try:
            i = g.index(0)
        except ValueError:
            return 1
        total = 0
        for v in range(1, n + 1):
            if ok(i, v):
                g[i] = v
                total += rec()
                g[i] = 0
                if total >= limit:
                    break
        return total

    return rec()


def solved_grid(n: int, seed: int = 0) -> np.ndarray:
    if n == 9:
        cm, dm = ss.random_symmetries(np.random.default_rng(seed), 1, 9)
        return ss.apply_symmetries(PATTERN9[None], cm, dm)[0]
    return ss.generate_one(np.random.default_rng(seed), n)[1].astype(np.uint8)


def write_csv(path: Path, rows: list[tuple], header: str = "source,question,answer,rating") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def csv_rows(count: int, seed: int) -> list[tuple]:
    """Sudoku-extreme-layout rows: symmetric copies of PATTERN9 with random blanks."""
    rng = np.random.default_rng(seed)
    cm, dm = ss.random_symmetries(rng, count, 9)
    sols = ss.apply_symmetries(np.repeat(PATTERN9[None], count, 0), cm, dm)
    rows = []
    for i, s in enumerate(sols):
        q = np.where(rng.random(81) < 0.6, 0, s)
        qs = "".join("." if v == 0 and rng.random() < 0.7 else str(v) for v in q)
        rows.append((f"set{i % 3}", qs, "".join(map(str, s)), int(rng.integers(0, 40))))
    return rows


def hrm_reference_read(path: Path, min_difficulty=None):
    """What sapientinc/HRM's build_sudoku_dataset.py does with a CSV (no subsample, no aug)."""
    inputs, labels = [], []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for source, q, a, rating in reader:
            if min_difficulty is None or int(rating) >= min_difficulty:
                inputs.append(np.frombuffer(q.replace(".", "0").encode(), np.uint8) - ord("0"))
                labels.append(np.frombuffer(a.encode(), np.uint8) - ord("0"))
    return np.stack(inputs) + 1, np.stack(labels) + 1


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sudoku-csv")
    write_csv(d / "train.csv", csv_rows(60, 1))
    write_csv(d / "test.csv", csv_rows(15, 2))
    return d


def arrays(path: Path, split: str):
    sp = Dataset(path).split(split)
    a = sp.set("all")
    return (np.asarray(a.inputs), np.asarray(a.labels), np.asarray(a.puzzle_identifiers),
            np.asarray(a.puzzle_indices), np.asarray(a.group_indices))


# ----------------------------------------------------------------------------- symmetries

def test_every_4x4_symmetry_keeps_a_solved_grid_valid_and_consistent_with_its_puzzle():
    n = 4
    rng = np.random.default_rng(3)
    p, s, _ = ss.generate_one(rng, n)
    rows = ss.line_permutations(2, 2)
    total = len(rows) * len(rows) * 2 * 24
    # the random draw covers the whole group: enough draws see every (rows, cols, transpose, digits)
    cm, dm = ss.random_symmetries(rng, 40_000, n)
    assert len({c.tobytes() + d.tobytes() for c, d in zip(cm, dm)}) == total
    grids = ss.apply_symmetries(np.repeat(s[None].astype(np.uint8), len(cm), 0), cm, dm)
    puzzles = ss.apply_symmetries(np.repeat(p[None].astype(np.uint8), len(cm), 0), cm, dm)
    assert ss.valid_solutions(grids, n).all()
    assert ((puzzles == 0) | (puzzles == grids)).all()
    assert ((puzzles > 0).sum(1) == (p > 0).sum()).all()


@pytest.mark.parametrize("n", [6, 9])
def test_random_symmetries_keep_grids_valid_and_puzzles_consistent(n):
    rng = np.random.default_rng(n)
    s = solved_grid(n)
    p = np.where(rng.random(n * n) < 0.5, 0, s).astype(np.uint8)
    cm, dm = ss.random_symmetries(rng, 3000, n)
    grids = ss.apply_symmetries(np.repeat(s[None], 3000, 0), cm, dm)
    puzzles = ss.apply_symmetries(np.repeat(p[None], 3000, 0), cm, dm)
    assert ss.valid_solutions(grids, n).all()
    assert ((puzzles == 0) | (puzzles == grids)).all()
    assert len({g.tobytes() for g in grids}) > 2900            # copies really differ
    if n == 6:   # 2 x 3 boxes are not square: no transpose, rows move only within bands of 2
        assert not (cm.reshape(-1, 6, 6)[:, 0, :] // 6 != cm.reshape(-1, 6, 6)[:, 0, :1] // 6).any()


def test_symmetries_include_transpose_band_and_digit_moves():
    cm, dm = ss.random_symmetries(np.random.default_rng(0), 2000, 9)
    g = cm.reshape(-1, 9, 9)
    transposed = (g[:, 0, 1] - g[:, 0, 0]) % 9 == 0            # moving along a row steps rows in the source
    assert 0.4 < transposed.mean() < 0.6
    assert len({tuple(r) for r in dm}) > 1900 and (dm[:, 0] == 0).all()
    assert len({tuple(sorted(set(r // 27))) for r in g[:, :, 0].reshape(-1, 9)}) >= 1


def test_augment_groups_first_copy_unchanged_and_others_valid():
    s = solved_grid(9, 1)
    p = np.where(np.arange(81) % 3 == 0, s, 0).astype(np.uint8)
    q, a = np.stack([p, p]) + 1, np.stack([s, s]) + 1
    xq, xa, aug = S.augment_groups(q, a, 5, np.random.default_rng(0), 9)
    assert xq.shape == (12, 81) and aug.tolist() == [0, 1, 2, 3, 4, 5] * 2
    assert (xq[0] == q[0]).all() and (xa[6] == a[1]).all()
    assert ss.valid_solutions(xa - 1, 9).all()
    assert ((xq == 1) | (xq == xa)).all()
    assert len({r.tobytes() for r in xa}) == 11                 # base equal twice, copies distinct


def test_apply_numpy_path_equals_numba_path_when_installed():
    code = ("import numpy as np\nfrom hrm_builders import sudoku_solver as ss\nss.backend()\n"
            "rng=np.random.default_rng(5)\ncm,dm=ss.random_symmetries(rng,500,9)\n"
            "g=rng.integers(0,10,(7,81)).astype(np.uint8)\nsrc=rng.integers(0,7,500)\n"
            "out=ss.apply_symmetries(g,cm,dm,1,source=src)\n"
            "ps=[ss.generate_one(np.random.default_rng(i),n) for n in (4,6) for i in range(3)]\n"
            "import hashlib\nh=hashlib.sha1(out.tobytes()+b''.join(p.tobytes()+s.tobytes()+bytes([r]) for p,s,r in ps))\n"
            "print(ss.backend(), h.hexdigest())")
    outs = {}
    for env in ({"HRM_SUDOKU_NO_NUMBA": "1"}, {}):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env},
                           cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stderr
        backend, digest = r.stdout.split()
        outs[backend] = digest
    assert "python" in outs
    assert len(set(outs.values())) == 1, outs


# ----------------------------------------------------------------------------- solver and generator

@pytest.mark.parametrize("n,count", [(4, 25), (6, 6)])
def test_generated_puzzles_have_exactly_one_solution_and_are_minimal(n, count):
    rng = np.random.default_rng(11)
    for _ in range(count):
        p, s, rating = ss.generate_one(rng, n)
        assert ss.valid_solutions(s, n).all() and ((p == 0) | (p == s)).all()
        assert naive_count(p, n) == 1
        if n == 4:   # minimal: every clue is needed
            for i in np.flatnonzero(p):
                q = p.copy()
                q[i] = 0
                assert naive_count(q, n, limit=2) >= 2


def test_9x9_generation_unique_and_solver_agrees():
    rng = np.random.default_rng(2)
    p, s, rating = ss.generate_one(rng, 9)
    counts, deads, sol = ss.solve(p, 9)
    assert counts[0] == 1 and deads[0] == rating and (sol[0] == s).all()
    assert 17 <= (p > 0).sum() <= 40


def test_solver_counts_multiple_and_no_solutions():
    s = solved_grid(9, 4).astype(np.int64)
    many = np.where(np.arange(81) < 9, s, 0)                  # one row given: many solutions
    counts, _, sol = ss.solve(many, 9)
    assert counts[0] == 2 and ss.valid_solutions(sol, 9).all() and (sol[0, :9] == s[:9]).all()
    bad = np.zeros(81, np.int64)
    bad[0] = bad[1] = 5                                       # the same digit twice in a row
    counts, _, sol = ss.solve(bad, 9)
    assert counts[0] == 0 and (sol[0] == 0).all()
    assert naive_count(np.where(np.arange(16) < 4, solved_grid(4), 0), 4) >= 2


def test_min_rating_filter_keeps_only_hard_enough_puzzles():
    _, _, r0, _ = S.generate_split(3, "train", 1, 9, 0, set(), Counter())
    stats = Counter()
    q, s, r, keys = S.generate_split(3, "train", 1, 9, int(r0[0]) + 1, set(), stats)
    assert r[0] > r0[0] and stats["redrawn_rating"] >= 1 and stats["draws"] == 1 + stats["redrawn_rating"]
    counts, deads, _ = ss.solve(q, 9)
    assert (counts == 1).all() and (deads == r).all()


# ----------------------------------------------------------------------------- symmetry keys and the split

@pytest.mark.parametrize("n", [4, 6, 9])
def test_symmetry_key_is_invariant_and_separates(n):
    rng = np.random.default_rng(n)
    s = solved_grid(n, 2)
    p = np.where(rng.random(n * n) < 0.55, 0, s).astype(np.uint8)
    cm, dm = ss.random_symmetries(rng, 200, n)
    copies = ss.apply_symmetries(np.repeat(p[None], 200, 0), cm, dm)
    assert len(set(ss.symmetry_keys(copies, n))) == 1
    others = []
    for i in range(30):   # puzzles that differ in one clue are (almost always) inequivalent
        q = p.copy()
        j = rng.integers(0, n * n)
        q[j] = 0 if q[j] else s[j]
        others.append(q)
    keys = ss.symmetry_keys(np.stack(others), n)
    assert ss.symmetry_keys(p[None], n)[0] not in keys or n == 4


def _all_4x4_images(p: np.ndarray) -> set[bytes]:
    rows = ss.line_permutations(2, 2)
    out = set()
    for r in rows:
        for c in rows:
            for t in (False, True):
                g = p.reshape(4, 4)[np.ix_(r, c)]
                g = g.T if t else g
                for perm in itertools.permutations(range(1, 5)):
                    lut = np.array((0,) + perm)
                    out.add(lut[g].astype(np.uint8).tobytes())
    return out


def test_generated_test_puzzles_are_inequivalent_to_train(tmp_path):
    out = build(S.Sudoku(), tmp_path / "g4", {"generate": True, "size": 4, "count": 40, "test_count": 6,
                                               "num_aug": 2, "seed": 1}, progress=False)
    xtr = arrays(out, "train")[0] - 1
    xte = arrays(out, "test")[0] - 1
    train_keys = set(ss.symmetry_keys(xtr, 4))
    test_keys = ss.symmetry_keys(xte, 4)
    assert not train_keys & set(test_keys) and len(set(test_keys)) == len(test_keys)
    # exhaustive, independent of the key: no symmetry maps a test puzzle onto a train puzzle
    train = {r.astype(np.uint8).tobytes() for r in xtr}
    for p in xte:
        assert not _all_4x4_images(p) & train
    table = Dataset(out).split("test").side_table()
    assert set(table["group_key"]) == set(test_keys)


# ----------------------------------------------------------------------------- CSV

def test_csv_build_matches_hrm_reading(csv_dir, tmp_path):
    out = build(S.Sudoku(), tmp_path / "c", {"source": str(csv_dir)}, progress=False)
    for split in ("train", "test"):
        x, y, pid, pidx, gidx = arrays(out, split)
        rx, ry = hrm_reference_read(csv_dir / f"{split}.csv")
        assert (x == rx).all() and (y == ry).all()
        assert x.dtype == np.uint8
        assert (pid == 0).all() and (pidx == np.arange(len(x) + 1)).all() and (gidx == np.arange(len(x) + 1)).all()
    meta = Dataset(out).split("train").metadata
    assert (meta.vocab_size, meta.seq_len, meta.num_puzzle_identifiers, meta.pad_id, meta.ignore_label_id) == (11, 81, 1, 0, 0)
    assert Dataset(out).identifiers == ["<blank>"]


def test_csv_min_difficulty_as_hrm(csv_dir, tmp_path):
    out = build(S.Sudoku(), tmp_path / "c", {"source": str(csv_dir), "min_difficulty": 20}, progress=False)
    for split in ("train", "test"):
        rx, _ = hrm_reference_read(csv_dir / f"{split}.csv", min_difficulty=20)
        assert (arrays(out, split)[0] == rx).all()
    r = Dataset(out).split("test").side_table()["rating"]
    assert (r >= 20).all()


def test_csv_subsample_and_augmentation(csv_dir, tmp_path):
    out = build(S.Sudoku(), tmp_path / "c", {"source": str(csv_dir), "subsample_size": 10, "num_aug": 3, "seed": 4},
                progress=False)
    x, y, pid, pidx, gidx = arrays(out, "train")
    assert x.shape == (40, 81) and (gidx == np.arange(0, 41, 4)).all() and (pidx == np.arange(41)).all()
    rx, ry = hrm_reference_read(csv_dir / "train.csv")
    originals = x[::4]
    idx = [int(np.flatnonzero((rx == o).all(1))[0]) for o in originals]
    assert len(set(idx)) == 10 and (ry[idx] == y[::4]).all()
    assert ss.valid_solutions(y - 1, 9).all() and ((x == 1) | (x == y)).all()
    table = Dataset(out).split("train").side_table()
    assert (table["csv_line"].to_numpy()[::4] == np.array(idx) + 2).all()
    tx = arrays(out, "test")[0]
    assert len(tx) == 15                                   # test: never subsampled or augmented


def test_quoted_csv_reads_like_the_plain_one(csv_dir, tmp_path):
    rows = csv_rows(15, 2)
    d = tmp_path / "q"
    write_csv(d / "test.csv", [(f'"{r[0]}"', f'"{r[1]}"', r[2], r[3]) for r in rows])
    write_csv(d / "train.csv", csv_rows(5, 9))
    q, a, r, idx = S.read_csv(d / "test.csv", 9)
    q2, a2, r2, _ = S.read_csv(csv_dir / "test.csv", 9)
    assert (q == q2).all() and (a == a2).all() and (r == r2).all()


@pytest.mark.parametrize("bad,message", [
    (("s", "1" * 80, "1" * 81, 3), "question has 80 characters, expected 81"),
    (("s", "." * 81, "12345678" + "x" + "1" * 72, 3), "answer character 9 is 'x'"),
    (("s", "." * 40 + "?" + "." * 40, "1" * 81, 3), "question character 41 is '?'"),
    (("s", "." * 81, "1" * 81), "3 columns, expected 4"),
    (("s", "." * 81, "1" * 81, 3, "extra"), "5 columns, expected 4"),
    (("s", "." * 81, "1" * 81, "hard"), "rating 'hard' is not an integer"),
    (("s", "." * 81, "0" * 81, 3), "answer character 1 is '0'"),
])
@pytest.mark.parametrize("split,options", [("test", {}), ("train", {"subsample_size": 4})])
def test_malformed_csv_row_names_file_and_line(tmp_path, bad, message, split, options):
    rows = csv_rows(6, 3)
    rows.insert(3, bad)
    d = tmp_path / "bad"
    write_csv(d / f"{split}.csv", rows)
    write_csv(d / ("train.csv" if split == "test" else "test.csv"), csv_rows(3, 4))
    opts = {"source": str(d), **options}
    if split == "train":   # the subsample only reads the rows it chose: choose them all
        opts["subsample_size"] = 7
    with pytest.raises(S.CSVError, match=rf"{split}\.csv:5: .*{message}"):
        build(S.Sudoku(), tmp_path / "out", opts, progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_malformed_csv_is_one_line_exit_2(tmp_path):
    d = tmp_path / "bad"
    rows = csv_rows(4, 3)
    write_csv(d / "train.csv", rows)
    (d / "test.csv").write_text("source,question,answer,rating\n" + ",".join(map(str, rows[0])) + "\n\n")
    r = subprocess.run([sys.executable, "-m", "hrm_data.cli", "build", "sudoku", "--source", str(d), "-o",
                        str(tmp_path / "o"), "-q"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert "test.csv:3: an empty line" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "hrm_data.cli", "build", "sudoku", "-o", str(tmp_path / "o"), "-q"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "exactly one of --source" in r.stderr


# ----------------------------------------------------------------------------- determinism, check, score

def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(csv_dir, tmp_path):
    g = {"generate": True, "size": 6, "count": 8, "test_count": 3, "num_aug": 3, "seed": 7}
    c = {"source": str(csv_dir), "subsample_size": 20, "num_aug": 5, "seed": 7}
    for name, opts in (("g", g), ("c", c)):
        a = _files(build(S.Sudoku(), tmp_path / f"{name}1", opts, progress=False))
        b = _files(build(S.Sudoku(), tmp_path / f"{name}2", opts, progress=False))
        assert a == b
        d = _files(build(S.Sudoku(), tmp_path / f"{name}3", {**opts, "seed": 8}, progress=False))
        assert d["train/all__inputs.npy"] != a["train/all__inputs.npy"]


def test_group_batch_writes_the_same_bytes_as_groups(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 11, (10, 81)).astype(np.uint8)
    y = rng.integers(0, 11, (10, 81)).astype(np.uint8)
    sizes = [3, 1, 4, 2]
    with DatasetWriter(tmp_path / "a", vocab_size=11, seq_len=81) as w:
        with w.split("train") as sw:
            k = 0
            for s in sizes:
                sw.add_group(Group([Puzzle("<blank>", x[k + j:k + j + 1], y[k + j:k + j + 1]) for j in range(s)]))
                k += s
    with DatasetWriter(tmp_path / "b", vocab_size=11, seq_len=81) as w:
        with w.split("train") as sw:
            sw.add_batch(GroupBatch("<blank>", x[:4], y[:4], np.array(sizes[:2])))
            sw.add_batch(GroupBatch("<blank>", x[4:], y[4:], np.array(sizes[2:])))
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    with DatasetWriter(tmp_path / "c", vocab_size=11, seq_len=81) as w:
        with w.split("train") as sw:
            with pytest.raises(ValueError, match="sum to the 10 rows"):
                sw.add_batch(GroupBatch("<blank>", x, y, np.array([3, 3])))


@pytest.fixture(scope="module")
def small_ds(tmp_path_factory) -> Path:
    return build(S.Sudoku(), tmp_path_factory.mktemp("s") / "g6",
                 {"generate": True, "size": 6, "count": 12, "test_count": 4, "num_aug": 2, "seed": 3}, progress=False)


def test_deep_check_clean_and_finds_broken_labels(small_ds, tmp_path):
    import shutil
    assert S.Sudoku().check(Dataset(small_ds), unique=True) == []
    broken = tmp_path / "broken"
    shutil.copytree(small_ds, broken)
    y = np.load(broken / "train" / "all__labels.npy")
    x = np.load(broken / "train" / "all__inputs.npy")
    y[0, [0, 1]] = y[0, [1, 0]]                              # swap two cells: not a valid grid
    clue = int(np.flatnonzero(x[1] > 1)[0])
    perm = np.array([0, 1, 3, 2, 5, 4, 7, 6], np.uint8)      # relabel: valid grid, clues changed
    y[1] = perm[y[1]]
    np.save(broken / "train" / "all__labels.npy", y)
    x[2, 0] = 0                                              # PAD in an input
    np.save(broken / "train" / "all__inputs.npy", x)
    codes = {(f.code, f.index) for f in S.Sudoku().check(Dataset(broken))}
    assert ("B202", 0) in codes and ("B203", 1) in codes and ("B201", 2) in codes
    assert x[1, clue] != y[1, clue]


def test_deep_check_uniqueness_on_request(tmp_path):
    s = solved_grid(9, 5)
    p = s.copy()
    p[:] = 0                                                  # the empty grid has many solutions
    p[0] = s[0]
    d = tmp_path / "amb"
    write_csv(d / "train.csv", [("x", "".join(map(str, p)).replace("0", "."), "".join(map(str, s)), 0)])
    write_csv(d / "test.csv", [("x", "".join(map(str, s)), "".join(map(str, s)), 0)])
    out = build(S.Sudoku(), tmp_path / "o", {"source": str(d)}, progress=False)
    assert S.Sudoku().check(Dataset(out)) == []
    found = S.Sudoku().check(Dataset(out), unique=True)
    assert [(f.code, f.split, f.index) for f in found] == [("B204", "train", 0)]


def test_validate_deep_cli_is_clean(small_ds):
    r = subprocess.run([sys.executable, "-m", "hrm_data.cli", "validate", str(small_ds), "--deep"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr


def test_score_counts_any_valid_solution(small_ds):
    x, y = arrays(small_ds, "test")[:2]
    b = S.Sudoku()
    assert b.score(small_ds, "test", y) == {"solved": 1.0, "exact": 1.0, "examples": len(y)}
    wrong = y.copy()
    wrong[0, 0] = 1                                           # a blank left in
    wrong[1] = np.where(x[1] > 1, x[1], 2)                    # keeps clues, invalid grid
    r = b.score_examples(small_ds, "test", wrong)
    assert r["solved"].tolist() == [False, False] + [True] * (len(y) - 2)
    assert r["keeps_clues"][1] and not r["valid_grid"][1]
    # a different valid solution of an ambiguous puzzle counts as solved, not exact
    n = 6
    s = y[0].astype(np.int64) - 1
    other = ss.apply_symmetries(s[None].astype(np.uint8), np.arange(36, dtype=np.int16)[None],
                                np.array([[0, 2, 1, 3, 4, 5, 6]], np.uint8))[0]
    puzzle = np.where((s == 3) | (s == 4), s, 0) + 1          # digits 1 and 2 left blank: both grids fit
    res = S.score_grids(puzzle[None], (s + 1)[None], (other.astype(np.int64) + 1)[None], n)
    assert res["solved"][0] and not res["exact"][0]


def test_info_draws_readably(small_ds):
    from hrm_data.render import describe_example
    text = describe_example(Dataset(small_ds), "test", 0)
    assert "grid 6x6" in text and "blank" in text
    grid = text.split("label:\n")[1].split("\n")[:6]
    assert all(len(row.split()) == 6 for row in grid)


@pytest.mark.parametrize("block", [1, 7, 64, 1 << 16])
def test_line_index_finds_every_line_start(tmp_path, monkeypatch, block):
    """The subsample's index counts newlines per block and re-reads blocks for the chosen lines:
    its offsets must be the line starts a plain split gives, for any block size and file end."""
    monkeypatch.setattr(S.LineIndex, "BLOCK", block)
    rng = np.random.default_rng(block)
    texts = [b"", b"\n", b"\n\n", b"a", b"a\n", b"h\r\nx,y\r\n", b"h\nrow1\nrow2"]
    texts += [rng.choice(np.frombuffer(b"ab,\n", np.uint8), int(m), p=[.4, .4, .1, .1]).tobytes()
              for m in rng.integers(1, 3000, 12)]
    for i, text in enumerate(texts):
        p = tmp_path / f"f{i}.csv"
        p.write_bytes(text)
        want = [0] + [j + 1 for j, c in enumerate(text) if c == 10 and j + 1 < len(text)] if text else []
        li = S.LineIndex(p)
        assert li.lines == len(want), text
        assert li.starts(np.arange(len(want) + 1)).tolist() == want + [len(text)], text
        assert S.count_rows(p) == max(0, len(want) - 1)


def test_line_index_of_a_file_changed_after_counting_is_one_line_error(tmp_path):
    p = tmp_path / "train.csv"
    p.write_bytes(b"h\n" + b"a\n" * 100)
    li = S.LineIndex(p)
    p.write_bytes(b"h\n" + b"abc" * 100)        # the counted newlines are gone
    with pytest.raises(S.CSVError, match="changed while it was read"):
        li.starts(np.array([5]))
