"""The estimate before step 1, CPU schedules that fit, refusals with advice, the thread default."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hrm_model import eta
from hrm_model.cli import main
from trainer_fixtures import TINY, make_dataset


def test_fit_schedule_keeps_the_ten_to_one_rule_and_the_budget():
    # 1 h, 60 s per epoch, 10 s per evaluation: 10 evaluations, the rest training, epochs a multiple of 10
    epochs, interval = eta.fit_schedule(3600, 60, 10)
    assert (epochs, interval) == (50, 5)
    assert epochs * 60 + (epochs // interval) * 10 <= 3600
    # evaluations of 10 min each may take a quarter of the hour: one evaluation, at the end
    assert eta.fit_schedule(3600, 60, 600) == (50, 50)
    # the user's eval_interval stays; epochs is a multiple of it
    assert eta.fit_schedule(3600, 60, 10, eval_interval=3) == (54, 3)
    # an epoch longer than the budget: still one epoch (the refusal then speaks)
    assert eta.fit_schedule(60, 3600, 5) == (1, 1)
    # fewer epochs than evaluations: one evaluation per epoch
    assert eta.fit_schedule(300, 50, 1) == (5, 1)


def test_estimate_and_verdict():
    t = eta.Timing(step_s=2.0, eval_segment_s=0.5, probe_rows=8, rows=32)
    one_eval = eta.eval_seconds(n_test=400, eval_batch=32, halt_max_steps=4, timing=t)
    assert one_eval == 13 * 4 * 0.5
    assert eta.estimate_seconds(750_000, 10, one_eval, t.step_s) == 750_000 * 2.0 + 10 * 26.0
    msg = eta.verdict(2 * 86400, 24, fit_epochs=15, fit_hours=1)
    assert "2 days" in msg and "epochs=15" in msg and "cpu_max_hours=null" in msg and "cpu_fit_hours=1" in msg
    assert eta.verdict(3600, 24, 15, 1) is None
    assert eta.verdict(10 ** 9, None, 15, 1) is None
    assert [eta.format_duration(s) for s in (5, 200, 7200, 10 * 86400)] == ["5 s", "3 min 20 s", "2.0 h", "10 days"]


def test_probe_rows_and_thread_default():
    assert eta.probe_rows(32, 900) == 4          # a 30 x 30 map: 4 rows timed, scaled to 32
    assert eta.probe_rows(128, 25) == 128        # small batches (the demo: 5 x 5 maps) are timed whole
    assert eta.probe_rows(128, 36) == 64
    assert eta.probe_rows(768, 81) == 32
    assert eta.default_threads(cores=2, load=5.0) == 1   # busy: one thread
    assert eta.default_threads(cores=2, load=0.2) == 2   # idle: every core
    assert eta.default_threads(cores=8, load=2.0) == 6
    assert 1 <= eta.default_threads() <= (os.cpu_count() or 1)


def test_no_keys_on_a_cpu_fits_the_run_and_prints_the_estimate_before_step_one(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_train=32, n_test=4)
    runs = tmp_path / "runs"
    arch = [t for t in TINY if t.startswith("arch.")]
    cmd = [sys.executable, "-m", "hrm_model.cli", str(ds), *arch, f"runs_dir={runs}", "run_name=r",
           "cpu_fit_hours=0.001", "global_batch_size=8", "log_every=1"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines, eta_at = [], None
    for line in p.stdout:
        lines.append(line.rstrip())
        if line.startswith("estimated wall time") and eta_at is None:
            eta_at = time.time() - t0
    assert p.wait(timeout=300) == 0, "\n".join(lines)
    out = "\n".join(lines)
    assert eta_at is not None and eta_at < 60, out
    i_eta = next(i for i, l in enumerate(lines) if l.startswith("estimated wall time"))
    assert i_eta < next(i for i, l in enumerate(lines) if l.startswith("eval step"))
    assert "no epochs given on a CPU" in out and "fitted to about" in out and "thread(s)" in out
    cfg = yaml.safe_load((runs / "r" / "config.yaml").read_text())
    assert cfg["epochs"] >= 1 and cfg["epochs"] % cfg["eval_interval"] == 0
    assert f"epochs={cfg['epochs']} eval_interval={cfg['eval_interval']}" in out
    assert "Result after" in out and "checkpoint:" in out and "predictions:" in out


def test_a_run_of_days_on_a_cpu_is_refused_with_the_keys_that_fix_it(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_train=32, n_test=4)
    runs = tmp_path / "runs"
    r = CliRunner().invoke(main, [str(ds), *TINY, f"runs_dir={runs}", "epochs=100000", "eval_interval=100",
                                  "global_batch_size=8", "cpu_max_hours=0.01"],
                           catch_exceptions=False)
    assert r.exit_code == 2, r.output
    assert "would take about" in r.output and "epochs=" in r.output and "cpu_max_hours=null" in r.output
    assert not runs.exists() or not any(runs.iterdir())   # refused before any run folder is made
