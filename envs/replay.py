"""Replay an episode from its ``episode_record``: same task, kwargs, seed and actions -> same metrics on CPU."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ReplayResult", "replay"]


@dataclass
class ReplayResult:
    """The infos ``[T]`` and rewards ``[T]`` of the replayed episode, and its return."""

    infos: list[dict]
    rewards: list[float]

    @property
    def episode_return(self) -> float:
        return float(sum(self.rewards))

    @property
    def final_info(self) -> dict:
        return self.infos[-1]


def replay(record: dict) -> ReplayResult:
    """Rebuild the env of ``record`` (from ``info["episode_record"]``), reset with its seed and step its
    actions. Raises ``ValueError`` if the record is malformed or ends early."""
    from .env import PruningEnv

    for key in ("env_kwargs", "seed", "actions"):
        if key not in record:
            raise ValueError(f"episode record lacks {key!r}; it needs env_kwargs, seed and actions")
    env = PruningEnv(**record["env_kwargs"])
    env.reset(seed=int(record["seed"]))
    infos, rewards = [], []
    for i, a in enumerate(record["actions"]):
        _, r, term, trunc, info = env.step(np.asarray(a, dtype=np.float32))
        infos.append(info)
        rewards.append(r)
        if (term or trunc) and i != len(record["actions"]) - 1:
            raise ValueError(f"the replayed episode ended at step {i + 1} of {len(record['actions'])}")
    env.close()
    return ReplayResult(infos, rewards)
