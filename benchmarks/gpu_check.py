"""The prepared check for a lent GPU: the paper configuration on CUDA, bf16, with and without
torch.compile, on a generated dataset; then the real `hrm-train` path end to end.

Prints, per mode: steps/s, tokens/s, peak GPU memory, compile time and the loss after N steps
(so a broken compiled graph shows up as a different loss). One command, sized for a few minutes:

    python benchmarks/gpu_check.py                       # on the GPU machine
    python benchmarks/gpu_check.py --device cpu --tiny   # a dry run of the script itself

Steps are timed with CUDA synchronisation; the first ``--warmup`` steps (compilation) are
reported apart.
"""
from __future__ import annotations

import argparse
import copy
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hrm_data.builder import build
from hrm_data.format import Dataset
from hrm_data.registry import get as get_builder
from hrm_data.sampler import GroupSampler
from hrm_model.config import CPU_SMALL, PAPER_ARCH, PAPER_TRAIN, PRESETS, TRM_CPU_SMALL, arch_for_model
from hrm_model.data import collate, to_tensors
from hrm_model.model import build_model, count_parameters
from hrm_model.optim import AdamATan2
from hrm_model.sparse_embedding import CastedSparseEmbeddingSignSGD


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_mode(ds: Dataset, device: torch.device, arch: dict, batch: int, steps: int, warmup: int, compile_: bool) -> dict:
    train = ds.train
    arrays = train.set("all")
    meta = train.metadata
    torch.manual_seed(0)
    with torch.device(device):
        model = build_model(arch, batch_size=batch, seq_len=meta.seq_len, vocab_size=meta.vocab_size,
                            num_puzzle_identifiers=meta.num_puzzle_identifiers)
    opts = [CastedSparseEmbeddingSignSGD(model.model.puzzle_emb_module().buffers(), lr=1e-2, weight_decay=0.1,
                                         world_size=1),
            AdamATan2(model.parameters(), lr=1e-4, weight_decay=0.1, betas=(0.9, 0.95))]
    fwd = torch.compile(model, dynamic=False) if compile_ else model
    sampler = GroupSampler((arrays.puzzle_indices, arrays.group_indices), batch, epochs_per_iter=1000, seed=0)
    batches = sampler.batches(10**6)

    def next_batch():
        b = next(batches)
        cpu = to_tensors(collate(arrays, b.examples, b.puzzles, ignore_label_id=meta.ignore_label_id),
                         pin=device.type == "cuda")
        return {k: v.to(device, non_blocking=True) for k, v in cpu.items()}

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with torch.device(device):
        carry = model.initial_carry(next_batch())
    times, loss_v = [], float("nan")
    t_warm = time.perf_counter()
    for i in range(warmup + steps):
        b = next_batch()
        if i == warmup:
            sync(device)
            warm_s = time.perf_counter() - t_warm
        t = time.perf_counter()
        carry, loss, _, _, _ = fwd(carry=carry, batch=b, return_keys=())
        ((1.0 / batch) * loss).backward()
        for o in opts:
            o.step()
            o.zero_grad()
        if i >= warmup:
            sync(device)
            times.append(time.perf_counter() - t)
    loss_v = float(loss.detach()) / batch
    med = float(np.median(times))
    return {"arch": arch.get("name", "hrm_v1"), "compile": compile_, "params": count_parameters(model), "batch": batch, "seq_len": meta.seq_len,
            "dtype": arch["forward_dtype"], "warmup_s": round(warm_s, 2), "s_per_step": round(med, 4),
            "steps_per_s": round(1 / med, 3), "tokens_per_s": round(batch * meta.seq_len / med),
            "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None,
            "loss_after": round(loss_v, 4), "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=96, help="per-GPU batch (the paper's 768 over 8 GPUs)")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--tiny", action="store_true", help="cpu-small arch, 10x10 maps, few steps: a dry run")
    ap.add_argument("--no-cli", action="store_true", help="skip the end-to-end hrm-train run")
    ap.add_argument("--out", default=None, help="write the results as JSON here too")
    ap.add_argument("--arch", default="both", choices=("hrm", "trm", "both"),
                    help="HRM's paper model, TRM's ARC recipe (preset trm-arc), or both")
    a = ap.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda":
        print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}", flush=True)
    size = 10 if a.tiny else 30
    archs = []
    for name in (("hrm", "trm") if a.arch == "both" else (a.arch,)):
        if name == "hrm":
            arch = {**copy.deepcopy(PAPER_ARCH), **CPU_SMALL["arch"]} if a.tiny else copy.deepcopy(PAPER_ARCH)
        else:
            arch = copy.deepcopy(TRM_CPU_SMALL["arch"] if a.tiny else PRESETS["trm-arc"]["arch"])
            arch = {**copy.deepcopy(PRESETS["trm-arc"]["arch"]), **arch}
        arch["forward_dtype"] = "bfloat16" if device.type == "cuda" else "float32"
        archs.append(arch_for_model({**PAPER_TRAIN, "arch": arch}))
    steps, batch = (3, 8) if a.tiny else (a.steps, a.batch)
    tmp = Path(tempfile.mkdtemp(prefix="hrm-gpu-check-"))
    t = time.perf_counter()
    ds = Dataset(build(get_builder("city-logistics"), tmp / "city", {"size": size, "train_scenarios": 2000 if not a.tiny else 40,
                                                                     "test_scenarios": 50 if not a.tiny else 10,
                                                                     "workers": 1 if a.tiny else 8}, progress=False))
    print(f"dataset: city-logistics {size}x{size}, {ds.train.set('all').num_examples} train examples, "
          f"built in {time.perf_counter() - t:.1f} s", flush=True)
    results = []
    for arch in archs:
        for compile_ in ((False,) if a.tiny and device.type == "cpu" else (False, True)):
            r = run_mode(ds, device, arch, batch, steps, a.warmup if not a.tiny else 1, compile_)
            results.append(r)
            print(json.dumps(r), flush=True)
    for name in ([] if a.no_cli else (("hrm", "trm") if a.arch == "both" else (a.arch,))):
        cmd = [sys.executable, "-m", "hrm_model.cli", str(tmp / "city"), f"device={a.device}", "epochs=2", "eval_interval=1",
               f"runs_dir={tmp / 'runs'}", f"run_name=check-{name}", "progress=false"]
        if a.tiny:
            cmd += ["preset=cpu-small" if name == "hrm" else "preset=trm-cpu-small"]
        else:
            cmd += ["preset=paper" if name == "hrm" else "preset=trm-arc", "global_batch_size=96", "lr_warmup_steps=10"]
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True)
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-4:])
        print(f"hrm-train {name} end to end: exit {p.returncode} in {time.perf_counter() - t:.0f} s\n{tail}", flush=True)
        results.append({"arch": name, "cli_exit": p.returncode})
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
