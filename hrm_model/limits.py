"""What a config value may be beyond its type: bounds that turn a hang, an overflow or a
terabyte allocation into a one-line refusal before any work starts.

Two stages: :func:`check_config` needs only the configuration (called by
``config.validate_values``); :func:`check_against_data` needs the dataset's shapes and the
machine's memory (called by the trainer before it builds the model).
"""
from __future__ import annotations

import math
import os
from typing import Any

# ceilings: far above any real run, low enough that arithmetic, loops and allocations stay sane
MAX_SEED = 2**63 - 2**16           # torch.manual_seed(seed + rank) must stay inside int64
MAX_EPOCHS = 10**12                # the plan's divisor search runs in ~sqrt(epochs) steps
MAX_DRAWS_PER_ITERATION = 10**8    # groups drawn in one iteration (epochs per iteration x groups)
MAX_CYCLES = 1024                  # H_cycles, L_cycles: each one is a full pass per segment
MAX_LAYERS = 1024
MAX_HALT_STEPS = 1024              # evaluation always runs every segment
MAX_CPU_THREADS = 4096
MAX_PREFETCH = 4096
MAX_KEEP = 10**6


def show(v: Any, limit: int = 60) -> str:
    """A value for a message: never fails (huge ints), never floods the line."""
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**15:
        return f"{'-' if v < 0 else ''}~1e{int(abs(v).bit_length() * 0.30103)}"
    try:
        s = repr(v)
    except Exception:
        s = f"<{type(v).__name__}>"
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


UPPER: dict[str, int] = {
    "seed": MAX_SEED, "epochs": MAX_EPOCHS, "eval_interval": MAX_EPOCHS,
    "arch.H_cycles": MAX_CYCLES, "arch.L_cycles": MAX_CYCLES, "arch.H_layers": MAX_LAYERS,
    "arch.L_layers": MAX_LAYERS, "arch.halt_max_steps": MAX_HALT_STEPS, "cpu_threads": MAX_CPU_THREADS,
    "prefetch": MAX_PREFETCH, "keep_last": MAX_KEEP,
}


