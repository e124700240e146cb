"""Seed derivation: every random choice in a run comes from a generator derived here.

The global torch, numpy and python RNGs are never read or written. A run seed and a stream name give a
64-bit sub-seed through numpy's ``SeedSequence``, so streams are independent and reproducible.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

__all__ = ["DRAWN_SEED_LIMIT", "SEED_LIMIT", "check_seed", "derive_seed", "torch_generator", "numpy_generator"]

SEED_LIMIT = 2**63  # run seeds are ints in [0, SEED_LIMIT): larger ones would alias smaller ones
DRAWN_SEED_LIMIT = 2**31 - 1  # run seeds an env draws for itself (no seed given) are in [0, DRAWN_SEED_LIMIT)


def check_seed(seed, what: str = "seed", where: str = "") -> int:
    """``seed`` as an ``int`` if it is one in ``[0, 2**63)`` (Python's or numpy's, not a bool); else a
    one-line ``ValueError`` ``"<what>=<seed><where> must be an int in [0, 2**63)"`` (``where``: e.g.
    ``" of sub-env 2"``). Every seed prunegym takes is checked here."""
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, (bool, np.bool_)):
        raise ValueError(f"{what}={seed!r}{where} must be an int in [0, 2**63)")
    if not 0 <= int(seed) < SEED_LIMIT:
        raise ValueError(f"{what}={int(seed)}{where} is outside the allowed range [0, 2**63)")
    return int(seed)


def _stream_key(stream: str) -> int:
    return int.from_bytes(hashlib.sha256(stream.encode()).digest()[:4], "little")


def derive_seed(seed: int, stream: str) -> int:
    """A 63-bit seed for ``stream`` (e.g. ``"init"``, ``"shuffle"``) derived from the run ``seed`` (an int in
    ``[0, 2**63)``: every such seed gives its own streams; others raise, see :func:`check_seed`)."""
    seed = check_seed(seed)
    ss = np.random.SeedSequence([seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF, _stream_key(stream)])
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
