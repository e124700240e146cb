"""``infobatch``: Qin et al., ICLR 2024, "InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data
Pruning" (official code NUS-HPC-AI-Lab/InfoBatch); see ``shared/METHODS.md``.

Score: the latest unweighted per-sample loss (``ScoreTable.loss``; stale for samples not trained since; all 0
before training, so the first epoch keeps everything) [code]. Per epoch at prune ratio ``r``:
``D1 = {i : loss_i < mean(loss)}`` over all ``N`` samples; keep exactly ``floor((1 - r) |D1|)`` of ``D1``
drawn uniformly without replacement with loss weight ``1 / (1 - r)``, and all of ``D2`` (the rest) with
weight 1; shuffle [code; the paper's per-sample coin flip has the same expectation]. ``r`` is capped at 0.9
(keep ratio >= 0.1) [code]. ``r = 0`` gives the full data with all weights 1 (the annealing epochs, scheduled
by :class:`~prunegym.baselines.infobatch_policy.InfoBatchPolicy`), whatever ``delta * E`` is: the official
code's failure to reset the weights there is not reproduced. The realised kept fraction
``1 - r |D1| / N`` is what the engine reports; ``claimed_prune_ratio`` is ``r``.
"""
from __future__ import annotations

import math
from typing import Mapping

import torch

from prunegym.training import EpochPlan, ScoreTable

from .base import Pruner, prune_ratio_of

__all__ = ["InfoBatchPruner", "MAX_PRUNE_RATIO"]

MAX_PRUNE_RATIO = 0.9  # keep ratio of D1 >= 0.1 [code]


class InfoBatchPruner(Pruner):
    """InfoBatch's soft pruning of below-mean-loss samples with ``1/(1 - r)`` rescaling (no knobs)."""

    name = "infobatch"

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        r = min(prune_ratio_of(action), MAX_PRUNE_RATIO)
        if r <= 0.0:
            return self.full_plan()
        loss = scores.loss.to(self.device)
        well_learned = loss < loss.mean()  # D1 [N] bool
        d1 = torch.nonzero(well_learned).view(-1)  # the epoch's one host sync (sizes)
        d2 = torch.nonzero(~well_learned).view(-1)
        k1 = math.floor((1.0 - r) * d1.numel() + 1e-9)
        kept1 = d1[torch.randperm(d1.numel(), generator=self.generator, device=self.device)[:k1]]
        indices = torch.cat([kept1, d2])
        weights = torch.cat([torch.full((k1,), 1.0 / (1.0 - r), device=self.device),
                             torch.ones(d2.numel(), device=self.device)])
        plan = self.shuffled(indices, weights)
        plan.claimed_prune_ratio = r
        return plan
