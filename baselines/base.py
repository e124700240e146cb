"""The interfaces every method shares, free of gymnasium and SB3: :class:`Knob`, :class:`Pruner` (a method's keep
mechanism), :class:`RankedPruner` (Raju et al.'s score-ranked protocol, shared by ``epsilon_greedy`` and
``ucb``), and :class:`FixedPolicy` (a method's published schedule) with the :class:`PolicyContext` the env
gives it.

A pruner turns the score table, the epoch index and a decoded decision (``{"prune_ratio": r, knob: value}``)
into an :class:`~prunegym.training.EpochPlan`, then updates its own state from the
:class:`~prunegym.training.EpochResult` the engine returns. Its random draws come from the generator handed
to :meth:`Pruner.reset` (derived from the run seed), never from the global RNGs. Decisions arrive exactly as
the caller wrote them: the env's action codec (``prunegym.envs.ActionCodec``) is the one place where the
float32 round-off of an agent's action is removed.

A fixed policy has SB3's ``predict(observation, state=None, episode_start=None, deterministic=True)``
signature, so one evaluation harness runs SB3 agents and baselines alike. What it needs of its env (the
pruner it drives, the epoch budget, the action convention, the feature layout) comes as one typed
:class:`PolicyContext` that the env provides (``PruningEnv.policy_context``). The epoch index is read from
the ``epoch_fraction`` feature (``round(epoch_fraction * epochs)``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from prunegym.training import EpochPlan, ScoreTable

__all__ = [
    "DEFAULT_MAX_PRUNE_RATIO",
    "ActionEncoder",
    "EpochLosses",
    "FixedPolicy",
    "Knob",
    "PolicyContext",
    "Pruner",
    "RankedPruner",
    "kept_count",
    "policy_context_of",
    "rank_descending",
]

DEFAULT_MAX_PRUNE_RATIO = 0.9  # the env's default largest prune ratio (its action range): the cheapest setting


@dataclass(frozen=True)
class Knob:
    """One action component beyond the prune ratio: action value -1 maps to ``low``, +1 to ``high``.

    ``log=False``: linearly. ``log=True`` (needs ``0 < low``): linearly in ``log(value)``, i.e. ``a`` in
    [-1, 1] maps to ``exp(log(low) + (a + 1) / 2 * (log(high) - log(low)))`` (for a threshold spanning
    decades); :meth:`encode` is the inverse.
    """

    name: str
    low: float
    high: float
    default: float
    doc: str = ""
    log: bool = False

    def __post_init__(self) -> None:
        if self.log and not 0.0 < self.low <= self.high:
            raise ValueError(
                f"log-scale knob {self.name!r} needs 0 < low <= high; got low={self.low!r}, high={self.high!r}"
            )

    def decode(self, a: float) -> float:
        t = (float(a) + 1.0) * 0.5
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return math.exp(lo + t * (hi - lo))
        return self.low + t * (self.high - self.low)

    def encode(self, value: float) -> float:
        if not self.low <= value <= self.high:
            raise ValueError(f"{self.name}={value!r} is out of range [{self.low}, {self.high}]")
        if self.high == self.low:
            return 0.0
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return 2.0 * (math.log(value) - lo) / (hi - lo) - 1.0
        return 2.0 * (value - self.low) / (self.high - self.low) - 1.0

    def rounded(self, value: float, decimals: int = 6) -> float:
        """``value`` rounded so that float32 round-off in an action never shows: to ``decimals`` places, or
        to ``decimals`` significant digits on a log scale (where values span decades)."""
        if self.log:
            return float(f"{value:.{decimals}g}")
        return round(value, decimals)


class EpochLosses(Protocol):
    """What :meth:`Pruner.update` reads of an epoch's outcome: ``indices`` ``[M]`` int64, ``losses`` ``[M]``
    float, ``correct`` ``[M]`` bool and ``mixed`` ``[M]`` bool, on the training device. The engine's
    :class:`~prunegym.training.EpochResult` is one; so is any object with these fields (a ``SimpleNamespace``)."""

    @property
    def indices(self) -> torch.Tensor: ...

    @property
    def losses(self) -> torch.Tensor: ...

    @property
    def correct(self) -> torch.Tensor: ...

    @property
    def mixed(self) -> torch.Tensor: ...


def kept_count(num_samples: int, prune_ratio: float) -> int:
    """``ceil((1 - r) N)``: the number kept at prune ratio ``r`` (Raju et al.'s count)."""
    return min(num_samples, max(0, math.ceil((1.0 - prune_ratio) * num_samples - 1e-9)))


class Pruner:
    """Base class. Subclasses set ``name``, ``knobs`` and implement :meth:`plan`.

    Life cycle per run: ``reset(num_samples, epochs, device, generator)`` once, then per epoch
    ``plan(epoch, scores, action)`` -> engine -> ``update(result, scores)``.
    """

    name: ClassVar[str] = "base"
    knobs: ClassVar[tuple[Knob, ...]] = ()
    warmup_epochs: int = 0  # full-data epochs at the start of a run (a pruner that has some sets it in __init__)
    # True when the plans carry an in-batch ``selector`` (rows chosen inside each training step, PFB): such
    # plans need one TrainingRun per run (the batched engine refuses them).
    in_batch_selector: ClassVar[bool] = False

    def reset(self, num_samples: int, epochs: int, device: torch.device | str, generator: torch.Generator) -> None:
        self.num_samples = int(num_samples)
        self.epochs = int(epochs)
        self.device = torch.device(device)
        self.generator = generator

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        raise NotImplementedError

    def update(self, result: EpochLosses, scores: ScoreTable) -> None:
        """Update the pruner's own state from the epoch's losses (default: nothing)."""

    # -- helpers shared by subclasses ----------------------------------------------------------------------
    def knob(self, action: Mapping[str, float], name: str) -> float:
        for k in self.knobs:
            if k.name == name:
                return float(action.get(name, k.default))
        raise KeyError(f"pruner {self.name!r} has no knob {name!r}")

    def shuffled(self, indices: torch.Tensor, weights: torch.Tensor | None = None) -> EpochPlan:
        """A plan over ``indices`` (and matching ``weights``) in a random order from the pruner's generator."""
        order = torch.randperm(indices.numel(), generator=self.generator, device=self.device)
        return EpochPlan(indices[order], weights[order] if weights is not None else None)

    def full_plan(self) -> EpochPlan:
        """Every sample once, weight 1, shuffled."""
        return self.shuffled(torch.arange(self.num_samples, device=self.device))


# -- Raju, Daruwalla & Lipasti 2021 (arXiv 2111.12621): the score-ranked protocol ---------------------------------
# Score-ranked selection of ``K = ceil((1 - r) N)`` samples each epoch, no reweighting, after ``warmup_epochs``
# full-data epochs ([recon] default 1); scores from the run's ScoreTable (``ema`` = mu, ``ema_var`` = v, updated
# only for trained samples at the table's ``ema_rate``, default 0.2 = Raju's a [recon]); see METHODS.md.
class RankedPruner(Pruner):
    """Base class: full data for the first ``warmup_epochs`` epochs (and at ``r = 0``), then
    :meth:`select` picks ``K = kept_count(N, r)`` indices; the plan shuffles them, weights 1."""

    def __init__(self, warmup_epochs: int = 1):
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs={warmup_epochs!r} must be >= 0")
        self.warmup_epochs = int(warmup_epochs)

    def select(self, scores: ScoreTable, k: int, action: Mapping[str, float]) -> torch.Tensor:
        """``[k]`` int64 distinct indices to keep (subclasses)."""
        raise NotImplementedError

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan:
        r = float(action["prune_ratio"])
        if epoch < self.warmup_epochs or r <= 0.0:
            return self.full_plan()
        kept = self.select(scores, kept_count(self.num_samples, r), action).to(self.device)
        plan = self.shuffled(kept)
        plan.claimed_prune_ratio = r
        return plan


def rank_descending(score: torch.Tensor) -> torch.Tensor:
    """Indices ``[N]`` of ``score`` ``[N]`` from highest to lowest (ties: lower index first)."""
    return torch.argsort(score, descending=True, stable=True)


# -- fixed policies ---------------------------------------------------------------------------------------------
class ActionEncoder(Protocol):
    """The part of the env's action codec a policy uses (``prunegym.envs.ActionCodec`` is one)."""

    max_prune_ratio: float
    knobs: tuple[Knob, ...]

    def encode(self, prune_ratio: float = 0.0, **knobs: float) -> list[float]: ...


@dataclass(frozen=True)
class PolicyContext:
    """What a fixed policy needs of its env: the ``pruner`` name the env was made with, the run's ``epochs``,
    the action ``codec``, the observation's ``feature_names`` and the env's ``decision_interval``."""

    pruner: str
    epochs: int
    codec: ActionEncoder
    feature_names: tuple[str, ...]
    decision_interval: int = 1


def policy_context_of(env: Any) -> PolicyContext:
    """The :class:`PolicyContext` of a gymnasium env (any wrapper), of the first env of an SB3 VecEnv, or
    ``env`` itself if it is one."""
    if isinstance(env, PolicyContext):
        return env
    ctx = getattr(getattr(env, "unwrapped", None), "policy_context", None)
    if ctx is None and hasattr(env, "get_attr"):
        ctx = env.get_attr("policy_context")[0]
    if not isinstance(ctx, PolicyContext):
        raise ValueError(
            f"{type(env).__name__} provides no policy_context: pass a PruningEnv (or a wrapper or "
            "VecEnv of one) or a PolicyContext"
        )
    return ctx


class FixedPolicy:
    """Base class. Subclasses set ``name``, ``pruner`` (the env pruner the schedule is written for),
    ``defaults`` (hyperparameters, the paper's values) and implement :meth:`schedule`.

    ``env``: a :class:`PolicyContext`, or an env that provides one (:func:`policy_context_of`); its pruner
    must be ``pruner``. ``hparams`` override ``defaults``; unknown names raise ``ValueError``.

    What tuning, calibration, ``compare`` and :class:`~prunegym.baselines.PruningSampler` read of a method is
    declared here, with defaults: ``main_knob`` (and ``main_knob_range``), ``tuned`` and ``schedule_knobs``
    (see :meth:`search_space` and :meth:`calibration_knob`), ``requires_budget`` and ``sampler_unfit``.
    """

    name: ClassVar[str] = "base"
    pruner: ClassVar[str] = "full"
    defaults: ClassVar[dict[str, Any]] = {}
    main_knob: ClassVar[str] = "prune_ratio"  # the hyperparameter that sets the compute (calibrated to a budget)
    # (cheapest, dearest) values of the main knob: the one that saves most compute, the one that saves none;
    # None: (DEFAULT_MAX_PRUNE_RATIO, 0) for prune_ratio, (high, low) for a pruner knob (larger saves more)
    main_knob_range: ClassVar[tuple[float, float] | None] = None
    # the hyperparameters ``prunegym tune`` searches; None: those in ``defaults`` with a range, minus the main knob
    tuned: ClassVar[tuple[str, ...] | None] = None
    schedule_knobs: ClassVar[tuple[Knob, ...]] = ()  # ranges of schedule hyperparameters that are no pruner knob
    requires_budget: ClassVar[bool] = False  # True: spends the env's compute budget itself (never calibrated)
    # why the method cannot run as a PruningSampler, one clause ("selects rows inside ..."); None: it can
    sampler_unfit: ClassVar[str | None] = None

    @classmethod
    def search_space(cls, knobs: tuple[Knob, ...]) -> dict[str, tuple[float, float, bool]]:
        """``{hyperparameter: (low, high, log)}`` that ``prunegym tune`` searches, given the pruner's ``knobs``:
        the ``tuned`` ones, ranged by the pruner's knob of that name, else by ``schedule_knobs`` (may be empty)."""
        ranges = {k.name: k for k in (*cls.schedule_knobs, *knobs)}  # the pruner's knob wins a shared name
        names = cls.tuned
        if names is None:
            names = tuple(n for n in cls.defaults if n in ranges and n != cls.main_knob)
        space: dict[str, tuple[float, float, bool]] = {}
        for n in names:
            if n not in ranges:
                raise ValueError(f"policy {cls.name!r}: no range known for tuned hyperparameter {n!r}")
            space[n] = (float(ranges[n].low), float(ranges[n].high), bool(ranges[n].log))
        return space

    @classmethod
    def calibration_knob(cls, knobs: tuple[Knob, ...]) -> tuple[str, float, float, bool]:
        """``(name, cheapest, dearest, log_scale)`` of the main knob, given the pruner's ``knobs`` (see
        ``main_knob_range``; log scale where the pruner's knob is)."""
        name, log = cls.main_knob, False
        if name == "prune_ratio":
            cheapest, dearest = DEFAULT_MAX_PRUNE_RATIO, 0.0
        else:
            knob = next((k for k in knobs if k.name == name), None)
            if knob is None:
                raise ValueError(f"policy {cls.name!r}: main knob {name!r} is not a knob of its pruner")
            cheapest, dearest, log = float(knob.high), float(knob.low), bool(knob.log)
        if cls.main_knob_range is not None:
            cheapest, dearest = cls.main_knob_range
        return name, float(cheapest), float(dearest), log

    def __init__(self, env: Any, **hparams: Any):
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"policy {self.name!r} has no hyperparameter(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(self.defaults) or 'none'}"
            )
        ctx = policy_context_of(env)
        if ctx.pruner != self.pruner:
            raise ValueError(
                f"policy {self.name!r} drives the {self.pruner!r} pruner, but the env was made with "
                f"pruner={ctx.pruner!r}; make it with pruner={self.pruner!r}"
            )
        self.context = ctx
        self.hparams = {**self.defaults, **hparams}
        self.epochs = int(ctx.epochs)
        self.codec = ctx.codec
        self._epoch_feature = list(ctx.feature_names).index("epoch_fraction")
        self.validate()

    def validate(self) -> None:
        """Check hyperparameter values: ``prune_ratio`` against the env's range and every hyperparameter named
        like one of the pruner's knobs against that knob's range (subclasses check the others)."""
        r = self.hparams.get("prune_ratio")
        if r is not None and not 0.0 <= r <= self.codec.max_prune_ratio:
            raise ValueError(f"prune_ratio={r!r} is out of range [0, {self.codec.max_prune_ratio}]")
        for knob in self.codec.knobs:
            v = self.hparams.get(knob.name)
            if v is not None and not knob.low <= v <= knob.high:
                raise ValueError(
                    f"{knob.name}={v!r} is out of range [{knob.low}, {knob.high}] (the {self.pruner!r} pruner's knob)"
                )

    def schedule(self, epoch: int) -> dict[str, float]:
        """``{"prune_ratio": r, knob: value}`` for the epoch about to be trained (0-based)."""
        raise NotImplementedError

    def epoch_of(self, observation: np.ndarray) -> int:
        return int(round(float(observation[self._epoch_feature]) * self.epochs))

    def action_for(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(self.codec.encode(**self.schedule(self.epoch_of(observation))), dtype=np.float32)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """The action for ``observation`` ``[F]`` (or a batch ``[n, F]`` from a VecEnv) and ``state``."""
        obs = np.asarray(observation, dtype=np.float32)
        if obs.ndim == 1:
            return self.action_for(obs), state
        return np.stack([self.action_for(o) for o in obs]), state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"{type(self).__name__}({args})"
