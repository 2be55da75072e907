"""Shared by the trainer's tests: a tiny model config and a tiny sort dataset."""
import json
from pathlib import Path

import numpy as np

from hrm_data.format import DatasetWriter, Group, Puzzle
from hrm_model.config import parse_overrides, resolve

TINY = ["arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.H_cycles=1",
        "arch.L_cycles=1", "arch.halt_max_steps=2", "arch.puzzle_emb_ndim=32", "arch.expansion=2",
        "progress=false", "cpu_threads=1", "lr_warmup_steps=2", "lr=3e-3"]


def make_dataset(path, n_train=48, n_test=12, S=8, V=6, seed=0, multi=False):
    """A sort task: labels are the sorted inputs. ``multi``: groups of 2 puzzles with 2 examples."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, vocab_size=V, seq_len=S, pad_id=0, ignore_label_id=0, force=True) as w:
        for split, n in (("train", n_train), ("test", n_test)):
            with w.split(split) as s:
                for i in range(n):
                    if multi:
                        pz = []
                        for j in range(2):
                            x = rng.integers(1, V, size=(2, S))
                            pz.append(Puzzle(f"{split}{i}-{j}", x, np.sort(x, axis=1)))
                        s.add_group(Group(pz))
                    else:
                        x = rng.integers(1, V, size=S)
                        s.add_group(Group([Puzzle(f"{split}{i}", x, np.sort(x))]))
    return Path(path)


def config(*items, gpu=False):
    cfg, notes = resolve({}, parse_overrides([*TINY, *items]), gpu_available=gpu)
    return cfg


def read_metrics(run_dir):
    return [json.loads(l) for l in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def assert_same_state(a, b):
    """Two checkpoints hold the same training state: step, every weight and optimizer tensor, bit for bit."""
    import torch
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for oa, ob in zip(a["optimizers"], b["optimizers"]):
        for sa, sb in zip(oa["state"].values(), ob["state"].values()):
            for k in sa:
                if isinstance(sa[k], torch.Tensor):
                    assert torch.equal(sa[k], sb[k]), k
