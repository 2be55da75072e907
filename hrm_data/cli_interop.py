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
