"""The training loop: sapientinc/HRM's ``pretrain.py`` semantics on our data reader and model.

One optimizer step per batch of the group sampler; the ACT carry persists across batches (rows
that have not halted keep their example); the loss (a sum) is divided by the global batch size;
with several ranks the gradients are all-reduced (summed) before the step, the sparse puzzle
embedding's gradients are all-gathered by its optimizer, and rank 0 logs and checkpoints.
Every ``eval_interval`` epochs (one *iteration*) the whole test split is evaluated.

Entry point: :func:`run` (the CLI calls it; tests call it in-process).
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from hrm_data.predictions import save_table
from hrm_data.sampler import SamplerState, sampler_for_split

from . import checkpoint as ckpt
from . import errors, guards, interrupts, limits, runfiles
from .config import arch_for_model, to_yaml
from .data import TrainLoader, to_device
from .evaluate import attach_task_scores, evaluate, scores_every_eval, summary_line
from .optim import AdamATan2, lr_at


class TrainError(Exception):
    """Stops the run with a one-line message and an exit code (2 bad input, 1 failed run)."""

    def __init__(self, message: str, exit_code: int = 1, details: str | None = None):
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details


class BadInput(TrainError):
    def __init__(self, message: str, details: str | None = None):
        super().__init__(message, 2, details)


class NonFiniteLoss(TrainError):
    pass


class Interrupted(TrainError):
    """Ctrl-C / SIGTERM after the checkpoint was written: exit 130 with the resume command."""

    def __init__(self, message: str):
        super().__init__(message, 130)


_FIT_PREFIXES = ("size mismatch", "Missing key(s)", "Unexpected key(s)")


def _fit_error(what: str, e: Exception) -> BadInput:
    """load_state_dict's error as one useful line: its first informative line, and what to do."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    detail = next((l for l in lines if l.startswith(_FIT_PREFIXES)), lines[-1] if lines else type(e).__name__)
    if len(detail) > 200:
        detail = detail[:197] + "..."
    return BadInput(f"{what}: weights do not fit this model ({detail}); "
                    "pass the same preset / arch.* keys as the run that made it")


def _cannot_create(path: Any, e: OSError, option: str) -> BadInput:
    return BadInput(f"{path}: cannot create ({e.strerror or e}); choose another {option}")


# ----------------------------------------------------------------------------- devices, ranks

@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_pref: str) -> Dist:
    """torchrun sets RANK / WORLD_SIZE / LOCAL_RANK: join the process group (NCCL on CUDA, else gloo)."""
    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1 or "RANK" not in os.environ:
        return Dist()
    use_cuda = device_pref in ("auto", "cuda") and torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, True)


def pick_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if pref == "cuda":
        if not torch.cuda.is_available():
            raise BadInput("device=cuda but no CUDA GPU is available; use device=auto or device=cpu")
        return torch.device("cuda", local_rank)
    if pref == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise BadInput("device=mps but MPS is not available; use device=auto or device=cpu")
        return torch.device("mps")
    return torch.device("cpu")


