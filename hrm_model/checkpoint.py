"""Checkpoints: the full training state, written atomically, and the reference's bare weight files.

A checkpoint (``runs/NAME/checkpoints/step_00000123.pt``) is one ``torch.save`` of a dict:

* ``model``: the model state dict, keyed like the reference's uncompiled ``ACTLossHead``
  (``model.inner.…``), puzzle-embedding table included;
* ``optimizers``: state dicts of the sparse sign-SGD and AdamATan2 optimizers;
* ``step``, ``sampler`` (:class:`hrm_data.sampler.SamplerState` as a dict: the next batch),
  ``rng`` (torch CPU / CUDA generator states), ``carry`` (the ACT carry: rows persist across
  batches, so exact resumption needs it), ``ema`` (EMA weights or None), ``config``,
  ``fingerprint`` (dataset content hash), ``plan``, ``score_state`` (the builder's task-score
  state across evaluations, e.g. ARC's accumulated votes, via :func:`pack_score_state`) and
  ``format_version``.

Files are written to a temporary file in the same folder and renamed into place, so a kill
leaves either the previous checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import re
import tempfile
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from .runfiles import fsync_dir, unlink_each

FORMAT_VERSION = 1
CKPT_DIR = "checkpoints"
_CKPT_RE = re.compile(r"^step_(\d+)\.pt$")
_TMP_RE = re.compile(r"^\.step_\d+\.pt\.tmp-[A-Za-z0-9_]+$")  # atomic_save's temp files (mkstemp suffix)
# keys only our own checkpoints hold: the marker that allows a full unpickle (older files only)


class CheckpointError(Exception):
    """A checkpoint that cannot be used; one-line message for the user."""


class _WriteErrors:
    """A file wrapper that keeps the OSError of a failed write: torch's zip writer turns it into a
    RuntimeError ("unexpected pos ...") that no longer says the disk is full."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, b):
        try:
            return self.f.write(b)
        except OSError as e:
            self.error = self.error or e
            raise

    def flush(self):
        return self.f.flush()


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            w = _WriteErrors(f)
            try:
                torch.save(obj, w)
            except RuntimeError:
                if w.error is not None:   # the disk filled (or failed) under torch: say that
                    raise w.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:  # a second error while cleaning up (disk full, EIO): the first one matters
            pass
        raise
    return path


def remove_stale_temps(run_dir: str | os.PathLike) -> list[Path]:
    """Delete temp files a kill left in ``checkpoints/`` during a write (only our own pattern)."""
    d = Path(run_dir) / CKPT_DIR
    if not d.is_dir():
        return []
    return unlink_each(p for p in d.iterdir() if _TMP_RE.match(p.name) and p.is_file())


