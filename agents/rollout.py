"""One deterministic episode of any SB3-``predict``-able policy on a gymnasium env: the loop the evaluation
harness, the trainer's held-out evaluation and the benchmarks share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["play_episode"]


def play_episode(env, policy: Any, seed: int, on_step: Callable[[dict], None] | None = None):
    """Run one episode of ``env`` from ``reset(seed=seed)`` with ``policy.predict(..., deterministic=True)``;
    returns the step infos and rewards."""

    obs, _ = env.reset(seed=int(seed))
    state, start = None, np.ones((1,), dtype=bool)
    infos, rewards = [], []
    while True:
        action, state = policy.predict(obs, state=state, episode_start=start, deterministic=True)
        start = np.zeros((1,), dtype=bool)
        obs, reward, terminated, truncated, info = env.step(action)
        infos.append(info)
        rewards.append(float(reward))
        if on_step is not None:
            on_step(info)
        if terminated or truncated:
            return infos, rewards
