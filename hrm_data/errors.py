"""The exit-code contract of `hrm-data`, in one place.

    0    ok
    1    checked and found wrong (validate found errors; plan: HRM would refuse or never step)
    2    bad usage or bad input: one line ``Error: ...`` naming the file, index and fix
    3    unexpected internal error: one line, and a hint to rerun with ``--debug`` (or
         ``HRM_DEBUG=1``) for the traceback
    130  interrupted (Ctrl-C)

A script can therefore tell "your data is wrong" (1) from "you asked for something impossible"
(2) from "hrm-data has a bug" (3). See docs/guarantees.md.
"""
from __future__ import annotations

import errno
import os
import sys
import traceback
from typing import Any, Callable

import click

OK, FOUND_WRONG, BAD_INPUT, INTERNAL, INTERRUPTED = 0, 1, 2, 3, 130

_debug = False


def set_debug(value: bool) -> None:
    global _debug
    _debug = bool(value)


def env_debug() -> bool:
    """HRM_DEBUG set to anything but empty / 0 / false / no (both CLIs read it)."""
    return os.environ.get("HRM_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def debug_enabled() -> bool:
    return _debug or env_debug()


def _echo_err(line: str) -> None:
    try:
        click.echo(line, err=True)
    except Exception:  # noqa: BLE001  (stderr itself is gone or strict: say it as bytes)
        try:
            sys.stderr.buffer.write(line.encode("utf-8", "backslashreplace") + b"\n")
            sys.stderr.flush()
        except Exception:  # noqa: BLE001
            pass


def tolerant_streams() -> None:
    """Non-UTF-8 file names (surrogate escapes) must print, even on a strict UTF-8 stdout."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            pass


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def internal_error_line(prog: str, e: BaseException) -> str:
    """The contract's line for a bug, the same in hrm-data and hrm-train."""
    msg = one_line(str(e))
    return (f"{prog}: internal error: {type(e).__name__}{': ' + msg if msg else ''} (this is a bug; rerun with "
            f"--debug or HRM_DEBUG=1 for the traceback)")


def run(main: Callable[..., Any], prog: str, args: Any = None, prog_name: str | None = None, **extra: Any) -> None:
    """Run a click command in non-standalone mode and map every outcome to the contract's exit code."""
    tolerant_streams()
    set_debug(False)
    try:
        rv = main(args=args, prog_name=prog_name, standalone_mode=False, **extra)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        try:
            e.show()
        except Exception:  # noqa: BLE001
            _echo_err(f"Error: {e.format_message()}")
        sys.exit(e.exit_code)
    except (click.Abort, KeyboardInterrupt):
        _echo_err("Aborted.")
        sys.exit(INTERRUPTED)
    except SystemExit:
        raise
    except BrokenPipeError:  # `hrm-data ... | head`: not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        sys.exit(OK)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT if hasattr(errno, "EDQUOT") else errno.ENOSPC):
            _echo_err(f"Error: {e.filename or 'disk'}: no space left on the device; free space or choose another "
                      f"location")
            sys.exit(BAD_INPUT)
        _internal(prog, e)
    except Exception as e:  # noqa: BLE001
        if _is_bad_input(e):  # a command that let a dataset error through: still the user's input
            _echo_err(f"Error: {' '.join(str(e).split())}")
            sys.exit(BAD_INPUT)
        _internal(prog, e)
    sys.exit(rv if isinstance(rv, int) else OK)


def _is_bad_input(e: Exception) -> bool:
    """FormatError / NotADataset: a dataset that cannot be read is bad input (2), never a bug (3)."""
    mod = sys.modules.get("hrm_data.format")
    val = sys.modules.get("hrm_data.validate")
    return ((mod is not None and isinstance(e, mod.FormatError)) or
            (val is not None and isinstance(e, val.NotADataset)))


def _internal(prog: str, e: BaseException) -> None:
    if debug_enabled():
        traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
    _echo_err(internal_error_line(prog, e))
    sys.exit(INTERNAL)


class ContractGroup(click.Group):
    """A click group whose ``main`` follows the exit-code contract (see the module docstring)."""

    prog = "hrm-data"

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # type: ignore[override]
        if not standalone_mode:  # a caller that handles exceptions itself
            return super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        run(super().main, self.prog, args=args, prog_name=prog_name, complete_var=complete_var, **extra)


def debug_option(f: Callable) -> Callable:
    """``--debug``: show the traceback of an internal error (same as HRM_DEBUG=1)."""
    def cb(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if value:
            set_debug(True)
    return click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=cb,
                        help="On an internal error, print the full traceback (or set HRM_DEBUG=1).")(f)
