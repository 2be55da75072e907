"""hrm-train never blesses a bad checkpoint, trusts the checkpoint over config.yaml, answers every
user-made failure in one line with the right exit code, and keeps the work on Ctrl-C."""
import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hrm_model import checkpoint as ckpt
from hrm_model import runfiles
from hrm_model import train as T
from hrm_model.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from trainer_fixtures import TINY, assert_same_state, config, make_dataset, read_metrics  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
QUIET = lambda *_: None  # noqa: E731
COMMON = ["global_batch_size=16", "epochs=2", "eval_interval=1"]


def cli(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, env=env)


def one_line_error(r, code):
    """Exit ``code`` and exactly one non-empty stderr/output line, no traceback."""
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output, r.output
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "ds")


# ----------------------------------------------------------------------------- never bless a bad checkpoint

def test_diverged_weights_are_never_checkpointed_nor_called_good(ds, tmp_path):
    # one step per epoch: the evaluation right after step 1 sees weights near 1e30 (finite) and gives nan
    r = cli(ds, *TINY, "global_batch_size=48", "epochs=2", "eval_interval=1", "lr=1e30", f"runs_dir={tmp_path}",
            "run_name=boom")
    line = one_line_error(r, 1)
    assert "evaluation at step 1" in line and "nan" in line and "no good checkpoint" in line
    assert ckpt.list_checkpoints(tmp_path / "boom") == []


def test_last_good_checkpoint_skips_the_one_that_gave_the_bad_loss(tmp_path):
    from hrm_model.guards import last_good_checkpoint
    for s in (3, 4, 5):
        ckpt.checkpoint_path(tmp_path, s).parent.mkdir(exist_ok=True)
        ckpt.checkpoint_path(tmp_path, s).write_bytes(b"x")
    # NaN loss at step 6: the weights saved at step 5 produced it; step 4's produced a finite loss at 5
    assert last_good_checkpoint(tmp_path, 6, verified=set()).name == "step_00000004.pt"
    assert last_good_checkpoint(tmp_path, 6, verified={5}).name == "step_00000005.pt"  # its evaluation was finite
    assert last_good_checkpoint(tmp_path, 4, verified=set()) is None


def test_nonfinite_weights_are_not_written(ds, tmp_path, monkeypatch):
    real = T.AdamATan2.step

    def poisoned(self, *a, **k):  # an optimizer step that leaves an inf in the weights
        out = real(self, *a, **k)
        with torch.no_grad():
            self.param_groups[0]["params"][0].view(-1)[0] = float("inf")
        return out
    monkeypatch.setattr(T.AdamATan2, "step", poisoned)
    with pytest.raises(T.TrainError) as e:
        T.run(ds, config(*COMMON, f"runs_dir={tmp_path}", "run_name=inf", "checkpoint_every_steps=1"), echo=QUIET)
    assert e.value.exit_code == 1 and "weights are not finite at step 1" in str(e.value)
    assert ckpt.list_checkpoints(tmp_path / "inf") == []


# ----------------------------------------------------------------------------- resume trusts the checkpoint

def test_resume_ignores_edited_or_damaged_config_yaml(ds, tmp_path):
    ref = T.run(ds, config(*COMMON, f"runs_dir={tmp_path}", "run_name=ref"), echo=QUIET)
    run = T.run(ds, config(*COMMON, f"runs_dir={tmp_path}", "run_name=r"), echo=QUIET)
    assert [s for s, _ in ckpt.list_checkpoints(run)] == [3, 6]
    cfg_yaml = (run / "config.yaml").read_text()
    assert not [p for p in run.iterdir() if ".tmp" in p.name]  # written atomically, no temp left
    edited = cfg_yaml.replace("lr: 0.003", "lr: 1.0").replace("global_batch_size: 16", "global_batch_size: 7")
    assert edited != cfg_yaml
    for text in (edited, "lr: [unclosed\n", "\x00\xff garbage", ""):
        ckpt.checkpoint_path(run, 6).unlink()
        (run / "config.yaml").write_bytes(text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text)
        r = cli("--resume", run)
        assert r.exit_code == 0, r.output
        assert "Traceback" not in r.output and "resumed" in r.output and "at step 3" in r.output
        if text is edited:
            assert "config.yaml differs from the checkpoint in global_batch_size" in r.output
            assert "lr (1.0 in config.yaml, 0.003 in the checkpoint)" in r.output
            assert "the checkpoint's values are used" in r.output
        assert_same_state(ckpt.load(ref), ckpt.load(run))  # trained with the checkpoint's lr and batch
    assert "lr: 0.003" in (run / "config.yaml").read_text()  # the copy is rewritten from the truth
    r = cli("--resume", run, "lr=1.0")  # explicit overrides: only runtime keys
    assert r.exit_code == 2 and "cannot change lr" in r.output
    r = cli("--resume", run, "keep_last=5", "checkpoint_every_minutes=0")
    assert r.exit_code == 0, r.output


