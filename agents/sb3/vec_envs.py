"""SB3 vector envs of prunegym training envs: ``dummy`` (this process), ``subproc`` (one process each), ``ray``
(one Ray actor each) and ``batched`` (one batched model, :class:`~prunegym.envs.PruningVectorEnv`); env ``rank``
of a run with ``seed`` draws its episodes' run seeds from ``[seed, rank, start_timestep]`` (the convention of
:mod:`prunegym.agents.env_factory`), whichever is used."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from ..env_factory import TrainingSeedStream, make_env, module_env_id
from ..parallel.ray_tasks import RayOptions
from ..parallel.ray_vec_env import RayVecEnv
from .batched_vec_env import BatchedVecEnv

__all__ = ["VEC_ENVS", "make_batched_vec_env", "make_vec_env", "subproc_threads", "uses_subproc"]

VEC_ENVS = ("auto", "dummy", "subproc", "ray", "batched")


def subproc_threads(n_envs: int) -> int:
    """torch threads of each of ``n_envs`` env processes: the machine's cores shared out, at least one, so that
    processes x threads fit the cores (two processes of two threads each on 2 cores ran 6x slower than one)."""
    return max(1, (os.cpu_count() or 1) // max(1, int(n_envs)))


def uses_subproc(vec_env: str, n_envs: int) -> bool:
    """Whether ``vec_env`` runs its ``n_envs`` envs as processes of their own (``subproc``, or ``auto`` with
    more than one env)."""
    return vec_env == "subproc" or (vec_env == "auto" and n_envs > 1)


def _env_fn(
    env_id: str,
    env_kwargs: dict,
    wrapper: Callable | None,
    entropy: list[int],
    seed_pool: int | None = None,
    threads: int | None = None,
) -> Callable[[], gym.Env]:
    def init() -> gym.Env:
        if threads is not None:  # an env process of its own
            torch.set_num_threads(threads)
        return make_env(env_id, env_kwargs, wrapper, monitor=True, train_entropy=entropy, seed_pool=seed_pool)

    return init


def make_batched_vec_env(
    env_id: str,
    n_envs: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    start_timestep: int = 0,
    seed_pool: int | None = None,
) -> BatchedVecEnv:
    """``n_envs`` training envs as one :class:`~prunegym.envs.PruningVectorEnv` (one batched model) behind
    SB3's ``VecEnv`` API; env ``rank`` draws its run seeds from ``[seed, rank, start_timestep]`` as the other
    vec envs do (the same seeds give the same episodes, up to the batched engine's float rounding)."""
    venv = gym.make_vec(
        module_env_id(env_id),
        num_envs=int(n_envs),
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.DISABLED,
        **dict(env_kwargs or {}),
    )
    streams = [TrainingSeedStream([seed, rank, start_timestep], seed_pool) for rank in range(int(n_envs))]
    return BatchedVecEnv(venv, seed_streams=streams)


def make_vec_env(
    env_id: str,
    n_envs: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    wrapper: Callable | None = None,
    start_timestep: int = 0,
    vec_env: str = "auto",
    *,
    ray: RayOptions | None = None,
    seed_pool: int | None = None,
):
    """Training envs, env ``rank`` seeded with ``[seed, rank, start_timestep]`` (see the module docstring).

    ``vec_env``: ``"dummy"`` (SB3's ``DummyVecEnv``, in this process), ``"subproc"`` (``SubprocVecEnv``, start
    method ``forkserver``, each process with :func:`subproc_threads` torch threads), ``"ray"``
    (:class:`~prunegym.agents.parallel.ray_vec_env.RayVecEnv`: one Ray actor per env, with the CPUs, GPUs and
    cluster address of the :class:`~prunegym.agents.parallel.ray_tasks.RayOptions` ``ray``), ``"batched"``
    (:func:`make_batched_vec_env`: the envs' training runs as one batched model in this process; no env ``wrapper``,
    no in-batch selector such as PFB) or ``"auto"`` (``subproc`` when ``n_envs > 1``, else ``dummy``). The same
    seeds give the same episodes whichever is used (``batched``: up to float rounding). ``seed_pool``: each env
    cycles through that many run seeds (:class:`~prunegym.agents.env_factory.TrainingSeedStream`); ``None``: a new
    seed every episode."""

    if vec_env not in VEC_ENVS:
        raise ValueError(f"unknown vec_env {vec_env!r}; allowed: {', '.join(VEC_ENVS)}")
    if vec_env != "ray" and ray is not None:
        raise ValueError(f"ray={ray!r} applies to vec_env='ray' only, not vec_env={vec_env!r}")
    if vec_env == "batched":
        if wrapper is not None:
            raise ValueError(
                "vec_env='batched' cannot apply an env wrapper (e.g. DiscreteRatio for DQN): its envs "
                "are sub-envs of one PruningVectorEnv; use vec_env='dummy' or 'subproc'"
            )
        return make_batched_vec_env(env_id, n_envs, seed, env_kwargs, start_timestep, seed_pool)
    full_id = module_env_id(env_id)
    subproc = uses_subproc(vec_env, n_envs)
    threads = subproc_threads(n_envs) if subproc else None
    fns = [
        _env_fn(full_id, dict(env_kwargs or {}), wrapper, [seed, rank, start_timestep], seed_pool, threads)
        for rank in range(n_envs)
    ]
    if vec_env == "ray":
        return RayVecEnv(fns, ray=ray)
    if subproc:
        return SubprocVecEnv(fns, start_method="forkserver")
    return DummyVecEnv(fns)
