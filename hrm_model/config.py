"""The trainer's configuration: the reference's keys and defaults, our own keys, presets,
``key=value`` overrides and a YAML file, merged and checked.

Precedence (later wins): defaults < preset < ``--config FILE.yaml`` < ``key=value`` overrides.
A preset named in the file or the overrides is applied first, under everything the user wrote.
Every value given as text is parsed with ``yaml.safe_load`` (``lr=3e-4`` is a float,
``compile=false`` a bool, ``run_name=null`` None). Unknown keys are errors with a suggestion.
"""
from __future__ import annotations

import copy
import difflib
import math
from pathlib import Path
from typing import Any, Iterable

import yaml


class ConfigError(ValueError):
    """A configuration the trainer will not run: the message is one line, for the user."""


# The reference's published configuration: config/cfg_pretrain.yaml + config/arch/hrm_v1.yaml.
PAPER_ARCH: dict[str, Any] = {
    "H_cycles": 2, "L_cycles": 2, "H_layers": 4, "L_layers": 4,
    "hidden_size": 512, "num_heads": 8, "expansion": 4, "puzzle_emb_ndim": 512,
    "pos_encodings": "rope", "halt_max_steps": 16, "halt_exploration_prob": 0.1,
    "forward_dtype": None, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "loss": {"loss_type": "stablemax_cross_entropy"},
}
PAPER_TRAIN: dict[str, Any] = {
    "global_batch_size": 768, "epochs": 100000, "eval_interval": 10000, "checkpoint_every_eval": True,
    "lr": 1e-4, "lr_min_ratio": 1.0, "lr_warmup_steps": 2000,
    "beta1": 0.9, "beta2": 0.95, "weight_decay": 0.1,
    "puzzle_emb_lr": 1e-2, "puzzle_emb_weight_decay": 0.1,
}

# Tiny Recursive Models' architecture (SamsungSAILMontreal/TinyRecursiveModels config/arch/trm.yaml).
TRM_ARCH: dict[str, Any] = {
    "name": "trm", "H_cycles": 3, "L_cycles": 6, "H_layers": 0, "L_layers": 2,
    "hidden_size": 512, "num_heads": 8, "expansion": 4, "puzzle_emb_ndim": 512,
    "pos_encodings": "rope", "halt_max_steps": 16, "halt_exploration_prob": 0.1,
    "forward_dtype": None, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
    "mlp_t": False, "puzzle_emb_len": 16, "no_ACT_continue": True,
    "loss": {"loss_type": "stablemax_cross_entropy"},
}
# Keys only TRM reads, with the values that mean "HRM's behaviour".
TRM_ONLY_ARCH = {"mlp_t": False, "puzzle_emb_len": None, "no_ACT_continue": False}

ARCH_NAMES = {"hrm_v1": "hrm_v1", "hrm": "hrm_v1", "trm": "trm"}


def arch_kind(name: Any) -> str:
    """``hrm_v1`` or ``trm`` for our names and the references' (``...@HierarchicalReasoningModel_ACTV1``,
    ``recursive_reasoning.trm@TinyRecursiveReasoningModel_ACTV1``); None means hrm_v1."""
    if name is None:
        return "hrm_v1"
    text = str(name).strip()
    if text in ARCH_NAMES:
        return ARCH_NAMES[text]
    if text.endswith("HierarchicalReasoningModel_ACTV1"):
        return "hrm_v1"
    if text.endswith("TinyRecursiveReasoningModel_ACTV1"):
        return "trm"
    shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:57] + "..."
    raise ConfigError(f"arch.name={shown}: unknown architecture; choose hrm_v1 or trm")


