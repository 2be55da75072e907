"""The format library: writer metadata, dtypes, atomic commit, reader walk, fingerprint."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from hrm_data.format import (
    Dataset, DatasetExistsError, DatasetWriter, FormatError, Group, Metadata, Puzzle, fingerprint,
    smallest_int_dtype, write_arrays,
)


def write_small(path, rng, groups=6, seq_len=9, vocab=11, force=False, **kw):
    with DatasetWriter(path, vocab_size=vocab, seq_len=seq_len, force=force, **kw) as w:
        for split in ("train", "test"):
            with w.split(split) as s:
                for g in range(groups):
                    puzzles = []
                    for k in range(1 + g % 3):
                        n = 1 + (g + k) % 4
                        x = rng.integers(1, vocab, (n, seq_len))
                        puzzles.append(Puzzle(f"{split}-{g}-{k}", x, (x + 1) % vocab))
                    s.add_group(Group(puzzles, key=f"{split}{g}"))
    return Dataset(path)


def test_writer_computes_metadata(tmp_path):
    ds = write_small(tmp_path / "d", np.random.default_rng(0))
    for name in ("train", "test"):
        sp = ds.split(name)
        a = sp.set("all")
        m = sp.metadata
        assert m.total_groups == a.num_groups == 6
        assert m.total_puzzles == a.num_puzzles == int(a.group_indices[-1])
        assert m.mean_puzzle_examples == pytest.approx(a.num_examples / a.num_puzzles)
        assert a.puzzle_indices[0] == 0 and a.puzzle_indices[-1] == a.num_examples
        assert np.all(np.diff(a.puzzle_indices) > 0) and np.all(np.diff(a.group_indices) > 0)
        assert a.inputs.dtype == np.uint8 and isinstance(a.inputs, np.memmap)
        assert a.puzzle_identifiers.dtype == a.puzzle_indices.dtype == a.group_indices.dtype == np.int32
    ids = ds.identifiers
    assert ids[0] == "<blank>" and len(ids) == ds.train.metadata.num_puzzle_identifiers
    assert ds.train.metadata.provenance["fingerprint"] == fingerprint(ds.path)


def test_walk_groups_returns_what_was_written(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 5, (3, 4))
    with DatasetWriter(tmp_path / "d", vocab_size=5, seq_len=4) as w:
        with w.split("train") as s:
            s.add_group([Puzzle("a", x[:2], x[:2]), Puzzle("b", x[2:], x[2:])])
    ds = Dataset(tmp_path / "d")
    (group,) = list(ds.train.set("all").groups())
    names = ds.identifiers
    assert [names[i] for i, _, _ in group] == ["a", "b"]
    np.testing.assert_array_equal(group[0][1], x[:2])
    np.testing.assert_array_equal(group[1][2], x[2:])
    assert ds.test.set("all").num_examples == 0  # an unwritten split still exists, empty


@pytest.mark.parametrize("vmax,vmin,dt", [(10, 0, np.uint8), (255, 0, np.uint8), (256, 0, np.uint16),
                                           (70000, 0, np.int32), (10, -100, np.int8), (200, -100, np.int16)])
def test_smallest_dtype(vmax, vmin, dt):
    assert smallest_int_dtype(vmax, vmin) == np.dtype(dt)


def test_negative_ignore_label_is_stored_exactly(tmp_path):
    y = np.array([[1, -100, 3, 4]])
    with DatasetWriter(tmp_path / "d", vocab_size=5, seq_len=4, ignore_label_id=-100) as w:
        with w.split("train") as s:
            s.add_group([Puzzle("a", np.ones((1, 4), int), y)])
    labels = Dataset(tmp_path / "d").train.set("all").labels
    assert labels.dtype == np.int8 and labels.tolist() == y.tolist()


def test_refuses_to_overwrite_without_force(tmp_path):
    rng = np.random.default_rng(0)
    write_small(tmp_path / "d", rng)
    before = fingerprint(tmp_path / "d")
    with pytest.raises(DatasetExistsError, match="--force"):
        write_small(tmp_path / "d", rng)
    assert fingerprint(tmp_path / "d") == before
    write_small(tmp_path / "d", rng, force=True)
    assert fingerprint(tmp_path / "d") != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_exception_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path / "d", vocab_size=5, seq_len=4) as w:
            with w.split("train") as s:
                s.add_group([Puzzle("a", np.ones((1, 4), int), np.ones((1, 4), int))])
                raise RuntimeError("builder crashed")
    assert list(tmp_path.iterdir()) == []


def test_bad_groups_rejected(tmp_path):
    with DatasetWriter(tmp_path / "d", vocab_size=5, seq_len=4) as w:
        s = w.split("train")
        with pytest.raises(ValueError, match="seq_len=4"):
            s.add_group([Puzzle("a", np.ones((1, 3)), np.ones((1, 3)))])
        with pytest.raises(ValueError, match="out of range"):
            s.add_group([Puzzle("a", np.full((1, 4), 7), np.ones((1, 4), int))])
        with pytest.raises(ValueError, match="integer arrays"):
            s.add_group([Puzzle("a", np.ones((1, 4)), np.ones((1, 4)))])
        with pytest.raises(ValueError, match="out of range"):  # the whole group is checked first
            s.add_group([Puzzle("ok", np.ones((1, 4), int), np.ones((1, 4), int)),
                         Puzzle("bad", np.full((1, 4), 9), np.ones((1, 4), int))])
        assert s.num_examples == 0 and s._inputs.rows == 0
        with pytest.raises(ValueError, match="at least one puzzle"):
            s.add_group([])


KILL_SCRIPT = textwrap.dedent("""
    import sys, time, numpy as np
    from hrm_data.format import DatasetWriter, Puzzle
    with DatasetWriter(sys.argv[1], vocab_size=11, seq_len=81, force=True) as w:
        with w.split("train") as s:
            for g in range(10**9):
                x = np.ones((4, 81), np.int64)
                s.add_group([Puzzle(str(g % 7), x, x)])
                if g == 2000:
                    print("writing", flush=True)
