"""``RayVecEnv``: an SB3 ``VecEnv`` whose environments are Ray actors, so that an agent's training runs can
spread over a cluster's CPUs and GPUs (``train_agent(..., vec_env="ray")``, ``prunegym train --vec-env ray``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn
from stable_baselines3.common.vec_env.patch_gym import _patch_env

from .ray_tasks import RayOptions, connect_ray, import_ray

__all__ = ["RayVecEnv"]


class _EnvHost:
    """The actor: one env, stepped like SB3's ``SubprocVecEnv`` worker does (auto-reset included)."""

    def __init__(self, env_fn: Callable[[], gym.Env], threads: int):

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        self.env = _patch_env(env_fn())

    def spaces(self):
        return self.env.observation_space, self.env.action_space

    def reset(self, seed: int | None, options: dict | None):
        return self.env.reset(seed=seed, **({"options": options} if options else {}))

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        done = bool(terminated or truncated)
        info["TimeLimit.truncated"] = bool(truncated and not terminated)
        reset_info: dict[str, Any] = {}
        if done:  # as SB3: keep the last observation, start the next episode
            info["terminal_observation"] = obs
            obs, reset_info = self.env.reset()
        return obs, float(reward), done, info, reset_info

    def get_attr(self, name: str):
        return self.env.get_wrapper_attr(name)

    def has_attr(self, name: str) -> bool:
        try:
            self.env.get_wrapper_attr(name)
            return True
        except AttributeError:
            return False

    def set_attr(self, name: str, value: Any) -> None:
        setattr(self.env, name, value)

    def env_method(self, name: str, args: tuple, kwargs: dict):
        return self.env.get_wrapper_attr(name)(*args, **kwargs)

    def is_wrapped(self, wrapper_class: type) -> bool:

        return is_wrapped(self.env, wrapper_class)

    def close(self) -> None:
        self.env.close()


def _stack(items: Sequence[Any], space: spaces.Space):
    if isinstance(space, spaces.Dict):
        return {k: np.stack([o[k] for o in items]) for k in space.spaces}
    if isinstance(space, spaces.Tuple):
        return tuple(np.stack([o[i] for o in items]) for i in range(len(space.spaces)))
    return np.stack(items)


