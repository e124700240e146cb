"""``ucb``: Raju et al. 2021 (arXiv 2111.12621), upper-confidence-bound dynamic pruning; see
``shared/METHODS.md`` and :class:`~prunegym.baselines.base.RankedPruner` for the shared protocol.

Keeps the top ``K = ceil((1 - r) N)`` samples by ``mu + c sqrt(v)`` with ``mu`` = ``ScoreTable.ema`` and
``v`` = ``ScoreTable.ema_var`` (EMA of the squared deviation) [2nd]; ``c`` = knob ``c``, default 1 [recon;
one third-party version uses ``v`` itself]. No reweighting, no random draws after the warm-up [paper].
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from prunegym.training import ScoreTable

from .base import FixedPolicy, Knob, RankedPruner, rank_descending

__all__ = ["UCBPolicy", "UCBPruner"]


class UCBPruner(RankedPruner):
    name = "ucb"
    knobs = (Knob("c", 0.0, 4.0, 1.0, "exploration weight c of the upper confidence bound mu + c sqrt(v)"),)

    def select(self, scores: ScoreTable, k: int, action: Mapping[str, float]) -> torch.Tensor:
        c = self.knob(action, "c")
        ucb = scores.ema.to(self.device) + c * scores.ema_var.to(self.device).clamp_min(0.0).sqrt()
        return rank_descending(ucb)[:k]


# Fixed policies for Raju et al.'s (arXiv 2111.12621) ``epsilon_greedy`` and ``ucb``: a constant prune
# ratio every epoch after the pruner's one full warm-up epoch. [recon] ``r = 0.5`` (the rate of the later CIFAR
# re-runs, as for ``uniform``); ``epsilon = 0.1`` and ``c = 1`` (METHODS.md; the paper's values are not
# stated).
class UCBPolicy(FixedPolicy):
    name = "ucb"
    pruner = "ucb"
    defaults = {"prune_ratio": 0.5, "c": 1.0}

    def schedule(self, epoch: int) -> dict[str, float]:
        return {"prune_ratio": self.hparams["prune_ratio"], "c": self.hparams["c"]}
