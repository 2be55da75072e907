"""hrm_data.validate: every finding code has a dataset that triggers it and one that does not."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hrm_data.format import DatasetWriter, Group, Puzzle, write_arrays
from hrm_data.validate import CODES, Finding, NotADataset, Report, run_cli, validate

S, V = 6, 11
IDS = ["<blank>", "a", "b", "c"]


def _split(n_groups: int, seed: int, base: int) -> dict[str, np.ndarray]:
    """n_groups groups of 2 puzzles of 2 examples; unique rows (a counter is written into each row)."""
    rng = np.random.default_rng(seed)
    P = 2 * n_groups
    N = 2 * P
    x = rng.integers(1, V, (N, S)).astype(np.uint8)
    y = rng.integers(1, V, (N, S)).astype(np.uint8)
    x[:, 0] = 1 + (np.arange(N) + base) % 10        # make every row unique within and across splits
    x[:, 1] = 1 + (np.arange(N) + base) // 10 % 10
    x[:, 2] = 1 + base // 100
    return dict(inputs=x, labels=y, puzzle_identifiers=(1 + np.arange(P) % 3).astype(np.int32),
                puzzle_indices=np.arange(0, N + 1, 2, dtype=np.int32),
                group_indices=np.arange(0, P + 1, 2, dtype=np.int32))


def make(tmp_path: Path, edit=None, meta=None, ids=IDS, post=None, name="ds", **kw) -> Path:
    """A small valid dataset (train 3 groups / 12 examples, test 2 groups / 8 examples), then corrupted."""
    splits = {"train": _split(3, 0, 0), "test": _split(2, 1, 500)}
    if edit:
        edit(splits)
    overrides = {s: {"total_puzzles": int(a["puzzle_identifiers"].shape[0])} for s, a in splits.items()}
    for s, d in (meta or {}).items():
        overrides.setdefault(s, {}).update(d)
    drops = {s: [k for k, v in d.items() if v is _DROP] for s, d in overrides.items()}
    overrides = {s: {k: v for k, v in d.items() if v is not _DROP} for s, d in overrides.items()}
    path = write_arrays(tmp_path / name, splits, vocab_size=V, identifiers=ids, metadata_overrides=overrides, **kw)
    for s, keys in drops.items():
        if keys:
            m = json.loads((path / s / "dataset.json").read_text())
            for k in keys:
                m.pop(k, None)
            (path / s / "dataset.json").write_text(json.dumps(m))
    if post:
        post(path)
    return path


_DROP = object()  # in meta=: remove this key from dataset.json


def _meta(split, **kv):
    return {split: kv}


# ----------------------------------------------------------------------------- corruptions

def _set(split, field, fn):
    def edit(sp):
        sp[split][field] = fn(sp[split][field])
    return edit


def _chain(*edits):
    def edit(sp):
        for e in edits:
            e(sp)
    return edit


def _put(split, field, idx, value):
    def fn(a):
        a = a.copy()
        a[idx] = value
        return a
    return _set(split, field, fn)


def _rm(rel):
    def post(p):
        target = p / rel
        if target.is_dir():
            import shutil
            shutil.rmtree(target)
        else:
            target.unlink()
    return post


def _write(rel, data: bytes, mode="wb"):
    def post(p):
        with open(p / rel, mode) as f:
            f.write(data)
    return post


def _truncate(rel, drop=10):
    def post(p):
        f = p / rel
        f.write_bytes(f.read_bytes()[:-drop])
    return post


def _replace_with(rel, kind):
    """Put a directory, a FIFO or a symlink loop where a dataset file belongs."""
    def post(p):
        import os
        f = p / rel
        f.unlink()
        if kind == "dir":
            f.mkdir()
        elif kind == "fifo":
            os.mkfifo(f)
        else:
            os.symlink(f.name, f)  # a link to itself: ELOOP
    return post


def _json(rel, fn):
    def post(p):
        f = p / rel
        f.write_text(json.dumps(fn(json.loads(f.read_text()))))
    return post


def _copy_row(src_split, src, dst_split, dst, fields=("inputs", "labels")):
    def edit(sp):
        for f in fields:
            sp[dst_split][f] = sp[dst_split][f].copy()
            sp[dst_split][f][dst] = sp[src_split][f][src]
    return edit


def _pop(d, k):
    d = dict(d)
    d.pop(k)
    return d


def _side_table(keys_train, keys_test, garbage=False):
    def post(p):
        import pandas as pd
        for split, keys in (("train", keys_train), ("test", keys_test)):
            if garbage:
                (p / split / "examples.parquet").write_bytes(b"not parquet")
                continue
            n = np.load(p / split / "all__inputs.npy").shape[0]
            pd.DataFrame({"example": np.arange(n), "group_key": [keys(i) for i in range(n)]}).to_parquet(
                p / split / "examples.parquet")
    return post


# (code, corruption that triggers it, near-miss that must not trigger it or None for the clean dataset)
CASES = [
    ("E101", dict(post=_rm("test")), None),
    ("E101", dict(post=_rm("train/dataset.json")), None),
    ("E102", dict(post=_json("train/dataset.json", lambda m: _pop(m, "seq_len"))),
     dict(post=_json("train/dataset.json", lambda m: {**m, "unknown_key": 1}))),
    ("E102", dict(post=_write("train/dataset.json", b"{not json")), None),
    ("E102", dict(meta=_meta("train", vocab_size="11")), None),
    ("E102", dict(meta=_meta("test", total_puzzles="4")), None),  # from_dict would drop it silently
    ("E103", dict(post=_rm("train/all__labels.npy")), None),
    ("E104", dict(post=_write("train/all__inputs.npy", b"garbage" * 20)), None),
    ("E105", dict(post=_truncate("train/all__labels.npy")), None),
    ("E106", dict(post=_write("train/all__inputs.npy", b"\0" * 81, "ab")), None),
    ("E107", dict(post=_rm("identifiers.json")), None),
    ("E107", dict(post=_write("identifiers.json", b'{"a": 1}')), None),
    ("W108", dict(ids=["a", "b", "c", "d"]), dict(ids=["<blank>", "x", "y", "z"])),
    ("E109", dict(meta=_meta("test", sets=[])), None),
    # issue 7: set names are plain names, so no tool reads arrays outside the dataset folder
    ("E110", dict(meta=_meta("train", sets=["../../other/train/all"])), dict(meta=_meta("train", sets=["all"]))),
    ("E111", dict(meta=_meta("train", hrm_data="x")), dict(meta=_meta("train", hrm_data={"builder": "x"}))),
    ("E113", dict(post=_replace_with("train/dataset.json", "dir")), None),
    ("E113", dict(post=_replace_with("train/all__inputs.npy", "fifo")), None),
    ("E113", dict(post=_replace_with("identifiers.json", "loop")), None),
    ("E201", dict(edit=_set("train", "labels", lambda a: a.astype(np.float32))),
     dict(edit=_set("train", "labels", lambda a: a.astype(np.int64)))),
    ("E201", dict(edit=_set("test", "puzzle_identifiers", lambda a: a.astype(bool))), None),
    ("E201", dict(edit=_set("train", "puzzle_indices", lambda a: a.astype(np.uint64))),
     dict(edit=_set("train", "puzzle_indices", lambda a: a.astype(np.int64)))),
    ("E202", dict(edit=_set("train", "labels", lambda a: a[:, :-1].copy())), None),
    ("E202", dict(post=lambda p: np.save(p / "train" / "all__inputs.npy",  # write_arrays needs 2-D inputs
                                         np.load(p / "train" / "all__inputs.npy").reshape(-1))), None),
    ("E203", dict(edit=_set("train", "puzzle_indices", lambda a: a[:-1].copy())), None),
    ("E203", dict(edit=_set("train", "group_indices", lambda a: a[:0].copy())), None),
    ("E301", dict(edit=_put("train", "puzzle_indices", -1, 11)), None),
    ("E302", dict(edit=_put("train", "puzzle_indices", 2, 2)), None),
    ("E303", dict(edit=_put("test", "group_indices", -1, 3)), None),
    ("E304", dict(edit=_put("test", "group_indices", 1, 0)), None),
    ("E401", dict(edit=_put("train", "inputs", (3, 4), 11)),
     dict(edit=_put("train", "inputs", (3, 4), 10))),
    ("E402", dict(edit=_put("test", "labels", (1, 1), 200)),
     dict(edit=_chain(_set("test", "labels", lambda a: a.astype(np.int32)), _put("test", "labels", (1, 1), -100),
                      _set("train", "labels", lambda a: a.astype(np.int32))),
          meta={"train": dict(ignore_label_id=-100), "test": dict(ignore_label_id=-100)})),
    ("E403", dict(edit=_put("train", "puzzle_identifiers", 0, 4)), None),
    ("W404", dict(edit=_put("train", "puzzle_identifiers", 0, 0)),
     # HRM's sudoku/maze layout: only "<blank>" exists, every puzzle uses it, no warning.
     dict(edit=_chain(_set("train", "puzzle_identifiers", np.zeros_like),
                      _set("test", "puzzle_identifiers", np.zeros_like)), ids=["<blank>"])),
    ("E501", dict(meta=_meta("train", total_groups=4)), None),
    ("E502", dict(meta=_meta("train", mean_puzzle_examples=4.0)),
     dict(meta=_meta("train", mean_puzzle_examples=2.0000001))),
    ("E503", dict(meta={"train": dict(seq_len=7), "test": dict(seq_len=7)}), None),
    ("E504", dict(meta={"train": dict(num_puzzle_identifiers=5), "test": dict(num_puzzle_identifiers=5)}), None),
    ("E505", dict(meta=_meta("test", total_puzzles=5)), None),
    ("W506", dict(meta=_meta("test", total_puzzles=_DROP)), None),
    ("E507", dict(meta=_meta("test", pad_id=1)), None),
    ("E508", dict(meta={"train": dict(pad_id=11), "test": dict(pad_id=11)}), None),
    ("E508", dict(meta={"train": dict(blank_identifier_id=4), "test": dict(blank_identifier_id=4)}), None),
    ("E508", dict(meta=_meta("train", mean_puzzle_examples=float("inf"))), None),
    ("E509", dict(meta={"train": dict(vocab_size=10**12), "test": dict(vocab_size=10**12)}),
     dict(meta={"train": dict(vocab_size=2**24), "test": dict(vocab_size=2**24)})),
    ("E601", dict(edit=_copy_row("train", 5, "test", 3)),
     # same input, different label, different identifier: neither leakage nor ill-posed
     dict(edit=_chain(_copy_row("train", 0, "test", 0, ("inputs",)), _put("test", "puzzle_identifiers", 0, 2)))),
    ("E602", dict(post=_side_table(lambda i: f"g{i // 4}", lambda i: f"g{i // 4 + 2}")),
     dict(post=_side_table(lambda i: f"g{i // 4}", lambda i: f"h{i // 4}"))),
    ("W603", dict(post=_side_table(None, None, garbage=True)), None),
    ("W603", dict(post=lambda p: __import__("pandas").DataFrame({"example": [0]}).to_parquet(
        p / "train" / "examples.parquet")), None),
    ("E701", dict(edit=_copy_row("train", 0, "train", 1, ("inputs",))),  # same puzzle: rows 0 and 1
     dict(edit=_copy_row("train", 0, "train", 2, ("inputs",)))),          # puzzle 1 has another identifier
    ("E701", dict(edit=_copy_row("train", 0, "train", 6, ("inputs",))), None),  # puzzle 3: identifier 1 again
    ("E702", dict(edit=_copy_row("train", 0, "test", 0, ("inputs",)), ),
     dict(edit=_copy_row("train", 0, "test", 2, ("inputs",)))),           # test puzzle 1 has identifier 2
    ("W801", dict(edit=_put("train", "inputs", 3, 0)), dict(edit=_put("train", "inputs", (3, slice(0, 5)), 0))),
    ("E802", dict(edit=lambda sp: sp.update(train=_split(0, 0, 0))), None),
    ("W803", dict(edit=lambda sp: sp.update(test=_split(0, 0, 0))), None),
    ("W804", dict(edit=lambda sp: sp["test"].update(labels=sp["test"]["inputs"].copy())),
     dict(edit=lambda sp: sp["test"].update(labels=np.concatenate([sp["test"]["inputs"][:-1],
                                                                   sp["test"]["labels"][-1:]])))),
    ("W805", dict(edit=_put("test", "labels", 2, 0)), dict(edit=_put("test", "labels", (2, slice(0, 5)), 0))),
]


@pytest.mark.parametrize("code,bad,near", CASES, ids=[c[0] for c in CASES])
def test_code_triggers(tmp_path, code, bad, near):
    report = validate(make(tmp_path, **bad))
    assert code in report.codes(), report.format_text()
    assert report.valid == (not any(f.severity == "error" for f in report.findings))
    if code.startswith("E"):
        assert not report.valid
    for f in report.findings:
        assert f.code in CODES and f.message and f.severity == ("warning" if f.code[0] == "W" else "error")


@pytest.mark.parametrize("code,bad,near", CASES, ids=[c[0] for c in CASES])
def test_code_does_not_trigger(tmp_path, code, bad, near):
    report = validate(make(tmp_path, **(near or {})))
    assert code not in report.codes(), report.format_text()


def test_every_code_has_a_case_and_docs():
    # E603: tests/test_arc.py; E114 (permission denied) needs a non-root user: tests/test_faults_data.py
    assert {c[0] for c in CASES} | {"W901", "E902", "E603", "E114"} == set(CODES)
    docs = (Path(__file__).resolve().parents[1] / "docs" / "validate.md").read_text()
    for code in CODES:
        assert f"`{code}`" in docs, code


# ----------------------------------------------------------------------------- clean datasets

def test_clean_dataset_has_no_findings(tmp_path):
    report = validate(make(tmp_path))
    assert report.findings == [], report.format_text()
    assert report.valid
    st = report.stats
    assert st["splits"]["train"] == {"examples": 12, "puzzles": 6, "groups": 3, "sets": ["all"]}
    assert st["splits"]["test"]["examples"] == 8
    assert (st["vocab_size"], st["seq_len"], st["num_puzzle_identifiers"]) == (V, S, 4)


def test_dataset_writer_output_validates_clean(tmp_path):
    rng = np.random.default_rng(3)
    with DatasetWriter(tmp_path / "w", vocab_size=V, seq_len=9) as w:
        for split, n in (("train", 30), ("test", 6)):
            with w.split(split) as s:
                for g in range(n):
                    s.add_group(Group([Puzzle(f"p{p}", rng.integers(1, V, (1 + p, 9)), rng.integers(1, V, (1 + p, 9)))
                                       for p in range(1 + g % 3)], key=f"{split}-{g}"))
    report = validate(tmp_path / "w")
    assert report.findings == [], report.format_text()


def _hrm_split(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 11, (n, 81)).astype(np.uint8)
    y = rng.integers(1, 11, (n, 81)).astype(np.uint8)
    aug = 3  # HRM sudoku: one group per base puzzle, its augmentations are puzzles of one example each
    return dict(inputs=x, labels=y, puzzle_identifiers=np.zeros(n, np.int32),
                puzzle_indices=np.arange(n + 1, dtype=np.int32),
                group_indices=np.arange(0, n + 1, aug, dtype=np.int32))


def test_hrm_layout_is_valid(tmp_path):
    root = tmp_path / "sudoku"
    for split, n, seed in (("train", 30, 0), ("test", 9, 1)):
        a = _hrm_split(n, seed)
        (root / split).mkdir(parents=True)
        for k, v in a.items():
            np.save(root / split / f"all__{k}.npy", v)
        meta = dict(seq_len=81, vocab_size=11, pad_id=0, ignore_label_id=0, blank_identifier_id=0,
                    num_puzzle_identifiers=1, total_groups=len(a["group_indices"]) - 1, mean_puzzle_examples=1,
                    sets=["all"])
        (root / split / "dataset.json").write_text(json.dumps(meta))
    (root / "identifiers.json").write_text(json.dumps(["<blank>"]))
    report = validate(root)
    assert report.valid, report.format_text()
    assert report.codes() == {"W506"}


# ----------------------------------------------------------------------------- behaviour

def test_mean_puzzle_examples_per_group_explains_lr_schedule(tmp_path):
    report = validate(make(tmp_path, meta=_meta("train", mean_puzzle_examples=4.0)))
    (f,) = [f for f in report.findings if f.code == "E502"]
    assert "GROUP" in f.message and "LR schedule" in f.message and "2x too long" in f.message
    assert (f.split, f.file, f.index) == ("train", "dataset.json", None)


def test_findings_are_capped(tmp_path):
    def edit(sp):
        sp["train"]["inputs"] = sp["train"]["inputs"].copy()
        sp["train"]["inputs"][:, 3] = 99
    report = validate(make(tmp_path, edit=edit))
    e401 = [f for f in report.findings if f.code == "E401"]
    assert [f.index for f in e401] == [0, 1, 2, 3, 4, None]
    assert "7 more rows" in e401[-1].message
    assert report.stats["finding_counts"]["E401"] == 12
    assert e401[0].file == "all__inputs.npy" and e401[0].set == "all" and e401[0].split == "train"
    assert "token 99 at position 3" in e401[0].message


def test_chunked_scan_and_cap_over_many_chunks(tmp_path, monkeypatch):
    import hrm_data.validate as v
    monkeypatch.setattr(v, "CHUNK_BYTES", 1)  # 1024-row chunks

    def edit(sp):
        big = _split(1500, 7, 0)
        big["inputs"][::100, 0] = 0
        big["inputs"][::100] = 0   # all-pad rows, spread over chunks
        sp["train"] = big
    report = validate(make(tmp_path, edit=edit))
    assert report.stats["finding_counts"]["W801"] == 60
    assert [f.index for f in report.findings if f.code == "W801"][:5] == [0, 100, 200, 300, 400]
    # the all-pad rows share input and identifier 1 or 3 ... with different labels: ill-posed, found by hashing
    assert "E701" in report.codes()


def test_hash_collisions_never_produce_findings(tmp_path, monkeypatch):
    """Every row hashing alike must cost time, not correctness: candidates are confirmed on the rows."""
    import hrm_data.validate as v
    monkeypatch.setattr(v, "row_hash", lambda rows, dtype=None: np.zeros(rows.shape[0], np.uint64))
    report = validate(make(tmp_path))
    assert report.findings == [], report.format_text()
    # with a real leak, whatever is reported is true (a collision may hide a finding, never invent one)
    report = validate(make(tmp_path, edit=_copy_row("train", 5, "test", 3), name="leak"))
    assert {f.index for f in report.findings if f.code == "E601"} <= {3}
    assert {f.code for f in report.findings} <= {"E601"}


def test_row_hash_is_by_value_across_dtypes():
    from hrm_data.validate import row_hash
    a = np.arange(162).reshape(2, 81) % 11
    h8 = row_hash(a.astype(np.uint8), np.dtype(np.int32))
    h32 = row_hash(a.astype(np.int32), np.dtype(np.int32))
    assert (h8 == h32).all() and h8[0] != h8[1]


def test_leakage_across_different_token_dtypes(tmp_path):
    edit = _chain(_copy_row("train", 5, "test", 3), _set("test", "inputs", lambda a: a.astype(np.int32)),
                  _set("test", "labels", lambda a: a.astype(np.uint16)))
    report = validate(make(tmp_path, edit=edit))
    assert [(f.split, f.index) for f in report.findings if f.code == "E601"] == [("test", 3)]
    assert "train/all row 5" in [f for f in report.findings if f.code == "E601"][0].message


def test_not_a_dataset(tmp_path):
    with pytest.raises(NotADataset, match="no such"):
        validate(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotADataset, match="identifiers.json"):
        validate(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADataset, match="not a directory"):
        validate(tmp_path / "file")


def test_finding_api():
    f = Finding("B101", "error", split="train", set="all", file="all__labels.npy", index=4711, message="fix it")
    assert f.format() == "error B101 train/all__labels.npy[4711]: fix it"
    assert list(f.to_dict()) == ["code", "severity", "split", "set", "file", "index", "message"]
    with pytest.raises(ValueError):
        Finding("B1", "fatal", message="x")
    assert Finding("E1", "warning", message="m").location == "dataset"
    assert Finding("E1", "warning", split="test", set="all", message="m").location == "test/all"


# ----------------------------------------------------------------------------- --deep

class _FakeBuilder:
    def __init__(self, check):
        self.check = check


def _deep(tmp_path, monkeypatch, builder, prov={"builder": "fake"}):
    from hrm_data import registry
    if builder is not None:
        monkeypatch.setattr(registry, "get", lambda name: builder if name == "fake" else registry.UnknownBuilder(name))
    meta = {"hrm_data": prov} if prov is not None else {}
    return validate(make(tmp_path, meta={"train": meta, "test": {}}), deep=True)


def test_deep_runs_builder_check(tmp_path, monkeypatch):
    seen = []

    def check(ds):
        seen.append(ds.path)
        return [Finding("B101", "error", split="train", set="all", file="all__labels.npy", index=2, message="bad"),
                {"code": "B102", "severity": "warning", "split": None, "set": None, "file": None, "index": None,
                 "message": "meh"}]
    report = _deep(tmp_path, monkeypatch, _FakeBuilder(check))
    assert seen and report.codes() == {"B101", "B102"} and not report.valid
    assert report.format_text().splitlines()[-1].startswith("INVALID: 1 error, 1 warning")
    assert report.stats["finding_counts"] == {"B101": 1, "B102": 1}


def test_deep_check_clean(tmp_path, monkeypatch):
    report = _deep(tmp_path, monkeypatch, _FakeBuilder(lambda ds: []))
    assert report.findings == []


@pytest.mark.parametrize("builder,prov,why", [
    (_FakeBuilder(None), {"builder": "fake"}, "defines no check"),
    (None, {"builder": "no-such-builder"}, "not available"),
    (None, None, "naming the builder"),
])
def test_deep_skipped_warns(tmp_path, monkeypatch, builder, prov, why):
    report = _deep(tmp_path, monkeypatch, builder, prov)
    (f,) = report.findings
    assert f.code == "W901" and why in f.message and report.valid


def test_deep_check_crash_is_e902(tmp_path, monkeypatch):
    def check(ds):
        raise RuntimeError("boom")
    report = _deep(tmp_path, monkeypatch, _FakeBuilder(check))
    assert [f.code for f in report.findings] == ["E902"] and "boom" in report.findings[0].message


def test_deep_not_run_without_flag(tmp_path, monkeypatch):
    report = validate(make(tmp_path, meta={"train": {"hrm_data": {"builder": "no-such"}}, "test": {}}))
    assert report.findings == []


# ----------------------------------------------------------------------------- CLI

def _cli(*args):
    from hrm_data.cli import main
    return CliRunner().invoke(main, ["validate", *map(str, args)])


def test_cli_exit_0_text(tmp_path):
    r = _cli(make(tmp_path))
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1].startswith("valid: 0 errors, 0 warnings")
    assert "train: 12 examples, 6 puzzles, 3 groups" in r.output


def test_cli_exit_1_text(tmp_path):
    r = _cli(make(tmp_path, edit=_put("train", "labels", (3, 1), 50)))
    assert r.exit_code == 1
    assert "error E402 train/all__labels.npy[3]: token 50 at position 1" in r.output
    assert r.output.strip().splitlines()[-1].startswith("INVALID: 1 error")


@pytest.mark.parametrize("make_path", [lambda p: p / "missing", lambda p: (p / "empty").mkdir() or p / "empty"])
def test_cli_exit_2(tmp_path, make_path):
    from hrm_data.cli import main
    path = make_path(tmp_path)
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(path) in lines[0]


@pytest.mark.parametrize("bad,code", [(False, 0), (True, 1)])
def test_cli_json(tmp_path, bad, code):
    edit = _put("train", "inputs", (0, 0), 77) if bad else None
    from hrm_data.cli import main
    r = CliRunner().invoke(main, ["validate", str(make(tmp_path, edit=edit, meta=_meta("test", total_puzzles=_DROP))),
                                  "--json"])
    assert r.exit_code == code
    out = json.loads(r.stdout)
    assert set(out) == {"valid", "errors", "warnings", "stats"} and out["valid"] is (not bad)
    for f in out["errors"] + out["warnings"]:
        assert list(f) == ["code", "severity", "split", "set", "file", "index", "message"]
    assert [w["code"] for w in out["warnings"]] == ["W506"]
    if bad:
        assert out["errors"][0] == {**out["errors"][0], "code": "E401", "severity": "error", "split": "train",
                                    "set": "all", "file": "all__inputs.npy", "index": 0}
    assert out["stats"]["splits"]["train"]["examples"] == 12


def test_run_cli_progress_does_not_touch_stdout(tmp_path, capsys, monkeypatch):
    import hrm_data.validate as v
    monkeypatch.setattr(v, "PROGRESS_MIN_ROWS", 1)
    assert run_cli(make(tmp_path), as_json=True, progress=True) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["valid"] is True


def test_report_api(tmp_path):
    report = validate(make(tmp_path, edit=_put("train", "labels", 0, 0)))
    assert isinstance(report, Report)
    assert report.valid and [f.code for f in report.warnings] == ["W805"] and report.errors == []
    d = report.to_dict()
    assert d["valid"] is True and d["warnings"][0]["index"] == 0
    assert report.format_text().splitlines()[-1].startswith("valid: 0 errors, 1 warning (")


def test_two_sets_per_split(tmp_path):
    """Counts add up over sets; findings name the set; conflicts are found across sets of a split."""
    import shutil
    path = make(tmp_path)
    for f in ("inputs", "labels", "puzzle_identifiers", "puzzle_indices", "group_indices"):
        shutil.copy(path / "train" / f"all__{f}.npy", path / "train" / f"extra__{f}.npy")
    lab = np.load(path / "train" / "extra__labels.npy")
    lab[4] = (lab[4] % 10) + 1  # same input and identifier as all row 4, different label
    np.save(path / "train" / "extra__labels.npy", lab)
    m = json.loads((path / "train" / "dataset.json").read_text())
    m.update(sets=["all", "extra"], total_groups=6, total_puzzles=12)
    (path / "train" / "dataset.json").write_text(json.dumps(m))
    report = validate(path)
    assert report.stats["splits"]["train"] == {"examples": 24, "puzzles": 12, "groups": 6, "sets": ["all", "extra"]}
    (f,) = report.findings
    assert (f.code, f.set, f.index) == ("E701", "extra", 4) and "train/all row 4" in f.message
