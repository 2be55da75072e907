"""`hrm-train` on the command line: config errors, refusals, an end-to-end cpu-small run."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hrm_data.format import write_arrays
from hrm_model.cli import main
from hrm_model.config import ConfigError, load_file, parse_overrides, resolve

sys.path.insert(0, str(Path(__file__).parent))
from trainer_fixtures import TINY, make_dataset  # noqa: E402


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_unknown_key_suggests_the_right_one(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    r = cli(ds, "global_batchsize=16")
    assert r.exit_code == 2
    assert "unknown key 'global_batchsize'" in r.output and "did you mean 'global_batch_size'" in r.output
    r = cli(ds, "hidden_size=64")
    assert r.exit_code == 2 and "arch.hidden_size" in r.output
    r = cli(ds, "arch.H_cycle=2")
    assert r.exit_code == 2 and "arch.H_cycles" in r.output
    f = tmp_path / "c.yaml"
    f.write_text("lr: 1e-4\nwarmup_steps: 10\n")
    r = cli(ds, "--config", f)
    assert r.exit_code == 2 and "lr_warmup_steps" in r.output


def test_values_parsed_as_yaml_and_checked():
    flat = parse_overrides(["lr=1e-4", "compile=false", "run_name=null", "arch.pos_encodings=learned", "eval_interval=5"])
    assert flat == {"lr": 1e-4, "compile": False, "run_name": None, "arch.pos_encodings": "learned", "eval_interval": 5}
    with pytest.raises(ConfigError, match="must divide"):
        resolve({}, parse_overrides(["epochs=10", "eval_interval=3"]))
    with pytest.raises(ConfigError, match="not both"):
        resolve({}, parse_overrides(["lr_warmup_steps=5", "lr_warmup_examples=100"]))
    with pytest.raises(ConfigError, match="global_batch_size"):
        resolve({}, parse_overrides(["global_batch_size=0"]))
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["epochs"])


def test_presets_and_reference_config_file(tmp_path):
    cfg, notes = resolve({}, {}, gpu_available=False)
    assert cfg["preset"] == "cpu-small" and notes and "cpu-small" in notes[0]
    assert cfg["arch"]["hidden_size"] == 128 and cfg["global_batch_size"] == 32
    cfg, notes = resolve({}, parse_overrides(["arch.hidden_size=64"]), gpu_available=False)
    assert cfg["preset"] is None and not any("cpu-small" in n for n in notes) and cfg["arch"]["hidden_size"] == 64
    assert cfg["epochs"] is None and "no epochs given on a CPU" in notes[0]   # fitted before step 1 (test_eta.py)
    cfg, notes = resolve({}, parse_overrides(["arch.hidden_size=64", "epochs=5"]), gpu_available=False)
    assert cfg["epochs"] == 5 and not notes
    cfg, _ = resolve({}, {}, gpu_available=True)
    assert cfg["preset"] is None and cfg["arch"]["hidden_size"] == 512
    cfg, _ = resolve({}, parse_overrides(["preset=paper"]), gpu_available=False)
    assert (cfg["global_batch_size"], cfg["epochs"], cfg["eval_interval"], cfg["lr"], cfg["lr_warmup_steps"]) == (768, 100000, 10000, 1e-4, 2000)
    assert cfg["arch"]["hidden_size"] == 512 and cfg["arch"]["halt_max_steps"] == 16 and cfg["arch"]["H_layers"] == 4
    # the reference's own files load (Hydra keys dropped, ${.hidden_size} resolved, 1e-4 read as a number)
    f = tmp_path / "cfg.yaml"
    f.write_text("defaults:\n  - arch: hrm_v1\n  - _self_\nhydra:\n  output_subdir: null\ndata_path: data/x\n"
                 "global_batch_size: 768\nepochs: 100000\neval_interval: 10000\nlr: 1e-4\npuzzle_emb_lr: 1e-2\n"
                 "arch:\n  name: hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1\n  loss:\n    name: losses@ACTLossHead\n"
                 "    loss_type: stablemax_cross_entropy\n  hidden_size: 256\n  puzzle_emb_ndim: ${.hidden_size}\n")
    flat = load_file(f)
    assert flat["lr"] == 1e-4 and flat["puzzle_emb_lr"] == 1e-2 and flat["arch.puzzle_emb_ndim"] == 256
    with pytest.raises(ConfigError, match="unknown preset"):
        resolve({}, parse_overrides(["preset=huge"]))


def test_invalid_dataset_is_refused_with_findings(tmp_path):
    S, V = 6, 5
    x = np.ones((4, S), np.uint8)
    y = np.full((4, S), 9, np.uint8)  # label 9 >= vocab_size 5
    arrays = {"inputs": x, "labels": y, "puzzle_identifiers": np.zeros(4, np.int32),
              "puzzle_indices": np.arange(5, dtype=np.int32), "group_indices": np.arange(5, dtype=np.int32)}
    bad = write_arrays(tmp_path / "bad", {"train": arrays, "test": arrays}, vocab_size=V)
    r = cli(bad, *TINY, "epochs=1", f"runs_dir={tmp_path / 'runs'}")  # click >= 8.2: output has stderr too
    assert r.exit_code == 2
    assert "invalid dataset" in r.output and "INVALID" in r.output  # the validator's report is shown
    assert not (tmp_path / "runs").exists()  # nothing started
    r = cli(tmp_path / "nothing-here", *TINY, "epochs=1")
    assert r.exit_code == 2 and "nothing-here" in r.output


def test_plan_error_is_refused(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_train=10)
    # 10 examples per iteration cannot fill a batch of 64: HRM would never step
    r = cli(ds, *TINY, "epochs=2", "eval_interval=1", "global_batch_size=64", f"runs_dir={tmp_path / 'runs'}")
    assert r.exit_code == 2
    assert "plan" in r.output and "zero_steps" in r.output
    assert not any((tmp_path / "runs").glob("*/checkpoints"))


def test_resume_and_eval_only_argument_errors(tmp_path):
    r = cli("--resume", tmp_path / "nope")
    assert r.exit_code == 2 and "not a run folder" in r.output
    r = cli("--eval-only")
    assert r.exit_code == 2 and "--checkpoint" in r.output
    r = cli()
    assert r.exit_code == 2 and "DATA" in r.output
    r = cli("keys")
    assert r.exit_code == 0 and "arch.hidden_size" in r.output and "lr_warmup_examples" in r.output


def test_cpu_small_end_to_end(tmp_path):
    ds = make_dataset(tmp_path / "city", n_train=64, n_test=8, S=16)
    r = cli(ds, "preset=cpu-small", "epochs=2", "eval_interval=1", f"runs_dir={tmp_path / 'runs'}", "cpu_threads=1",
            "progress=false")
    assert r.exit_code == 0, r.output
    assert "training plan" in r.output.lower() and "eval step" in r.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("city-")
    for f in ("config.yaml", "plan.json", "metrics.jsonl", "predictions_all.npy"):
        assert (run_dir / f).exists(), f
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step_00000002.pt", "step_00000004.pt"]
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["total_steps"] == 4
    lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert sum(l["type"] == "eval" for l in lines) == 2


def test_warmup_examples_converted_to_steps(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    r = cli(ds, *[t for t in TINY if not t.startswith("lr_warmup")], "lr_warmup_examples=40", "epochs=1",
            "global_batch_size=16", f"runs_dir={tmp_path / 'runs'}")
    assert r.exit_code == 0, r.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["warmup_steps"] == 3  # ceil(40 / 16)


def test_nan_loss_exit_code_1(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    r = cli(ds, *TINY, "epochs=2", "eval_interval=1", "global_batch_size=16", "debug_nan_at_step=4",
            f"runs_dir={tmp_path / 'runs'}", "run_name=n")
    assert r.exit_code == 1
    assert "loss is nan at step 4" in r.output and "step_00000003.pt" in r.output


# ----------------------------------------------------------------------------- review fixes

def _bare_weights(tmp_path, ds, *items):
    """A reference-style weight file for the TINY model (built, not trained: fast)."""
    import torch
    from hrm_data.format import Dataset
    from hrm_model import train as T
    from hrm_model.model import export_reference_state_dict
    from trainer_fixtures import config
    cfg = T.resolve_runtime(config("global_batch_size=16", *items), torch.device("cpu"))
    model = T._build(cfg, Dataset(ds).train.metadata, 16, torch.device("cpu"))
    path = tmp_path / "step_0"
    torch.save(export_reference_state_dict(model), path)
    return path


def test_eval_only_on_a_file_that_is_not_a_checkpoint(tmp_path):
    import torch
    ds = make_dataset(tmp_path / "ds")
    for i, obj in enumerate(([1, 2, 3], {"a": 1})):
        f = tmp_path / f"junk{i}.pt"
        torch.save(obj, f)
        r = cli("--eval-only", "--checkpoint", f, ds)  # checked before "needs the architecture"
        assert r.exit_code == 2, r.output
        assert f"Error: {f}: not a model state dict" in r.output and "Traceback" not in r.output
        assert len(r.output.strip().splitlines()) == 1


def test_eval_only_weights_that_do_not_fit_say_why(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    w = _bare_weights(tmp_path, ds)
    r = cli("--eval-only", "--checkpoint", w, ds, *TINY, "arch.hidden_size=64", "global_batch_size=16")
    assert r.exit_code == 2, r.output
    assert "weights do not fit this model (size mismatch" in r.output
    assert "Error(s) in loading" not in r.output and "same preset / arch.* keys" in r.output


def test_eval_only_bare_weights_prints_the_automatic_preset_note(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    w = _bare_weights(tmp_path, ds)
    # no arch key: cpu-small is chosen (and does not fit the TINY weights) - the note says so first
    r = cli("--eval-only", "--checkpoint", w, ds, "cpu_threads=1", "progress=false")
    assert r.exit_code == 2
    assert "note: no GPU and no arch.* key or preset given: using preset=cpu-small" in r.output


def test_unusable_output_folders_are_refused(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    plain = tmp_path / "plain"
    plain.write_text("x")
    for runs_dir in ("/proc/rv", plain):
        r = cli(ds, *TINY, "epochs=1", "global_batch_size=16", f"runs_dir={runs_dir}")
        assert r.exit_code == 2, r.output
        assert f"Error: {runs_dir}/" in r.output and "cannot create" in r.output and "runs_dir" in r.output
        assert "Traceback" not in r.output
    w = _bare_weights(tmp_path, ds)
    r = cli("--eval-only", "--checkpoint", w, ds, *TINY, "global_batch_size=16", "--out", "/proc/xx")
    assert r.exit_code == 2, r.output
    assert "Error: /proc/xx: cannot create" in r.output and "--out" in r.output
    assert "eval [" not in r.output  # refused before evaluating


def test_numbers_for_text_keys_and_integral_floats_for_integer_keys(tmp_path):
    flat = parse_overrides(["run_name=5", "init_from=1.50", "epochs=1e3", "eval_interval=10.0", "lr=1e-4"])
    assert flat == {"run_name": "5", "init_from": "1.50", "epochs": 1000, "eval_interval": 10, "lr": 1e-4}
    with pytest.raises(ConfigError, match="seed=1.5: must be an integer"):
        resolve({}, parse_overrides(["seed=1.5"]))
    f = tmp_path / "c.yaml"
    f.write_text("run_name: 5\nruns_dir: 2024\nepochs: 1e3\nglobal_batch_size: 16.0\n")
    flat = load_file(f)
    assert flat == {"run_name": "5", "runs_dir": "2024", "epochs": 1000, "global_batch_size": 16}
    cfg, _ = resolve(flat, {})
    assert cfg["run_name"] == "5" and cfg["epochs"] == 1000
