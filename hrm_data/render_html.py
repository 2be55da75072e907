"""`hrm-data view`: one self-contained HTML page to browse a dataset or a run's predictions.

No server, no network: the examples are embedded as base64 token arrays (one byte per token
when the vocabulary fits) plus a small JSON index, drawn on canvases in the dataset's own
palette (``render.grid_style``). Large datasets are sampled (seeded, ``limit`` examples in all,
spread over split / set in proportion) and the page says so with the full counts.
"""
from __future__ import annotations

import base64
import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .predictions import BASE_COLUMNS, example_index
from .render import grid_style
from .render_png import layout

DEFAULT_LIMIT = 3000


def _sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    if k >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=k, replace=False))


def _quota(sizes: list[int], limit: int) -> list[int]:
    """Share ``limit`` over parts in proportion to their sizes (each part at least 1 if non-empty)."""
    total = sum(sizes)
    if total <= limit:
        return sizes
    q = [min(s, max(1 if s else 0, int(limit * s / total))) for s in sizes]
    return q


def collect(ds, predictions=None, limit: int = DEFAULT_LIMIT, seed: int = 0) -> dict[str, Any]:
    """The page's data: {meta, examples (columnar), tokens (base64)}. ``predictions``: a DataFrame
    from predictions.parquet (then only the examples it covers, i.e. the test split)."""
    rng = np.random.default_rng(seed)
    parts: list[tuple[str, str, int]] = []
    for split in ("train", "test"):
        if not ds.has_split(split):
            continue
        sp = ds.split(split)
        for set_name in sp.metadata.sets:
            if predictions is not None:
                if split != "test":
                    continue
                n = int((predictions["set"].astype(str) == set_name).sum())
            else:
                n = sp.set(set_name).num_examples
            parts.append((split, set_name, n))
    if not parts and predictions is None:
        raise ValueError("not an HRM dataset (no train/dataset.json or test/dataset.json)")
    if not parts:
        raise ValueError("nothing to show: the predictions cover no set of this dataset's test split")
    quotas = _quota([n for _, _, n in parts], limit)
    meta0 = ds.split(parts[0][0]).metadata
    style = grid_style(meta0)
    dtype = np.uint8 if style["vocab_size"] <= 255 else np.dtype("<u2")
    cols: dict[str, list] = {k: [] for k in ("split", "set", "index", "group", "puzzle", "identifier")}
    inputs, labels, preds = [], [], []
    extra_cols: list[str] = []
    if predictions is not None:
        extra_cols = [c for c in predictions.columns if c not in BASE_COLUMNS or c in
                      ("correct", "token_accuracy", "steps", "halt_step", "q_halt")]
        for c in extra_cols:
            cols[c] = []
    counts = []
    names = list(ds.identifiers)
    for (split, set_name, n), k in zip(parts, quotas):
        arr = ds.split(split).set(set_name)
        pick = _sample(n, k, rng)
        info = {"split": split, "set": set_name, "total": n, "shown": int(len(pick))}
        if predictions is not None:
            sub = predictions[predictions["set"].astype(str) == set_name].sort_values("example")
            rows = sub.iloc[pick]
            idx = rows["example"].to_numpy(np.int64)
            info["wrong"] = int((~sub["correct"].astype(bool)).sum())
            preds.append(np.stack(rows["prediction"].to_numpy()).astype(dtype) if len(rows) else
                         np.zeros((0, meta0.seq_len), dtype))
            for c in extra_cols:
                v = rows[c].to_numpy()
                cols[c].extend(_plain(x) for x in v)
        else:
            idx = pick
        counts.append(info)
        puzzle, group = example_index(arr)
        ident = np.asarray(arr.puzzle_identifiers)[puzzle[idx]] if len(idx) else np.zeros(0, np.int64)
        inputs.append(np.asarray(arr.inputs)[idx].astype(dtype))
        labels.append(np.asarray(arr.labels)[idx].astype(dtype))
        cols["split"].extend([split] * len(idx))
        cols["set"].extend([set_name] * len(idx))
        cols["index"].extend(int(i) for i in idx)
        cols["group"].extend(int(g) for g in group[idx])
        cols["puzzle"].extend(int(p) for p in puzzle[idx])
        cols["identifier"].extend(names[int(i)] if 0 <= int(i) < len(names) else str(int(i)) for i in ident)

    n_rows, n_cols = layout(style["shape"])   # as the PNGs: a long 1 x N sequence wraps into a block

    def b64(chunks):
        return base64.b64encode(np.concatenate(chunks).tobytes()).decode("ascii") if chunks else ""

    return {
        "meta": {"path": str(ds.path), "seq_len": int(meta0.seq_len), "rows": n_rows, "cols": n_cols, "palette": style["palette"], "token_names": style["token_names"],
                 "ignore_label_id": style["ignore_label_id"], "bytes": int(np.dtype(dtype).itemsize),
                 "counts": counts, "limit": int(limit), "seed": int(seed),
                 "has_predictions": predictions is not None, "fields": extra_cols},
        "examples": cols,
        "tokens": {"input": b64(inputs), "label": b64(labels), "prediction": b64(preds)},
    }


