"""Builder plugins, discovered through the ``hrm_data.builders`` entry-point group.

First-party builders are registered the same way (pyproject.toml), so a user's own package
is a first-class citizen: see docs/plugins.md.
"""
from __future__ import annotations

from importlib.metadata import entry_points

from .builder import Builder

GROUP = "hrm_data.builders"


class UnknownBuilder(KeyError):
    pass


def _entry_points():
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def names() -> list[str]:
    return sorted(_entry_points())


def get(name: str) -> Builder:
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise UnknownBuilder(f"unknown builder '{name}' (available: {known}); see `hrm-data builders`")
    obj = eps[name].load()
    builder = obj() if isinstance(obj, type) else obj
    if not isinstance(builder, Builder):
        raise TypeError(f"entry point '{name}' ({eps[name].value}) is not an hrm_data.builder.Builder")
    return builder
