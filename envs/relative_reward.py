"""``RelativeReward``: pay an agent what it gains over its base policy on the same episode (issue 16).

Seed-to-seed noise in a run's accuracy (0.1 to 0.3 points on Fashion-MNIST) is larger than the differences
between good policies, so an absolute reward mostly teaches an agent which seeds were lucky. Around a
:class:`~prunegym.envs.wrappers.ResidualAction`, this wrapper plays a *reference episode* of the base policy
alone (the residual at 0) on the same run seed and budget, and pays at each step the env's reward minus the
reference's reward at that step; the return is then the agent's final score minus the base's. Reference
episodes are cached in memory and on disk (``cache_dir() / "relative"``, keyed by the env's kwargs, the
residual's arguments, the seed, the budget, the resolved device and the library versions and torch threads
the run depends on), so a training run with a fixed pool of seeds plays each one once. As for the lossless
reward's reference, a run on data or a model registered in this process is cached in memory only, and a
cache folder that cannot be written is warned about once (``RuntimeWarning``) and the episode goes on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from prunegym.training import resolve_device, runtime

from .env import PruningEnv
from .reference import cache_dir, cached_json, registration_token
from .wrappers import ResidualAction

__all__ = ["RelativeReward"]

_MEMORY: dict[str, list[float]] = {}


class RelativeReward(gym.Wrapper):
    """Reward relative to the base policy on the same run seed and budget (see the module docstring).

    ``env``: a :class:`ResidualAction` (any wrappers that only watch, such as SB3's ``Monitor``, may sit
    between). Each step's reward is ``r_t - r_t^ref``, where ``r^ref`` are the rewards of the base's episode
    (residual 0) of this run seed and budget; ``info`` gains ``reward_absolute`` and ``reward_reference``,
    and at the episode's end ``episode_return_relative`` (TensorBoard's ``episode/return_relative``).
    ``cache``: a folder for the reference episodes (default ``cache_dir() / "relative"``; ``""``: memory only).
    ``references_played``: how many reference episodes this wrapper ran (the others came from the cache).
    JSON-able arguments, so a hyperparameter file can name it.
    """

    def __init__(self, env: gym.Env, cache: str | None = None):
        super().__init__(env)
        residual = _find_residual(env)
        if residual is None:
            raise ValueError("RelativeReward needs a ResidualAction below it (its base policy is the reference)")
        self._residual = residual
        self._cache = None if cache == "" else Path(cache) if cache is not None else cache_dir() / "relative"
        self._twin: ResidualAction | None = None
        self._reference: list[float] = []
        self._t = 0
        self._return = 0.0
        self.references_played = 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._reference = self.reference_rewards(int(info["seed"]), info.get("compute_budget"))
        self._t = 0
        self._return = 0.0
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        ref = self._reference[self._t] if self._t < len(self._reference) else 0.0
        self._t += 1
        relative = float(reward) - ref
        self._return += relative
        info = dict(info, reward_absolute=float(reward), reward_reference=float(ref))
        if terminated or truncated:
            info["episode_return_relative"] = self._return
        return obs, relative, terminated, truncated, info

    def reference_rewards(self, seed: int, budget: float | None) -> list[float]:
        """The base policy's rewards ``[steps]`` on run ``seed`` under ``budget`` (played once, then cached)."""
        base: Any = self.env.unwrapped  # duck-typed: a PruningEnv's env_kwargs and base_config
        key_doc = {
            "env_kwargs": base.env_kwargs,
            "residual": self._residual.arguments,
            "seed": int(seed),
            "budget": None if budget is None else repr(float(budget)),
            "runtime": runtime(device=resolve_device(base.base_config.device)),
        }
        text = json.dumps(key_doc, sort_keys=True, default=str)
        key = hashlib.sha256(text.encode()).hexdigest()[:24]
        token = registration_token(base.base_config)
        return cached_json(
            _MEMORY,
            key if token is None else f"{key}@{token}",
            self._cache / f"{key}.json" if self._cache is not None and token is None else None,
            ("key", json.loads(text)),
            ("rewards", lambda rewards: [float(r) for r in rewards]),
            lambda: self._play_reference(seed, budget),
            what="reference-episode cache",
            kept="the references",
        )

    def _play_reference(self, seed: int, budget: float | None) -> list[float]:
        if self._twin is None:
            base: Any = self.env.unwrapped
            self._twin = self._residual.wrap_like(PruningEnv(**base.env_kwargs))
        twin = self._twin
        options = None if budget is None else {"compute_budget": float(budget)}
        twin.reset(seed=int(seed), options=options)
        zero = np.zeros(twin.action_space.shape or (), dtype=np.float32)
        rewards: list[float] = []
        done = False
        while not done:
            _, r, terminated, truncated, _ = twin.step(zero)
            rewards.append(float(r))
            done = terminated or truncated
        self.references_played += 1
        return rewards

    def close(self):
        if self._twin is not None:
            self._twin.close()
        super().close()


def _find_residual(env: gym.Env) -> ResidualAction | None:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, ResidualAction):
            return env
        env = env.env
    return None
