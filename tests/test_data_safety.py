"""Issue 7, dataset side: builds never destroy what appears at --out, --force replaces only a whole
dataset, a full disk leaves no temp folder, readers never leave the dataset folder, and every
failure is one line with the documented exit code (docs/guarantees.md)."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data_faults import assert_clean_exit, invoke, small_dataset
from hrm_data.format import Dataset, DatasetExistsError, DatasetWriter, FormatError, Puzzle, fingerprint
from hrm_data.validate import validate

CLI = [sys.executable, "-c", "from hrm_data.cli import main; main()"]


def _writer(path, force=False):
    w = DatasetWriter(path, vocab_size=5, seq_len=4, force=force)
    with w.split("train") as s:
        s.add_group([Puzzle("a", np.ones((1, 4), int), np.ones((1, 4), int))])
    return w


def _edit_meta(ds, split="train", **kv):
    p = ds / split / "dataset.json"
    p.write_text(json.dumps({**json.loads(p.read_text()), **kv}))


def _only(tmp_path, *names):
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


# ----------------------------------------------------------------------------- commit never replaces

def test_a_folder_that_appears_during_the_build_is_never_deleted(tmp_path):
    w = _writer(tmp_path / "X")
    (tmp_path / "X").mkdir()
    (tmp_path / "X" / "thesis.txt").write_text("precious")
    with pytest.raises(DatasetExistsError, match="appeared while this build ran"):
        w.close()
    assert (tmp_path / "X" / "thesis.txt").read_text() == "precious"
    _only(tmp_path, "X")  # and the build's temp folder is gone


@pytest.mark.parametrize("force", [False, True])
def test_two_writers_to_one_target_exactly_one_wins(tmp_path, force):
    a, b = _writer(tmp_path / "d", force), _writer(tmp_path / "d", force)
    a.close()
    fp = fingerprint(tmp_path / "d")
    if force:  # with --force the second replaces the first, which is a whole dataset: allowed
        b.close()
        assert validate(tmp_path / "d").valid
    else:
        with pytest.raises(DatasetExistsError, match="appeared"):
            b.close()
        assert fingerprint(tmp_path / "d") == fp
    _only(tmp_path, "d")


def test_two_concurrent_cli_builds_one_succeeds_one_exits_2(tmp_path):
    args = ["build", "city-logistics", "--size", "6", "--train-scenarios", "20", "--test-scenarios", "5", "-q",
            "--out", str(tmp_path / "X")]
    procs = [subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    assert loser[2].count("Error:") == 1 and ("appeared" in loser[2] or "already exists" in loser[2]), loser
    assert "Traceback" not in loser[2]
    _only(tmp_path, "X")
    assert validate(tmp_path / "X").valid


def test_force_rechecks_at_commit_time(tmp_path):
    small_dataset(tmp_path / "d")
    fp = fingerprint(tmp_path / "d")
    w = _writer(tmp_path / "d", force=True)
    (tmp_path / "d" / "notes.txt").write_text("mine")  # the dataset folder gets foreign content meanwhile
    with pytest.raises(DatasetExistsError, match="foreign entry 'notes.txt'"):
        w.close()
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine" and fingerprint(tmp_path / "d") == fp
    _only(tmp_path, "d")


@pytest.mark.parametrize("layout,why", [
    ({"identifiers.json": "[]", "thesis.txt": "x"}, "foreign entry 'thesis.txt'"),
    ({"identifiers.json": "[]"}, "no train"),
    ({"identifiers.json": "[]", "train/dataset.json": "{}", "test/dataset.json": "{}", "train/all__inputs.npy": ""},
     "set 'all' lacks labels"),
    ({"identifiers.json": "[]", "train/dataset.json": "{}", "test/dataset.json": "{}", "test/results/x": "1"},
     "foreign entry test/'results'"),
])
def test_force_refuses_anything_but_a_whole_dataset(tmp_path, layout, why):
    target = tmp_path / "t"
    for rel, text in layout.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(text)
    before = sorted(str(p.relative_to(target)) for p in target.rglob("*"))
    with pytest.raises(DatasetExistsError, match=why.replace("(", r"\(").replace("'", "'")):
        small_dataset(target, force=True)
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*")) == before
    res = invoke(["build", "city-logistics", "--size", "5", "--train-scenarios", "2", "--test-scenarios", "1",
                  "-q", "--force", "--out", target])
    assert_clean_exit(res, (2,))
    assert "not an HRM dataset" in res.output


def test_force_replaces_our_own_dataset_with_its_side_files(tmp_path):
    small_dataset(tmp_path / "d")
    assert (tmp_path / "d" / "train" / "examples.parquet").exists()
    small_dataset(tmp_path / "d", seed=1, force=True)
    assert validate(tmp_path / "d").valid
    _only(tmp_path, "d")


@pytest.mark.parametrize("kind", ["file", "fifo", "symlink"])
def test_out_that_is_not_a_folder_is_refused(tmp_path, kind):
    out = tmp_path / "out"
    small_dataset(tmp_path / "real")
    if kind == "file":
        out.write_text("x")
    elif kind == "fifo":
        os.mkfifo(out)
    else:
        out.symlink_to(tmp_path / "real")
    fp = fingerprint(tmp_path / "real")
    for force in ([], ["--force"]):
        res = invoke(["build", "city-logistics", "--size", "5", "--train-scenarios", "2", "--test-scenarios", "1",
                      "-q", *force, "--out", out])
        assert_clean_exit(res, (2,))
    assert os.path.lexists(out) and fingerprint(tmp_path / "real") == fp


def test_commit_without_renameat2_uses_a_safe_fallback(tmp_path, monkeypatch):
    from hrm_data import commit as commit_mod
    monkeypatch.setattr(commit_mod, "_renameat2", lambda a, b, flags: errno.ENOSYS)
    small_dataset(tmp_path / "d")                       # plain commit: exclusive mkdir + rename
    assert validate(tmp_path / "d").valid
    w = _writer(tmp_path / "x")
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("k")
    with pytest.raises(DatasetExistsError):
        w.close()
    assert (tmp_path / "x" / "keep").read_text() == "k"
    small_dataset(tmp_path / "d", seed=3, force=True)   # --force: moved aside, replaced, old removed
    assert validate(tmp_path / "d").valid
    _only(tmp_path, "d", "x")


def test_rename_noreplace_never_replaces(tmp_path):
    from hrm_data import commit as commit_mod
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()  # even an empty folder is not replaced
    with pytest.raises(FileExistsError):
        commit_mod.rename_noreplace(tmp_path / "a", tmp_path / "b")
    assert (tmp_path / "a").is_dir() and (tmp_path / "b").is_dir()


# ----------------------------------------------------------------------------- disk full

class _FullDisk:
    """A file whose every write, flush and close fails with ENOSPC (closing re-flushes)."""

    closed = False

    def _fail(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    write = flush = seek = close = _fail


def test_disk_full_abort_survives_the_second_error_and_removes_the_temp(tmp_path):
    w = DatasetWriter(tmp_path / "d", vocab_size=5, seq_len=4)
    sw = w.split("train")
    sw.add_group([Puzzle("a", np.ones((1, 4), int), np.ones((1, 4), int))])
    real = sw._inputs.f
    sw._inputs.f = _FullDisk()
    with pytest.raises(OSError) as e:
        w.close()
    real.close()
    assert e.value.errno == errno.ENOSPC
    _only(tmp_path)


def test_disk_full_in_the_cli_is_one_line_exit_2(tmp_path, monkeypatch):
    from hrm_data import format as fmt

    def full(self, block):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(fmt._NpyAppender, "append", full)
    res = invoke(["build", "city-logistics", "--size", "5", "--train-scenarios", "2", "-q", "--out", tmp_path / "c"])
    assert_clean_exit(res, (2,))
    assert "No space left" in res.output
    _only(tmp_path)


# ----------------------------------------------------------------------------- readers stay inside

def test_set_names_with_path_components_are_refused_by_every_reader(tmp_path):
    small_dataset(tmp_path / "other")
    ds = small_dataset(tmp_path / "ds")
    for split in ("train", "test"):
        _edit_meta(ds, split, sets=["../../other/train/all"])
    with pytest.raises(FormatError, match="not a plain name"):
        Dataset(ds).train.set("../../other/train/all")
    with pytest.raises(FormatError, match="not a plain name"):
        fingerprint(ds)
    for args in (["show", ds], ["fingerprint", ds], ["plan", ds, "-b", 2, "-e", 10]):
        res = invoke(args)
        assert_clean_exit(res, (2,))
        assert "not a plain name" in res.output
    res = invoke(["validate", ds, "--deep"])
    assert_clean_exit(res, (1,))
    assert "E110" in res.output


def test_non_object_provenance_is_an_error_not_a_crash(tmp_path):
    ds = small_dataset(tmp_path / "ds")
    _edit_meta(ds, hrm_data="x")
    res = invoke(["validate", ds, "--deep"])
    assert_clean_exit(res, (1,))
    assert "E111" in res.output


def test_huge_vocab_and_infinite_mean_are_refused_everywhere(tmp_path):
    for key, value, code in (("vocab_size", 10**12, "E509"), ("mean_puzzle_examples", float("inf"), "E508")):
        ds = small_dataset(tmp_path / key)
        _edit_meta(ds, **{key: value})
        assert code in validate(ds).codes()
        for args in (["plan", ds, "-b", 2, "-e", 10], ["show", ds], ["fingerprint", ds]):
            assert_clean_exit(invoke(args), (2,))


def test_side_table_with_list_or_null_keys(tmp_path):
    import pandas as pd
    ds = small_dataset(tmp_path / "ds")
    for keys in ([[1, 2]] * 4, [None] * 4):
        for split, n in (("train", 4), ("test", 2)):
            pd.DataFrame({"example": np.arange(n), "group_key": keys[:n]}).to_parquet(ds / split / "examples.parquet")
        res = invoke(["validate", ds])
        assert_clean_exit(res, (0,))  # a side-table problem is a warning
        if keys[0] is not None:
            assert "W603" in res.output and "group_key" in res.output
        assert_clean_exit(invoke(["show", ds, "--no-color"]), (0,))


# ----------------------------------------------------------------------------- plan hangs and limits

def _variable_dataset(tmp_path):
    return small_dataset(tmp_path / "v", groups=6, vary=True)


@pytest.mark.parametrize("args", [["-e", 10**19], ["-e", 999999999999999989], ["-e", 10**18, "-i", 10**17],
                                  ["-b", 10**18, "-e", 10], ["-e", 10, "--seed", 10**30],
                                  ["-e", 10**15, "-i", 10**15], ["-e", 10, "--lr-warmup-steps", 10**30]])
def test_plan_never_hangs_on_huge_arguments(tmp_path, args):
    ds = _variable_dataset(tmp_path)
    res = invoke(["plan", ds, "-b", 4, *args], timeout=15)
    assert_clean_exit(res)


@pytest.mark.parametrize("opt,want", [("--size", "seq_len"), ("--workers", "--workers")])
def test_build_size_beyond_any_model_is_refused_at_once(tmp_path, opt, want):
    res = invoke(["build", "city-logistics", opt, "10000000", "-q", "--out", tmp_path / "c"], timeout=15)
    assert_clean_exit(res, (2,))
    assert want in res.output
    _only(tmp_path)


def test_a_fifo_given_as_the_dataset_is_named_as_such(tmp_path):
    os.mkfifo(tmp_path / "f")
    for cmd in (["show"], ["fingerprint"], ["validate"], ["plan", "-b", 1, "-e", 1]):
        res = invoke([cmd[0], tmp_path / "f", *cmd[1:]])
        assert_clean_exit(res, (2,))
        assert "FIFO" in res.output


# ----------------------------------------------------------------------------- exit-code contract

def test_internal_error_is_exit_3_with_a_hint_and_debug_shows_the_traceback(tmp_path, monkeypatch):
    import hrm_data.validate as v

    def boom(*a, **k):
        raise RuntimeError("kaboom")
    monkeypatch.setattr(v, "validate", boom)
    res = invoke(["validate", tmp_path])
    assert res.exit_code == 3
    assert res.output.strip() == ("hrm-data: internal error: RuntimeError: kaboom (this is a bug; rerun with --debug "
                                  "or HRM_DEBUG=1 for the traceback)")
    res = invoke(["--debug", "validate", tmp_path])
    assert res.exit_code == 3 and "Traceback" in res.output and "kaboom" in res.output
    from click.testing import CliRunner
    from hrm_data.cli import main
    res = CliRunner(env={"HRM_DEBUG": "1"}).invoke(main, ["validate", str(tmp_path)])
    assert res.exit_code == 3 and "Traceback" in res.output
    res = invoke(["validate", tmp_path])  # --debug does not stick to later calls
    assert "Traceback" not in res.output


def test_a_dataset_error_that_escapes_a_command_is_still_exit_2(tmp_path, monkeypatch):
    import hrm_data.validate as v
    from hrm_data.format import FormatError as FE

    def unreadable(*a, **k):
        raise FE(f"{tmp_path}/x.npy: truncated")
    monkeypatch.setattr(v, "validate", unreadable)
    res = invoke(["validate", tmp_path])
    assert_clean_exit(res, (2,))
    assert "truncated" in res.output


def test_ctrl_c_is_exit_130(tmp_path, monkeypatch):
    import hrm_data.validate as v

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(v, "validate", interrupted)
    assert invoke(["validate", tmp_path]).exit_code == 130


def test_non_utf8_paths_on_a_strict_utf8_stdout(tmp_path):
    raw = os.fsencode(tmp_path) + b"/data-\xff\xfe"
    small_dataset(Path(os.fsdecode(raw)))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    for args, want in ((["validate", raw], 0), (["validate", raw + b"-missing"], 2)):
        r = subprocess.run(CLI + args, capture_output=True, env=env, timeout=60)
        assert r.returncode == want, r.stderr
        assert b"Traceback" not in r.stderr and b"internal error" not in r.stderr
