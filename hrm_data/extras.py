"""Optional libraries (the ``viz`` extra: Pillow, matplotlib) imported only when a command needs them."""
from __future__ import annotations

import importlib


class MissingExtra(ImportError):
    """An optional library is not installed; the message says which extra brings it."""


def need(module: str, extra: str = "viz", package: str | None = None):
    """Import ``module`` or raise MissingExtra with the install line."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{package or module} is not installed; this needs the '{extra}' extra: "
                           f"pip install 'hrm-data[{extra}]'") from None
