"""AdamATan2 against its update formula, and the reference's warmup + cosine schedule."""
import math

import pytest
import torch

from hrm_model.optim import AdamATan2, cosine_schedule_with_warmup_lr_lambda, lr_at


def _formula_steps(p0, grads, lr, b1, b2, wd):
    """The adam-atan2 extension's rule, written out in float64, one step at a time."""
    p = p0.clone()
    m = torch.zeros_like(p)
    v = torch.zeros_like(p)
    out = []
    for t, g in enumerate(grads, start=1):
        p = p * (1 - lr * wd)
        m = m + (1 - b1) * (g - m)             # lerp(m, g, 1 - b1)
        v = v + (1 - b2) * (g * g - v)         # lerp(v, g*g, 1 - b2)
        p = p - (lr / (1 - b1 ** t)) * torch.atan2(m, torch.sqrt(v) / math.sqrt(1 - b2 ** t))
        out.append(p.clone())
    return out


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_adam_atan2_matches_formula_float64(wd):
    torch.manual_seed(0)
    p0 = torch.randn(7, 5, dtype=torch.float64)
    grads = [torch.randn(7, 5, dtype=torch.float64) for _ in range(6)]
    grads[2][0, 0] = 0.0  # zero gradient entry: atan2(0, 0) = 0, no NaN
    lr, b1, b2 = 3e-2, 0.9, 0.95
    expected = _formula_steps(p0, grads, lr, b1, b2, wd)
    p = torch.nn.Parameter(p0.clone())
    opt = AdamATan2([p], lr=lr, betas=(b1, b2), weight_decay=wd)
    for t, g in enumerate(grads):
        p.grad = g.clone()
        opt.step()
        assert torch.allclose(p.detach(), expected[t], rtol=0, atol=1e-12), f"step {t + 1}"
    assert opt.state[p]["step"] == len(grads)
    assert torch.isfinite(p).all()


def test_adam_atan2_lr_changes_between_steps_and_skips_params_without_grad():
    torch.manual_seed(1)
    a = torch.nn.Parameter(torch.randn(4, dtype=torch.float64))
    b = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    b_before = b.detach().clone()
    opt = AdamATan2([a, b], lr=0.0, betas=(0.9, 0.95), weight_decay=0.1)
    grads = [torch.randn(4, dtype=torch.float64) for _ in range(3)]
    lrs = [0.01, 0.02, 0.005]
    # the formula with a per-step lr
    p, m, v = a.detach().clone(), torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    for t, (g, lr) in enumerate(zip(grads, lrs), start=1):
        p = p * (1 - lr * 0.1)
        m = 0.9 * m + 0.1 * g
        v = 0.95 * v + 0.05 * g * g
        p = p - lr / (1 - 0.9 ** t) * torch.atan2(m, v.sqrt() / math.sqrt(1 - 0.95 ** t))
    for g, lr in zip(grads, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        a.grad = g.clone()
        opt.step()
    assert torch.allclose(a.detach(), p, atol=1e-12, rtol=0)
    assert torch.equal(b.detach(), b_before)  # no grad: untouched, no decay
    assert b not in opt.state or not opt.state[b]


def test_adam_atan2_float32_close_to_float64():
    torch.manual_seed(2)
    p64 = torch.nn.Parameter(torch.randn(64, dtype=torch.float64))
    p32 = torch.nn.Parameter(p64.detach().float().clone())
    o64 = AdamATan2([p64], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    o32 = AdamATan2([p32], lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    for _ in range(5):
        g = torch.randn(64, dtype=torch.float64)
        p64.grad, p32.grad = g.clone(), g.float()
        o64.step()
        o32.step()
    assert torch.allclose(p32.detach().double(), p64.detach(), atol=1e-6)


def _reference_lr(step, base, warmup, total, min_ratio):
    # the reference's lambda, transcribed independently
    if step < warmup:
        return base * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return base * (min_ratio + max(0.0, (1 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))))


def test_schedule_warmup_and_cosine():
    base, warmup, total, mr = 1e-3, 10, 100, 0.1
    # the reference's first optimizer step uses current_step = 1 (counter incremented before the lr)
    assert lr_at(1, base, warmup_steps=warmup, total_steps=total, min_ratio=mr) == pytest.approx(base / warmup)
    assert lr_at(5, base, warmup_steps=warmup, total_steps=total, min_ratio=mr) == pytest.approx(base * 0.5)
    assert lr_at(warmup, base, warmup_steps=warmup, total_steps=total, min_ratio=mr) == pytest.approx(base)
    assert lr_at(total, base, warmup_steps=warmup, total_steps=total, min_ratio=mr) == pytest.approx(base * mr)
    mid = (warmup + total) // 2
    assert lr_at(mid, base, warmup_steps=warmup, total_steps=total, min_ratio=mr) == pytest.approx(base * (mr + (1 - mr) * 0.5))
    for s in range(1, total + 1):
        assert lr_at(s, base, warmup_steps=warmup, total_steps=total, min_ratio=mr) == pytest.approx(
            _reference_lr(s, base, warmup, total, mr), rel=1e-12)
        assert cosine_schedule_with_warmup_lr_lambda(s, base_lr=base, num_warmup_steps=warmup, num_training_steps=total,
                                                     min_ratio=mr) == pytest.approx(_reference_lr(s, base, warmup, total, mr))
    # monotone: up during warmup, down after
    vals = [lr_at(s, base, warmup_steps=warmup, total_steps=total, min_ratio=mr) for s in range(1, total + 1)]
    assert all(a <= b for a, b in zip(vals[:warmup], vals[1:warmup]))
    assert all(a >= b for a, b in zip(vals[warmup - 1:], vals[warmup:]))


def test_schedule_holds_min_after_reference_length_and_min_ratio_one_is_constant():
    # past HRM's estimated length the reference stops training; we hold the final value
    assert lr_at(150, 1.0, warmup_steps=10, total_steps=100, min_ratio=0.1) == pytest.approx(0.1)
    # the paper's lr_min_ratio = 1.0: constant after warmup
    assert all(lr_at(s, 1e-4, warmup_steps=20, total_steps=50, min_ratio=1.0) == pytest.approx(1e-4) for s in range(20, 80))
    # warmup longer than the run: lr keeps rising, as in the reference
    assert lr_at(30, 1.0, warmup_steps=100, total_steps=50, min_ratio=0.0) == pytest.approx(0.3)
    # each optimizer has its own base lr through the same schedule
    a = lr_at(7, 1e-2, warmup_steps=10, total_steps=100, min_ratio=0.5)
    b = lr_at(7, 1e-4, warmup_steps=10, total_steps=100, min_ratio=0.5)
    assert a / b == pytest.approx(100.0)


def test_schedule_zero_warmup():
    assert lr_at(1, 2.0, warmup_steps=0, total_steps=10, min_ratio=0.0) == pytest.approx(
        2.0 * 0.5 * (1 + math.cos(math.pi * 0.1)))