""")


@pytest.mark.parametrize("existing", [False, True])
def test_sigkill_mid_write_leaves_target_untouched(tmp_path, existing):
    target = tmp_path / "d"
    if existing:
        write_small(target, np.random.default_rng(0))
        before = fingerprint(target)
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if existing:
        assert fingerprint(target) == before
    else:
        assert not target.exists()
    leftovers = [p for p in tmp_path.iterdir() if p.name != "d"]
    assert leftovers and all(p.name.startswith(".d.tmp-") for p in leftovers)
    # the next writer cleans up after the dead one
    write_small(target, np.random.default_rng(0), force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_hrm_layout_reads(tmp_path):
    """Exactly what sapientinc/HRM's builders write: uint8 tokens, only HRM's 9 keys."""
    x = np.random.default_rng(0).integers(0, 11, (6, 81)).astype(np.uint8)
    arrays = dict(inputs=x, labels=x, puzzle_identifiers=np.zeros(6, np.int32),
                  puzzle_indices=np.arange(7, dtype=np.int32), group_indices=np.arange(7, dtype=np.int32))
    write_arrays(tmp_path / "d", {"train": arrays, "test": arrays}, vocab_size=11, identifiers=["<blank>"])
    meta = json.loads((tmp_path / "d/train/dataset.json").read_text())
    assert set(meta) == {"pad_id", "ignore_label_id", "blank_identifier_id", "vocab_size", "seq_len",
                         "num_puzzle_identifiers", "total_groups", "mean_puzzle_examples", "sets"}
    ds = Dataset(tmp_path / "d")
    assert ds.train.metadata.total_puzzles is None
    assert ds.train.set("all").inputs.dtype == np.uint8
    assert len(fingerprint(tmp_path / "d")) == 32


def test_we_write_what_hrm_and_trm_loaders_read(tmp_path):
    """The loader contract: 9 HRM fields of the right JSON types, TRM's total_puzzles, npy names."""
    write_small(tmp_path / "d", np.random.default_rng(0))
    for split in ("train", "test"):
        meta = json.loads((tmp_path / "d" / split / "dataset.json").read_text())
        assert isinstance(meta["ignore_label_id"], int) and isinstance(meta["mean_puzzle_examples"], float)
        assert isinstance(meta["total_puzzles"], int) and meta["sets"] == ["all"]
        for field in ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"):
            arr = np.load(tmp_path / "d" / split / f"all__{field}.npy", mmap_mode="r")
            assert arr.dtype.kind in "iu"