DEFAULTS: dict[str, Any] = {
    # -- the reference's keys (same names, same meanings, same defaults as cfg_pretrain.yaml,
    #    except eval_interval: null = evaluate once, at the end; preset=paper sets 10000)
    **PAPER_TRAIN,
    "eval_interval": None,
    "seed": 0,
    "lr_warmup_examples": None,   # the user's rule: warmup in examples -> ceil(examples / global_batch_size) steps
    "arch": {"name": "hrm_v1", **copy.deepcopy(PAPER_ARCH), **TRM_ONLY_ARCH},
    # -- TinyRecursiveModels' keys (same names and meanings as its pretrain.py)
    "data_paths": None,           # several datasets trained as one (identifiers offset); `hrm-train A B`
    "min_eval_interval": 0,       # evaluate only from this iteration (eval_interval epochs each) on
    "accumulate_votes": None,     # ARC score: votes of every evaluation so far (TRM's aggregated_voting); null: the dataset's
    "freeze_weights": False,      # train the puzzle embeddings only
    # -- ours
    "preset": None,               # paper | cpu-small
    "run_name": None,             # default: <dataset folder>-<timestamp>
    "runs_dir": "runs",
    "device": "auto",             # auto | cpu | cuda | mps
    "compile": None,              # default: on for CUDA, off elsewhere
    "ema": False,
    "ema_rate": 0.999,
    "log_every": 10,              # steps between metrics.jsonl train lines
    "num_workers": 1,             # background loader threads (0: load in the training loop)
    "prefetch": 8,                # batches queued ahead
    "checkpoint_every_steps": 0,  # 0: only at evaluations (checkpoint_every_eval) and at the end
    "checkpoint_every_minutes": 10.0,  # also checkpoint after the step that passes this much wall time (0: off)
    "keep_last": 3,               # checkpoints kept (plus the best by exact accuracy); 0: keep all
    "force": False,               # accept a checkpoint made on a dataset with another fingerprint
    "init_from": None,            # weights file (reference step_N or ours) to start from
    "eval_batch_size": None,      # default: global_batch_size
    "progress": True,             # tqdm bar
    "cpu_threads": None,          # torch.set_num_threads on CPU (null: the cores not busy, see eta.default_threads)
    "cpu_fit_hours": 1.0,         # CPU without epochs given: choose epochs / eval_interval for about this long
    "cpu_max_hours": 24.0,        # CPU: refuse to start a run estimated above this (null: never refuse)
    # -- debug only (tests): never set these in real runs
    "debug_nan_at_step": 0,       # make the loss NaN at this step
    "debug_sigkill_at_step": 0,   # SIGKILL ourselves right after this step (after any checkpoint)
}

CPU_SMALL: dict[str, Any] = {
    "global_batch_size": 32,
    "lr": 1e-3, "lr_min_ratio": 0.1, "lr_warmup_steps": 50,
    "puzzle_emb_lr": 1e-2,
    "arch": {"H_cycles": 2, "L_cycles": 2, "H_layers": 2, "L_layers": 2, "hidden_size": 128, "num_heads": 4,
             "expansion": 4, "puzzle_emb_ndim": 128, "halt_max_steps": 4, "halt_exploration_prob": 0.1,
             "forward_dtype": "float32"},
}

# TinyRecursiveModels' README recipes: Sudoku-Extreme and Maze-Hard share the training keys.
_TRM_PUZZLE_TRAIN = {**PAPER_TRAIN, "epochs": 50000, "eval_interval": 5000, "lr": 1e-4, "puzzle_emb_lr": 1e-4,
                     "weight_decay": 1.0, "puzzle_emb_weight_decay": 1.0, "ema": True}

