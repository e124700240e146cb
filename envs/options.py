""":class:`EnvOptions`: every ``PruningEnv`` argument that is not a training-run setting, stated once.

``PruningEnv(task, seed=None, render_mode=None, **kwargs)`` splits ``kwargs`` into these options and
:class:`~prunegym.training.RunConfig` fields (overrides of the task's preset); anything else is an error that
lists both sets.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from prunegym.baselines import PRUNERS
from prunegym.training import RunConfig

from .rewards import DEFAULT_COMPUTE_WEIGHT, NONFINITE_PENALTY, REWARDS, Reward

__all__ = ["EnvOptions", "RUN_FIELDS", "split_kwargs"]

RUN_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunConfig) if f.name != "seed")


@dataclass
class EnvOptions:
    """The env's own settings (see ``PruningEnv``'s docstring for their meaning)."""

    pruner: str = "full"
    pruner_kwargs: dict[str, Any] = field(default_factory=dict)
    reward: str | Callable[..., float] | Reward = "tradeoff"
    compute_weight: float = DEFAULT_COMPUTE_WEIGHT
    compute_budget: float | tuple[float, float] | None = None
    max_prune_ratio: float = 0.9
    decision_interval: int = 1
    record_wall_time: bool = False
    max_wall_time: float | None = None
    lossless_penalty: float = 10.0
    lossless_tolerance: float = 0.005
    nonfinite_penalty: float = NONFINITE_PENALTY
    features: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.pruner_kwargs = dict(self.pruner_kwargs or {})
        if isinstance(self.compute_budget, list):
            self.compute_budget = tuple(self.compute_budget)  # a JSON round trip turns the range into a list
        if self.features is not None:
            self.features = tuple(self.features)
        self.validate()

    def validate(self) -> None:
        if self.pruner not in PRUNERS:
            raise ValueError(f"unknown pruner {self.pruner!r}; allowed: {', '.join(PRUNERS)}")
        if isinstance(self.reward, str):
            if self.reward not in REWARDS:
                raise ValueError(f"unknown reward {self.reward!r}; allowed: {', '.join(REWARDS)} or a callable")
        elif not callable(self.reward) and not isinstance(self.reward, Reward):
            raise ValueError(f"reward={self.reward!r} must be one of {', '.join(REWARDS)} or a callable on RewardInput")
        if not 0.0 <= self.max_prune_ratio < 1.0:
            raise ValueError(f"max_prune_ratio={self.max_prune_ratio!r} must be in [0, 1)")
        d = self.decision_interval
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise ValueError(f"decision_interval={d!r} must be a positive int")
        for name in ("compute_weight", "nonfinite_penalty", "lossless_penalty", "lossless_tolerance"):
            value: float = getattr(self, name)  # the four fields are declared float
            if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value!r} must be a finite number >= 0")
        w = self.max_wall_time
        if w is not None and not (isinstance(w, numbers.Real) and w >= 0):
            raise ValueError(f"max_wall_time={w!r} must be None or a number of seconds >= 0")
        self.budget_range()  # validates compute_budget

    def budget_range(self) -> tuple[float, float] | None:
        """``(lo, hi)`` of the compute budget (``lo == hi`` for a fixed one), ``None`` without a budget."""
        b = self.compute_budget
        if b is None:
            return None
        msg = (
            f"compute_budget={b!r} must be a fraction b in (0, 1] of the full-data run's training FLOPs, or a "
            "range (lo, hi) with 0 < lo <= hi <= 1 to draw each episode's budget from"
        )
        if isinstance(b, tuple):
            if len(b) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in b):
                raise ValueError(msg)
            lo, hi = float(b[0]), float(b[1])
        elif isinstance(b, numbers.Real) and not isinstance(b, bool):
            lo = hi = float(b)
        else:
            raise ValueError(msg)
        if not (0.0 < lo <= hi <= 1.0):
            raise ValueError(msg)
        return lo, hi

    def record_kwargs(self) -> dict[str, Any]:
        """The options an episode record keeps (the wall-clock ones are not replayed; options added after
        0.1.0 only when set, so older records stay equal)."""
        out: dict[str, Any] = {
            "pruner": self.pruner,
            "pruner_kwargs": dict(self.pruner_kwargs),
            "reward": self.reward,
            "compute_weight": float(self.compute_weight),
            "max_prune_ratio": float(self.max_prune_ratio),
            "decision_interval": self.decision_interval,
            "lossless_penalty": self.lossless_penalty,
            "lossless_tolerance": self.lossless_tolerance,
            "nonfinite_penalty": float(self.nonfinite_penalty),
        }
        if self.compute_budget is not None:
            out["compute_budget"] = (
                list(self.compute_budget) if isinstance(self.compute_budget, tuple) else float(self.compute_budget)
            )
        if self.features is not None:
            out["features"] = list(self.features)
        return out


OPTION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EnvOptions))


def split_kwargs(kwargs: dict[str, Any]) -> tuple[EnvOptions, dict[str, Any]]:
    """``(options, run overrides)`` of ``PruningEnv`` keyword arguments; unknown names raise ``ValueError``
    listing the allowed ones."""
    bad = sorted(set(kwargs) - set(OPTION_FIELDS) - set(RUN_FIELDS))
    if bad:
        allowed = sorted(set(OPTION_FIELDS) | set(RUN_FIELDS) | {"seed", "render_mode"})
        raise ValueError(f"unknown PruningEnv argument(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")
    options = EnvOptions(**{k: v for k, v in kwargs.items() if k in OPTION_FIELDS})
    return options, {k: v for k, v in kwargs.items() if k in RUN_FIELDS}
