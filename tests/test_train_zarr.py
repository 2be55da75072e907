"""hrm-train reads a Zarr store directly and sees exactly the batches it sees from npy."""
import numpy as np
import pytest

from hrm_data.convert import convert
from hrm_data.format import Dataset
from hrm_data.sampler import GroupSampler
from hrm_model import train as T
from trainer_fixtures import config, make_dataset, read_metrics

pytest.importorskip("zarr")


def test_loader_batches_identical(tmp_path):
    from hrm_model.data import TrainLoader, eval_loader
    src = make_dataset(tmp_path / "d", multi=True)
    z = convert(src, tmp_path / "d.zarr", progress=False)
    batches = []
    for path in (src, z):
        sp = Dataset(path).train
        pi, gi = sp.index_arrays("all")
        sampler = GroupSampler({"all": (pi, gi)}, global_batch_size=16, epochs_per_iter=2, seed=3)
        got = [{k: v.numpy().copy() for k, v in t.items()} for _, t in TrainLoader(sp, sampler, 0)]
        got += [{k: v.numpy().copy() for k, v in t.items()} for _, t, _, _ in eval_loader(Dataset(path).test, "all", 16)]
        batches.append(got)
    assert len(batches[0]) == len(batches[1]) > 5
    for a, b in zip(*batches):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_hrm_train_from_zarr_matches_npy(tmp_path):
    src = make_dataset(tmp_path / "d")
    z = convert(src, tmp_path / "d.zarr", progress=False)
    runs = []
    for path, name in ((src, "npy"), (z, "zarr")):
        cfg = config("epochs=4", "eval_interval=2", "global_batch_size=16", "log_every=1",
                     f"runs_dir={tmp_path / 'runs'}", f"run_name={name}")
        run_dir = T.run(str(path), cfg, echo=lambda *_: None)
        runs.append(([(r["type"], r.get("step"), r.get("lm_loss")) for r in read_metrics(run_dir)],
                     np.load(run_dir / "predictions_all.npy")))
    (m_npy, p_npy), (m_zarr, p_zarr) = runs
    assert len([m for m in m_npy if m[0] == "train"]) == 12
    assert m_npy == m_zarr and np.array_equal(p_npy, p_zarr)
