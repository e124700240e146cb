"""Deprecated alias of :mod:`prunegym.agents.evaluation.batched_episodes` (renamed in 0.3, where the README named
it); it goes in the next release."""

import warnings

from .batched_episodes import run_batched_episodes

__all__ = ["run_batched_episodes"]

warnings.warn(
    "prunegym.agents.evaluation.batched is renamed prunegym.agents.evaluation.batched_episodes",
    DeprecationWarning,
    stacklevel=2,
)
