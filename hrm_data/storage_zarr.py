"""The Zarr (v3) storage backend: the same dataset as HRM's npy folder, chunked and compressed.

Layout of a store (a local folder ``NAME.zarr`` or any fsspec URL zarr can open)::

    zarr.json                         attributes: hrm_data_format, identifiers (the identifiers.json list)
    train/zarr.json                   attributes: dataset.json (the split's dataset.json, verbatim)
    train/all__inputs  (N, seq_len)   chunks of whole rows, zstd; dtype as in the npy file
    train/all__labels, all__puzzle_identifiers, all__puzzle_indices, all__group_indices
    train/examples.parquet            optional side table: the parquet file's bytes as a 1-D uint8 array
    test/...

``format.Dataset`` opens a store through :class:`ZarrStore`, so validate, plan, show, fingerprint
and hrm-train see the same ``Split`` / ``SetArrays`` interface as for npy. Token rows come back
through :class:`ChunkedRows`: slices and integer-array indexing return numpy arrays, and
decompressed chunks are kept in a bounded LRU cache so random training batches do not
decompress a chunk per row. ``zarr`` is an optional dependency (``pip install 'hrm-data[zarr]'``).
"""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from .format import FIELDS, SIDE_TABLE, SPLITS, FormatError, SetArrays

FORMAT_TAG = "hrm_data/zarr-1"
ROWS_KEY = ("inputs", "labels")
CHUNK_BYTES = 1 << 20            # uncompressed bytes per token chunk (rows rounded to a power of two)
INDEX_CHUNK = 1 << 18            # elements per chunk of the 1-D index arrays


def _default_cache_mb() -> int:
    """Per token array: HRM_ZARR_CACHE_MB, else a quarter of the RAM. Random training batches over chunks
    that do not fit are decompressed again and again (benchmarks/bench_convert.py: ~3 batches/s)."""
    env = os.environ.get("HRM_ZARR_CACHE_MB")
    if env:
        return int(env)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4 >> 20)
    except (ValueError, OSError, AttributeError):
        return 1024


DEFAULT_CACHE_MB = _default_cache_mb()


def _zarr():
    try:
        import zarr
    except ImportError:
        raise FormatError("reading or writing a Zarr dataset needs the zarr package (Python >= 3.11): "
                          "pip install 'hrm-data[zarr]'") from None
    return zarr


