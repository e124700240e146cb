"""An episode's instance: its compute budget and data regime, fixed or drawn per episode.

An env made with ``compute_budget=b`` or ``=(lo, hi)``, ``label_noise=eta`` or ``=(lo, hi)`` and
``imbalance=rho`` or ``=(lo, hi)`` gives each episode one value of each: the fixed one, or a draw from the env's
generator (budget and label noise uniform, imbalance log-uniform), in that order and only for the ranges the
env has (so an env without regime ranges draws exactly what it always drew). ``reset(options={...})`` sets one
episode's values instead (``compute_budget``, ``label_noise``, ``imbalance``). The episode record keeps the
values, so a replay rebuilds the same instance; the regime reaches the run as ``RunConfig`` fields
(:mod:`prunegym.training.regimes`), the budget as a :class:`~prunegym.training.ComputeBudget`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from prunegym.training import check_fraction

__all__ = ["REGIME_OPTIONS", "Instance", "episode_instance", "regime_range"]

REGIME_OPTIONS = ("label_noise", "imbalance")  # the regime fields an env draws per episode


def regime_range(name: str, value: Any) -> tuple[float, float] | None:
    """``(lo, hi)`` of env option ``name`` (``label_noise``: 0 <= lo <= hi < 1; ``imbalance``: 1 <= lo <= hi),
    a fixed value as ``lo == hi``; ``None`` when not given. One-line ``ValueError`` otherwise."""
    if value is None:
        return None
    allowed = "a fraction in [0, 1)" if name == "label_noise" else "a number >= 1 (1: balanced)"
    msg = f"{name}={value!r} must be {allowed}, or a range (lo, hi) of them to draw each episode's value from"
    pair = tuple(value) if isinstance(value, (list, tuple)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in pair):
        raise ValueError(msg)
    lo, hi = float(pair[0]), float(pair[1])
    ok = 0.0 <= lo <= hi < 1.0 if name == "label_noise" else 1.0 <= lo <= hi and math.isfinite(hi)
    if not ok:
        raise ValueError(msg)
    return lo, hi


@dataclass(frozen=True)
class Instance:
    """One episode's ``compute_budget`` (a fraction of the full-data run's FLOPs, ``None``: none) and data regime
    (``label_noise``, ``imbalance``; ``None`` where the env has none)."""

    compute_budget: float | None = None
    label_noise: float | None = None
    imbalance: float | None = None

    def run_overrides(self) -> dict[str, float]:
        """The ``RunConfig`` fields of the regime (those the env sets)."""
        return {k: v for k, v in (("label_noise", self.label_noise), ("imbalance", self.imbalance)) if v is not None}

    def regime(self) -> dict[str, float] | None:
        """The regime as an episode record keeps it (``None`` without one)."""
        return self.run_overrides() or None


def _draw(lo: float, hi: float, rng: np.random.Generator, log: bool = False) -> float:
    if lo == hi:
        return lo
    if log:
        return float(math.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * rng.random()))
    return float(lo + (hi - lo) * rng.random())


def episode_instance(
    options: dict[str, Any],
    budget_range: tuple[float, float] | None,
    regimes: dict[str, tuple[float, float]],
    rng: np.random.Generator,
) -> Instance:
    """The episode's :class:`Instance`: each value from ``options`` (a reset's) if given, else the env's (fixed,
    or drawn from its range with ``rng``: budget, then label noise, then imbalance, each only if the env has it)."""
    allowed = ("compute_budget", *REGIME_OPTIONS)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown reset option(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    budget = _budget(options, budget_range, rng)
    values: dict[str, float | None] = {}
    for name in REGIME_OPTIONS:
        if name in options:
            if name not in regimes:
                raise ValueError(
                    f"reset(options={{{name!r}: ...}}) needs an env made with {name}=... (fixed or a range)"
                )
            value = regime_range(name, options[name])
            if value is None or value[0] != value[1]:
                raise ValueError(f"reset option {name}={options[name]!r} must be one value, not a range or None")
            values[name] = value[0]
        elif name in regimes:
            values[name] = _draw(*regimes[name], rng, log=name == "imbalance")
    return Instance(budget, values.get("label_noise"), values.get("imbalance"))


def _budget(options: dict[str, Any], budget_range: tuple[float, float] | None, rng: np.random.Generator):
    if "compute_budget" in options:
        b = options["compute_budget"]
        if b is None:
            if budget_range is not None:
                raise ValueError(
                    "compute_budget=None at reset, but this env has a budget; make an env "
                    "without compute_budget for unbudgeted episodes"
                )
            return None
        if budget_range is None:
            raise ValueError(
                "reset(options={'compute_budget': ...}) needs an env made with compute_budget "
                "(its observation has the budget features)"
            )
        return check_fraction(b, "compute_budget")
    if budget_range is None:
        return None
    return _draw(*budget_range, rng)
