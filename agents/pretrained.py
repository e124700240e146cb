"""Agents shipped with the package, in ``prunegym/agents/pretrained/<name>.zip`` (+ ``<name>.json``), addressed
as ``pretrained:<name>`` wherever a saved agent's path is accepted (``evaluate``, ``compare``, the CLI)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["PREFIX", "PRETRAINED_DIR", "pretrained_names", "pretrained_path"]

PREFIX = "pretrained:"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def pretrained_names() -> list[str]:
    """Names of the shipped agents (sorted)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.zip"))


def pretrained_path(name: str) -> Path:
    """The ``.zip`` of shipped agent ``name`` (with or without the ``pretrained:`` prefix)."""
    if name.startswith(PREFIX):
        name = name[len(PREFIX):]
    path = PRETRAINED_DIR / f"{name}.zip"
    if not path.is_file():
        names = pretrained_names()
        raise ValueError(f"unknown pretrained agent {name!r}; allowed: {', '.join(names) if names else 'none shipped'}")
    return path