def rows_per_chunk(seq_len: int, itemsize: int) -> int:
    rows = max(1, CHUNK_BYTES // max(1, seq_len * itemsize))
    return 1 << (rows.bit_length() - 1)


class ChunkedRows:
    """A 2-D zarr array that reads like a memory-mapped numpy array (slices, integer arrays).

    Random rows (training batches) come from decompressed chunks: the whole array, decompressed
    once, when it fits in ``cache_mb`` (HRM_ZARR_CACHE_MB; default a quarter of the RAM), else an
    LRU of chunks of that size. Long slices (validate, stats, convert) stream past the cache.
    """

    def __init__(self, array: Any, cache_mb: int | None = None):
        cache_mb = DEFAULT_CACHE_MB if cache_mb is None else cache_mb
        self.z = array
        self.shape = tuple(int(x) for x in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)
        self.chunk_rows = int(array.chunks[0]) if self.shape[0] else 1
        self.nbytes = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        row_bytes = max(1, self.nbytes // max(1, self.shape[0]))
        self._max_chunks = max(2, (cache_mb << 20) // max(1, self.chunk_rows * row_bytes))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._whole = self.nbytes <= (cache_mb << 20)
        self._full: np.ndarray | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def _chunk(self, c: int) -> np.ndarray:
        with self._lock:
            hit = self._cache.get(c)
            if hit is not None:
                self._cache.move_to_end(c)
                return hit
        lo = c * self.chunk_rows
        block = np.asarray(self.z[lo:min(self.shape[0], lo + self.chunk_rows)])
        with self._lock:
            self._cache[c] = block
            while len(self._cache) > self._max_chunks:
                self._cache.popitem(last=False)
        return block

    def _rows(self, idx: np.ndarray) -> np.ndarray:
        n = self.shape[0]
        idx = np.asarray(idx, np.int64)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        idx = np.where(idx < 0, idx + n, idx)
        if self._whole:
            with self._lock:
                if self._full is None:
                    self._full = np.asarray(self.z[...])
            return self._full[idx]
        out = np.empty((idx.shape[0], *self.shape[1:]), self.dtype)
        if not idx.size:
            return out
        cid = idx // self.chunk_rows
        order = np.argsort(cid, kind="stable")
        bounds = np.flatnonzero(np.diff(cid[order])) + 1
        for part in np.split(order, bounds):   # one step per chunk touched, never per row
            c = int(cid[part[0]])
            out[part] = self._chunk(c)[idx[part] - c * self.chunk_rows]
        return out

    def __getitem__(self, key):
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, (int, np.integer)):
            out = self._rows(np.array([int(key)]))[0]
            return out[rest] if rest else out
        if isinstance(key, slice):
            start, stop, step = key.indices(self.shape[0])
            if self._full is not None:
                out = self._full[start:stop:step]
            elif step == 1 and stop - start > 2 * self.chunk_rows:
                out = np.asarray(self.z[start:stop])   # a long scan: straight through, not via the cache
            else:
                out = self._rows(np.arange(start, stop, step))
        else:
            k = np.asarray(key)
            if k.dtype == bool:
                out = self._rows(np.flatnonzero(k))
            else:
                out = self._rows(k.reshape(-1)).reshape(*k.shape, *self.shape[1:])
        return out[(slice(None), *rest)] if rest else out

    def min(self):
        return min((self[s:s + self.chunk_rows].min() for s in range(0, self.shape[0], self.chunk_rows)), default=0)

    def max(self):
        return max((self[s:s + self.chunk_rows].max() for s in range(0, self.shape[0], self.chunk_rows)), default=0)


class ZarrStore:
    """Read side of the backend: what ``format.Dataset`` / ``Split`` ask a storage for."""

    def __init__(self, url: str):
        zarr = _zarr()
        self.url = url
        try:
            self.root = zarr.open_group(url, mode="r")
        except FileNotFoundError:
            raise FormatError(f"{url}: no such Zarr store") from None
        except Exception as e:  # noqa: BLE001  (zarr raises many types for "not a group")
            raise FormatError(f"{url}: not a readable Zarr group ({type(e).__name__}: {e}); convert the dataset "
                              "again with `hrm-data convert SRC DST --format zarr`") from None
        attrs = dict(self.root.attrs)
        if attrs.get("hrm_data_format") != FORMAT_TAG:
            raise FormatError(f"{url}: a Zarr group but not an HRM dataset (no hrm_data_format attribute); write "
                              "one with `hrm-data convert SRC DST --format zarr`")
        self.attrs = attrs

    def identifiers(self) -> list:
        ids = self.attrs.get("identifiers")
        if not isinstance(ids, list):
            raise FormatError(f"{self.url}: attribute 'identifiers' is not a list of names; convert the dataset again")
        return ids

    def has_split(self, name: str) -> bool:
        return name in self._members()

    def _members(self) -> set[str]:
        if not hasattr(self, "_member_names"):
            self._member_names = {k for k, _ in self.root.groups()}
        return self._member_names

    def _group(self, split: str):
        if split not in self._members():
            raise FormatError(f"{self.url}/{split}: split missing; a dataset needs train/ and test/")
        return self.root[split]

    def metadata_dict(self, split: str) -> dict:
        d = dict(self._group(split).attrs).get("dataset.json")
        if d is None:
            raise FormatError(f"{self.url}/{split}: attribute 'dataset.json' missing; convert the dataset again")
        return d

    def array(self, split: str, set_name: str, field: str):
        g = self._group(split)
        key = f"{set_name}__{field}"
        try:
            return g[key]
        except KeyError:
            raise FormatError(f"{self.url}/{split}/{key}: array missing; convert the dataset again") from None

    def set_arrays(self, split: str, set_name: str) -> SetArrays:
        arrays = {}
        for f in FIELDS:
            z = self.array(split, set_name, f)
            arrays[f] = ChunkedRows(z) if f in ROWS_KEY else np.asarray(z[...])
        return SetArrays(set_name, **arrays)

    def index_arrays(self, split: str, set_name: str) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(self.array(split, set_name, "puzzle_indices")[...]),
                np.asarray(self.array(split, set_name, "group_indices")[...]))

    def side_table_bytes(self, split: str) -> bytes | None:
        g = self._group(split)
        if SIDE_TABLE not in {k for k, _ in g.arrays()}:
            return None
        return np.asarray(g[SIDE_TABLE][...]).tobytes()

    def side_table(self, split: str):
        raw = self.side_table_bytes(split)
        if raw is None:
            return None
        import io

        import pandas as pd
        return pd.read_parquet(io.BytesIO(raw))


# ----------------------------------------------------------------------------- writer

class ZarrSink:
    """Write side: a new local store, filled set by set in row blocks (convert.py drives it)."""

    def __init__(self, path: str, identifiers: list):
        zarr = _zarr()
        self.zarr = zarr
        self.root = zarr.open_group(str(path), mode="w", zarr_format=3)
        self.root.attrs.update({"hrm_data_format": FORMAT_TAG, "identifiers": list(identifiers)})

    def _compressors(self):
        return (self.zarr.codecs.ZstdCodec(level=3),)

    def begin_split(self, split: str, meta: dict) -> None:
        g = self.root.require_group(split)
        g.attrs.update({"dataset.json": meta})

    def write_index(self, split: str, set_name: str, field: str, arr: np.ndarray) -> None:
        arr = np.asarray(arr)
        z = self.root[split].create_array(f"{set_name}__{field}", shape=arr.shape, dtype=arr.dtype,
                                          chunks=(max(1, min(INDEX_CHUNK, arr.shape[0])),) + arr.shape[1:],
                                          compressors=self._compressors(), fill_value=0)
        if arr.size:
            z[...] = arr

    def rows_writer(self, split: str, set_name: str, field: str, shape: tuple[int, int], dtype: np.dtype):
        rows = rows_per_chunk(shape[1], np.dtype(dtype).itemsize)
        z = self.root[split].create_array(f"{set_name}__{field}", shape=shape, dtype=dtype,
                                          chunks=(max(1, min(rows, shape[0])), max(1, shape[1])),
                                          compressors=self._compressors(), fill_value=0)
        return _RowAppender(z, rows)

    def write_side_table(self, split: str, raw: bytes) -> None:
        data = np.frombuffer(raw, np.uint8)
        z = self.root[split].create_array(SIDE_TABLE, shape=data.shape, dtype=np.uint8,
                                          chunks=(max(1, min(1 << 22, data.shape[0])),), compressors=None,
                                          fill_value=0)
        z[...] = data


class _RowAppender:
    """Buffers row blocks to whole chunks, so every chunk is written (and compressed) once."""

    def __init__(self, z, chunk_rows: int):
        self.z, self.chunk_rows, self.pos = z, chunk_rows, 0
        self.buf: list[np.ndarray] = []
        self.buffered = 0

    def append(self, block: np.ndarray) -> None:
        self.buf.append(np.asarray(block))
        self.buffered += block.shape[0]
        if self.buffered >= self.chunk_rows:
            data = np.concatenate(self.buf)
            whole = (data.shape[0] // self.chunk_rows) * self.chunk_rows
            self.z[self.pos:self.pos + whole] = data[:whole]
            self.pos += whole
            self.buf = [data[whole:]] if whole < data.shape[0] else []
            self.buffered = data.shape[0] - whole

    def close(self) -> None:
        if self.buffered:
            data = np.concatenate(self.buf)
            self.z[self.pos:self.pos + data.shape[0]] = data
            self.pos += data.shape[0]
        if self.pos != self.z.shape[0]:
            raise ValueError(f"wrote {self.pos} rows into an array of {self.z.shape[0]}")


def available() -> bool:
    try:
        import zarr  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["ZarrStore", "ZarrSink", "ChunkedRows", "FORMAT_TAG", "SPLITS", "available"]


# ----------------------------------------------------------------------------- validate

def validate_zarr(url, deep: bool = False, progress: bool = False):
    """`hrm-data validate` on a Zarr store: the same checks, reading arrays from the store."""
    from pathlib import Path

    from .validate import NotADataset, _Validator

    try:
        store = ZarrStore(str(url))
    except FormatError as e:
        raise NotADataset(str(e)) from None

    class ZarrValidator(_Validator):
        def read_identifiers_text(self):
            ids = store.attrs.get("identifiers")
            return None if ids is None else json.dumps(ids).encode()

        def read_split_text(self, name):
            if not store.has_split(name):
                return None, False
            d = dict(store._group(name).attrs).get("dataset.json")
            return (None if d is None else json.dumps(d).encode()), True

        def side_table_source(self, name):
            return store.side_table_bytes(name) if store.has_split(name) else None

        def open_dataset(self):
            from .format import Dataset
            return Dataset(str(url))

        def open_array(self, sp, s, f, loc):
            try:
                z = store._group(sp.name)[f"{s.name}__{f}"]
            except KeyError:
                self.add("E103", f"array {s.name}__{f} missing from the Zarr store; convert the dataset again", **loc)
                return None
            if not self.dtype_ok(np.dtype(z.dtype), f, loc):
                return None
            try:
                return ChunkedRows(z) if f in ROWS_KEY else np.asarray(z[...])
            except Exception as e:  # noqa: BLE001  (a missing or corrupt chunk)
                self.add("E104", f"array {s.name}__{f} cannot be read ({type(e).__name__}: {e}); a chunk is missing "
                                 "or corrupt, convert the dataset again", **loc)
                return None

    return ZarrValidator(Path(str(url)), deep, progress).run()