def test_atomic_write_survives_a_failing_rename_and_cleanup(tmp_path, monkeypatch):
    p = tmp_path / "config.yaml"
    runfiles.atomic_write_text(p, "old\n")

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(runfiles.os, "replace", no_space)
    monkeypatch.setattr(runfiles.os, "unlink", lambda *a: (_ for _ in ()).throw(OSError(errno.EIO, "EIO")))
    with pytest.raises(OSError) as e:  # the first error comes out, not the cleanup's
        runfiles.atomic_write_text(p, "new\n")
    assert e.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert p.read_text() == "old\n"


# ----------------------------------------------------------------------------- one line, right exit code

@pytest.mark.parametrize("item, says", [
    ("seed=1e30", "seed=~1e30: must be at most"),
    ("arch.expansion=0", "arch.expansion=0: must be a number > 0"),
    ("run_name=../../x", "run_name='../../x': must be a folder name inside runs_dir"),
    ("run_name=/tmp/x", "must be a folder name inside runs_dir"),
    ("run_name=a//b", "must be a folder name inside runs_dir"),
    ("epochs=1e23", "epochs=~1e23: must be at most"),
    ("seed=" + "9" * 5000, "seed: cannot parse value"),
    ("arch.num_heads=32", "RoPE needs an even head width"),
    ("arch.halt_exploration_prob=2", "a probability in [0, 1]"),
    ("cpu_threads=1e9", "cpu_threads=1000000000: must be at most"),
])
def test_bad_values_are_one_line_exit_2(ds, tmp_path, item, says):
    r = cli(ds, *TINY, *COMMON, f"runs_dir={tmp_path}", item)
    assert says in one_line_error(r, 2)
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_model_too_big_for_the_machine_is_refused(ds, tmp_path):
    line = one_line_error(cli(ds, *TINY, *COMMON, f"runs_dir={tmp_path}", "arch.hidden_size=1e9",
                              "arch.num_heads=2"), 2)
    assert "arch.hidden_size=1000000000" in line and "GiB" in line and "choose smaller" in line
    assert not any(tmp_path.iterdir())


