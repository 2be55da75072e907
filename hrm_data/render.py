"""Text pictures of examples for `hrm-data show`; colours come from the dataset's own palette.

Builders put ``grid_shape``, ``token_names`` and ``palette`` ("#rrggbb" per token) into
dataset.json; without them a sequence is drawn as a square-ish grid of token numbers.
"""
from __future__ import annotations

import math
import re
from typing import Sequence

import numpy as np

GLYPHS = ".#abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def _str_list(v, pattern: str | None = None) -> list[str] | None:
    """A dataset.json rendering key if it is a list of strings (matching ``pattern``), else None:
    hand-edited or foreign metadata must not stop `show` from drawing the example."""
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        if pattern is None or all(re.fullmatch(pattern, x) for x in v):
            return v
    return None


def grid_shape_for(seq_len: int, meta_shape: Sequence[int] | None) -> tuple[int, int]:
    if (isinstance(meta_shape, (list, tuple)) and len(meta_shape) == 2
            and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in meta_shape)
            and meta_shape[0] * meta_shape[1] == seq_len):
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
    if not token_names:  # numbers; a huge vocabulary is numbered on the fly by render_grid
        return [str(i) for i in range(vocab_size)] if vocab_size <= 4096 else None
    out: list[str] = []
    used: set[str] = set()
    spare = iter(c for c in GLYPHS + "!@$%&*+=?<>^~" if c)
    for name in token_names:
        g = next((c for c in (name[:1], name[:1].upper()) if c and c not in used), None)
        while g is None or g in used:
            g = next(spare, None)
            if g is None:  # more tokens than short glyphs: number the rest
                g = str(len(out))
                break
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
    token_names = _str_list(meta.extra.get("token_names"))
    glyphs = token_glyphs(token_names, meta.vocab_size, _str_list(meta.extra.get("glyphs")))
    palette = _str_list(meta.extra.get("palette"), r"#[0-9a-fA-F]{6}")
    head = (f"{split} example {index}  puzzle {puzzle}  group {group}  identifier {ident} ({ident_name})\n"
            f"set {set_name}  grid {shape[0]}x{shape[1]}")
    parts = [head, "input:", render_grid(arr.inputs[index], shape, glyphs, palette, color),
             "label:", render_grid(arr.labels[index], shape, glyphs, palette, color, meta.ignore_label_id)]
    if token_names:
        legend = "  ".join(f"{g}={n}" for g, n in zip(glyphs, token_names))
        parts.append(f"tokens: {legend}")
    try:  # the side table is optional: a broken one must not hide the example
        table = sp.side_table()
        if table is not None and "example" in table.columns:
            row = table[table["example"] == index]
            if len(row):
                info = {k: v for k, v in row.iloc[0].to_dict().items() if k != "example"}
                parts.append("info: " + "  ".join(f"{k}={v}" for k, v in info.items()))
    except Exception as e:  # noqa: BLE001
        parts.append(f"info: (examples.parquet not shown: {' '.join(str(e).split())[:200]})")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- shared by PNG and HTML

# Okabe-Ito then Paul Tol's muted scheme: distinguishable with the common colour-vision deficiencies.
FALLBACK_PALETTE = ("#ffffff", "#000000", "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00",
                    "#cc79a7", "#999999", "#332288", "#88ccee", "#44aa99", "#117733", "#999933", "#ddcc77",
                    "#cc6677", "#882255", "#aa4499", "#dddddd")


def _fallback_colour(i: int) -> str:
    if i < len(FALLBACK_PALETTE):
        return FALLBACK_PALETTE[i]
    import colorsys
    h = (i * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.45 + 0.4 * ((i // 7) % 2), 0.65 + 0.3 * ((i // 3) % 2))
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def grid_style(meta) -> dict:
    """What every picture of a dataset needs, from its metadata alone (so any builder plugs in):
    grid shape, one colour and one name per token, the ignored label id."""
    extra = meta.extra or {}
    V = int(meta.vocab_size)
    palette = [str(c) for c in (extra.get("palette") or [])][:V]
    palette += [_fallback_colour(i) for i in range(len(palette), V)]
    names = [str(n) for n in (extra.get("token_names") or [])][:V]
    names += [str(i) for i in range(len(names), V)]
    return {"shape": grid_shape_for(meta.seq_len, extra.get("grid_shape")), "palette": palette,
            "token_names": names, "ignore_label_id": meta.ignore_label_id, "vocab_size": V}


def example_title(ds, split: str, set_name: str, index: int) -> str:
    """'test example 3  puzzle 3  group 0  identifier 2 (car)' for picture headers."""
    arr = ds.split(split).set(set_name)
    pi = np.asarray(arr.puzzle_indices)
    puzzle = int(np.searchsorted(pi, index, side="right") - 1)
    group = int(np.searchsorted(np.asarray(arr.group_indices), puzzle, side="right") - 1)
    ident = int(arr.puzzle_identifiers[puzzle])
    names = ds.identifiers
    name = names[ident] if 0 <= ident < len(names) else "?"
    return f"{split} example {index}  puzzle {puzzle}  group {group}  identifier {ident} ({name})"
