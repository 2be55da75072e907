"""Pictures from dataset metadata: PNG grids, `show --png`, the HTML viewer's data, the
predictions table, training plots, and the lazy imports that keep `hrm-data --help` fast."""
import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from hrm_data.format import Dataset, DatasetWriter, Group, Puzzle
from hrm_data.render import FALLBACK_PALETTE, grid_style

pytest.importorskip("PIL", reason="Pillow not installed (the viz extra)")

NAMES = ["pad", "wall", "floor", "goal", "path"]
PALETTE = ["#000000", "#404040", "#f0f0f0", "#d55e00", "#f0e442"]


def make_grid_dataset(path, n_train=6, n_test=6, side=4, metadata=True, seed=0):
    """Tokens 1..4 on a side x side grid; label = input with 'path' on the diagonal."""
    rng = np.random.default_rng(seed)
    extra = {"grid_shape": [side, side], "token_names": NAMES, "palette": PALETTE} if metadata else {}
    with DatasetWriter(path, vocab_size=5, seq_len=side * side, pad_id=0, ignore_label_id=0,
                       identifiers=["a", "b"], extra=extra) as w:
        for split, n in (("train", n_train), ("test", n_test)):
            with w.split(split) as s:
                for i in range(n):
                    x = rng.integers(1, 4, size=(1, side * side))
                    y = x.copy()
                    y[0, :: side + 1] = 4
                    s.add_group(Group([Puzzle("ab"[i % 2], x, y)]))
    return path


def test_grid_style_from_metadata_and_fallback(tmp_path):
    ds = Dataset(make_grid_dataset(tmp_path / "d"))
    st = grid_style(ds.test.metadata)
    assert st["shape"] == (4, 4) and st["palette"] == PALETTE and st["token_names"] == NAMES
    bare = Dataset(make_grid_dataset(tmp_path / "bare", metadata=False))
    st = grid_style(bare.test.metadata)
    assert st["palette"] == list(FALLBACK_PALETTE[:5]) and st["token_names"] == ["0", "1", "2", "3", "4"]
    from hrm_data.render import _fallback_colour
    many = {_fallback_colour(i) for i in range(200)}
    assert len(many) == 200   # large vocabularies still get distinct colours


