"""`hrm-train`: train, resume, evaluate and export HRM models on hrm-data datasets.

\b
  hrm-train DATA [--config FILE.yaml] [key=value ...]     train (the default command)
  hrm-train --resume runs/NAME [key=value ...]             continue a run from its newest checkpoint
  hrm-train --eval-only --checkpoint PATH [DATA] [key=value ...]
  hrm-train export runs/NAME|CHECKPOINT --out step_N       the reference's bare weight file
  hrm-train eval runs/NAME [--show N --png DIR]            evaluate: table, predictions.parquet, pictures
  hrm-train plot runs/A [runs/B ...] --png FILE            training curves (the viz extra)
  hrm-train keys                                           every config key with its default

Options of the main path (--config, --resume, --eval-only, --checkpoint, --out):
`hrm-train train --help`. Multi-GPU: `torchrun --nproc_per_node N -m hrm_model.cli DATA ...`.

Exit codes: 0 ok, 1 the run failed (e.g. NaN loss, diverged evaluation, disk full), 2 bad input
(unknown key, invalid dataset, plan error, unusable checkpoint), 3 internal error (a bug: rerun
with --debug or HRM_DEBUG=1 for the traceback), 130 interrupted (a checkpoint is written first).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click


class BadInput(click.ClickException):
    exit_code = 2


class DefaultGroup(click.Group):
    """A group whose unknown first word (a dataset path, an option) goes to the ``train`` command."""

    def parse_args(self, ctx, args):
        _refuse_dashed_keys(args)
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help", "--version")):
            args = ["train", *args]
        return super().parse_args(ctx, args)

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """The exit-code contract (hrm_model/errors.py) around every command."""
        from . import errors
        raw = list(sys.argv[1:] if args is None else args)
        debug = errors.debug_requested(raw)
        args = errors.strip_debug(raw)
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:  # Ctrl-C outside the training loop (nothing to save yet)
            click.echo("interrupted", err=True)
            sys.exit(errors.EXIT_INTERRUPTED)
        except Exception as e:
            sys.exit(errors.report_internal_error(e, debug, lambda m: click.echo(m, err=True)))
        sys.exit(rv if isinstance(rv, int) else 0)


def _refuse_dashed_keys(args) -> None:
    """``--epochs 5`` is hrm-data plan's syntax; hrm-train takes config values as ``epochs=5``."""
    from .config import DEFAULTS, KNOWN_KEYS, flatten
    for i, a in enumerate(args):
        if not a.startswith("--") or a == "--":
            continue
        name, eq, value = a[2:].partition("=")
        key = name.replace("-", "_")
        key = key if key in KNOWN_KEYS else (f"arch.{key}" if f"arch.{key}" in KNOWN_KEYS else None)
        if key is None:
            continue
        if not eq:
            nxt = args[i + 1] if i + 1 < len(args) else ""
            flag = isinstance(flatten(DEFAULTS).get(key), bool)
            value = nxt if nxt and not nxt.startswith("-") and "=" not in nxt and not flag else (
                "true" if flag else "VALUE")
        raise BadInput(f"{a.split('=')[0]}: hrm-train takes config values as key=value: write {key}={value}")


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=DefaultGroup, context_settings=CONTEXT, help=__doc__)
@click.version_option(package_name="hrm-data")
def main() -> None:
    pass


def _fail(e, echo_details: bool = True):
    from .train import TrainError
    if isinstance(e, TrainError):
        if echo_details and e.details:
            click.echo(e.details, err=True)
        if e.exit_code == 2:
            raise BadInput(str(e))
        if e.exit_code == 130:  # interrupted after writing a checkpoint: not an error
            click.echo(str(e), err=True)
            sys.exit(130)
        click.echo(f"Error: {e}", err=True)
        sys.exit(e.exit_code)
    raise e


def _split_args(args: tuple[str, ...]) -> tuple[list[str], list[str]]:
    positional = [a for a in args if "=" not in a]
    overrides = [a for a in args if "=" in a]
    return positional, overrides


@main.command("train", context_settings={**CONTEXT, "ignore_unknown_options": False})
@click.argument("args", nargs=-1)
@click.option("--config", "config_file", type=click.Path(), default=None, help="YAML file of config keys.")
@click.option("--resume", "resume", type=click.Path(), default=None, metavar="RUN",
              help="Continue the run in folder RUN from its newest checkpoint.")
