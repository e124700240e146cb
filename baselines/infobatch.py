"""``infobatch``: Qin et al., ICLR 2024, "InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data
Pruning" (official code NUS-HPC-AI-Lab/InfoBatch); see ``shared/METHODS.md``.

Score: the latest unweighted per-sample loss (``ScoreTable.loss``; stale for samples not trained since; all 0
before training, so the first epoch keeps everything) [code]. Per epoch at prune ratio ``r``: the keep ratio
``keep = min(1, max(0.1, 1 - r))`` as a float (so ``r`` is capped at 0.9) [code];
``D1 = {i : loss_i < mean(loss)}`` over all ``N`` samples; keep exactly ``int(keep * |D1|)`` of ``D1`` (the
float product truncated as the official code does, no epsilon: at ``r = 0.8``, ``|D1| = 5`` that is 0) drawn
uniformly without replacement with loss weight ``1 / keep``, and all of ``D2`` (the rest) with weight 1;
shuffle [code; the paper's per-sample coin flip has the same expectation]. ``r = 0`` gives the full data with
all weights 1 (the annealing epochs, scheduled by :class:`InfoBatchPolicy`),
whatever ``delta * E`` is: the official code's failure to reset the weights there is not reproduced.
The realised kept fraction ``1 - (|D1| - int(keep |D1|)) / N`` is what the engine reports;
``claimed_prune_ratio`` is ``min(r, 0.9)`` on an epoch that prunes something and 0 on one that prunes nothing
(``D1`` empty, as at epoch 0, or ``r = 0``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from prunegym.training import EpochPlan, ScoreTable

from .base import FixedPolicy, Pruner

__all__ = [
    "InfoBatchPolicy",
    "InfoBatchPruner",
    "MAX_PRUNE_RATIO",
    "annealing_start",
    "keep_ratio",
    "kept_of_d1",
    "prunes_at",
]

MAX_PRUNE_RATIO = 0.9  # keep ratio of D1 >= 0.1 [code]


def keep_ratio(prune_ratio: float) -> float:
    """The official ``min(1.0, max(0.1, 1.0 - r))`` (a float; 1 / it is the weight of kept ``D1`` samples)."""
    return min(1.0, max(1e-1, 1.0 - float(prune_ratio)))


def kept_of_d1(prune_ratio: float, num_below_mean: int) -> int:
    """How many of the ``|D1|`` below-mean samples are kept: ``int(keep_ratio(r) * |D1|)`` [code]."""
    return int(keep_ratio(prune_ratio) * int(num_below_mean))


class InfoBatchPruner(Pruner):
    """InfoBatch's soft pruning of below-mean-loss samples with ``1 / keep`` rescaling (no knobs)."""

    name = "infobatch"

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        r = float(action["prune_ratio"])
        if r <= 0.0:
            return self.full_plan()
        keep = keep_ratio(r)
        loss = scores.loss.to(self.device)
        well_learned = loss < loss.mean()  # D1 [N] bool
        d1 = torch.nonzero(well_learned).view(-1)  # the epoch's one host sync (sizes)
        d2 = torch.nonzero(~well_learned).view(-1)
        k1 = kept_of_d1(r, d1.numel())
        kept1 = d1[torch.randperm(d1.numel(), generator=self.generator, device=self.device)[:k1]]
        indices = torch.cat([kept1, d2])
        weights = torch.cat(
            [torch.full((k1,), 1.0 / keep, device=self.device), torch.ones(d2.numel(), device=self.device)]
        )
        plan = self.shuffled(indices, weights)
        plan.claimed_prune_ratio = min(r, MAX_PRUNE_RATIO) if k1 < d1.numel() else 0.0
        return plan


# -- the published schedule ------------------------------------------------------------------------------------
# InfoBatch's published schedule (Qin et al., ICLR 2024): prune ratio ``r`` for the epochs ``e`` (0-based)
# with ``e + 1 <= E * delta``, compared in floating point exactly as the official sampler does (no epsilon:
# ``E = 100, delta = 0.29`` prunes 28 epochs, since ``100 * 0.29 = 28.999999999999996``), then full data with
# weight 1 (annealing) [paper, code].


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
