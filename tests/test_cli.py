"""`hrm-data` commands that belong to the foundation: builders, build, show, fingerprint."""
import subprocess
import sys
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from click.testing import CliRunner

from hrm_data import registry
from hrm_data.cli import main
from hrm_data.format import Dataset, fingerprint


@pytest.fixture
def parity(monkeypatch):
    eps = dict(registry._entry_points())
    eps["parity"] = EntryPoint("parity", "parity_plugin:Parity", registry.GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: eps)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_help_is_fast_and_torch_free():
    code = "import sys, hrm_data.cli, hrm_data.validate, hrm_data.plan, hrm_data.sampler; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_builders_and_build_help(parity):
    r = run("builders")
    assert r.exit_code == 0 and "parity" in r.output and "running parity" in r.output
    r = run("build", "parity", "--help")
    assert r.exit_code == 0
    assert "--train-groups" in r.output and "default: 1000" in r.output and "--force" in r.output


def test_build_writes_and_refuses_overwrite(parity, tmp_path):
    out = tmp_path / "p"
    r = run("build", "parity", "--out", out, "--train-groups", 20, "--test-groups", 5, "-q")
    assert r.exit_code == 0, r.output
    ds = Dataset(out)
    assert ds.train.metadata.total_groups == 20 and ds.test.metadata.total_groups == 5
    prov = ds.train.metadata.provenance
    assert prov["builder"] == "parity" and prov["options"]["train_groups"] == 20
    fp = fingerprint(out)
    r = run("build", "parity", "--out", out, "-q")
    assert r.exit_code == 2 and "--force" in r.output and fingerprint(out) == fp
    r = run("build", "parity", "--out", out, "--train-groups", 20, "--test-groups", 5, "-q", "--force")
    assert r.exit_code == 0 and fingerprint(out) == fp  # same seed, same bytes


def test_unknown_builder_is_exit_2():
    r = run("build", "no-such-builder")
    assert r.exit_code == 2 and "unknown builder 'no-such-builder'" in r.output


def test_show(parity, tmp_path):
    out = tmp_path / "p"
    run("build", "parity", "--out", out, "--train-groups", 3, "--test-groups", 2, "--length", 16, "-q")
    r = run("show", out, "--split", "test", "--index", 1, "--no-color")
    assert r.exit_code == 0, r.output
    assert "test example 1" in r.output and "identifier 1 (parity)" in r.output and "group 1" in r.output
    assert "group_key=test-1" in r.output
    x = Dataset(out).test.set("all").inputs[1]
    first_row = r.output.split("input:\n")[1].splitlines()[0]
    assert first_row.split() == [["p", "z", "o"][v] for v in x[:4]]
    r = run("show", out, "--index", 99)
    assert r.exit_code == 2 and "out of range" in r.output
    r = run("show", tmp_path / "nothing")
    assert r.exit_code == 2 and "no such dataset" in r.output


def test_fingerprint_command(parity, tmp_path):
    out = tmp_path / "p"
    run("build", "parity", "--out", out, "--train-groups", 3, "--test-groups", 2, "-q")
    r = run("fingerprint", out)
    assert r.exit_code == 0 and r.output.strip() == fingerprint(out)


def test_glyphs_are_distinct():
    from hrm_data.render import token_glyphs
    names = ["pad", "large", "large_jam", "small", "small_jam", "start", "start_car", "path", "park"]
    g = token_glyphs(names, len(names))
    assert len(set(g)) == len(names) and g[0] == "p" and g[1] == "l"
    assert token_glyphs(names, 3, glyphs=["."] * 0 + [".", "=", "J"]) == [".", "=", "J"]


def test_build_errors_are_one_line_exit_2(parity, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    r = run("build", "parity", "--out", precious, "--force", "-q")
    assert r.exit_code == 2 and "not an HRM dataset" in r.output
    assert (precious / "notes.txt").read_text() == "keep me"
    blocker = tmp_path / "afile"
    blocker.write_text("")
    r = run("build", "parity", "--out", blocker / "sub", "-q")
    assert r.exit_code == 2 and "cannot write the dataset here" in r.output and "Traceback" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "precious"]


def test_show_on_arrays_that_do_not_fit_metadata(tmp_path):
    from hrm_data.format import write_arrays
    x = np.ones((2, 4), np.uint8)
    arrays = dict(inputs=x, labels=x, puzzle_identifiers=np.zeros(2, np.int32),
                  puzzle_indices=np.arange(3, dtype=np.int32), group_indices=np.arange(3, dtype=np.int32))
    write_arrays(tmp_path / "d", {"train": arrays, "test": arrays}, vocab_size=3,
                 metadata_overrides={"train": {"seq_len": 7, "grid_shape": [1, 7]}})
    r = run("show", tmp_path / "d", "--no-color")
    assert r.exit_code == 2 and "hrm-data validate" in r.output and "Traceback" not in r.output
