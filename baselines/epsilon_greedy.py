"""``epsilon_greedy``: Raju et al. 2021 (arXiv 2111.12621), epsilon-greedy dynamic pruning; see
``shared/METHODS.md`` and :mod:`prunegym.baselines.raju` for the shared protocol.

Of ``K = ceil((1 - r) N)`` kept samples, the top ``ceil((1 - eps) K)`` by EMA loss ``mu``
(``ScoreTable.ema``) plus ``floor(eps K)`` drawn uniformly without replacement from the rest [2nd for the
rule]; ``eps`` = knob ``epsilon``, default 0.1 [recon]. No reweighting [paper].
"""
from __future__ import annotations

import math
from typing import Mapping

import torch

from prunegym.training import ScoreTable

from .base import Knob
from .raju import RankedPruner, rank_descending

__all__ = ["EpsilonGreedyPruner"]


class EpsilonGreedyPruner(RankedPruner):
    name = "epsilon_greedy"
    knobs = (Knob("epsilon", 0.0, 1.0, 0.1, "share of the kept budget drawn uniformly from the non-top samples"),)

    def select(self, scores: ScoreTable, k: int, action: Mapping[str, float]) -> torch.Tensor:
        eps = round(self.knob(action, "epsilon"), 6)  # undo float32 action round-off (see prune_ratio_of)
        n_rand = math.floor(eps * k + 1e-9)
        n_top = k - n_rand  # = ceil((1 - eps) K)
        order = rank_descending(scores.ema.to(self.device))
        rest = order[n_top:]
        pick = torch.randperm(rest.numel(), generator=self.generator, device=self.device)[:n_rand]
        return torch.cat([order[:n_top], rest[pick]])
