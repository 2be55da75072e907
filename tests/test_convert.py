"""convert: npy <-> Parquet <-> Zarr round trips give identical arrays, dtypes, metadata and
fingerprint; a Zarr store is read directly by validate / plan / show / fingerprint; outputs are
atomic and never replace what is not a dataset."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hrm_data.convert import convert
from hrm_data.format import FIELDS, Dataset, fingerprint, write_arrays
from trainer_fixtures import make_dataset

zarr = pytest.importorskip("zarr")
HRM_DATA = str(Path(sys.executable).parent / "hrm-data")


def hrm_layout(path):
    """sapientinc/HRM's own layout: uint8 tokens, int32 indices, only HRM's 9 metadata keys, two sets."""
    rng = np.random.default_rng(1)
    splits = {}
    for split, n in (("train", 20), ("test", 6)):
        x = rng.integers(1, 11, (n, 81)).astype(np.uint8)
        splits[split] = dict(inputs=x, labels=np.where(rng.random((n, 81)) < 0.5, x, 0).astype(np.uint8),
                             puzzle_identifiers=np.zeros(n // 2, np.int32),
                             puzzle_indices=np.arange(0, n + 1, 2, dtype=np.int32),
                             group_indices=np.arange(0, n // 2 + 1, dtype=np.int32))
    return write_arrays(path, splits, vocab_size=11, identifiers=["<blank>"])


def city(path):
    from hrm_data import registry
    from hrm_data.builder import build
    b = registry.get("city-logistics")
    return build(b, path, {"size": 6, "train_scenarios": 6, "test_scenarios": 3}, progress=False)


def maze(path):
    from hrm_data import registry
    from hrm_data.builder import build
    return build(registry.get("maze"), path, {"size": 6, "count": 6, "test_count": 3}, progress=False)


def assert_same(a, b):
    da, db = Dataset(a), Dataset(b)
    assert da.identifiers == db.identifiers
    for split in ("train", "test"):
        ma = json.loads((Path(a) / split / "dataset.json").read_text())
        mb = json.loads((Path(b) / split / "dataset.json").read_text())
        assert ma == mb and [type(v) for v in ma.values()] == [type(v) for v in mb.values()]
        for s in ma["sets"]:
            for f in FIELDS:
                x = np.load(Path(a) / split / f"{s}__{f}.npy")
                y = np.load(Path(b) / split / f"{s}__{f}.npy")
                assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), (split, s, f)
        ta, tb = da.split(split).side_table(), db.split(split).side_table()
        assert (ta is None) == (tb is None)
        if ta is not None:
            assert ta.equals(tb)
    assert fingerprint(a) == fingerprint(b)


@pytest.fixture(scope="module", params=["city", "maze", "hrm-uint8", "multi", "empty-test"])
def source(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    make = {"city": city, "maze": maze, "hrm-uint8": hrm_layout, "multi": lambda p: make_dataset(p, multi=True),
            "empty-test": lambda p: make_dataset(p, n_test=0)}[request.param]
    return make(d / "src")


@pytest.mark.parametrize("fmt,name", [("parquet", "x.parquet"), ("zarr", "x.zarr")])
def test_round_trip_is_exact(source, fmt, name, tmp_path):
    mid = convert(source, tmp_path / name, fmt, progress=False)
    if fmt == "zarr":  # read directly: the same content, so the same fingerprint
        assert fingerprint(mid) == fingerprint(source)
    back = convert(mid, tmp_path / "back", "npy", progress=False)
    assert_same(source, back)


def test_two_sets_and_hrm_metadata_survive_parquet(tmp_path):
    src = hrm_layout(tmp_path / "h")
    # two sets in one split, as HRM's format allows
    for f in FIELDS:
        arr = np.load(src / "train" / f"all__{f}.npy")
        np.save(src / "train" / f"extra__{f}.npy", arr)
    meta = json.loads((src / "train/dataset.json").read_text())
    meta["sets"] = ["all", "extra"]
    (src / "train/dataset.json").write_text(json.dumps(meta))
    for fmt, name in (("parquet", "h.parquet"), ("zarr", "h.zarr")):
        back = convert(convert(src, tmp_path / name, progress=False), tmp_path / f"back-{fmt}", "npy", progress=False)
        assert_same(src, back)


def test_parquet_reads_in_pandas_and_pyarrow_dataset(tmp_path):
    import pandas as pd
    import pyarrow.dataset as pads
    src = make_dataset(tmp_path / "d", multi=True)
    p = convert(src, tmp_path / "d.parquet", progress=False)
    df = pd.read_parquet(p)
    assert len(df) == 240 and list(df["split"].unique()) == ["train", "test"]
    x = np.load(src / "train/all__inputs.npy")
    assert np.array_equal(np.stack(df[df.split == "train"]["inputs"].to_numpy()), x)
    assert df["identifier"].iloc[0] == Dataset(src).identifiers[df["identifier_id"].iloc[0]]
    t = pads.dataset(p, format="parquet").to_table(filter=pads.field("split") == "test")
    assert t.num_rows == 48


def test_parquet_reads_in_hf_datasets(tmp_path):
    datasets = pytest.importorskip("datasets")
    p = convert(make_dataset(tmp_path / "d"), tmp_path / "d.parquet", progress=False)
    ds = datasets.load_dataset("parquet", data_files=str(p), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == 60 and len(ds[0]["inputs"]) == 8


def test_zarr_is_chunked_compressed_with_metadata_as_attributes(tmp_path):
    src = make_dataset(tmp_path / "d")
    z = convert(src, tmp_path / "d.zarr", progress=False)
    g = zarr.open_group(str(z), mode="r")
    assert g.attrs["identifiers"] == Dataset(src).identifiers
    assert g["train"].attrs["dataset.json"] == json.loads((src / "train/dataset.json").read_text())
    arr = g["train/all__inputs"]
    assert arr.dtype == np.uint8 and arr.compressors and arr.chunks[1] == 8


def test_commands_read_zarr_directly(tmp_path):
    src = make_dataset(tmp_path / "d", multi=True)
    z = convert(src, tmp_path / "d.zarr", progress=False)

    def run(*a):
        return subprocess.run([HRM_DATA, *a], capture_output=True, text=True)

    r = run("validate", str(z), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["stats"]["splits"]["train"]["examples"] == 192
    r_npy, r_z = run("plan", str(src), "-b", "8", "-e", "3", "--json"), run("plan", str(z), "-b", "8", "-e", "3", "--json")
    pn, pz = json.loads(r_npy.stdout), json.loads(r_z.stdout)
    assert pn["total_steps"] == pz["total_steps"] > 0
    assert run("show", str(z), "--index", "5").stdout == run("show", str(src), "--index", "5").stdout
    assert run("fingerprint", str(z)).stdout == run("fingerprint", str(src)).stdout
    pytest.importorskip("fsspec")
    assert run("fingerprint", f"file://{z}").stdout == run("fingerprint", str(src)).stdout   # an fsspec URL


def test_validate_finds_errors_in_zarr(tmp_path):
    src = make_dataset(tmp_path / "d")
    z = convert(src, tmp_path / "d.zarr", progress=False)
    g = zarr.open_group(str(z), mode="r+")
    a = g["train/all__inputs"]
    a[3, 2] = 200                                   # a token outside the vocabulary
    del g["test/all__labels"]
    from hrm_data.validate import validate
    rep = validate(z)
    assert {"E401", "E103"} <= rep.codes() and not rep.valid
    assert any(f.code == "E401" and f.index == 3 for f in rep.findings)


def test_not_a_dataset_and_existing_targets(tmp_path):
    src = make_dataset(tmp_path / "d")
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "notes.txt").write_text("mine")
    r = subprocess.run([HRM_DATA, "convert", str(src), str(tmp_path / "keep"), "--format", "zarr", "--force"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "not an HRM dataset" in r.stderr and (tmp_path / "keep/notes.txt").exists()
    for dst in (src, src / "inside.zarr", tmp_path):
        with pytest.raises(ValueError, match="overlap"):
            convert(src, dst, "zarr", force=True, progress=False)
    (tmp_path / "f.parquet").write_text("x")
    r = subprocess.run([HRM_DATA, "convert", str(tmp_path / "f.parquet"), str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "Parquet" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([HRM_DATA, "validate", str(tmp_path / "nothing.zarr")], capture_output=True, text=True)
    assert r.returncode == 2
    convert(src, tmp_path / "o.zarr", progress=False)
    with pytest.raises(FileExistsError):
        convert(src, tmp_path / "o.zarr", progress=False)
    convert(src, tmp_path / "o.zarr", force=True, progress=False)   # our own store may be replaced
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_chunked_rows_reads_like_numpy(tmp_path):
    from hrm_data.storage_zarr import ChunkedRows
    x = np.random.default_rng(0).integers(0, 200, (1000, 7)).astype(np.uint8)
    z = zarr.create_array(str(tmp_path / "a.zarr"), shape=x.shape, dtype=x.dtype, chunks=(64, 7))
    z[...] = x
    c = ChunkedRows(z, cache_mb=0)               # chunk LRU path (nothing fits)
    w = ChunkedRows(z)                           # whole-array path
    assert np.array_equal(w[np.array([5, 999, 5])], x[[5, 999, 5]]) and np.array_equal(w[2:700:3], x[2:700:3])
    idx = np.random.default_rng(1).integers(-1000, 1000, 300)
    assert np.array_equal(c[idx], x[idx]) and np.array_equal(c[10:900], x[10:900])
    assert np.array_equal(c[5], x[5]) and np.array_equal(c[3:9, 2], x[3:9, 2]) and np.array_equal(np.asarray(c), x)
    assert np.array_equal(c[x[:, 0] > 100], x[x[:, 0] > 100]) and c.shape == x.shape and c.dtype == x.dtype
    with pytest.raises(IndexError):
        c[np.array([1000])]


def test_leftovers_of_a_killed_convert_are_cleaned(tmp_path):
    src = make_dataset(tmp_path / "d")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (tmp_path / f".o.parquet.tmp-{dead}-x").write_text("half")
    (tmp_path / f".o.zarr.tmp-{dead}-y").mkdir()
    (tmp_path / f".o.parquet.tmp-{os.getpid()}-alive").write_text("a live writer's")
    convert(src, tmp_path / "o.parquet", progress=False)
    convert(src, tmp_path / "o.zarr", progress=False)
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert left == [f".o.parquet.tmp-{os.getpid()}-alive"]
