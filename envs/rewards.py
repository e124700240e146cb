"""Rewards as objects (CompilerGym's habit): ``reset`` at the start of an episode, ``step`` after each env
step, ``on_error`` for the step whose run diverged.

Presets (``PruningEnv(reward=...)``): ``"tradeoff"`` (default), ``"lossless"``, ``"accuracy"``; a callable
on :class:`RewardInput` works too (wrapped in :class:`CallableReward`), and so does any :class:`Reward`
instance.

Divergence: the step whose training (or validation) loss becomes non-finite ends the episode. Its reward is
what the reward gives a run that ends there at zero validation accuracy, minus ``nonfinite_penalty``
(:data:`NONFINITE_PENALTY`): a model with NaN weights still "predicts" class 0, so its measured accuracy is
not 0, and diverging must never pay. So a diverged ``tradeoff`` episode returns
``-initial val acc - compute_weight * compute used - 1`` and a diverged ``lossless`` one
``-compute used - penalty * max(0, reference - tolerance) - 1``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

__all__ = [
    "DEFAULT_COMPUTE_WEIGHT",
    "NONFINITE_PENALTY",
    "REWARDS",
    "AccuracyReward",
    "CallableReward",
    "LosslessReward",
    "Reward",
    "RewardFn",
    "RewardInput",
    "TradeoffReward",
    "lossless_reward",
    "make_reward",
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
    budget (fraction of the full-data run's FLOPs), ``None`` without one.
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
    ``final val acc - initial val acc - compute_weight * total compute fraction``."""

    name = "tradeoff"

    def step(self, r: RewardInput) -> float:
        return (r.val_accuracy - r.prev_val_accuracy) - r.compute_weight * r.compute_fraction_step


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

    def __init__(self, penalty: float = 10.0, tolerance: float = 0.005, nonfinite_penalty: float = NONFINITE_PENALTY):
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


def make_reward(
    spec: str | RewardFn | Reward,
    *,
    lossless_penalty: float = 10.0,
    lossless_tolerance: float = 0.005,
    nonfinite_penalty: float = NONFINITE_PENALTY,
) -> Reward:
    """The :class:`Reward` for ``spec``: a name in :data:`REWARDS`, a :class:`Reward` or a callable."""
    if isinstance(spec, Reward):
        return spec
    if isinstance(spec, str):
        if spec not in REWARDS:
            raise ValueError(f"unknown reward {spec!r}; allowed: {', '.join(REWARDS)} or a callable")
        if spec == "lossless":
            return LosslessReward(lossless_penalty, lossless_tolerance, nonfinite_penalty)
        return REWARDS[spec](nonfinite_penalty)
    if callable(spec):
        return CallableReward(spec, nonfinite_penalty)
    raise ValueError(f"reward={spec!r} must be one of {', '.join(REWARDS)} or a callable on RewardInput")


def tradeoff_reward(r: RewardInput) -> float:
    """The ``tradeoff`` reward as a plain function (see :class:`TradeoffReward`)."""
    return TradeoffReward().step(r)


def lossless_reward(penalty: float = 10.0, tolerance: float = 0.005) -> RewardFn:
    """The ``lossless`` reward as a plain function (see :class:`LosslessReward`)."""
    return LosslessReward(penalty, tolerance).step