TRM_CPU_SMALL: dict[str, Any] = {
    # no EMA: at ema_rate 0.999 the averaged weights trail a run of a few hundred CPU steps by most of it
    # (0.999^300 = 0.74 of the initial weights left), so evaluations would show an untrained model
    **{k: v for k, v in CPU_SMALL.items() if k != "arch"}, "ema": False,
    "arch": {"name": "trm", "H_cycles": 3, "L_cycles": 4, "L_layers": 2, "hidden_size": 128, "num_heads": 4,
             "expansion": 4, "puzzle_emb_ndim": 128, "puzzle_emb_len": 1, "halt_max_steps": 4,
             "halt_exploration_prob": 0.1, "forward_dtype": "float32"},
}

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {**copy.deepcopy(PAPER_TRAIN), "arch": copy.deepcopy(PAPER_ARCH)},
    "cpu-small": CPU_SMALL,
    "trm-sudoku-mlp": {**_TRM_PUZZLE_TRAIN, "arch": {**TRM_ARCH, "mlp_t": True, "pos_encodings": "none",
                                                     "L_layers": 2, "H_cycles": 3, "L_cycles": 6}},
    "trm-sudoku-att": {**_TRM_PUZZLE_TRAIN, "arch": {**TRM_ARCH, "L_layers": 2, "H_cycles": 3, "L_cycles": 6}},
    "trm-maze": {**_TRM_PUZZLE_TRAIN, "arch": {**TRM_ARCH, "L_layers": 2, "H_cycles": 3, "L_cycles": 4}},
    "trm-arc": {**PAPER_TRAIN, "ema": True, "accumulate_votes": True, "arch": {**TRM_ARCH, "L_layers": 2, "H_cycles": 3, "L_cycles": 4}},
    "trm-cpu-small": TRM_CPU_SMALL,
}

# Keys that may change when a run is resumed (they do not change what is computed).
RESUME_MUTABLE = {"device", "cpu_threads", "cpu_fit_hours", "cpu_max_hours", "compile", "log_every", "num_workers", "prefetch", "force", "progress",
                  "checkpoint_every_steps", "checkpoint_every_eval", "runs_dir",
                  "checkpoint_every_minutes", "keep_last",
                  "debug_nan_at_step", "debug_sigkill_at_step"}

CHOICES = {"device": ("auto", "cpu", "cuda", "mps"), "preset": (None, *PRESETS),
           "arch.name": ("hrm_v1", "trm"), "arch.pos_encodings": ("rope", "learned", "none"), "arch.forward_dtype": (None, "float32", "bfloat16"),
           "arch.loss.loss_type": ("stablemax_cross_entropy", "softmax_cross_entropy")}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and (key in ("arch", "arch.loss")):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


KNOWN_KEYS = set(flatten(DEFAULTS))


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1, cutoff=0.6)
    if not close and "." not in key:  # "hidden_size" -> "arch.hidden_size"
        close = difflib.get_close_matches("arch." + key, sorted(KNOWN_KEYS), n=1, cutoff=0.8)
    return f"; did you mean '{close[0]}'?" if close else "; see `hrm-train keys`"


STRING_KEYS = {"preset", "run_name", "runs_dir", "device", "init_from", "arch.pos_encodings", "arch.forward_dtype",
               "arch.loss.loss_type", "arch.name"}


INT_KEYS = {"global_batch_size", "epochs", "arch.H_cycles", "arch.L_cycles", "arch.H_layers", "arch.L_layers",
            "arch.hidden_size", "arch.num_heads", "arch.halt_max_steps", "log_every", "prefetch",
            "lr_warmup_steps", "arch.puzzle_emb_ndim", "seed", "num_workers", "checkpoint_every_steps",
            "debug_nan_at_step", "debug_sigkill_at_step", "cpu_threads", "eval_interval", "lr_warmup_examples",
            "eval_batch_size", "keep_last", "arch.puzzle_emb_len", "min_eval_interval"}


