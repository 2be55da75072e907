"""Text pictures of examples for `hrm-data show`; colours come from the dataset's own palette.

Builders put ``grid_shape``, ``token_names`` and ``palette`` ("#rrggbb" per token) into
dataset.json; without them a sequence is drawn as a square-ish grid of token numbers.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

GLYPHS = ".#abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def grid_shape_for(seq_len: int, meta_shape: Sequence[int] | None) -> tuple[int, int]:
    if meta_shape and int(meta_shape[0]) * int(meta_shape[1]) == seq_len:
        return int(meta_shape[0]), int(meta_shape[1])
    side = int(math.isqrt(seq_len))
    if side * side == seq_len:
        return side, side
    return 1, seq_len


def _ansi_bg(hex_colour: str) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
    fg = 30 if (0.299 * r + 0.587 * g + 0.114 * b) > 140 else 97
    return f"\x1b[{fg};48;2;{r};{g};{b}m"


def render_grid(tokens: np.ndarray, shape: tuple[int, int], glyphs: Sequence[str] | None = None,
                palette: Sequence[str] | None = None, color: bool = False, ignore_label_id: int | None = None) -> str:
    """One grid as text, two characters per cell; ignored labels show as blanks."""
    t = np.asarray(tokens).reshape(shape)
    width = max(1, max((len(g) for g in glyphs), default=1)) if glyphs else len(str(int(t.max(initial=0))))
    lines = []
    for row in t:
        cells = []
        for v in row.tolist():
            if ignore_label_id is not None and v == ignore_label_id:
                cells.append(" " * width)
                continue
            s = glyphs[v] if glyphs and v < len(glyphs) else str(v)
            s = s.rjust(width)
            if color and palette and v < len(palette):
                s = f"{_ansi_bg(palette[v])}{s}\x1b[0m"
            cells.append(s)
        lines.append(" ".join(cells) if not (color and palette) else "".join(cells))
    return "\n".join(lines)


def token_glyphs(token_names: Sequence[str] | None, vocab_size: int, glyphs: Sequence[str] | None = None) -> list[str]:
    """One distinct short glyph per token: the dataset's own, else the first letter of the name
    where still free, else the next free character."""
    if glyphs and len(glyphs) >= vocab_size:
        return [str(g) for g in glyphs[:vocab_size]]
    if not token_names:
        return [str(i) for i in range(vocab_size)]
    out: list[str] = []
    used: set[str] = set()
    spare = iter(c for c in GLYPHS + "!@$%&*+=?<>^~" if c)
    for name in token_names:
        g = next((c for c in (name[:1], name[:1].upper()) if c and c not in used), None)
        while g is None or g in used:
            g = next(spare)
        used.add(g)
        out.append(g)
    return out


def describe_example(ds, split: str, index: int, set_name: str | None = None, color: bool = False) -> str:
    sp = ds.split(split)
    meta = sp.metadata
    set_name = set_name or meta.sets[0]
    if set_name not in meta.sets:
        raise KeyError(f"{sp.path}: no set '{set_name}' (sets: {', '.join(meta.sets)})")
    arr = sp.set(set_name)
    if not 0 <= index < arr.num_examples:
        raise IndexError(f"{sp.path}: --index {index} out of range; this split has {arr.num_examples} examples (0..{arr.num_examples - 1})")
    pi = np.asarray(arr.puzzle_indices)
    puzzle = int(np.searchsorted(pi, index, side="right") - 1)
    group = int(np.searchsorted(np.asarray(arr.group_indices), puzzle, side="right") - 1)
    ident = int(arr.puzzle_identifiers[puzzle])
    names = ds.identifiers
    ident_name = names[ident] if 0 <= ident < len(names) else f"<id {ident} not in identifiers.json>"
    shape = grid_shape_for(meta.seq_len, meta.extra.get("grid_shape"))
    token_names = meta.extra.get("token_names")
    glyphs = token_glyphs(token_names, meta.vocab_size, meta.extra.get("glyphs"))
    palette = meta.extra.get("palette")
    head = (f"{split} example {index}  puzzle {puzzle}  group {group}  identifier {ident} ({ident_name})\n"
            f"set {set_name}  grid {shape[0]}x{shape[1]}")
    parts = [head, "input:", render_grid(arr.inputs[index], shape, glyphs, palette, color),
             "label:", render_grid(arr.labels[index], shape, glyphs, palette, color, meta.ignore_label_id)]
    if token_names:
        legend = "  ".join(f"{g}={n}" for g, n in zip(glyphs, token_names))
        parts.append(f"tokens: {legend}")
    table = sp.side_table()
    if table is not None and "example" in table.columns:
        row = table[table["example"] == index]
        if len(row):
            info = {k: v for k, v in row.iloc[0].to_dict().items() if k != "example"}
            parts.append("info: " + "  ".join(f"{k}={v}" for k, v in info.items()))
    return "\n".join(parts)
