"""``epsilon_greedy``: Raju et al. 2021 (arXiv 2111.12621), epsilon-greedy dynamic pruning; see
``shared/METHODS.md`` and :class:`~prunegym.baselines.base.RankedPruner` for the shared protocol.

Of ``K = ceil((1 - r) N)`` kept samples, the top ``ceil((1 - eps) K)`` by EMA loss ``mu``
(``ScoreTable.ema``) plus ``floor(eps K)`` drawn uniformly without replacement from the rest [2nd for the
rule]; ``eps`` = knob ``epsilon``, default 0.1 [recon]. No reweighting [paper].
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from prunegym.training import ScoreTable

from .base import FixedPolicy, Knob, RankedPruner, rank_descending

__all__ = ["EpsilonGreedyPolicy", "EpsilonGreedyPruner"]


class EpsilonGreedyPruner(RankedPruner):
    name = "epsilon_greedy"
    knobs = (Knob("epsilon", 0.0, 1.0, 0.1, "share of the kept budget drawn uniformly from the non-top samples"),)

    def select(self, scores: ScoreTable, k: int, action: Mapping[str, float]) -> torch.Tensor:
        eps = self.knob(action, "epsilon")
        n_rand = math.floor(eps * k + 1e-9)
        n_top = k - n_rand  # = ceil((1 - eps) K)
        order = rank_descending(scores.ema.to(self.device))
        rest = order[n_top:]
        pick = torch.randperm(rest.numel(), generator=self.generator, device=self.device)[:n_rand]
        return torch.cat([order[:n_top], rest[pick]])


# Fixed policies for Raju et al.'s (arXiv 2111.12621) ``epsilon_greedy`` and ``ucb``: a constant prune
# ratio every epoch after the pruner's one full warm-up epoch. [recon] ``r = 0.5`` (the rate of the later CIFAR
# re-runs, as for ``uniform``); ``epsilon = 0.1`` and ``c = 1`` (METHODS.md; the paper's values are not
# stated).
class EpsilonGreedyPolicy(FixedPolicy):
    name = "epsilon_greedy"
    pruner = "epsilon_greedy"
    defaults = {"prune_ratio": 0.5, "epsilon": 0.1}

    def schedule(self, epoch: int) -> dict[str, float]:
        return {"prune_ratio": self.hparams["prune_ratio"], "epsilon": self.hparams["epsilon"]}
