"""Tiny Recursive Models (arch.name=trm): shapes and names as TRM's, its recursion, halting and
mlp_t semantics, configs and presets, EMA of the trainable parameters, freeze_weights,
min_eval_interval, exact resume and 2-rank training. Bit-for-bit agreement with TRM's own code
is checked by benchmarks/parity_trm.py (it needs the reference checkout)."""
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hrm_model import checkpoint as ckpt
from hrm_model import train as T
from hrm_model.config import ConfigError, arch_for_model, load_file, parse_overrides, resolve
from hrm_model.layers import rms_norm
from hrm_model.model import build_model, count_parameters, load_reference_state_dict

sys.path.insert(0, str(Path(__file__).parent))
from trainer_fixtures import TINY, config, make_dataset, read_metrics  # noqa: E402

B, S, V, NPUZ = 3, 8, 7, 4
SMALL = dict(name="trm", hidden_size=32, num_heads=2, expansion=2, H_cycles=3, L_cycles=2, L_layers=2,
             puzzle_emb_ndim=32, puzzle_emb_len=2, pos_encodings="rope", halt_max_steps=3,
             halt_exploration_prob=0.0, forward_dtype="float32")
TRM_TINY = [*TINY, "arch=trm", "arch.puzzle_emb_len=1", "arch.H_cycles=2", "arch.L_cycles=2"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def small(**over):
    torch.manual_seed(0)
    return build_model(dict(SMALL, **over), batch_size=B, seq_len=S, vocab_size=V, num_puzzle_identifiers=NPUZ)


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"inputs": torch.randint(0, V, (B, S), generator=g), "labels": torch.randint(0, V, (B, S), generator=g),
            "puzzle_identifiers": torch.randint(0, NPUZ, (B,), generator=g)}


# ----------------------------------------------------------------------------- the model

@pytest.mark.parametrize("preset,seq,vocab,params", [
    ("trm-sudoku-mlp", 81, 11, 5_028_866), ("trm-sudoku-att", 81, 11, 6_828_034),
    ("trm-maze", 900, 6, 6_822_914), ("trm-arc", 900, 12, 6_829_058)])
def test_parameter_counts_equal_trms_recipes(preset, seq, vocab, params):
    cfg, _ = resolve({}, {"preset": preset}, gpu_available=True)
    with torch.device("meta"):
        m = build_model(dict(arch_for_model(cfg), forward_dtype="float32"), batch_size=2, seq_len=seq,
                        vocab_size=vocab, num_puzzle_identifiers=1)
    assert count_parameters(m) == params


def test_state_dict_names_and_shapes_are_trms():
    inter = 256  # SwiGLU width: 2/3 * 2 * 32 rounded up to a multiple of 256
    att = {"model.inner.embed_tokens.embedding_weight": (V, 32), "model.inner.lm_head.weight": (V, 32),
           "model.inner.q_head.weight": (2, 32), "model.inner.q_head.bias": (2,),
           "model.inner.puzzle_emb.weights": (NPUZ, 32), "model.inner.H_init": (32,), "model.inner.L_init": (32,)}
    mlp_t = dict(att)
    for i in range(2):
        p = f"model.inner.L_level.layers.{i}."
        att.update({p + "self_attn.qkv_proj.weight": (96, 32), p + "self_attn.o_proj.weight": (32, 32),
                    p + "mlp.gate_up_proj.weight": (2 * inter, 32), p + "mlp.down_proj.weight": (32, inter)})
        mlp_t.update({p + "mlp_t.gate_up_proj.weight": (2 * 256, S + 2), p + "mlp_t.down_proj.weight": (S + 2, 256),
                      p + "mlp.gate_up_proj.weight": (2 * inter, 32), p + "mlp.down_proj.weight": (32, inter)})
    assert {k: tuple(v.shape) for k, v in small().state_dict().items()} == att
    got = {k: tuple(v.shape) for k, v in small(mlp_t=True, pos_encodings="none").state_dict().items()}
    assert got == mlp_t
    learned = small(pos_encodings="learned").state_dict()
    assert tuple(learned["model.inner.embed_pos.embedding_weight"].shape) == (S + 2, 32)


