"""Seconds per training step of a small HRM on CPU with 1, 2, ... torch threads.

    python benchmarks/bench_threads.py                     # the demo's model, 1 and all threads
    python benchmarks/bench_threads.py --seq-len 100 --hidden 128 --batch 32 --halt 4   # cpu-small at 10 x 10

One step = one ACT segment forward (plus the Q-target segment when halt > 1), backward, AdamATan2.
Medians of --steps steps after 2 warmup steps; run it on an idle and on a busy machine: the
fastest thread count differs (docs/trainer.md, "Threads").
"""
from __future__ import annotations

import argparse
import os
import time

import torch

from hrm_model.model import build_model
from hrm_model.optim import AdamATan2


def step_time(threads: int, a) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    arch = dict(hidden_size=a.hidden, num_heads=max(1, a.hidden // 32), expansion=4, H_layers=2, L_layers=2,
                H_cycles=2, L_cycles=2, puzzle_emb_ndim=a.hidden, pos_encodings="rope", halt_max_steps=a.halt,
                halt_exploration_prob=0.1, forward_dtype="float32")
    model = build_model(arch, batch_size=a.batch, seq_len=a.seq_len, vocab_size=27, num_puzzle_identifiers=5)
    opt = AdamATan2(model.parameters(), lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95))
    x = torch.randint(1, 27, (a.batch, a.seq_len), dtype=torch.int32)
    batch = {"inputs": x, "labels": x.clone(), "puzzle_identifiers": torch.randint(1, 5, (a.batch,), dtype=torch.int32)}
    carry = model.initial_carry(batch)
    times = []
    for i in range(a.steps + 2):
        t = time.perf_counter()
        carry, loss, _, _, _ = model(carry=carry, batch=batch, return_keys=())
        (loss / a.batch).backward()
        opt.step()
        opt.zero_grad()
        if i >= 2:
            times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=26, help="26 = a 5 x 5 map + the puzzle-embedding position")
    ap.add_argument("--halt", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, nargs="*", default=None, help="default: 1 and all cores")
    a = ap.parse_args()
    counts = a.threads or sorted({1, os.cpu_count() or 1})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"hidden {a.hidden}, batch {a.batch} x {a.seq_len} tokens, halt {a.halt}; load average {load:.1f} "
          f"on {os.cpu_count()} cores")
    for n in counts:
        print(f"  {n} thread(s): {step_time(n, a):.3f} s/step", flush=True)


if __name__ == "__main__":
    main()