def _plain(x):
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else round(float(x), 6)
    return None if x is None else str(x)


def page(data: dict[str, Any], title: str) -> str:
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return (_TEMPLATE.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload))


def write_page(ds, out: str | os.PathLike, predictions=None, limit: int = DEFAULT_LIMIT, seed: int = 0,
               title: str | None = None) -> Path:
    text = page(collect(ds, predictions, limit=limit, seed=seed), title or f"hrm-data view: {ds.path}")
    out = Path(out)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
h1{font-size:17px;margin:0 0 6px}
#bar{display:flex;flex-wrap:wrap;gap:10px;align-items:center;margin:8px 0;padding:8px;background:#fff;border:1px solid #ddd;border-radius:6px}
#bar label{display:flex;gap:4px;align-items:center}
#panels{display:flex;flex-wrap:wrap;gap:18px;margin-top:8px}
.panel figcaption{font-weight:600;margin-bottom:4px}
canvas{image-rendering:pixelated;border:1px solid #888;background:#fff}
#info{margin:6px 0;font-family:ui-monospace,monospace;white-space:pre-wrap}
#legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin-top:10px;font-size:12px}
#legend span.sw{display:inline-block;width:13px;height:13px;border:1px solid #888;vertical-align:-2px;margin-right:4px}
#counts{color:#555;font-size:13px}
.bad{color:#a00}.good{color:#064}
kbd{border:1px solid #bbb;border-radius:3px;padding:0 3px;background:#fff;font-size:12px}
</style></head><body>
<h1>__TITLE__</h1>
<div id="counts"></div>
<div id="bar">
 <label>split <select id="split"></select></label>
 <label>set <select id="set"></select></label>
 <label id="filter-box">show <select id="filter"><option value="all">all</option><option value="correct">correct only</option><option value="wrong">wrong only</option></select></label>
 <button id="prev" title="previous (←, k)">&larr;</button>
 <span id="pos"></span>
 <button id="next" title="next (→, j)">&rarr;</button>
 <label>go to example <input id="goto" type="number" min="0" style="width:6em"></label>
 <span style="color:#666;font-size:12px"><kbd>←</kbd><kbd>→</kbd> example, <kbd>Shift</kbd>+arrow group, <kbd>w</kbd> wrong only</span>
</div>
<div id="info"></div>
<div id="panels"></div>
<div id="legend"></div>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const M = D.meta, E = D.examples, N = E.index.length, S = M.seq_len;
function decode(b64) {
  if (!b64) return null;
  const s = atob(b64), u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i);
  return M.bytes === 1 ? u : new Uint16Array(u.buffer);
}
const T = {input: decode(D.tokens.input), label: decode(D.tokens.label), prediction: decode(D.tokens.prediction)};
const $ = id => document.getElementById(id);
let view = [], pos = 0;
function options(sel, values) { sel.innerHTML = ""; for (const v of values) { const o = document.createElement("option"); o.value = o.textContent = v; sel.appendChild(o); } }
const splits = [...new Set(E.split)];
options($("split"), splits);
function setsOf(split) { return [...new Set(E.set.filter((_, i) => E.split[i] === split))]; }
function refreshSets() { options($("set"), setsOf($("split").value)); }
if (!M.has_predictions) $("filter-box").style.display = "none";
function rebuild(keepIndex) {
  const sp = $("split").value, st = $("set").value, f = $("filter").value;
  view = [];
  for (let i = 0; i < N; i++) {
    if (E.split[i] !== sp || E.set[i] !== st) continue;
    if (M.has_predictions && f !== "all" && (E.correct[i] === true) !== (f === "correct")) continue;
    view.push(i);
  }
  pos = 0;
  if (keepIndex !== undefined) { const k = view.findIndex(i => E.index[i] >= keepIndex); pos = k < 0 ? Math.max(0, view.length - 1) : k; }
  show();
}
function cellPx() { return Math.max(6, Math.min(32, Math.floor(480 / Math.max(M.rows, M.cols)))); }
function draw(canvas, tokens, off, wrong) {
  const c = cellPx(), R = M.rows, C = M.cols;
  canvas.width = C * c + 1; canvas.height = R * c + 1;
  const g = canvas.getContext("2d");
  g.fillStyle = "#fff"; g.fillRect(0, 0, canvas.width, canvas.height);
  for (let k = 0; k < S; k++) {
    const v = tokens[off + k], x = (k % C) * c, y = Math.floor(k / C) * c;
    g.fillStyle = M.palette[v] || "#fff"; g.fillRect(x, y, c, c);
  }
  g.strokeStyle = "#808080"; g.lineWidth = 1; g.beginPath();
  for (let r = 0; r <= R; r++) { g.moveTo(0, r * c + 0.5); g.lineTo(C * c + 1, r * c + 0.5); }
  for (let q = 0; q <= C; q++) { g.moveTo(q * c + 0.5, 0); g.lineTo(q * c + 0.5, R * c + 1); }
  g.stroke();
  if (!wrong) return;
  for (const k of wrong) {  // shape, not colour alone: double outline and a contrasting cross
    const x = (k % C) * c, y = Math.floor(k / C) * c, lw = Math.max(1, Math.floor(c / 10)), m = lw + Math.max(2, Math.floor(c / 6));
    g.lineWidth = lw; g.strokeStyle = "#000"; g.strokeRect(x + lw / 2, y + lw / 2, c - lw, c - lw);
    g.lineWidth = 1; g.strokeStyle = "#fff"; g.strokeRect(x + lw + 0.5, y + lw + 0.5, c - 2 * lw - 1, c - 2 * lw - 1);
    g.lineWidth = Math.max(1, Math.floor(c / 14)); g.strokeStyle = dark(M.palette[tokens[off + k]] || "#fff") ? "#fff" : "#000";
    g.beginPath(); g.moveTo(x + m, y + m); g.lineTo(x + c - m, y + c - m);
    g.moveTo(x + m, y + c - m); g.lineTo(x + c - m, y + m); g.stroke();
  }
}
function dark(h) { const r = parseInt(h.substr(1, 2), 16), g = parseInt(h.substr(3, 2), 16), b = parseInt(h.substr(5, 2), 16); return 0.299 * r + 0.587 * g + 0.114 * b < 140; }
function panel(caption, tokens, off, wrong) {
  const f = document.createElement("figure"); f.className = "panel"; f.style.margin = "0";
  const cap = document.createElement("figcaption"); cap.textContent = caption; f.appendChild(cap);
  const cv = document.createElement("canvas"); cv.dataset.kind = caption.split(":")[0]; draw(cv, tokens, off, wrong); f.appendChild(cv);
  return f;
}
function fmt(v) { return v === null || v === undefined ? "-" : typeof v === "number" && !Number.isInteger(v) ? v.toFixed(4) : String(v); }
function show() {
  const P = $("panels"); P.innerHTML = ""; $("legend").innerHTML = "";
  $("pos").textContent = view.length ? (pos + 1) + " / " + view.length : "0 / 0";
  if (!view.length) { $("info").textContent = "no example matches this filter"; $("info").dataset.index = ""; return; }
  const i = view[pos], off = i * S;
  const ign = M.ignore_label_id;
  let wrong = null;
  if (M.has_predictions) {
    wrong = [];
    for (let k = 0; k < S; k++) { const l = T.label[off + k]; if (l !== ign && T.prediction[off + k] !== l) wrong.push(k); }
  }
  const lines = [E.split[i] + " example " + E.index[i] + "   puzzle " + E.puzzle[i] + "   group " + E.group[i] + "   identifier " + E.identifier[i] + "   set " + E.set[i]];
  if (M.has_predictions) lines.push(M.fields.map(f => f + " " + fmt(E[f][i])).join("   "));
  $("info").textContent = lines.join("\n");
  $("info").dataset.index = E.index[i];
  $("info").dataset.correct = M.has_predictions ? String(E.correct[i]) : "";
  P.appendChild(panel("input", T.input, off));
  P.appendChild(panel("label", T.label, off));
  if (M.has_predictions) P.appendChild(panel("prediction: " + wrong.length + " wrong", T.prediction, off, wrong));
  const used = new Set();
  for (const k of ["input", "label", "prediction"]) if (T[k]) for (let q = 0; q < S; q++) used.add(T[k][off + q]);
  for (const v of [...used].sort((a, b) => a - b)) {
    const s = document.createElement("span");
    s.innerHTML = '<span class="sw"></span>'; s.firstChild.style.background = M.palette[v] || "#fff";
    s.appendChild(document.createTextNode(v + " " + (M.token_names[v] || v))); $("legend").appendChild(s);
  }
  if (M.has_predictions) { const s = document.createElement("span"); s.textContent = "\u2612 crossed, outlined cell: prediction differs from the label"; $("legend").appendChild(s); }
}
function move(d) { if (!view.length) return; pos = Math.max(0, Math.min(view.length - 1, pos + d)); show(); }
function moveGroup(d) {
  if (!view.length) return; const g = E.group[view[pos]]; let p = pos;
  while (p + d >= 0 && p + d < view.length && E.group[view[p]] === g) p += d;
  if (d < 0) { const g2 = E.group[view[p]]; while (p - 1 >= 0 && E.group[view[p - 1]] === g2) p--; }
  pos = p; show();
}
$("split").onchange = () => { refreshSets(); rebuild(); };
$("set").onchange = () => rebuild();
$("filter").onchange = () => rebuild();
$("prev").onclick = () => move(-1);
$("next").onclick = () => move(1);
$("goto").onchange = () => rebuild(parseInt($("goto").value || "0", 10));
document.addEventListener("keydown", ev => {
  if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT") return;
  if (ev.key === "ArrowRight" || ev.key === "j") { ev.shiftKey ? moveGroup(1) : move(1); ev.preventDefault(); }
  else if (ev.key === "ArrowLeft" || ev.key === "k") { ev.shiftKey ? moveGroup(-1) : move(-1); ev.preventDefault(); }
  else if (ev.key === "Home") { pos = 0; show(); }
  else if (ev.key === "End") { pos = Math.max(0, view.length - 1); show(); }
  else if (ev.key === "w" && M.has_predictions) { $("filter").value = $("filter").value === "wrong" ? "all" : "wrong"; rebuild(); }
});
$("counts").textContent = M.counts.map(c => c.split + "/" + c.set + ": " + c.total + " examples" +
  (c.shown < c.total ? " (showing a sample of " + c.shown + ", seed " + M.seed + ", --limit " + M.limit + ")" : "") +
  (c.wrong !== undefined ? ", " + c.wrong + " wrong, " + (c.total - c.wrong) + " correct" : "")).join("; ");
refreshSets(); rebuild();
</script></body></html>
"""
