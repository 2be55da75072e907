"""hrm-data import: records -> a dataset that validates clean; every bad record numbered; grouping,
splitting, padding, EOS framing, dihedral variants, vocab; and the example file to a trained run."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hrm_data.format import Dataset, fingerprint
from hrm_data.importer import Options, encode, import_records
from hrm_data.validate import validate

BIN = Path(sys.executable).parent
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mirror-tasks.jsonl"


def run(*args, tool="hrm-data"):
    return subprocess.run([str(BIN / tool), *map(str, args)], capture_output=True, text=True)


def write_jsonl(path, records):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def rec(split="train", group="g", puzzle=None, x=((1, 2), (3, 0)), y=None, **kw):
    x = [list(r) for r in x] if isinstance(x[0], (list, tuple)) else list(x)
    y = y if y is not None else ([r[::-1] for r in x] if isinstance(x[0], list) else x[::-1])
    d = {"split": split, "group": group, "input": x, "output": y, **kw}
    if puzzle is not None:
        d["puzzle"] = puzzle
    return d


def test_encode_frames_like_arc():
    g = np.array([[0, 1], [2, 3]])
    out = encode(g, (3, 4), eos=True).reshape(3, 4)
    assert out.tolist() == [[2, 3, 1, 0], [4, 5, 1, 0], [1, 1, 0, 0]]
    assert encode(g, (2, 2), eos=True).tolist() == [2, 3, 4, 5]          # full frame: no <eos> border
    assert encode(g, (3, 3), eos=False).reshape(3, 3).tolist() == [[1, 2, 0], [3, 4, 0], [0, 0, 0]]
    assert encode(np.array([4, 5]), (4,), eos=True).tolist() == [6, 7, 1, 0]


def test_every_bad_record_is_numbered(tmp_path):
    f = write_jsonl(tmp_path / "bad.jsonl", [
        rec(),                                                   # line 1 fine
        "{not json",                                             # 2
        rec(x=[[1, 2], [3]]),                                    # 3 ragged
        rec(x=[[1, -2], [3, 4]]),                                # 4 out of range
        {"split": "train", "group": "g", "input": [[1]]},        # 5 missing output
        rec(split="val"),                                        # 6 bad split
        rec(x=[[1.5, 2], [3, 4]]),                               # 7 not integers
        rec(split="test", group="g"),                            # 8 group in both splits
        "[1, 2]",                                                # 9 not an object
        rec(x=[1, 2, 3]),                                        # 10 1-D in a 2-D file
        rec(group="h", x=[[1] * 9] * 2),                         # 11 does not fit --pad-to
    ])
    r = run("import", f, "--out", tmp_path / "o", "--pad-to", "4x4")
    assert r.returncode == 2 and not (tmp_path / "o").exists()
    lines = [l for l in r.stderr.splitlines() if ": line " in l]
    assert [int(l.split("line ")[1].split(":")[0]) for l in lines] == [2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    text = r.stderr
    for what in ("not valid JSON", "ragged", "out of range", "missing key 'output'", "must be \"train\"",
                 "must be integers", "leaks into the test set", "JSON object", "2-D records", "does not fit"):
        assert what in text, what
    assert "10 malformed" in text and "Traceback" not in text
    r = run("import", f, "--out", tmp_path / "o", "--pad-to", "4x4", "--skip-bad", "--test-fraction", "0.5")
    assert r.returncode == 0 and "skipped 10 malformed" in r.stdout, r.stderr
    assert Dataset(tmp_path / "o").train.set("all").num_examples == 1


def test_groups_need_not_be_contiguous_and_validate_clean(tmp_path):
    recs = []
    for i in range(6):
        for g in ("a", "b", "c"):          # interleaved groups, 2 puzzles in group c
            recs.append(rec(group=g, puzzle=f"{g}{i % 2 if g == 'c' else ''}", x=[[i % 4, 1], [2, 3]]))
    recs.append(rec(split="test", group="t", x=[[1, 2, 3]] * 3))
    f = write_jsonl(tmp_path / "r.jsonl", recs)
    s = import_records(f, Options(out=str(tmp_path / "o"), progress=False))
    assert s["grid"] == "3x3" and s["vocab_size"] == 2 + 4
    rep = validate(tmp_path / "o")
    assert rep.valid and not rep.warnings, rep.format_text()
    a = Dataset(tmp_path / "o").train.set("all")
    assert a.num_groups == 3 and a.num_puzzles == 4 and a.num_examples == 18
    assert np.diff(a.puzzle_indices).tolist() == [6, 6, 3, 3]
    table = Dataset(tmp_path / "o").train.side_table()
    assert table["line"].tolist()[:6] == [1, 4, 7, 10, 13, 16]      # group a, in file order
    meta = Dataset(tmp_path / "o").train.metadata.extra
    assert meta["grid_shape"] == [3, 3] and meta["token_names"][:2] == ["pad", "eos"] and len(meta["palette"]) == 6


def test_test_fraction_splits_whole_groups_seeded(tmp_path):
    recs = [dict(rec(group=f"g{i}", puzzle=f"g{i}-{j}", x=[[i % 3, j]]), split=None) for i in range(40) for j in range(2)]
    for r in recs:
        del r["split"]
    f = write_jsonl(tmp_path / "r.jsonl", recs)
    fps = []
    for seed, out in ((1, "a"), (1, "b"), (2, "c")):
        import_records(f, Options(out=str(tmp_path / out), test_fraction=0.25, seed=seed, progress=False))
        fps.append(fingerprint(tmp_path / out))
    assert fps[0] == fps[1] != fps[2]
    ds = Dataset(tmp_path / "a")
    assert ds.test.set("all").num_groups == 10 and ds.train.set("all").num_groups == 30
    tr = set(ds.train.side_table()["group_key"])
    te = set(ds.test.side_table()["group_key"])
    assert not tr & te and len(tr | te) == 40


def test_dihedral_vocab_no_identifiers_and_sequences(tmp_path):
    f = write_jsonl(tmp_path / "r.jsonl", [rec(group="a", x=[["r", "g", "b"]], y=[["b", "g", "r"]]),
                                           rec(split="test", group="t", x=[["g", "g"]], y=[["g", "r"]])])
    import_records(f, Options(out=str(tmp_path / "d"), dihedral=True, vocab=["r", "g", "b"],
                              vocab_names=["red", "green", "blue"], no_identifiers=True, progress=False))
    ds = Dataset(tmp_path / "d")
    a = ds.train.set("all")
    assert a.num_groups == 1 and a.num_puzzles == 8 and ds.train.metadata.seq_len == 9    # squared 1x3 -> 3x3
    assert ds.identifiers == ["<blank>", "<task>"] and set(a.puzzle_identifiers.tolist()) == {1}
    assert ds.test.set("all").num_puzzles == 1                                           # test is not augmented
    x = np.asarray(a.inputs).reshape(8, 3, 3)
    assert x[0, 0].tolist() == [2, 3, 4] and x[6][:, 0].tolist() == [2, 3, 4]            # identity, transpose
    assert ds.train.metadata.extra["token_names"] == ["pad", "eos", "red", "green", "blue"]
    assert validate(tmp_path / "d").valid
    f2 = write_jsonl(tmp_path / "s.jsonl", [rec(x=[3, 1, 2]), rec(group="h", x=[1]), rec(split="test", group="t", x=[2, 2])])
    s = import_records(f2, Options(out=str(tmp_path / "s"), progress=False))
    assert s["seq_len"] == 3 and s["vocab_size"] == 5                                    # no <eos> for sequences
    assert "grid_shape" not in Dataset(tmp_path / "s").train.metadata.extra


def test_parquet_records_and_bad_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = [rec(group=f"g{i}", x=[[i % 3, 1], [0, 2]]) for i in range(5)] + [rec(split="test", group="t")]
    rows[2]["input"] = [[1, 2], [3]]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "r.parquet")
    r = run("import", tmp_path / "r.parquet", "--out", tmp_path / "o")
    assert r.returncode == 2 and "row 2: 'input' is ragged" in r.stderr
    r = run("import", tmp_path / "r.parquet", "--out", tmp_path / "o", "--skip-bad")
    assert r.returncode == 0 and Dataset(tmp_path / "o").train.set("all").num_examples == 4


def test_refuses_what_it_cannot_do(tmp_path):
    f = write_jsonl(tmp_path / "r.jsonl", [rec(), rec(split="test", group="t")])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "x.txt").write_text("keep")
    for args, what in ((["--out", tmp_path / "mine", "--force"], "not an HRM dataset"),
                       (["--out", tmp_path / "o", "--pad-to", "3by3"], "--pad-to"),
                       (["--out", tmp_path / "o", "--test-fraction", "1.5"], "--test-fraction"),
                       (["--out", tmp_path / "o", "--dihedral", "--pad-to", "2x3"], "square")):
        r = run("import", f, *args)
        assert r.returncode == 2 and what in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    assert run("import", tmp_path, "--out", tmp_path / "o").returncode == 2
    assert (tmp_path / "mine" / "x.txt").exists() and not (tmp_path / "o").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]                 # no spill left behind


def test_example_file_to_a_trained_run_without_python(tmp_path):
    """docs/own-tasks.md, command by command: import, validate, plan, show, train, evaluate."""
    data = tmp_path / "mirror"
    r = run("import", EXAMPLE, "--out", data)
    assert r.returncode == 0, r.stderr
    assert run("validate", data).returncode == 0
    assert run("plan", data, "-b", "16", "-e", "4", "-i", "2").returncode == 0
    assert "label:" in run("show", data, "--index", "3").stdout
    tiny = ["arch.hidden_size=32", "arch.num_heads=2", "arch.H_layers=1", "arch.L_layers=1", "arch.H_cycles=1",
            "arch.L_cycles=1", "arch.halt_max_steps=2", "arch.puzzle_emb_ndim=32", "arch.expansion=2",
            "progress=false", "cpu_threads=1", "lr_warmup_steps=2"]
    r = run(data, *tiny, "epochs=4", "eval_interval=2", "global_batch_size=16", f"runs_dir={tmp_path / 'runs'}",
            "run_name=mirror", "log_every=1", tool="hrm-train")
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = [json.loads(l) for l in (tmp_path / "runs/mirror/metrics.jsonl").read_text().splitlines()]
    plan = json.loads((tmp_path / "runs/mirror/plan.json").read_text())
    train = [m for m in metrics if m["type"] == "train"]
    assert train[-1]["step"] == plan["total_steps"] > 0 and all(np.isfinite(m["lm_loss"]) for m in train)
    assert sum(m["type"] == "eval" for m in metrics) == 2
    assert np.load(tmp_path / "runs/mirror/predictions_all.npy").shape == (24, 25)
