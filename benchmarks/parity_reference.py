"""Bit-for-bit comparison of our models with the reference repositories' own model code on CPU:
HRM (``arch.name=hrm_v1``) against sapientinc/HRM, TRM (``arch.name=trm``) against
SamsungSAILMontreal/TinyRecursiveModels.

    python benchmarks/parity_reference.py --hrm /path/to/HRM --trm /path/to/TinyRecursiveModels [--site DIR]

Each path is a checkout (its ``models/`` package is imported from there; nothing of it is copied
here); give one or both. HRM's flash-attn import is served by a tiny SDPA stand-in made here.
Both need ``pydantic`` (TRM's also ``einops``): install them anywhere (``pip install --target DIR
pydantic einops``) and pass ``--site DIR``.

For each variant (attention with rope / learned / no positions, TRM's ``mlp_t``; float32 and
bfloat16), from the same seed it checks that both sides initialise the same weights, then over
several ACT segments in training mode: logits, q values, loss, metrics, carry and every
gradient; after each segment an optimizer step (AdamATan2 + the reference's sparse sign-SGD,
and for TRM its ``EMAHelper``): parameters, the puzzle table and the EMA copies; then the eval
segments. The reference's AdamATan2 is a CUDA extension: the reference side here uses a
per-tensor transcription of its kernel's formula (csrc/adam_atan2.cu, see
docs/trainer.md), ours the foreach implementation the trainer uses. Prints the maximum
absolute difference of every compared quantity and exits 1 if any is not exactly 0.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hrm_model.model import build_model, load_reference_state_dict  # noqa: E402
from hrm_model.optim import AdamATan2  # noqa: E402
from hrm_model.sparse_embedding import CastedSparseEmbeddingSignSGD  # noqa: E402
from hrm_model.train import EMA  # noqa: E402

B, S, V, NPUZ = 6, 16, 10, 5
BASE = {
    "trm": dict(hidden_size=64, num_heads=4, expansion=4, H_cycles=3, L_cycles=2, H_layers=0, L_layers=2,
                puzzle_emb_ndim=64, puzzle_emb_len=4, pos_encodings="rope", halt_max_steps=4,
                halt_exploration_prob=0.5, rms_norm_eps=1e-5, rope_theta=10000.0, mlp_t=False, no_ACT_continue=True),
    "hrm_v1": dict(hidden_size=64, num_heads=4, expansion=4, H_cycles=2, L_cycles=2, H_layers=2, L_layers=2,
                   puzzle_emb_ndim=64, pos_encodings="rope", halt_max_steps=4, halt_exploration_prob=0.5,
                   rms_norm_eps=1e-5, rope_theta=10000.0),
}
VARIANTS = {
    "trm": {"attention-rope": {}, "attention-learned": dict(pos_encodings="learned"),
            "attention-none": dict(pos_encodings="none", puzzle_emb_len=0),
            "mlp_t": dict(mlp_t=True, pos_encodings="none")},
    "hrm_v1": {"attention-rope": {}, "attention-learned": dict(pos_encodings="learned", puzzle_emb_ndim=96)},
}
SHIM = '''import torch.nn.functional as F
def flash_attn_func(q, k, v, causal=False):
    t = lambda x: x.transpose(1, 2)
    return t(F.scaled_dot_product_attention(t(q), t(k), t(v), is_causal=causal)).contiguous()
'''
LR, EMB_LR, WD, EMB_WD, BETAS, EMA_RATE = 3e-3, 1e-2, 0.1, 0.1, (0.9, 0.95), 0.9


@torch.no_grad()
def reference_adam_atan2_(params, state, t: int) -> None:
    """The adam-atan2 kernel's formula, one tensor at a time (the reference package is CUDA-only)."""
    b1, b2 = BETAS
    for p in params:
        if p.grad is None:
            continue
        m, v = state.setdefault(p, (torch.zeros_like(p), torch.zeros_like(p)))
        p.mul_(1.0 - LR * WD)
        m.lerp_(p.grad, 1.0 - b1)
        v.lerp_(p.grad * p.grad, 1.0 - b2)
        p.add_(torch.atan2(m, v.sqrt() / math.sqrt(1.0 - b2 ** t)), alpha=-(LR / (1.0 - b1 ** t)))