def _coerce(key: str, v: Any, raw: str | None = None) -> Any:
    """Values as the key's type wants them, where the reading is unambiguous.

    * YAML 1.1 reads ``1e-4`` (no dot) as text: numeric keys take it as the number it is;
    * integer keys take an integral float (``epochs=1e3`` -> 1000);
    * text keys (``run_name=5``) take a number as its text (``raw``, the override as typed, when known).
    """
    if key in STRING_KEYS:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return raw.strip() if raw is not None and raw.strip() else str(v)
        return v
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            return v
    if key in INT_KEYS and isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def check_keys(flat: dict[str, Any], source: str) -> None:
    for k in flat:
        if k not in KNOWN_KEYS:
            raise ConfigError(f"{source}: unknown key '{k}'{_suggest(k)}")


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["lr=3e-4", "arch.hidden_size=128"]`` -> flat dict, values through yaml.safe_load."""
    out: dict[str, Any] = {}
    raw: dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"'{item}' is not key=value (e.g. epochs=100)")
        k, v = item.split("=", 1)
        k = k.strip().lstrip("+")
        if k == "arch":  # the references' Hydra choice of arch file: arch=trm
            k = "arch.name"
        raw[k] = v
        try:
            out[k] = yaml.safe_load(v) if v.strip() != "" else None
        except (yaml.YAMLError, ValueError, RecursionError):  # ValueError: an int of > 4300 digits
            raise ConfigError(f"{k}: cannot parse value {v[:40]!r}{'...' if len(v) > 40 else ''}") from None
    check_keys(out, "override")
    return {k: _coerce(k, v, raw[k]) for k, v in out.items()}


def _read_yaml(path: str | Path) -> Any:
    from .runfiles import read_text_file
    text = read_text_file(path, "config file", ConfigError)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    except (ValueError, RecursionError) as e:  # huge integers, nesting too deep for the parser
        raise ConfigError(f"{path}: unusable YAML ({type(e).__name__}: {str(e)[:80]})") from None


def _is_arch_file(data: dict[str, Any]) -> bool:
    """A references' ``config/arch/*.yaml`` on its own: a model name and arch keys at the top."""
    return str(data.get("name", "")).endswith("_ACTV1")


def load_file(path: str | Path) -> dict[str, Any]:
    """A YAML config file: our keys, or the references' files as they are: ``cfg_pretrain.yaml``
    (its Hydra ``defaults: [arch: NAME]`` pulls in ``arch/NAME.yaml`` beside it) or an
    ``arch/*.yaml`` alone."""
    data = _read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values")
    data = dict(data)
    if _is_arch_file(data):
        data = {"arch": data}
    defaults = data.get("defaults")
    for entry in defaults if isinstance(defaults, list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("arch"), str) and "arch" not in data:
            arch_file = Path(path).parent / "arch" / f"{entry['arch']}.yaml"
            arch_data = _read_yaml(arch_file) if arch_file.exists() else {"name": entry["arch"]}
            if not isinstance(arch_data, dict):
                raise ConfigError(f"{arch_file}: expected a mapping of keys to values")
            data["arch"] = arch_data
    # the references' Hydra / wandb / evaluator keys we do not use (evaluators: the dataset's builder scores)
    for k in ("defaults", "hydra", "data_path", "project_name", "checkpoint_path", "eval_save_outputs",
              "evaluators", "entity"):
        data.pop(k, None)
    arch = data.get("arch")
    if isinstance(arch, dict):
        arch = dict(arch)
        if "name" in arch:
            arch["name"] = arch_kind(arch["name"])
        if isinstance(arch.get("loss"), dict):
            arch["loss"] = {k: v for k, v in arch["loss"].items() if k != "name"}
        if isinstance(arch.get("puzzle_emb_ndim"), str) and "hidden_size" in arch["puzzle_emb_ndim"]:
            arch["puzzle_emb_ndim"] = arch.get("hidden_size", PAPER_ARCH["hidden_size"])
        data["arch"] = arch
    elif isinstance(arch, str):
        data["arch"] = {"name": arch_kind(arch)}
    flat = flatten(data)
    check_keys(flat, str(path))
    return {k: _coerce(k, v) for k, v in flat.items()}


