"""`hrm-data`: build, validate, plan and look at HRM puzzle datasets.

Every command keeps imports inside its body so `hrm-data --help` stays fast.
Exit codes (hrm_data/errors.py): 0 ok, 1 checked and found wrong, 2 bad usage or input that cannot
be read, 3 internal error (a bug: --debug shows the traceback), 130 interrupted.
"""
from __future__ import annotations

import sys

import click

from .errors import ContractGroup, debug_option


class BadInput(click.ClickException):
    """Input we cannot work with: one line on stderr, exit code 2."""

    exit_code = 2


def _open(path: str):
    from .format import Dataset, FormatError
    try:
        return Dataset(path)
    except FormatError as e:
        raise BadInput(str(e)) from None


@click.group(cls=ContractGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="hrm-data")
@debug_option
def main() -> None:
    """Build, check and plan datasets for Hierarchical Reasoning Models (HRM).

    \b
    Typical use:
      hrm-data build city-logistics      # writes data/city
      hrm-data validate data/city        # every way the dataset can be wrong
      hrm-data plan data/city --global-batch-size 32 --epochs 100 --eval-interval 10
      hrm-train data/city                # train (needs the torch extra)
    """


# ----------------------------------------------------------------------------- builders

@main.command("builders", short_help="List installed dataset builders.")
def builders_cmd() -> None:
    """List installed dataset builders."""
    from . import registry
    for name in registry.names():
        try:
            b = registry.get(name)
            click.echo(f"{name:20s} {b.description}  (default --out {b.default_out})")
        except Exception as e:  # a broken third-party plugin must not hide the others
            click.echo(f"{name:20s} [failed to load: {e}]")


class BuildGroup(click.Group):
    """`hrm-data build NAME [options]`: each builder is a subcommand with its own options."""

    def list_commands(self, ctx):
        from . import registry
        return registry.names()

    def get_command(self, ctx, name):
        from . import registry
        try:
            builder = registry.get(name)
        except registry.UnknownBuilder as e:
            raise BadInput(e.args[0]) from None
        return _builder_command(builder)


def _builder_command(builder) -> click.Command:
    params = [
        click.Option(["--out", "-o"], default=builder.default_out, show_default=True,
                     help="Dataset directory to write."),
        click.Option(["--force"], is_flag=True,
                     help="Replace an existing dataset (or empty folder) at --out; anything else is never touched."),
        click.Option(["--quiet", "-q"], is_flag=True, help="No progress bar."),
    ]
    for opt in builder.options:
        kwargs = dict(default=opt.default, show_default=True, help=opt.help)
        if opt.choices:
            kwargs["type"] = click.Choice(list(opt.choices))
        elif opt.type is not None:
            kwargs["type"] = opt.type
        if isinstance(opt.default, bool):
            flag = opt.name.replace("_", "-")
            params.append(click.Option([f"--{flag}/--no-{flag}", opt.name], **kwargs))
        else:
            params.append(click.Option([f"--{opt.name.replace('_', '-')}", opt.name], **kwargs))

    def run(out, force, quiet, **options):
        from .builder import build
        from .format import DatasetExistsError
        try:
            path = build(builder, out, options, force=force, progress=not quiet)
        except DatasetExistsError as e:
            raise BadInput(str(e)) from None
        except (ValueError, RuntimeError) as e:  # bad options, or options no scenario can satisfy
            raise BadInput(f"{builder.name}: {e}") from None
        except OSError as e:
            raise BadInput(f"{out}: cannot write the dataset here ({e.strerror or e}); choose another --out") from None
        report = builder.report()
        extra = "".join(f", {k}={v}" for k, v in report.items())
        click.echo(f"wrote {path}{extra}")

    return click.Command(builder.name, params=params, callback=run, short_help=builder.description,
                         help=f"{builder.description}\n\nWrites {builder.default_out} unless --out is given. The same "
                              "options give the same bytes; the build is atomic (nothing is left at --out if it fails).")


@main.group("build", cls=BuildGroup, short_help="Build a dataset with an installed builder.")
def build_cmd() -> None:
    """Build a dataset with an installed builder (see `hrm-data builders`)."""


# ----------------------------------------------------------------------------- validate

@main.command("validate", short_help="Find every way a dataset can be wrong.")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--deep", is_flag=True, help="Also run the builder's own domain check (slower).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def validate_cmd(path: str, as_json: bool, deep: bool, quiet: bool) -> None:
    """Find every way the dataset at PATH can be wrong.

    Exit 0: valid (warnings allowed); 1: errors found; 2: PATH is not a dataset.
    """
    from .validate import run_cli
    sys.exit(run_cli(path, as_json=as_json, deep=deep, progress=not quiet and not as_json))


# ----------------------------------------------------------------------------- plan

@main.command("plan", short_help="HRM's step / epoch / warmup arithmetic, with warnings.")
@click.argument("path", type=click.Path())
@click.option("--global-batch-size", "-b", type=click.IntRange(min=1), default=None,
              help="Examples per optimizer step, all ranks together. Default: hrm-train's (768; 32 with its CPU preset).")
