"""``full``: no pruning; every sample every epoch with weight 1 (the reference every method is judged by): pruner
and policy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from prunegym.training import EpochPlan, ScoreTable

from .base import FixedPolicy, Pruner

__all__ = ["FullPolicy", "FullPruner"]


class FullPruner(Pruner):
    """Trains on the whole training set each epoch, shuffled; the prune ratio in the action is ignored."""

    name = "full"

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        return self.full_plan()


class FullPolicy(FixedPolicy):
    """No pruning: prune ratio 0 every epoch."""

    name = "full"
    pruner = "full"
    defaults: ClassVar[dict[str, Any]] = {}

    def schedule(self, epoch: int) -> dict[str, float]:
        return {"prune_ratio": 0.0}
