"""One deterministic episode per seed of one policy, all seeds as ONE batch on a
:class:`~prunegym.envs.PruningVectorEnv`: :func:`run_batched_episodes` returns the
:class:`~prunegym.agents.evaluation.episode.EpisodeOutcome` rows that
:func:`~prunegym.agents.evaluation.episode.run_episode` gives seed by seed, from one batched model.

The rows agree with ``run_episode``'s as the vector env agrees with ``PruningEnv`` (kept fractions, compute
and records of rules that read no losses exactly; accuracies, returns and metrics within float rounding; see
:mod:`prunegym.envs.vector_env`). ``wall_clock_s`` of a row is its share of the batch: the batch's wall-clock
divided by the number of episodes. Not supported (``ValueError``): in-batch selectors (PFB), models with
BatchNorm, and agents trained behind an env wrapper (e.g. DQN's ``DiscreteRatio``); play those with
``run_episode``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

from prunegym.baselines import make_policy
from prunegym.envs import PruningVectorEnv
from prunegym.training import runtime

from ..env_factory import canonical_env_id, module_env_id
from ..sb3.agent import Agent
from .episode import EpisodeOutcome, PolicySpec, _env_kwargs_for, _load, episode_outcome, policy_fingerprint

__all__ = ["run_batched_episodes"]


def _batched_policy(spec: PolicySpec, policy: Any, venv: PruningVectorEnv) -> tuple[Any, dict[str, Any]]:
    """(policy acting on observations ``[K, F]``, reported hyperparameters)."""
    if spec.kind == "baseline":
        policy = make_policy(spec.name, venv, **spec.hparams)
        return policy, dict(policy.hparams)
    if isinstance(policy, Agent):
        space = getattr(policy.model, "action_space", None)
        if policy.meta.get("env_wrapper") is not None or isinstance(space, spaces.Discrete):
            raise ValueError(
                f"agent {spec.name!r} acts through an env wrapper "
                f"({policy.meta.get('env_wrapper') or 'DiscreteRatio'}), which a batched episode cannot "
                "apply to its sub-envs; play it with run_episode"
            )
        if space is not None and getattr(space, "shape", None) != venv.single_action_space.shape:
            raise ValueError(
                f"agent {spec.name!r} acts in {space} but the env made with pruner="
                f"{venv.pruner_name!r} takes {venv.single_action_space}; pass the pruner it was trained "
                "with (env kwargs pruner=...)"
            )
        return policy, dict(spec.hparams) or policy.hparams
    return policy, dict(spec.hparams)  # custom: its predict must take a batch [K, F]


def _vector_env(env_id: str, k: int, backend: str, kwargs: dict[str, Any]) -> PruningVectorEnv:
    """``env_id``'s vector entry point with ``k`` sub-envs; an env without a PruningVectorEnv is a ValueError."""
    venv = gym.make_vec(
        module_env_id(env_id),
        num_envs=k,
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.NEXT_STEP,
        backend=backend,
        **kwargs,
    )
    if not isinstance(venv, PruningVectorEnv):
        venv.close()
        raise ValueError(f"env {env_id!r} has no PruningVectorEnv as its vector entry point; play it with run_episode")
    return venv


def _play(
    policy: Any, venv: PruningVectorEnv, seeds: Sequence[int], desc: str, progress: bool
) -> tuple[list[list[dict]], list[list[float]], float]:
    """Play one deterministic episode per seed, all as one batch, until every one has ended; returns each
    episode's step infos and rewards, and the wall-clock per episode (s)."""
    k = len(seeds)
    bar = tqdm(
        total=math.ceil(venv.epochs / venv.decision_interval), desc=desc, unit="step", leave=False, disable=not progress
    )
    start = time.perf_counter()
    infos: list[list[dict]] = [[] for _ in range(k)]
    rewards: list[list[float]] = [[] for _ in range(k)]
    running = np.ones(k, dtype=bool)
    obs, _ = venv.reset(seed=list(seeds))
    state, first = None, np.ones((k,), dtype=bool)
    try:
        while running.any():
            action, state = policy.predict(obs, state=state, episode_start=first, deterministic=True)
            first = np.zeros((k,), dtype=bool)
            obs, reward, terminated, truncated, _ = venv.step(np.asarray(action).reshape(venv.action_space.shape))
            for i in np.flatnonzero(running):
                infos[i].append(dict(venv.sub_envs[i].last_info))
                rewards[i].append(float(reward[i]))
            running &= ~(terminated | truncated)
            bar.update()
    finally:
        bar.close()
    return infos, rewards, (time.perf_counter() - start) / k


def run_batched_episodes(
    spec: PolicySpec,
    env_id: str,
    env_kwargs: dict[str, Any] | None,
    seeds: Sequence[int],
    *,
    backend: str = "auto",
    progress: bool = False,
) -> list[EpisodeOutcome]:
    """Play one deterministic episode of ``spec`` (a :class:`PolicySpec`: a baseline or a saved agent, as
    :func:`~prunegym.agents.evaluation.episode.run_episode` takes it) per seed of ``seeds``, on ``env_id`` with
    ``env_kwargs``, as one batch of ``len(seeds)`` sub-envs (``backend``: the batched engine's). Returns the
    outcomes in the order of ``seeds``. A sub-env whose episode ends early (divergence, ``max_wall_time``)
    stops counting; the batch runs until every episode has ended."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("run_batched_episodes needs at least one seed")
    env_id = canonical_env_id(env_id)
    env_kwargs = dict(env_kwargs or {})
    policy = _load(spec)
    kwargs = _env_kwargs_for(spec, policy, env_kwargs)
    k = len(seeds)
    venv = _vector_env(env_id, k, backend, kwargs)
    try:
        policy, hparams = _batched_policy(spec, policy, venv)
        infos, rewards, wall = _play(policy, venv, seeds, f"{spec.name} x{k} seeds", progress)
        config = dict(venv.env_kwargs)
        fingerprint = policy_fingerprint(spec, policy)
        where = runtime(
            device=str(venv.batch.device) if venv.batch is not None else None,
            threads=torch.get_num_threads(),
        )
    finally:
        venv.close()
    return [
        episode_outcome(
            spec,
            env_id,
            env_kwargs,
            hparams,
            s,
            infos[i],
            rewards[i],
            wall,
            config,
            policy_hash=fingerprint,
            runtime_info=where,
        )
        for i, s in enumerate(seeds)
    ]
