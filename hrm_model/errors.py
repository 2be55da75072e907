"""hrm-train's exit-code contract, applied around the whole command line.

0 ok; 1 the run failed (NaN loss, diverged evaluation, disk full); 2 bad usage / bad input
(one line ``Error: ...``); 3 an unexpected internal error: one line naming the exception and
how to see the traceback (``--debug`` or ``HRM_DEBUG=1``); 130 interrupted (Ctrl-C / SIGTERM).

A user must never see a bare traceback unless they asked for it, and a script must be able to
tell "your input is wrong" (2) from "this is a bug" (3).
"""
from __future__ import annotations

import sys
import traceback
from typing import Callable

from hrm_data.errors import env_debug, internal_error_line as _internal_error_line, one_line  # noqa: F401

PROG = "hrm-train"
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEBUG_FLAG = "--debug"


def debug_requested(args: list[str]) -> bool:
    return DEBUG_FLAG in args or env_debug()


def strip_debug(args: list[str]) -> list[str]:
    """``--debug`` may appear anywhere before ``--``; it is ours, not the command's."""
    if "--" in args:
        i = args.index("--")
        return [a for a in args[:i] if a != DEBUG_FLAG] + args[i:]
    return [a for a in args if a != DEBUG_FLAG]


def internal_error_line(e: BaseException) -> str:
    return _internal_error_line(PROG, e)


def report_internal_error(e: BaseException, debug: bool, err: Callable[[str], None] | None = None) -> int:
    """Print the one-line summary (and, when asked, the traceback first); returns exit code 3."""
    write = err or (lambda s: print(s, file=sys.stderr, flush=True))
    if debug:
        write("".join(traceback.format_exception(type(e), e, e.__traceback__)).rstrip())
    write(internal_error_line(e))
    return EXIT_INTERNAL
