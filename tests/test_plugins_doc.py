"""docs/plugins.md is runnable: its package layout, pyproject and builder agree, the builder
builds a valid dataset, and its hrm-train command uses only real keys."""
import re
import shlex
import sys
import types
from pathlib import Path

import pytest

from hrm_data.builder import build
from hrm_data.registry import GROUP
from hrm_data.validate import validate
from hrm_model.config import parse_overrides

DOC = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.S)


def test_plugin_package_in_the_doc_is_complete_and_builds_a_valid_dataset(tmp_path):
    tomllib = pytest.importorskip("tomllib")   # Python >= 3.11
    (pyproject,) = [b for b in _blocks("toml") if "[build-system]" in b]
    meta = tomllib.loads(pyproject)
    assert meta["build-system"]["build-backend"] and meta["project"]["name"]
    (target,) = meta["project"]["entry-points"][GROUP].values()
    module, cls = target.split(":")
    layout = next(b for b in _blocks("") if "pyproject.toml" in b)
    assert "src/" + module.replace(".", "/") + ".py" in layout and "__init__.py" in layout
    (source,) = [b for b in _blocks("python") if f"class {cls}(Builder)" in b]
    mod = types.ModuleType(module)
    exec(compile(source, str(DOC), "exec"), mod.__dict__)
    builder = getattr(mod, cls)()
    out = build(builder, tmp_path / "parity", {"train_groups": 50, "test_groups": 10}, progress=False)
    report = validate(out)
    assert report.valid, report.format_text()
    # at 10,000 strings of 16 bits, independent draws per split would share about 15 with test (E602)
    out = build(builder, tmp_path / "parity-10k", {"train_groups": 10000, "test_groups": 100}, progress=False)
    report = validate(out)
    assert report.valid, report.format_text()


def test_the_docs_training_command_uses_real_keys():
    (cmd,) = [b for b in _blocks("sh") if b.lstrip().startswith("hrm-train data/bitsort")]
    words = shlex.split(cmd.replace("\\\n", " "))
    flat = parse_overrides([w for w in words if "=" in w])
    assert flat["arch.halt_max_steps"] == 1 and flat["epochs"] % flat["eval_interval"] == 0
