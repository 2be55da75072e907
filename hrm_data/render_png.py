"""PNG pictures of examples (Pillow, the ``viz`` extra): grids in the dataset's own palette.

Everything comes from dataset metadata (``render.grid_style``), so every builder's data draws
the same way. Cells are at least 6 px with 1 px grid lines (a 30 x 30 map: 16 px cells); wrong
cells are marked by shape, not colour alone: a black-and-white double outline and a cross in
the contrasting colour, readable with any colour vision.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .extras import need

GRID_LINE = (128, 128, 128)
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
TARGET_PX = 480          # a panel's longer side, before clamping the cell size
CELL_MIN, CELL_MAX = 6, 32


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _dark(rgb) -> bool:
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b < 140


def layout(shape: tuple[int, int]) -> tuple[int, int]:
    """Rows and columns to draw: a long 1 x N sequence wraps into a near-square block."""
    h, w = shape
    if h == 1 and w > 64:
        cols = math.ceil(math.sqrt(w))
        return math.ceil(w / cols), cols
    return h, w


def cell_size(shape: tuple[int, int], cell: int | None = None) -> int:
    h, w = layout(shape)
    return int(cell) if cell else max(CELL_MIN, min(CELL_MAX, TARGET_PX // max(h, w, 1)))


def _font(size: int):
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def grid_pixels(tokens: np.ndarray, style: dict, cell: int) -> np.ndarray:
    """(H*cell+1, W*cell+1, 3) uint8: one grid with 1 px lines, built with numpy (no per-cell loop)."""
    rows, cols = layout(style["shape"])
    t = np.asarray(tokens).reshape(-1).astype(np.int64)
    pal = np.array([_rgb(c) for c in style["palette"]] + [BACKGROUND], np.uint8)
    t = np.where((t >= 0) & (t < len(pal) - 1), t, len(pal) - 1)     # out-of-vocabulary: blank
    full = np.full(rows * cols, len(pal) - 1, np.int64)
    full[:t.size] = t[:rows * cols]
    img = pal[full.reshape(rows, cols)]
    img = np.repeat(np.repeat(img, cell, axis=0), cell, axis=1)
    out = np.empty((rows * cell + 1, cols * cell + 1, 3), np.uint8)
    out[:-1, :-1] = img
    out[::cell, :] = GRID_LINE
    out[:, ::cell] = GRID_LINE
    return out


def draw_example(panels: Sequence[tuple[str, np.ndarray]], style: dict, *, wrong: np.ndarray | None = None,
                 title: str = "", cell: int | None = None):
    """Panels (caption, tokens) side by side, a title, and a legend of the tokens shown.

    ``wrong``: a boolean mask over the sequence, marked on the last panel (the prediction)."""
    Image = need("PIL.Image", package="Pillow")
    from PIL import ImageDraw

    c = cell_size(style["shape"], cell)
    rows, cols = layout(style["shape"])
    gw, gh = cols * c + 1, rows * c + 1
    font, small = _font(14), _font(12)
    pad, gap, head = 12, 16, (18 * (title.count("\n") + 1) + 6) if title else 0
    caption_h = 20
    used = sorted({int(v) for _, t in panels for v in np.unique(np.asarray(t))
                   if 0 <= int(v) < style["vocab_size"]})
    n_wrong = int(np.asarray(wrong).sum()) if wrong is not None else 0
    entries = [(style["palette"][v], f"{v} {style['token_names'][v]}", False) for v in used]
    if wrong is not None:
        entries.append(("#ffffff", "wrong cell", True))
    title_w = max((int(font.getlength(line)) for line in title.split("\n")), default=0)
    width = max(pad * 2 + len(panels) * gw + (len(panels) - 1) * gap, pad * 2 + title_w, 360)
    sw, col_w = 14, 150
    per_row = max(1, (width - 2 * pad) // col_w)
    legend_h = math.ceil(len(entries) / per_row) * (sw + 6) + 8
    height = pad + head + caption_h + gh + 10 + legend_h + pad
    img = Image.new("RGB", (width, height), BACKGROUND)
    d = ImageDraw.Draw(img)
    if title:
        d.multiline_text((pad, pad), title, fill=TEXT, font=font, spacing=4)
    y0 = pad + head + caption_h
    for k, (caption, tokens) in enumerate(panels):
        x0 = pad + k * (gw + gap)
        d.text((x0, pad + head), caption, fill=TEXT, font=font)
        img.paste(Image.fromarray(grid_pixels(tokens, style, c)), (x0, y0))
        if wrong is not None and k == len(panels) - 1:
            _mark_wrong(d, np.asarray(wrong).reshape(-1), np.asarray(tokens).reshape(-1), style, x0, y0, c, cols)
    ly = y0 + gh + 10
    for i, (colour, name, cross) in enumerate(entries):
        x = pad + (i % per_row) * col_w
        y = ly + (i // per_row) * (sw + 6)
        d.rectangle([x, y, x + sw, y + sw], fill=_rgb(colour), outline=GRID_LINE)
        if cross:
            _cross(d, x, y, sw + 1, (255, 255, 255))
        d.text((x + sw + 5, y), name if len(name) <= 20 else name[:19] + "…", fill=TEXT, font=small)
    return img


def _cross(d, x: int, y: int, c: int, under) -> None:
    """Double outline (black outside, white inside) and a cross contrasting with the cell colour."""
    fg = (255, 255, 255) if _dark(under) else (0, 0, 0)
    lw = max(1, c // 10)
    d.rectangle([x, y, x + c, y + c], outline=(0, 0, 0), width=lw)
    if c >= 8:
        d.rectangle([x + lw, y + lw, x + c - lw, y + c - lw], outline=(255, 255, 255), width=1)
    m = lw + max(2, c // 6)
    d.line([x + m, y + m, x + c - m, y + c - m], fill=fg, width=max(1, c // 14))
    d.line([x + m, y + c - m, x + c - m, y + m], fill=fg, width=max(1, c // 14))


def _mark_wrong(d, wrong: np.ndarray, tokens: np.ndarray, style: dict, x0: int, y0: int, c: int, cols: int) -> None:
    pal = style["palette"]
    for i in np.flatnonzero(wrong):
        v = int(tokens[i]) if i < tokens.size else -1
        under = _rgb(pal[v]) if 0 <= v < len(pal) else BACKGROUND
        _cross(d, x0 + (i % cols) * c, y0 + (i // cols) * c, c, under)


def wrong_cells(label: np.ndarray, pred: np.ndarray, ignore_label_id: int | None) -> np.ndarray:
    """Labelled cells the prediction got wrong (the cells HRM's accuracy counts)."""
    label, pred = np.asarray(label), np.asarray(pred)
    mask = label != ignore_label_id if ignore_label_id is not None else np.ones(label.shape, bool)
    return mask & (pred != label)


def save_png(img, path: str | os.PathLike) -> Path:
    """Write atomically (temp file, then rename), so an interrupted write leaves no half picture."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        img.save(tmp, format="PNG", optimize=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def example_png(ds, split: str, index: int, path: str | os.PathLike, *, set_name: str | None = None,
                prediction: np.ndarray | None = None, cell: int | None = None) -> Path:
    """`hrm-data show --png`: input and label (and a prediction, wrong cells marked) of one example."""
    from .render import example_title, grid_style
    sp = ds.split(split)
    set_name = set_name or sp.metadata.sets[0]
    if set_name not in sp.metadata.sets:
        raise KeyError(f"{sp.path}: no set '{set_name}' (sets: {', '.join(sp.metadata.sets)})")
    arr = sp.set(set_name)
    if not 0 <= index < arr.num_examples:
        raise IndexError(f"{sp.path}: --index {index} out of range; this split has {arr.num_examples} "
                         f"examples (0..{arr.num_examples - 1})")
    style = grid_style(sp.metadata)
    x, y = np.asarray(arr.inputs[index]), np.asarray(arr.labels[index])
    panels = [("input", x), ("label", y)]
    wrong = None
    if prediction is not None:
        wrong = wrong_cells(y, prediction, style["ignore_label_id"])
        panels.append((f"prediction: {int(wrong.sum())} wrong", np.asarray(prediction)))
    img = draw_example(panels, style, wrong=wrong, title=example_title(ds, split, set_name, index), cell=cell)
    return save_png(img, path)
