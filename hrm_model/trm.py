"""Tiny Recursive Models (TRM, arXiv 2510.04871): one small network that refines a latent ``z_L``
and an answer ``z_H`` in turn, inside HRM's ACT wrapper and loss head.

Semantics, parameter names and init follow SamsungSAILMontreal/TinyRecursiveModels
``models/recursive_reasoning/trm.py`` so that its checkpoints load with ``strict=True``
(``_orig_mod.`` and the loss head's ``model.`` prefixes are stripped by
:func:`hrm_model.model.load_reference_state_dict`). What differs from HRM:

* one reasoning module (``L_level``, ``L_layers`` blocks) serves both updates:
  ``z_L = L(z_L, z_H + x)`` for ``L_cycles`` steps, then ``z_H = L(z_H, z_L)``;
* the first ``H_cycles - 1`` such cycles run without a graph, the last whole cycle with one
  (HRM keeps only the last L and H update);
* the puzzle embedding fills a prefix of ``puzzle_emb_len`` positions (16 by default), zero-padded;
* ``mlp_t``: a SwiGLU along the sequence replaces attention; its RMS norm runs over the token axis;
* ``no_ACT_continue`` (default): halt when q_halt > 0 and learn no continue target. Its
  reference crashes with ``no_ACT_continue=False``; here that path is HRM's bootstrapped target.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional

import torch
from torch import nn

from hrm_model.layers import Attention, CosSin, SwiGLU, rms_norm
from hrm_model.model import (HierarchicalReasoningModel_ACTV1, HierarchicalReasoningModel_ACTV1InnerCarry,
                             HierarchicalReasoningModel_ACTV1ReasoningModule, RecurrentInner, config_from_dict)


@dataclass
class TRMConfig:
    """Architecture + shape config (the reference's TinyRecursiveReasoningModel_ACTV1Config)."""
    batch_size: int
    seq_len: int
    vocab_size: int
    num_puzzle_identifiers: int
    puzzle_emb_ndim: int = 512
    H_cycles: int = 3
    L_cycles: int = 6
    H_layers: int = 0  # ignored, as in the reference (kept so its arch yaml loads)
    L_layers: int = 2
    hidden_size: int = 512
    expansion: float = 4.0
    num_heads: int = 8
    pos_encodings: str = "rope"  # "rope" | "learned" | "none"
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    halt_max_steps: int = 16
    halt_exploration_prob: float = 0.1
    forward_dtype: str = "float32"
    mlp_t: bool = False
    puzzle_emb_len: int = 16  # 0: ceil(puzzle_emb_ndim / hidden_size), as HRM
    no_ACT_continue: bool = True

    def __post_init__(self):
        if self.pos_encodings not in ("rope", "learned", "none"):
            raise ValueError(f"pos_encodings must be 'rope', 'learned' or 'none', got {self.pos_encodings!r}")
        if self.forward_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"forward_dtype must be 'float32' or 'bfloat16', got {self.forward_dtype!r}")
        if not self.mlp_t and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.H_cycles < 1 or self.L_cycles < 1 or self.halt_max_steps < 1 or self.L_layers < 1:
            raise ValueError("H_cycles, L_cycles, L_layers and halt_max_steps must be >= 1")
        if self.puzzle_emb_ndim < 0 or self.puzzle_emb_len < 0:
            raise ValueError("puzzle_emb_ndim and puzzle_emb_len must be >= 0")
        if self.puzzle_emb_ndim == 0 and self.puzzle_emb_len > 0:
            # The reference would build a carry longer than its input and fail on the first batch.
            raise ValueError("puzzle_emb_ndim=0 needs puzzle_emb_len=0 (no puzzle-embedding prefix)")
        if self.puzzle_emb_ndim > self.puzzle_emb_len * self.hidden_size and self.puzzle_emb_len > 0:
            raise ValueError(f"puzzle_emb_ndim {self.puzzle_emb_ndim} does not fit in puzzle_emb_len "
                             f"{self.puzzle_emb_len} x hidden_size {self.hidden_size}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TRMConfig":
        return config_from_dict(cls, d)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def prefix_len(self) -> int:
        """Positions before the tokens: puzzle_emb_len, or HRM's ceil rule when it is 0."""
        return self.puzzle_emb_len or -(self.puzzle_emb_ndim // -self.hidden_size)


class TinyRecursiveReasoningModel_ACTV1Block(nn.Module):
    """Post-norm block: attention (or an MLP across positions, ``mlp_t``), then an MLP across features."""

    def __init__(self, config: TRMConfig):
        super().__init__()
        self.mlp_t_enabled = config.mlp_t
        if config.mlp_t:
            self.mlp_t = SwiGLU(hidden_size=config.seq_len + config.prefix_len, expansion=config.expansion)
        else:
            self.self_attn = Attention(hidden_size=config.hidden_size, head_dim=config.hidden_size // config.num_heads,
                                       num_heads=config.num_heads, num_key_value_heads=config.num_heads, causal=False)
        self.mlp = SwiGLU(hidden_size=config.hidden_size, expansion=config.expansion)
        self.norm_eps = config.rms_norm_eps

    def forward(self, cos_sin: Optional[CosSin], hidden_states: torch.Tensor) -> torch.Tensor:
        if self.mlp_t_enabled:
            h = hidden_states.transpose(1, 2)  # (B, hidden, positions): mix and normalise along positions
            h = rms_norm(h + self.mlp_t(h), self.norm_eps)
            hidden_states = h.transpose(1, 2)
        else:
            hidden_states = rms_norm(hidden_states + self.self_attn(cos_sin=cos_sin, hidden_states=hidden_states),
                                     self.norm_eps)
        return rms_norm(hidden_states + self.mlp(hidden_states), self.norm_eps)


# The same stack of blocks applied to (state + injected input) as HRM's levels.
TinyRecursiveReasoningModel_ACTV1ReasoningModule = HierarchicalReasoningModel_ACTV1ReasoningModule


class TinyRecursiveReasoningModel_ACTV1_Inner(RecurrentInner):
    """One ACT segment: H_cycles cycles of (L_cycles latent updates, one answer update)."""

    def __init__(self, config: TRMConfig):
        super().__init__()
        self._init_io(config)  # the reference's construction order: same seed, same init
        self.L_level = TinyRecursiveReasoningModel_ACTV1ReasoningModule(
            [TinyRecursiveReasoningModel_ACTV1Block(config) for _ in range(config.L_layers)])
        self._init_states()

    def forward(self, carry: HierarchicalReasoningModel_ACTV1InnerCarry, batch: Dict[str, torch.Tensor]):
        cos_sin = self.rotary_emb() if hasattr(self, "rotary_emb") else None
        x = self._input_embeddings(batch["inputs"], batch.get("puzzle_identifiers"))
        z_H, z_L = carry.z_H, carry.z_L

        def cycle(z_H, z_L):
            for _ in range(self.config.L_cycles):
                z_L = self.L_level(z_L, z_H + x, cos_sin=cos_sin)
            return self.L_level(z_H, z_L, cos_sin=cos_sin), z_L

        with torch.no_grad():
            for _ in range(self.config.H_cycles - 1):
                z_H, z_L = cycle(z_H, z_L)
        z_H, z_L = cycle(z_H, z_L)
        return self._outputs(z_H, z_L)


class TinyRecursiveReasoningModel_ACTV1(HierarchicalReasoningModel_ACTV1):
    """HRM's ACT wrapper around the TRM inner model (halting follows ``config.no_ACT_continue``)."""

    config_class = TRMConfig
    inner_class = TinyRecursiveReasoningModel_ACTV1_Inner
