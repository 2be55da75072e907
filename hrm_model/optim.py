"""Optimizer and learning-rate schedule of HRM's ``pretrain.py``, in plain torch.

* :class:`AdamATan2` is the update rule of the ``adam-atan2`` CUDA extension the reference
  imports, written with ``torch._foreach_*`` ops so it runs on any device::

      p *= 1 - lr * wd
      m  = lerp(m, g, 1 - b1)
      v  = lerp(v, g * g, 1 - b2)
      p -= (lr / (1 - b1^t)) * atan2(m, sqrt(v) / sqrt(1 - b2^t))

  atan2 replaces Adam's ``m / (sqrt(v) + eps)``: no epsilon, bounded update.
* :func:`cosine_schedule_with_warmup_lr_lambda` is the reference's schedule: linear warmup
  over ``num_warmup_steps``, then half a cosine from ``base_lr`` down to ``min_ratio * base_lr``
  at ``num_training_steps``. The reference increments its step counter *before* computing the
  learning rate, so the first optimizer step uses ``current_step = 1``.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch.optim.optimizer import Optimizer


class AdamATan2(Optimizer):
    """Adam with atan2 instead of division by ``sqrt(v) + eps`` and decoupled weight decay."""

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 weight_decay: float = 1e-2):
        if not lr >= 0.0:
            raise ValueError(f"invalid learning rate: {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"invalid betas: {betas}")
        if not weight_decay >= 0.0:
            raise ValueError(f"invalid weight_decay: {weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads, ms, vs, steps = [], [], [], [], []
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("AdamATan2 does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                params.append(p)
                grads.append(p.grad)
                ms.append(state["exp_avg"])
                vs.append(state["exp_avg_sq"])
                steps.append(state["step"])
            if not params:
                continue
            lr, wd = float(group["lr"]), float(group["weight_decay"])
            b1, b2 = group["betas"]
            # Parameters added at different times could have different step counts: group by t.
            by_step: dict[int, list[int]] = {}
            for i, t in enumerate(steps):
                by_step.setdefault(t, []).append(i)
            for t, idx in by_step.items():
                _adam_atan2_foreach([params[i] for i in idx], [grads[i] for i in idx], [ms[i] for i in idx],
                                    [vs[i] for i in idx], t=t, lr=lr, b1=b1, b2=b2, wd=wd)
        return loss


def _adam_atan2_foreach(params, grads, ms, vs, *, t: int, lr: float, b1: float, b2: float, wd: float) -> None:
    if wd != 0.0:
        torch._foreach_mul_(params, 1.0 - lr * wd)
    torch._foreach_lerp_(ms, grads, 1.0 - b1)
    torch._foreach_lerp_(vs, torch._foreach_mul(grads, grads), 1.0 - b2)
    bias_correction1 = 1.0 - b1 ** t
    bias_correction2_sqrt = math.sqrt(1.0 - b2 ** t)
    step_size = lr / bias_correction1
    den = torch._foreach_sqrt(vs)
    torch._foreach_div_(den, bias_correction2_sqrt)
    for p, m, d in zip(params, ms, den):  # no foreach atan2 in torch
        p.add_(torch.atan2(m, d), alpha=-step_size)


def cosine_schedule_with_warmup_lr_lambda(current_step: int, *, base_lr: float, num_warmup_steps: int,
                                          num_training_steps: int, min_ratio: float = 0.0,
                                          num_cycles: float = 0.5) -> float:
    """The reference's learning rate at ``current_step`` (its step counter, starting at 1)."""
    if current_step < num_warmup_steps:
        return base_lr * float(current_step) / float(max(1, num_warmup_steps))
    progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    return base_lr * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))))


def lr_at(step: int, base_lr: float, *, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
    """Learning rate of optimizer step ``step`` (1-based, as the reference counts).

    Identical to the reference while ``step <= total_steps``. The reference never trains past
    ``total_steps`` (its estimate of the run length); when the sampler's exact count is longer
    we hold the final value (``min_ratio * base_lr``) instead of letting the cosine rise again.
    """
    if total_steps > warmup_steps and step > total_steps:
        step = total_steps
    return cosine_schedule_with_warmup_lr_lambda(step, base_lr=base_lr, num_warmup_steps=round(warmup_steps),
                                                 num_training_steps=total_steps, min_ratio=min_ratio)