def test_trm_checkpoint_with_compile_and_loss_head_prefix_loads_strict():
    src, dst = small(), small(pos_encodings="rope")
    with torch.no_grad():
        for p in dst.parameters():
            p.add_(1.0)
    sd = {"_orig_mod." + k: v for k, v in src.state_dict().items()}  # TRM saves _orig_mod.model.inner....
    load_reference_state_dict(dst, sd, strict=True)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k])


def test_one_network_recursion_and_gradient_only_in_the_last_cycle():
    m = small()
    inner = m.model.inner
    calls = []
    inner.L_level.register_forward_hook(lambda mod, args, kwargs_out: calls.append(torch.is_grad_enabled()))
    m.train()
    b = batch()
    carry = m.initial_carry(b)
    carry, loss, *_ = m(carry=carry, batch=b)
    H, L = SMALL["H_cycles"], SMALL["L_cycles"]
    assert calls == [False] * ((H - 1) * (L + 1)) + [True] * (L + 1)
    assert not hasattr(inner, "H_level")  # one network serves both states

    # the same segment written out: z_L <- L(z_L, z_H + x) L times, then z_H <- L(z_H, z_L)
    inner.eval()
    x = inner._input_embeddings(b["inputs"], b["puzzle_identifiers"])
    zH = inner.H_init.expand_as(x).clone()
    zL = inner.L_init.expand_as(x).clone()
    for _ in range(H):
        for _ in range(L):
            zL = inner.L_level(zL, zH + x, cos_sin=inner.rotary_emb())
        zH = inner.L_level(zH, zL, cos_sin=inner.rotary_emb())
    start = inner.reset_carry(torch.ones(B, dtype=torch.bool), inner.empty_carry(B))
    new_carry, logits, _ = inner(start, b)
    assert torch.allclose(new_carry.z_H, zH, atol=1e-6) and torch.allclose(new_carry.z_L, zL, atol=1e-6)
    assert torch.allclose(logits, inner.lm_head(zH)[:, 2:], atol=1e-6)  # logits after the 2-position prefix


def test_no_act_continue_halts_on_q_halt_alone_and_the_false_path_works():
    b = batch()
    m = small()
    with torch.no_grad():
        m.model.inner.q_head.bias.copy_(torch.tensor([5.0, 10.0]))  # q_halt > 0 but < q_continue
    m.train()
    carry, _, _, out, _ = m(carry=m.initial_carry(b), batch=b)
    assert carry.halted.all()  # TRM: q_halt > 0 halts, whatever q_continue says
    assert "target_q_continue" not in m.model(carry=m.initial_carry(b), batch=b)[1]

    m2 = small(no_ACT_continue=False)  # TRM's own code crashes here; we run HRM's bootstrapped target
    with torch.no_grad():
        m2.model.inner.q_head.bias.copy_(torch.tensor([5.0, 10.0]))
    m2.train()
    carry2, outputs = m2.model(carry=m2.initial_carry(b), batch=b)
    assert not carry2.halted.any() and "target_q_continue" in outputs
    _, loss, metrics, _, _ = m2(carry=m2.initial_carry(b), batch=b)
    assert "q_continue_loss" in metrics and torch.isfinite(loss)


def test_mlp_t_mixes_positions_and_normalises_over_the_token_axis():
    m = small(mlp_t=True, pos_encodings="none")
    block = m.model.inner.L_level.layers[0]
    h = torch.randn(B, S + 2, 32)
    t = h.transpose(1, 2)  # (B, hidden, positions)
    mid = rms_norm(t + block.mlp_t(t), 1e-5).transpose(1, 2)
    want = rms_norm(mid + block.mlp(mid), 1e-5)
    assert torch.allclose(block(cos_sin=None, hidden_states=h), want, atol=1e-6)
    assert torch.allclose(mid.float().square().mean(1), torch.ones(B, 32), atol=1e-4)  # RMS 1 along positions
    # attention without positions is permutation-equivariant; the positional MLP is not
    perm = torch.randperm(S + 2)
    assert not torch.allclose(block(cos_sin=None, hidden_states=h[:, perm]), want[:, perm], atol=1e-4)