def checkpoint_path(run_dir: str | os.PathLike, step: int) -> Path:
    return Path(run_dir) / CKPT_DIR / f"step_{step:08d}.pt"


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    d = Path(run_dir) / CKPT_DIR
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        m = _CKPT_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def _weights_only_refusal(e: Exception) -> str | None:
    """torch's weights-only refusal, reduced to its cause ("Unsupported global: ..."), else None."""
    if not (isinstance(e, pickle.UnpicklingError) and "weights only" in str(e).lower()):
        return None
    text = str(e)
    after = text.split("WeightsUnpickler error:", 1)[1] if "WeightsUnpickler error:" in text else text
    lines = [l.strip() for l in after.splitlines() if l.strip()]
    cause = next((l for l in lines if any(w in l for w in ("GLOBAL", "global", "Unsupported", "blocked", "reduce"))),
                 lines[0] if lines else "refused by the weights-only loader")
    return cause.split(". Please use")[0][:200]


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint, a run folder's newest checkpoint, or a bare weight file.

    Every file is read with ``weights_only=True`` (tensors, dicts, lists, numbers: no code from
    the file runs); our own checkpoints hold nothing else. A file that needs more is refused.
    """
    path = Path(path)
    if path.is_dir():  # a run folder: its newest checkpoint
        latest = latest_checkpoint(path)
        if latest is None:
            raise CheckpointError(f"{path}: no checkpoints in {path / CKPT_DIR}")
        path = latest
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not path.is_file():  # a FIFO would block torch.load forever
        raise CheckpointError(f"{path}: not a regular file")
    try:
        with warnings.catch_warnings():  # torch's pickle-protocol warning: not the user's business
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        refusal = _weights_only_refusal(e)
        if refusal is None:  # truncated / not a torch file
            raise CheckpointError(f"{path}: unreadable checkpoint ({_first_line(e)})") from None
    # The weights-only unpickler refused an instruction. A global or a call, or a plain pickle
    # that imports or calls something: loading it fully could run code from the file, so it is
    # refused for safety. Bytes that are no pickle at all are merely unreadable.
    if not any(w in refusal for w in ("GLOBAL", "global", "reduce")) and not _pickle_calls_code(path):
        raise CheckpointError(f"{path}: unreadable checkpoint (not a torch weight file: {refusal})") from None
    raise CheckpointError(f"{path}: refused for safety: the file holds Python objects other than tensors "
                          f"({refusal}), and loading them would run code from the file; only hrm-train "
                          "checkpoints and plain state dicts (tensors) are loaded") from None


_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD", "EXT1", "EXT2", "EXT4"}


def _pickle_calls_code(path: Path, limit: int = 64 << 20) -> bool:
    """Whether the file is a well-formed pickle that imports or calls something (read by
    pickletools, which parses opcodes without running any)."""
    import pickletools
    try:
        with open(path, "rb") as f:
            data = f.read(limit)
        return any(op.name in _CODE_OPCODES for op, _, _ in pickletools.genops(data))
    except Exception:
        return False


def is_full_checkpoint(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("format_version") is not None and "model" in obj and "optimizers" in obj


def _is_state_dict(sd: Any) -> bool:
    return isinstance(sd, dict) and bool(sd) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                                     for k, v in sd.items())


def check_full_checkpoint(obj: Any) -> dict:
    """Refuse (CheckpointError, one line) a checkpoint dict that is not shaped like ours.

    Loading is weights-only, so a file can still hold any dict of tensors, numbers and lists:
    resume, --eval-only, export and init_from must meet a message, not a KeyError.
    """
    if not is_full_checkpoint(obj):
        raise CheckpointError("not an hrm-train checkpoint (no format_version / model / optimizers)")

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise CheckpointError(f"malformed hrm-train checkpoint: {what}")

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    need(is_int(obj["format_version"]) and 1 <= obj["format_version"] <= FORMAT_VERSION,
         f"format_version {obj['format_version']!r:.40} (this hrm-train reads 1..{FORMAT_VERSION})")
    need(_is_state_dict(obj["model"]), "'model' is not a non-empty dict of tensors")
    need(isinstance(obj["optimizers"], list) and all(isinstance(o, dict) and isinstance(o.get("state"), dict)
                                                     and isinstance(o.get("param_groups"), list)
                                                     for o in obj["optimizers"]),
         "'optimizers' is not a list of optimizer state dicts")
    need(is_int(obj.get("step")) and 0 <= obj["step"] < 2**62, "'step' is not an integer >= 0")
    sampler = obj.get("sampler")
    need(isinstance(sampler, dict) and all(is_int(sampler.get(k)) and 0 <= sampler[k] < 2**62
                                           for k in ("iteration", "batch")),
         "'sampler' is not {iteration, batch} integers")
    ranks = obj.get("ranks")
    need(isinstance(ranks, list) and ranks and all(isinstance(r, dict) and "carry" in r
                                                   and isinstance(r.get("rng"), (dict, type(None))) for r in ranks),
         "'ranks' is not a list of {rng, carry} dicts")
    for r in ranks:
        rng = r["rng"]
        need(rng is None or isinstance(rng.get("torch"), torch.Tensor) and rng["torch"].dtype == torch.uint8,
             "a rank's rng state is not a torch generator state")
    need(isinstance(obj.get("config"), dict) and isinstance(obj["config"].get("arch"), dict),
         "'config' is not a configuration mapping")
    need(obj.get("ema") is None or _is_state_dict(obj["ema"]), "'ema' is not a dict of tensors")
    need(obj.get("score_state") is None or isinstance(obj["score_state"], dict), "'score_state' is not a mapping")
    need(obj.get("fingerprint") is None or isinstance(obj["fingerprint"], str), "'fingerprint' is not text")
    need(obj.get("data_path") is None or isinstance(obj["data_path"], str), "'data_path' is not text")
    need(is_int(obj.get("world_size", 1)) and obj.get("world_size", 1) == len(ranks),
         "'world_size' does not match 'ranks'")
    _check_config(obj["config"])
    return obj


def _check_config(saved_cfg: dict) -> None:
    """A checkpoint's config must pass the checks a typed one does (the file may be crafted)."""
    from .config import DEFAULTS, ConfigError, flatten, validate_values
    try:
        validate_values({**flatten(DEFAULTS), **flatten(dict(saved_cfg))})
    except ConfigError as e:
        raise CheckpointError(f"malformed hrm-train checkpoint: its config is unusable ({e})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"malformed hrm-train checkpoint: its config is unusable ({type(e).__name__})") from None


def weights_of(obj: Any) -> "OrderedDict[str, torch.Tensor]":
    """Model weights from a full checkpoint or a bare state dict (reference ``step_N`` file)."""
    if is_full_checkpoint(obj):
        if not _is_state_dict(obj["model"]):
            raise CheckpointError("malformed hrm-train checkpoint: 'model' is not a non-empty dict of tensors")
        return obj["model"]
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return OrderedDict(obj)
    raise CheckpointError(f"not a model state dict or an hrm-train checkpoint (it holds a {type(obj).__name__}"
                          + (" whose values are not all tensors" if isinstance(obj, dict) else "") + ")")


def check_fingerprint(saved: str | None, current: str, force: bool, what: str = "checkpoint") -> str | None:
    """Refuse (CheckpointError) a checkpoint from other data unless ``force``; returns a warning or None."""
    if saved is None or saved == current:
        return None
    msg = (f"{what} was trained on a dataset with fingerprint {saved}, this dataset has {current}")
    if not force:
        raise CheckpointError(msg + "; pass force=true to use it anyway")
    return msg + " (force=true: continuing)"


# ----------------------------------------------------------------------------- ACT carry

def carry_to_state(carry: Any) -> Any:
    """The ACT carry (nested dataclasses / dicts of tensors) as plain dicts of CPU tensors."""
    if carry is None:
        return None
    if dataclasses.is_dataclass(carry):
        return {f.name: carry_to_state(getattr(carry, f.name)) for f in dataclasses.fields(carry)}
    if isinstance(carry, dict):
        return {k: carry_to_state(v) for k, v in carry.items()}
    if isinstance(carry, torch.Tensor):
        return carry.detach().cpu().clone()
    return carry


def carry_from_state(template: Any, state: Any, device: torch.device) -> Any:
    """Fill a freshly made carry (``model.initial_carry(batch)``) with saved tensors."""
    if dataclasses.is_dataclass(template):
        return type(template)(**{f.name: carry_from_state(getattr(template, f.name), state[f.name], device)
                                 for f in dataclasses.fields(template)})
    if isinstance(template, dict):
        return {k: carry_from_state(v, state[k], device) for k, v in template.items()}
    if isinstance(template, torch.Tensor):
        if tuple(state.shape) != tuple(template.shape):
            raise CheckpointError(f"saved carry has shape {tuple(state.shape)}, model needs {tuple(template.shape)}"
                                  " (different batch size or world size?)")
        return state.to(device=device, dtype=template.dtype)
    return state


# ----------------------------------------------------------------------------- RNG

def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any] | None) -> None:
    if not state:
        return
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        try:
            torch.cuda.set_rng_state_all(state["cuda"])
        except Exception:
            pass


