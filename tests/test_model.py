"""HRM ACT v1 model: shapes, carry/ACT semantics, 1-step gradient, init, reference-compatible state_dict."""
import math

import pytest

torch = pytest.importorskip("torch")

from hrm_model.layers import trunc_normal_init_  # noqa: E402
from hrm_model.losses import ACTLossHead  # noqa: E402
from hrm_model.model import (HierarchicalReasoningModel_ACTV1, HRMConfig, build_model, count_parameters,  # noqa: E402
                             export_reference_state_dict, load_reference_state_dict)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


PAPER_ARCH = dict(hidden_size=512, num_heads=8, expansion=4, H_layers=4, L_layers=4, H_cycles=2, L_cycles=2,
                  puzzle_emb_ndim=512, pos_encodings="rope", halt_max_steps=16, halt_exploration_prob=0.1)
TINY_ARCH = dict(hidden_size=32, num_heads=2, expansion=2, H_layers=1, L_layers=2, H_cycles=2, L_cycles=3,
                 puzzle_emb_ndim=32, pos_encodings="rope", halt_max_steps=3, halt_exploration_prob=0.1)
B, S, V, NPUZ = 4, 6, 7, 5


def tiny(seed=0, **over):
    torch.manual_seed(seed)
    return build_model(dict(TINY_ARCH, **over), batch_size=B, seq_len=S, vocab_size=V, num_puzzle_identifiers=NPUZ)


def make_batch(seed=1, b=B):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, V, (b, S), generator=g, dtype=torch.int32)
    labels[0, :2] = -100
    return dict(inputs=torch.randint(0, V, (b, S), generator=g, dtype=torch.int32), labels=labels,
                puzzle_identifiers=torch.randint(0, NPUZ, (b,), generator=g, dtype=torch.int32))


