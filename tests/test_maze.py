"""The maze builder: CSV reading as HRM reads it, the generator, labels, augmentation, check and score."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hrm_builders import maze as mz
from hrm_builders import maze_solver as ms
from hrm_data.augment import INVERSE, dihedral_flat
from hrm_data.builder import build
from hrm_data.cli import main as cli
from hrm_data.format import Dataset, fingerprint
from hrm_data.validate import validate

CH = {c: i + 1 for i, c in enumerate(ms.CHARSET)}


def text(tokens: np.ndarray) -> str:
    return "".join(ms.CHARSET[int(t) - 1] for t in np.asarray(tokens).reshape(-1))


def grid(rows: list[str]) -> np.ndarray:
    return np.array([[CH[c] for c in r] for r in rows], np.uint8)


def all_shortest(x: np.ndarray) -> tuple[int, set[frozenset]]:
    """Brute force: every simple S-G path by depth-first search; (shortest moves, cell sets of the
    shortest paths without S and G)."""
    H, W = x.shape
    s = tuple(np.argwhere(x == ms.START)[0])
    g = tuple(np.argwhere(x == ms.GOAL)[0])
    best, paths = [10 ** 9], []

    def dfs(cell, seen):
        if len(seen) - 1 > best[0]:
            return
        if cell == g:
            if len(seen) - 1 < best[0]:
                best[0], paths[:] = len(seen) - 1, []
            paths.append(frozenset(seen) - {s, g})
            return
        r, c = cell
        for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            n = (r + dr, c + dc)
            if 0 <= n[0] < H and 0 <= n[1] < W and x[n] != ms.WALL and n not in seen:
                seen.add(n)
                dfs(n, seen)
                seen.discard(n)

    dfs(s, {s})
    return best[0], set(paths)


def test_generated_labels_are_shortest_paths_by_brute_force():
    rng = np.random.default_rng(3)
    gen = mz.generate_batch(rng, 5, 5, batch=256, limit=40)
    assert gen.inputs.shape[0] >= 20
    for x, y, length, count in zip(gen.inputs, gen.labels, gen.length, gen.paths):
        x2 = x.reshape(5, 5)
        best, shortest = all_shortest(x2)
        assert length == best >= 5
        marked = frozenset(map(tuple, np.argwhere(y.reshape(5, 5) == ms.PATH)))
        assert marked in shortest
        assert count == len(shortest)
        assert np.array_equal(np.where(y == ms.PATH, ms.OPEN, y), x)   # only open cells get marked


def test_label_rule_is_the_documented_walk():
    # two shortest paths around a block; the walk prefers up, then down, left, right
    x = grid(["S  ",
              " # ",
              "  G"])
    dist = ms.distances((x != ms.WALL)[None], np.array([8]))
    on = ms.label_path(dist, np.array([0]))[0]
    # from S (0,0): up/left leave the grid, down (1,0) is one closer -> down first
    assert sorted(map(tuple, np.argwhere(on))) == [(1, 0), (2, 0), (2, 1)]
    assert ms.count_paths(dist, np.array([0]))[0] == 2


def test_packed_sweep_agrees_with_dense_bfs():
    rng = np.random.default_rng(0)
    for n in (4, 17, 64):
        wall, _, v = mz.random_layouts(rng, n, 64)
        open_ = ~wall
        res = ms.sweep(ms.pack_rows(open_), v, 7)
        dist = ms.distances(open_, v)
        assert np.array_equal(res["ecc"], dist.reshape(64, -1).max(1))
        assert np.array_equal(ms.unpack_rows(res["far"], n), dist >= 7)
        last = ms.unpack_rows(res["last"], n)
        assert np.array_equal(last, dist == res["ecc"][:, None, None])
        assert np.array_equal(ms.unpack_rows(ms.pack_rows(open_), n), open_)


DETOUR = ["S    #",      # two routes around a block: 7 moves on the left, 9 on the right
          " ### #",
          " ### #",
          " ### #",
          "   G #",
          "######"]
DETOUR_RIGHT = ["Soooo#",
                " ###o#",
                " ###o#",
                " ###o#",
                "   Go#",
                "######"]


def test_score_accepts_any_shortest_path_and_rejects_longer_or_broken_ones():
    x = grid(["S   ",
              " ## ",
              "   G"])
    cases = {  # prediction -> (valid, optimal)
        ("S   ", "o## ", "oooG"): (True, True),     # the label's path
        ("Sooo", " ##o", "   G"): (True, True),     # the other shortest path
        ("Soo ", " #oo", "   G"): (False, False),   # marks a wall cell
        ("S   ", "o## ", "oo G"): (False, False),   # a gap
        ("S   ", "o## ", "ooo "): (False, False),   # G erased
        ("Sooo", "o##o", "oooG"): (False, False),   # both paths: not one path
        ("S   ", " ## ", "   G"): (False, False),   # nothing marked
    }
    preds = np.stack([grid(list(rows)) for rows in cases])
    r = ms.grade(np.stack([x] * len(cases)), preds, (3, 4))
    assert list(zip(r["valid"].tolist(), r["optimal"].tolist())) == list(cases.values())
    assert (r["shortest"] == 5).all()
    assert r["length"].tolist() == [5, 5, -1, -1, -1, -1, -1]
    wiggle = grid(["Sooo ",      # a 6-move path that touches itself is not a simple path
                   "  oo ",
                   "    G"])
    r = ms.grade(grid(["S    ", "     ", "    G"])[None], wiggle[None], (3, 5))
    assert not r["valid"][0]
    x, right = grid(DETOUR), grid(DETOUR_RIGHT)
    r = ms.grade(x[None], right[None], (6, 6))
    assert r["valid"][0] and not r["optimal"][0]
    assert (r["length"][0], r["shortest"][0]) == (9, 7)


def _write_csv(path: Path, rows: list[list[str]], header=("source", "question", "answer", "rating")) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture(scope="module")
def csv_source(tmp_path_factory) -> tuple[Path, mz.Generated, mz.Generated]:
    root = tmp_path_factory.mktemp("maze_csv")
    tr = mz.generate_batch(np.random.default_rng(1), 6, 5, batch=64, limit=12)
    te = mz.generate_batch(np.random.default_rng(2), 6, 5, batch=64, limit=5)
    for name, g in (("train", tr), ("test", te)):
        _write_csv(root / f"{name}.csv", [[f"gen{i}", text(x), text(y), str(int(l))]
                                          for i, (x, y, l) in enumerate(zip(g.inputs, g.labels, g.length))])
    return root, tr, te


def test_csv_source_reads_as_hrm(tmp_path, csv_source):
    root, tr, te = csv_source
    out = build(mz.Maze(), tmp_path / "d", {"source": str(root), "aug": True}, progress=False)
    ds = Dataset(out)
    train, test = ds.train.set("all"), ds.test.set("all")
    # HRM: one group per row; with --aug the 8 dihedral copies (train only), one example each
    assert train.num_groups == len(tr.inputs) and train.num_puzzles == 8 * len(tr.inputs) == train.num_examples
    assert test.num_groups == test.num_puzzles == test.num_examples == len(te.inputs)
    assert np.array_equal(np.asarray(test.inputs), te.inputs) and np.array_equal(np.asarray(test.labels), te.labels)
    x = np.asarray(train.inputs).reshape(len(tr.inputs), 8, 36)
    y = np.asarray(train.labels).reshape(len(tr.inputs), 8, 36)
    for t in range(8):   # dihedral round trip: undoing transform t gives the CSV row back
        assert np.array_equal(dihedral_flat(x[:, t], int(INVERSE[t]), (6, 6)), tr.inputs)
        assert np.array_equal(dihedral_flat(y[:, t], int(INVERSE[t]), (6, 6)), tr.labels)
    meta = ds.train.metadata
    assert (meta.vocab_size, meta.seq_len, meta.pad_id, meta.ignore_label_id) == (6, 36, 0, 0)
    assert ds.identifiers == ["<blank>", "maze"]
    assert validate(out, deep=True).valid
    assert list(ds.train.side_table()["source"][:3]) == ["gen0"] * 3


@pytest.mark.parametrize("row, message", [
    (["s", "#" * 35, "#" * 36, "1"], "line 3: question has 35 characters, expected 36"),
    (["s", "#" * 35 + "x", "#" * 36, "1"], "line 3: question has the character 'x'"),
    (["s", "#" * 36, "#" * 35 + "é", "1"], "line 3: answer has the character 'é'"),
    (["s", "#" * 36, "#" * 36], "line 3: 3 columns, expected 4"),
])
def test_malformed_csv_row_names_file_and_line(tmp_path, row, message):
    good = ["s", "#" * 34 + "SG", "#" * 34 + "SG", "1"]
    (tmp_path / "src").mkdir()
    _write_csv(tmp_path / "src" / "train.csv", [good, row])
    _write_csv(tmp_path / "src" / "test.csv", [good])
    with pytest.raises(mz.SourceError, match=message) as e:
        mz.read_csv(tmp_path / "src" / "train.csv")
    assert "train.csv" in str(e.value)
    r = CliRunner().invoke(cli, ["build", "maze", "--source", str(tmp_path / "src"), "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert message in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_generation_is_deterministic_and_keeps_its_promises(tmp_path):
    opts = {"size": 7, "count": 30, "test_count": 10, "min_path": 9, "unique_path": True, "seed": 5}
    a = build(mz.Maze(), tmp_path / "a", opts, progress=False)
    b = build(mz.Maze(), tmp_path / "b", opts, progress=False)
    c = build(mz.Maze(), tmp_path / "c", {**opts, "seed": 6}, progress=False)
    assert fingerprint(a) == fingerprint(b) != fingerprint(c)
    for name in ("train__labels", "test__inputs"):
        split, f = name.split("__")
        assert (a / split / f"all__{f}.npy").read_bytes() == (b / split / f"all__{f}.npy").read_bytes()
    ds = Dataset(a)
    keys = set()
    for split in ("train", "test"):
        x = np.asarray(ds.split(split).set("all").inputs)
        y = np.asarray(ds.split(split).set("all").labels)
        r = ms.grade(x, y, (7, 7))
        assert r["optimal"].all() and (r["shortest"] >= 9).all()
        dist = ms.distances((x != ms.WALL).reshape(-1, 7, 7), (x == ms.GOAL).argmax(1))
        assert (ms.count_paths(dist, (x == ms.START).argmax(1)) == 1).all()   # --unique-path
        walls = (x == ms.WALL).sum(1)
        assert ((walls >= 49 // 10 * 3) & (walls <= 49 // 10 * 5)).all()
        keys |= {mz.canonical_key(row, 7) for row in x}
    assert len(keys) == 40   # no maze twice, not even rotated, across the splits
    assert validate(a, deep=True).valid


def test_deep_check_catches_wrong_labels(tmp_path):
    out = build(mz.Maze(), tmp_path / "d", {"size": 6, "count": 6, "test_count": 2, "seed": 1}, progress=False)
    assert validate(out, deep=True).valid
    x = np.load(out / "train" / "all__inputs.npy")
    y = np.load(out / "train" / "all__labels.npy")
    y[0] = x[0]                                            # no path at all
    y[1][np.flatnonzero(y[1] == ms.PATH)[0]] = ms.OPEN     # a gap
    x[2], y[2] = grid(DETOUR).reshape(-1), grid(DETOUR_RIGHT).reshape(-1)   # a longer path
    x[3][x[3] == ms.GOAL] = ms.OPEN                        # no goal
    np.save(out / "train" / "all__inputs.npy", x)
    np.save(out / "train" / "all__labels.npy", y)
    found = {(f.code, f.index) for f in validate(out, deep=True).errors if f.code.startswith("B")}
    assert found == {("B303", 0), ("B303", 1), ("B304", 2), ("B301", 3)}


def test_score_hooks_on_a_dataset(tmp_path):
    out = build(mz.Maze(), tmp_path / "d", {"size": 6, "count": 4, "test_count": 5, "seed": 2}, progress=False)
    b, ds = mz.Maze(), Dataset(out)
    y = np.asarray(ds.test.set("all").labels)
    x = np.asarray(ds.test.set("all").inputs)
    preds = y.copy()
    preds[1] = x[1]
    s = b.score(ds, "test", preds)
    assert s == {"path_valid": 0.8, "path_optimal": 0.8, "examples": 5}
    e = b.score_examples(ds, "test", preds)
    assert e["optimal"].tolist() == [True, False, True, True, True]
    assert (e["shortest"] >= 5).all() and e["path_length"][1] == -1


def test_bad_options_are_one_line_errors(tmp_path):
    for args, text_ in ((["--size", "3"], "--size must be between 4 and 64"),
                        (["--generate", "--source", str(tmp_path)], "either --source or --generate"),
                        (["--source", str(tmp_path / "none")], "must be a folder with train.csv"),
                        (["--size", "6", "--min-path", "40"], "--min-path 40 is longer")):
        r = CliRunner().invoke(cli, ["build", "maze", "--out", str(tmp_path / "o"), *args])
        assert r.exit_code == 2, r.output
        assert text_ in r.output


def test_an_unreachable_path_floor_stops_with_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(mz, "GIVE_UP_BATCHES", 2)
    monkeypatch.setattr(mz, "BATCH", 64)
    r = CliRunner().invoke(cli, ["build", "maze", "--out", str(tmp_path / "o"), "--size", "6", "--min-path", "18"])
    assert r.exit_code == 2
    assert "not one of 128 random 6 x 6 layouts has a shortest path of 18 moves; lower --min-path" in r.output
    assert not (tmp_path / "o").exists()


def test_source_edge_cases(tmp_path):
    (tmp_path / "e.csv").write_text("")
    (tmp_path / "h.csv").write_text("source,question,answer,rating\n")
    (tmp_path / "d.csv").mkdir()
    (tmp_path / "b.csv").write_bytes(b"source,question,answer,rating\ns,\xff\xfe,a,1\n")
    for name, msg in (("e.csv", "empty file"), ("h.csv", "no mazes after the header row"), ("d.csv", "not a file"),
                      ("b.csv", "not UTF-8 text")):
        with pytest.raises(mz.SourceError, match=msg):
            mz.read_csv(tmp_path / name)


def test_packed_and_dense_grading_agree():
    rng = np.random.default_rng(4)
    gen = mz.generate_batch(rng, 12, 11, batch=256, limit=60)
    preds = gen.labels.copy()
    preds[::3] = gen.inputs[::3]                          # no path
    cut = np.flatnonzero(preds[1] == ms.PATH)
    preds[1][cut[len(cut) // 2]] = ms.OPEN                # a gap
    preds[2][(preds[2] == ms.OPEN)] = ms.PATH             # everything marked
    packed = ms.grade(gen.inputs, preds, (12, 12))
    saved = ms.MAX_PACKED
    try:
        ms.MAX_PACKED = 8                                 # force the dense path
        dense = ms.grade(gen.inputs, preds, (12, 12))
    finally:
        ms.MAX_PACKED = saved
    for k in packed:
        assert np.array_equal(packed[k], dense[k]), k
    assert packed["optimal"].sum() == len(preds) - len(preds[::3]) - 2


def test_subsample_is_train_only_and_seeded(tmp_path, csv_source):
    root, tr, te = csv_source
    outs = [build(mz.Maze(), tmp_path / f"d{i}", {"source": str(root), "subsample_size": 5, "seed": s},
                  progress=False) for i, s in enumerate((0, 0, 1))]
    xs = [np.asarray(Dataset(o).train.set("all").inputs) for o in outs]
    assert xs[0].shape == (5, 36) and np.array_equal(xs[0], xs[1]) and not np.array_equal(xs[0], xs[2])
    rows = {r.tobytes() for r in tr.inputs}
    assert all(r.tobytes() in rows for r in xs[0]) and len({r.tobytes() for r in xs[0]}) == 5
    assert Dataset(outs[0]).test.set("all").num_examples == len(te.inputs)