def test_fingerprint_ignores_storage_dtype_and_provenance(tmp_path):
    x = np.random.default_rng(0).integers(0, 11, (4, 9))
    base = dict(labels=x, puzzle_identifiers=np.zeros(4, np.int32), puzzle_indices=np.arange(5, dtype=np.int32),
                group_indices=np.arange(5, dtype=np.int32))
    write_arrays(tmp_path / "a", {"train": {**base, "inputs": x.astype(np.uint8)}}, vocab_size=11)
    write_arrays(tmp_path / "b", {"train": {**base, "inputs": x.astype(np.int32)}}, vocab_size=11,
                 metadata_overrides={"train": {"hrm_data": {"builder": "x"}}})
    write_arrays(tmp_path / "c", {"train": {**base, "inputs": (x + 1) % 11}}, vocab_size=11)
    assert fingerprint(tmp_path / "a") == fingerprint(tmp_path / "b") != fingerprint(tmp_path / "c")


def test_metadata_errors_name_field():
    good = dict(pad_id=0, ignore_label_id=None, blank_identifier_id=0, vocab_size=3, seq_len=4,
                num_puzzle_identifiers=1, total_groups=1, mean_puzzle_examples=1.0, sets=["all"])
    assert Metadata.from_dict(good).ignore_label_id is None
    with pytest.raises(FormatError, match="missing required field 'seq_len'"):
        Metadata.from_dict({k: v for k, v in good.items() if k != "seq_len"})
    with pytest.raises(FormatError, match="'vocab_size' is '3'"):
        Metadata.from_dict({**good, "vocab_size": "3"})
    with pytest.raises(FormatError, match="'total_puzzles'"):
        Metadata.from_dict({**good, "total_puzzles": "7"})
    m = Metadata.from_dict({**good, "my_key": 1})
    assert m.to_dict()["my_key"] == 1


def test_truncated_npy_is_a_format_error(tmp_path):
    write_small(tmp_path / "d", np.random.default_rng(0))
    p = tmp_path / "d/train/all__inputs.npy"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(FormatError, match="truncated or corrupt"):
        Dataset(tmp_path / "d").train.set("all")


def test_side_table(tmp_path):
    ds = write_small(tmp_path / "d", np.random.default_rng(0))
    t = ds.train.side_table()
    a = ds.train.set("all")
    assert len(t) == a.num_examples
    assert list(t["example"]) == list(range(a.num_examples))
    assert t["group_key"].iloc[0] == "train0" and t["group_key"].iloc[-1] == "train5"


def test_force_replaces_only_datasets_or_empty_folders(tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "thesis.txt").write_text("important")
    with pytest.raises(DatasetExistsError, match="not an HRM dataset"):
        write_small(precious, np.random.default_rng(0), force=True)
    assert (precious / "thesis.txt").read_text() == "important"
    (tmp_path / "empty").mkdir()
    write_small(tmp_path / "empty", np.random.default_rng(0), force=True)
    assert (tmp_path / "empty" / "identifiers.json").exists()
    for bad in (".", ".."):
        with pytest.raises(ValueError, match="name the dataset folder"):
            DatasetWriter(bad, vocab_size=3, seq_len=2)


