"""HRM ACT v1: the hierarchical recurrent model and its adaptive-computation (ACT) wrapper.

Semantics, parameter names and init follow sapientinc/HRM ``models/hrm/hrm_act_v1.py`` so that
reference checkpoints load with ``strict=True`` (see :func:`load_reference_state_dict`).

Shapes: a batch is ``inputs`` (B, S) int, ``labels`` (B, S) int (-100 = ignore) and
``puzzle_identifiers`` (B,) int. Hidden states are (B, P + S, hidden) where P =
ceil(puzzle_emb_ndim / hidden) puzzle-embedding prefix tokens.
"""
from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from hrm_model.layers import (Attention, CastedEmbedding, CastedLinear, CosSin, RotaryEmbedding, SwiGLU, rms_norm,
                              trunc_normal_init_)
from hrm_model.losses import ACTLossHead
from hrm_model.sparse_embedding import CastedSparseEmbedding


# ----------------------------------------------------------------------------------------------
# Config

def config_from_dict(cls, d: Mapping[str, Any]):
    """A config dataclass from a plain dict; unknown or missing keys raise ValueError (typos must
    not pass silently)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {unknown}")
    missing = sorted(f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in d)
    if missing:
        raise ValueError(f"missing {cls.__name__} keys: {missing}")
    return cls(**dict(d))


@dataclass
class HRMConfig:
    """Architecture + shape config (the reference's HierarchicalReasoningModel_ACTV1Config)."""
    batch_size: int  # per-process batch; sizes the sparse puzzle-embedding's local buffers
    seq_len: int
    vocab_size: int
    num_puzzle_identifiers: int
    puzzle_emb_ndim: int = 512
    H_cycles: int = 2
    L_cycles: int = 2
    H_layers: int = 4
    L_layers: int = 4
    hidden_size: int = 512
    expansion: float = 4.0
    num_heads: int = 8
    pos_encodings: str = "rope"  # "rope" | "learned"
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    halt_max_steps: int = 16
    halt_exploration_prob: float = 0.1
    forward_dtype: str = "float32"  # "float32" | "bfloat16" (the reference defaults to bfloat16 on GPU)

    def __post_init__(self):
        if self.pos_encodings not in ("rope", "learned"):
            raise ValueError(f"pos_encodings must be 'rope' or 'learned', got {self.pos_encodings!r}")
        if self.forward_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"forward_dtype must be 'float32' or 'bfloat16', got {self.forward_dtype!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.H_cycles < 1 or self.L_cycles < 1 or self.halt_max_steps < 1:
            raise ValueError("H_cycles, L_cycles and halt_max_steps must be >= 1")
        if self.puzzle_emb_ndim < 0:
            raise ValueError("puzzle_emb_ndim must be >= 0")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HRMConfig":
        return config_from_dict(cls, d)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def puzzle_emb_len(self) -> int:
        return -(self.puzzle_emb_ndim // -self.hidden_size)  # ceil

    @property
    def prefix_len(self) -> int:
        """Positions before the tokens (the puzzle-embedding prefix)."""
        return self.puzzle_emb_len


# ----------------------------------------------------------------------------------------------
# Carry

@dataclass
class HierarchicalReasoningModel_ACTV1InnerCarry:
    z_H: torch.Tensor
    z_L: torch.Tensor


@dataclass
class HierarchicalReasoningModel_ACTV1Carry:
    inner_carry: HierarchicalReasoningModel_ACTV1InnerCarry
    steps: torch.Tensor  # (B,) int32, segments run on the current example
    halted: torch.Tensor  # (B,) bool; a halted row takes the next batch's example on the next call
    current_data: Dict[str, torch.Tensor]  # the examples the rows are working on


# ----------------------------------------------------------------------------------------------
# Model

class HierarchicalReasoningModel_ACTV1Block(nn.Module):
    """Post-norm transformer block: x = norm(x + attn(x)); x = norm(x + mlp(x))."""

    def __init__(self, config: HRMConfig):
        super().__init__()
        self.self_attn = Attention(hidden_size=config.hidden_size, head_dim=config.hidden_size // config.num_heads,
                                   num_heads=config.num_heads, num_key_value_heads=config.num_heads, causal=False)
        self.mlp = SwiGLU(hidden_size=config.hidden_size, expansion=config.expansion)
        self.norm_eps = config.rms_norm_eps

    def forward(self, cos_sin: Optional[CosSin], hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = rms_norm(hidden_states + self.self_attn(cos_sin=cos_sin, hidden_states=hidden_states), self.norm_eps)
        return rms_norm(hidden_states + self.mlp(hidden_states), self.norm_eps)


class HierarchicalReasoningModel_ACTV1ReasoningModule(nn.Module):
    """A stack of blocks applied to (state + injected input)."""

    def __init__(self, layers: List[HierarchicalReasoningModel_ACTV1Block]):
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, hidden_states: torch.Tensor, input_injection: torch.Tensor, cos_sin: Optional[CosSin] = None):
        hidden_states = hidden_states + input_injection
        for layer in self.layers:
            hidden_states = layer(cos_sin=cos_sin, hidden_states=hidden_states)
        return hidden_states


class RecurrentInner(nn.Module):
    """What HRM's and TRM's inner modules share: the token / puzzle / position embeddings, the
    output heads and the carry. Subclasses call :meth:`_init_io` first, then build their
    reasoning modules and the H/L init states, in the reference's order (same seed, same init)."""

    config: Any

    def _init_io(self, config) -> None:
        self.config = config
        self.forward_dtype = getattr(torch, config.forward_dtype)
        H = config.hidden_size
        self.embed_scale = math.sqrt(H)
        embed_init_std = 1.0 / self.embed_scale  # embeddings * sqrt(H) then have unit scale
        self.embed_tokens = CastedEmbedding(config.vocab_size, H, init_std=embed_init_std, cast_to=self.forward_dtype)
        self.lm_head = CastedLinear(H, config.vocab_size, bias=False)
        self.q_head = CastedLinear(H, 2, bias=True)

        self.puzzle_emb_len = config.prefix_len
        if config.puzzle_emb_ndim > 0:  # zero init: every puzzle starts from the same embedding
            self.puzzle_emb = CastedSparseEmbedding(config.num_puzzle_identifiers, config.puzzle_emb_ndim,
                                                    batch_size=config.batch_size, init_std=0, cast_to=self.forward_dtype)

        total_len = config.seq_len + self.puzzle_emb_len
        if config.pos_encodings == "rope":
            self.rotary_emb = RotaryEmbedding(dim=H // config.num_heads, max_position_embeddings=total_len,
                                              base=config.rope_theta)
        elif config.pos_encodings == "learned":
            self.embed_pos = CastedEmbedding(total_len, H, init_std=embed_init_std, cast_to=self.forward_dtype)

    def _init_states(self) -> None:
        H = self.config.hidden_size
        # Initial recurrent states (fixed, not learned), in forward dtype like the reference.
        self.register_buffer("H_init", trunc_normal_init_(torch.empty(H, dtype=self.forward_dtype), std=1))
        self.register_buffer("L_init", trunc_normal_init_(torch.empty(H, dtype=self.forward_dtype), std=1))
        # Q head starts at ~sigmoid(-5): "continue", so early training does not halt at random.
        with torch.no_grad():
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5)

    def _input_embeddings(self, inputs: torch.Tensor, puzzle_identifiers: Optional[torch.Tensor]) -> torch.Tensor:
        emb = self.embed_tokens(inputs.to(torch.int32))
        if self.config.puzzle_emb_ndim > 0:
            pe = self.puzzle_emb(puzzle_identifiers)
            pad = self.puzzle_emb_len * self.config.hidden_size - pe.shape[-1]
            if pad > 0:
                pe = F.pad(pe, (0, pad))
            emb = torch.cat((pe.view(-1, self.puzzle_emb_len, self.config.hidden_size), emb), dim=-2)
        if self.config.pos_encodings == "learned":
            emb = 0.707106781 * (emb + self.embed_pos.embedding_weight.to(self.forward_dtype))  # keep variance
        return self.embed_scale * emb

    def empty_carry(self, batch_size: int) -> HierarchicalReasoningModel_ACTV1InnerCarry:
        shape = (batch_size, self.config.seq_len + self.puzzle_emb_len, self.config.hidden_size)
        dev = self.H_init.device
        # Contents do not matter: every row starts halted and is reset to H_init/L_init.
        return HierarchicalReasoningModel_ACTV1InnerCarry(
            z_H=torch.zeros(shape, dtype=self.forward_dtype, device=dev),
            z_L=torch.zeros(shape, dtype=self.forward_dtype, device=dev))

    def reset_carry(self, reset_flag: torch.Tensor, carry: HierarchicalReasoningModel_ACTV1InnerCarry):
        flag = reset_flag.view(-1, 1, 1)
        return HierarchicalReasoningModel_ACTV1InnerCarry(z_H=torch.where(flag, self.H_init, carry.z_H),
                                                          z_L=torch.where(flag, self.L_init, carry.z_L))

    def _outputs(self, z_H: torch.Tensor, z_L: torch.Tensor):
        """Carry (detached), token logits after the prefix, and (q_halt, q_continue) from position 0."""
        new_carry = HierarchicalReasoningModel_ACTV1InnerCarry(z_H=z_H.detach(), z_L=z_L.detach())
        logits = self.lm_head(z_H)[:, self.puzzle_emb_len:]
        q_logits = self.q_head(z_H[:, 0]).to(torch.float32)
        return new_carry, logits, (q_logits[..., 0], q_logits[..., 1])


class HierarchicalReasoningModel_ACTV1_Inner(RecurrentInner):
    """One ACT segment: H_cycles x L_cycles recurrent updates, gradient only through the last L and H update."""

    def __init__(self, config: HRMConfig):
        super().__init__()
        self._init_io(config)  # construction order matches the reference: same seed, same init
        self.H_level = HierarchicalReasoningModel_ACTV1ReasoningModule(
            [HierarchicalReasoningModel_ACTV1Block(config) for _ in range(config.H_layers)])
        self.L_level = HierarchicalReasoningModel_ACTV1ReasoningModule(
            [HierarchicalReasoningModel_ACTV1Block(config) for _ in range(config.L_layers)])
        self._init_states()

    def forward(self, carry: HierarchicalReasoningModel_ACTV1InnerCarry, batch: Dict[str, torch.Tensor]
                ) -> Tuple[HierarchicalReasoningModel_ACTV1InnerCarry, torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
        cos_sin = self.rotary_emb() if hasattr(self, "rotary_emb") else None
        x = self._input_embeddings(batch["inputs"], batch.get("puzzle_identifiers"))
        H_cycles, L_cycles = self.config.H_cycles, self.config.L_cycles

        # All updates but the final L and H one run without a graph (the paper's 1-step gradient).
        with torch.no_grad():
            z_H, z_L = carry.z_H, carry.z_L
            for h in range(H_cycles):
                for l in range(L_cycles):
                    if not (h == H_cycles - 1 and l == L_cycles - 1):
                        z_L = self.L_level(z_L, z_H + x, cos_sin=cos_sin)
                if h != H_cycles - 1:
                    z_H = self.H_level(z_H, z_L, cos_sin=cos_sin)
        z_L = self.L_level(z_L, z_H + x, cos_sin=cos_sin)
        z_H = self.H_level(z_H, z_L, cos_sin=cos_sin)

        return self._outputs(z_H, z_L)


class HierarchicalReasoningModel_ACTV1(nn.Module):
    """ACT wrapper: keeps a per-row carry across calls and decides, per row, when to halt.

    Each call runs one segment on every row. Rows that halted in the previous call restart
    from H_init/L_init on the new batch's row; the others continue their old example.
    Training halts when q_halt > q_continue (with random minimum-step exploration) or at
    ``halt_max_steps``; eval always runs ``halt_max_steps`` segments.
    """

    config_class: Any = HRMConfig
    inner_class: Any = HierarchicalReasoningModel_ACTV1_Inner

    def __init__(self, config: "HRMConfig | Mapping[str, Any]"):
        super().__init__()
        self.config = config if isinstance(config, self.config_class) else self.config_class.from_dict(config)
        self.inner = self.inner_class(self.config)

    @property
    def puzzle_emb(self):
        return self.inner.puzzle_emb

    def puzzle_emb_module(self) -> Optional[CastedSparseEmbedding]:
        """The sparse puzzle-embedding (build its optimizer from ``.buffers()``), or None."""
        return getattr(self.inner, "puzzle_emb", None)

    def initial_carry(self, batch: Dict[str, torch.Tensor]) -> HierarchicalReasoningModel_ACTV1Carry:
        B = batch["inputs"].shape[0]
        dev = batch["inputs"].device
        return HierarchicalReasoningModel_ACTV1Carry(
            inner_carry=self.inner.empty_carry(B),
            steps=torch.zeros(B, dtype=torch.int32, device=dev),
            halted=torch.ones(B, dtype=torch.bool, device=dev),  # all halted: first call loads the batch
            current_data={k: torch.zeros_like(v) for k, v in batch.items()})

    def forward(self, carry: HierarchicalReasoningModel_ACTV1Carry, batch: Dict[str, torch.Tensor]
                ) -> Tuple[HierarchicalReasoningModel_ACTV1Carry, Dict[str, torch.Tensor]]:
        inner_carry = self.inner.reset_carry(carry.halted, carry.inner_carry)
        steps = torch.where(carry.halted, 0, carry.steps)
        data = {k: torch.where(carry.halted.view((-1,) + (1,) * (batch[k].ndim - 1)), batch[k], v)
                for k, v in carry.current_data.items()}

        inner_carry, logits, (q_halt, q_continue) = self.inner(inner_carry, data)
        outputs = {"logits": logits, "q_halt_logits": q_halt, "q_continue_logits": q_continue}

        with torch.no_grad():
            steps = steps + 1
            is_last_step = steps >= self.config.halt_max_steps
            halted = is_last_step
            if self.training and self.config.halt_max_steps > 1:
                # TRM's no_ACT_continue: halt on sigmoid(q_halt) > 0.5 alone, no continue target.
                no_continue = getattr(self.config, "no_ACT_continue", False)
                halted = halted | ((q_halt > 0) if no_continue else (q_halt > q_continue))
                # Exploration: with prob p, force a random minimum of 2..halt_max_steps segments.
                min_halt_steps = ((torch.rand_like(q_halt) < self.config.halt_exploration_prob)
                                  * torch.randint_like(steps, low=2, high=self.config.halt_max_steps + 1))
                halted = halted & (steps >= min_halt_steps)
                if not no_continue:
                    # Q-learning target for "continue": value of the next segment (no replay buffer /
                    # target net; the large batch plays the role of parallel environments, as in PQN).
                    next_q_halt, next_q_continue = self.inner(inner_carry, data)[-1]
                    outputs["target_q_continue"] = torch.sigmoid(
                        torch.where(is_last_step, next_q_halt, torch.maximum(next_q_halt, next_q_continue)))

        return HierarchicalReasoningModel_ACTV1Carry(inner_carry, steps, halted, data), outputs


# ----------------------------------------------------------------------------------------------
# Construction and checkpoints

def build_model(arch: Mapping[str, Any], *, batch_size: int, seq_len: int, vocab_size: int,
                num_puzzle_identifiers: int, loss_type: Optional[str] = None) -> ACTLossHead:
    """Build ``ACTLossHead(model)`` on the current default device; ``arch["name"]`` picks the model.

    ``name``: ``hrm_v1`` (default) or ``trm``, or the references' own names
    (``hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1``,
    ``recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1``). The references'
    ``config/arch/*.yaml`` are accepted as loaded: ``loss`` may give ``loss_type`` (used when the
    ``loss_type`` argument is None), ``causal`` must be False, and ``puzzle_emb_ndim:
    ${.hidden_size}`` resolves to hidden_size. Anything else unknown raises ValueError. Default
    loss: stablemax_cross_entropy.
    """
    from hrm_model.config import arch_kind
    arch = dict(arch)
    kind = arch_kind(arch.pop("name", None))
    loss_cfg = dict(arch.pop("loss", None) or {})
    loss_cfg.pop("name", None)
    arch_loss_type = loss_cfg.pop("loss_type", None)
    if loss_cfg:
        raise ValueError(f"unknown arch.loss keys: {sorted(loss_cfg)}")
    if arch.pop("causal", False):
        raise ValueError("HRM attention is non-causal; causal=True is not supported")
    if isinstance(arch.get("puzzle_emb_ndim"), str) and arch["puzzle_emb_ndim"].strip() == "${.hidden_size}":
        arch["puzzle_emb_ndim"] = arch.get("hidden_size", 512)
    for k in ("batch_size", "seq_len", "vocab_size", "num_puzzle_identifiers"):
        if k in arch:
            raise ValueError(f"{k} comes from the data, pass it as an argument, not in arch")
    shape = dict(batch_size=batch_size, seq_len=seq_len, vocab_size=vocab_size,
                 num_puzzle_identifiers=num_puzzle_identifiers)
    if kind == "trm":
        from hrm_model.trm import TinyRecursiveReasoningModel_ACTV1, TRMConfig
        model: nn.Module = TinyRecursiveReasoningModel_ACTV1(TRMConfig.from_dict(dict(arch, **shape)))
    else:
        model = HierarchicalReasoningModel_ACTV1(HRMConfig.from_dict(dict(arch, **shape)))
    return ACTLossHead(model, loss_type=loss_type or arch_loss_type or "stablemax_cross_entropy")


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters (excludes buffers such as the puzzle embedding and H/L_init)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _unwrap(module: nn.Module) -> nn.Module:
    """Peel torch.compile (``_orig_mod``) and DDP (``module``) wrappers."""
    while True:
        if hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in ("_orig_mod.", "module."):
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def load_reference_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True):
    """Load a sapientinc/HRM ``pretrain.py`` checkpoint (or our own) into ``module``.

    Strips leading ``_orig_mod.`` (torch.compile) and ``module.`` (DDP) prefixes. ``module``
    may be the :class:`ACTLossHead` (keys ``model.inner.…``) or the bare ACT model, in which
    case the loss head's ``model.`` prefix is dropped too. Returns load_state_dict's result.
    """
    module = _unwrap(module)
    sd = OrderedDict((_strip_prefixes(k), v) for k, v in state_dict.items())
    if not isinstance(module, ACTLossHead) and all(k.startswith("model.") for k in sd):
        sd = OrderedDict((k[len("model."):], v) for k, v in sd.items())
    return module.load_state_dict(sd, strict=strict)


def export_reference_state_dict(module: nn.Module) -> "OrderedDict[str, torch.Tensor]":
    """State dict keyed like the reference's (uncompiled) ``ACTLossHead``: ``model.inner.…``.

    Tensors are detached CPU copies, ready for ``torch.save``.
    """
    module = _unwrap(module)
    sd = module.state_dict()
    prefix = "" if isinstance(module, ACTLossHead) else "model."
    return OrderedDict((prefix + _strip_prefixes(k), v.detach().cpu().clone()) for k, v in sd.items())
