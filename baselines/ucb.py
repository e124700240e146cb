"""``ucb``: Raju et al. 2021 (arXiv 2111.12621), upper-confidence-bound dynamic pruning; see
``shared/METHODS.md`` and :mod:`prunegym.baselines.raju` for the shared protocol.

Keeps the top ``K = ceil((1 - r) N)`` samples by ``mu + c sqrt(v)`` with ``mu`` = ``ScoreTable.ema`` and
``v`` = ``ScoreTable.ema_var`` (EMA of the squared deviation) [2nd]; ``c`` = knob ``c``, default 1 [recon;
one third-party version uses ``v`` itself]. No reweighting, no random draws after the warm-up [paper].
"""
from __future__ import annotations

from typing import Mapping

import torch

from prunegym.training import ScoreTable

from .base import Knob
from .raju import RankedPruner, rank_descending

__all__ = ["UCBPruner"]


class UCBPruner(RankedPruner):
    name = "ucb"
    knobs = (Knob("c", 0.0, 4.0, 1.0, "exploration weight c of the upper confidence bound mu + c sqrt(v)"),)

    def select(self, scores: ScoreTable, k: int, action: Mapping[str, float]) -> torch.Tensor:
        c = self.knob(action, "c")
        ucb = scores.ema.to(self.device) + c * scores.ema_var.to(self.device).clamp_min(0.0).sqrt()
        return rank_descending(ucb)[:k]
