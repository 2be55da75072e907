"""`hrm-data convert`: move a dataset between HRM's npy folder, one Parquet file and a Zarr store.

Every conversion is one streaming copy from a *source* (npy folder or Zarr store through
``format.Dataset``, or a Parquet file) into a *sink*, a set at a time in bounded row blocks, so
memory stays flat however large the dataset is. Arrays keep their exact dtypes, dataset.json
is copied verbatim and identifiers.json too, so npy -> parquet -> npy and npy -> zarr -> npy
give identical arrays and the same fingerprint. Outputs are atomic like builds: a folder is
written beside the target and committed with format's commit (swap or rename); a Parquet
file is written beside the target and renamed over it.

Parquet layout (one row per example, in split / set / example order)::

    split, set: string   example, puzzle, group: int64 (index within the set)
    identifier_id: int32, identifier: string (its name in identifiers.json)
    inputs, labels: list<uint8|uint16|int32...> (seq_len tokens)
    side.<column>: the split's examples.parquet columns, where it has one
    file key-value metadata "hrm_data": JSON with identifiers, each split's dataset.json and the
    exact dtype of every array (so the npy arrays come back byte for byte)
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .format import (
    FIELDS, SIDE_TABLE, SPLITS, Dataset, DatasetExistsError, FormatError, _NpyAppender, _recover_stale,
    is_zarr_path, read_json,
)

PARQUET_TAG = "hrm_data/parquet-1"
PARQUET_KEY = b"hrm_data"
ROW_GROUP_ROWS = 1 << 16          # rows per Parquet row group: ~10 MB at seq_len 81, read one at a time
READ_BATCH_ROWS = 1 << 14         # rows per read: bounds pyarrow's decoding buffers
BLOCK_BYTES = 32 << 20            # token bytes per streamed block
FORMATS = ("npy", "parquet", "zarr")
INDEX_FIELDS = ("puzzle_identifiers", "puzzle_indices", "group_indices")


def guess_format(path: str | os.PathLike) -> str:
    s = str(path).rstrip("/")
    if s.endswith((".parquet", ".pq")):
        return "parquet"
    if is_zarr_path(s):
        return "zarr"
    return "npy"


def block_rows(seq_len: int, itemsize: int) -> int:
    return max(1024, BLOCK_BYTES // max(1, 2 * seq_len * itemsize))


# ----------------------------------------------------------------------------- sources

class DatasetSource:
    """An npy folder or Zarr store, read through the one reader interface (format.Dataset)."""

    def __init__(self, path: str | os.PathLike):
        self.ds = Dataset(path)
        self.identifiers = self.ds.identifiers
        self.splits = [s for s in SPLITS if self.ds.has_split(s)]

    def raw_meta(self, split: str) -> dict:
        if self.ds.store is not None:
            return self.ds.store.metadata_dict(split)
        return read_json(self.ds.path / split / "dataset.json")

    def sets(self, split: str) -> list[str]:
        return list(self.ds.split(split).metadata.sets)

    def index(self, split: str, set_name: str) -> dict[str, np.ndarray]:
        a = self.ds.split(split).set(set_name)
        return {f: np.asarray(getattr(a, f)) for f in INDEX_FIELDS}

    def rows_info(self, split: str, set_name: str) -> tuple[tuple[int, int], np.dtype, np.dtype]:
        a = self.ds.split(split).set(set_name)
        if a.inputs.ndim != 2 or a.inputs.shape != a.labels.shape:
            raise FormatError(f"{self.ds.path}/{split}: {set_name} inputs {a.inputs.shape} and labels "
                              f"{a.labels.shape} must be the same 2-D shape; run `hrm-data validate`")
        return tuple(a.inputs.shape), np.dtype(a.inputs.dtype), np.dtype(a.labels.dtype)

    def blocks(self, split: str, set_name: str, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        a = self.ds.split(split).set(set_name)
        for lo in range(0, a.num_examples, rows):
            yield np.asarray(a.inputs[lo:lo + rows]), np.asarray(a.labels[lo:lo + rows])

    def side_table_bytes(self, split: str) -> bytes | None:
        if self.ds.store is not None:
            return self.ds.store.side_table_bytes(split)
        p = self.ds.path / split / SIDE_TABLE
        return p.read_bytes() if p.exists() else None


class ParquetSource:
    """A Parquet file in the layout above; only the small index columns are read whole."""

    def __init__(self, path: str | os.PathLike):
        import pyarrow.parquet as pq
        self.path = Path(path)
        try:
            self.pf = pq.ParquetFile(self.path)
        except Exception as e:  # noqa: BLE001  (pyarrow raises several types for "not parquet")
            raise FormatError(f"{self.path}: not a readable Parquet file ({e})") from None
        kv = self.pf.schema_arrow.metadata or {}
        try:
            self.meta = json.loads(kv[PARQUET_KEY])
            assert self.meta.get("format") == PARQUET_TAG
        except (KeyError, ValueError, AssertionError):
            raise FormatError(f"{self.path}: a Parquet file without hrm-data's metadata; write one with "
                              "`hrm-data convert DATASET FILE.parquet`, or import your own records with "
                              "`hrm-data import`") from None
        self.identifiers = self.meta["identifiers"]
        self.splits = [s for s in SPLITS if s in self.meta["splits"]]
        # row range of every (split, set), in file order
        self.ranges: dict[tuple[str, str], tuple[int, int]] = {}
        pos = 0
        for split, set_name, n in self.meta["order"]:
            self.ranges[(split, set_name)] = (pos, pos + n)
            pos += n
        if pos != self.pf.metadata.num_rows:
            raise FormatError(f"{self.path}: metadata counts {pos} rows but the file has {self.pf.metadata.num_rows}; "
                              "the file was edited or truncated, convert it again")
        self.rg_start = np.concatenate([[0], np.cumsum([self.pf.metadata.row_group(i).num_rows
                                                        for i in range(self.pf.num_row_groups)])]).astype(np.int64)
        self._cols = None

    def raw_meta(self, split: str) -> dict:
        return self.meta["splits"][split]["dataset.json"]

    def sets(self, split: str) -> list[str]:
        return list(self.meta["splits"][split]["sets"])

    def _set_meta(self, split, set_name) -> dict:
        return self.meta["splits"][split]["sets"][set_name]

    def index(self, split: str, set_name: str) -> dict[str, np.ndarray]:
        if self._cols is None:   # read in batches: pyarrow's whole-column read peaks at several times the data
            cols = ("puzzle", "group", "identifier_id")
            n = self.pf.metadata.num_rows
            self._cols = {c: np.empty(n, np.int64) for c in cols}
            pos = 0
            for b in self.pf.iter_batches(batch_size=READ_BATCH_ROWS, columns=list(cols)):
                for c in cols:
                    self._cols[c][pos:pos + b.num_rows] = b.column(c).to_numpy()
                pos += b.num_rows
        lo, hi = self.ranges[(split, set_name)]
        sm = self._set_meta(split, set_name)
        P, G = sm["puzzles"], sm["groups"]
        p, g, ident = (self._cols[c][lo:hi] for c in ("puzzle", "group", "identifier_id"))
        where = f"{self.path} ({split}/{set_name}, rows {lo}..{hi - 1})"
        if p.size and (np.any(np.diff(p) < 0) or p[0] != 0 or p[-1] != P - 1 or np.any(np.diff(p) > 1)):
            raise FormatError(f"{where}: column 'puzzle' must count up from 0 to {P - 1} without gaps")
        first = np.flatnonzero(np.concatenate([[True], np.diff(p) != 0])) if p.size else np.zeros(0, np.int64)
        gp = g[first]
        if gp.size and (np.any(np.diff(gp) < 0) or gp[0] != 0 or gp[-1] != G - 1 or np.any(np.diff(gp) > 1)):
            raise FormatError(f"{where}: column 'group' must count up from 0 to {G - 1} without gaps")
        dt = {k: np.dtype(v) for k, v in sm["dtypes"].items()}
        pi = np.concatenate([[0], np.cumsum(np.bincount(p, minlength=P))]) if P else np.zeros(1)
        gi = np.concatenate([[0], np.cumsum(np.bincount(gp, minlength=G))]) if G else np.zeros(1)
        return {"puzzle_identifiers": ident[first].astype(dt["puzzle_identifiers"]),
                "puzzle_indices": pi.astype(dt["puzzle_indices"]),
                "group_indices": gi.astype(dt["group_indices"])}

    def rows_info(self, split: str, set_name: str):
        sm = self._set_meta(split, set_name)
        lo, hi = self.ranges[(split, set_name)]
        return (hi - lo, sm["seq_len"]), np.dtype(sm["dtypes"]["inputs"]), np.dtype(sm["dtypes"]["labels"])

    def blocks(self, split: str, set_name: str, rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        lo, hi = self.ranges[(split, set_name)]
        (_, S), dti, dtl = self.rows_info(split, set_name)
        first = int(np.searchsorted(self.rg_start, lo, side="right") - 1)
        for rg in range(max(0, first), self.pf.num_row_groups):
            a, b = int(self.rg_start[rg]), int(self.rg_start[rg + 1])
            if a >= hi:
                break
            if b <= lo:
                continue
            pos = a
            for t in self.pf.iter_batches(batch_size=READ_BATCH_ROWS, row_groups=[rg], columns=["inputs", "labels"]):
                n = t.num_rows
                s, e = max(lo, pos), min(hi, pos + n)
                if s < e:
                    part = t.slice(s - pos, e - s)
                    yield (_list_to_rows(part.column("inputs"), S, dti, self.path, s),
                           _list_to_rows(part.column("labels"), S, dtl, self.path, s))
                pos += n

    def side_table_bytes(self, split: str) -> bytes | None:
        cols = self.meta["splits"][split].get("side_columns") or []
        if not cols:
            return None
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq
        lo = min(self.ranges[(split, s)][0] for s in self.sets(split))
        hi = max(self.ranges[(split, s)][1] for s in self.sets(split))
        t = self.pf.read(columns=[f"side.{c}" for c in cols]).slice(lo, hi - lo)
        t = t.rename_columns(cols)
        schema = pa.schema([pa.field(c, t.schema.field(i).type) for i, c in enumerate(cols)])
        buf = io.BytesIO()
        pq.write_table(t.cast(schema), buf)
        return buf.getvalue()


def _list_to_rows(col, S: int, dtype: np.dtype, path, row0: int) -> np.ndarray:
    import pyarrow as pa
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if arr.null_count:
        raise FormatError(f"{path}: a null token list near row {row0}; the file was edited, convert it again")
    offsets = np.asarray(arr.offsets)
    lens = np.diff(offsets)
    if lens.size and (lens != S).any():
        r = int(np.flatnonzero(lens != S)[0])
        raise FormatError(f"{path}: row {row0 + r} has {int(lens[r])} tokens, seq_len is {S}; convert it again")
    return arr.flatten().to_numpy(zero_copy_only=False).astype(dtype, copy=False).reshape(-1, S)


def _magic(p: Path) -> bytes:
    with open(p, "rb") as f:
        return f.read(4)


def open_source(path: str | os.PathLike):
    p = Path(path)
    if guess_format(path) == "parquet" or (p.is_file() and _magic(p) == b"PAR1"):
        if not p.exists():
            raise FormatError(f"{p}: no such file")
        return ParquetSource(p)
    return DatasetSource(path)


# ----------------------------------------------------------------------------- sinks

class NpySink:
    def __init__(self, root: Path, identifiers: list):
        self.root = root
        with open(root / "identifiers.json", "w") as f:
            json.dump(list(identifiers), f)

    def begin_split(self, split: str, meta: dict) -> None:
        (self.root / split).mkdir()
        with open(self.root / split / "dataset.json", "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")

    def write_index(self, split, set_name, field, arr) -> None:
        np.save(self.root / split / f"{set_name}__{field}.npy", arr)

    def rows_writer(self, split, set_name, field, shape, dtype):
        return _NpyRows(_NpyAppender(self.root / split / f"{set_name}__{field}.npy", dtype, (shape[1],)), shape[0])

    def write_side_table(self, split: str, raw: bytes) -> None:
        (self.root / split / SIDE_TABLE).write_bytes(raw)


class _NpyRows:
    def __init__(self, app: _NpyAppender, n: int):
        self.app, self.n = app, n

    def append(self, block) -> None:
        self.app.append(block)

    def close(self) -> None:
        self.app.close()
        if self.app.rows != self.n:
            raise ValueError(f"{self.app.path}: wrote {self.app.rows} rows, expected {self.n}")


# ----------------------------------------------------------------------------- the copy

def _copy_into(src, sink, progress: bool) -> None:
    from tqdm import tqdm
    total = sum(src.rows_info(sp, s)[0][0] for sp in src.splits for s in src.sets(sp))
    bar = tqdm(total=total, desc="convert", unit="row", unit_scale=True, disable=not progress, leave=False)
    for split in src.splits:
        sink.begin_split(split, src.raw_meta(split))
        for set_name in src.sets(split):
            for f, arr in src.index(split, set_name).items():
                sink.write_index(split, set_name, f, arr)
            shape, dti, dtl = src.rows_info(split, set_name)
            wi = sink.rows_writer(split, set_name, "inputs", shape, dti)
            wl = sink.rows_writer(split, set_name, "labels", shape, dtl)
            for x, y in src.blocks(split, set_name, block_rows(shape[1], max(dti.itemsize, dtl.itemsize))):
                wi.append(x)
                wl.append(y)
                bar.update(x.shape[0])
            wi.close()
            wl.close()
        raw = src.side_table_bytes(split)
        if raw is not None:
            sink.write_side_table(split, raw)
    bar.close()


def _write_parquet(src, path: Path, progress: bool) -> None:
    """One Parquet file, written a block at a time with a fixed schema."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from tqdm import tqdm

    token_dt = np.dtype(np.uint8)
    side_fields: dict[str, Any] = {}
    side_tables: dict[str, Any] = {}
    meta: dict[str, Any] = {"format": PARQUET_TAG, "identifiers": list(src.identifiers), "splits": {}, "order": []}
    for split in src.splits:
        sets = {}
        for s in src.sets(split):
            shape, dti, dtl = src.rows_info(split, s)
            idx = src.index(split, s)
            sizes = np.diff(idx["puzzle_indices"].astype(np.int64))
            gsizes = np.diff(idx["group_indices"].astype(np.int64))
            if (sizes <= 0).any() or (gsizes <= 0).any() or (idx["puzzle_indices"][-1] if sizes.size else 0) != shape[0]:
                raise FormatError(f"{split}/{s}: puzzle or group indices are not a valid partition (a puzzle with "
                                  "no examples or a group with no puzzles); run `hrm-data validate` and fix it first")
            token_dt = np.promote_types(token_dt, np.promote_types(dti, dtl))
            sets[s] = {"seq_len": int(shape[1]), "puzzles": int(sizes.size), "groups": int(gsizes.size),
                       "dtypes": {"inputs": dti.str, "labels": dtl.str,
                                  **{f: idx[f].dtype.str for f in INDEX_FIELDS}}}
            meta["order"].append([split, s, int(shape[0])])
        raw = src.side_table_bytes(split)
        side_cols: list[str] = []
        if raw is not None:
            t = pq.read_table(io.BytesIO(raw))
            n = sum(meta_row[2] for meta_row in meta["order"] if meta_row[0] == split)
            if t.num_rows == n:
                side_tables[split] = t
                side_cols = t.column_names
                try:
                    merged = pa.unify_schemas([pa.schema(list(side_fields.items())), t.schema],
                                              promote_options="permissive")
                except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
                    raise FormatError(f"{split}/{SIDE_TABLE}: its columns' types disagree with the other "
                                      f"split's ({e}); they cannot share one Parquet file") from None
                side_fields = {f.name: f.type for f in merged}
        meta["splits"][split] = {"dataset.json": src.raw_meta(split), "sets": sets, "side_columns": side_cols}

    tok = pa.from_numpy_dtype(token_dt)
    fields = [pa.field("split", pa.string()), pa.field("set", pa.string()), pa.field("example", pa.int64()),
              pa.field("puzzle", pa.int64()), pa.field("group", pa.int64()), pa.field("identifier_id", pa.int32()),
              pa.field("identifier", pa.string()), pa.field("inputs", pa.list_(tok)), pa.field("labels", pa.list_(tok))]
    fields += [pa.field(f"side.{k}", v) for k, v in side_fields.items()]
    schema = pa.schema(fields, metadata={PARQUET_KEY: json.dumps(meta).encode()})
    names = np.asarray(src.identifiers, dtype=object)
    total = sum(r[2] for r in meta["order"])
    bar = tqdm(total=total, desc="convert", unit="row", unit_scale=True, disable=not progress, leave=False)
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        for split in src.splits:
            base = 0
            for s in src.sets(split):
                shape, dti, dtl = src.rows_info(split, s)
                idx = src.index(split, s)
                sizes = np.diff(idx["puzzle_indices"].astype(np.int64))
                puzzle = np.repeat(np.arange(sizes.size, dtype=np.int64), sizes)
                group = np.repeat(np.arange(np.diff(idx["group_indices"]).size, dtype=np.int64),
                                  np.diff(idx["group_indices"].astype(np.int64)))[puzzle]
                ident = idx["puzzle_identifiers"].astype(np.int64)[puzzle]
                S, lo = shape[1], 0
                for x, y in src.blocks(split, s, ROW_GROUP_ROWS):
                    n = x.shape[0]
                    sl = slice(lo, lo + n)
                    ids = ident[sl]
                    safe = np.clip(ids, 0, max(0, len(names) - 1))
                    cols = {
                        "split": pa.array([split] * n, pa.string()), "set": pa.array([s] * n, pa.string()),
                        "example": pa.array(np.arange(lo, lo + n, dtype=np.int64)),
                        "puzzle": pa.array(puzzle[sl]), "group": pa.array(group[sl]),
                        "identifier_id": pa.array(ids.astype(np.int32)),
                        "identifier": pa.array(names[safe] if len(names) else [None] * n, pa.string()),
                        "inputs": _rows_to_list(x, S, token_dt, tok), "labels": _rows_to_list(y, S, token_dt, tok),
                    }
                    st = side_tables.get(split)
                    for k, typ in side_fields.items():
                        if st is not None and k in st.column_names:
                            cols[f"side.{k}"] = st.column(k).slice(base + lo, n).cast(typ)
                        else:
                            cols[f"side.{k}"] = pa.nulls(n, typ)
                    w.write_table(pa.table(cols, schema=schema), row_group_size=ROW_GROUP_ROWS)
                    lo += n
                    bar.update(n)
                base += shape[0]
    bar.close()