def test_config_file_that_is_not_a_text_file(ds, tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("lr: 1e-3 # caf\xe9\n".encode("latin-1"))
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    for path, says in ((tmp_path, "is a directory"), (bad, "not UTF-8 text (byte 14)"), (fifo, "not a regular file")):
        line = one_line_error(cli(ds, "--config", path, *TINY), 2)
        assert f"Error: {path}: config file {says}" in line or says in line, line


def test_internal_error_is_exit_3_with_a_hint(ds, tmp_path, monkeypatch):
    def broken(*a, **k):
        raise ZeroDivisionError("division by zero\nsecond line")
    monkeypatch.setattr(T, "run", broken)
    line = one_line_error(cli(ds, *TINY, f"runs_dir={tmp_path}"), 3)
    assert line == ("hrm-train: internal error: ZeroDivisionError: division by zero second line (this is a bug; "
                    "rerun with --debug or HRM_DEBUG=1 for the traceback)")
    for r in (cli("--debug", ds, *TINY, f"runs_dir={tmp_path}"), cli(ds, *TINY, env={"HRM_DEBUG": "1"})):
        assert r.exit_code == 3 and "Traceback (most recent call last)" in r.output and "internal error" in r.output


def test_eval_batch_larger_than_the_test_set_is_capped(ds, tmp_path):
    r = cli(ds, *TINY, *COMMON, "eval_batch_size=100000", f"runs_dir={tmp_path}", "run_name=e")
    assert r.exit_code == 0, r.output
    assert "evaluation batch 100000 is larger than the test set (12 examples): using 12" in r.output
    assert [m["count"] for m in read_metrics(tmp_path / "e") if m["type"] == "eval"] == [12, 12]


def _crafted(tmp_path, name, **change):
    good = ckpt.load(tmp_path / "src")
    obj = {**good, **change}
    for k, v in list(obj.items()):
        if v is _DROP:
            del obj[k]
    path = tmp_path / name
    torch.save(obj, path)
    return path


_DROP = object()


def test_malformed_checkpoints_are_refused_everywhere(ds, tmp_path):
    T.run(ds, config("global_batch_size=16", "epochs=1", f"runs_dir={tmp_path}", "run_name=src"), echo=QUIET)
    cases = {
        "empty_model": dict(model={}),
        "model_not_tensors": dict(model={"model.inner.q_head.weight": 5}),
        "step_text": dict(step="x"),
        "sampler_junk": dict(sampler=[1, 2]),
        "ranks_empty": dict(ranks=[]),
        "config_junk": dict(config={"arch": {"hidden_size": "big"}}),
        "no_config": dict(config=_DROP),
        "optimizers_junk": dict(optimizers=[1]),
        "rng_junk": dict(ranks=[{"rng": {"torch": torch.zeros(3)}, "carry": None}]),
        "score_state_junk": dict(score_state=[1, 2]),
    }
    for name, change in cases.items():
        path = _crafted(tmp_path, name + ".pt", **change)
        for args in (("--eval-only", "--checkpoint", path, ds), ("export", path, "--out", tmp_path / f"{name}.w")):
            line = one_line_error(cli(*args), 2)
            assert str(path) in line and ("malformed" in line or "not an hrm-train" in line), (name, line)
        assert not (tmp_path / f"{name}.w").exists()  # export wrote nothing
        line = one_line_error(cli(ds, *TINY, "global_batch_size=16", "epochs=1", f"runs_dir={tmp_path}",
                                  f"init_from={path}"), 2)
        assert "init_from" in line, line
        run = tmp_path / f"resume_{name}"
        (run / "checkpoints").mkdir(parents=True)
        os.replace(path, ckpt.checkpoint_path(run, 3))
        line = one_line_error(cli("--resume", run), 2)
        assert "malformed" in line or "no readable checkpoint" in line, (name, line)
    # a task-score state that is a mapping but no packed state: only resume reads it, and refuses
    run = tmp_path / "resume_score_state_packed_junk"
    (run / "checkpoints").mkdir(parents=True)
    os.replace(_crafted(tmp_path, "x.pt", score_state={"__packed_table__": True}), ckpt.checkpoint_path(run, 3))
    line = one_line_error(cli("--resume", run), 2)
    assert "malformed" in line and "task-score state" in line, line


class _System:
    def __reduce__(self):
        return (os.system, ("echo PAYLOAD-RAN",))


def test_code_payload_is_refused_for_safety(ds, tmp_path, capfd):
    import pickle
    path, raw = tmp_path / "step_1", tmp_path / "step_2"
    torch.save({"w": torch.ones(1), "x": _System()}, path)
    raw.write_bytes(pickle.dumps({"w": 1, "x": _System()}))  # a plain pickle, not torch's zip format
    for args in (("--eval-only", "--checkpoint", path, ds, *TINY), ("export", path, "--out", tmp_path / "o"),
                 ("--eval-only", "--checkpoint", raw, ds, *TINY), ("export", raw, "--out", tmp_path / "o")):
        line = one_line_error(cli(*args), 2)
        assert "refused for safety" in line, line
    assert "PAYLOAD-RAN" not in capfd.readouterr().out
    (tmp_path / "junk").write_bytes(b"nope")  # bytes that are no pickle at all: unreadable, not unsafe
    assert "unreadable checkpoint" in one_line_error(cli("export", tmp_path / "junk", "--out", tmp_path / "o"), 2)


def test_junk_lines_in_metrics_do_not_block_resume(ds, tmp_path):
    run = T.run(ds, config(*COMMON, f"runs_dir={tmp_path}", "run_name=j"), echo=QUIET)
    ckpt.checkpoint_path(run, 6).unlink()
    with open(run / "metrics.jsonl", "ab") as f:
        f.write(b'5\n{"step": "x"}\n\xff\xfe not utf-8\n[1, 2]\n{"type": "tr')
    r = cli("--resume", run)
    assert r.exit_code == 0, r.output
    assert "dropped 5 unreadable line(s)" in r.output
    assert all(isinstance(m, dict) for m in read_metrics(run))


# ----------------------------------------------------------------------------- disk full

def _enospc_after(n_bytes):
    real = torch.save

    def save(obj, f, *a, **k):
        f.write(b"\0" * n_bytes)
        raise OSError(errno.ENOSPC, "No space left on device")
    return real, save


def test_disk_full_during_a_checkpoint_leaves_no_partial_file(ds, tmp_path, monkeypatch):
    run = T.run(ds, config(*COMMON, f"runs_dir={tmp_path}", "run_name=d"), echo=QUIET)
    ckpt.checkpoint_path(run, 6).unlink()
    before = sorted(p.name for p in (run / "checkpoints").iterdir())
    _, save = _enospc_after(1000)
    monkeypatch.setattr(ckpt.torch, "save", save)
    line = one_line_error(cli("--resume", run, "progress=false"), 1)
    assert "No space left on device" in line and "--resume" in line
    monkeypatch.undo()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == before  # no temp, no partial checkpoint
    # disk full while resume rewrites metrics.jsonl: one line, the old file intact
    metrics = (run / "metrics.jsonl").read_bytes()
    monkeypatch.setattr(runfiles.os, "write", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space")))
    line = one_line_error(cli("--resume", run), 1)
    assert "No space" in line and line.endswith(f"continue with: hrm-train --resume {run}")
    monkeypatch.undo()
    assert (run / "metrics.jsonl").read_bytes() == metrics
    assert not [p for p in run.iterdir() if ".tmp" in p.name]


# ----------------------------------------------------------------------------- data changed under the run

def test_data_file_replaced_during_training_is_detected(tmp_path, monkeypatch):
    ds = make_dataset(tmp_path / "ds")
    real = T.evaluate
    target = ds / "test" / "all__inputs.npy"

    def swap_then_evaluate(*a, **k):
        copy = target.with_suffix(".copy")
        copy.write_bytes(target.read_bytes())
        os.replace(copy, target)  # same bytes, another file: the run must notice
        return real(*a, **k)
    monkeypatch.setattr(T, "evaluate", swap_then_evaluate)
    with pytest.raises(T.TrainError) as e:
        T.run(ds, config(*COMMON, f"runs_dir={tmp_path}", "run_name=w"), echo=QUIET)
    assert e.value.exit_code == 2 and "all__inputs.npy was replaced or rewritten while training" in str(e.value)
    assert ckpt.list_checkpoints(tmp_path / "w") == []


def test_sigbus_from_a_truncated_memory_map_is_one_line_exit_2(tmp_path):
    code = ("import numpy as np, os, threading\n"
            "from hrm_model import guards\n"
            f"p = {str(tmp_path / 'a.npy')!r}\n"
            "np.save(p, np.ones((50000, 64), np.int32))\n"
            "a = np.load(p, mmap_mode='r')\n"
            "guards.install_sigbus_message('DATA', 'runs/x')\n"
            "os.truncate(p, 4096)\n"
            "t = threading.Thread(target=lambda: print(np.asarray(a[np.arange(40000, 40100)]).sum()))\n"
            "t.start(); t.join()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.strip().splitlines() == [
        "Error: DATA: a data file was truncated or replaced while training (SIGBUS reading its memory map); "
        "rebuild or restore the dataset; resume from the last checkpoint with `hrm-train --resume runs/x`"]


# ----------------------------------------------------------------------------- interrupts keep the work

def test_sigint_writes_a_checkpoint_and_resume_equals_an_uninterrupted_run(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    common = ["epochs=6", "eval_interval=3", "global_batch_size=16", f"runs_dir={tmp_path}", "arch.halt_max_steps=3",
              "arch.halt_exploration_prob=0.5", "log_every=1", "progress=false"]
    ref = T.run(ds, config(*common, "run_name=ref"), echo=QUIET)
    p = subprocess.Popen([sys.executable, "-m", "hrm_model.cli", str(ds), *TINY, *common, "run_name=int"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    metrics = tmp_path / "int" / "metrics.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline and p.poll() is None:
        if metrics.exists() and metrics.read_text().count('"train"') >= 2:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=90)
    assert p.returncode == 130, err[-2000:]
    (step,) = [s for s, _ in ckpt.list_checkpoints(tmp_path / "int")][-1:]
    assert 2 <= step < 18
    assert f"checkpoint {ckpt.checkpoint_path(tmp_path / 'int', step)} written; continue with: " \
           f"hrm-train --resume {tmp_path / 'int'}" in err
    assert "Traceback" not in err
    r = cli("--resume", tmp_path / "int")
    assert r.exit_code == 0, r.output
    assert_same_state(ckpt.load(ref), ckpt.load(tmp_path / "int"))
    tr = lambda d: [(m["step"], m["lm_loss"], m["count"]) for m in read_metrics(d) if m["type"] == "train"]  # noqa: E731
    assert tr(ref) == tr(tmp_path / "int")


def test_wall_clock_checkpoints_and_keep_last_pruning(ds, tmp_path):
    run = T.run(ds, config("global_batch_size=16", "epochs=4", "eval_interval=1", f"runs_dir={tmp_path}",
                           "run_name=k", "checkpoint_every_minutes=1e-9", "keep_last=2"), echo=QUIET)
    steps = [s for s, _ in ckpt.list_checkpoints(run)]
    assert steps[-2:] == [11, 12] and len(steps) <= 3  # a checkpoint after every step, pruned to 2 + the best
    best = ckpt.load(run)["best"]
    assert best["step"] in steps and best["exact_accuracy"] == max(
        m["exact_accuracy"] for m in read_metrics(run) if m["type"] == "eval")
    from hrm_model.interrupts import WallClock
    now = [0.0]
    c = WallClock(10, clock=lambda: now[0])
    now[0] = 599.0
    assert not c.due()
    now[0] = 600.0
    assert c.due()
    c.reset()
    assert not c.due() and not WallClock(0, clock=lambda: 1e9).due()


def test_sigterm_sets_the_stop_flag_once_then_the_default_action_returns():
    from hrm_model.interrupts import StopRequest
    said = []
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest(said.append) as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop.signal_name == "SIGTERM" and "writing a checkpoint" in said[0]
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # a second one ends the process
        assert signal.getsignal(signal.SIGINT) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) == before


def test_ctrl_c_before_training_starts_exits_130(ds, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(T, "run", interrupted)
    r = cli(ds, *TINY)
    assert r.exit_code == 130 and r.stderr.strip().splitlines()[-1] == "interrupted"
    assert "Aborted" not in r.output


def test_a_folder_where_metrics_jsonl_belongs_is_bad_input(ds, tmp_path):
    (tmp_path / "m" / "metrics.jsonl").mkdir(parents=True)
    line = one_line_error(cli(ds, *TINY, *COMMON, f"runs_dir={tmp_path}", "run_name=m"), 2)
    assert "metrics.jsonl: cannot append (Is a directory)" in line


def test_a_second_hrm_train_on_a_running_run_stops_in_one_line(ds, tmp_path):
    """Two processes never write one run in turn: while a run trains, a --resume of it stops with
    exit 2 naming the running process; a start that races another for a new run_name does too;
    the lock goes with the process (here: Ctrl-C)."""
    common = [*TINY, "global_batch_size=16", "epochs=400", "eval_interval=200", f"runs_dir={tmp_path}",
              "progress=false"]
    p = subprocess.Popen([sys.executable, "-m", "hrm_model.cli", str(ds), *common, "run_name=busy"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    metrics = tmp_path / "busy" / "metrics.jsonl"
    try:
        deadline = time.time() + 90
        while time.time() < deadline and p.poll() is None and not (metrics.exists() and '"train"' in metrics.read_text()):
            time.sleep(0.05)
        assert p.poll() is None, p.communicate()[1][-2000:]
        line = one_line_error(cli("--resume", tmp_path / "busy"), 2)
        assert "another hrm-train" in line and f"pid {p.pid}" in line, line
        assert "run already exists" in one_line_error(cli(ds, *common, "run_name=busy"), 2)
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=90)
    assert p.returncode == 130, err[-2000:]
    runfiles.RunLock(tmp_path / "busy", RuntimeError).release()   # free again once the process is gone
    # a start racing another for a new run folder (the other holds the lock, config.yaml not yet written)
    (tmp_path / "race").mkdir()
    held = runfiles.RunLock(tmp_path / "race", RuntimeError)
    try:
        line = one_line_error(cli(ds, *common, "run_name=race"), 2)
        assert "another hrm-train" in line and f"pid {os.getpid()}" in line, line
        assert not (tmp_path / "race" / "config.yaml").exists()
    finally:
        held.release()
    r = cli(ds, *TINY, "global_batch_size=16", "epochs=1", f"runs_dir={tmp_path}", "progress=false", "run_name=race")
    assert r.exit_code == 0, r.output


def test_a_filesystem_without_locks_runs_unlocked(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(fcntl, "flock", no_locks)
    lock = runfiles.RunLock(tmp_path, RuntimeError)   # no error: the run goes on without the lock
    assert lock.fd is None
    lock.release()
