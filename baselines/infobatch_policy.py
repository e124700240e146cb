"""InfoBatch's published schedule (Qin et al., ICLR 2024): prune ratio ``r`` for the epochs ``e`` (0-based)
with ``e + 1 <= E * delta``, compared in floating point exactly as the official sampler does (no epsilon:
``E = 100, delta = 0.29`` prunes 28 epochs, since ``100 * 0.29 = 28.999999999999996``), then full data with
weight 1 (annealing) [paper, code]."""
from __future__ import annotations

import math

from .policy import FixedPolicy

__all__ = ["InfoBatchPolicy", "annealing_start", "prunes_at"]


def prunes_at(epoch: int, delta: float, epochs: int) -> bool:
    """Whether epoch ``epoch`` (0-based) prunes: the official ``iterations <= num_epochs * delta`` with
    ``iterations = epoch + 1``."""
    return epoch + 1 <= epochs * delta


def annealing_start(delta: float, epochs: int) -> int:
    """The first full-data epoch (0-based), ``floor(E * delta)`` of the float product (the first ``e`` with
    ``e + 1 > E * delta``); e.g. ``E = 10, delta = 0.875`` -> 8, ``E = 100, delta = 0.29`` -> 28."""
    return math.floor(epochs * delta)


class InfoBatchPolicy(FixedPolicy):
    """Defaults ``r = 0.5``, ``delta = 0.875`` [paper, code]."""

    name = "infobatch"
    pruner = "infobatch"
    defaults = {"prune_ratio": 0.5, "delta": 0.875}

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.hparams["delta"] <= 1.0:
            raise ValueError(f"delta={self.hparams['delta']!r} must be in [0, 1]")

    def schedule(self, epoch: int) -> dict[str, float]:
        if not prunes_at(epoch, self.hparams["delta"], self.epochs):
            return {"prune_ratio": 0.0}
        return {"prune_ratio": self.hparams["prune_ratio"]}
