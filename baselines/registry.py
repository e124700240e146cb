"""The registries of methods: ``PRUNERS`` (keep mechanisms) and ``POLICIES`` (published schedules), and the
functions that build them by name. Adding a method is one file (its pruner and policy) and one line in each
table here."""

from __future__ import annotations

from typing import Any

from .base import FixedPolicy, Pruner
from .epsilon_greedy import EpsilonGreedyPolicy, EpsilonGreedyPruner
from .full import FullPolicy, FullPruner
from .ies import IESPolicy, IESPruner
from .infobatch import InfoBatchPolicy, InfoBatchPruner
from .learned import LearnedPruner
from .orderdp import OrderDPPolicy, OrderDPPruner
from .pfb import PFBPolicy, PFBPruner
from .rcap import RCAPPolicy, RCAPPruner
from .seta import SeTaPolicy, SeTaPruner
from .static import StaticConstPolicy, StaticRampPolicy, StaticSchedulePolicy
from .swdpp import SwDPPPolicy, SwDPPPruner
from .ucb import UCBPolicy, UCBPruner
from .uniform import UniformPolicy, UniformPruner, UniformRescaledPolicy

__all__ = ["POLICIES", "PRUNERS", "make_policy", "make_pruner", "policy_pruner", "sampler_policies", "sampler_unfit"]

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
    "rcap": RCAPPruner,
    "orderdp": OrderDPPruner,
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
    "rcap": RCAPPolicy,
    "orderdp": OrderDPPolicy,
    "static_const": StaticConstPolicy,
    "static_schedule": StaticSchedulePolicy,
    "static_ramp": StaticRampPolicy,
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


def sampler_policies() -> tuple[str, ...]:
    """The names of ``POLICIES`` whose method runs as a ``PruningSampler`` (no ``sampler_unfit`` declared)."""
    return tuple(n for n, c in POLICIES.items() if c.sampler_unfit is None)


def sampler_unfit(name: str) -> str | None:
    """Why method ``name`` cannot run as a ``PruningSampler`` (its policy's ``sampler_unfit``; a pruner without a
    policy has no schedule to play), or None (it can, or ``name`` is unknown)."""
    if name in POLICIES:
        return POLICIES[name].sampler_unfit
    return "needs an agent's per-epoch actions" if name in PRUNERS else None


def make_policy(name: str, env: Any, **hparams: Any) -> FixedPolicy:
    """The fixed policy ``name`` for ``env`` (made with ``pruner=policy_pruner(name)``), its hyperparameters
    at their published defaults unless overridden by ``hparams``."""
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; allowed: {', '.join(POLICIES)}")
    return POLICIES[name](env, **hparams)