def batches(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        labels = torch.randint(0, V, (B, S), generator=g)
        labels[torch.rand((B, S), generator=g) < 0.2] = -100
        out.append({"inputs": torch.randint(0, V, (B, S), generator=g).to(torch.int32), "labels": labels,
                    "puzzle_identifiers": torch.randint(0, NPUZ, (B,), generator=g).to(torch.int32)})
    return out


def maxdiff(a, b) -> float:
    if isinstance(a, torch.Tensor):
        a, b = a.detach(), b.detach()
        if a.dtype == torch.bool or not a.is_floating_point():
            return float((a != b).any())
        return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
    return abs(float(a) - float(b))


def run_variant(kind: str, over: dict, dtype: str, train_segments: int, ref_cls, ref_head, ref_sign_sgd, ref_ema):
    arch = dict(BASE[kind], **over, forward_dtype=dtype)
    worst: dict[str, float] = {}

    def note(key: str, d: float) -> None:
        worst[key] = max(worst.get(key, 0.0), d)

    torch.manual_seed(0)
    ref = ref_head(ref_cls(dict(arch, batch_size=B, seq_len=S, vocab_size=V, num_puzzle_identifiers=NPUZ,
                                causal=False)), loss_type="stablemax_cross_entropy")
    torch.manual_seed(0)
    ours = build_model(dict(arch, name=kind), batch_size=B, seq_len=S, vocab_size=V, num_puzzle_identifiers=NPUZ)
    ref_sd = ref.state_dict()
    for k, v in ours.state_dict().items():
        note("init", maxdiff(v, ref_sd[k]))
    load_reference_state_dict(ours, {"_orig_mod." + k: v for k, v in ref_sd.items()}, strict=True)

    ref_emb = ref.model.inner.puzzle_emb if arch["puzzle_emb_ndim"] else None
    our_emb = ours.model.inner.puzzle_emb if arch["puzzle_emb_ndim"] else None
    ref_opt_emb = ref_sign_sgd(ref_emb.buffers(), lr=EMB_LR, weight_decay=EMB_WD, world_size=1) if ref_emb else None
    our_opt_emb = CastedSparseEmbeddingSignSGD(our_emb.buffers(), lr=EMB_LR, weight_decay=EMB_WD,
                                               world_size=1) if our_emb else None
    our_adam = AdamATan2(ours.parameters(), lr=LR, weight_decay=WD, betas=BETAS)
    ref_adam_state: dict = {}
    ema_ref = ref_ema(mu=EMA_RATE) if ref_ema else None  # HRM has no EMA of its own
    if ema_ref:
        ema_ref.register(ref)
    ema_ours = EMA(ours, EMA_RATE, trainable_only=True)

    data = batches(train_segments, seed=1)
    ref.train(), ours.train()
    c_ref, c_ours = ref.initial_carry(data[0]), ours.initial_carry(data[0])
    for i, batch in enumerate(data):
        torch.manual_seed(100 + i)
        keys = ["logits", "q_halt_logits", "q_continue_logits", "target_q_continue"]
        c_ref, l_ref, m_ref, o_ref, _ = ref(carry=c_ref, batch=batch, return_keys=keys)
        torch.manual_seed(100 + i)
        c_ours, l_ours, m_ours, o_ours, _ = ours(carry=c_ours, batch=batch, return_keys=keys)
        note("loss", maxdiff(l_ref, l_ours))
        for k in ("logits", "q_halt_logits", "q_continue_logits", "target_q_continue"):
            if k in o_ref or k in o_ours:
                note(k, maxdiff(o_ref[k], o_ours[k]))
        for k, v in m_ref.items():
            note(f"metric {k}", maxdiff(v, m_ours[k]))
        for k in ("z_H", "z_L"):
            note(f"carry {k}", maxdiff(getattr(c_ref.inner_carry, k), getattr(c_ours.inner_carry, k)))
        note("carry steps/halted", maxdiff(c_ref.steps, c_ours.steps) + maxdiff(c_ref.halted, c_ours.halted))
        (l_ref / B).backward()
        (l_ours / B).backward()
        ref_params = dict(ref.named_parameters())
        for k, p in ours.named_parameters():
            note("grad", maxdiff(p.grad, ref_params[k].grad))
        if our_emb is not None:
            note("grad puzzle_emb", maxdiff(our_emb.local_weights.grad, ref_emb.local_weights.grad))
        # optimizer step and EMA
        reference_adam_atan2_(list(ref.parameters()), ref_adam_state, t=i + 1)
        our_adam.step()
        if ref_opt_emb is not None:
            ref_opt_emb.step()
            our_opt_emb.step()
            ref_opt_emb.zero_grad(), our_opt_emb.zero_grad()
        ref.zero_grad(), our_adam.zero_grad()
        ema_ours.update(ours)
        if ema_ref:
            ema_ref.update(ref)
        for k, p in ours.named_parameters():
            note("params after step", maxdiff(p, ref_params[k]))
            if ema_ref:
                note("EMA copy", maxdiff(ema_ours.tensors[k], ema_ref.shadow[k]))
        if our_emb is not None:
            note("puzzle table after step", maxdiff(our_emb.weights, ref_emb.weights))

    ref.eval(), ours.eval()
    test = batches(1, seed=2)[0]
    with torch.no_grad():
        c_ref, c_ours = ref.initial_carry(test), ours.initial_carry(test)
        for _ in range(arch["halt_max_steps"]):
            c_ref, l_ref, _, o_ref, _ = ref(carry=c_ref, batch=test, return_keys=["logits"])
            c_ours, l_ours, _, o_ours, _ = ours(carry=c_ours, batch=test, return_keys=["logits"])
            note("eval logits", maxdiff(o_ref["logits"], o_ours["logits"]))
            note("eval loss", maxdiff(l_ref, l_ours))
    return worst


def load_reference(kind: str, path: str, site: str | None):
    """Import one reference's model, loss head, sparse sign-SGD (and EMA) from a fresh module tree."""
    for name in [m for m in sys.modules if m == "models" or m.startswith("models.")]:
        del sys.modules[name]  # both repositories call their package "models"
    if kind == "hrm_v1":
        shim = tempfile.mkdtemp(prefix="hrm-shim-")
        Path(shim, "flash_attn.py").write_text(SHIM)
        sys.path[:0] = [shim, path] + ([site] if site else [])
        from models.hrm.hrm_act_v1 import HierarchicalReasoningModel_ACTV1 as Model
        ema = None
    else:
        sys.path[:0] = ([site] if site else []) + [path]
        from models.ema import EMAHelper as ema
        from models.recursive_reasoning.trm import TinyRecursiveReasoningModel_ACTV1 as Model
    from models.losses import ACTLossHead
    from models.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed
    sys.path.remove(path)
    return Model, ACTLossHead, CastedSparseEmbeddingSignSGD_Distributed, ema


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hrm", default=None, help="sapientinc/HRM checkout (holds models/)")
    ap.add_argument("--trm", default=None, help="TinyRecursiveModels checkout (holds models/)")
    ap.add_argument("--site", default=None, help="folder with pydantic and einops for the references' code")
    ap.add_argument("--segments", type=int, default=6, help="training segments (each followed by an optimizer step)")
    a = ap.parse_args()
    if not (a.hrm or a.trm):
        ap.error("give --hrm and/or --trm")
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    failed = False
    for kind, path in (("hrm_v1", a.hrm), ("trm", a.trm)):
        if not path:
            continue
        ref = load_reference(kind, path, a.site)
        for dtype in ("float32", "bfloat16"):
            for name, over in VARIANTS[kind].items():
                worst = run_variant(kind, over, dtype, a.segments, *ref)
                bad = {k: v for k, v in worst.items() if v != 0.0}
                failed |= bool(bad)
                print(f"{kind:6s} {name:18s} {dtype:8s} {'IDENTICAL' if not bad else 'DIFFERENT'}  "
                      f"max |diff| over {len(worst)} quantities: {max(worst.values()):.3g}"
                      + (f"  ({', '.join(f'{k} {v:.3g}' for k, v in bad.items())})" if bad else ""), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
