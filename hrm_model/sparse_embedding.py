"""Per-puzzle embedding table trained with sparse sign-SGD (sapientinc/HRM ``models/sparse_embedding.py``).

The table can be huge (one row per augmented puzzle) and each batch touches only a few
rows, so it is a *buffer*, not a parameter: a dense optimizer (Adam) would keep state for
every row. Training mode copies the batch's rows into a small ``local_weights`` leaf buffer
and returns it, so backward leaves the gradient in ``local_weights.grad``;
:class:`CastedSparseEmbeddingSignSGD` then updates just those rows.
"""
from __future__ import annotations

from typing import Iterable, Union

import torch
import torch.distributed as dist
from torch import nn
from torch.optim.optimizer import Optimizer

from hrm_model.layers import trunc_normal_init_


class CastedSparseEmbedding(nn.Module):
    """Buffers: ``weights`` (num_embeddings, dim), persistent; ``local_weights`` (batch_size, dim,
    requires_grad) and ``local_ids`` (batch_size,), non-persistent. Output in ``cast_to``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, batch_size: int, init_std: float, cast_to: torch.dtype):
        super().__init__()
        self.cast_to = cast_to
        self.register_buffer("weights", trunc_normal_init_(torch.empty(num_embeddings, embedding_dim), std=init_std))
        self.register_buffer("local_weights", torch.zeros(batch_size, embedding_dim, requires_grad=True), persistent=False)
        self.register_buffer("local_ids", torch.zeros(batch_size, dtype=torch.int32), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return self.weights[ids].to(self.cast_to)
        if ids.shape != self.local_ids.shape:
            raise ValueError(f"sparse embedding was built for batch_size={self.local_ids.shape[0]} "
                             f"but got ids of shape {tuple(ids.shape)} (training batches must be full)")
        with torch.no_grad():
            self.local_weights.copy_(self.weights[ids])
            self.local_ids.copy_(ids)
        return self.local_weights.to(self.cast_to)


class CastedSparseEmbeddingSignSGD(Optimizer):
    """Sign-SGD with decoupled weight decay on the rows of a :class:`CastedSparseEmbedding`.

    Each param group must hold exactly that module's three buffers (pass ``emb.buffers()``).
    For every id seen in the (all-gathered, if ``world_size > 1``) batch, gradients of
    duplicate ids are summed, then ``w <- w * (1 - lr * wd) - lr * sign(grad)``. Rows not in
    the batch are untouched (no decay either). ``lr`` lives in ``param_groups`` for schedulers.
    With the puzzle gradient this sparse, Adam behaves about like sign-SGD anyway.
    """

    def __init__(self, params: Iterable[torch.Tensor], world_size: int, lr: Union[float, torch.Tensor] = 1e-3,
                 weight_decay: float = 1e-2):
        if not lr >= 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not weight_decay >= 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, world_size=world_size))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        for group in self.param_groups:
            grad = ids = weights = None
            if len(group["params"]) != 3:
                raise ValueError("each param group must be the 3 buffers of one CastedSparseEmbedding")
            for p in group["params"]:
                if p.requires_grad:
                    grad = p.grad
                elif p.ndim == 1:
                    ids = p
                elif p.ndim == 2:
                    weights = p
            if ids is None or weights is None:
                raise ValueError("param group is not (weights, local_weights, local_ids) of a CastedSparseEmbedding")
            if grad is None:
                raise RuntimeError("local_weights has no gradient: run backward through the embedding before step()")
            sparse_sign_sgd_(grad, ids, weights, lr=group["lr"], weight_decay=group["weight_decay"],
                             world_size=group["world_size"])


# Name used by the reference (pretrain.py builds it under this name).
CastedSparseEmbeddingSignSGD_Distributed = CastedSparseEmbeddingSignSGD


def sparse_sign_sgd_(local_grad: torch.Tensor, local_ids: torch.Tensor, weights: torch.Tensor, *,
                     lr: float, weight_decay: float, world_size: int) -> None:
    """Apply one sign-SGD step in place to ``weights`` rows named by ``local_ids`` (gathered over ranks)."""
    all_grad, all_ids = local_grad, local_ids
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() != world_size:
        raise ValueError(f"world_size={world_size} but torch.distributed has {dist.get_world_size()} ranks")
    if world_size > 1:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError(f"world_size={world_size} needs torch.distributed to be initialised")
        n, d = local_grad.shape
        all_grad = local_grad.new_empty(world_size * n, d)
        all_ids = local_ids.new_empty(world_size * n)
        all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # renamed in torch 2.13
        all_gather(all_grad, local_grad.contiguous())
        all_gather(all_ids, local_ids.contiguous())

    uniq, inv = all_ids.unique(return_inverse=True)
    grad = all_grad.new_zeros(uniq.shape[0], all_grad.shape[1])
    grad.index_add_(0, inv, all_grad)  # sum the gradients of repeated ids

    rows = weights[uniq]
    rows.mul_(1.0 - lr * weight_decay).add_(torch.sign(grad), alpha=-lr)
    weights[uniq] = rows