# ----------------------------------------------------------------------------- export

def export_weights(obj: Any, out: str | os.PathLike, *, compiled_prefix: bool = False, ema: bool = False) -> Path:
    """Write the reference's bare weight file (``torch.save`` of the state dict) from a checkpoint.

    ``compiled_prefix`` adds ``_orig_mod.`` to every key, as the reference's files have when it
    trained with torch.compile (its loader needs that); ``ema`` exports the EMA weights.
    """
    if ema:
        if not is_full_checkpoint(obj) or obj.get("ema") is None:
            raise CheckpointError("checkpoint has no EMA weights (train with ema=true)")
        if not _is_state_dict(obj["ema"]):
            raise CheckpointError("malformed hrm-train checkpoint: 'ema' is not a dict of tensors")
        sd = OrderedDict(weights_of(obj))
        sd.update(obj["ema"])
    else:
        sd = weights_of(obj)
    prefix = "_orig_mod." if compiled_prefix else ""
    out_sd = OrderedDict((prefix + k, v.detach().cpu()) for k, v in sd.items())
    return atomic_save(out_sd, out)


# ----------------------------------------------------------------------------- builder score state

_PACKED = "__packed_table__"


def _table_keys(d: dict) -> list | None:
    """The keys of a dict worth packing as columns: tuples of ints of one length (or ints)."""
    ks = list(d)
    if not ks:
        return None
    if all(isinstance(k, int) and not isinstance(k, bool) for k in ks):
        return [(k,) for k in ks]
    if all(isinstance(k, tuple) and k and all(isinstance(i, int) and not isinstance(i, bool) for i in k) for k in ks) \
            and len({len(k) for k in ks}) == 1:
        return ks
    return None