@click.option("--epochs", "-e", type=click.IntRange(min=1), required=True, help="Training epochs (one epoch = one puzzle per group).")
@click.option("--eval-interval", "-i", type=click.IntRange(min=1), default=None, help="Epochs per iteration (between evaluations). Default: epochs.")
@click.option("--lr-warmup-steps", type=click.IntRange(min=0), default=None, help="Warmup in optimizer steps (HRM's meaning).")
@click.option("--lr-warmup-examples", type=click.IntRange(min=0), default=None, help="Warmup in examples (the 2x-examples rule); converted to steps.")
@click.option("--world-size", type=click.IntRange(min=1), default=1, show_default=True, help="Number of ranks (GPUs).")
@click.option("--seed", type=int, default=0, show_default=True, help="Sampler seed (matters when puzzles have several examples).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def plan_cmd(path, global_batch_size, epochs, eval_interval, lr_warmup_steps, lr_warmup_examples, world_size, seed, as_json) -> None:
    """HRM's step / epoch / warmup arithmetic for the dataset at PATH, as its sampler behaves.

    Counts what HRM's training loop really does (one puzzle per group per epoch, EVAL_INTERVAL
    epochs per iteration, only each iteration's last partial batch dropped), compares it with the
    schedule length HRM computes from dataset.json, and warns about configurations that silently
    train badly. See docs/training-math.md.

    Exit 0: plan printed (warnings allowed); 1: HRM would refuse or train zero steps; 2: PATH is
    not a dataset.
    """
    if lr_warmup_steps is not None and lr_warmup_examples is not None:
        raise BadInput("give --lr-warmup-steps or --lr-warmup-examples, not both")
    from .plan import TRAINER_DEFAULT_BATCH, TRAINER_CPU_BATCH, run_cli
    if global_batch_size is None:
        global_batch_size = TRAINER_DEFAULT_BATCH
        click.echo(f"note: no -b given: global batch {TRAINER_DEFAULT_BATCH}, hrm-train's default (preset=paper, and "
                   f"every GPU run); on a CPU hrm-train's cpu-small preset uses {TRAINER_CPU_BATCH}: pass "
                   f"-b {TRAINER_CPU_BATCH} to plan that run", err=True)
    sys.exit(run_cli(path, global_batch_size=global_batch_size, epochs=epochs, eval_interval=eval_interval,
                     lr_warmup_steps=lr_warmup_steps, lr_warmup_examples=lr_warmup_examples,
                     world_size=world_size, seed=seed, as_json=as_json))


# ----------------------------------------------------------------------------- show

@main.command("show", short_help="Print one example as a (coloured) text grid.")
@click.argument("path", type=click.Path())
@click.option("--split", type=click.Choice(["train", "test"]), default="train", show_default=True)
@click.option("--index", "-i", type=int, default=0, show_default=True, help="Example index within the set (the split's only set, usually).")
@click.option("--set", "set_name", default=None, help="Set name (default: the split's first set).")
@click.option("--color/--no-color", default=None, help="Colour output (default: when the terminal supports it).")
@click.option("--png", "png", type=click.Path(dir_okay=False), default=None,
              help="Also draw the example to this PNG file (input and label, the dataset's palette; needs the viz extra).")
def show_cmd(path, split, index, set_name, color, png) -> None:
    """Print one example as a text grid: input, label, identifier name and group."""
    from .format import FormatError
    from .render import describe_example
    ds = _open(path)
    if png:
        from .pictures import show_png
        show_png(ds, split, index, set_name, png)
    try:
        text = describe_example(ds, split, index, set_name=set_name,
                                color=sys.stdout.isatty() if color is None else color)
    except (FormatError, IndexError, KeyError) as e:
        raise BadInput(str(e).strip("'\"")) from None
    except (ValueError, TypeError) as e:  # arrays that do not fit their metadata
        raise BadInput(f"{path}: cannot display {split} example {index} ({e}); run `hrm-data validate {path}`") from None
    click.echo(text)


@main.command("view", short_help="One self-contained HTML page to browse a dataset or a run's predictions.")
@click.argument("path", type=click.Path())
@click.option("--html", "html_out", type=click.Path(dir_okay=False), required=True, help="HTML file to write.")
@click.option("--predictions", type=click.Path(), default=None, metavar="RUN",
              help="A run or eval folder (or predictions.parquet): browse its test predictions, wrong cells marked.")
@click.option("--limit", type=click.IntRange(min=1), default=3000, show_default=True,
              help="Examples embedded at most (a seeded sample spread over split and set; the page shows the counts).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample.")
def view_cmd(path, html_out, predictions, limit, seed) -> None:
    """Write one HTML file (no server, no network) to browse PATH: split, set, group, puzzle,
    example; filter correct / wrong; keys: left/right (j/k) example, Shift+arrow group, w wrong only."""
    from .pictures import view
    click.echo(view(_open(path), html_out, predictions, limit, seed))


@main.command("fingerprint", short_help="Print the dataset's content fingerprint.")
@click.argument("path", type=click.Path())
def fingerprint_cmd(path) -> None:
    """Print the dataset's content fingerprint (what checkpoints record)."""
    from .format import FormatError
    ds = _open(path)
    try:
        click.echo(ds.fingerprint())
    except FormatError as e:
        raise BadInput(str(e)) from None


# ----------------------------------------------------------------------------- interop (convert, import, stats)

from .cli_interop import register as _register_interop  # noqa: E402

_register_interop(main, BadInput)


if __name__ == "__main__":
    main()
