"""What hrm-train says: advice as key=value, named rules, `keys` as YAML with descriptions,
evaluation progress, task metrics that cannot be misread, one time base in metrics.jsonl, the
summary at the end of a run, and `hrm-data plan` without -b."""
import json
import time

import numpy as np
import torch
import yaml
from click.testing import CliRunner

from hrm_data.cli import main as data_main
from hrm_data.plan import TRAINER_CPU_BATCH, TRAINER_DEFAULT_BATCH, compute_plan
from hrm_model import train as T
from hrm_model.cli import main
from hrm_model.config import CPU_SMALL, DEFAULTS, KNOWN_KEYS
from hrm_model.evaluate import evaluate, summary_line
from hrm_model.key_docs import DESCRIPTIONS
from hrm_model.report import final_summary
from trainer_fixtures import config, make_dataset, read_metrics


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_flags_are_answered_with_the_key_value_to_write(tmp_path):
    for args, want in ((["--epochs", "5"], "write epochs=5"), (["data", "--epochs=7"], "write epochs=7"),
                       (["data", "--hidden-size", "64"], "write arch.hidden_size=64"),
                       (["data", "--force"], "write force=true"), (["--eval-interval"], "write eval_interval=VALUE")):
        r = cli(*args)
        assert r.exit_code == 2 and want in r.stderr, (args, r.stderr)


def test_keys_prints_yaml_values_and_a_description_for_every_key():
    assert set(DESCRIPTIONS) == KNOWN_KEYS
    r = cli("keys")
    assert r.exit_code == 0
    lines = [l for l in r.stdout.splitlines() if l and not l.startswith("#")]
    seen = {}
    for line in lines:
        value, comment = line.split(" # ", 1)
        seen.update(yaml.safe_load(value))
        assert comment.strip() and comment.strip() != "(no description yet)", line
    flat_defaults = {k: v for k, v in __import__("hrm_model.config", fromlist=["flatten"]).flatten(DEFAULTS).items()}
    assert seen == flat_defaults   # what YAML reads back is the default itself (null, true, 1.0e-05, ...)


def test_plan_advice_in_the_trainer_is_key_value_and_names_the_rule(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_train=40)
    text = compute_plan(ds, 8, 20, 3).format_text(keys=True)
    assert "eval_interval=2" in text and "lr_warmup_examples=" in text
    assert "--eval-interval" not in text and "--lr-warmup" not in text
    assert "the 10:1 epochs-to-evaluations rule" in text and "document" not in text
    flags = compute_plan(ds, 8, 20, 3).format_text()
    assert "--eval-interval 2" in flags   # hrm-data plan keeps its own flags


def test_hrm_data_plan_without_batch_uses_the_trainers_default_and_says_so(tmp_path):
    assert TRAINER_DEFAULT_BATCH == DEFAULTS["global_batch_size"]
    assert TRAINER_CPU_BATCH == CPU_SMALL["global_batch_size"]
    ds = make_dataset(tmp_path / "ds", n_train=800, n_test=2)
    r = CliRunner().invoke(data_main, ["plan", str(ds), "-e", "10", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["global_batch_size"] == 768
    assert "hrm-train's default" in r.stderr and "-b 32" in r.stderr


def test_evaluation_shows_a_progress_bar_over_batches(tmp_path, capsys):
    ds = make_dataset(tmp_path / "ds", n_test=10)
    cfg = T.resolve_runtime(config("epochs=1", "global_batch_size=4"), torch.device("cpu"))
    from hrm_data.format import Dataset
    d = Dataset(ds)
    model = T._build(cfg, d.train.metadata, 4, torch.device("cpu"))
    evaluate(model, d.test, global_batch_size=4, device=torch.device("cpu"), progress=True)
    err = capsys.readouterr().err
    assert "evaluating all (10 examples)" in err and "/3 [" in err   # a bar over 3 batches
    evaluate(model, d.test, global_batch_size=4, device=torch.device("cpu"), progress=False)
    assert capsys.readouterr().err == ""


def test_task_metrics_cannot_be_misread():
    m = {"count": 400, "exact_accuracy": 0.0, "accuracy": 0.8, "task": {
        "route_valid": 0.0, "route_optimal": 0.0, "cost_excess": None, "naive_baseline": 0.5425, "examples": 400}}
    line = summary_line(m)
    assert "cost_excess n/a" in line and "cost_excess 0" not in line
    assert "route_valid 0.0000" in line and "naive_baseline 0.5425" in line and "examples 400" in line
    assert "(whole answers right)" in line


def test_final_summary_says_what_was_learned_against_the_baseline_and_where_things_are():
    results = {"all": {"count": 400, "exact_accuracy": 0.62, "accuracy": 0.97,
                       "task": {"route_valid": 0.8, "route_optimal": 0.63, "cost_excess": 0.012,
                                "naive_baseline": 0.54, "examples": 400}}}
    text = final_summary(results, run_dir="runs/demo", checkpoint="runs/demo/checkpoints/step_00000625.pt",
                         predictions=["runs/demo/predictions_all.npy"], steps=625, seconds=200,
                         task_name="city-logistics", task_description="Least-cost routes")
    assert "62.0% of the 400 test examples" in text and "naive baseline 0.540" in text
    assert "8.0 points better" in text and "63.0% least-cost" in text and "1.2% more" in text
    assert "runs/demo/checkpoints/step_00000625.pt" in text and "predictions_all.npy" in text
    results["all"]["exact_accuracy"] = 0.2
    results["all"]["task"]["cost_excess"] = None
    text = final_summary(results, run_dir="r", checkpoint=None, predictions=[], steps=1, seconds=1)
    assert "has not learned the task yet" in text and "cost_excess n/a" in text


def test_metrics_have_one_time_base_and_epochs_that_agree_with_steps(tmp_path):
    ds = make_dataset(tmp_path / "ds", n_train=40)
    cfg = config("epochs=4", "eval_interval=2", "global_batch_size=8", "log_every=1", f"runs_dir={tmp_path / 'runs'}")
    t0 = time.time()
    run_dir = T.run(ds, cfg, echo=lambda *_: None)
    t1 = time.time()
    m = read_metrics(run_dir)
    times = [r["time"] for r in m]
    assert all(t0 <= t <= t1 for t in times) and times == sorted(times)
    per_iter = json.loads((run_dir / "plan.json").read_text())["steps_per_iteration"]   # 40 x 2 / 8 = 10
    train = [r for r in m if r["type"] == "train"]
    for r in train:
        assert np.isclose(r["epoch"], r["step"] / per_iter * 2), r
    for e in (r for r in m if r["type"] == "eval"):
        last = max((r for r in train if r["step"] <= e["step"]), key=lambda r: r["step"])
        assert last["step"] == e["step"] and last["epoch"] == e["epoch"]
