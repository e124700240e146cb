"""Wrappers around :class:`PruningEnv` for agents that need another action space."""
from __future__ import annotations

from typing import Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["DiscreteRatio"]


class DiscreteRatio(gym.ActionWrapper):
    """Discretises the prune ratio for value-based agents (SB3's DQN): ``Discrete(len(ratios))``.

    Action ``i`` means prune ratio ``ratios[i]`` (default 0, 0.1, ..., 0.9 capped at the env's
    ``max_prune_ratio``) with every other knob at its default. ``info["prune_ratio"]`` reports the ratio.
    """

    def __init__(self, env: gym.Env, ratios: Sequence[float] | None = None):
        super().__init__(env)
        base = env.unwrapped
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
