"""prunegym.baselines: the data-pruning methods, one file each (its pruner, the keep mechanism, and its fixed
policy, the published schedule), on the interfaces of :mod:`.base`.

``PRUNERS`` maps a name to its pruner class and ``make_pruner(name, **hparams)`` builds one;
``POLICIES`` maps a name to its fixed-policy class and ``make_policy(name, env, **hparams)`` builds one for
an env made with that policy's pruner (``POLICIES[name].pruner``) (:mod:`.registry`). Nothing here imports
gymnasium or stable-baselines3: pruners run in any PyTorch loop (``examples/plain_loop.py``); their
``update(result, scores)`` reads only ``result.indices``, ``.losses``, ``.correct`` and ``.mixed`` (and IES,
when present, ``.scored_indices`` and ``.scored_losses``: the losses of its plan's ``score_after`` samples),
so a plain namespace with those fields can stand in for an :class:`~prunegym.training.EpochResult`.
:class:`PruningSampler` wraps a method (pruner and schedule) as a ``torch.utils.data.Sampler`` for any
``DataLoader`` loop.

Files: ``full``, ``uniform`` (and ``uniform_rescaled``), ``epsilon_greedy``, ``ucb``, ``infobatch``, ``swdpp``,
``pfb``, ``seta``, ``ies``, ``rcap``, ``orderdp``, ``learned`` (the agents' parametric pruner), ``static`` (its
tuned static baselines ``static_const``, ``static_schedule`` and ``static_ramp``), ``sampler``.
"""

from __future__ import annotations

from .base import (
    DEFAULT_MAX_PRUNE_RATIO,
    ActionEncoder,
    FixedPolicy,
    Knob,
    PolicyContext,
    Pruner,
    RankedPruner,
    kept_count,
    policy_context_of,
    rank_descending,
)
from .epsilon_greedy import EpsilonGreedyPolicy, EpsilonGreedyPruner
from .full import FullPolicy, FullPruner
from .ies import IESPolicy, IESPruner
from .infobatch import InfoBatchPolicy, InfoBatchPruner
from .learned import LearnedPruner
from .orderdp import OrderDPPolicy, OrderDPPruner
from .pfb import PFBPolicy, PFBPruner
from .rcap import RCAPPolicy, RCAPPruner
from .registry import POLICIES, PRUNERS, make_policy, make_pruner, policy_pruner
from .sampler import SAMPLER_PRUNERS, IndexedDataset, PruningSampler
from .seta import SeTaPolicy, SeTaPruner
from .static import StaticConstPolicy, StaticRampPolicy, StaticSchedulePolicy
from .swdpp import SwDPPPolicy, SwDPPPruner
from .ucb import UCBPolicy, UCBPruner
from .uniform import UniformPolicy, UniformPruner, UniformRescaledPolicy

__all__ = [
    "DEFAULT_MAX_PRUNE_RATIO",
    "POLICIES",
    "PRUNERS",
    "SAMPLER_PRUNERS",
    "ActionEncoder",
    "EpsilonGreedyPolicy",
    "EpsilonGreedyPruner",
    "FixedPolicy",
    "FullPolicy",
    "FullPruner",
    "IESPolicy",
    "IESPruner",
    "IndexedDataset",
    "InfoBatchPolicy",
    "InfoBatchPruner",
    "Knob",
    "LearnedPruner",
    "PFBPolicy",
    "PFBPruner",
    "PolicyContext",
    "Pruner",
    "PruningSampler",
    "OrderDPPolicy",
    "OrderDPPruner",
    "RCAPPolicy",
    "RCAPPruner",
    "RankedPruner",
    "SeTaPolicy",
    "SeTaPruner",
    "StaticConstPolicy",
    "StaticRampPolicy",
    "StaticSchedulePolicy",
    "SwDPPPolicy",
    "SwDPPPruner",
    "UCBPolicy",
    "UCBPruner",
    "UniformPolicy",
    "UniformPruner",
    "UniformRescaledPolicy",
    "kept_count",
    "make_policy",
    "make_pruner",
    "policy_context_of",
    "policy_pruner",
    "rank_descending",
]
