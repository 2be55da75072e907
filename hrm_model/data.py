"""Batches for the trainer: the group sampler's rows gathered from the memory-mapped arrays.

Collation is the reference's ``_collate_batch``: every array to int32, labels equal to the
dataset's ``ignore_label_id`` become -100, and a short (evaluation) batch is padded with
``pad_id`` inputs, -100 labels and the blank puzzle identifier. Works on our datasets and on
the paper repository's (uint8 arrays, no extra metadata keys).
"""
from __future__ import annotations

import queue
import threading
from typing import Iterator

import numpy as np
import torch

from hrm_data.format import SetArrays, Split
from hrm_data.sampler import Batch, GroupSampler, eval_batches

IGNORE_LABEL_ID = -100


def collate(arrays: SetArrays, rows: np.ndarray, puzzles: np.ndarray, *, ignore_label_id: int | None,
            pad_to: int | None = None, pad_id: int = 0, blank_identifier_id: int = 0) -> dict[str, np.ndarray]:
    """Rows of one set as int32 arrays ``inputs``, ``labels``, ``puzzle_identifiers``."""
    rows = np.asarray(rows, np.int64)
    if rows.size and np.all(np.diff(rows) == 1):  # contiguous (evaluation): one slice of the memmap
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        inputs, labels = np.asarray(arrays.inputs[lo:hi]), np.asarray(arrays.labels[lo:hi])
    else:
        inputs, labels = np.asarray(arrays.inputs[rows]), np.asarray(arrays.labels[rows])
    batch = {
        "inputs": inputs.astype(np.int32),
        "labels": labels.astype(np.int32),
        "puzzle_identifiers": np.asarray(arrays.puzzle_identifiers)[np.asarray(puzzles, np.int64)].astype(np.int32),
    }
    if ignore_label_id is not None:
        batch["labels"][batch["labels"] == ignore_label_id] = IGNORE_LABEL_ID
    n = batch["inputs"].shape[0]
    if pad_to is not None and n < pad_to:
        extra = pad_to - n
        S = arrays.inputs.shape[1]
        batch["inputs"] = np.concatenate([batch["inputs"], np.full((extra, S), pad_id, np.int32)])
        batch["labels"] = np.concatenate([batch["labels"], np.full((extra, S), IGNORE_LABEL_ID, np.int32)])
        batch["puzzle_identifiers"] = np.concatenate(
            [batch["puzzle_identifiers"], np.full((extra,), blank_identifier_id, np.int32)])
    return batch


def to_tensors(batch: dict[str, np.ndarray], pin: bool = False) -> dict[str, torch.Tensor]:
    out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}
    if pin:
        out = {k: v.pin_memory() for k, v in out.items()}
    return out


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    if device.type == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


_END = object()


class TrainLoader:
    """One iteration of training batches for this rank, from ``start_batch`` on.

    With ``threaded`` a background thread gathers batches into a bounded queue of ``prefetch``
    batches (pinned memory when ``pin``); otherwise batches are gathered on demand. The sampler's
    draw does not depend on the torch RNG, so prefetching never changes what the model sees.
    """

    def __init__(self, split: Split, sampler: GroupSampler, iteration: int, start_batch: int = 0, *,
                 threaded: bool = True, prefetch: int = 8, pin: bool = False):
        self.split, self.sampler = split, sampler
        self.meta = split.metadata
        self.iteration, self.start_batch = iteration, start_batch
        self.threaded, self.prefetch, self.pin = threaded, max(1, prefetch), pin
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _produce(self) -> Iterator[tuple[Batch, dict[str, torch.Tensor]]]:
        sets = self.split.sets
        for b in self.sampler.iteration(self.iteration, self.start_batch):
            arr = collate(sets[b.set_name], b.examples, b.puzzles, ignore_label_id=self.meta.ignore_label_id)
            yield b, to_tensors(arr, self.pin)

    def __iter__(self) -> Iterator[tuple[Batch, dict[str, torch.Tensor]]]:
        if not self.threaded:
            yield from self._produce()
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)

        def work():
            try:
                for item in self._produce():
                    while not self._stop.is_set():
                        try:
                            q.put(item, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if self._stop.is_set():
                        return
                q.put(_END)
            except BaseException as e:  # hand the error to the training loop
                q.put(e)

        self._thread = threading.Thread(target=work, name="hrm-train-loader", daemon=True)
        self._thread.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def eval_loader(split: Split, set_name: str, global_batch_size: int, rank: int = 0, world_size: int = 1
                ) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor], int, int]]:
    """Every example of one test set once, in order: (rows, padded batch, local valid rows, global valid rows)."""
    arrays = split.set(set_name)
    meta = split.metadata
    local = global_batch_size // world_size
    for rows, puzzles, global_valid in eval_batches(arrays.puzzle_indices, global_batch_size, rank, world_size):
        arr = collate(arrays, rows, puzzles, ignore_label_id=meta.ignore_label_id, pad_to=local,
                      pad_id=meta.pad_id, blank_identifier_id=meta.blank_identifier_id)
        yield rows, to_tensors(arr), int(rows.shape[0]), int(global_valid)