def check_config(flat: dict[str, Any], error: type[Exception]) -> None:
    """Bounds on values whose type is already right (``validate_values`` checks types first)."""
    def fail(key: str, want: str) -> None:
        raise error(f"{key}={show(flat[key])}: must be {want}")

    for key, hi in UPPER.items():
        v = flat.get(key)
        if _is_int(v) and v > hi:
            fail(key, f"at most {hi:,}" if hi < 10**7 else f"at most {hi:.3g}")
    # every integer key: stay inside int64 (torch tensors, numpy indices)
    for key, v in flat.items():
        if _is_int(v) and abs(v) >= 2**62 and key not in UPPER:
            fail(key, "below 2**62")
    if isinstance(flat.get("arch.expansion"), (int, float)) and not isinstance(flat["arch.expansion"], bool):
        if not flat["arch.expansion"] > 0:
            fail("arch.expansion", "a number > 0 (the MLP width is expansion x hidden_size x 2/3)")
    if isinstance(flat.get("arch.rope_theta"), (int, float)) and flat.get("arch.pos_encodings") == "rope":
        if not flat["arch.rope_theta"] > 0:
            fail("arch.rope_theta", "a number > 0 with pos_encodings=rope")
    p = flat.get("arch.halt_exploration_prob")
    if isinstance(p, (int, float)) and not isinstance(p, bool) and p > 1:
        fail("arch.halt_exploration_prob", "a probability in [0, 1]")
    h, n = flat.get("arch.hidden_size"), flat.get("arch.num_heads")
    if _is_int(h) and _is_int(n) and n >= 1 and h % n == 0 and flat.get("arch.pos_encodings") == "rope" and (h // n) % 2:
        raise error(f"arch.hidden_size / arch.num_heads = {h // n}: RoPE needs an even head width; "
                    "change arch.num_heads or arch.hidden_size")
    run_name = flat.get("run_name")
    if isinstance(run_name, str):
        check_run_name(run_name, error)
    m = flat.get("checkpoint_every_minutes")
    if m is not None and not (isinstance(m, (int, float)) and not isinstance(m, bool) and math.isfinite(m) and m >= 0):
        fail("checkpoint_every_minutes", "a number of minutes >= 0 (0: off)")


def check_run_name(name: str, error: type[Exception]) -> None:
    """A run name is a folder inside ``runs_dir``: relative, no '..' or empty parts, no NUL
    (``exp1/seed0`` nests; ``../../x`` or ``/tmp/x`` would escape runs_dir)."""
    parts = name.replace("\\", "/").split("/")
    bad = (name.strip() == "" or "\0" in name or name.startswith(("/", "\\")) or os.path.isabs(name)
           or any(p in ("", ".", "..") for p in parts))
    if bad:
        raise error(f"run_name={show(name)}: must be a folder name inside runs_dir (no leading '/', no '..' "
                    "or empty parts); to put runs elsewhere set runs_dir")


# ----------------------------------------------------------------------------- against the data

def mlp_width(hidden: int, expansion: float) -> int:
    """SwiGLU's inner width as layers.SwiGLU computes it (2/3 x expansion x hidden, up to 256)."""
    return -(round(expansion * hidden * 2 / 3) // -256) * 256


def estimate_bytes(arch: dict[str, Any], *, batch: int, seq_len: int, vocab: int, puzzles: int,
                   bytes_per_float: int = 4) -> tuple[int, int]:
    """(trainable parameters, a lower bound of the bytes training needs), in Python ints (no overflow).

    Lower bound: each parameter with its gradient and two Adam moments, the puzzle-embedding
    table and its per-batch copy, and the ACT carry (z_H, z_L) of one batch. Activations come
    on top, so a refusal on this bound is never wrong.
    """
    h = int(arch["hidden_size"])
    inter = mlp_width(h, float(arch["expansion"]))
    layers = int(arch["H_layers"]) + int(arch["L_layers"])
    ndim = int(arch.get("puzzle_emb_ndim") or 0)
    p_len = -(ndim // -h)
    params = layers * (4 * h * h + 3 * h * inter) + 2 * vocab * h + 2 * h + 2
    if arch.get("pos_encodings") == "learned":
        params += (seq_len + p_len) * h
    table = puzzles * ndim + 2 * batch * ndim
    carry = 2 * batch * (seq_len + p_len) * h
    return params, bytes_per_float * (4 * params + table + carry)


def machine_memory(device) -> int | None:
    """Bytes of memory on the device that will hold the model (None: unknown)."""
    try:
        if getattr(device, "type", "cpu") == "cuda":
            import torch
            return int(torch.cuda.get_device_properties(device).total_memory)
        if getattr(device, "type", "cpu") == "cpu":
            return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError, RuntimeError):
        return None
    return None


def _gib(b: int) -> str:
    g = b / 2**30
    return f"{g:.3g} GiB" if g < 1e6 else f"{g:.2e} GiB"


def check_against_data(cfg: dict[str, Any], meta, *, local_batch: int, eval_batch: int, device,
                       groups_per_epoch: int, error: type[Exception]) -> None:
    """Refuse a run that cannot fit in memory or would draw an unmanageable iteration."""
    epochs_per_iter = cfg["eval_interval"] or cfg["epochs"] or 1   # epochs None: fitted on a CPU later (eta.py)
    draws = epochs_per_iter * groups_per_epoch
    if draws > MAX_DRAWS_PER_ITERATION:
        hint = ("set eval_interval (epochs per iteration) so that eval_interval x groups stays below "
                f"{MAX_DRAWS_PER_ITERATION:.0e}")
        raise error(f"epochs per iteration ({'eval_interval' if cfg['eval_interval'] else 'epochs'}="
                    f"{show(epochs_per_iter)}) x {groups_per_epoch:,} groups = {show(draws)} draws in one "
                    f"iteration, too many to hold in memory; {hint}")
    params, need = estimate_bytes(cfg["arch"], batch=max(local_batch, eval_batch), seq_len=meta.seq_len,
                                  vocab=meta.vocab_size, puzzles=meta.num_puzzle_identifiers)
    have = machine_memory(device)
    if have is not None and need > have:
        raise error(f"the model would have {params:.3g} parameters and need at least {_gib(need)} to train "
                    f"(arch.hidden_size={show(cfg['arch']['hidden_size'])}, arch.expansion="
                    f"{show(cfg['arch']['expansion'])}, arch.puzzle_emb_ndim={show(cfg['arch'].get('puzzle_emb_ndim'))}, "
                    f"batch {max(local_batch, eval_batch)}); this {device.type} has {_gib(have)}: "
                    "choose smaller arch.* values or a preset")
