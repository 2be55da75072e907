"""Command glue for pictures (`show --png`, `view`, `hrm-train eval --png`, `hrm-train plot`):
turns missing extras and bad paths into one-line exit-2 errors."""
from __future__ import annotations

import os
from pathlib import Path

import click

from .extras import MissingExtra


class PictureInputError(click.ClickException):
    exit_code = 2


def _writable(path: str, option: str) -> None:
    p = Path(path)
    if p.is_dir():
        raise PictureInputError(f"{path}: is a folder; {option} takes a file name (e.g. {p / 'example.png'})")
    if not p.parent.is_dir():
        raise PictureInputError(f"{path}: folder {p.parent} does not exist; create it or choose another {option}")


def show_png(ds, split: str, index: int, set_name: str | None, png: str) -> None:
    from .format import FormatError
    from .render_png import example_png
    _writable(png, "--png")
    try:
        example_png(ds, split, index, png, set_name=set_name)
    except MissingExtra as e:
        raise PictureInputError(str(e)) from None
    except (FormatError, IndexError, KeyError) as e:
        raise PictureInputError(str(e).strip("'\"")) from None
    except OSError as e:
        raise PictureInputError(f"{png}: cannot write ({e.strerror or e}); choose another --png") from None


def view(ds, html_out: str, predictions: str | None, limit: int, seed: int) -> str:
    from .predictions import read_predictions
    from .render_html import write_page
    _writable(html_out, "--html")
    preds = None
    if predictions is not None:
        try:
            preds = read_predictions(predictions)
        except (FileNotFoundError, ValueError) as e:
            raise PictureInputError(str(e)) from None
        missing = [c for c in ("set", "example", "prediction", "correct") if c not in preds.columns]
        if missing:
            raise PictureInputError(f"{predictions}: predictions table lacks columns {', '.join(missing)}; "
                                    "write it again with `hrm-train eval RUN`")
        n_test = {s: ds.test.set(s).num_examples for s in ds.test.metadata.sets} if ds.has_split("test") else {}
        for s, g in preds.groupby(preds["set"].astype(str)):
            if s not in n_test or len(g) != n_test[s] or len(g["prediction"].iloc[0]) != ds.test.metadata.seq_len:
                raise PictureInputError(f"{predictions}: predictions for set {s!r} do not match the test split of "
                                        f"{ds.path}; pass the dataset the run was evaluated on")
    try:
        out = write_page(ds, html_out, preds, limit=limit, seed=seed)
    except ValueError as e:
        raise PictureInputError(f"{ds.path}: {e}") from None
    except OSError as e:
        raise PictureInputError(f"{html_out}: cannot write ({e.strerror or e}); choose another --html") from None
    return f"wrote {out} ({os.path.getsize(out) / 1e6:.2f} MB)"
