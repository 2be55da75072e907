"""Checkpoints: atomic writes, exact resume after SIGKILL, fingerprint check, export / init_from."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hrm_model import checkpoint as ckpt
from hrm_model import train as T

sys.path.insert(0, str(Path(__file__).parent))
from trainer_fixtures import TINY, assert_same_state, config, make_dataset, read_metrics  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def hrm_train(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hrm_model.cli", *map(str, args)], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=120)


def test_atomic_save_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "c" / "x.pt"
    ckpt.atomic_save({"a": torch.ones(2)}, p)
    ckpt.atomic_save({"a": torch.zeros(2)}, p)
    assert torch.equal(torch.load(p)["a"], torch.zeros(2))
    assert [q.name for q in p.parent.iterdir()] == ["x.pt"]

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        ckpt.atomic_save({"a": Boom()}, p)
    assert torch.equal(torch.load(p)["a"], torch.zeros(2))  # old file intact
    assert [q.name for q in p.parent.iterdir()] == ["x.pt"]


def test_carry_round_trip():
    from dataclasses import dataclass

    @dataclass
    class Inner:
        z: torch.Tensor

    @dataclass
    class Carry:
        inner: Inner
        halted: torch.Tensor
        data: dict

    c = Carry(Inner(torch.randn(2, 3)), torch.tensor([True, False]), {"inputs": torch.arange(4).view(2, 2)})
    state = ckpt.carry_to_state(c)
    template = Carry(Inner(torch.zeros(2, 3)), torch.ones(2, dtype=torch.bool), {"inputs": torch.zeros(2, 2, dtype=torch.long)})
    back = ckpt.carry_from_state(template, state, torch.device("cpu"))
    assert torch.equal(back.inner.z, c.inner.z) and torch.equal(back.halted, c.halted)
    assert torch.equal(back.data["inputs"], c.data["inputs"])
    with pytest.raises(ckpt.CheckpointError):
        ckpt.carry_from_state(Carry(Inner(torch.zeros(4, 3)), template.halted, template.data), state, torch.device("cpu"))


def _final_state(run_dir):
    return torch.load(ckpt.latest_checkpoint(run_dir), weights_only=False)


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    runs = tmp_path / "runs"
    common = ["epochs=4", "eval_interval=2", "global_batch_size=16", f"runs_dir={runs}", "arch.halt_max_steps=3",
              "arch.halt_exploration_prob=0.5", "log_every=1"]  # random exploration: the RNG state must be restored too
    ref_dir = T.run(ds, config(*common, "run_name=ref"), echo=lambda *_: None)

    r = hrm_train(ds, *TINY, *common, "run_name=killed", "checkpoint_every_steps=2", "debug_sigkill_at_step=5")
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    killed = runs / "killed"
    assert [s for s, _ in ckpt.list_checkpoints(killed)] == [2, 4]
    r = hrm_train("--resume", killed)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed" in r.stdout and "at step 4" in r.stdout

    a, b = _final_state(ref_dir), _final_state(killed)
    assert a["step"] == b["step"] == 12
    assert_same_state(a, b)
    # the eval lines after the resume are the uninterrupted run's
    ev_a = [(m["step"], m["exact_accuracy"], m["lm_loss"]) for m in read_metrics(ref_dir) if m["type"] == "eval"]
    ev_b = [(m["step"], m["exact_accuracy"], m["lm_loss"]) for m in read_metrics(killed) if m["type"] == "eval"]
    assert ev_a == ev_b
    # train lines: those after the checkpoint were dropped on resume and logged again, identically
    tr_a = [(m["step"], m["lm_loss"], m["lr"], m["count"]) for m in read_metrics(ref_dir) if m["type"] == "train"]
    tr_b = [(m["step"], m["lm_loss"], m["lr"], m["count"]) for m in read_metrics(killed) if m["type"] == "train"]
    assert tr_a == tr_b and len(tr_a) == 12


def test_resume_refuses_changed_keys_and_other_dataset_unless_force(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    runs = tmp_path / "runs"
    T.run(ds, config("epochs=2", "eval_interval=1", "global_batch_size=16", f"runs_dir={runs}", "run_name=r"),
          echo=lambda *_: None)
    r = hrm_train("--resume", runs / "r", "lr=1.0")
    assert r.returncode == 2 and "cannot change lr" in r.stderr
    # same path, other content: fingerprint differs
    make_dataset(ds, seed=1)
    r = hrm_train("--resume", runs / "r")
    assert r.returncode == 2, r.stderr
    assert "fingerprint" in r.stderr and "force=true" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = hrm_train("--resume", runs / "r", "force=true")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "fingerprint" in r.stdout
    # eval-only with the changed data: refused, then forced
    r = hrm_train("--eval-only", "--checkpoint", runs / "r")
    assert r.returncode == 2 and "fingerprint" in r.stderr
    r = hrm_train("--eval-only", "--checkpoint", runs / "r", "force=true")
    assert r.returncode == 0 and "exact_accuracy" in r.stdout


def test_export_reference_weights_and_init_from(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    runs = tmp_path / "runs"
    run_dir = T.run(ds, config("epochs=2", "global_batch_size=16", f"runs_dir={runs}", "run_name=src"), echo=lambda *_: None)
    r = hrm_train("export", run_dir, "--out", tmp_path / "step_6")
    assert r.returncode == 0, r.stderr
    bare = torch.load(tmp_path / "step_6", weights_only=True)
    assert all(k.startswith("model.inner.") for k in bare)
    assert "model.inner.puzzle_emb.weights" in bare
    r = hrm_train("export", run_dir, "--out", tmp_path / "step_6c", "--compiled-prefix")
    compiled = torch.load(tmp_path / "step_6c", weights_only=True)
    assert all(k.startswith("_orig_mod.model.inner.") for k in compiled)

    # init_from a reference-style file (compiled prefix): the new run starts from those weights
    cfg = config("epochs=2", "global_batch_size=16", f"runs_dir={runs}", "run_name=init", f"init_from={tmp_path / 'step_6c'}",
                 "lr=0", "puzzle_emb_lr=0", "weight_decay=0", "puzzle_emb_weight_decay=0")
    run2 = T.run(ds, cfg, echo=lambda *_: None)
    after = _final_state(run2)["model"]
    for k, v in bare.items():
        assert torch.equal(after[k], v), k  # lr 0: unchanged
    # eval-only on the bare file needs the arch: same keys as training
    r = hrm_train("--eval-only", "--checkpoint", tmp_path / "step_6", ds, *TINY, "global_batch_size=16")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "exact_accuracy" in r.stdout
    # a file that does not fit the model
    r = hrm_train(ds, *TINY, "arch.hidden_size=64", f"init_from={tmp_path / 'step_6'}", f"runs_dir={runs}",
                  "epochs=1", "global_batch_size=16")
    assert r.returncode == 2 and "init_from" in r.stderr


# ----------------------------------------------------------------------------- review fixes

def _resume(run_dir):
    from click.testing import CliRunner
    from hrm_model.cli import main
    return CliRunner().invoke(main, ["--resume", str(run_dir)], catch_exceptions=False)


def test_resume_skips_a_corrupt_checkpoint_removes_temps_and_says_when_none(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    runs = tmp_path / "runs"
    run_dir = T.run(ds, config("epochs=2", "eval_interval=1", "global_batch_size=16", f"runs_dir={runs}",
                               "run_name=r"), echo=lambda *_: None)
    assert [s for s, _ in ckpt.list_checkpoints(run_dir)] == [3, 6]
    torch.load(ckpt.checkpoint_path(run_dir, 6), weights_only=True)  # our checkpoints need no pickle code
    ckpt.checkpoint_path(run_dir, 6).write_bytes(b"garbage")  # a damaged newest checkpoint
    tmp = run_dir / "checkpoints" / ".step_00000006.pt.tmp-a1b_2c"  # a kill during a write
    other = run_dir / "checkpoints" / "notes.tmp-x"
    tmp.write_bytes(b"half")
    other.write_text("mine")
    r = _resume(run_dir)
    assert r.exit_code == 0, r.output
    assert "warning:" in r.output and "step_00000006.pt" in r.output and "delete" in r.output
    assert "resumed" in r.output and "at step 3" in r.output
    assert not tmp.exists() and other.exists()
    assert ckpt.load(run_dir)["step"] == 6  # rewritten
    # a run folder without checkpoints: refused (it used to restart silently from step 0)
    for _, p in ckpt.list_checkpoints(run_dir):
        p.unlink()
    r = _resume(run_dir)
    assert r.exit_code == 2, r.output
    assert f"{run_dir}: no checkpoint to resume from" in r.output and "Traceback" not in r.output


def test_truncate_metrics_drops_the_eval_redone_after_a_steps_checkpoint(tmp_path):
    import json
    p = tmp_path / "metrics.jsonl"
    lines = [{"type": "train", "step": 3}, {"type": "eval", "step": 3}, {"type": "train", "step": 4}]
    text = "".join(json.dumps(l) + "\n" for l in lines) + '{"type": "tr'
    p.write_text(text)
    T._truncate_metrics(p, 3)  # an "eval" checkpoint at step 3: its evaluation is done
    assert [json.loads(l) for l in p.read_text().splitlines()] == lines[:2]
    p.write_text(text)
    T._truncate_metrics(p, 3, drop_eval_at_step=True)  # a "steps" checkpoint: the evaluation runs again
    assert [json.loads(l) for l in p.read_text().splitlines()] == lines[:1]


class _RunsCode:
    def __reduce__(self):
        return (print, ("PICKLE-CODE-RAN",))


def test_load_refuses_files_that_need_pickle_code(tmp_path, capsys):
    bare = tmp_path / "step_1"
    torch.save({"w": torch.ones(2)}, bare)
    assert torch.equal(ckpt.load(bare)["w"], torch.ones(2))
    unknown = tmp_path / "step_2"
    torch.save({"w": torch.ones(2), "x": _RunsCode()}, unknown)
    with pytest.raises(ckpt.CheckpointError, match="refused for safety"):
        ckpt.load(unknown)
    assert "PICKLE-CODE-RAN" not in capsys.readouterr().out
    # even with our checkpoint's keys, a file that needs code to load is refused
    own = tmp_path / "step_3.pt"
    torch.save({"format_version": 1, "model": {}, "optimizers": [], "fingerprint": "f", "x": _RunsCode()}, own)
    with pytest.raises(ckpt.CheckpointError, match="refused for safety"):
        ckpt.load(own)
    assert "PICKLE-CODE-RAN" not in capsys.readouterr().out
    with pytest.raises(ckpt.CheckpointError, match="unreadable"):
        (tmp_path / "bad").write_bytes(b"nope")
        ckpt.load(tmp_path / "bad")


def test_a_disk_that_fills_inside_torch_save_is_reported_as_disk_full(tmp_path, monkeypatch):
    """torch's zip writer turns a failed write into RuntimeError("unexpected pos ..."); the save
    must raise the write's own OSError (ENOSPC), so the trainer says "No space left", and leave
    no temp file."""
    import errno
    real = ckpt._WriteErrors.write
    written = [0]

    def failing(self, b):
        written[0] += len(b)
        if written[0] > 2000:
            self.f.write(b"")
            e = OSError(errno.ENOSPC, "No space left on device")
            self.error = self.error or e
            raise e
        return real(self, b)

    monkeypatch.setattr(ckpt._WriteErrors, "write", failing)
    p = tmp_path / "c" / "x.pt"
    with pytest.raises(OSError) as info:
        ckpt.atomic_save({"a": torch.zeros(4096)}, p)
    assert info.value.errno == errno.ENOSPC
    assert list(p.parent.iterdir()) == []
