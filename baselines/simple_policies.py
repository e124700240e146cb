"""Fixed policies for ``full``, Raju et al.'s ``uniform``, and the ``uniform_rescaled`` control."""
from __future__ import annotations

import math

from .policy import FixedPolicy

__all__ = ["FullPolicy", "UniformPolicy", "UniformRescaledPolicy"]


class FullPolicy(FixedPolicy):
    """No pruning: prune ratio 0 every epoch."""

    name = "full"
    pruner = "full"
    defaults: dict = {}

    def schedule(self, epoch: int) -> dict[str, float]:
        return {"prune_ratio": 0.0}


class UniformPolicy(FixedPolicy):
    """Raju et al. 2021 (arXiv 2111.12621): a constant prune ratio r every epoch, no reweighting, after the
    pruner's one full warm-up epoch. [recon] r = 0.5 (the rate of the later CIFAR re-runs; the paper sweeps it)."""

    name = "uniform"
    pruner = "uniform"
    defaults = {"prune_ratio": 0.5}

    def schedule(self, epoch: int) -> dict[str, float]:
        return {"prune_ratio": self.hparams["prune_ratio"], "rescale": 0.0}


class UniformRescaledPolicy(FixedPolicy):
    """Uniform random pruning with InfoBatch's 1/(1 - r) loss rescaling and its annealing (full data with
    weight 1 from epoch floor(delta * E)): the control InfoBatch's reviewers asked for. Defaults are
    InfoBatch's r = 0.5, delta = 0.875."""

    name = "uniform_rescaled"
    pruner = "uniform"
    defaults = {"prune_ratio": 0.5, "delta": 0.875}

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.hparams["delta"] <= 1.0:
            raise ValueError(f"delta={self.hparams['delta']!r} must be in [0, 1]")

    def schedule(self, epoch: int) -> dict[str, float]:
        if epoch >= math.floor(self.hparams["delta"] * self.epochs):
            return {"prune_ratio": 0.0, "rescale": 0.0}
        return {"prune_ratio": self.hparams["prune_ratio"], "rescale": 1.0}
