"""InfoBatch's published schedule (Qin et al., ICLR 2024): prune ratio ``r`` for epochs
``e < floor(delta * E)``, then full data with weight 1 (annealing) [paper, code]."""
from __future__ import annotations

import math

from .policy import FixedPolicy

__all__ = ["InfoBatchPolicy", "annealing_start"]


def annealing_start(delta: float, epochs: int) -> int:
    """The first full-data epoch (0-based), ``floor(delta * E)``; e.g. ``E = 10, delta = 0.875`` -> 8."""
    return math.floor(delta * epochs + 1e-9)


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
        if epoch >= annealing_start(self.hparams["delta"], self.epochs):
            return {"prune_ratio": 0.0}
        return {"prune_ratio": self.hparams["prune_ratio"]}
