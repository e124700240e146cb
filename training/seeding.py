"""Seed derivation: every random choice in a run comes from a generator derived here.

The global torch, numpy and python RNGs are never read or written. A run seed and a stream name give a
64-bit sub-seed through numpy's ``SeedSequence``, so streams are independent and reproducible.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["derive_seed", "torch_generator", "numpy_generator"]


def _stream_key(stream: str) -> int:
    return int.from_bytes(hashlib.sha256(stream.encode()).digest()[:4], "little")


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream`` (e.g. ``"init"``, ``"shuffle"``) derived from the run ``seed``."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, (int(seed) >> 32) & 0xFFFFFFFF, _stream_key(stream)])
    lo, hi = (int(v) for v in ss.generate_state(2, dtype=np.uint32))
    return ((hi << 32) | lo) >> 1


def torch_generator(seed: int, stream: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded from (``seed``, ``stream``)."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(derive_seed(seed, stream))
    return g


def numpy_generator(seed: int, stream: str) -> np.random.Generator:
    """A ``numpy.random.Generator`` seeded from (``seed``, ``stream``)."""
    return np.random.default_rng(derive_seed(seed, stream))
