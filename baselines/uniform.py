"""``uniform``: Raju, Daruwalla & Lipasti 2021, "Accelerating Deep Learning with Dynamic Data Pruning"
(arXiv 2111.12621), uniform random dynamic pruning, and the ``uniform_rescaled`` control; pruner and policies;
see ``shared/METHODS.md``.

Each epoch keeps ``K = ceil((1 - r) N)`` samples drawn uniformly without replacement [paper]; the schedule
is unchanged, the saving is fewer iterations. [recon] The first ``warmup_epochs`` (default 1) keep all, as
for the score-based Raju variants, so that all three share one protocol.
The ``rescale`` knob (default 0: the paper's rule, no reweighting) gives kept samples the weight
``1 + rescale * (1/(1 - r) - 1)``; at 1 this is InfoBatch's 1/(1 - r) rescaling, the control
(``uniform_rescaled``) that InfoBatch's reviewers asked for.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from prunegym.training import EpochPlan, ScoreTable

from .base import FixedPolicy, Knob, Pruner, kept_count
from .infobatch import InfoBatchPolicy

__all__ = ["UniformPolicy", "UniformPruner", "UniformRescaledPolicy"]


class UniformPruner(Pruner):
    name = "uniform"
    knobs = (Knob("rescale", 0.0, 1.0, 0.0, "strength of 1/(1-r) loss rescaling of kept samples: 0 none, 1 full"),)

    def __init__(self, warmup_epochs: int = 1):
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs={warmup_epochs!r} must be >= 0")
        self.warmup_epochs = int(warmup_epochs)

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        r = float(action["prune_ratio"])
        if epoch < self.warmup_epochs or r <= 0.0:
            return self.full_plan()
        k = kept_count(self.num_samples, r)
        kept = torch.randperm(self.num_samples, generator=self.generator, device=self.device)[:k]
        rescale = self.knob(action, "rescale")
        plan = EpochPlan(kept, None, claimed_prune_ratio=r)
        if rescale > 0.0:
            w = 1.0 + rescale * (1.0 / (1.0 - r) - 1.0)
            plan.weights = torch.full((k,), w, device=self.device)
        return plan


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
