"""Transformer building blocks of HRM, numerically matching sapientinc/HRM ``models/layers.py``.

Attention uses ``torch.nn.functional.scaled_dot_product_attention`` (no flash-attn), so the
model runs on CPU and any GPU. Parameter names (``weight``, ``bias``, ``embedding_weight``,
``qkv_proj``, ``o_proj``, ``gate_up_proj``, ``down_proj``) are the reference's.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

CosSin = Tuple[torch.Tensor, torch.Tensor]


def trunc_normal_init_(tensor: torch.Tensor, std: float = 1.0, lower: float = -2.0, upper: float = 2.0) -> torch.Tensor:
    """In-place truncated normal with the *actual* std equal to ``std`` (JAX/flax style).

    ``torch.nn.init.trunc_normal_`` treats ``std`` as the std of the untruncated normal;
    the reference rescales so the truncated distribution has std ``std``. Truncation is at
    ``lower``/``upper`` standard deviations. ``std == 0`` gives zeros.
    """
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        sqrt2 = math.sqrt(2.0)
        a, b = math.erf(lower / sqrt2), math.erf(upper / sqrt2)
        z = (b - a) / 2
        c = 1.0 / math.sqrt(2 * math.pi)
        pdf_at_lower, pdf_at_upper = c * math.exp(-0.5 * lower ** 2), c * math.exp(-0.5 * upper ** 2)
        # Divide out the std of a unit normal truncated to [lower, upper]. Same expression as
        # the reference (which pairs upper with pdf(lower)); exact for the symmetric default.
        trunc_var = 1 - (upper * pdf_at_lower - lower * pdf_at_upper) / z - ((pdf_at_lower - pdf_at_upper) / z) ** 2
        scale = std / math.sqrt(trunc_var)
        tensor.uniform_(a, b).erfinv_().mul_(sqrt2 * scale).clip_(lower * scale, upper * scale)
    return tensor


def rms_norm(x: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm without a learned scale, computed in float32 and cast back."""
    dtype = x.dtype
    x = x.to(torch.float32)
    x = x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps)
    return x.to(dtype)


def _find_multiple(a: int, b: int) -> int:
    return -(a // -b) * b


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor):
    """RoPE on q, k of shape (B, S, H, D) with cos/sin (S, D); math in cos' dtype (float32)."""
    dtype = q.dtype
    q, k = q.to(cos.dtype), k.to(cos.dtype)
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    return q.to(dtype), k.to(dtype)


class CastedLinear(nn.Module):
    """Linear layer with float32 master weights cast to the input dtype; truncated LeCun init."""

    def __init__(self, in_features: int, out_features: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(trunc_normal_init_(torch.empty(out_features, in_features), std=in_features ** -0.5))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias.to(x.dtype) if self.bias is not None else None
        return F.linear(x, self.weight.to(x.dtype), bias)


class CastedEmbedding(nn.Module):
    """Embedding table in float32, looked up and returned in ``cast_to``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, init_std: float, cast_to: torch.dtype):
        super().__init__()
        self.cast_to = cast_to
        self.embedding_weight = nn.Parameter(trunc_normal_init_(torch.empty(num_embeddings, embedding_dim), std=init_std))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.embedding_weight.to(self.cast_to))


class RotaryEmbedding(nn.Module):
    """Precomputed (non-persistent) cos/sin tables, half-split layout like the reference."""

    def __init__(self, dim: int, max_position_embeddings: int, base: float, device=None):
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))
        t = torch.arange(max_position_embeddings, dtype=torch.float32, device=device)
        freqs = torch.outer(t, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)

    def forward(self) -> CosSin:
        return self.cos_cached, self.sin_cached


class Attention(nn.Module):
    """Multi-head attention (non-causal by default) through PyTorch SDPA."""

    def __init__(self, hidden_size: int, head_dim: int, num_heads: int, num_key_value_heads: int, causal: bool = False):
        super().__init__()
        self.head_dim, self.num_heads, self.num_kv = head_dim, num_heads, num_key_value_heads
        self.output_size = head_dim * num_heads
        self.causal = causal
        self.qkv_proj = CastedLinear(hidden_size, (num_heads + 2 * num_key_value_heads) * head_dim, bias=False)
        self.o_proj = CastedLinear(self.output_size, hidden_size, bias=False)

    def forward(self, cos_sin: Optional[CosSin], hidden_states: torch.Tensor) -> torch.Tensor:
        B, S, _ = hidden_states.shape
        qkv = self.qkv_proj(hidden_states).view(B, S, self.num_heads + 2 * self.num_kv, self.head_dim)
        q, k, v = qkv.split([self.num_heads, self.num_kv, self.num_kv], dim=2)
        if cos_sin is not None:
            q, k = apply_rotary_pos_emb(q, k, *cos_sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, H, S, D) for SDPA
        if self.num_kv != self.num_heads:
            rep = self.num_heads // self.num_kv
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return self.o_proj(out.transpose(1, 2).reshape(B, S, self.output_size))


class SwiGLU(nn.Module):
    """Gated MLP; the hidden width is 2/3 * expansion * hidden rounded up to a multiple of 256."""

    def __init__(self, hidden_size: int, expansion: float):
        super().__init__()
        inter = _find_multiple(round(expansion * hidden_size * 2 / 3), 256)
        self.gate_up_proj = CastedLinear(hidden_size, inter * 2, bias=False)
        self.down_proj = CastedLinear(inter, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)
