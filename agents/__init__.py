"""prunegym.agents: SB3 agents, one evaluation harness for agents and baselines, TensorBoard and the CLI.

* :func:`train_agent` trains PPO, A2C, SAC, TD3 or DQN (through ``DiscreteRatio``) with RL-Zoo-format
  hyperparameters (``hyperparams/<algo>.yml``), checkpoints, ``resume=True`` and held-out evaluation;
* :func:`evaluate` runs one deterministic episode per seed of a baseline name, a saved agent, an
  :class:`Agent`, an SB3 model or any ``predict``-able object and appends :class:`EpisodeRow` rows to
  ``results.jsonl``;
* :func:`compare` runs every baseline and optional agents on the same seeds and writes the table, the
  accuracy-versus-compute figure and TensorBoard runs;
* with ``workers=N`` / ``ray_address=`` (``--workers``, ``--ray-address``), ``evaluate`` and ``compare`` run one
  Ray task per episode (:mod:`.parallel`, ``pip install -e ".[ray]"``), and ``train_agent(vec_env="ray")``
  makes each training env a Ray actor (:mod:`.ray_vec_env`); ``train_agent(vec_env="batched")`` trains on K
  episodes run as one batched model (:class:`BatchedVecEnv`, :mod:`.batched_vec_env`), and
  :func:`run_batched_episodes` plays one policy's seeds as one batch (:mod:`.batched_episodes`);
* ``prunegym`` (:func:`prunegym.agents.cli.main`) is the command line.

Submodules load lazily: importing this package does not import stable-baselines3 or torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ALGOS", "Agent", "BatchedVecEnv", "Comparison", "EpisodeOutcome", "EpisodeRow", "ObsNormalizer", "PolicySpec", "ROW_FIELDS",
    "SCHEMA", "append_rows", "compare", "evaluate", "load_agent", "load_hyperparams", "policy_spec", "read_rows",
    "run_batched_episodes", "run_episode", "save_agent", "train_agent",
]

_WHERE = {
    "ALGOS": "agent", "Agent": "agent", "ObsNormalizer": "agent", "load_agent": "agent", "save_agent": "agent",
    "Comparison": "evaluation", "compare": "evaluation", "evaluate": "evaluation",
    "EpisodeOutcome": "episode", "PolicySpec": "episode", "policy_spec": "episode", "run_episode": "episode",
    "EpisodeRow": "results", "ROW_FIELDS": "results", "SCHEMA": "results", "append_rows": "results",
    "read_rows": "results",
    "load_hyperparams": "hyperparams",
    "BatchedVecEnv": "batched_vec_env", "run_batched_episodes": "batched_episodes",
    "train_agent": "training",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
