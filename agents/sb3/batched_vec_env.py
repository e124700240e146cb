"""``BatchedVecEnv``: SB3's ``VecEnv`` over a :class:`~prunegym.envs.PruningVectorEnv`, so that SB3 trains on
K episodes run as one batched model (``make_vec_env(..., vec_env="batched")``, ``prunegym train --vec-env
batched``).

SB3 semantics: ``step_wait`` resets ended sub-envs itself (``info["terminal_observation"]`` holds the last
observation, ``info["TimeLimit.truncated"]`` says a ``max_wall_time`` truncation), ``reset_infos`` holds each
env's reset info, ``seed(s)`` seeds the next ``reset`` with ``s + i``, and SB3's ``Monitor`` statistics
(``info["episode"] = {"r", "l", "t"}``) come with each finished episode. Infos are the sub-envs' own
``PruningEnv`` info dicts. ``get_attr`` / ``env_method`` read each sub-env
(:class:`~prunegym.envs.sub_env.SubEnv`: ``policy_context``, ``pruner_name``, ``encode_action``, ...).

``seed_streams`` (one callable per env returning a run seed): every episode of env ``i``, the first included,
gets the next seed of stream ``i`` and seeds passed through ``seed()`` are ignored, as
:class:`~prunegym.agents.env_factory.TrainingSeeds` does for the other vec envs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from prunegym.envs import PruningVectorEnv

__all__ = ["BatchedVecEnv"]


class BatchedVecEnv(VecEnv):
    """SB3 ``VecEnv`` of the ``num_envs`` sub-envs of ``venv`` (a :class:`PruningVectorEnv` made with
    ``autoreset_mode="Disabled"``: this adapter resets ended sub-envs). ``seed_streams``: see the module
    docstring. ``monitor``: add SB3 ``Monitor``'s ``info["episode"]`` (``env_is_wrapped(Monitor)`` is then
    True, since the infos carry what ``Monitor`` would add)."""

    def __init__(
        self, venv: gym.vector.VectorEnv, seed_streams: Sequence[Callable[[], int]] | None = None, monitor: bool = True
    ):
        if not isinstance(venv, PruningVectorEnv):
            raise ValueError(f"BatchedVecEnv wraps a PruningVectorEnv, got {type(venv).__name__}")
        if venv.autoreset_mode != AutoresetMode.DISABLED:
            raise ValueError(
                f"BatchedVecEnv needs a PruningVectorEnv with autoreset_mode='Disabled' (it resets ended "
                f"sub-envs itself), got {venv.autoreset_mode.value!r}"
            )
        if seed_streams is not None and len(seed_streams) != venv.num_envs:
            raise ValueError(f"{len(seed_streams)} seed streams for {venv.num_envs} envs; give one per env")
        self.venv = venv
        self.seed_streams = list(seed_streams) if seed_streams is not None else None
        self.monitor = bool(monitor)
        super().__init__(venv.num_envs, venv.single_observation_space, venv.single_action_space)
        self._actions: np.ndarray | None = None
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._t_start = time.time()

    # -- episodes ------------------------------------------------------------------------------------------
    def _seeds_for(self, idx: Sequence[int]) -> list[int | None]:
        if self.seed_streams is not None:
            return [int(self.seed_streams[i]()) for i in idx]
        return [self._seeds[i] for i in idx]

    def _budgets(self, idx: Sequence[int]) -> dict[str, Any]:
        """Reset options of envs ``idx`` (``set_options``; only ``compute_budget`` is an option of the env)."""
        opts = [self._options[i] for i in idx]
        unknown = sorted({key for o in opts for key in o} - {"compute_budget"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {', '.join(unknown)}; allowed: compute_budget")
        if not any("compute_budget" in o for o in opts):
            return {}
        if not all("compute_budget" in o for o in opts):
            raise ValueError("set_options: give compute_budget to every env or to none")
        return {"compute_budget": [o["compute_budget"] for o in opts]}

    def _reset_envs(self, idx: list[int]) -> np.ndarray:
        k = self.num_envs
        seeds: list[int | None] = [None] * k
        budgets: list[Any] = [None] * k
        for i, s in zip(idx, self._seeds_for(idx)):
            seeds[i] = s
        opts = self._budgets(idx)
        if opts:
            for i, b in zip(idx, opts["compute_budget"]):
                budgets[i] = b
            opts = {"compute_budget": budgets}
        if len(idx) < k:
            mask = np.zeros(k, dtype=bool)
            mask[idx] = True
            opts["reset_mask"] = mask
        obs, _ = self.venv.reset(seed=seeds, options=opts or None)
        for i in idx:
            ep = self.venv.episodes[i]
            assert ep is not None  # the reset above started sub-env i's episode
            self.reset_infos[i] = dict(ep.reset_info)
            self._returns[i], self._lengths[i] = 0.0, 0
            self._seeds[i] = None
            self._options[i] = {}
        return obs

    def reset(self) -> np.ndarray:
        return self._reset_envs(list(range(self.num_envs)))

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions)

    def step_wait(self):
        if self._actions is None:
            raise RuntimeError("call step_async(actions) before step_wait()")
        actions, self._actions = self._actions, None
        obs, rewards, terminated, truncated, _ = self.venv.step(actions.reshape(self.venv.action_space.shape))
        dones = terminated | truncated
        infos = [dict(self.venv.sub_envs[i].last_info) for i in range(self.num_envs)]
        self._returns += rewards
        self._lengths += 1
        for i, info in enumerate(infos):
            info["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])  # every step, as DummyVecEnv
        for i in np.flatnonzero(dones):
            info = infos[i]
            info["terminal_observation"] = obs[i].copy()
            if self.monitor:
                info["episode"] = {
                    "r": round(float(self._returns[i]), 6),
                    "l": int(self._lengths[i]),
                    "t": round(time.time() - self._t_start, 6),
                }
        ended = [int(i) for i in np.flatnonzero(dones)]
        if ended:
            obs = self._reset_envs(ended)
        return obs, rewards.astype(np.float32), dones, infos

    def close(self) -> None:
        self.venv.close()

    # -- attributes ----------------------------------------------------------------------------------------
    def _sub_envs(self, indices: VecEnvIndices) -> list[Any]:
        return [self.venv.sub_envs[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(s, attr_name) for s in self._sub_envs(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(
            f"BatchedVecEnv cannot set {attr_name!r} on single envs: they are sub-envs of one "
            "PruningVectorEnv (its .venv); use vec_env='dummy' for per-env attributes"
        )

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        return [getattr(s, method_name)(*method_args, **method_kwargs) for s in self._sub_envs(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        wrapped = self.monitor and issubclass(Monitor, wrapper_class)
        return [wrapped for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        frames = self.venv.render() if self.venv.render_mode == "rgb_array" else None
        return list(frames) if frames is not None else [None] * self.num_envs
