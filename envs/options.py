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
from prunegym.baselines.base import DEFAULT_MAX_PRUNE_RATIO
from prunegym.training import RunConfig

from .instances import REGIME_OPTIONS, regime_range
from .rewards import (
    FLAT_REWARD_KWARGS,
    REWARDS,
    Reward,
    TradeoffReward,
    check_reward_kwargs,
    flat_reward_default,
    reward_parameters,
)

__all__ = ["EnvOptions", "RUN_FIELDS", "split_kwargs"]

# RunConfig fields an env kwarg may override; the regime fields drawn per episode are the env's own options
RUN_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RunConfig) if f.name not in ("seed", *REGIME_OPTIONS))


@dataclass
class EnvOptions:
    """The env's own settings (see ``PruningEnv``'s docstring for their meaning)."""

    pruner: str = "full"
    pruner_kwargs: dict[str, Any] = field(default_factory=dict)
    reward: str | Callable[..., float] | Reward = "tradeoff"
    compute_weight: float | None = None  # the four flat reward parameters: see _fold_reward_kwargs
    compute_budget: float | tuple[float, float] | None = None
    max_prune_ratio: float = DEFAULT_MAX_PRUNE_RATIO
    decision_interval: int = 1
    record_wall_time: bool = False
    max_wall_time: float | None = None
    lossless_penalty: float | None = None
    lossless_tolerance: float | None = None
    nonfinite_penalty: float | None = None
    features: tuple[str, ...] | None = None
    reward_kwargs: dict[str, Any] = field(default_factory=dict)  # the reward's own parameters, passed whole
    label_noise: float | tuple[float, float] | None = None  # the data regime, fixed or drawn per episode
    imbalance: float | tuple[float, float] | None = None

    def __post_init__(self) -> None:
        self.pruner_kwargs = dict(self.pruner_kwargs or {})
        if isinstance(self.compute_budget, list):
            self.compute_budget = tuple(self.compute_budget)  # a JSON round trip turns the range into a list
        for name in REGIME_OPTIONS:
            if isinstance(getattr(self, name), list):
                setattr(self, name, tuple(getattr(self, name)))
        if self.features is not None:
            self.features = tuple(self.features)
        self._fold_reward_kwargs()
        self.validate()

    def _fold_reward_kwargs(self) -> None:
        """Move each flat reward parameter (``compute_weight=``, ``lossless_penalty=``, ...:
        :data:`~prunegym.envs.rewards.FLAT_REWARD_KWARGS`) that the reward takes into ``reward_kwargs``; one it
        does not take stays where it is (recorded, as every record has all four; ``compute_weight`` still
        reaches a callable as ``RewardInput.compute_weight``)."""
        if not isinstance(self.reward_kwargs, dict | None):
            raise ValueError(f"reward_kwargs={self.reward_kwargs!r} must be a dict of the reward's parameters")
        kwargs, takes = dict(self.reward_kwargs or {}), reward_parameters(self.reward)
        for flat, (_, param) in FLAT_REWARD_KWARGS.items():
            value = getattr(self, flat)
            if value is None or param not in takes:
                continue  # not given, or one the reward does not take (validate checks it)
            _check_number(flat, value)
            if param in kwargs:
                twice = f"{flat}={value!r} and reward_kwargs[{param!r}]={kwargs[param]!r}"
                raise ValueError(f"{twice} set the same reward parameter; give it once")
            kwargs[param] = value
            setattr(self, flat, None)
        self.reward_kwargs = kwargs

    def reward_setting(self, flat: str) -> Any:
        """The value of flat reward parameter ``flat`` (``"compute_weight"``, ...): from ``reward_kwargs``, else
        as given, else the default of the reward class that takes it (what records keep)."""
        value = getattr(self, flat)
        if value is None:
            value = self.reward_kwargs.get(FLAT_REWARD_KWARGS[flat][1], flat_reward_default(flat))
        return value

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
        for flat in FLAT_REWARD_KWARGS:  # those the reward does not take (the others are in reward_kwargs)
            if getattr(self, flat) is not None:
                _check_number(flat, getattr(self, flat))
        check_reward_kwargs(self.reward, self.reward_kwargs)
        r, cw = self.reward, self.compute_weight
        if isinstance(r, TradeoffReward) and cw is not None and float(cw) != r.compute_weight:
            raise ValueError(f"compute_weight={cw!r} differs from the TradeoffReward's own ({r.compute_weight!r})")
        w = self.max_wall_time
        if w is not None and not (isinstance(w, numbers.Real) and w >= 0):
            raise ValueError(f"max_wall_time={w!r} must be None or a number of seconds >= 0")
        self.budget_range()  # validates compute_budget
        self.regime_ranges()  # validates label_noise and imbalance

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

    def regime_ranges(self) -> dict[str, tuple[float, float]]:
        """``{"label_noise": (lo, hi), "imbalance": (lo, hi)}`` for the regime fields the env was given (a fixed
        value as ``lo == hi``; see :mod:`prunegym.envs.instances`); ``{}`` without a regime."""
        out = {}
        for name in REGIME_OPTIONS:
            r = regime_range(name, getattr(self, name))
            if r is not None:
                out[name] = r
        return out

    def record_kwargs(self) -> dict[str, Any]:
        """The options an episode record keeps (the wall-clock ones are not replayed; options added after
        0.1.0 only when set, so older records stay equal). Reward parameters are kept flat, as ever
        (``compute_weight``, ...: :meth:`reward_setting`); ``reward_kwargs`` only for those with no flat name."""
        out: dict[str, Any] = {
            "pruner": self.pruner,
            "pruner_kwargs": dict(self.pruner_kwargs),
            "reward": self.reward,
            "compute_weight": float(self.reward_setting("compute_weight")),
            "max_prune_ratio": float(self.max_prune_ratio),
            "decision_interval": self.decision_interval,
            "lossless_penalty": self.reward_setting("lossless_penalty"),
            "lossless_tolerance": self.reward_setting("lossless_tolerance"),
            "nonfinite_penalty": float(self.reward_setting("nonfinite_penalty")),
        }
        flat_params = {param for _, param in FLAT_REWARD_KWARGS.values()}
        if rest := {k: v for k, v in self.reward_kwargs.items() if k not in flat_params}:
            out["reward_kwargs"] = rest
        if self.compute_budget is not None:
            out["compute_budget"] = (
                list(self.compute_budget) if isinstance(self.compute_budget, tuple) else float(self.compute_budget)
            )
        if self.features is not None:
            out["features"] = list(self.features)
        for name in REGIME_OPTIONS:
            value = getattr(self, name)
            if value is not None:
                out[name] = list(value) if isinstance(value, tuple) else float(value)
        return out


OPTION_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(EnvOptions))


def _check_number(name: str, value: Any) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is a finite number >= 0."""
    if not (isinstance(value, numbers.Real) and math.isfinite(value) and float(value) >= 0):
        raise ValueError(f"{name}={value!r} must be a finite number >= 0")


def split_kwargs(kwargs: dict[str, Any]) -> tuple[EnvOptions, dict[str, Any]]:
    """``(options, run overrides)`` of ``PruningEnv`` keyword arguments; unknown names raise ``ValueError``
    listing the allowed ones."""
    bad = sorted(set(kwargs) - set(OPTION_FIELDS) - set(RUN_FIELDS))
    if bad:
        allowed = sorted(set(OPTION_FIELDS) | set(RUN_FIELDS) | {"seed", "render_mode"})
        raise ValueError(f"unknown PruningEnv argument(s) {', '.join(bad)}; allowed: {', '.join(allowed)}")
    options = EnvOptions(**{k: v for k, v in kwargs.items() if k in OPTION_FIELDS})
    return options, {k: v for k, v in kwargs.items() if k in RUN_FIELDS}
