"""Shared protocol of Raju, Daruwalla & Lipasti 2021, "Accelerating Deep Learning with Dynamic Data Pruning"
(arXiv 2111.12621): score-ranked selection of ``K = ceil((1 - r) N)`` samples each epoch, no reweighting,
after ``warmup_epochs`` full-data epochs ([recon] default 1); see ``shared/METHODS.md``.

Scores come from the run's :class:`~prunegym.training.ScoreTable`: ``ema`` (``mu``) and ``ema_var`` (``v``),
updated only for trained samples (bandit feedback) at the table's ``ema_rate`` (default 0.2 = Raju's ``a``,
[recon]).
"""
from __future__ import annotations

from typing import Mapping

import torch

from prunegym.training import EpochPlan, ScoreTable

from .base import Pruner, kept_count, prune_ratio_of

__all__ = ["RankedPruner", "rank_descending"]


class RankedPruner(Pruner):
    """Base class: full data for the first ``warmup_epochs`` epochs (and at ``r = 0``), then
    :meth:`select` picks ``K = kept_count(N, r)`` indices; the plan shuffles them, weights 1."""

    def __init__(self, warmup_epochs: int = 1):
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs={warmup_epochs!r} must be >= 0")
        self.warmup_epochs = int(warmup_epochs)

    def select(self, scores: ScoreTable, k: int, action: Mapping[str, float]) -> torch.Tensor:
        """``[k]`` int64 distinct indices to keep (subclasses)."""
        raise NotImplementedError

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        r = prune_ratio_of(action)
        if epoch < self.warmup_epochs or r <= 0.0:
            return self.full_plan()
        kept = self.select(scores, kept_count(self.num_samples, r), action).to(self.device)
        plan = self.shuffled(kept)
        plan.claimed_prune_ratio = r
        return plan


def rank_descending(score: torch.Tensor) -> torch.Tensor:
    """Indices ``[N]`` of ``score`` ``[N]`` from highest to lowest (ties: lower index first)."""
    return torch.argsort(score, descending=True, stable=True)
