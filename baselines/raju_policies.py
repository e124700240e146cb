"""Fixed policies for Raju et al.'s (arXiv 2111.12621) ``epsilon_greedy`` and ``ucb``: a constant prune
ratio every epoch after the pruner's one full warm-up epoch. [recon] ``r = 0.5`` (the rate of the later CIFAR
re-runs, as for ``uniform``); ``epsilon = 0.1`` and ``c = 1`` (METHODS.md; the paper's values are not
stated)."""
from __future__ import annotations

from .policy import FixedPolicy

__all__ = ["EpsilonGreedyPolicy", "UCBPolicy"]


class EpsilonGreedyPolicy(FixedPolicy):
    name = "epsilon_greedy"
    pruner = "epsilon_greedy"
    defaults = {"prune_ratio": 0.5, "epsilon": 0.1}

    def schedule(self, epoch: int) -> dict[str, float]:
        return {"prune_ratio": self.hparams["prune_ratio"], "epsilon": self.hparams["epsilon"]}


class UCBPolicy(FixedPolicy):
    name = "ucb"
    pruner = "ucb"
    defaults = {"prune_ratio": 0.5, "c": 1.0}

    def schedule(self, epoch: int) -> dict[str, float]:
        return {"prune_ratio": self.hparams["prune_ratio"], "c": self.hparams["c"]}