def resolve_runtime(cfg: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Fill the device-dependent defaults: forward dtype (bf16 on CUDA) and compile (on for CUDA)."""
    cfg = copy.deepcopy(cfg)
    if cfg["arch"].get("forward_dtype") is None:
        cfg["arch"]["forward_dtype"] = "bfloat16" if device.type == "cuda" else "float32"
    if cfg.get("compile") is None:
        cfg["compile"] = device.type == "cuda"
    return cfg


# ----------------------------------------------------------------------------- checks before step 1

def check_dataset(data_path: "str | os.PathLike | list"):
    """Validate (refuse with the findings on error) and open the dataset; several paths (TRM's
    ``data_paths``) are each validated, then read as one (hrm_data.merge, identifiers offset)."""
    from hrm_data.format import Dataset, FormatError
    from hrm_data.merge import MergedDataset
    from hrm_data.validate import NotADataset, validate
    paths = [str(p) for p in data_path] if isinstance(data_path, (list, tuple)) else [str(data_path)]
    for path in paths:
        try:
            report = validate(path)
        except NotADataset as e:
            raise BadInput(str(e)) from None
        if not report.valid:
            raise BadInput(f"{path}: invalid dataset ({len(report.errors)} error(s)); fix or rebuild it "
                           f"(`hrm-data validate {path}`)", details=report.format_text())
    try:
        return Dataset(paths[0]) if len(paths) == 1 else MergedDataset(paths)
    except FormatError as e:
        raise BadInput(str(e)) from None


def make_plan(dataset, cfg: dict[str, Any], world_size: int):
    from hrm_data.format import FormatError
    from hrm_data.plan import compute_plan
    try:
        plan = compute_plan(dataset.train, cfg["global_batch_size"], cfg["epochs"], cfg["eval_interval"],
                            lr_warmup_steps=None if cfg.get("lr_warmup_examples") is not None else cfg["lr_warmup_steps"],
                            lr_warmup_examples=cfg.get("lr_warmup_examples"), world_size=world_size, seed=cfg["seed"])
    except (FormatError, ValueError) as e:
        raise BadInput(f"plan: {e}") from None
    if plan.errors:
        raise BadInput("plan: " + "; ".join(f"{w.code}: {w.message}" for w in plan.errors),
                       details=plan.format_text())
    if plan.total_steps <= 0:
        raise BadInput("plan: the run would make no optimizer step; lower global_batch_size or raise eval_interval",
                       details=plan.format_text())
    return plan


# ----------------------------------------------------------------------------- state

@dataclass
class State:
    step: int = 0
    sampler: SamplerState = field(default_factory=SamplerState)
    carry: Any = None
    pending_carry: Any = None    # saved carry, applied when the first batch gives its shapes
    best: dict[str, Any] = field(default_factory=dict)


class Logger:
    """metrics.jsonl (+ TensorBoard when installed) on rank 0."""

    def __init__(self, run_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
                self.tb = SummaryWriter(str(run_dir / "tensorboard"))
            except Exception:
                self.tb = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        except OSError as e:  # disk full: one line from run(); metrics.jsonl made a folder, say: bad input
            if runfiles.is_disk_error(e):
                raise
            raise BadInput(f"{self.path}: cannot append ({e.strerror or e}); it must be a writable file") from None
        if self.tb is not None:
            prefix = record.get("type", "train") + ("/" + record["set"] if "set" in record else "")
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "time"):
                    self.tb.add_scalar(f"{prefix}/{k}", v, record.get("step", 0))

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class EMA:
    """Exponential moving average of the weights, for evaluation and checkpoints.

    ``(1 - rate) * live + rate * shadow`` after every optimizer step, in that order of operations
    (TinyRecursiveModels' ``models/ema.py``, bit for bit). ``trainable_only`` (TRM's semantics)
    averages the trainable parameters only; otherwise the puzzle-embedding table is averaged too.
    """

    def __init__(self, module: torch.nn.Module, rate: float, trainable_only: bool = False):
        self.rate = rate
        self.names = [n for n, p in module.named_parameters() if p.requires_grad or not trainable_only]
        if not trainable_only:
            self.names += [n for n, b in module.named_buffers() if n.endswith("puzzle_emb.weights")]
        self.tensors = {n: t.detach().clone().float() for n, t in self._live(module).items()}

    def _live(self, module) -> dict[str, torch.Tensor]:
        named = dict(module.named_parameters())
        named.update({n: b for n, b in module.named_buffers() if n.endswith("puzzle_emb.weights")})
        return {n: named[n] for n in self.names}

    @torch.no_grad()
    def update(self, module) -> None:
        live = self._live(module)
        shadow = [self.tensors[n] for n in self.names]
        torch._foreach_mul_(shadow, self.rate)  # in place; a + b == b + a exactly, so still TRM's bits
        torch._foreach_add_(shadow, torch._foreach_mul([live[n].float() for n in self.names], 1.0 - self.rate))

    @torch.no_grad()
    def swap(self, module) -> None:
        """Exchange live and EMA values (call twice to restore)."""
        for n, t in self._live(module).items():
            tmp = t.detach().clone()
            t.copy_(self.tensors[n].to(t.dtype))
            self.tensors[n] = tmp.float()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: t.cpu().clone() for n, t in self.tensors.items()}

    def load_state_dict(self, sd: dict[str, torch.Tensor], device) -> None:
        self.tensors = {n: sd[n].to(device).float() for n in self.names}


# ----------------------------------------------------------------------------- the run

def default_run_name(data_path: str | os.PathLike) -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{Path(os.path.abspath(data_path)).name}-{stamp}"


def _unique_dir(runs_dir: Path, name: str) -> Path:
    d = runs_dir / name
    i = 2
    while d.exists():
        d = runs_dir / f"{name}-{i}"
        i += 1
    return d


def _broadcast_obj(obj: Any, dctx: Dist) -> Any:
    if dctx.world_size == 1:
        return obj
    box = [obj if dctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _build(cfg: dict[str, Any], meta, local_batch: int, device: torch.device):
    from .model import build_model
    with torch.device(device):
        model = build_model(arch_for_model(cfg), batch_size=local_batch, seq_len=meta.seq_len,
                            vocab_size=meta.vocab_size, num_puzzle_identifiers=meta.num_puzzle_identifiers,
                            loss_type=cfg["arch"].get("loss", {}).get("loss_type"))
    return model


def _optimizers(model, cfg: dict[str, Any], world_size: int):
    from .sparse_embedding import CastedSparseEmbeddingSignSGD
    opts, base_lrs = [], []
    emb = model.model.puzzle_emb_module()
    if emb is not None:
        opts.append(CastedSparseEmbeddingSignSGD(emb.buffers(), lr=0, weight_decay=cfg["puzzle_emb_weight_decay"],
                                                 world_size=world_size))
        base_lrs.append(cfg["puzzle_emb_lr"])
    if cfg.get("freeze_weights"):  # TRM's option: only the puzzle embeddings learn
        if emb is None:
            raise BadInput("freeze_weights=true trains the puzzle embeddings only, but this model has none "
                           "(arch.puzzle_emb_ndim=0)")
        return opts, base_lrs
    opts.append(AdamATan2(model.parameters(), lr=0, weight_decay=cfg["weight_decay"],
                          betas=(cfg["beta1"], cfg["beta2"])))
    base_lrs.append(cfg["lr"])
    return opts, base_lrs


def run(data_path: str | os.PathLike | None, cfg: dict[str, Any], *, resume: str | os.PathLike | None = None,
        echo: Callable[[str], None] = print, notes: list[str] = (), resume_state: dict | None = None,
        lock: runfiles.RunLock | None = None) -> Path:
    """Train (or resume) a run; returns the run folder. Raises TrainError on failure.

    ``resume_state``: the checkpoint dict of ``resume`` when the caller already loaded it;
    ``lock``: the run folder's lock when the caller took it first (released here at the end)."""
    where: dict[str, Any] = {"lock": lock}  # the run folder, once known (for the disk-full message), its lock
    dctx = setup_distributed(cfg.get("device", "auto"))
    try:
        return _run(data_path, cfg, resume, echo, list(notes), dctx, resume_state, where)
    except OSError as e:
        if runfiles.is_disk_error(e):  # disk full, quota, read-only, I/O error: the run failed, one line
            run_dir = where.get("run_dir")
            has_ckpt = run_dir is not None and bool(ckpt.list_checkpoints(run_dir))
            raise TrainError(f"{e.filename or run_dir or 'run folder'}: {e.strerror or e} while writing; nothing "
                             "half-written was left (files are written atomically); free space, then "
                             + (f"continue with: hrm-train --resume {shlex.quote(str(run_dir))}" if has_ckpt
                                else "start the run again"), 1) from None
        raise
    finally:
        if where.get("lock") is not None:
            where["lock"].release()
        if dctx.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def _run(data_path, cfg, resume, echo, notes, dctx: Dist, resume_state: dict | None = None,
         where: dict | None = None) -> Path:
    main = dctx.is_main
    say = echo if main else (lambda *_: None)
    where = where if where is not None else {}
    for n in notes:
        say(f"note: {n}")

    # ---- resume: the run folder's config and newest checkpoint
    saved = None
    run_dir: Path | None = None
    resumed_tag = None
    if resume is not None:
        run_dir = Path(resume)
        if not run_dir.is_dir():
            raise BadInput(f"{run_dir}: not a run folder")
        if main and where.get("lock") is None:   # before reading: another hrm-train may be writing this run
            where["lock"] = runfiles.RunLock(run_dir, BadInput)
        saved = resume_state if resume_state is not None else runfiles.newest_checkpoint(run_dir, say, BadInput)[0]
        resumed_tag = saved.get("tag")
        if data_path is None:
            data_path = cfg.get("data_path") or saved.get("data_path")
    if data_path is None and cfg.get("data_paths"):
        data_path = cfg["data_paths"][0]
    if data_path is None:
        raise BadInput("no dataset given")
    data_path = str(data_path)

    device = pick_device(cfg["device"], dctx.local_rank)
    cfg = resolve_runtime(cfg, device)
    if device.type == "cpu":
        from .eta import default_threads
        threads = cfg.get("cpu_threads") or default_threads()
        torch.set_num_threads(threads)
        say(f"note: training on the CPU with {threads} thread(s)"
            + ("" if cfg.get("cpu_threads") else " (the cores not busy now)")
            + "; set cpu_threads=N to change it (1 is fastest when other jobs share the cores)")

    dataset = check_dataset(cfg.get("data_paths") or data_path)
    _precheck_memory(cfg, dataset, device, dctx.world_size, data_path)   # before the probe builds the model
    from .eta import prepare as _prepare_eta
    cfg, plan, eta_line = _prepare_eta(cfg, dataset, device, dctx.world_size, fresh=resume is None, say=say,
                                make_plan=make_plan, broadcast=lambda o: _broadcast_obj(o, dctx))
    fingerprint = dataset.fingerprint()
    if saved is not None:
        try:
            w = ckpt.check_fingerprint(saved.get("fingerprint"), fingerprint, cfg["force"])
        except ckpt.CheckpointError as e:
            raise BadInput(str(e)) from None
        if w:
            say(f"warning: {w}")
        if saved.get("world_size", 1) != dctx.world_size:
            raise BadInput(f"checkpoint was written by {saved.get('world_size', 1)} rank(s), this run has "
                           f"{dctx.world_size}; resume with the same number of processes")

    train_split, test_split = dataset.train, dataset.test
    meta = train_split.metadata
    B = cfg["global_batch_size"]
    if (cfg["eval_batch_size"] or B) % dctx.world_size:
        raise BadInput(f"eval_batch_size={cfg['eval_batch_size']} is not divisible by the {dctx.world_size} ranks")
    local_B = B // dctx.world_size
    eval_B = _eval_batch(cfg["eval_batch_size"] or B, test_split, dctx.world_size,
                         say if cfg["eval_batch_size"] else (lambda *_: None))
    try:
        limits.check_against_data(cfg, meta, local_batch=local_B, eval_batch=eval_B // dctx.world_size,
                                  device=device, groups_per_epoch=sum(s.num_groups for s in train_split.sets.values()),
                                  error=BadInput)
    except BadInput as e:
        raise BadInput(f"{data_path}: {e}") from None
    warmup_steps = int(plan.warmup_steps)
    sched_total = int(plan.hrm_estimated_total_steps)
    epochs_per_iter = cfg["eval_interval"] or cfg["epochs"]
    total_iters = cfg["epochs"] // epochs_per_iter

    # ---- run folder (rank 0 decides the name; a failure there stops every rank)
    if run_dir is None:
        name: Any = None
        if main:
            runs_dir = Path(cfg["runs_dir"])
            if cfg["run_name"]:
                limits.check_run_name(cfg["run_name"], BadInput)
                run_dir_c = runs_dir / cfg["run_name"]
            else:
                run_dir_c = _unique_dir(runs_dir, default_run_name(data_path))
            try:
                run_dir_c.mkdir(parents=True, exist_ok=True)
                name = str(run_dir_c)
            except OSError as e:
                name = ("error", str(_cannot_create(run_dir_c, e, "runs_dir")))
            if isinstance(name, str):
                # the lock before the check, so a start racing another for one run_name stops here
                try:
                    where["lock"] = runfiles.RunLock(run_dir_c, BadInput)
                except BadInput as e:
                    name = ("error", str(e))
                if cfg["run_name"] and (run_dir_c / "config.yaml").exists():
                    name = ("error", f"{run_dir_c}: run already exists; continue it with "
                                     f"`hrm-train --resume {run_dir_c}` or choose another run_name")
        name = _broadcast_obj(name, dctx)
        if isinstance(name, (tuple, list)):
            raise BadInput(name[1])
        run_dir = Path(name)
    where["run_dir"] = run_dir
    if main:
        cfg_out = {"data_path": os.path.abspath(data_path), **cfg}
        try:  # atomic: a kill or a full disk never leaves a truncated config.yaml
            runfiles.atomic_write_text(run_dir / "config.yaml", to_yaml(cfg_out))
            runfiles.atomic_write_text(run_dir / "plan.json", json.dumps(plan.to_dict(), indent=2, default=str) + "\n")
        except OSError as e:
            if runfiles.is_disk_error(e):
                raise
            raise _cannot_create(run_dir, e, "runs_dir") from None
        removed = ckpt.remove_stale_temps(run_dir)
        if removed:
            say(f"note: removed {len(removed)} temporary file(s) left by an interrupted checkpoint write")

    say(plan.format_text(keys=True))
    say(eta_line)
    if plan.total_steps > sched_total > warmup_steps:
        say(f"note: the sampler gives {plan.total_steps} steps, HRM's schedule length is {sched_total}: "
            f"the reference would stop at step {sched_total}; we train every step and hold lr at "
            f"lr_min_ratio x lr after step {sched_total}")

    # ---- model, optimizers (seeded like the reference: seed + rank, then rank 0's weights broadcast)
    torch.manual_seed(cfg["seed"] + dctx.rank)
    model = _build(cfg, meta, local_B, device)
    if dctx.world_size > 1:
        with torch.no_grad():
            for t in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(t, src=0)
    from .model import count_parameters, export_reference_state_dict, load_reference_state_dict
    optimizers, base_lrs = _optimizers(model, cfg, dctx.world_size)
    ema_trainable_only = cfg["arch"].get("name") == "trm"  # TRM averages trainable parameters only
    ema = EMA(model, cfg["ema_rate"], ema_trainable_only) if cfg["ema"] else None

    state = State()
    if saved is not None:
        try:
            if len(saved["optimizers"]) != len(optimizers):
                raise ValueError(f"{len(saved['optimizers'])} optimizer states for {len(optimizers)} optimizers")
            load_reference_state_dict(model, saved["model"], strict=True)
            for o, sd in zip(optimizers, saved["optimizers"]):
                o.load_state_dict(sd)
            state.step = int(saved["step"])
            state.sampler = SamplerState.from_dict(saved["sampler"])
            per_rank = saved["ranks"][dctx.rank]
            ckpt.set_rng_state(per_rank["rng"])
            state.pending_carry = per_rank["carry"]
            if ema is not None and saved.get("ema") is not None:
                ema.load_state_dict(saved["ema"], device)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, ckpt.CheckpointError) as e:
            raise BadInput(f"{run_dir}: its newest checkpoint does not fit this model / run "
                           f"({type(e).__name__}: {errors.one_line(str(e), 160)}); delete it to fall back "
                           "to an older one") from None
        say(f"resumed {run_dir} at step {state.step} (iteration {state.sampler.iteration}, "
            f"batch {state.sampler.batch})")
    elif cfg.get("init_from"):
        try:
            obj = ckpt.load(cfg["init_from"])
            if ckpt.is_full_checkpoint(obj):
                ckpt.check_full_checkpoint(obj)
                w = ckpt.check_fingerprint(obj.get("fingerprint"), fingerprint, cfg["force"], "init_from checkpoint")
                if w:
                    say(f"warning: {w}")
            load_reference_state_dict(model, ckpt.weights_of(obj), strict=True)
        except ckpt.CheckpointError as e:
            msg = str(e)
            if not msg.startswith(str(cfg["init_from"])):
                msg = f"{cfg['init_from']}: {msg}"
            raise BadInput(f"init_from: {msg}") from None
        except RuntimeError as e:
            raise _fit_error(f"init_from {cfg['init_from']}", e) from None
        if ema is not None:
            ema = EMA(model, cfg["ema_rate"], ema_trainable_only)
        say(f"initialised weights from {cfg['init_from']}")

    raw_model = model
    if cfg["compile"]:
        model = torch.compile(model, dynamic=False)  # type: ignore[assignment]

    say(f"model: {count_parameters(raw_model):,} parameters; device {device}"
        f"{' x ' + str(dctx.world_size) + ' ranks' if dctx.world_size > 1 else ''}; "
        f"forward {cfg['arch']['forward_dtype']}; compile {cfg['compile']}; run folder {run_dir}")

    if resume is not None and main:
        # a "steps" checkpoint at an iteration's last step comes before that iteration's evaluation,
        # which the resume runs again: its lines at this step (if the kill came after them) go too
        junk = _truncate_metrics(run_dir / "metrics.jsonl", state.step, drop_eval_at_step=resumed_tag == "steps")
        if junk:
            say(f"note: dropped {junk} unreadable line(s) from {run_dir / 'metrics.jsonl'}")
    logger = Logger(run_dir, main)
    sampler = sampler_for_split(train_split, B, epochs_per_iter, cfg["seed"], dctx.rank, dctx.world_size)
    pin = device.type == "cuda"
    bar, bar_acc = None, 0.0
    if main and cfg["progress"]:
        from tqdm import tqdm
        bar = tqdm(total=plan.total_steps, initial=state.step, unit="step", dynamic_ncols=True,
                   file=sys.stderr, mininterval=0.5)

    def out(msg: str) -> None:  # keep the progress bar intact
        if bar is not None:
            bar.clear()
            say(msg)
            bar.refresh()
        else:
            say(msg)

    verified: set[int] = set()   # checkpoint steps whose state is known good (finite evaluation)
    best: dict[str, Any] = dict((saved or {}).get("best") or {})  # {"step", "exact_accuracy"}
    if resumed_tag == "eval" and saved is not None:
        verified.add(int(saved["step"]))
    watch = guards.DataWatch(guards.array_files(dataset))
    if main:
        guards.install_sigbus_message(data_path, run_dir)

    def save(next_sampler: SamplerState, tag: str) -> Path | None:
        ranks = [{"rng": ckpt.rng_state(), "carry": ckpt.carry_to_state(state.carry)}]
        if dctx.world_size > 1:
            gathered: list[Any] = [None] * dctx.world_size
            dist.all_gather_object(gathered, ranks[0])
            ranks = gathered
        if not main:
            return
        obj = {
            "format_version": ckpt.FORMAT_VERSION,
            "model": export_reference_state_dict(raw_model),
            "optimizers": [o.state_dict() for o in optimizers],
            "step": state.step,
            "sampler": next_sampler.to_dict(),
            "ranks": ranks,
            "ema": ema.state_dict() if ema is not None else None,
            "config": cfg,
            "data_path": os.path.abspath(data_path),
            "fingerprint": fingerprint,
            "world_size": dctx.world_size,
            "plan": plan.to_dict(),
            "tag": tag,
        }
        bad = guards.first_nonfinite(obj["model"].items()) or (
            guards.first_nonfinite(obj["ema"].items()) if obj["ema"] is not None else None)
        if bad is not None:
            last = guards.last_good_checkpoint(run_dir, state.step + 1, verified)
            raise TrainError(f"weights are not finite at step {state.step} ({bad}): no checkpoint written; "
                             + (f"last good checkpoint: {last}" if last else "no good checkpoint was written")
                             + " (lower lr, or check the data)", 1)
        changed = watch.changed()
        if changed:
            raise _data_changed(changed, run_dir)
        obj["best"] = dict(best)
        obj["score_state"] = ckpt.pack_score_state(score_state) if score_state else None
        path = ckpt.checkpoint_path(run_dir, state.step)
        try:
            ckpt.atomic_save(obj, path)
        except OSError as e:
            if not runfiles.is_disk_error(e):
                raise
            last = guards.last_good_checkpoint(run_dir, state.step + 1, verified)
            raise TrainError(f"{path}: {e.strerror or e} while writing the checkpoint; no partial file was left; "
                             + (f"last good checkpoint: {last}; free space, then continue with: "
                                f"hrm-train --resume {shlex.quote(str(run_dir))}" if last
                                else "no checkpoint was written yet; free space and start the run again"),
                             1) from None
        if tag == "eval":
            verified.add(state.step)
        runfiles.prune_checkpoints(run_dir, cfg.get("keep_last", 0),
                                   protect={best["step"]} if best.get("step") is not None else set())
        return path

    # the builder's task metric at every evaluation when the test split is small, else at the end
    n_test = sum(test_split.set(sn).num_examples for sn in test_split.metadata.sets)
    score_every_eval = bool(test_split.metadata.provenance.get("builder")) and (n_test <= 100_000
                                                                               or scores_every_eval(dataset))
    score_state: dict = {}   # kept across the run's evaluations (e.g. ARC's vote accumulation), and checkpointed
    if saved is not None and saved.get("score_state"):
        try:
            score_state.update(ckpt.unpack_score_state(saved["score_state"]))
        except Exception as e:  # noqa: BLE001  (a crafted or damaged file: refuse in one line)
            raise BadInput(f"{run_dir}: malformed hrm-train checkpoint: its task-score state is unusable "
                           f"({type(e).__name__})") from None
    if cfg.get("accumulate_votes") is not None:  # overrides the dataset's choice (TRM's evaluator: on)
        score_state["accumulate_votes"] = bool(cfg["accumulate_votes"])
    eval_count = [0]

    last_eval: dict[str, Any] = {}   # the final evaluation, for the summary at the end

    def do_eval(iteration: int, final: bool) -> None:
        if ema is not None:
            ema.swap(raw_model)
        per_example: dict = {}
        try:
            results, preds = evaluate(model, test_split, global_batch_size=eval_B,
                                      device=device, rank=dctx.rank, world_size=dctx.world_size,
                                      save_preds=final or score_every_eval,
                                      per_example=per_example if final or score_every_eval else None,
                                      progress=main and cfg["progress"])
        finally:
            if ema is not None:
                ema.swap(raw_model)
        changed = watch.changed()
        if changed:
            raise _data_changed(changed, run_dir)
        bad = guards.nonfinite_metric(results)
        if bad is not None:
            last = guards.last_good_checkpoint(run_dir, state.step + 1, verified)
            raise TrainError(f"evaluation at step {state.step} gave {bad}: the weights diverged, no checkpoint "
                             "written for this step; "
                             + (f"last good checkpoint: {last}" if last else "no good checkpoint was written")
                             + " (lower lr, or check the data)", 1)
        if results:
            score = min(float(m.get("exact_accuracy", 0.0)) for m in results.values())
            if best.get("exact_accuracy") is None or score > best["exact_accuracy"]:
                best.update(step=state.step, exact_accuracy=score)
        if not main:
            return
        epoch = (iteration + 1) * epochs_per_iter
        attach_task_scores(dataset, results, preds, out, per_example=per_example, evaluation=eval_count[0],
                           state=score_state, out_dir=run_dir)
        eval_count[0] += 1
        last_eval.update(results=results, preds=[run_dir / f"predictions_{n}.npy" for n in preds] if final else [])
        for set_name, m in results.items():
            if final and set_name in preds:
                np.save(run_dir / f"predictions_{set_name}.npy", preds[set_name])
            logger.write({"type": "eval", "step": state.step, "epoch": epoch, "set": set_name, **m, "time": time.time()})
            out(f"eval step {state.step} epoch {epoch} [{set_name}] {summary_line(m)}")
        if final:
            save_table(dataset, preds, per_example, run_dir, out)

    nan_step = int(cfg.get("debug_nan_at_step") or 0)
    kill_step = int(cfg.get("debug_sigkill_at_step") or 0)
    every = int(cfg.get("checkpoint_every_steps") or 0)
    t0 = time.time()
    stop = interrupts.StopRequest(out)
    clock = interrupts.WallClock(cfg.get("checkpoint_every_minutes") or 0)
    try:
        stop.__enter__()
        for it in range(state.sampler.iteration, total_iters):
            model.train()
            start_batch = state.sampler.batch if it == state.sampler.iteration else 0
            loader = TrainLoader(train_split, sampler, it, start_batch, threaded=cfg["num_workers"] > 0,
                                 prefetch=cfg["prefetch"], pin=pin)
            steps_this_iter = max(1, sampler.steps_per_iteration(it))  # for the fractional epoch of train lines
            for b, cpu_batch in loader:
                batch = to_device(cpu_batch, device)
                if state.carry is None:
                    with torch.device(device):
                        state.carry = raw_model.initial_carry(batch)
                    if state.pending_carry is not None:
                        state.carry = ckpt.carry_from_state(state.carry, state.pending_carry, device)
                        state.pending_carry = None
                state.step += 1
                lrs = [lr_at(state.step, base, warmup_steps=warmup_steps, total_steps=sched_total,
                             min_ratio=cfg["lr_min_ratio"]) for base in base_lrs]

                state.carry, loss, metrics, _, _ = model(carry=state.carry, batch=batch, return_keys=())
                if nan_step and state.step == nan_step:
                    loss = loss * float("nan")
                ((1.0 / B) * loss).backward()

                # One host sync per step: the finiteness flag, the loss and the metrics travel together
                # (one all-reduce across ranks), before the optimizer step so a NaN never reaches the weights.
                log_now = state.step % cfg["log_every"] == 0 or state.step == 1 or state.step == plan.total_steps
                keys = sorted(metrics) if (log_now or cfg["progress"]) else []
                vals = torch.stack([torch.isfinite(loss.detach()).to(torch.float32), loss.detach().to(torch.float32)]
                                   + [metrics[k].detach().to(torch.float32) for k in keys]
                                   + [torch.tensor(float(stop.requested), device=loss.device),
                                      torch.tensor(float(clock.due()), device=loss.device)])
                if dctx.world_size > 1:
                    dist.all_reduce(vals)
                host = vals.cpu().tolist()
                if host[0] < dctx.world_size:
                    last = guards.last_good_checkpoint(run_dir, state.step, verified)
                    raise NonFiniteLoss(
                        f"loss is {float(loss.detach())} at step {state.step}: stopped before the optimizer step; "
                        + (f"last good checkpoint: {last}" if last else "no checkpoint was written yet")
                        + " (lower lr, or check the data)")

                if dctx.world_size > 1:
                    for p in raw_model.parameters():
                        if p.grad is not None:
                            dist.all_reduce(p.grad)
                for o, lr in zip(optimizers, lrs):
                    for g in o.param_groups:
                        g["lr"] = lr
                    o.step()
                    o.zero_grad()
                if ema is not None:
                    ema.update(raw_model)
                state.sampler = b.next_state

                stop_now, time_due = host[-2] > 0, host[-1] > 0  # any rank: all ranks agree
                host = host[:-2]
                if keys and main:
                    v = dict(zip(keys, host[2:]))
                    count = max(v.get("count", 0.0), 1.0)
                    rec = {k: (x / B if k.endswith("loss") else x / count) for k, x in v.items() if k != "count"}
                    rec.update(count=int(v.get("count", 0)), lr=lrs[-1], loss=host[1] / B)
                    if bar is not None:
                        if rec["count"]:  # accuracy exists only for rows that halted this step
                            bar_acc = rec.get("accuracy", 0.0)
                        bar.update(state.step - bar.n)
                        bar.set_postfix(loss=f"{rec['loss']:.4f}", acc=f"{bar_acc:.3f}",
                                        lr=f"{lrs[-1]:.2e}", refresh=False)
                    if log_now:
                        # epoch: fractional, epochs completed after this step (eval lines: whole epochs);
                        # time: Unix seconds, on every line (docs/trainer.md, "Run folder")
                        done = min(1.0, state.sampler.batch / steps_this_iter)
                        logger.write({"type": "train", "step": state.step,
                                      "epoch": round((it + done) * epochs_per_iter, 4), **rec, "time": time.time()})

                if (every and state.step % every == 0) or stop_now or time_due:
                    path = save(state.sampler, "steps")
                    clock.reset()
                    if stop_now:
                        raise Interrupted(f"interrupted ({stop.signal_name or 'signal'}) at step {state.step}: "
                                          f"checkpoint {path} written; continue with: "
                                          f"hrm-train --resume {shlex.quote(str(run_dir))}")
                if kill_step and state.step == kill_step:
                    os.kill(os.getpid(), signal.SIGKILL)
            # ---- end of iteration: evaluate, checkpoint
            final = it == total_iters - 1
            if final or it >= cfg.get("min_eval_interval", 0):  # TRM's min_eval_interval, in iterations
                do_eval(it, final)
            state.sampler = SamplerState(it + 1, 0)
            stopping = _any_rank(stop.requested, dctx)
            if cfg["checkpoint_every_eval"] or final or stopping:
                path = save(state.sampler, "eval")
                clock.reset()
                if stopping and not final:
                    raise Interrupted(f"interrupted ({stop.signal_name}) at step {state.step}: checkpoint {path} "
                                      f"written; continue with: hrm-train --resume {shlex.quote(str(run_dir))}")
    finally:
        stop.__exit__(None, None, None)
        guards.remove_sigbus_message()
        if bar is not None:
            bar.close()
        logger.close()
    say(f"done: {state.step} steps in {time.time() - t0:.1f} s; run folder {run_dir}")
    if last_eval.get("results"):
        from .report import final_summary
        builder = test_split.metadata.provenance.get("builder")
        say(final_summary(last_eval["results"], run_dir=run_dir, checkpoint=ckpt.latest_checkpoint(run_dir),
                          predictions=last_eval["preds"], steps=state.step, seconds=time.time() - t0,
                          task_name=builder, task_description=_builder_description(builder)))
    return run_dir


