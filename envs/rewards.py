"""Reward presets: ``tradeoff`` (default) and ``lossless``; a callable on :class:`RewardInput` works too."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Union

__all__ = ["REWARDS", "DEFAULT_COMPUTE_WEIGHT", "RewardInput", "RewardFn", "tradeoff_reward", "lossless_reward"]

# Default price of compute in the ``tradeoff`` reward, in validation accuracy (a fraction in [0, 1]) per
# full-data run of training FLOPs: the whole full-data run's compute is worth 0.1 of accuracy (10 points), so
# saving 10% of the run's compute pays for one accuracy point (0.01) lost. This is the scale on which the
# field reports "lossless" savings (InfoBatch: about 40% of the compute saved for <= 0.3 points lost): a
# method that saves 30% at no accuracy cost earns +0.03 over the full run, one that loses 5 points to save
# 50% earns the same as not pruning at all. Compute fractions count every training pass, scoring passes
# included (a method that scores the whole set can spend more than 1.0); evaluation is free.
DEFAULT_COMPUTE_WEIGHT = 0.1


@dataclass(frozen=True)
class RewardInput:
    """What a reward sees after a step. Accuracies in [0, 1]; compute as fractions of the full-data run."""

    val_accuracy: float
    prev_val_accuracy: float
    initial_val_accuracy: float
    compute_fraction_step: float
    compute_fraction_total: float
    terminated: bool
    compute_weight: float
    reference_accuracy: float | None = None


RewardFn = Callable[[RewardInput], float]


def tradeoff_reward(r: RewardInput) -> float:
    """``(val_acc_t - val_acc_{t-1}) - compute_weight * c_t`` with ``c_t`` the step's training FLOPs as a
    fraction of the full-data run's; the return telescopes to
    ``final val acc - initial val acc - compute_weight * total compute fraction``."""
    return (r.val_accuracy - r.prev_val_accuracy) - r.compute_weight * r.compute_fraction_step


def lossless_reward(penalty: float = 10.0, tolerance: float = 0.005) -> RewardFn:
    """0 until the end, then ``-total compute - penalty * max(0, reference - tolerance - final val acc)``,
    the reference being the final validation accuracy of a full-data run of the same task and seed
    (``prunegym.envs.reference``). With the defaults (penalty 10, tolerance 0.005) half an accuracy point of
    shortfall is free and every further point (0.01) costs 0.1, as much as 10% of the full run's compute."""

    def reward(r: RewardInput) -> float:
        if not r.terminated:
            return 0.0
        if r.reference_accuracy is None:
            raise RuntimeError("the lossless reward needs the reference accuracy of a full-data run")
        shortfall = max(0.0, r.reference_accuracy - tolerance - r.val_accuracy)
        return -r.compute_fraction_total - penalty * shortfall

    return reward


REWARDS = ("tradeoff", "lossless")
RewardSpec = Union[str, RewardFn]