def _rows_to_list(x: np.ndarray, S: int, dt: np.dtype, typ):
    import pyarrow as pa
    n = x.shape[0]
    offsets = pa.array(np.arange(0, (n + 1) * S, S, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(x, dtype=dt).reshape(-1), typ))


# ----------------------------------------------------------------------------- entry point

def _check_target(dst: Path, fmt: str, force: bool) -> None:
    if not (dst.exists() or dst.is_symlink()):
        return
    if not force:
        raise DatasetExistsError(f"{dst}: already exists; pass --force to replace it, or choose another DST")
    ok = False
    if fmt == "parquet":
        ok = dst.is_file() and not dst.is_symlink() and _is_our_parquet(dst)
    elif dst.is_dir() and not dst.is_symlink():
        ok = not _replace_problems(dst)
    if not ok:
        raise DatasetExistsError(f"{dst}: exists and is not an HRM dataset; refusing to replace it even with --force "
                                 "(choose another DST)")


def _is_our_parquet(p: Path) -> bool:
    try:
        import pyarrow.parquet as pq
        return PARQUET_KEY in (pq.read_schema(p).metadata or {})
    except Exception:  # noqa: BLE001
        return False


def _replace_problems(p: Path) -> list[str]:
    """--force may replace a whole npy dataset (commit.dataset_problems) or a Zarr store we wrote."""
    from .commit import dataset_problems
    return [] if (p.is_dir() and not p.is_symlink() and _is_our_zarr(p)) else dataset_problems(p)


