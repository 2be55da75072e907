"""2 processes x B/2 (gloo, CPU) end at the same parameters as 1 process x B."""
import os
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hrm_model import checkpoint as ckpt

sys.path.insert(0, str(Path(__file__).parent))
from trainer_fixtures import config, make_dataset, read_metrics  # noqa: E402

COMMON = ["epochs=3", "eval_interval=1", "global_batch_size=16", "arch.halt_max_steps=3",
          "arch.halt_exploration_prob=0.0",  # exploration draws per-rank random numbers (seed + rank), as the reference
          "log_every=1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world_size, port, ds, runs):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from hrm_model import train as T
    T.run(ds, config(*COMMON, f"runs_dir={runs}", "run_name=ddp"), echo=lambda *_: None)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_two_ranks_match_one(tmp_path):
    from hrm_model import train as T
    ds = make_dataset(tmp_path / "ds", multi=True)  # several examples per puzzle: rows split inside puzzles
    runs = tmp_path / "runs"
    one = T.run(ds, config(*COMMON, f"runs_dir={runs}", "run_name=one"), echo=lambda *_: None)
    mp.spawn(_worker, args=(2, _free_port(), str(ds), str(runs)), nprocs=2, join=True)
    two = runs / "ddp"

    a = torch.load(ckpt.latest_checkpoint(one), weights_only=False)
    b = torch.load(ckpt.latest_checkpoint(two), weights_only=False)
    assert a["step"] == b["step"] > 0 and b["world_size"] == 2
    assert len(b["ranks"]) == 2  # every rank's carry and RNG state
    for k, va in a["model"].items():
        vb = b["model"][k]
        assert torch.allclose(va.float(), vb.float(), atol=2e-5, rtol=1e-4), (k, (va.float() - vb.float()).abs().max())
    # rank 0 logged the summed metrics of both ranks: same as one process
    ta = [m for m in read_metrics(one) if m["type"] == "train"]
    tb = [m for m in read_metrics(two) if m["type"] == "train"]
    assert len(ta) == len(tb)
    for x, y in zip(ta, tb):
        assert x["count"] == y["count"]
        assert x["lm_loss"] == pytest.approx(y["lm_loss"], rel=1e-4, abs=1e-5)
    ea = [m for m in read_metrics(one) if m["type"] == "eval"]
    eb = [m for m in read_metrics(two) if m["type"] == "eval"]
    assert [m["count"] for m in ea] == [m["count"] for m in eb]
    assert [m["exact_accuracy"] for m in ea] == pytest.approx([m["exact_accuracy"] for m in eb])
    assert (two / "predictions_all.npy").exists()
