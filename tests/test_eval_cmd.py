"""Per-example evaluation fields, predictions.parquet from a run, `hrm-train eval` and `plot`."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from hrm_data.format import Dataset
from hrm_model import train as T
from hrm_model.cli import main

sys.path.insert(0, str(Path(__file__).parent))
from trainer_fixtures import config, make_dataset  # noqa: E402


def test_per_example_fields_agree_with_the_summed_metrics(tmp_path):
    from hrm_model.config import arch_for_model
    from hrm_model.evaluate import evaluate
    from hrm_model.model import build_model
    ds = Dataset(make_dataset(tmp_path / "ds", n_test=10))
    arch = dict(arch_for_model(config()), forward_dtype="float32")
    torch.manual_seed(0)
    model = build_model(arch, batch_size=4, seq_len=8, vocab_size=6, num_puzzle_identifiers=ds.test.metadata.num_puzzle_identifiers)
    with torch.no_grad():
        model.model.puzzle_emb_module().weights.normal_()
    per4, per5 = {}, {}
    r, p = evaluate(model, ds.test, global_batch_size=4, device=torch.device("cpu"), save_preds=True, per_example=per4)
    evaluate(model, ds.test, global_batch_size=5, device=torch.device("cpu"), save_preds=True, per_example=per5)
    e = per4["all"]
    assert e["steps"].tolist() == [2] * 10                    # eval runs halt_max_steps segments
    assert ((e["halt_step"] >= 1) & (e["halt_step"] <= 2)).all()
    for k in e:                                               # padding rows (batch 4: 4+4+2) change nothing
        np.testing.assert_allclose(e[k], per5["all"][k], rtol=1e-5, atol=1e-6)
    labels = np.asarray(ds.test.set("all").labels)
    correct = (p["all"] == labels).all(1)
    assert correct.mean() == pytest.approx(r["all"]["exact_accuracy"])
    assert ((e["q_halt"] >= 0) == correct).mean() == pytest.approx(r["all"]["q_halt_accuracy"])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evalcmd")
    ds = make_dataset(tmp / "ds", n_test=10)
    cfg = config("epochs=2", "eval_interval=1", "global_batch_size=16", f"runs_dir={tmp / 'runs'}")
    return T.run(ds, cfg, echo=lambda *_: None)


def test_run_writes_predictions_parquet(run_dir):
    df = pd.read_parquet(run_dir / "predictions.parquet")
    assert len(df) == 10 and df["example"].tolist() == list(range(10))
    assert (np.stack(df["prediction"]) == np.load(run_dir / "predictions_all.npy")).all()
    assert df["steps"].tolist() == [2] * 10 and df["q_halt"].notna().all()
    assert df["puzzle_name"].tolist() == [f"test{i}" for i in range(10)]


def test_eval_command_table_predictions_and_pictures(run_dir, tmp_path):
    pytest.importorskip("PIL", reason="Pillow not installed (the viz extra)")
    r = CliRunner().invoke(main, ["eval", str(run_dir), "--show", "3", "--png", str(tmp_path / "png"), "--only-wrong"])
    assert r.exit_code == 0, r.output
    out = run_dir / "eval" / "step_6"
    df = pd.read_parquet(out / "predictions.parquet")
    assert (out / "predictions_all.npy").exists() and len(df) == 10
    head = next(l for l in r.output.splitlines() if l.startswith("set "))
    assert head.split()[:7] == ["set", "n", "accuracy", "exact", "q_halt_acc", "steps", "lm_loss"]
    row = next(l for l in r.output.splitlines() if l.startswith("all "))
    assert row.split()[1] == "10" and float(row.split()[3]) == pytest.approx(df["correct"].mean(), abs=1e-4)
    pics = sorted(p.name for p in (tmp_path / "png").iterdir())
    wrong = df.loc[~df["correct"], "example"].tolist()[:3]
    assert pics == [f"all_{i:06d}.png" for i in wrong]
    r = CliRunner().invoke(main, ["eval", str(run_dir), "--checkpoint", "3", "--out", str(tmp_path / "e3")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "e3" / "predictions.parquet").exists()


def test_eval_command_refusals(run_dir, tmp_path):
    def run(*a):
        return CliRunner().invoke(main, ["eval", *map(str, a)])
    r = run(run_dir, "--checkpoint", "99")
    assert r.exit_code == 2 and "steps: 3, 6" in r.output
    r = run(run_dir, "--png", tmp_path)
    assert r.exit_code == 2 and "--show" in r.output
    r = run(run_dir, "--show", "2")
    assert r.exit_code == 2 and "--png DIR" in r.output
    r = run(tmp_path / "none")
    assert r.exit_code == 2 and "no such run folder" in r.output
    r = run(run_dir, "lr=1")
    assert r.exit_code == 2 and "runtime keys" in r.output


def test_plot_command_on_a_run(run_dir, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib not installed (the viz extra)")
    r = CliRunner().invoke(main, ["plot", str(run_dir), str(run_dir), "--png", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    from PIL import Image
    assert Image.open(tmp_path / "p.png").size[0] > 1000
