"""Rewards as objects (CompilerGym's habit): ``reset`` at the start of an episode, ``step`` after each env
step, ``on_error`` for the step whose run diverged.

Presets (``PruningEnv(reward=...)``): ``"tradeoff"`` (default), ``"lossless"``, ``"accuracy"``; a callable
on :class:`RewardInput` works too (wrapped in :class:`CallableReward`), and so does any :class:`Reward`
instance. A reward's parameters are its constructor's keyword arguments (``PruningEnv(reward_kwargs=...)``,
:func:`make_reward`); each default is written once, on its class. :data:`FLAT_REWARD_KWARGS` are the flat
env kwargs that name them too (``compute_weight=``, ``lossless_penalty=``, ... in every episode record).

Divergence: the step whose training (or validation) loss becomes non-finite ends the episode. Its reward is
what the reward gives a run that ends there at zero validation accuracy, minus ``nonfinite_penalty``
(:data:`NONFINITE_PENALTY`): a model with NaN weights still "predicts" class 0, so its measured accuracy is
not 0, and diverging must never pay. So a diverged ``tradeoff`` episode returns
``-initial val acc - compute_weight * compute used - 1`` and a diverged ``lossless`` one
``-compute used - penalty * max(0, reference - tolerance) - 1``.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar

__all__ = [
    "DEFAULT_COMPUTE_WEIGHT",
    "FLAT_REWARD_KWARGS",
    "NONFINITE_PENALTY",
    "REWARDS",
    "AccuracyReward",
    "CallableReward",
    "LosslessReward",
    "Reward",
    "RewardFn",
    "RewardInput",
    "TradeoffReward",
    "check_reward_kwargs",
    "flat_reward_default",
    "lossless_reward",
    "make_reward",
    "reward_parameters",
    "tradeoff_reward",
]

# Default price of compute in the ``tradeoff`` reward, in validation accuracy (a fraction in [0, 1]) per
# full-data run of training FLOPs: the whole full-data run's compute is worth 0.1 of accuracy (10 points), so
# saving 10% of the run's compute pays for one accuracy point (0.01) lost. This is the scale on which the
# field reports "lossless" savings (InfoBatch: about 40% of the compute saved for <= 0.3 points lost): a
# method that saves 30% at no accuracy cost earns +0.03 over the full run, one that loses 5 points to save
# 50% earns the same as not pruning at all. Compute fractions count every training pass, scoring passes
# included (a method that scores the whole set can spend more than 1.0); evaluation is free.
DEFAULT_COMPUTE_WEIGHT = 0.1

# Extra cost of a diverged run (see the module docstring).
NONFINITE_PENALTY = 1.0


@dataclass(frozen=True)
class RewardInput:
    """What a reward sees after a step. Accuracies in [0, 1]; compute as fractions of the full-data run.

    ``reference_accuracy``: the final validation accuracy of the full-data run of the same task and seed
    (only computed, at the end, for rewards with ``needs_reference``). ``compute_budget``: the episode's
    budget (fraction of the full-data run's FLOPs), ``None`` without one. ``compute_weight``: the env's
    ``compute_weight`` (flat or in ``reward_kwargs``; default 0.1), kept for callables and custom rewards that
    price compute themselves; :class:`TradeoffReward` prices with its own.
    """

    val_accuracy: float
    prev_val_accuracy: float
    initial_val_accuracy: float
    compute_fraction_step: float
    compute_fraction_total: float
    terminated: bool
    compute_weight: float
    reference_accuracy: float | None = None
    compute_budget: float | None = None


RewardFn = Callable[[RewardInput], float]


class Reward:
    """Base class: :meth:`step` is the reward of a step; :meth:`on_error` that of a diverged step."""

    name: ClassVar[str] = "reward"
    needs_reference: ClassVar[bool] = False

    def __init__(self, nonfinite_penalty: float = NONFINITE_PENALTY):
        self.nonfinite_penalty = float(nonfinite_penalty)

    def reset(self, initial_val_accuracy: float) -> None:
        """Start of an episode (after the initial evaluation); stateless rewards need nothing."""

    def step(self, r: RewardInput) -> float:
        raise NotImplementedError

    def on_error(self, r: RewardInput) -> float:
        """The reward of a run that ends here at zero validation accuracy, minus ``nonfinite_penalty``."""
        return self.step(replace(r, val_accuracy=0.0, terminated=True)) - self.nonfinite_penalty


class TradeoffReward(Reward):
    """``(val_acc_t - val_acc_{t-1}) - compute_weight * c_t``, ``c_t`` the step's training FLOPs as a fraction
    of the full-data run's; the return telescopes to
    ``final val acc - initial val acc - compute_weight * total compute fraction``. ``compute_weight``:
    validation accuracy per full-data run of FLOPs (default :data:`DEFAULT_COMPUTE_WEIGHT`)."""

    name = "tradeoff"

    def __init__(self, nonfinite_penalty: float = NONFINITE_PENALTY, *, compute_weight: float = DEFAULT_COMPUTE_WEIGHT):
        super().__init__(nonfinite_penalty)
        self.compute_weight = float(compute_weight)

    def step(self, r: RewardInput) -> float:
        return (r.val_accuracy - r.prev_val_accuracy) - self.compute_weight * r.compute_fraction_step


class AccuracyReward(Reward):
    """``val_acc_t - val_acc_{t-1}``: no price on compute, the partner of a compute budget (the env's
    ``compute_budget`` caps what may be spent). The return is ``final val acc - initial val acc``."""

    name = "accuracy"

    def step(self, r: RewardInput) -> float:
        return r.val_accuracy - r.prev_val_accuracy


class LosslessReward(Reward):
    """0 until the end, then ``-total compute - penalty * max(0, reference - tolerance - final val acc)``,
    the reference being the final validation accuracy of a full-data run of the same task and seed
    (``prunegym.envs.reference``). With the defaults (penalty 10, tolerance 0.005) half an accuracy point of
    shortfall is free and every further point (0.01) costs 0.1, as much as 10% of the full run's compute."""

    name = "lossless"
    needs_reference = True
    DEFAULT_PENALTY: ClassVar[float] = 10.0  # reward per unit (1.0 = 100 points) of accuracy shortfall
    DEFAULT_TOLERANCE: ClassVar[float] = 0.005  # accuracy shortfall (a fraction) that costs nothing

    def __init__(
        self,
        penalty: float = DEFAULT_PENALTY,
        tolerance: float = DEFAULT_TOLERANCE,
        nonfinite_penalty: float = NONFINITE_PENALTY,
    ):
        super().__init__(nonfinite_penalty)
        self.penalty = float(penalty)
        self.tolerance = float(tolerance)

    def step(self, r: RewardInput) -> float:
        if not r.terminated:
            return 0.0
        if r.reference_accuracy is None:
            raise RuntimeError("the lossless reward needs the reference accuracy of a full-data run")
        shortfall = max(0.0, r.reference_accuracy - self.tolerance - r.val_accuracy)
        return -r.compute_fraction_total - self.penalty * shortfall


class CallableReward(Reward):
    """A user's function ``RewardInput -> float`` as a reward (its name is the function's)."""

    def __init__(self, fn: RewardFn, nonfinite_penalty: float = NONFINITE_PENALTY):
        super().__init__(nonfinite_penalty)
        self.fn = fn
        self.name = getattr(fn, "__name__", "callable")  # type: ignore[misc]

    def step(self, r: RewardInput) -> float:
        return float(self.fn(r))


REWARDS: dict[str, type[Reward]] = {"tradeoff": TradeoffReward, "lossless": LosslessReward, "accuracy": AccuracyReward}

# The flat env kwargs that name a reward parameter (``PruningEnv(compute_weight=0.2)``, every episode record):
# env kwarg -> (the class whose constructor takes the parameter, and the parameter's name there).
FLAT_REWARD_KWARGS: dict[str, tuple[type[Reward], str]] = {
    "compute_weight": (TradeoffReward, "compute_weight"),
    "lossless_penalty": (LosslessReward, "penalty"),
    "lossless_tolerance": (LosslessReward, "tolerance"),
    "nonfinite_penalty": (Reward, "nonfinite_penalty"),
}


def _reward_class(spec: str | RewardFn | Reward) -> type[Reward] | None:
    """The class ``make_reward`` builds for ``spec`` (``None`` for a :class:`Reward` instance)."""
    if isinstance(spec, Reward):
        return None
    if isinstance(spec, str):
        if spec not in REWARDS:
            raise ValueError(f"unknown reward {spec!r}; allowed: {', '.join(REWARDS)} or a callable")
        return REWARDS[spec]
    if callable(spec):
        return CallableReward
    raise ValueError(f"reward={spec!r} must be one of {', '.join(REWARDS)} or a callable on RewardInput")


def _defaults(cls: type[Reward]) -> dict[str, Any]:
    return {n: p.default for n, p in inspect.signature(cls).parameters.items() if n != "fn"}


def reward_parameters(spec: str | RewardFn | Reward) -> dict[str, Any]:
    """``{name: default}`` of the keyword arguments ``make_reward(spec, **reward_kwargs)`` takes (the reward
    class's constructor's; none for a :class:`Reward` instance, which carries its own)."""
    cls = _reward_class(spec)
    return {} if cls is None else _defaults(cls)


def flat_reward_default(flat: str) -> Any:
    """The default of flat env kwarg ``flat`` (a key of :data:`FLAT_REWARD_KWARGS`): its reward class's."""
    cls, param = FLAT_REWARD_KWARGS[flat]
    return _defaults(cls)[param]


def check_reward_kwargs(spec: str | RewardFn | Reward, reward_kwargs: dict[str, Any]) -> None:
    """``ValueError`` (one line) unless ``reward_kwargs`` are parameters of ``spec``'s reward, each a finite
    number >= 0 (what every parameter of the presets is)."""
    bad = sorted(set(reward_kwargs) - set(reward_parameters(spec)))
    if bad and isinstance(spec, Reward):
        raise ValueError(f"reward_kwargs {bad} do not apply: a Reward instance carries its own parameters")
    if bad:
        what = repr(spec) if isinstance(spec, str) else "(a callable)"
        allowed = ", ".join(sorted(reward_parameters(spec)))
        raise ValueError(f"reward_kwargs {bad} are not parameters of reward {what}; allowed: {allowed}")
    for name, value in reward_kwargs.items():
        if not (isinstance(value, numbers.Real) and math.isfinite(value) and float(value) >= 0):
            raise ValueError(f"reward_kwargs[{name!r}]={value!r} must be a finite number >= 0")


def make_reward(spec: str | RewardFn | Reward, **reward_kwargs: Any) -> Reward:
    """The :class:`Reward` for ``spec`` (a name in :data:`REWARDS`, a :class:`Reward` or a callable), built with
    ``reward_kwargs`` (see :func:`reward_parameters`)."""
    check_reward_kwargs(spec, reward_kwargs)  # also refuses an unknown name or a spec of another kind
    if isinstance(spec, Reward):
        return spec
    if isinstance(spec, str):
        return REWARDS[spec](**reward_kwargs)
    return CallableReward(spec, **reward_kwargs)


def tradeoff_reward(r: RewardInput) -> float:
    """The ``tradeoff`` reward as a plain function, priced with ``r.compute_weight`` (see :class:`TradeoffReward`)."""
    return TradeoffReward(compute_weight=r.compute_weight).step(r)


def lossless_reward(
    penalty: float = LosslessReward.DEFAULT_PENALTY, tolerance: float = LosslessReward.DEFAULT_TOLERANCE
) -> RewardFn:
    """The ``lossless`` reward as a plain function (see :class:`LosslessReward`)."""
    return LosslessReward(penalty, tolerance).step