class RayVecEnv(VecEnv):
    """SB3's ``VecEnv`` API over ``len(env_fns)`` Ray actors, each holding the env ``env_fn()`` returns.

    ``ray`` (:class:`~.ray_tasks.RayOptions`, default ``RayOptions()``; its ``workers`` is not used: one actor
    per env): each actor reserves ``cpus_per_run`` CPUs (default 1) and ``gpus_per_run`` GPUs (``0.25``: four
    envs per GPU; the env itself must be told to use it, e.g. ``device="cuda"`` in a ``PruningEnv``'s kwargs)
    and sets torch's thread count to its whole CPUs. ``reset``, ``step_async`` / ``step_wait``, ``get_attr``,
    ``set_attr``, ``env_method``, ``env_is_wrapped`` and seeding behave as in ``SubprocVecEnv``: on ``done`` the actor
    puts the last observation in ``info["terminal_observation"]``, resets and returns the first
    observation of the next episode (``reset_infos`` holds that reset's info). With the same env functions,
    seeds and actions it returns what a ``DummyVecEnv`` returns.

    Ray: if it is not initialised, the VecEnv starts a local instance sized for its actors (or joins
    ``ray.address``) and shuts it down (disconnects) on ``close``; a Ray the caller initialised is used and left
    running.

    Limits: every step is a round trip through Ray for every env (observations, infos and actions are
    serialised; there is no shared memory), so it pays only when an env step is slow, as a training epoch
    is; ``step_wait`` waits for the slowest env; an actor stays on the node and resources it was placed on
    for its lifetime; a dead actor (crash, lost node) is not restarted: its next call raises
    ``ray.exceptions.RayActorError`` and the training stops (resume it from its checkpoint);
    ``render`` / ``get_images`` are not supported; the env functions must be picklable by Ray (closures
    over importable code are) and the envs must be importable on every node (register ids through their
    module, ``"prunegym.envs:prunegym/..."``).
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env]],
        *,
        ray: RayOptions | None = None,
    ):
        if not env_fns:
            raise ValueError("RayVecEnv needs at least one env function")
        options = (RayOptions() if ray is None else ray).validate(ray_run=True)  # no-op if train_agent validated it
        module = import_ray()
        self._ray = module
        self._owns_ray = False
        if not module.is_initialized():
            if options.address:
                connect_ray(module, options.address)
            else:
                module.init(
                    num_cpus=max(1, math.ceil(len(env_fns) * options.cpus)),
                    num_gpus=None if options.gpus_per_run > 0 else 0,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                )
            self._owns_ray = True
        self.closed = False
        self.waiting = False
        self._refs: list[Any] = []
        try:
            host = module.remote(num_cpus=options.cpus, num_gpus=options.gpus_per_run, max_restarts=0)(_EnvHost)
            self.actors = [host.remote(fn, options.threads) for fn in env_fns]
            observation_space, action_space = module.get(self.actors[0].spaces.remote())
            super().__init__(len(env_fns), observation_space, action_space)
        except BaseException:
            self._shutdown()
            raise

    # -- core API ---------------------------------------------------------------------------------------------
    def reset(self) -> VecEnvObs:
        results = self._ray.get(
            [a.reset.remote(self._seeds[i], self._options[i] or None) for i, a in enumerate(self.actors)]
        )
        obs, infos = zip(*results)
        self.reset_infos = list(infos)
        self._reset_seeds()
        self._reset_options()
        return _stack(obs, self.observation_space)

    def step_async(self, actions: np.ndarray) -> None:
        self._refs = [a.step.remote(action) for a, action in zip(self.actors, actions)]
        self.waiting = True

    def step_wait(self) -> VecEnvStepReturn:
        results = self._ray.get(self._refs)
        self._refs, self.waiting = [], False
        obs, rewards, dones, infos, reset_infos = zip(*results)
        self.reset_infos = list(reset_infos)
        return (
            _stack(obs, self.observation_space),
            np.asarray(rewards, dtype=np.float32),
            np.asarray(dones, dtype=bool),
            list(infos),
        )

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self.waiting:
                self._ray.get(self._refs)
            self._ray.get([a.close.remote() for a in self.actors])
        except Exception:  # actors already gone (Ctrl-C, a lost node): nothing left to close
            pass
        finally:
            for actor in self.actors:
                try:
                    self._ray.kill(actor)
                except Exception:
                    pass
            self._shutdown()

    def _shutdown(self) -> None:
        if self._owns_ray:
            self._owns_ray = False
            self._ray.shutdown()

    # -- attributes and methods of the envs -------------------------------------------------------------------
    def _targets(self, indices: VecEnvIndices) -> list[Any]:
        return [self.actors[i] for i in self._get_indices(indices)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return self._ray.get([a.get_attr.remote(attr_name) for a in self._targets(indices)])

    def has_attr(self, attr_name: str) -> bool:
        return all(self._ray.get([a.has_attr.remote(attr_name) for a in self.actors]))

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        self._ray.get([a.set_attr.remote(attr_name, value) for a in self._targets(indices)])

    def env_method(self, method_name: str, *method_args, indices: VecEnvIndices = None, **method_kwargs) -> list[Any]:
        return self._ray.get(
            [a.env_method.remote(method_name, method_args, method_kwargs) for a in self._targets(indices)]
        )

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return self._ray.get([a.is_wrapped.remote(wrapper_class) for a in self._targets(indices)])

    def get_images(self) -> Sequence[np.ndarray | None]:
        raise NotImplementedError("RayVecEnv does not render; use DummyVecEnv or SubprocVecEnv to render")

    def render(self, mode: str | None = None):
        raise NotImplementedError("RayVecEnv does not render; use DummyVecEnv or SubprocVecEnv to render")
