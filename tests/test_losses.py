"""Stablemax / softmax cross-entropy and the ACT loss head on a hand-computed example."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hrm_model.losses import (IGNORE_LABEL_ID, ACTLossHead, log_stablemax, softmax_cross_entropy,  # noqa: E402
                              stablemax_cross_entropy)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_stablemax_float64_matches_direct_formula():
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 5, 11, generator=g) * 30).to(torch.bfloat16)  # large magnitudes, low precision input
    labels = torch.randint(0, 11, (3, 5), generator=g)
    labels[1, 2] = IGNORE_LABEL_ID
    got = stablemax_cross_entropy(logits, labels)
    assert got.dtype == torch.float64 and got.shape == labels.shape

    x = logits.to(torch.float64).numpy()
    s = np.where(x < 0, 1.0 / (1.0 - x + 1e-30), x + 1.0)
    p = s / s.sum(-1, keepdims=True)
    lab = labels.numpy()
    want = np.zeros(lab.shape)
    for idx in np.ndindex(*lab.shape):
        if lab[idx] != IGNORE_LABEL_ID:
            want[idx] = -math.log(p[idx][lab[idx]])
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=0)
    assert got[1, 2] == 0
    torch.testing.assert_close(log_stablemax(torch.tensor([[2.0, 0.0, -1.0]], dtype=torch.float64)),
                               torch.log(torch.tensor([[3.0, 1.0, 0.5]], dtype=torch.float64) / 4.5))


def test_softmax_cross_entropy_matches_log_softmax():
    logits = torch.randn(2, 4, 6)
    labels = torch.randint(0, 6, (2, 4))
    labels[0, 0] = IGNORE_LABEL_ID
    got = softmax_cross_entropy(logits, labels)
    want = -torch.log_softmax(logits, -1).gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    want[0, 0] = 0
    torch.testing.assert_close(got, want)


class _FixedModel(torch.nn.Module):
    """Stands in for the ACT model: returns a fixed carry and fixed outputs."""

    def __init__(self, carry, outputs):
        super().__init__()
        self.carry, self.outputs = carry, outputs

    def initial_carry(self, batch):
        return "initial"

    def forward(self, carry, batch):
        return self.carry, dict(self.outputs)


def _example(with_target=True):
    labels = torch.tensor([[0, 1], [0, -100], [-100, -100]], dtype=torch.int32)
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]],      # both right: p = 3/4, 2/3
                           [[-1.0, 0.0], [5.0, 5.0]],     # wrong: p(0) = 0.5 / 1.5
                           [[0.0, 0.0], [0.0, 0.0]]], requires_grad=True)
    outputs = dict(logits=logits, q_halt_logits=torch.tensor([0.5, -1.0, -2.0], requires_grad=True),
                   q_continue_logits=torch.tensor([0.2, -0.3, 0.0], requires_grad=True))
    if with_target:
        outputs["target_q_continue"] = torch.tensor([0.7, 0.1, 0.5])
    carry = SimpleNamespace(current_data=dict(labels=labels), halted=torch.tensor([True, False, True]),
                            steps=torch.tensor([3, 1, 2], dtype=torch.int32))
    return carry, outputs


def _bce(x, y):
    sig = 1 / (1 + math.exp(-x))
    return -(y * math.log(sig) + (1 - y) * math.log(1 - sig))


def test_act_loss_head_hand_example():
    carry, outputs = _example()
    head = ACTLossHead(_FixedModel(carry, outputs), loss_type="stablemax_cross_entropy")
    assert head.initial_carry({}) == "initial"
    new_carry, loss, metrics, out, all_halted = head(return_keys=("logits", "preds"), carry=None, batch={})

    lm = (math.log(4 / 3) + math.log(3 / 2)) / 2 + math.log(3)  # row 2 has no labels: contributes 0
    q_halt = _bce(0.5, 1) + _bce(-1.0, 0) + _bce(-2.0, 1)         # seq_is_correct = [1, 0, 1 (vacuous)]
    q_cont = _bce(0.2, 0.7) + _bce(-0.3, 0.1) + _bce(0.0, 0.5)
    assert loss.item() == pytest.approx(lm + 0.5 * (q_halt + q_cont), rel=1e-6)
    assert metrics["lm_loss"].item() == pytest.approx(lm, rel=1e-9)
    assert metrics["q_halt_loss"].item() == pytest.approx(q_halt, rel=1e-6)
    assert metrics["q_continue_loss"].item() == pytest.approx(q_cont, rel=1e-6)
    # only row 0 is halted with labels
    assert metrics["count"].item() == 1 and metrics["exact_accuracy"].item() == 1
    assert metrics["accuracy"].item() == pytest.approx(1.0) and metrics["q_halt_accuracy"].item() == 1
    assert metrics["steps"].item() == 3
    assert not all_halted and new_carry is carry
    assert set(out) == {"logits", "preds", "q_halt_logits", "q_continue_logits"}
    assert out["preds"].tolist() == [[0, 1], [1, 0], [0, 0]] and not out["logits"].requires_grad
    loss.backward()
    assert outputs["logits"].grad is not None and outputs["q_halt_logits"].grad is not None


def test_act_loss_head_without_target_and_softmax():
    carry, outputs = _example(with_target=False)
    head = ACTLossHead(_FixedModel(carry, outputs), loss_type="softmax_cross_entropy")
    _, loss, metrics, _, _ = head(return_keys=(), carry=None, batch={})
    assert "q_continue_loss" not in metrics
    ce = lambda z, k: -torch.log_softmax(torch.tensor(z), -1)[k].item()  # noqa: E731
    lm = (ce([2.0, 0.0], 0) + ce([0.0, 1.0], 1)) / 2 + ce([-1.0, 0.0], 0)
    assert loss.item() == pytest.approx(lm + 0.5 * (_bce(0.5, 1) + _bce(-1.0, 0) + _bce(-2.0, 1)), rel=1e-6)


def test_unknown_loss_type():
    with pytest.raises(ValueError, match="loss_type"):
        ACTLossHead(torch.nn.Identity(), loss_type="mse")