def resolve(file_flat: dict[str, Any] | None = None, overrides: dict[str, Any] | None = None, *,
            gpu_available: bool = False) -> tuple[dict[str, Any], list[str]]:
    """Merge defaults, preset, file and overrides; returns (nested config, notes to print)."""
    file_flat, overrides = dict(file_flat or {}), dict(overrides or {})
    user = {**file_flat, **overrides}
    notes: list[str] = []
    preset = user.get("preset")
    if preset is not None and not (isinstance(preset, str) and preset in PRESETS):
        from .limits import show
        raise ConfigError(f"preset: unknown preset {show(preset)}; choose one of {sorted(PRESETS)}")
    if "arch.name" in user:
        user["arch.name"] = arch_kind(user["arch.name"])
    kind = user.get("arch.name") or (PRESETS[preset].get("arch", {}).get("name") if preset else None) or "hrm_v1"
    user_set_size = any(k.startswith("arch.") and k != "arch.name" for k in user)
    if preset is None and not gpu_available and not user_set_size:
        preset = "trm-cpu-small" if kind == "trm" else "cpu-small"
        notes.append(f"no GPU and no arch.* key or preset given: using preset={preset} "
                     f"(pass preset={'trm-sudoku-att' if kind == 'trm' else 'paper'} for the published model)")
    flat = flatten(DEFAULTS)
    if kind == "trm":  # TRM's architecture defaults under the preset and the user's keys
        flat.update(flatten({"arch": TRM_ARCH}))
    if preset is not None:
        flat.update(flatten(PRESETS[preset]))
    flat.update(user)
    flat["preset"] = preset
    cpu_run = not gpu_available or user.get("device") == "cpu"
    fit = cpu_run and "epochs" not in user and preset != "paper" and flat.get("cpu_fit_hours") is not None
    if fit:
        flat["epochs"] = None   # chosen before step 1 from a measured step time (hrm_model/eta.py)
    # warmup: steps (the reference's meaning) or examples (the user's rule), not both
    if user.get("lr_warmup_examples") is not None:
        if "lr_warmup_steps" in user and user["lr_warmup_steps"] is not None:
            raise ConfigError("give lr_warmup_steps or lr_warmup_examples, not both")
    validate_values(flat)
    if fit:
        notes.append(f"no epochs given on a CPU: hrm-train measures a few steps and chooses epochs and "
                     f"eval_interval for a run of about {flat['cpu_fit_hours']:g} h (cpu_fit_hours); "
                     "set epochs=N to choose yourself")
    return unflatten(flat), notes


def complete(flat: dict[str, Any]) -> dict[str, Any]:
    """A saved run's flat config with keys added since it was written, at their defaults."""
    base = flatten(DEFAULTS)
    if arch_kind(flat.get("arch.name")) == "trm":
        base.update(flatten({"arch": TRM_ARCH}))
    return {**base, **flat}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    try:  # an int beyond float range is not a usable number either
        return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)
    except OverflowError:
        return False


