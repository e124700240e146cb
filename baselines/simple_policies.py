"""Fixed policies for ``full``, Raju et al.'s ``uniform``, and the ``uniform_rescaled`` control."""
from __future__ import annotations

from .infobatch_policy import InfoBatchPolicy
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


class UniformRescaledPolicy(InfoBatchPolicy):
    """Uniform random pruning with InfoBatch's 1/(1 - r) loss rescaling and its annealing (full data with
    weight 1 from the first epoch e with e + 1 > E * delta): the control InfoBatch's reviewers asked for. Defaults are
    InfoBatch's r = 0.5, delta = 0.875; only the keep rule differs from InfoBatch's."""

    name = "uniform_rescaled"
    pruner = "uniform"

    def schedule(self, epoch: int) -> dict[str, float]:
        out = super().schedule(epoch)
        out["rescale"] = 1.0 if out["prune_ratio"] > 0 else 0.0
        return out
