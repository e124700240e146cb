"""prunegym.baselines: pruners (the keep mechanisms) and fixed policies (their published schedules).

``PRUNERS`` maps a name to its pruner class and ``make_pruner(name, **hparams)`` builds one;
``POLICIES`` maps a name to its fixed-policy class and ``make_policy(name, env, **hparams)`` builds one for
an env made with that policy's pruner (``POLICIES[name].pruner``). Nothing here imports gymnasium or
stable-baselines3: pruners run in any PyTorch loop (``examples/plain_loop.py``); their ``update(result,
scores)`` reads only ``result.indices``, ``.losses``, ``.correct`` and ``.mixed`` (and IES, when present,
``.scored_indices`` and ``.scored_losses``: the losses of its plan's ``score_after`` samples), so a plain
namespace with those fields can stand in for an :class:`~prunegym.training.EpochResult`.

SeTa and IES hold their pruner and fixed policy in one file each (``seta.py``, ``ies.py``).
:class:`PruningSampler` wraps a method (pruner and schedule) as a ``torch.utils.data.Sampler`` for any
``DataLoader`` loop.
"""
from __future__ import annotations

from typing import Any

from .base import ActionCodec, Knob, Pruner, kept_count, prune_ratio_of
from .epsilon_greedy import EpsilonGreedyPruner
from .full import FullPruner
from .ies import IESPolicy, IESPruner
from .infobatch import InfoBatchPruner
from .infobatch_policy import InfoBatchPolicy
from .learned import LearnedPruner
from .pfb import PFBPruner
from .pfb_policy import PFBPolicy
from .policy import FixedPolicy, PolicyContext, policy_context_of
from .raju_policies import EpsilonGreedyPolicy, UCBPolicy
from .seta import SeTaPolicy, SeTaPruner
from .static import StaticConstPolicy, StaticSchedulePolicy
from .sampler import SAMPLER_PRUNERS, IndexedDataset, PruningSampler
from .simple_policies import FullPolicy, UniformPolicy, UniformRescaledPolicy
from .swdpp import SwDPPPruner
from .swdpp_policy import SwDPPPolicy
from .ucb import UCBPruner
from .uniform import UniformPruner

PRUNERS: dict[str, type[Pruner]] = {
    "full": FullPruner,
    "uniform": UniformPruner,
    "infobatch": InfoBatchPruner,
    "swdpp": SwDPPPruner,
    "pfb": PFBPruner,
    "epsilon_greedy": EpsilonGreedyPruner,
    "ucb": UCBPruner,
    "seta": SeTaPruner,
    "ies": IESPruner,
    "learned": LearnedPruner,
}

POLICIES: dict[str, type[FixedPolicy]] = {
    "full": FullPolicy,
    "uniform": UniformPolicy,
    "uniform_rescaled": UniformRescaledPolicy,
    "infobatch": InfoBatchPolicy,
    "swdpp": SwDPPPolicy,
    "pfb": PFBPolicy,
    "epsilon_greedy": EpsilonGreedyPolicy,
    "ucb": UCBPolicy,
    "seta": SeTaPolicy,
    "ies": IESPolicy,
    "static_const": StaticConstPolicy,
    "static_schedule": StaticSchedulePolicy,
}


def make_pruner(name: str, **hparams: Any) -> Pruner:
    """Build the pruner ``name`` with its constructor ``hparams``; unknown names list the allowed ones."""
    if name not in PRUNERS:
        raise ValueError(f"unknown pruner {name!r}; allowed: {', '.join(PRUNERS)}")
    try:
        return PRUNERS[name](**hparams)
    except TypeError as exc:
        raise ValueError(f"bad hyperparameters for pruner {name!r}: {exc}") from exc


def policy_pruner(name: str) -> str:
    """The pruner an env must be made with to run policy ``name``."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; allowed: {', '.join(POLICIES)}")
    return POLICIES[name].pruner


def make_policy(name: str, env: Any, **hparams: Any) -> FixedPolicy:
    """The fixed policy ``name`` for ``env`` (made with ``pruner=policy_pruner(name)``), its hyperparameters
    at their published defaults unless overridden by ``hparams``."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; allowed: {', '.join(POLICIES)}")
    return POLICIES[name](env, **hparams)


__all__ = [
    "POLICIES", "PRUNERS", "SAMPLER_PRUNERS", "ActionCodec", "EpsilonGreedyPolicy", "EpsilonGreedyPruner",
    "FixedPolicy", "FullPolicy", "FullPruner", "IESPolicy", "IESPruner", "IndexedDataset", "InfoBatchPolicy",
    "InfoBatchPruner", "Knob", "LearnedPruner", "PFBPolicy", "PFBPruner", "PolicyContext", "Pruner", "PruningSampler",
    "SeTaPolicy", "SeTaPruner", "StaticConstPolicy", "StaticSchedulePolicy", "SwDPPPolicy", "SwDPPPruner",
    "UCBPolicy", "UCBPruner", "UniformPolicy", "UniformPruner", "UniformRescaledPolicy", "kept_count", "make_policy",
    "make_pruner", "policy_context_of", "policy_pruner", "prune_ratio_of",
]
