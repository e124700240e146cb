"""Replay an episode from its ``episode_record``: same task, kwargs, seed and actions -> same metrics on CPU."""
from __future__ import annotations

import warnings
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


def replay(record: dict, **overrides) -> ReplayResult:
    """Rebuild the env of ``record`` (from ``info["episode_record"]``, also after a JSON round trip), reset
    with its seed and step its actions. ``overrides`` replace env kwargs (e.g. ``device="cpu"`` to replay a
    GPU episode on the CPU, ``data_root=...``). The wall-clock limit is not replayed: an episode that was
    truncated by ``max_wall_time`` replays up to its last action, and its final info gets the test metrics
    (``test_loss``, ``test_accuracy``) that the truncated step reported. Raises ``ValueError`` if the record
    is malformed or the replayed episode ends before its last action.

    Bit-for-bit holds for the same library versions, torch thread count and device: when the record says
    what it was made with (``versions`` of an ``episode_record``, or ``runtime`` of a results row) and this
    process differs, a ``RuntimeWarning`` (one line) names the differences."""
    from prunegym.training import runtime, runtime_differences

    from .env import PruningEnv

    if not isinstance(record, dict):
        raise ValueError(f"an episode record is a dict (info['episode_record']), got {type(record).__name__}")
    for key in ("env_kwargs", "seed", "actions"):
        if key not in record:
            raise ValueError(f"episode record lacks {key!r}; it needs env_kwargs, seed and actions")
    if not record["actions"]:
        raise ValueError("episode record has no actions")
    env = PruningEnv(**{**record["env_kwargs"], **overrides})
    env.reset(seed=int(record["seed"]))
    recorded = record.get("runtime") or record.get("versions")
    diffs = runtime_differences(recorded, runtime(device=env.run.device)) if isinstance(recorded, dict) else []
    if diffs:
        warnings.warn(f"replaying an episode recorded under other versions or settings ({'; '.join(diffs)}): the "
                      "replay is bit-for-bit only under the same versions, torch thread count and device",
                      RuntimeWarning, stacklevel=2)
    infos, rewards = [], []
    for i, a in enumerate(record["actions"]):
        _, r, term, trunc, info = env.step(np.asarray(a, dtype=np.float64))
        infos.append(info)
        rewards.append(r)
        if (term or trunc) and i != len(record["actions"]) - 1:
            raise ValueError(f"the replayed episode ended at step {i + 1} of {len(record['actions'])}")
    if "test_accuracy" not in infos[-1]:
        test = env.run.evaluate("test")
        infos[-1]["test_loss"], infos[-1]["test_accuracy"] = test.loss, test.accuracy
    env.close()
    return ReplayResult(infos, rewards)