@click.option("--eval-only", is_flag=True, help="Evaluate --checkpoint on the test split, no training.")
@click.option("--checkpoint", "checkpoint", type=click.Path(), default=None,
              help="Checkpoint (or run folder, or reference step_N file) for --eval-only.")
@click.option("--out", "out", type=click.Path(), default=None, help="With --eval-only: folder for predictions.")
def train_cmd(args, config_file, resume, eval_only, checkpoint, out) -> None:
    """Train on DATA. ARGS: the dataset folder, then key=value overrides (see `hrm-train keys`)."""
    from .config import ConfigError, load_file, parse_overrides, resolve, unflatten, validate_values
    positional, items = _split_args(args)
    data = positional[0] if positional else None
    if len(positional) > 1:  # several datasets trained as one (TRM's data_paths)
        if resume is not None or eval_only:
            raise BadInput(f"expected one dataset folder, got {positional}; config values are key=value")
        items = [*items, "data_paths=[" + ", ".join(json.dumps(p) for p in positional) + "]"]
    try:
        overrides = parse_overrides(items)
        file_flat = load_file(config_file) if config_file else {}
    except ConfigError as e:
        raise BadInput(str(e)) from None

    from . import train as T
    if resume is not None:
        from .runfiles import RunLock, newest_checkpoint, resume_config
        run_dir = Path(resume)
        if not run_dir.is_dir() or not (run_dir / "checkpoints").exists() and not (run_dir / "config.yaml").exists():
            raise BadInput(f"{resume}: not a run folder (no checkpoints/ or config.yaml)")
        # before reading anything: another hrm-train may be writing this run (rank 0 holds the lock)
        lock = None
        try:
            lock = RunLock(run_dir, T.BadInput) if os.environ.get("RANK", "0") == "0" else None
        except T.TrainError as e:
            _fail(e)
        try:
            try:  # the checkpoint's config is the truth; config.yaml is only compared
                saved, _ = newest_checkpoint(run_dir, click.echo, T.BadInput)
                flat, notes = resume_config(run_dir, saved, file_flat, overrides, T.BadInput)
            except T.TrainError as e:
                _fail(e)
            except T.ckpt.CheckpointError as e:
                raise BadInput(f"{resume}: {e}") from None
            data = data or saved.get("data_path")
            try:
                validate_values(flat)
            except ConfigError as e:
                raise BadInput(str(e)) from None
            try:
                T.run(data, unflatten(flat), resume=resume, echo=click.echo, notes=notes, resume_state=saved, lock=lock)
            except T.TrainError as e:
                _fail(e)
        finally:
            if lock is not None:
                lock.release()   # T.run released it already; a failure before it did not
        return

    import torch
    gpu = torch.cuda.is_available()
    if eval_only:
        if checkpoint is None:
            raise BadInput("--eval-only needs --checkpoint PATH")
        cfg, notes = None, []
        if file_flat or overrides:
            try:
                cfg, notes = resolve(file_flat, overrides, gpu_available=gpu)
            except ConfigError as e:
                raise BadInput(str(e)) from None
        try:
            T.eval_only(checkpoint, data, cfg, echo=click.echo, out_dir=out, notes=notes)
        except T.TrainError as e:
            _fail(e)
        return
    if checkpoint is not None:
        raise BadInput("--checkpoint is for --eval-only; to start from weights use init_from=PATH, "
                       "to continue a run use --resume RUN")
    if data is None and not {**file_flat, **overrides}.get("data_paths"):
        raise BadInput("missing DATA: the dataset folder to train on (e.g. hrm-train data/city epochs=100)")
    try:
        cfg, notes = resolve(file_flat, overrides, gpu_available=gpu)
    except ConfigError as e:
        raise BadInput(str(e)) from None
    try:
        T.run(data, cfg, echo=click.echo, notes=notes)
    except T.TrainError as e:
        _fail(e)


@main.command("export")
@click.argument("source", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(), help="File to write (e.g. step_750).")
@click.option("--compiled-prefix", is_flag=True,
              help="Prefix keys with _orig_mod. as the reference's torch.compile'd checkpoints are.")
