"""Fault injection for datasets and the hrm-data CLI (issue 7). Run alone with `pytest -m faults`.

Every file of a dataset is replaced by a directory, a FIFO, a symlink loop, an empty file, a
truncated file (and, as a non-root user, an unreadable file); every metadata field gets huge,
negative, fractional, boolean, null and wrongly-typed values. validate / plan / show / view /
fingerprint must then answer with exit 1 or 2 (0 where the file is not read), one line, no
traceback, no hang, and touch nothing. A build killed with SIGKILL at random points leaves either
nothing, the old dataset or the complete new one at the target, and the next build leaves no temp.
A full disk (a 2 MiB tmpfs, as root) leaves no temp folder behind.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from data_faults import assert_clean_exit, invoke, small_dataset, snapshot
from hrm_data.format import DatasetWriter, Puzzle, fingerprint
from hrm_data.validate import validate

pytestmark = pytest.mark.faults

COMMANDS = {
    "validate": lambda p: ["validate", p],
    "plan": lambda p: ["plan", p, "-b", "2", "-e", "10"],
    "show": lambda p: ["show", p, "--no-color"],
    "show-test": lambda p: ["show", p, "--split", "test", "--index", "1", "--no-color"],
    "fingerprint": lambda p: ["fingerprint", p],
    "view": lambda p: ["view", p, "--html", VIEW_HTML],
}
VIEW_HTML = Path(tempfile.gettempdir()) / f"hrm-faults-{os.getpid()}.html"  # outside every snapshot


@pytest.fixture(scope="module", autouse=True)
def _remove_view_html():
    yield
    VIEW_HTML.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return small_dataset(tmp_path_factory.mktemp("base") / "ds")


def dataset_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _fault(path: Path, kind: str) -> None:
    data = path.read_bytes()
    path.unlink()
    if kind == "dir":
        path.mkdir()
        (path / "x").write_text("x")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        os.symlink(path.name, path)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: max(1, len(data) // 2)])
    elif kind == "dangling":
        os.symlink("no-such-file", path)


def _check_all_commands(ds: Path, tmp: Path, strict_validate: bool) -> None:
    before = snapshot(tmp)
    for name, args in COMMANDS.items():
        res = invoke(args(ds))
        allowed = (1, 2) if (name == "validate" and strict_validate) else (0, 1, 2)
        assert_clean_exit(res, allowed)
    assert snapshot(tmp) == before, "a read-only command changed files"


@pytest.mark.parametrize("kind", ["dir", "fifo", "loop", "empty", "truncated", "dangling"])
def test_every_file_replaced(tmp_path, base, kind):
    for rel in dataset_files(base):
        case = tmp_path / rel.replace("/", "_")
        ds = case / "ds"
        shutil.copytree(base, ds)
        _fault(ds / rel, kind)
        # a broken side table is a warning (validate exits 0); everything else is an error
        _check_all_commands(ds, case, strict_validate=not rel.endswith(".parquet"))


HOSTILE = [10**30, -(10**30), 2**63, -1, 0, 1.5, 1e300, float("inf"), float("nan"), True, None, "7", [], {},
           [1, 2], {"a": 1}]


def _dump(meta: dict) -> str:
    return json.dumps(meta, allow_nan=True)


@pytest.mark.parametrize("field", ["pad_id", "ignore_label_id", "blank_identifier_id", "vocab_size", "seq_len",
                                   "num_puzzle_identifiers", "total_groups", "mean_puzzle_examples", "sets",
                                   "total_puzzles", "hrm_data", "grid_shape"])
def test_hostile_metadata_values(tmp_path, base, field):
    ds = tmp_path / "ds"
    shutil.copytree(base, ds)
    meta_path = ds / "train" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    for value in HOSTILE + [["../../etc/all"], ["a/b"], [".."], [""], ["all", 3]]:
        meta_path.write_text(_dump({**meta, field: value}))
        for name, args in COMMANDS.items():
            res = invoke(args(ds))
            assert_clean_exit(res)
        rep_ok = validate(ds)  # the library answers with findings, never an exception
        assert rep_ok.findings is not None


def test_hostile_rendering_metadata_never_stops_show(tmp_path, base):
    ds = tmp_path / "ds"
    shutil.copytree(base, ds)
    meta_path = ds / "train" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    for key in ("palette", "glyphs", "token_names", "grid_shape"):
        for value in ([1, 2, 3], ["#zzzzzz"] * 9, [None] * 9, [[1]] * 9, "abc", 5, {"a": 1}, [10**30, 2],
                      [-1, -6], [0, 0], ["x"] * 100, [2, 3, 4]):  # 100 names: more than there are glyphs
            meta_path.write_text(_dump({**meta, key: value}))
            assert_clean_exit(invoke(["show", ds, "--color"]), (0,))


@pytest.mark.parametrize("text", [
    "[" * 200_000 + "]" * 200_000,                  # nested 200,000 deep
    '{"vocab_size": ' + "9" * 5000 + "}",            # a 5,000-digit integer
    "\xff\xfe not utf-8",
    "",
    "null",
    '"<blank>"',
    "[1, 2, 3]",
    '[["<blank>"]]',
    '{"a": 1}',
])
@pytest.mark.parametrize("rel", ["identifiers.json", "train/dataset.json"])
def test_hostile_json(tmp_path, base, rel, text):
    ds = tmp_path / "ds"
    shutil.copytree(base, ds)
    (ds / rel).write_bytes(text.encode("utf-8", "surrogateescape") if text.isascii() else text.encode("latin-1"))
    before = snapshot(tmp_path)
    for name, args in COMMANDS.items():
        res = invoke(args(ds))
        assert_clean_exit(res, (1, 2) if name == "validate" else (0, 1, 2))
    assert snapshot(tmp_path) == before


def _npy_with_header(path: Path, shape_text: str, dtype: str = "<i4") -> None:
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (dtype, shape_text)
    header = header.ljust(118) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 64)


@pytest.mark.parametrize("shape", ["(-1, 6)", "(-5,)", "(10**30, 6)", "(99999999999999999999,)", "(2, -3)",
                                   "(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20)"])
@pytest.mark.parametrize("rel", ["train/all__inputs.npy", "train/all__puzzle_indices.npy"])
def test_hostile_npy_headers(tmp_path, base, rel, shape):
    ds = tmp_path / "ds"
    shutil.copytree(base, ds)
    _npy_with_header(ds / rel, shape)
    for name, args in COMMANDS.items():
        assert_clean_exit(invoke(args(ds)), (1, 2) if name == "validate" else (0, 1, 2))


def test_zero_width_inputs(tmp_path):
    from hrm_data.format import write_arrays
    a = dict(inputs=np.zeros((3, 0), np.uint8), labels=np.zeros((3, 0), np.uint8),
             puzzle_identifiers=np.zeros(3, np.int32), puzzle_indices=np.arange(4, dtype=np.int32),
             group_indices=np.arange(4, dtype=np.int32))
    ds = write_arrays(tmp_path / "ds", {"train": a, "test": a}, vocab_size=3)
    for name, args in COMMANDS.items():
        assert_clean_exit(invoke(args(ds)), (1, 2) if name == "validate" else (0, 1, 2))
    assert "E508" in validate(ds).codes()  # seq_len 0


# ----------------------------------------------------------------------------- unreadable (non-root)

def _as_nobody() -> list[str] | None:
    if os.geteuid() != 0:
        return []  # already not root: chmod 000 really hides the file
    if shutil.which("setpriv") is None:
        return None
    probe = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "true"],
                           capture_output=True)
    if probe.returncode != 0:
        probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "true"],
                               capture_output=True)
        if probe.returncode != 0:
            return None
        return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def test_unreadable_files_say_permission_denied():
    prefix = _as_nobody()
    if prefix is None:
        pytest.skip("running as root without a working setpriv: cannot make a file unreadable")
    work = Path(tempfile.mkdtemp(prefix="hrm-perm-"))
    try:
        os.chmod(work, 0o755)
        ds = small_dataset(work / "ds")
        code = "from hrm_data.cli import main; main()"
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HOME": str(work)}

        def run(*args):
            return subprocess.run([*prefix, sys.executable, "-c", code, *map(str, args)], capture_output=True,
                                  text=True, timeout=60, env=env, cwd=work)
        probe = run("--version")
        if probe.returncode != 0:
            pytest.skip(f"the unprivileged user cannot run this checkout's python: {probe.stderr.strip()[-200:]}")
        f = ds / "train" / "all__inputs.npy"
        os.chmod(f, 0)
        r = run("validate", ds)
        assert r.returncode == 1 and "E114" in r.stdout and "permission denied" in r.stdout, r.stdout + r.stderr
        assert "corrupt" not in r.stdout
        for args in (["show", ds], ["fingerprint", ds]):
            r = run(*args)
            assert r.returncode == 2 and "permission denied" in r.stderr and "Traceback" not in r.stderr, r.stderr
        os.chmod(f, 0o644)
        os.chmod(ds / "train", 0)
        r = run("validate", ds)
        assert r.returncode == 1 and "E114" in r.stdout, r.stdout + r.stderr
        r = run("plan", ds, "-b", 2, "-e", 10)
        assert r.returncode == 2 and "permission denied" in r.stderr, r.stderr
        os.chmod(ds / "train", 0o755)
        os.chmod(ds, 0)
        r = run("validate", ds)  # click's own PATH check answers first here: exit 2, one line
        assert r.returncode == 2 and ("permission denied" in r.stderr or "not readable" in r.stderr), r.stderr
        assert "Traceback" not in r.stderr
    finally:
        for p in [work, *work.rglob("*")]:
            try:
                os.chmod(p, 0o755)
            except OSError:
                pass
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------- kill -9 during a build

BUILD = """
import sys, time, numpy as np
from hrm_data.format import DatasetWriter, Group, Puzzle
target, groups = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(int(sys.argv[3]))
with DatasetWriter(target, vocab_size=9, seq_len=64, force=True) as w:
    for split, n in (("train", groups), ("test", groups // 4)):
        with w.split(split) as s:
            for g in range(n):
                x = rng.integers(1, 9, (2, 64))
                s.add_group(Group([Puzzle(str(g % 5), x, x)], key=f"{split}{g}", rows=[{"g": g}] * 2))
print("done", flush=True)
"""


@pytest.mark.parametrize("existing", [False, True])
def test_kill_9_at_random_points_of_a_build(tmp_path, existing):
    rnd = random.Random(7 + existing)
    target = tmp_path / "ds"
    old_fp = fingerprint(small_dataset(target)) if existing else None
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", BUILD, str(tmp_path / "probe"), "3000", "0"], check=True,
                   capture_output=True, timeout=120)
    full = time.perf_counter() - t0
    shutil.rmtree(tmp_path / "probe")
    for trial in range(3):
        proc = subprocess.Popen([sys.executable, "-c", BUILD, str(target), "3000", str(trial + 1)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rnd.uniform(0.2, 1.0) * full)
        proc.kill()
        out, _ = proc.communicate()
        if target.exists():
            fp = fingerprint(target)
            finished = b"done" in out or fp != old_fp
            if finished:  # killed after the commit: then the new dataset is complete
                assert validate(target).valid
                old_fp = fp
            else:
                assert fp == old_fp
        else:
            assert old_fp is None
        assert all(p.name == "ds" or p.name.startswith(".ds.") for p in tmp_path.iterdir())
    # the next build cleans up every temp left by the dead ones
    small_dataset(target, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


# ----------------------------------------------------------------------------- disk full (tmpfs)

def test_disk_full_on_a_real_tmpfs_leaves_no_temp(small_tmpfs):
    mnt = small_tmpfs("2m")
    with pytest.raises(OSError) as exc:
        with DatasetWriter(mnt / "ds", vocab_size=300, seq_len=1024) as w:
            with w.split("train") as s:
                for g in range(2000):  # 2000 x 1024 x uint16 = 4 MiB > 2 MiB
                    x = np.full((1, 1024), g % 300)
                    s.add_group([Puzzle("p", x, x)])
    assert exc.value.errno == 28  # ENOSPC
    assert os.listdir(mnt) == []  # the temp folder is gone: the disk is free again
    # and the CLI says so in one line, exit 2
    res = invoke(["build", "city-logistics", "--size", "30", "--train-scenarios", "400", "-q",
                  "--out", mnt / "city"], timeout=120)
    assert_clean_exit(res, (2,))
    assert "space" in res.output
    assert os.listdir(mnt) == []
