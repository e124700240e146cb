"""Ray: a generic task runner (:func:`run_tasks`: one Ray task per call of any importable function, with
retries), address checks that fail fast, and :class:`RayVecEnv` (SB3 envs as Ray actors). Ray is optional
(``pip install -e ".[ray]"``): it is imported only when a run asks for it."""

from __future__ import annotations

from .ray_tasks import RayCall, RayOptions, RayUnavailable, RayUnreachable, TaskFailure, run_tasks, torch_threads
from .ray_vec_env import RayVecEnv

__all__ = [
    "RayCall",
    "RayOptions",
    "RayUnavailable",
    "RayUnreachable",
    "RayVecEnv",
    "TaskFailure",
    "run_tasks",
    "torch_threads",
]
