"""`hrm-data convert`, `import` and `stats`: registered on the main group by cli.py.

Kept in their own module so cli.py stays a thin list of commands; imports stay inside the
command bodies so `hrm-data --help` stays fast.
"""
from __future__ import annotations

import sys

import click


def register(main: click.Group, BadInput: type) -> None:
    @main.command("convert", short_help="Copy a dataset between npy, Parquet and Zarr.")
    @click.argument("src", type=click.Path())
    @click.argument("dst", type=click.Path())
    @click.option("--format", "fmt", type=click.Choice(["npy", "parquet", "zarr"]), default=None,
                  help="Output format. Default: from DST's name (*.parquet, *.zarr, else an npy folder).")
    @click.option("--force", is_flag=True, help="Replace an existing dataset at DST (never anything else).")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
    def convert_cmd(src, dst, fmt, force, quiet) -> None:
        """Copy the dataset at SRC (npy folder, Parquet file or Zarr store) to DST.

        \b
        Arrays keep their exact dtypes and dataset.json is copied verbatim, so a round trip gives
        the same fingerprint. Streams in bounded memory; atomic (nothing is left at DST if it fails).
        Zarr needs the optional extra: pip install 'hrm-data[zarr]'.
        \b
          hrm-data convert data/city data/city.parquet     # one row per example, for pandas / HF datasets
          hrm-data convert data/city data/city.zarr        # chunked, compressed; hrm-train reads it directly
          hrm-data convert data/city.zarr data/city-npy    # back to HRM's npy folder
        """
        from .convert import convert
        from .format import DatasetExistsError, FormatError
        try:
            out = convert(src, dst, fmt, force=force, progress=not quiet)
        except (FormatError, DatasetExistsError, ValueError) as e:
            raise BadInput(str(e)) from None
        except OSError as e:
            raise BadInput(f"{dst}: cannot write here ({e.strerror or e}); choose another DST") from None
        click.echo(f"wrote {out}")

    @main.command("import", short_help="Import your own tasks from JSONL or Parquet records.")
    @click.argument("file", type=click.Path())
    @click.option("--out", "-o", required=True, help="Dataset directory to write.")
    @click.option("--pad-to", default="auto", show_default=True,
                  help="Frame size: HxW for grids (e.g. 30x30), a length for sequences; auto = the largest one.")
    @click.option("--eos/--no-eos", default=None,
                  help="Mark each grid's extent with <eos> tokens as HRM's ARC builder does "
                       "(default: on for grids, off for sequences).")
    @click.option("--dihedral", is_flag=True,
                  help="Add the 8 rotations/reflections of every training puzzle as variants in its group (grids only).")
    @click.option("--test-fraction", type=float, default=None,
                  help="Put this share of the groups whose records carry no split into test (seeded, whole groups).")
    @click.option("--seed", type=int, default=0, show_default=True, help="Seed of the --test-fraction draw.")
    @click.option("--vocab", default=None,
                  help="The values records may hold, in token order: a JSON list, a JSON object value -> name, "
                       "a file holding either, or a,b,c. Default: the integers 0..largest value seen.")
    @click.option("--no-identifiers", is_flag=True,
                  help="One shared puzzle identifier instead of one per puzzle (no per-puzzle embedding).")
    @click.option("--skip-bad", is_flag=True, help="Import the good records and report how many bad ones were skipped.")
    @click.option("--force", is_flag=True, help="Replace an existing dataset at --out (never anything else).")
    @click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
    def import_cmd(file, out, pad_to, eos, dihedral, test_fraction, seed, vocab, no_identifiers, skip_bad, force,
                   quiet) -> None:
        """Build a dataset from FILE: one JSON object per line (.jsonl) or one Parquet row per example.

        \b
        {"split": "train", "group": "g1", "puzzle": "p1", "input": [[0,1],[1,0]], "output": [[1,0],[0,1]]}
        \b
        input/output: 2-D grids or 1-D sequences of small integers. split may be left out with
        --test-fraction; puzzle defaults to group; "identifier" (optional) names the puzzle embedding.
        Records of a group need not be adjacent. Every malformed record is reported with its line
        (JSONL, from 1) or row (Parquet, from 0); exit 2 unless --skip-bad. See docs/own-tasks.md.
        """
        from .format import DatasetExistsError
        from .importer import ImportError_, Options, import_records, parse_pad_to, parse_vocab
        try:
            values, names = parse_vocab(vocab)
            opts = Options(out=out, pad_to=parse_pad_to(pad_to), eos=eos, dihedral=dihedral,
                           test_fraction=test_fraction, seed=seed, vocab=values, vocab_names=names,
                           no_identifiers=no_identifiers, skip_bad=skip_bad, force=force, progress=not quiet)
            summary = import_records(file, opts)
        except ImportError_ as e:
            for where, what in e.problems:
                click.echo(f"{file}: {where}: {what}", err=True)
            if e.total > len(e.problems):
                click.echo(f"{file}: ... and {e.total - len(e.problems)} more malformed records", err=True)
            raise BadInput(str(e)) from None
        except (DatasetExistsError, ValueError) as e:
            raise BadInput(str(e)) from None
        except OSError as e:
            raise BadInput(f"{out}: cannot write the dataset here ({e.strerror or e}); choose another --out") from None
        for where, what in summary["problems"]:
            click.echo(f"{file}: {where}: skipped: {what}", err=True)
        if summary["skipped"] > len(summary["problems"]):
            click.echo(f"{file}: ... and {summary['skipped'] - len(summary['problems'])} more skipped", err=True)
        skipped = f", skipped {summary['skipped']} malformed record(s)" if summary["skipped"] else ""
        click.echo(f"wrote {summary['out']}: {summary['train_examples']} train and {summary['test_examples']} test "
                   f"examples, grid {summary['grid']}, seq_len {summary['seq_len']}, vocab_size "
                   f"{summary['vocab_size']}{skipped}")

    @main.command("stats", short_help="Counts, token histogram, fill, identifier use per split.")
    @click.argument("path", type=click.Path())
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
    @click.option("--global-batch-size", "-b", type=click.IntRange(min=1), default=768, show_default=True,
                  help="Batch size for the plan part (HRM's default).")
    @click.option("--epochs", "-e", type=click.IntRange(min=1), default=100000, show_default=True,
                  help="Epochs for the plan part (HRM's default).")
    @click.option("--eval-interval", "-i", type=click.IntRange(min=1), default=10000, show_default=True,
                  help="Eval interval for the plan part (HRM's default).")
    def stats_cmd(path, as_json, global_batch_size, epochs, eval_interval) -> None:
        """The numbers to check before training the dataset at PATH (npy folder or Zarr store).

        Per split and set: examples, puzzles, groups; examples per puzzle and puzzles per group
        (min / mean / max); input and label token histograms by token name; sequence fill
        (non-pad share); the share of label cells that differ from the input; identifier use;
        and what `hrm-data plan` gives at HRM's defaults (batch 768, 100000 epochs, eval every 10000,
        warmup 2000 steps) unless -b / -e / -i say otherwise.
        """
        from .stats import run_cli
        sys.exit(run_cli(path, as_json=as_json, plan={"global_batch_size": global_batch_size, "epochs": epochs,
                                                      "eval_interval": eval_interval}))