def _int_column(values: list) -> torch.Tensor:
    """Python ints (any sign, up to 64 bits) as int64, with unsigned 64-bit values bit-cast."""
    import numpy as np
    a = np.array([v & 0xFFFFFFFFFFFFFFFF for v in values], np.uint64).view(np.int64)
    return torch.from_numpy(a.copy())


def _ints_back(t: torch.Tensor, signed: bool) -> list:
    import numpy as np
    a = t.numpy()
    return a.tolist() if signed else a.view(np.uint64).tolist()


def pack_score_state(obj: Any) -> Any:
    """A builder's score state (e.g. ARC's votes across evaluations) in the weights-only types a
    checkpoint may hold: numpy arrays become tensors, and a dict keyed by int tuples whose values
    are all numpy arrays of one shape, or all number lists of one length, becomes one column per
    position (a million entries stay a few tensors, not a million objects)."""
    import numpy as np
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(obj).copy()), "dtype": obj.dtype.str}
    if isinstance(obj, (list, tuple)):
        out = [pack_score_state(v) for v in obj]
        return out if isinstance(obj, list) else tuple(out)
    if not isinstance(obj, dict):
        return obj
    keys = _table_keys(obj)
    vals = list(obj.values())
    if keys is not None:
        key_cols = [list(c) for c in zip(*keys)]
        packed = {_PACKED: True, "int_keys": not isinstance(next(iter(obj)), tuple),
                  "keys": [_int_column(c) for c in key_cols], "keys_signed": [min(c) < 0 for c in key_cols]}
        if all(isinstance(v, np.ndarray) for v in vals) and len({(v.shape, v.dtype.str) for v in vals}) == 1:
            packed["values"] = pack_score_state(np.stack(vals))
            return packed
        if all(isinstance(v, list) for v in vals) and len({len(v) for v in vals}) == 1 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) for v in vals for x in v):
            cols = [list(c) for c in zip(*vals)]
            packed["columns"] = [torch.tensor(c, dtype=torch.float64) if any(isinstance(x, float) for x in c)
                                 else _int_column(c) for c in cols]
            packed["columns_signed"] = [min(c) < 0 for c in cols]   # read for int columns only
            return packed
    return {k: pack_score_state(v) for k, v in obj.items()}


def unpack_score_state(obj: Any) -> Any:
    """Inverse of pack_score_state."""
    import numpy as np
    if isinstance(obj, (list, tuple)):
        out = [unpack_score_state(v) for v in obj]
        return out if isinstance(obj, list) else tuple(out)
    if not isinstance(obj, dict):
        return obj
    if "__ndarray__" in obj:
        return obj["__ndarray__"].numpy().astype(np.dtype(obj["dtype"]), copy=False)
    if not obj.get(_PACKED):
        return {k: unpack_score_state(v) for k, v in obj.items()}
    cols = [_ints_back(t, s) for t, s in zip(obj["keys"], obj["keys_signed"])]
    keys = cols[0] if obj["int_keys"] else list(zip(*cols))
    if "values" in obj:
        return dict(zip(keys, unpack_score_state(obj["values"])))
    vcols = [t.tolist() if t.dtype == torch.float64 else _ints_back(t, s)
             for t, s in zip(obj["columns"], obj["columns_signed"])]
    return {k: list(v) for k, v in zip(keys, zip(*vcols))}
