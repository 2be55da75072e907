"""Fault injection for hrm-train (run alone with `pytest -m faults`): every config key given a
wrong type, zero, negative and huge values; kill -9 at random points of training, checkpointing
and resuming; a disk that fills up. No traceback, no hang, no file outside the run folder touched."""
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from hrm_model import checkpoint as ckpt
from hrm_model import train as T
from hrm_model.cli import main
from hrm_model.config import DEFAULTS, ConfigError, flatten, parse_overrides, resolve

sys.path.insert(0, str(Path(__file__).parent))
from trainer_fixtures import TINY, assert_same_state, config, make_dataset  # noqa: E402

pytestmark = pytest.mark.faults
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
QUIET = lambda *_: None  # noqa: E731

BAD_VALUES = {
    "wrong type": ["abc", "[1, 2]", "{a: 1}", "true", "2020-01-01"],
    "zero": ["0", "0.0"],
    "negative": ["-1", "-0.5", "-1e30"],
    "huge": ["1e30", str(2**70), "1e308", ".inf", ".nan", "9" * 400],
}


@pytest.mark.parametrize("kind", sorted(BAD_VALUES))
def test_every_config_key_with_bad_values_is_accepted_or_refused_in_one_line(kind):
    for key in sorted(flatten(DEFAULTS)):
        for value in BAD_VALUES[kind]:
            try:
                cfg, _ = resolve({}, parse_overrides([f"{key}={value}"]))
            except ConfigError as e:
                msg = str(e)
                assert "\n" not in msg and len(msg) < 400, (key, value, msg)
                assert key.split(".")[-1] in msg or "cannot parse" in msg, (key, value, msg)
                continue
            # accepted: the value is one the trainer can use as given
            flat = flatten(cfg)
            v = flat[key]
            if isinstance(v, float):
                assert math.isfinite(v), (key, value)
            if isinstance(v, int) and not isinstance(v, bool):
                assert abs(v) < 2**62, (key, value)


def test_huge_model_keys_are_refused_against_the_data_and_the_machine(tmp_path):
    from hrm_data.format import Dataset
    from hrm_model import limits
    meta = Dataset(make_dataset(tmp_path / "ds")).train.metadata
    for item in ("arch.hidden_size=1e9", "arch.expansion=1e12", "arch.puzzle_emb_ndim=1e15",
                 "arch.hidden_size=100000", "global_batch_size=1e12"):
        cfg = config(item, "arch.num_heads=1", "arch.pos_encodings=learned")
        with pytest.raises(ConfigError) as e:
            limits.check_against_data(cfg, meta, local_batch=cfg["global_batch_size"], eval_batch=16,
                                      device=torch.device("cpu"), groups_per_epoch=48, error=ConfigError)
        assert "GiB" in str(e.value) and "\n" not in str(e.value), item
    cfg = config("epochs=1e11")
    with pytest.raises(ConfigError, match="draws in one iteration"):
        limits.check_against_data(cfg, meta, local_batch=16, eval_batch=16, device=torch.device("cpu"),
                                  groups_per_epoch=48, error=ConfigError)
    limits.check_against_data(config(), meta, local_batch=16, eval_batch=16, device=torch.device("cpu"),
                              groups_per_epoch=48, error=ConfigError)  # the tiny model fits


def _tree(root: Path, skip: Path) -> dict:
    out = {}
    for p in root.rglob("*"):
        if skip in p.parents or p == skip or p.is_dir():
            continue
        st = p.lstat()
        out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def _final(run):
    return torch.load(ckpt.latest_checkpoint(run), weights_only=True)


def _wait_for_training(metrics: Path, proc, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if metrics.exists() and '"train"' in metrics.read_text():
            return
        time.sleep(0.01)


def test_kill_9_at_random_points_of_training_checkpointing_and_resume(tmp_path):
    """Seeded trials in one chain: train, kill -9 at a random moment (checkpoints every step, so
    often inside a write), resume and kill -9 again (twice), resume to the end: equal to the
    uninterrupted run, bit for bit."""
    rng = random.Random(0)
    ds = make_dataset(tmp_path / "ds")
    runs = tmp_path / "runs"
    common = ["epochs=4", "eval_interval=2", "global_batch_size=16", f"runs_dir={runs}", "log_every=1",
              "checkpoint_every_steps=1", "keep_last=2", "progress=false"]
    ref = T.run(ds, config(*common, "run_name=ref"), echo=QUIET)
    before = _tree(tmp_path, runs / "k")
    run = runs / "k"
    for args in ([str(ds), *TINY, *common, "run_name=k"], ["--resume", str(run)], ["--resume", str(run)]):
        p = subprocess.Popen([sys.executable, "-m", "hrm_model.cli", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, env=ENV)
        _wait_for_training(run / "metrics.jsonl", p)
        time.sleep(rng.uniform(0, 0.4))
        p.send_signal(signal.SIGKILL)
        _, err = p.communicate(timeout=60)
        assert "Traceback" not in err, err
        if not ckpt.list_checkpoints(run):  # killed before the first checkpoint: start over
            break
    r = CliRunner().invoke(main, ["--resume", str(run)] if ckpt.list_checkpoints(run) else
                           [str(ds), *TINY, *common, "run_name=k"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    a, b = _final(ref), _final(run)
    assert a["step"] == b["step"] == 12
    assert_same_state(a, b)
    assert not [q for q in (run / "checkpoints").iterdir() if ".tmp" in q.name]
    after = _tree(tmp_path, run)
    assert {k: v for k, v in after.items() if k in before} == before  # nothing outside the run folder changed
    assert set(after) == set(before)


def test_disk_full_on_a_real_tmpfs(small_tmpfs, tmp_path):
    mnt = small_tmpfs("900k")
    ds = make_dataset(tmp_path / "ds")
    res = CliRunner().invoke(main, [str(ds), *TINY, "epochs=6", "eval_interval=1", "global_batch_size=16",
                                    f"runs_dir={mnt}", "run_name=full", "keep_last=0"], catch_exceptions=False)
    assert res.exit_code == 1, res.output
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "Traceback" not in res.output
    run = mnt / "full"
    assert not [q for q in run.rglob("*") if ".tmp" in q.name]  # the temp file went with the error
    found = ckpt.list_checkpoints(run)
    assert found, "the checkpoints that fit are kept"
    for _, path in found:
        ckpt.check_full_checkpoint(ckpt.load(path))  # every checkpoint left is whole
    # resuming on the still-full disk: one line again, nothing lost
    res = CliRunner().invoke(main, ["--resume", str(run)], catch_exceptions=False)
    assert res.exit_code == 1 and "No space left" in res.stderr and "Traceback" not in res.output
    assert ckpt.list_checkpoints(run) == found