def validate_values(flat: dict[str, Any]) -> None:
    from .limits import check_config, show

    def need(key: str, ok: bool, want: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={show(flat[key])}: must be {want}")

    need("epochs", flat["epochs"] is None or (_is_int(flat["epochs"]) and flat["epochs"] >= 1),
         "an integer >= 1 (or null on a CPU: fitted to cpu_fit_hours)")
    trm = flat.get("arch.name") == "trm"
    for k in ("global_batch_size", "arch.H_cycles", "arch.L_cycles", "arch.H_layers", "arch.L_layers",
              "arch.hidden_size", "arch.num_heads", "arch.halt_max_steps", "log_every", "prefetch"):
        if k == "arch.H_layers" and trm:  # ignored by TRM; its arch yaml says 0
            need(k, _is_int(flat[k]) and flat[k] >= 0, "an integer >= 0")
            continue
        need(k, _is_int(flat[k]) and flat[k] >= 1, "an integer >= 1")
    need("min_eval_interval", _is_int(flat["min_eval_interval"]) and flat["min_eval_interval"] >= 0,
         "an integer >= 0")
    need("freeze_weights", isinstance(flat["freeze_weights"], bool), "true or false")
    need("accumulate_votes", flat["accumulate_votes"] is None or isinstance(flat["accumulate_votes"], bool),
         "true, false or null (the dataset's choice)")
    dp = flat.get("data_paths")
    need("data_paths", dp is None or (isinstance(dp, list) and len(dp) >= 1
                                      and all(isinstance(p, str) and p for p in dp)), "a list of dataset folders")
    if trm:
        need("arch.mlp_t", isinstance(flat["arch.mlp_t"], bool), "true or false")
        need("arch.no_ACT_continue", isinstance(flat["arch.no_ACT_continue"], bool), "true or false")
        need("arch.puzzle_emb_len", _is_int(flat["arch.puzzle_emb_len"]) and flat["arch.puzzle_emb_len"] >= 0,
             "an integer >= 0")
        if flat["arch.puzzle_emb_ndim"] == 0 and flat["arch.puzzle_emb_len"]:
            raise ConfigError("arch.puzzle_emb_len must be 0 when arch.puzzle_emb_ndim=0 (no puzzle embedding)")
    else:
        for k, neutral in TRM_ONLY_ARCH.items():
            if flat[f"arch.{k}"] not in (neutral, None):
                raise ConfigError(f"arch.{k}={show(flat[f'arch.{k}'])} is a Tiny Recursive Models key: "
                                  "add arch.name=trm (or pick a trm-* preset)")
        if flat["arch.pos_encodings"] == "none":
            raise ConfigError("arch.pos_encodings=none is for arch.name=trm; HRM takes rope or learned")
    for k in ("lr_warmup_steps", "arch.puzzle_emb_ndim", "seed", "num_workers", "checkpoint_every_steps",
              "debug_nan_at_step", "debug_sigkill_at_step", "keep_last"):
        need(k, _is_int(flat[k]) and flat[k] >= 0, "an integer >= 0")
    need("cpu_threads", flat["cpu_threads"] is None or (_is_int(flat["cpu_threads"]) and flat["cpu_threads"] >= 1),
         "an integer >= 1 or null")
    for k in ("eval_interval", "lr_warmup_examples", "eval_batch_size"):
        need(k, flat[k] is None or (_is_int(flat[k]) and flat[k] >= (0 if k == "lr_warmup_examples" else 1)),
             "an integer >= 1 or null" if k != "lr_warmup_examples" else "an integer >= 0 or null")
    for k in ("cpu_fit_hours", "cpu_max_hours"):   # at most about a year: the fit and the estimate stay sane
        need(k, flat[k] is None or (_is_num(flat[k]) and 0 < flat[k] <= 10_000), "a number of hours in (0, 10000] or null")
    for k in ("lr", "puzzle_emb_lr", "weight_decay", "puzzle_emb_weight_decay", "lr_min_ratio",
              "arch.halt_exploration_prob", "arch.expansion", "arch.rms_norm_eps", "arch.rope_theta"):
        need(k, _is_num(flat[k]) and flat[k] >= 0, "a number >= 0")
    for k in ("beta1", "beta2", "ema_rate"):
        need(k, _is_num(flat[k]) and 0 <= flat[k] < 1, "a number in [0, 1)")
    for k in ("checkpoint_every_eval", "ema", "force", "progress"):
        need(k, isinstance(flat[k], bool), "true or false")
    need("compile", flat["compile"] is None or isinstance(flat["compile"], bool), "true, false or null (auto)")
    for k, choices in CHOICES.items():
        need(k, flat[k] in choices, "one of " + ", ".join(str(c) for c in choices if c is not None))
    for k in ("run_name", "init_from"):
        need(k, flat[k] is None or isinstance(flat[k], str), "a string")
    need("runs_dir", isinstance(flat["runs_dir"], str) and flat["runs_dir"] != "", "a folder path")
    check_config(flat, ConfigError)
    if flat["arch.hidden_size"] % flat["arch.num_heads"] and not (trm and flat["arch.mlp_t"]):
        raise ConfigError(f"arch.hidden_size={flat['arch.hidden_size']} is not divisible by "
                          f"arch.num_heads={flat['arch.num_heads']}")
    if flat["eval_interval"] is not None and flat["epochs"] is not None and flat["epochs"] % flat["eval_interval"]:
        raise ConfigError(f"eval_interval={flat['eval_interval']} must divide epochs={flat['epochs']} "
                          "(the reference refuses this too)")


def arch_for_model(cfg: dict[str, Any]) -> dict[str, Any]:
    """The ``arch`` mapping to hand to ``build_model`` (loss separated)."""
    arch = copy.deepcopy(cfg["arch"])
    arch.pop("loss", None)
    if arch_kind(arch.get("name")) != "trm":
        for k in TRM_ONLY_ARCH:
            arch.pop(k, None)
    return arch


def to_yaml(cfg: dict[str, Any]) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)


def key_table() -> list[tuple[str, Any]]:
    return sorted(flatten(DEFAULTS).items())