def _precheck_memory(cfg, dataset, device, world_size: int, data_path) -> None:
    """The memory refusal of limits.check_against_data, before anything builds the model."""
    B = cfg["global_batch_size"]
    try:
        limits.check_against_data(cfg, dataset.train.metadata, local_batch=max(1, B // world_size),
                                  eval_batch=max(1, (cfg["eval_batch_size"] or B) // world_size), device=device,
                                  groups_per_epoch=sum(s.num_groups for s in dataset.train.sets.values()),
                                  error=BadInput)
    except BadInput as e:
        raise BadInput(f"{data_path}: {e}") from None


def _builder_description(name: str | None) -> str | None:
    if not name:
        return None
    try:
        from hrm_data import registry
        return registry.get(name).description or None
    except Exception:   # an uninstalled plugin: the summary goes without its description
        return None


def _truncate_metrics(path: Path, step: int, drop_eval_at_step: bool = False) -> int:
    """On resume, drop the lines a killed run logged after the checkpoint (they are redone).

    ``drop_eval_at_step``: the checkpoint was written before the evaluation at ``step`` (tag
    "steps"), so the resumed run evaluates again; its earlier eval lines at ``step`` go as well.
    Lines that are not records (cut by a kill, junk) go too; returns how many.
    """
    return runfiles.truncate_metrics(path, step, drop_eval_at_step)


def _any_rank(flag: bool, dctx: Dist) -> bool:
    if dctx.world_size == 1:
        return bool(flag)
    t = torch.tensor([float(flag)])
    dist.all_reduce(t)
    return bool(t.item() > 0)


def _data_changed(what: str, run_dir: Path | None) -> TrainError:
    return BadInput(f"{what} while training: the run stopped before using it"
                    + (f"; restore the dataset and resume with `hrm-train --resume {run_dir}`" if run_dir else ""))


def _eval_batch(requested: int, test_split, world_size: int, say: Callable[[str], None]) -> int:
    """The evaluation batch, never larger than the biggest test set (rounded up to the ranks):
    eval_batch_size=100000 on 32 examples would pad every batch to 100,000 rows."""
    n = max((test_split.set(s).num_examples for s in test_split.metadata.sets), default=0)
    cap = max(world_size, -(n // -world_size) * world_size)
    if requested > cap:
        say(f"note: evaluation batch {requested} is larger than the test set ({n} examples): using {cap}")
        return cap
    return requested


# ----------------------------------------------------------------------------- eval-only

def eval_only(checkpoint_path: str | os.PathLike, data_path: str | None, cfg: dict[str, Any] | None,
              echo: Callable[[str], None] = print, out_dir: str | None = None,
              notes: list[str] = ()) -> dict[str, dict[str, float]]:
    """Evaluate a checkpoint (ours, or a reference weight file with ``cfg`` giving the arch).

    ``notes``: what resolving ``cfg`` decided (e.g. the automatic cpu-small preset); printed when
    ``cfg`` gives the architecture, i.e. for a bare weight file.
    """
    if out_dir is not None:  # before any work: a folder we cannot write is known now
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise _cannot_create(out_dir, e, "--out") from None
    try:
        obj = ckpt.load(checkpoint_path)
        if ckpt.is_full_checkpoint(obj):
            ckpt.check_full_checkpoint(obj)
        else:
            ckpt.weights_of(obj)  # refuse what is neither a checkpoint nor a state dict
    except ckpt.CheckpointError as e:
        msg = str(e)
        raise BadInput(msg if msg.startswith(str(checkpoint_path)) else f"{checkpoint_path}: {msg}") from None
    full = ckpt.is_full_checkpoint(obj)
    if full:
        base = obj["config"]
        if cfg is not None:  # only runtime keys may change
            base = {**base, **{k: v for k, v in cfg.items() if k in ("device", "force", "eval_batch_size", "compile")}}
        cfg = base
        data_path = data_path or cfg.get("data_paths") or obj.get("data_path")
    if cfg is None:
        raise BadInput("a bare weight file needs the architecture: pass the same arch.* keys or preset as in training")
    if not full:
        for n in notes:
            echo(f"note: {n}")
    if data_path is None:
        raise BadInput("no dataset given")
    device = pick_device(cfg.get("device", "auto"))
    cfg = resolve_runtime(cfg, device)
    dataset = check_dataset(data_path)
    if full:
        try:
            w = ckpt.check_fingerprint(obj.get("fingerprint"), dataset.fingerprint(), cfg.get("force", False))
        except ckpt.CheckpointError as e:
            raise BadInput(str(e)) from None
        if w:
            echo(f"warning: {w}")
    meta = dataset.train.metadata if dataset.has_split("train") else dataset.test.metadata
    B = _eval_batch(cfg.get("eval_batch_size") or cfg["global_batch_size"], dataset.test, 1,
                    echo if cfg.get("eval_batch_size") else (lambda *_: None))
    try:
        limits.check_against_data({**cfg, "eval_interval": 1}, meta, local_batch=cfg["global_batch_size"],
                                  eval_batch=B, device=device, groups_per_epoch=0, error=BadInput)
    except BadInput as e:
        raise BadInput(f"{checkpoint_path}: {e}") from None
    model = _build(cfg, meta, cfg["global_batch_size"], device)
    from .model import load_reference_state_dict
    weights = dict(ckpt.weights_of(obj))
    if full and obj.get("ema") is not None:
        weights.update(obj["ema"])
        echo("evaluating the EMA weights")
    try:
        load_reference_state_dict(model, weights, strict=True)
    except RuntimeError as e:
        raise _fit_error(str(checkpoint_path), e) from None
    per_example: dict = {}
    results, preds = evaluate(model, dataset.test, global_batch_size=B, device=device, save_preds=True,
                              per_example=per_example, progress=bool(cfg.get("progress", True)))
    attach_task_scores(dataset, results, preds, echo, per_example=per_example, out_dir=out_dir)
    for set_name, m in results.items():
        echo(f"eval [{set_name}] {summary_line(m)}")
        if out_dir is not None and set_name in preds:
            try:
                np.save(Path(out_dir) / f"predictions_{set_name}.npy", preds[set_name])
            except OSError as e:
                raise _cannot_create(Path(out_dir) / f"predictions_{set_name}.npy", e, "--out") from None
    if out_dir is not None:
        save_table(dataset, preds, per_example, out_dir, echo)
    return results
