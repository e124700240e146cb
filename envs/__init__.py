"""prunegym.envs: the training run as a Gymnasium environment.

Importing this module registers the ids in the ``prunegym`` namespace (``prunegym/Synthetic-MLP-v0``,
``prunegym/FashionMNIST-MLP-v0``, ``prunegym/FashionMNIST-CNN-v0``, ``prunegym/MNIST-CNN-v0``,
``prunegym/CIFAR10-ResNet18-v0``, ``prunegym/CIFAR100-ResNet18-v0``). Without a prior import, use
``gymnasium.make("prunegym.envs:prunegym/Synthetic-MLP-v0")``. :func:`register_task` adds an id for the
user's own data and model.
"""
from __future__ import annotations

import gymnasium

from .env import NONFINITE_PENALTY, PruningEnv
from .features import FEATURE_DOCS, FEATURE_NAMES
from .replay import ReplayResult, replay
from .rewards import DEFAULT_COMPUTE_WEIGHT, REWARDS, RewardInput
from .tasks import ENV_IDS, TASKS, register_task, task_config
from .wrappers import DiscreteRatio

__all__ = [
    "DEFAULT_COMPUTE_WEIGHT", "DiscreteRatio", "ENV_IDS", "FEATURE_DOCS", "FEATURE_NAMES", "NONFINITE_PENALTY",
    "REWARDS", "TASKS", "PruningEnv", "ReplayResult", "RewardInput", "register_envs", "register_task", "replay",
    "task_config",
]


def register_envs() -> None:
    """Register every id of :data:`ENV_IDS` with gymnasium (idempotent)."""
    for env_id, (task, nondeterministic) in ENV_IDS.items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(id=env_id, entry_point="prunegym.envs.env:PruningEnv", kwargs={"task": task},
                           nondeterministic=nondeterministic)


register_envs()