def test_grid_pixels_cells_lines_and_30x30_legibility():
    from hrm_data.render_png import GRID_LINE, cell_size, grid_pixels, _rgb
    style = {"shape": (30, 30), "palette": PALETTE, "vocab_size": 5}
    c = cell_size((30, 30))
    assert c >= 12                      # legible at 30 x 30
    t = np.arange(900) % 5
    img = grid_pixels(t, style, c)
    assert img.shape == (30 * c + 1, 30 * c + 1, 3)
    assert tuple(img[0, 5]) == GRID_LINE and tuple(img[c, 5]) == GRID_LINE and tuple(img[5, 2 * c]) == GRID_LINE
    for k in (0, 7, 31, 899):
        r, q = divmod(k, 30)
        assert tuple(img[r * c + c // 2, q * c + c // 2]) == _rgb(PALETTE[t[k]])
    # a long 1 x N sequence wraps into a block instead of a 1-pixel-high strip
    assert grid_pixels(np.ones(400, int), {"shape": (1, 400), "palette": PALETTE, "vocab_size": 5}, 8).shape[:2] == (161, 161)


def test_wrong_cells_marked_by_shape_not_colour_alone(tmp_path):
    from hrm_data.render_png import draw_example, wrong_cells
    style = {"shape": (4, 4), "palette": PALETTE, "token_names": NAMES, "vocab_size": 5, "ignore_label_id": 0}
    label = np.full(16, 2)
    label[3] = 0                                   # ignored: never wrong
    pred = label.copy()
    pred[[5, 3]] = 3
    wrong = wrong_cells(label, pred, 0)
    assert np.flatnonzero(wrong).tolist() == [5]
    plain = np.asarray(draw_example([("p", pred)], style, cell=20))
    marked = np.asarray(draw_example([("p", pred)], style, wrong=wrong, cell=20))
    x0, y0 = 12, 12 + 20                           # margin, caption line (see draw_example)
    grid = (slice(y0, y0 + 81), slice(x0, x0 + 81))
    diff = np.argwhere((plain[grid] != marked[grid]).any(-1))
    assert len(diff)
    # every changed pixel lies in cell 5 (row 1, column 1), outline included
    assert (diff >= 20).all() and (diff <= 40).all()
    # the mark has both black and white pixels: visible on any cell colour, without hue
    cell = marked[y0 + 20:y0 + 41, x0 + 20:x0 + 41].reshape(-1, 3)
    assert (cell == 0).all(-1).any() and (cell == 255).all(-1).any()
    assert not (plain[y0 + 20:y0 + 41, x0 + 20:x0 + 41].reshape(-1, 3) == 255).all(-1).any()


def test_show_png_cli(tmp_path):
    from PIL import Image
    from hrm_data.cli import main
    d = make_grid_dataset(tmp_path / "d")
    r = CliRunner().invoke(main, ["show", str(d), "--index", "2", "--split", "test", "--png", str(tmp_path / "x.png")])
    assert r.exit_code == 0, r.output
    img = Image.open(tmp_path / "x.png")
    assert img.size[0] > 2 * 4 * 32 and img.mode == "RGB"
    r = CliRunner().invoke(main, ["show", str(d), "--png", str(tmp_path)])
    assert r.exit_code == 2 and "is a directory" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["show", str(d), "--index", "99", "--png", str(tmp_path / "y.png")])
    assert r.exit_code == 2 and "out of range" in r.output
    r = CliRunner().invoke(main, ["show", str(d), "--png", str(tmp_path / "nope" / "y.png")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_missing_viz_extra_is_one_line_exit_2(tmp_path, monkeypatch):
    from hrm_data.cli import main
    d = make_grid_dataset(tmp_path / "d")
    for mod in [m for m in sys.modules if m == "PIL" or m.startswith("PIL.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "PIL", None)   # import PIL now raises ImportError
    r = CliRunner().invoke(main, ["show", str(d), "--png", str(tmp_path / "x.png")])
    assert r.exit_code == 2, r.output
    assert "'viz' extra" in r.output and "pip install 'hrm-data[viz]'" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_cli_start_imports_no_plotting_or_heavy_module():
    code = ("import sys, hrm_data.cli\n"
            "heavy = ('PIL', 'matplotlib', 'selenium', 'torch', 'pyarrow', 'pandas')\n"
            "print([m for m in sys.modules if m.split('.')[0] in heavy])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_view_page_data_sample_and_no_network(tmp_path):
    from hrm_data.render_html import collect, write_page
    ds = Dataset(make_grid_dataset(tmp_path / "d", n_train=40, n_test=20))
    data = collect(ds, limit=12, seed=3)
    counts = {(c["split"], c["set"]): (c["total"], c["shown"]) for c in data["meta"]["counts"]}
    assert counts == {("train", "all"): (40, 8), ("test", "all"): (20, 4)}
    assert data == collect(ds, limit=12, seed=3)                 # same seed, same sample
    ex = data["examples"]
    assert set(ex) == {"split", "set", "index", "group", "puzzle", "identifier"} and len(ex["index"]) == 12
    assert (data["meta"]["rows"], data["meta"]["cols"]) == (4, 4)
    import base64
    tok = np.frombuffer(base64.b64decode(data["tokens"]["input"]), np.uint8).reshape(-1, 16)
    for k in (0, 9):
        arr = ds.split(ex["split"][k]).set("all")
        assert (tok[k] == np.asarray(arr.inputs[ex["index"][k]])).all()
    page = write_page(ds, tmp_path / "v.html", limit=12, seed=3).read_text()
    assert "<script src" not in page and "<link" not in page and "http://" not in page and "https://" not in page
    assert page == write_page(ds, tmp_path / "w.html", limit=12, seed=3).read_text()


def test_view_cli_errors(tmp_path):
    from hrm_data.cli import main
    d = make_grid_dataset(tmp_path / "d")
    r = CliRunner().invoke(main, ["view", str(d), "--html", str(tmp_path / "v.html"), "--predictions", str(tmp_path)])
    assert r.exit_code == 2 and "no predictions.parquet" in r.output
    r = CliRunner().invoke(main, ["view", str(d), "--html", str(tmp_path / "v.html"), "--limit", "5"])
    assert r.exit_code == 0 and "wrote" in r.output


def test_predictions_table_columns_and_values(tmp_path):
    import pandas as pd
    from hrm_data.predictions import predictions_table, write_predictions
    ds = Dataset(make_grid_dataset(tmp_path / "d"))
    labels = np.asarray(ds.test.set("all").labels)
    preds = labels.copy()
    preds[2, :4] = 1                              # the diagonal's 4 and any 2 or 3 there become wrong
    steps = {"all": {"steps": np.full(6, 3, np.int32), "halt_step": np.array([1, 2, 3, 3, 3, 3], np.int32),
                     "q_halt": np.linspace(-1, 1, 6).astype(np.float32)}}
    write_predictions(predictions_table(ds, {"all": preds}, per_example=steps), tmp_path)
    df = pd.read_parquet(tmp_path / "predictions.parquet")
    for c in ("set", "example", "group", "puzzle", "puzzle_identifier", "puzzle_name", "input", "label",
              "prediction", "correct", "token_accuracy", "steps", "halt_step", "q_halt"):
        assert c in df.columns
    assert df["correct"].tolist() == [True, True, False, True, True, True]
    n_wrong = int((labels[2] != preds[2]).sum())
    assert df["token_accuracy"][2] == pytest.approx(1 - n_wrong / 16)
    assert df["puzzle_name"].tolist() == ["a", "b"] * 3
    assert (np.stack(df["prediction"]) == preds).all() and (np.stack(df["input"]) == ds.test.set("all").inputs).all()
    assert df["halt_step"].tolist() == [1, 2, 3, 3, 3, 3]


def test_plot_series_from_metrics(tmp_path):
    """(The figure itself: tests/test_eval_cmd.py draws a real run's.)"""
    from hrm_data.plot import series
    runs = []
    for k in range(2):
        d = tmp_path / f"run{k}"
        d.mkdir()
        recs = [{"type": "train", "step": s, "loss": 2.0 / s, "lr": 1e-3, "steps": 2.0, "count": 4} for s in range(1, 21)]
        recs += [{"type": "eval", "step": s, "set": "all", "exact_accuracy": s / 40 + k / 10, "steps": 4.0,
                  "task": {"route_optimal": s / 50, "examples": 10}} for s in (10, 20)]
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs) + '{"cut by a kil')
        runs.append(str(d))
    from hrm_data.plot import read_metrics
    s = series(read_metrics(runs[1]))
    assert s["test/exact_accuracy"] == ([10, 20], [0.35, 0.6]) and s["task/route_optimal"][1] == [0.2, 0.4]
    assert "task/examples" not in s and len(s["train/loss"][0]) == 20
    from hrm_model.cli import main
    r = CliRunner().invoke(main, ["plot", str(tmp_path / "nothing"), "--png", str(tmp_path / "q.png")])
    assert r.exit_code == 2 and "no metrics.jsonl" in r.output


def test_several_test_sets_table_and_page(tmp_path):
    """A split with two sets (the format allows it): one table, one page, each set on its own."""
    import pandas as pd
    from hrm_data.format import write_arrays
    from hrm_data.predictions import predictions_table, write_predictions
    from hrm_data.render_html import collect
    rng = np.random.default_rng(0)
    arrays = {}
    for name, n in (("easy", 3), ("hard", 5)):
        x = rng.integers(1, 5, size=(n, 9)).astype(np.uint8)
        arrays[name] = {"inputs": x, "labels": x, "puzzle_identifiers": np.ones(n, np.int32),
                        "puzzle_indices": np.arange(n + 1, dtype=np.int32), "group_indices": np.arange(n + 1, dtype=np.int32)}
    over = {s: {"sets": ["easy", "hard"]} for s in ("train", "test")}
    for name in ("easy", "hard"):
        write_arrays(tmp_path / "d", {"train": arrays[name], "test": arrays[name]}, vocab_size=5,
                     identifiers=["<blank>", "p"], set_name=name, metadata_overrides=over)
    ds = Dataset(tmp_path / "d")
    preds = {k: np.asarray(ds.test.set(k).labels).copy() for k in ("easy", "hard")}
    preds["hard"][1, 0] = 0
    write_predictions(predictions_table(ds, preds), tmp_path)
    df = pd.read_parquet(tmp_path / "predictions.parquet")
    assert df["set"].tolist() == ["easy"] * 3 + ["hard"] * 5 and df["example"].tolist() == [0, 1, 2, 0, 1, 2, 3, 4]
    assert df["correct"].tolist() == [True] * 4 + [False] + [True] * 3
    data = collect(ds, df)
    assert [(c["set"], c["total"], c["wrong"]) for c in data["meta"]["counts"]] == [("easy", 3, 0), ("hard", 5, 1)]
    assert data["examples"]["correct"] == [True] * 4 + [False] + [True] * 3


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    from hrm_model.cli import main
    (tmp_path / "metrics.jsonl").write_text('{"type": "train", "step": 1, "loss": 1.0}\n')
    for mod in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    r = CliRunner().invoke(main, ["plot", str(tmp_path), "--png", str(tmp_path / "p.png")])
    assert r.exit_code == 2 and "pip install 'hrm-data[viz]'" in r.output and len(r.output.strip().splitlines()) == 1