# ----------------------------------------------------------------------------- config

def test_arch_trm_takes_trms_defaults_and_reference_names():
    cfg, _ = resolve({}, parse_overrides(["arch=trm"]), gpu_available=True)
    a = cfg["arch"]
    assert (a["name"], a["H_cycles"], a["L_cycles"], a["L_layers"], a["puzzle_emb_len"], a["no_ACT_continue"],
            a["mlp_t"]) == ("trm", 3, 6, 2, 16, True, False)
    cfg, notes = resolve({}, parse_overrides(["arch=trm"]), gpu_available=False)
    assert cfg["preset"] == "trm-cpu-small" and any("trm-cpu-small" in n for n in notes)
    full, _ = resolve({}, parse_overrides(["arch.name=recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1"]),
                      gpu_available=True)
    assert full["arch"]["name"] == "trm"
    hrm, _ = resolve({}, {}, gpu_available=True)
    assert hrm["arch"]["name"] == "hrm_v1" and "mlp_t" not in arch_for_model(hrm)
    for bad in (["arch.mlp_t=true"], ["arch.pos_encodings=none"], ["arch=trm", "arch.puzzle_emb_ndim=0"],
                ["arch=nope"]):
        with pytest.raises(ConfigError):
            resolve({}, parse_overrides(bad), gpu_available=True)


def test_trms_own_config_files_load_as_they_are(tmp_path):
    """cfg_pretrain.yaml with Hydra's `defaults: [arch: trm]` pulls arch/trm.yaml from beside it."""
    (tmp_path / "arch").mkdir()
    (tmp_path / "arch" / "trm.yaml").write_text(
        "name: recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1\nloss:\n  name: losses@ACTLossHead\n"
        "  loss_type: stablemax_cross_entropy\nhalt_exploration_prob: 0.1\nhalt_max_steps: 16\nH_cycles: 3\n"
        "L_cycles: 6\nH_layers: 0\nL_layers: 2\nhidden_size: 512\nnum_heads: 8\nexpansion: 4\n"
        "puzzle_emb_ndim: ${.hidden_size}\npos_encodings: rope\nforward_dtype: bfloat16\nmlp_t: False\n"
        "puzzle_emb_len: 16\nno_ACT_continue: True\n")
    (tmp_path / "cfg_pretrain.yaml").write_text(
        "defaults:\n  - arch: trm\n  - _self_\nhydra:\n  output_subdir: null\nevaluators:\n  - name: arc@ARC\n"
        "global_batch_size: 768\nepochs: 100000\neval_interval: 10000\ncheckpoint_every_eval: True\nlr: 1e-4\n"
        "lr_min_ratio: 1.0\nlr_warmup_steps: 2000\nbeta1: 0.9\nbeta2: 0.95\nweight_decay: 0.1\n"
        "puzzle_emb_weight_decay: 0.1\npuzzle_emb_lr: 1e-2\nseed: 0\nmin_eval_interval: 0\nema: False\n"
        "ema_rate: 0.999\nfreeze_weights: False\n")
    cfg, _ = resolve(load_file(tmp_path / "cfg_pretrain.yaml"), {}, gpu_available=True)
    assert cfg["arch"]["name"] == "trm" and cfg["arch"]["puzzle_emb_ndim"] == 512
    assert cfg["arch"]["forward_dtype"] == "bfloat16" and cfg["min_eval_interval"] == 0
    alone, _ = resolve(load_file(tmp_path / "arch" / "trm.yaml"), {}, gpu_available=True)
    assert alone["arch"]["name"] == "trm" and alone["arch"]["L_cycles"] == 6


# ----------------------------------------------------------------------------- training

def test_ema_averages_trainable_parameters_only_with_trms_formula():
    m = small()
    ema = T.EMA(m, 0.9, trainable_only=True)
    assert not any("puzzle_emb" in n for n in ema.names)
    before = {n: t.clone() for n, t in ema.tensors.items()}
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p))
    ema.update(m)
    for n, p in m.named_parameters():
        assert torch.equal(ema.tensors[n], (1.0 - 0.9) * p.detach() + 0.9 * before[n]), n
    assert any("puzzle_emb.weights" in n for n in T.EMA(m, 0.9).names)  # HRM runs: the table too