@click.option("--ema", is_flag=True, help="Export the EMA weights (runs trained with ema=true).")
def export_cmd(source, out, compiled_prefix, ema) -> None:
    """Write the reference's bare weight file (torch.save of the state dict) from a run or checkpoint.

    SOURCE is a run folder (its newest checkpoint) or a checkpoint file. Load it back with
    init_from=PATH, or in sapientinc/HRM's evaluate.py / pretrain.py.
    """
    from . import checkpoint as ckpt
    try:
        obj = ckpt.load(source)
        if ckpt.is_full_checkpoint(obj):
            ckpt.check_full_checkpoint(obj)
        path = ckpt.export_weights(obj, out, compiled_prefix=compiled_prefix, ema=ema)
    except ckpt.CheckpointError as e:
        msg = str(e)
        raise BadInput(msg if msg.startswith(str(source)) else f"{source}: {msg}") from None
    except OSError as e:
        raise BadInput(f"{out}: cannot create ({e.strerror or e}); choose another --out") from None
    step = obj.get("step") if ckpt.is_full_checkpoint(obj) else None
    click.echo(f"wrote {path}" + (f" (step {step})" if step is not None else ""))


@main.command("eval", context_settings=CONTEXT)
@click.argument("run", type=click.Path())
@click.argument("args", nargs=-1)
@click.option("--checkpoint", default=None, metavar="N|FILE", help="Step number of RUN's checkpoint (default: the newest), or a file.")
@click.option("--out", default=None, type=click.Path(), help="Folder for predictions.parquet and predictions_<set>.npy "
              "(default: RUN/eval/step_N).")
@click.option("--show", default=0, type=click.IntRange(min=0), metavar="N", help="Draw N predictions as PNGs (needs --png).")
@click.option("--png", default=None, type=click.Path(), metavar="DIR", help="Folder for the --show pictures.")
@click.option("--only-wrong", is_flag=True, help="Draw only predictions that are not exactly right.")
def eval_cmd(run, args, checkpoint, out, show, png, only_wrong) -> None:
    """Evaluate RUN's checkpoint on the test split of DATA (default: the run's dataset).

    Prints a per-set table (accuracy, exact accuracy, q_halt accuracy, ACT steps, loss and the
    builder's task metric), writes predictions.parquet (one row per test example) and
    predictions_<set>.npy, and with --show N --png DIR draws input / label / prediction side by
    side with wrong cells marked. ARGS: DATA and runtime keys (device=, eval_batch_size=, force=).
    """
    from .config import ConfigError, parse_overrides
    positional, items = _split_args(args)
    if len(positional) > 1:
        raise BadInput(f"expected at most one dataset folder after RUN, got {positional}")
    try:
        cfg = parse_overrides(items) if items else None
    except ConfigError as e:
        raise BadInput(str(e)) from None
    other = sorted(set(cfg or {}) - {"device", "force", "eval_batch_size", "compile"})
    if other:
        raise BadInput(f"hrm-train eval takes only runtime keys (device, eval_batch_size, force, compile), "
                       f"not {', '.join(other)}: the checkpoint fixes the rest")
    from . import train as T
    from .eval_cmd import run_eval
    try:
        run_eval(run, positional[0] if positional else None, checkpoint, out, show, png, only_wrong, cfg=cfg, echo=click.echo)
    except T.TrainError as e:
        _fail(e)


@main.command("plot", context_settings=CONTEXT)
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--png", "png", required=True, type=click.Path(dir_okay=False), help="PNG file to write.")
@click.option("--title", default=None, help="Figure title (default: the run names).")
def plot_cmd(runs, png, title) -> None:
    """Training curves of one or more runs (train loss, lr, test exact accuracy, the task metric,
    ACT steps; against steps) from their metrics.jsonl, several runs on one figure. Needs the viz extra."""
    from hrm_data.extras import MissingExtra
    from hrm_data.pictures import PictureInputError, _writable
    from hrm_data.plot import plot_runs
    _writable(png, "--png")
    try:
        click.echo(f"wrote {plot_runs(list(runs), png, title=title)}")
    except (MissingExtra, FileNotFoundError) as e:
        raise PictureInputError(str(e)) from None
    except OSError as e:
        raise PictureInputError(f"{png}: cannot write ({e.strerror or e}); choose another --png") from None


@main.command("keys")
def keys_cmd() -> None:
    """List every config key: its default as YAML, and what it does."""
    from .config import PRESETS, key_table
    from .key_docs import key_lines
    click.echo("# hrm-train's keys and defaults; set them as key=value or in a --config YAML file")
    for line in key_lines(key_table()):
        click.echo(line)
    click.echo("\n# presets (preset=NAME): " + ", ".join(sorted(PRESETS)))


if __name__ == "__main__":
    main()
