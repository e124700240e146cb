"""Wrappers around :class:`PruningEnv` for agents that need another action space: ``DiscreteRatio`` (value-based
agents) and ``ResidualAction`` (an agent that corrects a fixed policy's action)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from prunegym.baselines import POLICIES, make_policy

__all__ = ["DiscreteRatio", "ResidualAction", "interpolate_settings"]


class DiscreteRatio(gym.ActionWrapper):
    """Discretises the prune ratio for value-based agents (SB3's DQN): ``Discrete(len(ratios))``.

    Action ``i`` means prune ratio ``ratios[i]`` (default 0, 0.1, ..., 0.9 capped at the env's
    ``max_prune_ratio``) with every other knob at its default. ``info["prune_ratio"]`` reports the ratio.
    """

    def __init__(self, env: gym.Env, ratios: Sequence[float] | None = None):
        super().__init__(env)
        base: Any = env.unwrapped  # duck-typed: a PruningEnv's max_prune_ratio and encode_action
        max_r = float(base.max_prune_ratio)
        if ratios is None:
            ratios = [round(0.1 * i, 10) for i in range(10) if 0.1 * i <= max_r + 1e-9]
        ratios = [float(r) for r in ratios]
        if not ratios:
            raise ValueError("DiscreteRatio needs at least one ratio")
        bad = [r for r in ratios if not 0.0 <= r <= max_r + 1e-12]
        if bad:
            raise ValueError(f"ratios {bad} are outside [0, max_prune_ratio={max_r}]")
        self.ratios = tuple(ratios)
        self._table = np.stack([base.encode_action(prune_ratio=min(r, max_r)) for r in self.ratios])
        self.action_space = spaces.Discrete(len(self.ratios))

    def action(self, action) -> np.ndarray:
        i = int(np.asarray(action).reshape(()))
        if not 0 <= i < len(self.ratios):
            raise ValueError(f"action {i} is outside Discrete({len(self.ratios)}) (ratios {self.ratios})")
        return self._table[i]


def interpolate_settings(table: Mapping[float, Mapping[str, float]], budget: float) -> dict[str, float]:
    """Hyperparameters at ``budget``, linearly interpolated between the budgets of ``table``
    (``{budget: {name: value}}``, e.g. tuned settings at 0.3, 0.5 and 0.7) and held constant beyond them."""
    if not table:
        raise ValueError("interpolate_settings needs at least one budget's settings")
    points = sorted((float(b), dict(p)) for b, p in table.items())
    xs = [b for b, _ in points]
    i = bisect.bisect_left(xs, budget)
    if i == 0:
        return dict(points[0][1])
    if i == len(points):
        return dict(points[-1][1])
    (b0, p0), (b1, p1) = points[i - 1], points[i]
    t = (budget - b0) / (b1 - b0)
    return {k: (1 - t) * float(p0[k]) + t * float(p1[k]) for k in p0}


class ResidualAction(gym.ActionWrapper):
    """The agent's action ``a`` in ``[-1, 1]^A`` corrects a fixed policy's: the env gets
    ``clip(base(obs) + scale * a, -1, 1)``, so an agent whose actions start near 0 starts where the fixed
    policy is (issue 16: a residual on a tuned ``static_schedule``).

    ``base``: a fixed-policy name of :data:`prunegym.baselines.POLICIES` whose pruner is the env's;
    ``settings``: its hyperparameters, either one dict or a table ``{budget: {name: value}}`` interpolated at
    each episode's budget (:func:`interpolate_settings`; the env must have a compute budget);
    ``scale``: the largest correction, in action units (default 0.5, a quarter of the range);
    ``track_budget``: re-plan the base's keep fraction each epoch on the compute actually left
    (``static_schedule``/``static_const``/``static_ramp`` bases:
    :meth:`~prunegym.baselines.StaticSchedulePolicy.replanned_keep`)
    and leave the prune ratio uncorrected in the last epoch, so that the episode spends its budget whatever
    the agent's earlier corrections were (default False: the base is open loop, as tuned);
    ``correct``: the names of the action components the agent corrects (of the env's ``action_names``, e.g.
    ``["prune_ratio"]`` for a residual on the keep schedule only); the agent's action has one component per
    name, in that order, and the other components are the base's (default None: every component).
    JSON-able arguments, so an agent's ``.json`` can name it (``{"prunegym.envs.ResidualAction": {...}}``).
    """

    def __init__(
        self,
        env: gym.Env,
        base: str,
        settings: Mapping[str, Any] | None = None,
        scale: float = 0.5,
        track_budget: bool = False,
        correct: Sequence[str] | None = None,
    ):
        super().__init__(env)

        if base not in POLICIES:
            raise ValueError(f"unknown base policy {base!r}; allowed: {', '.join(POLICIES)}")
        if not 0.0 < float(scale) <= 2.0:
            raise ValueError(f"scale={scale!r} must be in (0, 2]")
        self.base = base
        self.scale = float(scale)
        self.track_budget = bool(track_budget)
        if self.track_budget and not hasattr(POLICIES[base], "replanned_keep"):
            allowed = ", ".join(n for n, c in POLICIES.items() if hasattr(c, "replanned_keep"))
            raise ValueError(f"track_budget=True needs a budget-planning base policy ({allowed}), not {base!r}")
        settings = dict(settings or {})
        self._table = None
        if settings and all(_is_number(k) for k in settings):
            self._table = {float(k): dict(v) for k, v in settings.items()}
        self._settings = settings
        first = next(iter(self._table.values())) if self._table is not None else settings
        make_policy(base, env, **first)  # a base that cannot drive this env fails here, not at the first reset
        self._policy = None
        names = tuple(env.unwrapped.action_names)  # type: ignore[attr-defined]
        self.correct = None if correct is None else tuple(str(n) for n in correct)
        if self.correct is None:
            self._index = np.arange(len(names))
        else:
            bad = [n for n in self.correct if n not in names]
            if bad or not self.correct or len(set(self.correct)) != len(self.correct):
                raise ValueError(
                    f"correct={list(self.correct)!r} must name distinct action components; allowed: {', '.join(names)}"
                )
            self._index = np.array([names.index(n) for n in self.correct])
        self.action_space = spaces.Box(-1.0, 1.0, (len(self._index),), np.float32)

    @property
    def arguments(self) -> dict[str, Any]:
        """This wrapper's JSON-able arguments (``base``, ``settings``, ``scale``, ``track_budget``, ``correct``)."""
        out = {"base": self.base, "settings": self._settings, "scale": self.scale, "track_budget": self.track_budget}
        if self.correct is not None:
            out["correct"] = list(self.correct)
        return out

    def wrap_like(self, env: gym.Env) -> ResidualAction:
        """A ``ResidualAction`` with this one's arguments around another ``env``."""
        return ResidualAction(env, **self.arguments)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)

        params = self._settings
        if self._table is not None:
            budget = info.get("compute_budget")
            if budget is None:
                raise ValueError("ResidualAction with settings per budget needs an env with a compute budget")
            params = interpolate_settings(self._table, float(budget))
        self._policy = make_policy(self.base, self.env, **params)
        self._obs = obs
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def base_action(self) -> np.ndarray:
        """The fixed policy's action for the current observation."""
        if self._policy is None:
            raise RuntimeError("call reset() before step()")
        if self.track_budget:
            policy: Any = self._policy
            epoch = policy.epoch_of(np.asarray(self._obs, dtype=np.float32))  # a static_ramp's sharpness needs it
            return np.asarray(policy.action_at_keep(policy.replanned_keep(self._obs), epoch), dtype=np.float64)
        return np.asarray(self._policy.predict(self._obs)[0], dtype=np.float64)

    def action(self, action) -> np.ndarray:
        """The env's action ``[A]``: the base's plus ``scale`` times the agent's ``[len(correct)]`` correction."""
        base = self.base_action()
        a = np.zeros_like(base)
        flat = a.reshape(-1)  # a view: writing it writes ``a``
        flat[self._index] = np.clip(np.asarray(action, dtype=np.float64).reshape(-1), -1.0, 1.0)
        if self.track_budget:
            policy: Any = self._policy
            if policy.epoch_of(np.asarray(self._obs, dtype=np.float32)) >= policy.epochs - 1:
                flat[0] = 0.0  # the last epoch spends what is left: no ratio correction
        return np.clip(base + self.scale * a, -1.0, 1.0)


def _is_number(text: Any) -> bool:
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True
