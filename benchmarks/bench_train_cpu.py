"""Training-step throughput of our HRM on CPU: the cpu-small preset and the paper configuration.

One step = what the trainer does per batch: one ACT segment forward (plus the gradient-free
Q-target segment), backward, the sparse sign-SGD and AdamATan2 updates. Synthetic batch of
``--batch`` rows of ``--seq-len`` tokens (default 8 x 900, a 30x30 grid), vocab 12.

    python benchmarks/bench_train_cpu.py                    # both configs
    python benchmarks/bench_train_cpu.py --configs cpu-small --steps 10 --threads 2
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from hrm_model.config import CPU_SMALL, PAPER_ARCH, PAPER_TRAIN, arch_for_model
from hrm_model.model import build_model, count_parameters
from hrm_model.optim import AdamATan2
from hrm_model.sparse_embedding import CastedSparseEmbeddingSignSGD


def config(name: str) -> dict:
    if name == "paper":
        cfg = {**PAPER_TRAIN, "arch": copy.deepcopy(PAPER_ARCH)}
    else:
        cfg = {**PAPER_TRAIN, **{k: v for k, v in CPU_SMALL.items() if k != "arch"},
               "arch": {**copy.deepcopy(PAPER_ARCH), **CPU_SMALL["arch"]}}
    cfg["arch"]["forward_dtype"] = "float32"  # CPU
    return cfg


def bench(name: str, batch: int, seq_len: int, steps: int, warmup: int, vocab: int = 12, puzzles: int = 1000) -> dict:
    cfg = config(name)
    torch.manual_seed(0)
    model = build_model(arch_for_model(cfg), batch_size=batch, seq_len=seq_len, vocab_size=vocab,
                        num_puzzle_identifiers=puzzles)
    opts = [CastedSparseEmbeddingSignSGD(model.model.puzzle_emb_module().buffers(), lr=1e-2, weight_decay=0.1,
                                         world_size=1),
            AdamATan2(model.parameters(), lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95))]
    g = torch.Generator().manual_seed(0)

    def make_batch():
        x = torch.randint(1, vocab, (batch, seq_len), generator=g, dtype=torch.int32)
        return {"inputs": x, "labels": x.clone(), "puzzle_identifiers": torch.randint(1, puzzles, (batch,), generator=g,
                                                                                       dtype=torch.int32)}
    carry = model.initial_carry(make_batch())
    times = []
    for i in range(warmup + steps):
        b = make_batch()
        t = time.perf_counter()
        carry, loss, metrics, _, _ = model(carry=carry, batch=b, return_keys=())
        (loss / batch).backward()
        for o in opts:
            o.step()
            o.zero_grad()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    mean = sum(times) / len(times)
    return {"config": name, "params": count_parameters(model), "batch": batch, "seq_len": seq_len,
            "threads": torch.get_num_threads(), "s_per_step": mean, "steps_per_s": 1 / mean,
            "examples_per_s": batch / mean}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="cpu-small,paper")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=900)
    ap.add_argument("--steps", type=int, default=5, help="timed steps for cpu-small")
    ap.add_argument("--paper-steps", type=int, default=2, help="timed steps for paper (slow on CPU)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    for name in a.configs.split(","):
        r = bench(name, a.batch, a.seq_len, a.paper_steps if name == "paper" else a.steps, a.warmup)
        print(f"{r['config']:10s} {r['params']:>11,} params  batch {r['batch']} x seq {r['seq_len']}  "
              f"threads {r['threads']}: {r['s_per_step']:.3f} s/step = {r['steps_per_s']:.3f} steps/s "
              f"({r['examples_per_s']:.1f} examples/s)", flush=True)


if __name__ == "__main__":
    main()