def _remove_replaced(p: Path) -> list[str]:
    from .commit import remove_dataset
    if _is_our_zarr(p):
        shutil.rmtree(p, ignore_errors=True)
        return []
    return remove_dataset(p)


def _is_our_zarr(p: Path) -> bool:
    try:
        from .storage_zarr import FORMAT_TAG
        return json.loads((p / "zarr.json").read_text()).get("attributes", {}).get("hrm_data_format") == FORMAT_TAG
    except (OSError, ValueError, AttributeError):
        return False


def convert(src: str | os.PathLike, dst: str | os.PathLike, fmt: str | None = None, *, force: bool = False,
            progress: bool = True) -> Path:
    """Copy the dataset at ``src`` to ``dst`` in format ``fmt`` (default: from dst's name)."""
    fmt = fmt or guess_format(dst)
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    dst = Path(dst)
    if "://" in str(dst):
        raise ValueError(f"{dst}: convert writes local paths only; write locally, then upload the store")
    if dst.name in ("", ".", ".."):
        raise ValueError(f"{str(dst)!r}: name the output itself (e.g. data/mine.zarr), not '.' or '..'")
    source = open_source(src)
    if "://" not in str(src):
        a, b = Path(src).resolve(), dst.resolve()
        if a == b or a in b.parents or b in a.parents:
            raise ValueError(f"{dst}: SRC and DST overlap (the same path, or one inside the other); choose another DST")
    _check_target(dst, fmt, force)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        remove_stale_files(dst.parent, f".{dst.name}.tmp-")
        fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.tmp-{os.getpid()}-", dir=dst.parent)
        os.close(fd)
        try:
            _write_parquet(source, Path(tmp), progress)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, dst)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dst
    _recover_stale(dst)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.tmp-{os.getpid()}-", dir=dst.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        if fmt == "zarr":
            from .storage_zarr import ZarrSink
            sink = ZarrSink(str(tmp), source.identifiers)
        else:
            sink = NpySink(tmp, source.identifiers)
        _copy_into(source, sink, progress)
        from .commit import commit
        commit(tmp, dst, force, problems=_replace_problems, remove=_remove_replaced)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dst


def remove_stale_files(folder: Path, prefix: str) -> None:
    """Temp files a killed writer left (``PREFIX<pid>-...``): removed once their process is gone."""
    from .format import _pid_alive
    marker = prefix[prefix.rindex("."):] if "." in prefix else prefix
    for p in folder.glob(f"{glob_escape(prefix)}*"):
        if p.is_file() and not _pid_alive(p.name, marker):
            p.unlink(missing_ok=True)


def glob_escape(s: str) -> str:
    import glob
    return glob.escape(s)


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


__all__ = ["convert", "guess_format", "open_source", "FORMATS", "FIELDS"]
