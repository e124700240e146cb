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

``score="batch"``: the batch loss score (BLS; Zhou, Zhao, Yang, Zhang, Gao & Wang, CVPR 2026, "Batch Loss Score
for Dynamic Data Pruning", official code mrazhou/BLS, ``seta.py`` at commit 726279b, class ``BLS``) replaces the
latest per-sample loss, for loops that give one loss per batch: the same rule on ``ScoreTable.batch_score``, the
EMA ``s <- 0.9 s + 0.1 L`` of the unweighted mean loss ``L`` of each batch the sample was in, every score 0
before training (so the first epoch keeps everything, as here) [code: lines 409-410, 374 (``alpha = 0.9``), 384
(``scores[:] = 0``), 391-392 (a per-sample loss vector is averaged before the weights)]. [recon] The official
BLS backpropagates ``mean(weights) * L``; the engine, which has per-sample losses, keeps the per-sample
``1 / keep`` weights above (a loop with one loss per batch multiplies it by ``PruningSampler.weights(idx).mean()``
itself). Under several processes the official score is each rank's own batch mean; the engine's is the global
batch's (a DDP run is one run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from prunegym.training import EpochPlan, ScoreTable
from prunegym.training.scores import SCORES

from .base import FixedPolicy, Pruner

__all__ = [
    "InfoBatchPolicy",
    "InfoBatchPruner",
    "MAX_PRUNE_RATIO",
    "annealing_start",
    "check_score",
    "keep_ratio",
    "kept_of_d1",
    "loss_score",
    "prunes_at",
]

MAX_PRUNE_RATIO = 0.9  # keep ratio of D1 >= 0.1 [code]


def keep_ratio(prune_ratio: float) -> float:
    """The official ``min(1.0, max(0.1, 1.0 - r))`` (a float; 1 / it is the weight of kept ``D1`` samples)."""
    return min(1.0, max(1e-1, 1.0 - float(prune_ratio)))


def kept_of_d1(prune_ratio: float, num_below_mean: int) -> int:
    """How many of the ``|D1|`` below-mean samples are kept: ``int(keep_ratio(r) * |D1|)`` [code]."""
    return int(keep_ratio(prune_ratio) * int(num_below_mean))


def check_score(score: str) -> str:
    """``score`` if it is one of :data:`~prunegym.training.scores.SCORES`, else a one-line ``ValueError``."""
    if score not in SCORES:
        raise ValueError(f"score={score!r} is not allowed; allowed: {', '.join(SCORES)}")
    return score


def loss_score(scores: ScoreTable, score: str) -> torch.Tensor:
    """``[N]`` the loss score InfoBatch and SeTa read (loss units): ``"sample"``, each sample's latest loss
    (``scores.loss``); ``"batch"``, its batch loss score (``scores.batch_score``, 0 before any batch)."""
    return scores.batch_score if score == "batch" else scores.loss


class InfoBatchPruner(Pruner):
    """InfoBatch's soft pruning of below-mean-loss samples with ``1 / keep`` rescaling (no knobs).

    ``score``: ``"sample"`` (default: the latest per-sample loss) or ``"batch"`` (the batch loss score, for a
    loop that gives one loss per batch; see the module docstring)."""

    name = "infobatch"

    def __init__(self, score: str = "sample"):
        self.score = check_score(score)

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        r = float(action["prune_ratio"])
        if r <= 0.0:
            return self.full_plan()
        keep = keep_ratio(r)
        loss = loss_score(scores, self.score).to(self.device)
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