def reference_shapes(arch, seq_len, vocab, npuz, prefix="model.inner."):
    """Persistent state of sapientinc/HRM's ACTLossHead(HierarchicalReasoningModel_ACTV1), written out from
    models/hrm/hrm_act_v1.py + models/layers.py + models/sparse_embedding.py."""
    h = arch["hidden_size"]
    inter = -(round(arch["expansion"] * h * 2 / 3) // -256) * 256  # SwiGLU width, multiple of 256
    plen = -(arch["puzzle_emb_ndim"] // -h)
    d = {"embed_tokens.embedding_weight": (vocab, h), "lm_head.weight": (vocab, h),
         "q_head.weight": (2, h), "q_head.bias": (2,), "H_init": (h,), "L_init": (h,)}
    if arch["puzzle_emb_ndim"] > 0:
        d["puzzle_emb.weights"] = (npuz, arch["puzzle_emb_ndim"])
    if arch["pos_encodings"] == "learned":
        d["embed_pos.embedding_weight"] = (seq_len + plen, h)
    for level, n in (("H_level", arch["H_layers"]), ("L_level", arch["L_layers"])):
        for i in range(n):
            p = f"{level}.layers.{i}."
            d[p + "self_attn.qkv_proj.weight"] = (3 * h, h)
            d[p + "self_attn.o_proj.weight"] = (h, h)
            d[p + "mlp.gate_up_proj.weight"] = (2 * inter, h)
            d[p + "mlp.down_proj.weight"] = (h, inter)
    return {prefix + k: v for k, v in d.items()}


# ---------------------------------------------------------------- size and names

def test_paper_config_parameter_count_and_buffers():
    with torch.device("meta"):
        m = build_model(PAPER_ARCH, batch_size=2, seq_len=900, vocab_size=12, num_puzzle_identifiers=1)
    assert count_parameters(m) == 27_276_290
    sd = m.state_dict()
    assert tuple(sd["model.inner.puzzle_emb.weights"].shape) == (1, 512)
    assert tuple(sd["model.inner.H_init"].shape) == tuple(sd["model.inner.L_init"].shape) == (512,)
    buffers = {k for k, _ in m.named_buffers()}
    assert not any(k in buffers for k, _ in m.named_parameters())
    assert {k: tuple(v.shape) for k, v in sd.items()} == reference_shapes(PAPER_ARCH, 900, 12, 1)


@pytest.mark.parametrize("over", [{}, dict(pos_encodings="learned", puzzle_emb_ndim=40), dict(puzzle_emb_ndim=0)])
def test_state_dict_keys_match_reference(over):
    arch = dict(TINY_ARCH, **over)
    m = tiny(**over)
    assert {k: tuple(v.shape) for k, v in m.state_dict().items()} == reference_shapes(arch, S, V, NPUZ)


def test_load_reference_style_state_dict_with_compile_prefix():
    src, dst = tiny(seed=0), tiny(seed=1)
    ref_sd = {"_orig_mod." + k: v.clone() for k, v in export_reference_state_dict(src).items()}
    assert all(k.startswith("_orig_mod.model.inner.") for k in ref_sd)
    load_reference_state_dict(dst, ref_sd, strict=True)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    # the bare ACT model and a DDP-style prefix work too
    bare = HierarchicalReasoningModel_ACTV1(src.model.config)
    load_reference_state_dict(bare, {"module." + k: v for k, v in ref_sd.items()}, strict=True)
    assert torch.equal(bare.inner.lm_head.weight, src.model.inner.lm_head.weight)
    assert set(export_reference_state_dict(bare)) == set(export_reference_state_dict(src))
    with pytest.raises(RuntimeError):
        load_reference_state_dict(dst, {k: v for k, v in ref_sd.items() if "H_init" not in k}, strict=True)


# ---------------------------------------------------------------- config

def test_config_from_dict_rejects_unknown_and_missing():
    base = dict(batch_size=2, seq_len=4, vocab_size=5, num_puzzle_identifiers=1)
    assert HRMConfig.from_dict(base).hidden_size == 512
    with pytest.raises(ValueError, match="hiden_size"):
        HRMConfig.from_dict(dict(base, hiden_size=4))
    with pytest.raises(ValueError, match="vocab_size"):
        HRMConfig.from_dict({k: v for k, v in base.items() if k != "vocab_size"})
    with pytest.raises(ValueError):
        HRMConfig.from_dict(dict(base, pos_encodings="alibi"))


def test_build_model_accepts_reference_arch_yaml():
    arch = dict(PAPER_ARCH, name="hrm.hrm_act_v1@HierarchicalReasoningModel_ACTV1", puzzle_emb_ndim="${.hidden_size}",
                loss=dict(name="losses@ACTLossHead", loss_type="softmax_cross_entropy"), causal=False)
    with torch.device("meta"):
        m = build_model(arch, batch_size=2, seq_len=900, vocab_size=12, num_puzzle_identifiers=1)
    assert isinstance(m, ACTLossHead) and m.loss_type == "softmax_cross_entropy"
    assert m.model.config.puzzle_emb_ndim == 512
    with pytest.raises(ValueError, match="H_cycle"):
        build_model(dict(TINY_ARCH, H_cycle=1), batch_size=B, seq_len=S, vocab_size=V, num_puzzle_identifiers=NPUZ)


# ---------------------------------------------------------------- init

def test_init_matches_reference_scheme():
    t = trunc_normal_init_(torch.empty(200_000), std=0.5)
    assert abs(t.std().item() - 0.5) < 0.01 and t.abs().max().item() <= 2 * 0.5 / 0.8796 + 1e-6
    m = tiny().model.inner
    assert torch.all(m.q_head.weight == 0) and torch.all(m.q_head.bias == -5)
    assert torch.all(m.puzzle_emb.weights == 0)
    w = m.H_level.layers[0].mlp.gate_up_proj.weight
    assert abs(w.std().item() - 32 ** -0.5) < 0.02
    assert m.embed_scale == math.sqrt(32)


# ---------------------------------------------------------------- forward

@pytest.mark.parametrize("over", [{}, dict(pos_encodings="learned", puzzle_emb_ndim=40), dict(puzzle_emb_ndim=0),
                                  dict(forward_dtype="bfloat16")])
def test_shapes(over):
    m = tiny(**over)
    batch = make_batch()
    carry = m.initial_carry(batch)
    carry, loss, metrics, out, all_halted = m(carry=carry, batch=batch, return_keys=("logits", "preds"))
    plen = m.model.inner.puzzle_emb_len
    assert plen == {40: 2, 0: 0}.get(m.model.config.puzzle_emb_ndim, 1)
    assert out["logits"].shape == (B, S, V) and out["preds"].shape == (B, S)
    assert out["q_halt_logits"].shape == out["q_continue_logits"].shape == (B,)
    assert out["q_halt_logits"].dtype == torch.float32
    assert out["logits"].dtype == getattr(torch, m.model.config.forward_dtype)
    assert carry.inner_carry.z_H.shape == (B, S + plen, 32) and not carry.inner_carry.z_H.requires_grad
    assert loss.ndim == 0 and torch.isfinite(loss) and all(v.ndim == 0 for v in metrics.values())
    assert (m.model.puzzle_emb_module() is None) == (m.model.config.puzzle_emb_ndim == 0)
    loss.backward()


def test_eval_runs_exactly_halt_max_steps():
    m = tiny().eval()
    batch = make_batch()
    carry = m.initial_carry(batch)
    with torch.no_grad():
        for step in range(1, 10):
            carry, loss, metrics, out, all_halted = m(carry=carry, batch=batch)
            assert "target_q_continue" not in out and "q_continue_loss" not in metrics
            assert torch.all(carry.steps == step)
            if all_halted:
                break
            assert not carry.halted.any() and metrics["count"] == 0
    assert step == TINY_ARCH["halt_max_steps"]
    assert metrics["count"] == B and metrics["steps"] == B * step


def test_carry_keeps_old_rows_and_resets_halted_rows():
    m = tiny().eval()  # eval: rows are independent and deterministic
    a, b = make_batch(seed=1), make_batch(seed=2)
    with torch.no_grad():
        c1, *_ = m(carry=m.initial_carry(a), batch=a)
        c1.halted = torch.tensor([True, False, True, False])
        c2, _, _, out2, _ = m(carry=c1, batch=b, return_keys=("logits",))
        # reference runs: first segment on b, second segment on a
        _, _, _, fresh_b, _ = m(carry=m.initial_carry(b), batch=b, return_keys=("logits",))
        c_a, *_ = m(carry=m.initial_carry(a), batch=a)
        _, _, _, second_a, _ = m(carry=c_a, batch=b, return_keys=("logits",))
    new, old = c1.halted, ~c1.halted
    for k in a:
        assert torch.equal(c2.current_data[k][new], b[k][new]) and torch.equal(c2.current_data[k][old], a[k][old])
    assert c2.steps.tolist() == [1, 2, 1, 2]
    torch.testing.assert_close(out2["logits"][new], fresh_b["logits"][new])
    torch.testing.assert_close(out2["logits"][old], second_a["logits"][old])


def test_training_halting_exploration_and_q_target():
    m = tiny().train()
    batch = make_batch()
    with torch.no_grad():
        m.model.inner.q_head.bias.copy_(torch.tensor([3.0, -3.0]))  # q_halt > q_continue everywhere
    m.model.config.halt_exploration_prob = 0.0
    carry, _, metrics, out, all_halted = m(carry=m.initial_carry(batch), batch=batch, return_keys=("target_q_continue",))
    assert all_halted and metrics["count"] == B and "q_continue_loss" in metrics
    # target = sigmoid(max(next q_halt, next q_continue)) from one more gradient-free segment
    with torch.no_grad():
        nh, nc = m.model.inner(carry.inner_carry, carry.current_data)[-1]
    torch.testing.assert_close(out["target_q_continue"], torch.sigmoid(torch.maximum(nh, nc)))
    # forced exploration: a minimum of 2..halt_max_steps segments, so nobody halts on step 1
    m.model.config.halt_exploration_prob = 1.0
    carry, *_ = m(carry=m.initial_carry(batch), batch=batch)
    assert not carry.halted.any()
    # with q_halt < q_continue rows run until halt_max_steps, then always halt
    with torch.no_grad():
        m.model.inner.q_head.bias.copy_(torch.tensor([-3.0, 3.0]))
    m.model.config.halt_exploration_prob = 0.0
    carry = m.initial_carry(batch)
    for step in range(1, TINY_ARCH["halt_max_steps"] + 1):
        carry, *_ = m(carry=carry, batch=batch)
        assert carry.halted.tolist() == [step == TINY_ARCH["halt_max_steps"]] * B


def test_last_step_target_uses_q_halt_only():
    m = tiny(halt_max_steps=2, halt_exploration_prob=0.0).train()
    batch = make_batch()
    carry, *_ = m(carry=m.initial_carry(batch), batch=batch)
    carry.halted[:] = False
    carry, _, _, out, all_halted = m(carry=carry, batch=batch, return_keys=("target_q_continue",))
    assert all_halted
    with torch.no_grad():
        nh, _ = m.model.inner(carry.inner_carry, carry.current_data)[-1]
    torch.testing.assert_close(out["target_q_continue"], torch.sigmoid(nh))


def test_only_last_L_and_H_update_has_gradient():
    m = tiny().eval()  # eval: one inner call per segment (no target pass)
    inner = m.model.inner
    record = {"L": [], "H": []}
    hooks = [inner.L_level.register_forward_hook(lambda *_: record["L"].append(torch.is_grad_enabled())),
             inner.H_level.register_forward_hook(lambda *_: record["H"].append(torch.is_grad_enabled()))]
    batch = make_batch()
    carry, loss, _, out, _ = m(carry=m.initial_carry(batch), batch=batch, return_keys=("logits",))
    for h in hooks:
        h.remove()
    Hc, Lc = TINY_ARCH["H_cycles"], TINY_ARCH["L_cycles"]
    assert record["L"] == [False] * (Hc * Lc - 1) + [True]
    assert record["H"] == [False] * (Hc - 1) + [True]

    # the gradient equals that of: no-grad unroll, then exactly one differentiable L and H update
    m.zero_grad()
    carry, loss, *_ = m(carry=m.initial_carry(batch), batch=batch)
    loss.backward()
    got = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    m.zero_grad()
    cos_sin = inner.rotary_emb()
    x = inner._input_embeddings(batch["inputs"], batch["puzzle_identifiers"])
    zH = inner.H_init.expand(B, S + 1, -1)
    zL = inner.L_init.expand(B, S + 1, -1)
    with torch.no_grad():
        for _ in range(Hc - 1):
            for _ in range(Lc):
                zL = inner.L_level(zL, zH + x, cos_sin=cos_sin)
            zH = inner.H_level(zH, zL, cos_sin=cos_sin)
        for _ in range(Lc - 1):
            zL = inner.L_level(zL, zH + x, cos_sin=cos_sin)
    zL = inner.L_level(zL, zH + x, cos_sin=cos_sin)
    zH = inner.H_level(zH, zL, cos_sin=cos_sin)
    logits = inner.lm_head(zH)[:, 1:]
    q = inner.q_head(zH[:, 0])
    ref = m.loss_fn(logits, batch["labels"]).sum(-1) / (batch["labels"] != -100).sum(-1)
    correct = ((logits.argmax(-1) == batch["labels"]) | (batch["labels"] == -100)).all(-1).float()
    ref_loss = ref.sum() + 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(q[:, 0], correct, reduction="sum")
    torch.testing.assert_close(loss, ref_loss.to(loss.dtype))
    ref_loss.backward()
    want = {n: p.grad for n, p in m.named_parameters() if p.grad is not None}
    assert set(got) == set(want) and len(got) == len(list(m.parameters()))
    for n in got:
        torch.testing.assert_close(got[n], want[n], rtol=1e-5, atol=1e-6)