def test_trm_run_with_ema_resumes_exactly_after_sigkill(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    runs = tmp_path / "runs"
    common = ["epochs=4", "eval_interval=2", "global_batch_size=16", f"runs_dir={runs}", "arch.halt_max_steps=3",
              "arch.halt_exploration_prob=0.5", "ema=true", "ema_rate=0.9", "log_every=1"]
    ref_dir = T.run(ds, config(*TRM_TINY[len(TINY):], *common, "run_name=ref"), echo=lambda *_: None)
    r = subprocess.run([sys.executable, "-m", "hrm_model.cli", str(ds), *TRM_TINY, *common, "run_name=killed",
                        "checkpoint_every_steps=2", "debug_sigkill_at_step=5"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    r = subprocess.run([sys.executable, "-m", "hrm_model.cli", "--resume", str(runs / "killed")],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    a = torch.load(ckpt.latest_checkpoint(ref_dir), weights_only=False)
    b = torch.load(ckpt.latest_checkpoint(runs / "killed"), weights_only=False)
    assert a["config"]["arch"]["name"] == "trm" and a["step"] == b["step"] == 12
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert a["ema"].keys() == b["ema"].keys() and not any("puzzle_emb" in k for k in a["ema"])
    for k in a["ema"]:
        assert torch.equal(a["ema"][k], b["ema"][k]), k
    ev = lambda d: [(m["step"], m["exact_accuracy"], m["lm_loss"]) for m in read_metrics(d) if m["type"] == "eval"]
    assert ev(ref_dir) == ev(runs / "killed")


def test_freeze_weights_trains_puzzle_embeddings_only_and_min_eval_interval(tmp_path):
    ds = make_dataset(tmp_path / "ds")
    cfg = config(*TRM_TINY[len(TINY):], "epochs=4", "eval_interval=1", "global_batch_size=16", "freeze_weights=true",
                 "min_eval_interval=2", "puzzle_emb_lr=1e-1", f"runs_dir={tmp_path / 'runs'}", "run_name=frozen")
    from hrm_data.format import Dataset
    meta = Dataset(ds).train.metadata
    torch.manual_seed(cfg["seed"])  # the trainer's seeding: the same initial weights
    init = build_model(dict(arch_for_model(cfg), forward_dtype="float32"), batch_size=16, seq_len=meta.seq_len,
                       vocab_size=meta.vocab_size, num_puzzle_identifiers=meta.num_puzzle_identifiers).state_dict()
    run_dir = T.run(ds, cfg, echo=lambda *_: None)
    final = torch.load(ckpt.latest_checkpoint(run_dir), weights_only=False)["model"]
    for k, v in final.items():
        if k.endswith("puzzle_emb.weights"):
            assert not torch.equal(v, init[k])  # the table learned
        else:
            assert torch.equal(v, init[k]), k  # nothing else moved
    evals = sorted({m["epoch"] for m in read_metrics(run_dir) if m["type"] == "eval"})
    assert evals == [3, 4]  # iterations 0 and 1 skipped (min_eval_interval=2), in epochs of eval_interval=1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMMON_DDP = ["epochs=2", "eval_interval=1", "global_batch_size=16", "arch.halt_max_steps=3",
              "arch.halt_exploration_prob=0.0", "log_every=1", "ema=true"]


def _worker(rank, world_size, port, ds, runs):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    T.run(ds, config(*TRM_TINY[len(TINY):], *COMMON_DDP, f"runs_dir={runs}", "run_name=ddp"), echo=lambda *_: None)


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs torch.distributed gloo")
def test_trm_two_ranks_match_one(tmp_path):
    ds = make_dataset(tmp_path / "ds", multi=True)
    runs = tmp_path / "runs"
    one = T.run(ds, config(*TRM_TINY[len(TINY):], *COMMON_DDP, f"runs_dir={runs}", "run_name=one"),
                echo=lambda *_: None)
    mp.spawn(_worker, args=(2, _free_port(), str(ds), str(runs)), nprocs=2, join=True)
    a = torch.load(ckpt.latest_checkpoint(one), weights_only=False)
    b = torch.load(ckpt.latest_checkpoint(runs / "ddp"), weights_only=False)
    assert a["step"] == b["step"] > 0 and b["world_size"] == 2
    for k, va in a["model"].items():
        assert torch.allclose(va.float(), b["model"][k].float(), atol=2e-5, rtol=1e-4), k
    for k, va in a["ema"].items():
        assert torch.allclose(va, b["ema"][k], atol=2e-5, rtol=1e-4), k


# ----------------------------------------------------------------------------- several datasets

def test_several_datasets_train_as_one_with_identifiers_offset(tmp_path):
    from hrm_data.format import Dataset, FormatError
    from hrm_data.merge import MergedDataset
    a = make_dataset(tmp_path / "a", n_train=8, n_test=2, seed=0)
    b = make_dataset(tmp_path / "b", n_train=6, n_test=2, seed=1)
    m = MergedDataset([a, b])
    ids_a, ids_b = Dataset(a).identifiers, Dataset(b).identifiers
    assert m.identifiers == ids_a + ids_b[1:] and m.train.metadata.num_puzzle_identifiers == len(m.identifiers)
    assert m.train.metadata.sets == ["all", "all1"]  # TRM's naming of the second dataset's set
    pa, pb = Dataset(a).train.set("all").puzzle_identifiers, Dataset(b).train.set("all").puzzle_identifiers
    merged_b = m.train.set("all1").puzzle_identifiers
    assert (merged_b == pb + len(ids_a) - 1).all()  # no row shared with the first dataset
    assert [m.identifiers[i] for i in merged_b] == [ids_b[i] for i in pb]
    assert set(pa.tolist()).isdisjoint(merged_b.tolist())
    assert m.fingerprint() != MergedDataset([b, a]).fingerprint()
    other = make_dataset(tmp_path / "c", S=10)
    with pytest.raises(FormatError, match="seq_len"):
        MergedDataset([a, other]).train

    # hrm-train A B: both datasets' examples in every iteration, one embedding row per puzzle
    r = subprocess.run([sys.executable, "-m", "hrm_model.cli", str(a), str(b), *TINY, "epochs=1",
                        "global_batch_size=4", f"runs_dir={tmp_path / 'runs'}", "run_name=both", "log_every=1"],
                       capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    ck = torch.load(ckpt.latest_checkpoint(tmp_path / "runs" / "both"), weights_only=False)
    assert ck["config"]["data_paths"] == [str(a), str(b)]
    assert ck["model"]["model.inner.puzzle_emb.weights"].shape[0] == len(m.identifiers)
    assert ck["step"] == 8 // 4 + 6 // 4  # each set's batches in turn, last partial batch of each dropped


def test_accumulate_votes_key_overrides_the_datasets_choice(tmp_path):
    """TRM's evaluator aggregates votes over a run's evaluations; the trainer key turns it on or off."""
    import numpy as np
    from hrm_builders.arc import ARC
    from hrm_data.builder import build
    from hrm_data.format import Dataset
    from test_arc import task, write_dir
    root = write_dir(tmp_path / "arc", {"training": {"t": task(1)}, "evaluation": {"b": task(3)}})
    b = ARC()
    build(b, tmp_path / "d", {"source": f"dir:{root}", "num_aug": 2}, progress=False)  # built without accumulation
    ds = Dataset(tmp_path / "d")
    y = np.asarray(ds.test.set("all").labels).copy()
    wrong = np.zeros(ds.test.metadata.seq_len, np.uint8)
    wrong[:2] = [2, 1]
    bad = np.stack([wrong] * len(y))
    for flag, want in ((True, 1.0), (False, 0.0), (None, 0.0)):
        state = {} if flag is None else {"accumulate_votes": flag}
        b.score(ds, "test", y, evaluation=0, state=state)
        assert b.score(ds, "test", bad, evaluation=1, state=state)["pass@1"] == want, flag
    cfg, _ = resolve({}, {"preset": "trm-arc"}, gpu_available=True)
    assert cfg["accumulate_votes"] is True
    with pytest.raises(ConfigError):
        resolve({}, parse_overrides(["accumulate_votes=3"]), gpu_available=True)
