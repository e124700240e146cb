"""The pruner interface: the keep mechanism of a data-pruning method, free of gymnasium and SB3.

A pruner turns the score table, the epoch index and a decoded action (``{"prune_ratio": r, knob: value}``)
into an :class:`~prunegym.training.EpochPlan`, then updates its own state from the
:class:`~prunegym.training.EpochResult` the engine returns. Its random draws come from the generator handed
to :meth:`Pruner.reset` (derived from the run seed), never from the global RNGs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Mapping

import torch

from prunegym.training import EpochPlan, EpochResult, ScoreTable

__all__ = ["ActionCodec", "Knob", "Pruner", "kept_count", "prune_ratio_of"]


@dataclass(frozen=True)
class Knob:
    """One action component beyond the prune ratio: action value -1 maps to ``low``, +1 to ``high``."""

    name: str
    low: float
    high: float
    default: float
    doc: str = ""

    def decode(self, a: float) -> float:
        return self.low + (float(a) + 1.0) * 0.5 * (self.high - self.low)

    def encode(self, value: float) -> float:
        if not self.low <= value <= self.high:
            raise ValueError(f"{self.name}={value!r} is out of range [{self.low}, {self.high}]")
        if self.high == self.low:
            return 0.0
        return 2.0 * (value - self.low) / (self.high - self.low) - 1.0


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

    def update(self, result: EpochResult, scores: ScoreTable) -> None:
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


class ActionCodec:
    """The env's action convention: component 0 in [-1, 1] <-> prune ratio in ``[0, max_prune_ratio]``,
    then one component per knob (``Knob.decode``). Shared by ``PruningEnv`` and the fixed policies."""

    def __init__(self, max_prune_ratio: float, knobs: tuple[Knob, ...]):
        self.max_prune_ratio = float(max_prune_ratio)
        self.knobs = tuple(knobs)

    @property
    def names(self) -> tuple[str, ...]:
        return ("prune_ratio",) + tuple(k.name for k in self.knobs)

    def encode(self, prune_ratio: float = 0.0, **knobs: float) -> list[float]:
        unknown = sorted(set(knobs) - {k.name for k in self.knobs})
        if unknown:
            raise ValueError(f"no knob(s) {', '.join(unknown)}; allowed: {', '.join(k.name for k in self.knobs) or 'none'}")
        if not 0.0 <= prune_ratio <= self.max_prune_ratio + 1e-12:
            raise ValueError(f"prune_ratio={prune_ratio!r} is out of range [0, {self.max_prune_ratio}]")
        a0 = 2.0 * prune_ratio / self.max_prune_ratio - 1.0 if self.max_prune_ratio > 0 else -1.0
        out = [a0] + [k.encode(float(knobs.get(k.name, k.default))) for k in self.knobs]
        return [min(1.0, max(-1.0, v)) for v in out]

    def decode(self, action, decimals: int = 6) -> dict[str, float]:
        """Decoded values rounded to ``decimals`` places, so that float32 round-off in an action (about
        6e-8) never moves a count: ``encode(prune_ratio=0.1)`` decodes to exactly 0.1."""
        vals = [float(v) for v in action]
        out = {"prune_ratio": round((vals[0] + 1.0) * 0.5 * self.max_prune_ratio, decimals)}
        for k, v in zip(self.knobs, vals[1:]):
            out[k.name] = round(k.decode(v), decimals)
        return out


def prune_ratio_of(action: Mapping[str, float], decimals: int = 6) -> float:
    """The action's prune ratio rounded to ``decimals`` places: an env action passes through float32, whose
    round-off (about 6e-8) would otherwise move ``ceil((1 - r) N)`` by one sample (e.g. r = 0.1 decodes to
    0.09999999404, and ``kept_count(4000, .)`` gives 3601 instead of 3600)."""
    return round(float(action["prune_ratio"]), decimals)
