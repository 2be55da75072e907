"""The training loop in-process: it learns, collates like the reference, pads evaluation
batches without counting the padding, stops on a NaN loss, runs on the paper repo's uint8 layout."""
import json

import numpy as np
import pytest
import torch

from hrm_data.format import write_arrays
from hrm_model import train as T
from trainer_fixtures import TINY, config, make_dataset, read_metrics  # noqa: F401


def test_tiny_model_trains_and_loss_falls(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    cfg = config("epochs=12", "eval_interval=6", "global_batch_size=16", "log_every=1", f"runs_dir={tmp_path / 'runs'}",
                 "arch.halt_max_steps=1")
    run_dir = T.run(ds, cfg, echo=lambda *_: None)
    m = read_metrics(run_dir)
    train = [r for r in m if r["type"] == "train"]
    evals = [r for r in m if r["type"] == "eval"]
    assert len(train) == 36 and train[-1]["step"] == 36
    first = np.mean([r["lm_loss"] for r in train[:4]])
    last = np.mean([r["lm_loss"] for r in train[-4:]])
    assert last < first * 0.8, (first, last)
    assert len(evals) == 2 and all(r["count"] == 12 for r in evals)
    for f in ("config.yaml", "plan.json", "metrics.jsonl", "predictions_all.npy"):
        assert (run_dir / f).exists(), f
    preds = np.load(run_dir / "predictions_all.npy")
    assert preds.shape == (12, 8)
    assert len(list((run_dir / "checkpoints").glob("step_*.pt"))) == 2  # checkpoint_every_eval


def test_collate_maps_ignore_label_and_pads():
    from hrm_model.data import collate
    from hrm_data.format import SetArrays
    arrays = SetArrays("all", inputs=np.array([[1, 2, 3], [4, 5, 1]], np.uint8),
                       labels=np.array([[0, 2, 3], [4, 0, 0]], np.uint8),
                       puzzle_identifiers=np.array([7, 9], np.int32), puzzle_indices=np.array([0, 1, 2]),
                       group_indices=np.array([0, 2]))
    b = collate(arrays, np.array([1, 0]), np.array([1, 0]), ignore_label_id=0, pad_to=3, pad_id=0, blank_identifier_id=0)
    assert all(v.dtype == np.int32 for v in b.values())
    assert b["labels"].tolist() == [[4, -100, -100], [-100, 2, 3], [-100, -100, -100]]
    assert b["inputs"].tolist() == [[4, 5, 1], [1, 2, 3], [0, 0, 0]]
    assert b["puzzle_identifiers"].tolist() == [9, 7, 0]
    b = collate(arrays, np.array([0]), np.array([0]), ignore_label_id=None)
    assert b["labels"].tolist() == [[0, 2, 3]]


def test_eval_padding_is_left_out_of_metrics(tmp_path):
    from hrm_data.format import Dataset
    from hrm_model.evaluate import evaluate
    from hrm_model.model import build_model
    ds = Dataset(make_dataset(tmp_path / "ds", n_test=10))
    cfg = config()
    from hrm_model.config import arch_for_model
    arch = dict(arch_for_model(cfg), forward_dtype="float32")
    torch.manual_seed(0)
    model = build_model(arch, batch_size=4, seq_len=8, vocab_size=6, num_puzzle_identifiers=ds.test.metadata.num_puzzle_identifiers)
    with torch.no_grad():  # a non-trivial puzzle embedding, so the blank row's prediction would differ
        model.model.puzzle_emb_module().weights.normal_()
    r4, p4 = evaluate(model, ds.test, global_batch_size=4, device=torch.device("cpu"), save_preds=True)   # 4+4+2 (2 pads)
    r5, p5 = evaluate(model, ds.test, global_batch_size=5, device=torch.device("cpu"), save_preds=True)   # no padding
    r10, _ = evaluate(model, ds.test, global_batch_size=16, device=torch.device("cpu"))                 # 10 + 6 pads
    for r in (r4, r5, r10):
        assert r["all"]["count"] == 10
    for k in ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps", "lm_loss", "q_halt_loss"):
        assert r4["all"][k] == pytest.approx(r5["all"][k], rel=1e-5, abs=1e-6), k
        assert r10["all"][k] == pytest.approx(r5["all"][k], rel=1e-5, abs=1e-6), k
    assert r4["all"]["steps"] == pytest.approx(2.0)  # every row runs halt_max_steps in eval
    assert p4["all"].shape == (10, 8) and np.array_equal(p4["all"], p5["all"])


def test_nan_loss_stops_with_exit_1_and_keeps_last_checkpoint(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    cfg = config("epochs=4", "eval_interval=1", "global_batch_size=16", f"runs_dir={tmp_path / 'runs'}",
                 "run_name=nan", "debug_nan_at_step=7")
    with pytest.raises(T.NonFiniteLoss) as e:
        T.run(ds, cfg, echo=lambda *_: None)
    assert e.value.exit_code == 1
    assert "step 7" in str(e.value) and "step_00000006.pt" in str(e.value)
    ckpts = sorted((tmp_path / "runs" / "nan" / "checkpoints").glob("step_*.pt"))
    assert [p.name for p in ckpts] == ["step_00000003.pt", "step_00000006.pt"]
    sd = torch.load(ckpts[-1], weights_only=False)
    assert all(torch.isfinite(v).all() for v in sd["model"].values() if v.is_floating_point())


def test_paper_repo_uint8_layout_and_multi_example_puzzles(tmp_path):
    rng = np.random.default_rng(0)
    S, V = 6, 5
    def split(n):
        x = rng.integers(1, V, size=(n, S)).astype(np.uint8)
        return {"inputs": x, "labels": np.sort(x, 1).astype(np.uint8),
                "puzzle_identifiers": np.zeros(n, np.int32), "puzzle_indices": np.arange(n + 1, dtype=np.int32),
                "group_indices": np.arange(n + 1, dtype=np.int32)}
    path = write_arrays(tmp_path / "paper", {"train": split(24), "test": split(5)}, vocab_size=V)
    cfg = config("epochs=2", "global_batch_size=8", f"runs_dir={tmp_path / 'runs'}")
    run_dir = T.run(path, cfg, echo=lambda *_: None)
    evals = [r for r in read_metrics(run_dir) if r["type"] == "eval"]
    assert evals[-1]["count"] == 5
    # several examples per puzzle, several puzzles per group
    ds = make_dataset(tmp_path / "multi", n_train=12, n_test=3, multi=True)
    run_dir = T.run(ds, config("epochs=2", "global_batch_size=8", f"runs_dir={tmp_path / 'runs'}"), echo=lambda *_: None)
    evals = [r for r in read_metrics(run_dir) if r["type"] == "eval"]
    assert evals[-1]["count"] == 12


def test_ema_and_lr_logged_per_schedule(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    cfg = config("epochs=2", "global_batch_size=16", "log_every=1", "ema=true", "ema_rate=0.9",
                 "lr_min_ratio=0.5", "lr_warmup_steps=2", f"runs_dir={tmp_path / 'runs'}")
    run_dir = T.run(ds, cfg, echo=lambda *_: None)
    train = [r for r in read_metrics(run_dir) if r["type"] == "train"]
    from hrm_model.optim import lr_at
    plan = json.loads((run_dir / "plan.json").read_text())
    total = plan.get("hrm_estimated_total_steps", 6)
    for r in train:
        assert r["lr"] == pytest.approx(lr_at(r["step"], 3e-3, warmup_steps=2, total_steps=total, min_ratio=0.5))
    ck = torch.load(sorted((run_dir / "checkpoints").glob("*.pt"))[-1], weights_only=False)
    assert ck["ema"] is not None and "model.inner.puzzle_emb.weights" in ck["ema"]
