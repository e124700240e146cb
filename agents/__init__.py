"""prunegym.agents: SB3 agents, one evaluation harness for agents and baselines, Ray, TensorBoard and the CLI.

Rooms by job (each imports only the ones before it; see ``docs/ARCHITECTURE.md``):

* the shared ground: :mod:`.env_factory` (env ids, seed conventions, ``make_env``), :mod:`.rollout` (one
  deterministic episode of any ``predict``-able policy), :mod:`.output` (output locks, writable checks);
* :mod:`.parallel` -- a generic Ray task runner (:func:`~.parallel.run_tasks`, knows nothing of episodes),
  Ray address checks and :class:`~.parallel.RayVecEnv`;
* :mod:`.sb3` -- training (:func:`train_agent`: PPO, A2C, SAC, TD3, DQN through ``DiscreteRatio``, RL-Zoo
  hyperparameters, checkpoints, resume, held-out evaluation), callbacks, the vec envs (``dummy``,
  ``subproc``, ``ray``, ``batched``), saved and shipped agents (:class:`Agent`, :func:`load_agent`,
  ``pretrained:<name>``);
* :mod:`.evaluation` -- the harness: one episode (:func:`run_episode`), :func:`evaluate` and :func:`compare`
  (sequential or on Ray), results rows (:class:`EpisodeRow`, ``results.jsonl``), reports and figures,
  TensorBoard runs, budget calibration and tuning;
* :mod:`.cli` -- the ``prunegym`` command line.
"""

from __future__ import annotations

from .evaluation import (
    ROW_FIELDS,
    SCHEMA,
    Comparison,
    EpisodeOutcome,
    EpisodeRow,
    PolicySpec,
    append_rows,
    compare,
    evaluate,
    policy_spec,
    read_rows,
    run_batched_episodes,
    run_episode,
)
from .sb3 import ALGOS, Agent, BatchedVecEnv, ObsNormalizer, load_agent, load_hyperparams, save_agent, train_agent

__all__ = [
    "ALGOS",
    "Agent",
    "BatchedVecEnv",
    "Comparison",
    "EpisodeOutcome",
    "EpisodeRow",
    "ObsNormalizer",
    "PolicySpec",
    "ROW_FIELDS",
    "SCHEMA",
    "append_rows",
    "compare",
    "evaluate",
    "load_agent",
    "load_hyperparams",
    "policy_spec",
    "read_rows",
    "run_batched_episodes",
    "run_episode",
    "save_agent",
    "train_agent",
]
