"""``uniform``: Raju, Daruwalla & Lipasti 2021, "Accelerating Deep Learning with Dynamic Data Pruning"
(arXiv 2111.12621), uniform random dynamic pruning; see ``shared/METHODS.md``.

Each epoch keeps ``K = ceil((1 - r) N)`` samples drawn uniformly without replacement [paper]; the schedule
is unchanged, the saving is fewer iterations. [recon] The first ``warmup_epochs`` (default 1) keep all, as
for the score-based Raju variants, so that all three share one protocol.
The ``rescale`` knob (default 0: the paper's rule, no reweighting) gives kept samples the weight
``1 + rescale * (1/(1 - r) - 1)``; at 1 this is InfoBatch's 1/(1 - r) rescaling, the control
(``uniform_rescaled``) that InfoBatch's reviewers asked for.
"""
from __future__ import annotations

from typing import Mapping

import torch

from prunegym.training import EpochPlan, ScoreTable

from .base import Knob, Pruner, kept_count, prune_ratio_of

__all__ = ["UniformPruner"]


class UniformPruner(Pruner):
    name = "uniform"
    knobs = (Knob("rescale", 0.0, 1.0, 0.0, "strength of 1/(1-r) loss rescaling of kept samples: 0 none, 1 full"),)

    def __init__(self, warmup_epochs: int = 1):
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs={warmup_epochs!r} must be >= 0")
        self.warmup_epochs = int(warmup_epochs)

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        r = prune_ratio_of(action)
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
