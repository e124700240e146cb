"""Env ids and env construction for the trainer and the evaluation harness.

Seed convention (every run seed is the ``seed`` of ``PruningEnv.reset``, which fixes data, init and order):

* training: env ``rank`` of a run with ``seed`` draws each episode's run seed from
  ``SeedSequence([seed, rank, start_timestep])`` uniformly in ``[TRAIN_SEED_MIN, 2**31 - 1)``
  (``start_timestep`` is 0, or the checkpoint's timestep when resuming, so a resumed run sees new seeds);
* periodic evaluation during training: seeds ``EVAL_SEED_START + i`` for ``i < n_eval_episodes``
  (10,000 upwards), identical at every evaluation so the curves are comparable;
* benchmarks (``evaluate`` / ``compare`` / the CLI): the seeds the caller gives, usually 0, 1, 2, ...

The three ranges are disjoint as long as benchmark seeds stay below 10,000 and evaluation uses fewer than
990,000 episodes, so an agent is never scored on a training run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.monitor import Monitor

import prunegym.envs as envs
from prunegym.envs.tasks import task_module
from prunegym.training import DRAWN_SEED_LIMIT, load_run_data

__all__ = [
    "ENV_MODULE",
    "EVAL_SEED_START",
    "TRAIN_SEED_MIN",
    "TrainingSeedStream",
    "TrainingSeeds",
    "canonical_env_id",
    "check_env_data",
    "env_label",
    "eval_seeds",
    "known_env_ids",
    "make_env",
    "module_env_id",
]

ENV_MODULE = "prunegym.envs"
TRAIN_SEED_MIN = 1_000_000
EVAL_SEED_START = 10_000


def known_env_ids() -> list[str]:
    """The registered prunegym env ids (``ENV_IDS`` first, then any other id in the ``prunegym`` namespace)."""

    ids = list(envs.ENV_IDS)
    ids += sorted(i for i in gym.registry if i.startswith("prunegym/") and i not in ids)
    return ids


def canonical_env_id(env_id: str) -> str:
    """``env_id`` without a ``module:`` prefix, checked against the registry (``ValueError`` lists ids)."""

    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"env id must be a non-empty string, got {env_id!r}")
    module, sep, bare = env_id.rpartition(":")
    if sep:
        try:
            __import__(module)
        except ImportError as exc:
            raise ValueError(f"env id {env_id!r}: cannot import module {module!r} ({exc})") from exc
    if bare not in gym.registry:
        raise ValueError(f"unknown env id {env_id!r}; allowed: {', '.join(known_env_ids())}")
    return bare


def module_env_id(env_id: str) -> str:
    """The id with its registering module, usable in fresh interpreters (``SubprocVecEnv`` with forkserver):
    ``prunegym.envs:prunegym/Synthetic-MLP-v0``; a task of ``register_task`` gets the module that called it
    (none when that was ``__main__``). Ids registered elsewhere keep the caller's prefix."""
    if ":" in env_id:
        return env_id
    bare = canonical_env_id(env_id)
    if bare.startswith("prunegym/"):
        return f"{ENV_MODULE}:{bare}"

    module = task_module(bare)  # a task of register_task: the module that registers it
    return f"{module}:{bare}" if module else bare


def unbudgeted_kwargs(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``env_kwargs`` for episodes that must run without a compute budget (full data as the reference, a
    calibration's natural compute): ``compute_budget=None`` added where the id's registration draws a budget
    (the regimes ids: ``compute_budget=(0.25, 0.75)``) and the kwargs set none; otherwise unchanged."""
    if "compute_budget" in env_kwargs:
        return env_kwargs
    registered = gym.spec(canonical_env_id(env_id)).kwargs or {}
    return {**env_kwargs, "compute_budget": None} if registered.get("compute_budget") is not None else env_kwargs


def env_label(env_id: str) -> str:
    """A folder name for the env: ``prunegym/Synthetic-MLP-v0`` -> ``prunegym_Synthetic-MLP-v0``."""
    return env_id.rpartition(":")[2].replace("/", "_")


def eval_seeds(n: int) -> list[int]:
    """The held-out seeds of periodic evaluation: ``EVAL_SEED_START, EVAL_SEED_START + 1, ...``."""
    return [EVAL_SEED_START + i for i in range(n)]


class TrainingSeedStream:
    """The run seeds of one training env: each call draws the next from ``SeedSequence(entropy)``, uniformly
    in ``[TRAIN_SEED_MIN, 2**31 - 1)`` (``entropy`` = ``[seed, rank, start_timestep]``, see the module
    docstring). ``pool``: draw only ``pool`` distinct seeds (the stream's first ``pool``) and then go through
    them again, each pass in a new order from the same generator, so that a per-seed cost (a reference
    episode of :class:`~prunegym.envs.RelativeReward`) is paid once per seed; ``None``: a new seed every call."""

    def __init__(self, entropy: list[int], pool: int | None = None):
        if pool is not None and (isinstance(pool, bool) or not isinstance(pool, int) or pool < 1):
            raise ValueError(f"seed_pool={pool!r} must be None or an int >= 1")
        self._rng = np.random.default_rng(np.random.SeedSequence([int(e) for e in entropy]))
        self._pool_size = pool
        self._pool: list[int] = []
        self._order: list[int] = []

    def __call__(self) -> int:
        if self._pool_size is None:
            return int(self._rng.integers(TRAIN_SEED_MIN, DRAWN_SEED_LIMIT))
        if len(self._pool) < self._pool_size:
            seed = int(self._rng.integers(TRAIN_SEED_MIN, DRAWN_SEED_LIMIT))
            self._pool.append(seed)
            return seed
        if not self._order:
            self._order = [self._pool[i] for i in self._rng.permutation(self._pool_size)]
        return self._order.pop()


class TrainingSeeds(gym.Wrapper):
    """Gives every training episode its own run seed from a :class:`TrainingSeedStream` of ``entropy``
    (``pool``: cycle through that many seeds). Seeds passed to ``reset`` (SB3's ``VecEnv.seed``) are
    ignored: the training seed range must stay disjoint from the evaluation seeds."""

    def __init__(self, env: gym.Env, entropy: list[int], pool: int | None = None):
        super().__init__(env)
        self._stream = TrainingSeedStream(entropy, pool)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        return self.env.reset(seed=self._stream(), options=options)


def check_env_data(env: gym.Env) -> None:
    """Load the data splits of ``env``'s run config once (on the CPU, seed 0; the sizes do not depend on the
    seed), so that missing data or a ``train_size`` / ``val_size`` / ``test_size`` the dataset cannot hold
    fail here, in this process, with one error, not once per episode (or per Ray worker)."""

    base: Any = env.unwrapped  # duck-typed: a PruningEnv's base_config
    load_run_data(base.base_config.replace(seed=0), torch.device("cpu"))  # the run's own path, streaming too


def make_env(
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    wrapper: Callable | None = None,
    monitor: bool = False,
    train_entropy: list[int] | None = None,
    seed_pool: int | None = None,
) -> gym.Env:
    """``gym.make`` of the module-prefixed id with ``env_kwargs``, then (in this order) ``TrainingSeeds``
    when ``train_entropy`` is given (cycling through ``seed_pool`` seeds if given), SB3's ``Monitor`` when
    ``monitor``, and ``wrapper``."""
    env = gym.make(module_env_id(env_id), **dict(env_kwargs or {}))
    if train_entropy is not None:
        env = TrainingSeeds(env, train_entropy, seed_pool)
    if monitor:
        env = Monitor(env)
    if wrapper is not None:
        env = wrapper(env)
    return env
