"""`hrm-data plan`: the document's example exactly, every warning code, and the step count
checked against a plain re-implementation of HRM's sampling loop."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from hrm_data.cli import main
from hrm_data.format import Dataset, DatasetWriter, Group, Puzzle
from hrm_data.plan import ERROR_CODES, Plan, compute_plan, plan_from_counts
from hrm_data.sampler import GroupSampler, pack_batches

SEQ = 2


def _puzzle(name: str, n: int) -> Puzzle:
    x = np.ones((n, SEQ), np.uint8)
    return Puzzle(name, x, x.copy())


def write_dataset(path, groups: list[list[int]], test_groups: list[list[int]] = ((1,), (1,), (2,))):
    """A dataset whose train split has ``groups[g][k]`` examples in puzzle k of group g."""
    with DatasetWriter(path, vocab_size=4, seq_len=SEQ) as w:
        with w.split("train") as s:
            for g, sizes in enumerate(groups):
                s.add_group(Group([_puzzle(f"tr{g}_{k}", n) for k, n in enumerate(sizes)]))
        with w.split("test") as s:
            for g, sizes in enumerate(test_groups):
                s.add_group(Group([_puzzle(f"te{g}_{k}", n) for k, n in enumerate(sizes)]))
    return path


def indices(groups: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    sizes = [n for g in groups for n in g]
    p = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    g = np.concatenate([[0], np.cumsum([len(x) for x in groups])]).astype(np.int64)
    return p, g


CITY = [[1, 1, 1, 1] for _ in range(240)]  # 240 scenarios x 4 single-example vehicle variants = 960


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("plan") / "city", CITY)


def run(args):
    res = CliRunner().invoke(main, ["plan", *map(str, args)])
    return res


def run_json(args):
    res = run([*args, "--json"])
    assert res.exit_code in (0, 1), res.output
    return res.exit_code, json.loads(res.stdout)


def codes(d) -> set[str]:
    return {w["code"] for w in d["warnings"]} if isinstance(d, dict) else set(d.codes())


# ------------------------------------------------------------------------------ the document's example

def test_document_example_json(city):
    rc, d = run_json([city, "--global-batch-size", 32, "--epochs", 100, "--eval-interval", 10,
                      "--lr-warmup-examples", 1920])
    assert rc == 0
    expected = dict(groups=240, puzzles=960, examples=960, mean_puzzle_examples=1.0, examples_per_epoch=240,
                    steps_per_epoch=7.5, eval_interval=10, iterations=10, steps_per_iteration=75, total_steps=750,
                    hrm_estimated_total_steps=750, warmup_steps=60, warmup_examples=1920)
    for k, v in expected.items():
        assert d[k] == v, k
        assert isinstance(d[k], (int, float)) and not isinstance(d[k], bool), k
    assert d["warnings"] == []
    assert d["recommended"] == {"eval_interval": 10, "lr_warmup_steps": 60, "lr_warmup_examples": 1920}
    assert d["naive_steps_per_iteration"] == 80 and d["naive_total_steps"] == 800
    assert d["examples_drawn_per_iteration"] == 2400 and d["examples_dropped_per_iteration"] == 0
    assert d["steps_per_iteration_range"]["min"] == d["steps_per_iteration_range"]["max"] == 75


def test_document_warmup_in_steps_never_reaches_base_lr(city):
    rc, d = run_json([city, "-b", 32, "-e", 100, "-i", 10, "--lr-warmup-steps", 1920])
    assert rc == 0  # a warning, not an error
    assert d["warmup_steps"] == 1920 and d["warmup_examples"] == 1920 * 32
    assert codes(d) == {"warmup_exceeds_total"}
    msg = next(w["message"] for w in d["warnings"])
    assert "--lr-warmup-examples 1920" in msg


def test_document_example_text(city):
    res = run([city, "-b", 32, "-e", 100, "-i", 10, "--lr-warmup-steps", 1920])
    assert res.exit_code == 0
    out = res.stdout
    for s in ("240", "960", "7.5", "75", "750", "floor(2400 / 32) = 75", "800", "warmup_exceeds_total",
              "--eval-interval 10", "--lr-warmup-examples 1920"):
        assert s in out, s
    assert "Why not 800" in out


def test_no_why_line_when_naive_formula_agrees(city):
    # 240 / 24 = 10 steps per epoch exactly: naive and real agree.
    res = run([city, "-b", 24, "-e", 100, "-i", 10])
    assert res.exit_code == 0 and "Why not" not in res.stdout


def test_library_api_matches_cli(city):
    p = compute_plan(str(city), 32, 100, 10, lr_warmup_examples=1920)
    assert isinstance(p, Plan)
    assert (p.total_steps, p.warmup_steps, p.hrm_estimated_total_steps, p.iterations, p.steps_per_iteration) == \
        (750, 60, 750, 10, 75)
    assert p.ok and p.warnings == []
    assert compute_plan(Dataset(city), 32, 100, 10).total_steps == 750
    assert compute_plan(Dataset(city).train, 32, 100, 10).to_dict()["total_steps"] == 750
    assert "750" in p.format_text()
    q = plan_from_counts(indices(CITY), 32, 100, 10, lr_warmup_examples=1920)
    assert q.to_dict() | {"source": None} == p.to_dict() | {"source": None}


def test_default_eval_interval_is_epochs(city):
    rc, d = run_json([city, "-b", 32, "-e", 100])
    assert d["eval_interval"] == 100 and d["iterations"] == 1
    assert d["steps_per_iteration"] == d["total_steps"] == 24000 // 32
    assert "eval_ratio" in codes(d)


# ------------------------------------------------------------------------------ warnings, one by one

P1 = indices(CITY)


def plan(**kw) -> Plan:
    kw.setdefault("global_batch_size", 32)
    kw.setdefault("epochs", 100)
    kw.setdefault("eval_interval", 10)
    arrays = kw.pop("arrays", P1)
    return plan_from_counts(arrays, **kw)


@pytest.mark.parametrize("code, on, off", [
    ("eval_interval_not_divisor", dict(eval_interval=7), dict(eval_interval=20)),
    ("eval_ratio", dict(eval_interval=20), dict(eval_interval=10)),
    ("eval_ratio", dict(epochs=100, eval_interval=100), dict(epochs=7, eval_interval=1)),  # 1: best divisor of 7
    ("batch_exceeds_groups", dict(global_batch_size=241), dict(global_batch_size=240)),
    ("batch_not_divisible", dict(world_size=3), dict(world_size=4)),
    ("zero_steps", dict(global_batch_size=241, epochs=10, eval_interval=1),
     dict(global_batch_size=240, epochs=10, eval_interval=1)),
    ("warmup_too_short", dict(lr_warmup_steps=9), dict(lr_warmup_steps=10)),
    ("warmup_too_short", dict(lr_warmup_examples=9 * 32), dict(lr_warmup_examples=9 * 32 + 1)),  # ceil -> 10
    ("warmup_exceeds_total", dict(lr_warmup_steps=750), dict(lr_warmup_steps=749)),
    ("warmup_exceeds_total", dict(lr_warmup_examples=1920 * 32), dict(lr_warmup_examples=1920)),
    ("schedule_mismatch", dict(metadata_mean_puzzle_examples=1.11), dict(metadata_mean_puzzle_examples=1.1)),
    ("schedule_mismatch", dict(metadata_total_groups=215), dict(metadata_total_groups=217)),
    ("metadata_mean_mismatch", dict(metadata_mean_puzzle_examples=4.0), dict(metadata_mean_puzzle_examples=1.0)),
    ("metadata_groups_mismatch", dict(metadata_total_groups=241), dict(metadata_total_groups=240)),
])
def test_warning_on_and_off(code, on, off):
    p_on, p_off = plan(**on), plan(**off)
    assert code in p_on.codes(), p_on.codes()
    assert code not in p_off.codes(), p_off.codes()
    w = next(w for w in p_on.warnings if w.code == code)
    assert w.level == ("error" if code in ERROR_CODES else "warning")
    assert "use " in w.message or "set " in w.message or "size the schedule" in w.message or "fix " in w.message


def test_clean_plan_has_no_warnings():
    assert plan(lr_warmup_examples=1920).warnings == []


def test_messages_say_what_to_change():
    assert "--eval-interval 10" in plan(eval_interval=7).warnings[0].message
    w = {x.code: x.message for x in plan(world_size=3).warnings}
    assert "--global-batch-size 30 or 33" in w["batch_not_divisible"]
    m = {x.code: x.message for x in plan(metadata_mean_puzzle_examples=4.0).warnings}
    assert "3000" in m["schedule_mismatch"] and "750" in m["schedule_mismatch"]
    assert "set mean_puzzle_examples to 1" in m["metadata_mean_mismatch"]


def test_per_group_mean_makes_hrm_plan_3000_steps(tmp_path, city):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(city, bad)
    meta = json.loads((bad / "train" / "dataset.json").read_text())
    meta["mean_puzzle_examples"] = 4.0  # 960 / 240: per group, not per puzzle
    (bad / "train" / "dataset.json").write_text(json.dumps(meta))
    rc, d = run_json([bad, "-b", 32, "-e", 100, "-i", 10])
    assert rc == 0
    assert d["hrm_estimated_total_steps"] == 3000 and d["total_steps"] == 750
    assert d["mean_puzzle_examples"] == 1.0 and d["metadata"]["mean_puzzle_examples"] == 4.0
    assert {"schedule_mismatch", "metadata_mean_mismatch"} <= codes(d)


def test_batch_larger_than_groups_still_fills():
    p = plan(global_batch_size=300)  # 2400 per iteration -> 8 full batches of 300
    assert p.steps_per_iteration == 8 and p.ok
    assert "batch_exceeds_groups" in p.codes()


# ------------------------------------------------------------------------------ exit codes

def test_exit_1_on_error_level_plan(city):
    res = run([city, "-b", 32, "-e", 100, "-i", 7])
    assert res.exit_code == 1 and "eval_interval_not_divisor" in res.stdout
    rc, d = run_json([city, "-b", 3000, "-e", 10, "-i", 1])
    assert rc == 1 and d["steps_per_iteration"] == 0 and d["total_steps"] == 0
    assert "zero_steps" in codes(d) and d["ok"] is False
    assert run([city, "-b", 32, "-e", 100, "--world-size", 3]).exit_code == 1


@pytest.mark.parametrize("make", ["missing", "empty_dir", "file", "no_train", "bad_json"])
def test_exit_2_on_non_dataset(tmp_path, city, make):
    import shutil
    path = tmp_path / "x"
    if make == "empty_dir":
        path.mkdir()
    elif make == "file":
        path.write_text("hello")
    elif make == "no_train":
        shutil.copytree(city, path)
        shutil.rmtree(path / "train")
    elif make == "bad_json":
        shutil.copytree(city, path)
        (path / "train" / "dataset.json").write_text("{")
    res = run([path, "-b", 32, "-e", 100])
    assert res.exit_code == 2
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}")


def test_exit_2_on_broken_index_arrays(tmp_path, city):
    import shutil
    path = tmp_path / "x"
    shutil.copytree(city, path)
    np.save(path / "train" / "all__group_indices.npy", np.array([0, 5, 5, 960], np.int32))  # an empty group
    res = run([path, "-b", 32, "-e", 100])
    assert res.exit_code == 2 and res.stderr.startswith("Error: ") and "group" in res.stderr


def test_both_warmups_is_bad_usage(city):
    assert run([city, "-b", 32, "-e", 100, "--lr-warmup-steps", 1, "--lr-warmup-examples", 1]).exit_code == 2
    with pytest.raises(ValueError):
        plan(lr_warmup_steps=1, lr_warmup_examples=1)


# ------------------------------------------------------------------------------ recommendations

@pytest.mark.parametrize("epochs, expect", [(100, 10), (1000, 100), (100000, 10000), (7, 1), (15, 1), (30, 3),
                                            (12, 1), (60, 6)])
def test_recommended_eval_interval_is_divisor_near_tenth(epochs, expect):
    p = plan(epochs=epochs, eval_interval=1)
    assert p.recommended["eval_interval"] == expect
    assert epochs % p.recommended["eval_interval"] == 0


def test_recommended_eval_interval_avoids_zero_steps():
    # 240 examples per epoch, batch 1000: an iteration needs >= 5 epochs to fill one batch.
    p = plan(global_batch_size=1000, epochs=20, eval_interval=1)
    assert "zero_steps" in p.codes()
    assert p.recommended["eval_interval"] == 5
    assert plan(global_batch_size=1000, epochs=20, eval_interval=5).steps_per_iteration == 1


def test_recommended_warmup_is_two_x_examples_in_steps():
    p = plan(global_batch_size=64)
    assert p.recommended["lr_warmup_examples"] == 1920 and p.recommended["lr_warmup_steps"] == 30
    p = plan(global_batch_size=200)  # ceil(1920 / 200) = 10
    assert p.recommended["lr_warmup_steps"] == 10
    p = plan(global_batch_size=240)  # 8 steps -> raised to 10 updates
    assert p.recommended["lr_warmup_steps"] == 10 and p.recommended["lr_warmup_examples"] == 2400
    p = plan(global_batch_size=32, epochs=4, eval_interval=4)  # 30-step run: cap at 15
    assert p.total_steps == 30 and p.recommended["lr_warmup_steps"] == 15
    # the recommendation itself never triggers the warmup warnings on a run long enough for them
    q = plan(lr_warmup_examples=p.recommended["lr_warmup_examples"])
    assert not {"warmup_too_short", "warmup_exceeds_total"} & set(q.codes())


# ------------------------------------------------------------------------------ against HRM's loop

def brute_force_steps(puzzle_indices, group_indices, batch, epochs_per_iter, stream) -> int:
    """HRM's `_iter_train` / `_sample_batch`, written out per example: walk the group order,
    draw a puzzle per group from the same Philox stream, add its examples one by one until
    the batch is full (the rest of the puzzle is discarded), drop the last partial batch."""
    rng = np.random.Generator(np.random.Philox(seed=stream))
    G = len(group_indices) - 1
    order = np.concatenate([rng.permutation(G) for _ in range(epochs_per_iter)])
    steps, pos = 0, 0
    while pos < len(order):
        filled = 0
        while pos < len(order) and filled < batch:
            gid = order[pos]
            pid = rng.integers(group_indices[gid], group_indices[gid + 1])
            pos += 1
            for _ in range(int(puzzle_indices[pid + 1] - puzzle_indices[pid])):
                if filled == batch:
                    break
                filled += 1
        if filled < batch:
            break
        steps += 1
    return steps


group_structures = st.lists(st.lists(st.integers(1, 5), min_size=1, max_size=4), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=group_structures, constant=st.sampled_from([None, 1, 2, 3, 5]), batch=st.integers(1, 40),
       eval_interval=st.integers(1, 4), n_iter=st.integers(1, 4), seed=st.integers(0, 5))
def test_steps_match_brute_force(groups, constant, batch, eval_interval, n_iter, seed):
    if constant is not None:
        groups = [[constant] * len(g) for g in groups]
    p_idx, g_idx = indices(groups)
    epochs = eval_interval * n_iter
    p = plan_from_counts((p_idx, g_idx), batch, epochs, eval_interval, seed=seed)
    # the reference bumps its iteration counter before drawing: iteration i uses Philox(seed + i + 1)
    brute = [brute_force_steps(p_idx, g_idx, batch, eval_interval, seed + i + 1) for i in range(n_iter)]
    assert p.iterations == n_iter
    assert p.steps_per_iteration == brute[0]
    assert p.total_steps == sum(brute)
    assert p.total_steps_exact
    assert all(p.steps_per_iteration_min <= s <= p.steps_per_iteration_max for s in p.steps_per_iteration_of)
    assert p.steps_per_iteration_p5 <= p.steps_per_iteration_p95
    assert ("zero_steps" in p.codes()) == (brute[0] == 0)
    n_examples = int(p_idx[-1])
    assert p.examples == n_examples and p.groups == len(groups)
    assert p.hrm_estimated_total_steps == int(epochs * len(groups) * (n_examples / len(p_idx[:-1])) / batch)
    if p.deterministic:
        assert p.steps_per_iteration_min == p.steps_per_iteration_max == p.steps_per_iteration
        assert len(set(brute)) == 1


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 400), size=st.integers(1, 7), batch=st.integers(1, 50))
def test_constant_size_closed_form_matches_the_packing_loop(n, size, batch):
    groups = [[size]] * n if n else [[size]]
    p = plan_from_counts(indices(groups), batch, 1)
    # HRM's loop, one puzzle at a time: fill each batch, clip its last puzzle, drop the partial tail
    steps = used = 0
    i = 0
    while True:
        room = batch
        while i < len(groups) and room > 0:
            room -= min(size, room)
            i += 1
        if room > 0:
            break
        steps, used = steps + 1, i
    starts, takes = pack_batches(np.full(len(groups), size), batch)
    assert p.steps_per_iteration == takes.shape[0] == steps and int(starts[-1]) == used
    assert p.examples_clipped_per_iteration == used * size - batch * steps
    assert p.examples_dropped_per_iteration == (len(groups) - used) * size


def test_several_sets_counted_like_group_sampler():
    a, b = indices([[1, 3], [2], [4, 1, 1]] * 7), indices([[5], [1, 2]] * 9)
    arrays = {"a": a, "b": b}
    p = plan_from_counts(arrays, 8, 12, 3, seed=2)
    s = GroupSampler(arrays, 8, 3, seed=2)
    assert p.total_steps == sum(s.steps_per_iteration(i) for i in range(4))
    assert p.steps_per_iteration == s.steps_per_iteration(0)
    assert p.groups == 21 + 18 and p.sets == ["a", "b"]


def test_multi_example_range_and_extrapolation():
    rng = np.random.default_rng(0)
    groups = [list(rng.integers(1, 6, size=rng.integers(1, 4))) for _ in range(50)]
    arrs = indices(groups)
    p = plan_from_counts(arrs, 16, 40, 4)
    assert not p.deterministic and p.total_steps_exact
    assert len(p.steps_per_iteration_of) >= 200  # percentiles over many iterations (= other streams)
    assert p.steps_per_iteration_min <= p.steps_per_iteration_p5 <= p.steps_per_iteration_p95 <= p.steps_per_iteration_max
    mean = p.examples_per_epoch * 4 / 16
    assert abs(p.steps_per_iteration - mean) < 0.2 * mean
    # a tiny budget forces extrapolation from iteration 0 only
    q = plan_from_counts(arrs, 16, 40, 4, max_simulated_slots=1)
    assert not q.total_steps_exact and len(q.steps_per_iteration_of) == 1
    assert q.total_steps == q.steps_per_iteration * 10
    d = q.to_dict()
    assert d["total_steps_exact"] is False and d["steps_per_iteration_range"]["samples"] == 1


def test_json_is_plain_numbers_everywhere(city):
    rng = np.random.default_rng(3)
    groups = [list(rng.integers(1, 4, size=2)) for _ in range(30)]
    d = plan_from_counts(indices(groups), 8, 20, 2, world_size=2, lr_warmup_steps=5).to_dict()
    json.dumps(d)  # no numpy scalars
    for k in ("groups", "puzzles", "examples", "mean_puzzle_examples", "examples_per_epoch", "steps_per_epoch",
              "eval_interval", "iterations", "steps_per_iteration", "total_steps", "hrm_estimated_total_steps",
              "warmup_steps", "warmup_examples"):
        assert type(d[k]) in (int, float), k
    assert d["local_batch_size"] == 4 and d["world_size"] == 2
    assert math.isclose(d["steps_per_epoch"], d["examples_per_epoch"] / 8)