def test_dataset_is_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        write_small(tmp_path / "d", np.random.default_rng(0))
    finally:
        os.umask(old)
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755


def test_a_dataset_moved_aside_by_a_dead_writer_is_put_back(tmp_path):
    """Where the OS cannot swap atomically, the old dataset is renamed aside first; if the writer
    dies right then, the next writer restores it (the target path is never left empty for good)."""
    write_small(tmp_path / "d", np.random.default_rng(0))
    before = fingerprint(tmp_path / "d")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    os.rename(tmp_path / "d", tmp_path / f".d.old-{dead.pid}-x1")
    with pytest.raises(RuntimeError):
        with DatasetWriter(tmp_path / "d", vocab_size=3, seq_len=2, force=True):
            raise RuntimeError("stop before writing")
    assert fingerprint(tmp_path / "d") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_side_table_column_added_by_a_later_group(tmp_path):
    x = np.ones((1, 4), int)
    with DatasetWriter(tmp_path / "d", vocab_size=5, seq_len=4) as w:
        with w.split("train") as s:
            for rows in ([{"a": 1}], [{"a": 2, "b": 3}], [{"a": 4}]):
                s.add_group(Group([Puzzle("p", x, x)], rows=rows))
    t = Dataset(tmp_path / "d").train.side_table()
    assert list(t["a"]) == [1, 2, 4] and t["b"].isna().tolist() == [True, False, True]


def test_fingerprint_fast_path_keeps_values_semantics(tmp_path):
    """Hashing in the smallest dtype: the same values give the same hash, other values another."""
    import hashlib
    from hrm_data.format import _hash_array
    def h(a):
        d = hashlib.blake2b(digest_size=8)
        _hash_array(d, a)
        return d.hexdigest()
    x = np.arange(300).reshape(3, 100)
    assert h(x.astype(np.int64)) == h(x.astype(np.int32)) == h(x.astype(np.uint16))
    assert h(x % 7) == h((x % 7).astype(np.uint8)) != h(x % 5)
    assert h(np.array([-1, 2])) != h(np.array([255, 2]))


def test_numeric_side_table_columns_bypass_pyarrows_pandas_probe(tmp_path):
    """Numbers go to arrow as buffers (the same values as pa.array gives, NaN kept as a value),
    so writing a numeric side table never imports pandas (0.3 s of a Sudoku build)."""
    import pyarrow as pa

    from hrm_data.format import _arrow_array
    for v in (np.arange(5, dtype=np.int8), np.arange(6, dtype=">i4")[::2], np.array([1.5, np.nan]),
              np.arange(3, dtype=np.uint64), np.array([True, False]), np.array(["a", None], object)):
        native = v.astype(v.dtype.newbyteorder("=")) if v.dtype.kind in "iuf" else v
        a, b = _arrow_array(v), pa.array(native)
        assert a.type == b.type and a.null_count == b.null_count, v
        np.testing.assert_array_equal(a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False))
    code = textwrap.dedent(f"""
        import sys, numpy as np
        from hrm_data.format import DatasetWriter, GroupBatch
        with DatasetWriter({str(tmp_path / "d")!r}, vocab_size=4, seq_len=2) as w:
            with w.split("train") as s:
                s.add_batch(GroupBatch("p", np.ones((4, 2), np.uint8), np.ones((4, 2), np.uint8), np.array([2, 2]),
                                       columns={{"rating": np.arange(4), "score": np.linspace(0, 1, 4)}}))
        print("pandas" in sys.modules)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
    import pyarrow.parquet as pq
    t = pq.read_table(tmp_path / "d" / "train" / "examples.parquet")
    assert t.column("rating").to_pylist() == [0, 1, 2, 3] and t.column("score").to_pylist()[-1] == 1.0
