"""What a result was measured with: library versions, torch's thread count and the device.

CPU results are bit-for-bit reproducible only under the same versions, thread count and device (float sums
are split differently elsewhere: an RL agent's trajectory can follow differences in the fourth decimal).
Rows, saved agents and benchmark JSONs record :func:`runtime`; :func:`runtime_differences` says what differs.
Package versions are read from the installed metadata: this module imports neither gymnasium nor SB3.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import numpy as np
import torch

__all__ = ["VERSION_KEYS", "cpu_name", "runtime", "runtime_differences", "versions"]

# key in the records -> distribution name
_DISTRIBUTIONS = {"prunegym": "prunegym", "stable_baselines3": "stable-baselines3", "gymnasium": "gymnasium"}
VERSION_KEYS = ("prunegym", "torch", "numpy", "stable_baselines3", "gymnasium", "python")


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str | None], ...]:
    out: dict[str, str | None] = {
        "prunegym": _dist_version("prunegym"),
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
    }
    for key in ("stable_baselines3", "gymnasium"):
        out[key] = _dist_version(_DISTRIBUTIONS[key])
    out["python"] = platform.python_version()
    return tuple((k, out[k]) for k in VERSION_KEYS)


def versions() -> dict[str, str | None]:
    """``{"prunegym", "torch", "numpy", "stable_baselines3", "gymnasium", "python"}`` -> installed version
    (``torch.__version__`` with its build tag, e.g. ``2.14.1+cu130``; ``None`` if not installed)."""
    return dict(_versions())


def runtime(device: str | torch.device | None = None, threads: int | None = None) -> dict[str, Any]:
    """:func:`versions` plus ``torch_threads`` (``threads``, default torch's current intra-op count) and
    ``device`` (the training device as a string, e.g. ``"cpu"``; ``None`` if not given)."""
    return {
        **versions(),
        "torch_threads": int(threads if threads is not None else torch.get_num_threads()),
        "device": None if device is None else str(device),
    }


def runtime_differences(recorded: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """``["torch 2.15.0+cu132 -> 2.14.1+cu130", "torch_threads 1 -> 2", ...]`` for every key that ``recorded``
    sets (not ``None``) and ``current`` gives differently; ``[]`` when nothing was recorded."""
    out = []
    for key, was in (recorded or {}).items():
        now = current.get(key)
        if was is None or now is None or key not in current:
            continue
        if str(was) != str(now):
            out.append(f"{key} {was} -> {now}")
    return out


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``'s ``model name``; else what ``platform`` knows), for benchmark
    records."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
