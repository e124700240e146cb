"""prunegym.envs: the training run as a Gymnasium environment.

Importing this module registers the ids in the ``prunegym`` namespace (``prunegym/Synthetic-MLP-v0``,
``prunegym/FashionMNIST-MLP-v0``, ``prunegym/FashionMNIST-CNN-v0``, ``prunegym/MNIST-CNN-v0``,
``prunegym/CIFAR10-ResNet18-v0``, ``prunegym/CIFAR100-ResNet18-v0``). Without a prior import, use
``gymnasium.make("prunegym.envs:prunegym/Synthetic-MLP-v0")``. Each id's ``vector_entry_point`` is
:class:`PruningVectorEnv` (K episodes as one batched model): ``gymnasium.make_vec(id, num_envs=K,
vectorization_mode="vector_entry_point")``; ``vectorization_mode="sync"`` gives K ``PruningEnv`` instead.

Modules: :mod:`.env` (the thin ``PruningEnv``), :mod:`.options` (its arguments), :mod:`.action` (the action
contract), :mod:`.features` (observation features, a table), :mod:`.rewards` (reward objects), :mod:`.info`
(the typed ``info``), :mod:`.record` and :mod:`.replay` (typed episode records, replay), :mod:`.reference`
(the lossless reward's full-data reference), :mod:`.tasks` (presets and ids), :mod:`.wrappers`,
:mod:`.episode_state` (an episode's bookkeeping, shared by both envs), :mod:`.vector_env` and :mod:`.sub_env`
(the batched vector env), :mod:`.render`. :func:`register_task` adds an id for the user's own data and model.
"""

from __future__ import annotations

import gymnasium

from .action import ActionCodec
from .env import PruningEnv
from .features import BUDGET_FEATURES, FEATURE_DOCS, FEATURE_NAMES, FEATURES, Feature
from .info import ResetInfo, StepInfo
from .options import EnvOptions
from .record import EpisodeRecord
from .relative_reward import RelativeReward
from .replay import ReplayResult, replay
from .rewards import (
    DEFAULT_COMPUTE_WEIGHT,
    NONFINITE_PENALTY,
    REWARDS,
    AccuracyReward,
    CallableReward,
    LosslessReward,
    Reward,
    RewardInput,
    TradeoffReward,
    make_reward,
)
from .tasks import ENV_IDS, ID_KWARGS, TASKS, register_task, task_config
from .vector_env import PruningVectorEnv
from .wrappers import DiscreteRatio, ResidualAction

__all__ = [
    "BUDGET_FEATURES",
    "DEFAULT_COMPUTE_WEIGHT",
    "ENV_IDS",
    "ID_KWARGS",
    "FEATURES",
    "FEATURE_DOCS",
    "FEATURE_NAMES",
    "NONFINITE_PENALTY",
    "REWARDS",
    "TASKS",
    "AccuracyReward",
    "ActionCodec",
    "CallableReward",
    "DiscreteRatio",
    "EnvOptions",
    "EpisodeRecord",
    "Feature",
    "LosslessReward",
    "PruningEnv",
    "PruningVectorEnv",
    "RelativeReward",
    "ReplayResult",
    "ResetInfo",
    "ResidualAction",
    "Reward",
    "RewardInput",
    "StepInfo",
    "TradeoffReward",
    "make_reward",
    "register_envs",
    "register_task",
    "replay",
    "task_config",
]


def register_envs() -> None:
    """Register every id of :data:`ENV_IDS` with gymnasium (idempotent): ``PruningEnv`` as its entry point,
    ``PruningVectorEnv`` as its vector entry point."""
    for env_id, (task, nondeterministic) in ENV_IDS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point="prunegym.envs.env:PruningEnv",
            vector_entry_point="prunegym.envs.vector_env:PruningVectorEnv",
            kwargs={"task": task, **ID_KWARGS.get(env_id, {})},
            nondeterministic=nondeterministic,
        )


register_envs()
