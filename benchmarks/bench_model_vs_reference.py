"""CPU speed of our HRM model against sapientinc/HRM's model code at the same config.

One timed step = one ACT segment forward + loss + backward (what one optimizer step costs,
without the optimizer), on the same random batch for both. Both run alternately in one process
so load on the machine hits both alike; medians are printed.

    python benchmarks/bench_model_vs_reference.py --reference /path/to/HRM-checkout

``--reference`` is a checkout of sapientinc/HRM (its ``models/`` package); its flash-attn import
is served by a tiny SDPA stand-in made here, so nothing of it needs building. Without
``--reference`` only our model is timed.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hrm_model.model import build_model  # noqa: E402

CONFIGS = {
    # the CPU figure: batch 32, seq 100, hidden 128, 2+2 layers, 2x2 cycles, fp32
    "cpu-small": dict(batch=32, seq=100, vocab=12, arch=dict(hidden_size=128, num_heads=4, expansion=4, H_layers=2,
                      L_layers=2, H_cycles=2, L_cycles=2, puzzle_emb_ndim=128, pos_encodings="rope",
                      halt_max_steps=8, halt_exploration_prob=0.1)),
    "paper": dict(batch=8, seq=900, vocab=12, arch=dict(hidden_size=512, num_heads=8, expansion=4, H_layers=4,
                  L_layers=4, H_cycles=2, L_cycles=2, puzzle_emb_ndim=512, pos_encodings="rope",
                  halt_max_steps=16, halt_exploration_prob=0.1)),
}

SHIM = '''import torch.nn.functional as F
def flash_attn_func(q, k, v, causal=False):
    t = lambda x: x.transpose(1, 2)
    return t(F.scaled_dot_product_attention(t(q), t(k), t(v), is_causal=causal)).contiguous()
'''


def reference_factory(path: str):
    shim_dir = tempfile.mkdtemp(prefix="hrm-shim-")
    Path(shim_dir, "flash_attn.py").write_text(SHIM)
    sys.path[:0] = [shim_dir, path]
    from models.hrm.hrm_act_v1 import HierarchicalReasoningModel_ACTV1
    from models.losses import ACTLossHead

    def make(cfg, dtype):
        c = dict(cfg["arch"], batch_size=cfg["batch"], seq_len=cfg["seq"], vocab_size=cfg["vocab"],
                 num_puzzle_identifiers=1, forward_dtype=dtype, causal=False)
        return ACTLossHead(HierarchicalReasoningModel_ACTV1(c), loss_type="stablemax_cross_entropy")
    return make


def ours(cfg, dtype):
    return build_model(dict(cfg["arch"], forward_dtype=dtype), batch_size=cfg["batch"], seq_len=cfg["seq"],
                       vocab_size=cfg["vocab"], num_puzzle_identifiers=1, loss_type="stablemax_cross_entropy")


def stepper(model, batch):
    model.train()
    state = {"carry": model.initial_carry(batch)}

    def step():
        carry, loss, _, _, _ = model(carry=state["carry"], batch=batch, return_keys=[])
        (loss / batch["inputs"].shape[0]).backward()
        model.zero_grad(set_to_none=True)
        state["carry"] = carry
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", help="checkout of sapientinc/HRM (optional)")
    ap.add_argument("--configs", default="cpu-small,paper")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--steps", type=int, default=0, help="timed steps per model (default 7 small, 3 paper)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    makers = {"ours": ours}
    if args.reference:
        makers["reference"] = reference_factory(args.reference)
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        g = torch.Generator().manual_seed(0)
        batch = dict(inputs=torch.randint(0, cfg["vocab"], (cfg["batch"], cfg["seq"]), generator=g, dtype=torch.int32),
                     labels=torch.randint(0, cfg["vocab"], (cfg["batch"], cfg["seq"]), generator=g, dtype=torch.int32),
                     puzzle_identifiers=torch.zeros(cfg["batch"], dtype=torch.int32))
        steps = {k: stepper(make(cfg, args.dtype), batch) for k, make in makers.items()}
        for s in steps.values():
            s()  # warm-up
        n = args.steps or (7 if name == "cpu-small" else 3)
        times = {k: [] for k in steps}
        for _ in range(n):
            for k, s in steps.items():  # alternate, so both see the same machine load
                t = time.perf_counter()
                s()
                times[k].append(time.perf_counter() - t)
        tokens = cfg["batch"] * cfg["seq"]
        for k, ts in times.items():
            med = statistics.median(ts)
            print(f"{name:9s} {args.dtype:8s} {k:9s} median {med:7.3f} s/step  {tokens / med:9.0f} tokens/s  "
                  f"(batch {cfg['batch']}, seq {cfg['seq']}, {n} steps, {args.threads} threads)")
        if "reference" in times:
            r = statistics.median(times["ours"]) / statistics.median(times["reference"])
            print(f"{name:9s} ours / reference time ratio: {r:.3f}")


if __name__ == "__main__":
    main()
