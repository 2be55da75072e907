"""The builder plugin interface and the one function that runs a builder into a dataset.

A builder describes its data (``info``) and yields groups (``groups``); ``build`` does the rest:
the writer, identifiers, metadata, provenance, atomic commit, progress bar. See docs/plugins.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .format import PROVENANCE_KEY, DatasetWriter, Group, GroupBatch, Puzzle  # noqa: F401  (re-exported for plugins)

__all__ = ["Option", "Info", "Builder", "Group", "GroupBatch", "Puzzle", "build"]


@dataclass(frozen=True)
class Option:
    """One builder option; becomes ``--name`` on ``hrm-data build BUILDER``."""

    name: str              # python name, e.g. "train_scenarios" -> --train-scenarios
    default: Any
    help: str
    type: Any = None       # click type or Python type; inferred from default when None
    choices: Sequence[str] | None = None
    recorded: bool = True  # False: does not change the output (e.g. workers), so not in dataset.json


@dataclass
class Info:
    """What the writer and renderers need to know before the first group."""

    vocab_size: int
    seq_len: int
    pad_id: int = 0
    ignore_label_id: int | None = 0
    identifiers: Sequence[str] = ()          # known identifier names, in id order after "<blank>"
    grid_shape: tuple[int, int] | None = None
    token_names: Sequence[str] | None = None
    palette: Sequence[str] | None = None     # one "#rrggbb" per token, for show/render
    glyphs: Sequence[str] | None = None      # one short distinct string per token, for text grids
    extra: dict[str, Any] = field(default_factory=dict)

    def render_metadata(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.grid_shape is not None:
            d["grid_shape"] = list(self.grid_shape)
        if self.token_names is not None:
            d["token_names"] = list(self.token_names)
        if self.palette is not None:
            d["palette"] = list(self.palette)
        if self.glyphs is not None:
            d["glyphs"] = list(self.glyphs)
        return d


class Builder:
    """Subclass, set the class attributes, implement ``info`` and ``groups``.

    ``check`` (domain validity, used by ``validate --deep``) and ``score`` (the task metric,
    used by evaluation) are optional.
    """

    name: str = ""
    description: str = ""
    default_out: str = ""        # e.g. "data/city"
    version: str = "1"
    options: Sequence[Option] = ()

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options}

    def info(self, options: dict[str, Any]) -> Info:
        raise NotImplementedError

    def count(self, split: str, options: dict[str, Any]) -> int | None:
        """Number of groups ``groups`` will yield for a split (for the progress bar), if known."""
        return None

    def groups(self, split: str, options: dict[str, Any]) -> Iterable[Group | GroupBatch]:
        """Yield Groups, or GroupBatches (many groups of one-example puzzles as arrays)."""
        raise NotImplementedError

    def report(self) -> dict[str, Any]:
        """Build statistics to print and record in provenance (e.g. redraw counts)."""
        return {}

    # Optional hooks: define them as methods in a subclass --------------------------------
    # check(dataset, progress=False) -> list[hrm_data.validate.Finding]   (validate --deep)
    # score(dataset, split, predictions) -> dict[str, float]   predictions: (N, seq_len) in example order
    # score_examples(dataset, split, predictions) -> dict[str, np.ndarray]   per-example task fields,
    #   each (N,) in example order (e.g. city: valid, optimal, cost_excess); columns of predictions.parquet
    check: Callable[..., list] | None = None
    score: Callable[..., dict] | None = None
    score_examples: Callable[..., dict] | None = None


def build(builder: Builder, out: str | Path, options: dict[str, Any] | None = None, *, force: bool = False,
          progress: bool = True, splits: Sequence[str] = ("train", "test")) -> Path:
    """Run ``builder`` into a new dataset at ``out`` (atomic; refuses to overwrite without force)."""
    from tqdm import tqdm

    opts = {**builder.defaults(), **(options or {})}
    unrecorded = {o.name for o in builder.options if not o.recorded}  # trees must not differ by --workers
    info = builder.info(opts)
    provenance = {"builder": builder.name, "builder_version": builder.version,
                  "options": {k: _jsonable(v) for k, v in opts.items() if k not in unrecorded}}
    extra = {**info.render_metadata(), **info.extra, PROVENANCE_KEY: provenance}
    with DatasetWriter(out, vocab_size=info.vocab_size, seq_len=info.seq_len, pad_id=info.pad_id,
                       ignore_label_id=info.ignore_label_id, identifiers=info.identifiers,
                       force=force, extra=extra) as writer:
        for split in splits:
            with writer.split(split) as sw:
                bar = tqdm(total=builder.count(split, opts), desc=f"{builder.name} {split}", unit="group",
                           disable=not progress, leave=False)
                for group in builder.groups(split, opts):
                    if isinstance(group, GroupBatch):   # many groups as whole arrays
                        sw.add_batch(group)
                        bar.update(group.num_groups)
                        continue
                    sw.add_group(group)
                    bar.update(1)
                bar.close()
        provenance["report"] = {k: _jsonable(v) for k, v in builder.report().items()}
    return Path(out)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v
