"""hrm-data stats: every number checked against a direct computation on a small dataset."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hrm_data.format import write_arrays
from hrm_data.stats import compute_stats


def dataset(path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (10, 6)).astype(np.uint8)
    y = x.copy()
    y[:, :2] = 0                                  # ignored
    y[:5, 3] = (x[:5, 3] + 1) % 5                 # differs from the input
    y[9, 5] = 7                                   # outside the vocabulary: its own bin
    tr = dict(inputs=x, labels=y, puzzle_identifiers=np.array([1, 2, 2, 3], np.int32),
              puzzle_indices=np.array([0, 1, 4, 6, 10], np.int32), group_indices=np.array([0, 1, 4], np.int32))
    te = dict(inputs=x[:2], labels=y[:2], puzzle_identifiers=np.array([3], np.int32),
              puzzle_indices=np.array([0, 2], np.int32), group_indices=np.array([0, 1], np.int32))
    write_arrays(path, {"train": tr, "test": te}, vocab_size=5, identifiers=["<blank>", "a", "b", "c", "d"],
                 metadata_overrides={s: {"token_names": ["pad", "w", "x", "y", "z"]} for s in ("train", "test")})
    return x, y


def test_numbers_match_a_direct_count(tmp_path):
    x, y = dataset(tmp_path / "d")
    d = compute_stats(tmp_path / "d", {"epochs": 20, "eval_interval": 10, "global_batch_size": 4})
    st = d["splits"]["train"]["sets"]["all"]
    assert (st["examples"], st["puzzles"], st["groups"]) == (10, 4, 2)
    assert st["examples_per_puzzle"] == {"min": 1, "mean": 2.5, "max": 4}
    assert st["puzzles_per_group"] == {"min": 1, "mean": 2.0, "max": 3}
    names = ["pad", "w", "x", "y", "z"]
    assert st["tokens_inputs"] == {names[v]: int((x == v).sum()) for v in range(5) if (x == v).any()}
    assert st["tokens_labels"]["<out of range>"] == 1
    assert st["tokens_labels"]["pad"] == int((y == 0).sum())
    assert st["input_fill"] == round(float((x != 0).mean()), 4)
    keep = y != 0
    assert st["label_fill"] == round(float(keep.mean()), 4)
    assert st["label_differs_from_input"] == round(float((keep & (y != x)).sum() / keep.sum()), 4)
    assert st["identifiers_used"] == 3 and st["puzzles_per_identifier"] == {"min": 1, "mean": 1.3333, "max": 2}
    assert d["identifiers_in_both_splits"] == 1 and d["identifiers_unused"] == 1
    from hrm_data.plan import compute_plan
    assert d["plan_at_defaults"]["total_steps"] == compute_plan(str(tmp_path / "d"), 4, 20, 10, lr_warmup_steps=2000).total_steps


def test_cli_text_json_zarr_and_errors(tmp_path):
    dataset(tmp_path / "d")
    hd = str(Path(sys.executable).parent / "hrm-data")
    r = subprocess.run([hd, "stats", str(tmp_path / "d"), "--json", "-e", "4", "-i", "2"], capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["splits"]["test"]["sets"]["all"]["examples"] == 2
    r = subprocess.run([hd, "stats", str(tmp_path / "d"), "-e", "4", "-i", "2"], capture_output=True, text=True)
    assert "examples per puzzle" in r.stdout and "label differs" in r.stdout
    assert subprocess.run([hd, "stats", str(tmp_path / "nope")], capture_output=True, text=True).returncode == 2
    pytest.importorskip("zarr")
    from hrm_data.convert import convert
    z = convert(tmp_path / "d", tmp_path / "d.zarr", progress=False)
    small = {"epochs": 4, "eval_interval": 2}
    a, b = compute_stats(tmp_path / "d", small), compute_stats(z, small)
    a.pop("path"), b.pop("path")
    assert a == b
