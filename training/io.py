"""File output every floor shares: atomic writes and JSON-safe conversion.

Results, caches and benchmark outputs are written through :func:`write_text_atomic` (a reader sees the old
file or the new one, never a mix) and converted with :func:`to_jsonable` (plain JSON types; non-finite
floats become ``null`` when ``strict``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "canonical_json",
    "strict_jsonable",
    "to_jsonable",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, fsynced, then ``os.replace``.

    A reader sees the old file or the new one, never a mix; an interrupted write leaves the old file intact.
    The file keeps its permission bits if it exists, else gets 0o644 (not ``mkstemp``'s 0o600).
    """
    return write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`write_text_atomic` for bytes."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=p.name + ".", suffix=".tmp")
    try:
        os.chmod(tmp, (p.stat().st_mode & 0o777) if p.exists() else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, key-sorted JSON to ``path`` atomically (see :func:`write_text_atomic`)."""
    return write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=True))


def to_jsonable(x: Any) -> Any:
    """Plain JSON types: numpy scalars and arrays to Python, tuples to lists, non-finite floats kept as
    float (see :func:`strict_jsonable` for files), anything else that is not JSON (a callable reward) to
    ``str``."""
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    if hasattr(x, "tolist"):  # numpy scalar / array, torch tensor
        return to_jsonable(x.tolist())
    return str(x)


def strict_jsonable(x: Any) -> Any:
    """:func:`to_jsonable` with every non-finite float as ``None``: what strict JSON parsers accept."""
    x = to_jsonable(x)
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: strict_jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [strict_jsonable(v) for v in x]
    return x


def canonical_json(x: Any) -> str:
    """A stable string for comparing kwargs (sorted keys, JSON types)."""
    return json.dumps(to_jsonable(x), sort_keys=True)
