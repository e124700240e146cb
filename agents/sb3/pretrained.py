"""Agents shipped with the package, in ``prunegym/agents/pretrained/<name>.zip`` (+ ``<name>.json``), addressed
as ``pretrained:<name>`` wherever a saved agent's path is accepted (``evaluate``, ``compare``, the CLI).

A name resolves only to a file shipped in that folder: anything else (``../x``, ``/abs/path``, ``a/b``, a name
that is not shipped) is a ``ValueError`` listing the shipped names. Each shipped ``.json`` records in
``runtime`` the versions, torch thread count, device and float path its published tables were measured with;
:func:`runtime_warning` says when a run differs from them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

from prunegym.training import runtime_differences

__all__ = ["PREFIX", "PRETRAINED_DIR", "is_pretrained", "pretrained_names", "pretrained_path", "runtime_warning"]

PREFIX = "pretrained:"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def pretrained_names() -> list[str]:
    """Names of the shipped agents (sorted)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.zip") if _NAME.match(p.stem))


def pretrained_path(name: str) -> Path:
    """The ``.zip`` of shipped agent ``name`` (with or without the ``pretrained:`` prefix); ``ValueError``
    listing the shipped names for any name that is not one of them."""
    if name.startswith(PREFIX):
        name = name[len(PREFIX) :]
    names = pretrained_names()
    if name not in names:
        raise ValueError(
            f"unknown pretrained agent {name!r}; allowed: {', '.join(names) if names else 'none shipped'} "
            "(pretrained:<name> names only the agents shipped with prunegym)"
        )
    return PRETRAINED_DIR / f"{name}.zip"


def is_pretrained(path: str | Path | None) -> TypeGuard[str | Path]:
    """Whether ``path`` is one of the shipped agents' files."""
    if path is None:
        return False
    try:
        p = Path(path).resolve()
    except OSError:
        return False
    return p.parent == PRETRAINED_DIR.resolve() and p.stem in pretrained_names()


def runtime_warning(label: str, recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> str | None:
    """One line saying how ``current`` (see ``prunegym.training.runtime``) differs from the ``recorded``
    runtime of shipped agent ``label``, or ``None`` if it does not."""

    diffs = runtime_differences(recorded, current)
    if not diffs:
        return None
    return (
        f"{label}: its published results were measured under other versions or settings ({'; '.join(diffs)}); "
        "CPU results are bit-for-bit only under the same versions, torch thread count, device and float path, "
        "so this run may differ from them in the third decimal (`prunegym evaluate --reproduce` pins the float "
        "path and threads; README: Reproducing exactly)"
    )
