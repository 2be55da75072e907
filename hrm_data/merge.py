"""Several datasets read as one, as TinyRecursiveModels' ``data_paths: [a, b, ...]`` does, with
the puzzle identifiers offset so that they do not collide.

TRM's loader concatenates the metadata and names dataset i's sets ``{set}{i}`` (``all``,
``all1``, ...), which the sampler then trains one after the other, but it keeps every
dataset's own identifier numbers: puzzle 5 of the second dataset shares embedding row 5 with
puzzle 5 of the first. Here identifier 0 (the blank) stays shared and dataset i's other
identifiers move up by the count of the datasets before it, so every puzzle keeps a row of its
own; ``identifiers`` lists the names in that order. The merged view has the reader's interface
(``train`` / ``test`` splits with ``metadata`` and ``sets``, ``identifiers``, ``fingerprint``),
so the sampler, plan and trainer need nothing else.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .format import Dataset, FormatError, Metadata, SetArrays

# Fields that must agree for examples of different datasets to share one model.
SHARED_FIELDS = ("seq_len", "vocab_size", "pad_id", "ignore_label_id", "blank_identifier_id")


def merged_set_name(set_name: str, i: int) -> str:
    """TRM's naming: the first dataset's sets keep their names, dataset i's get the suffix i."""
    return set_name if i == 0 else f"{set_name}{i}"


class MergedSplit:
    def __init__(self, name: str, parts: Sequence[Dataset], offsets: Sequence[int], num_identifiers: int):
        self.name = name
        self.parts = [d.split(name) for d in parts]
        self.path = self.parts[0].path
        first = self.parts[0].metadata
        for d, sp in zip(parts, self.parts):
            m = sp.metadata
            for f in SHARED_FIELDS:
                if getattr(m, f) != getattr(first, f):
                    raise FormatError(f"{d.path}: {name} {f} is {getattr(m, f)!r}, the first dataset's is "
                                      f"{getattr(first, f)!r}; datasets trained together must agree on {f}")
            if m.sets != first.sets:
                raise FormatError(f"{d.path}: {name} sets {m.sets} differ from the first dataset's {first.sets}")
        self._offsets = list(offsets)
        self._sets: dict[str, SetArrays] = {}
        total_puzzles = sum(sp.metadata.total_puzzles or sum(sp.set(s).num_puzzles for s in sp.metadata.sets)
                            for sp in self.parts)
        weighted = sum(sp.metadata.mean_puzzle_examples * (sp.metadata.total_puzzles or 0) for sp in self.parts)
        self.metadata: Metadata = replace(
            first,
            num_puzzle_identifiers=num_identifiers,
            total_groups=sum(sp.metadata.total_groups for sp in self.parts),
            mean_puzzle_examples=weighted / total_puzzles if total_puzzles else first.mean_puzzle_examples,
            total_puzzles=total_puzzles,
            sets=[merged_set_name(s, i) for s in first.sets for i in range(len(self.parts))],
            extra={**first.extra, "merged_from": [str(d.path) for d in parts]},
        )

    def set(self, set_name: str) -> SetArrays:
        if set_name not in self._sets:
            for s in self.parts[0].metadata.sets:
                for i, sp in enumerate(self.parts):
                    if merged_set_name(s, i) == set_name:
                        a = sp.set(s)
                        ids = np.asarray(a.puzzle_identifiers).astype(np.int64)
                        blank = sp.metadata.blank_identifier_id
                        ids = np.where(ids == blank, ids, ids + self._offsets[i])
                        self._sets[set_name] = SetArrays(set_name, a.inputs, a.labels, ids, a.puzzle_indices,
                                                         a.group_indices)
            if set_name not in self._sets:
                raise FormatError(f"no set {set_name!r} in the merged datasets (sets: {self.metadata.sets})")
        return self._sets[set_name]

    @property
    def sets(self) -> dict[str, SetArrays]:
        return {s: self.set(s) for s in self.metadata.sets}

    def index_arrays(self, set_name: str) -> tuple[np.ndarray, np.ndarray]:
        a = self.set(set_name)
        return np.asarray(a.puzzle_indices), np.asarray(a.group_indices)

    def side_table(self):
        return None


class MergedDataset:
    """``Dataset``'s interface over several dataset folders (see the module docstring)."""

    def __init__(self, paths: Sequence[str | Path]):
        if len(paths) < 1:
            raise FormatError("no dataset to merge")
        self.parts = [d if isinstance(d, Dataset) else Dataset(d) for d in paths]
        self.path = self.parts[0].path
        names = [d.identifiers for d in self.parts]
        self.offsets, merged = [], [names[0][0] if names[0] else "<blank>"]
        for n in names:
            self.offsets.append(len(merged) - 1)
            merged.extend(n[1:])
        self._identifiers = merged
        self.num_identifiers = len(merged)
        self._splits: dict[str, MergedSplit] = {}

    @property
    def identifiers(self) -> list[str]:
        return list(self._identifiers)

    def has_split(self, name: str) -> bool:
        return all(d.has_split(name) for d in self.parts)

    def split(self, name: str) -> MergedSplit:
        if name not in self._splits:
            self._splits[name] = MergedSplit(name, self.parts, self.offsets, self.num_identifiers)
        return self._splits[name]

    @property
    def train(self) -> MergedSplit:
        return self.split("train")

    @property
    def test(self) -> MergedSplit:
        return self.split("test")

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"hrm-data merged v1")
        for d in self.parts:
            h.update(d.fingerprint().encode())
        return h.hexdigest()


def open_datasets(paths: Sequence[str | Path]) -> "Dataset | MergedDataset":
    """One path: the dataset itself; several: their merged view."""
    return Dataset(paths[0]) if len(paths) == 1 else MergedDataset(paths)
