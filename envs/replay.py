"""Replay an episode from its :class:`~prunegym.envs.record.EpisodeRecord`: same task, kwargs, seed, budget and
actions -> same metrics on CPU."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from prunegym.training import runtime, runtime_differences

from .env import PruningEnv
from .record import EpisodeRecord

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


def replay(record: EpisodeRecord | dict[str, Any], **overrides: Any) -> ReplayResult:
    """Rebuild the env of ``record`` (an :class:`EpisodeRecord`, or ``info["episode_record"]``, also after a
    JSON round trip), reset with its seed (and budget) and step its actions. ``overrides`` replace env kwargs
    (e.g. ``device="cpu"`` to replay a GPU episode on the CPU, ``data_root=...``). The wall-clock limit is not
    replayed: an episode that was truncated by ``max_wall_time`` replays up to its last action, and its final
    info gets the test metrics (``test_loss``, ``test_accuracy``) that the truncated step reported. Raises
    ``ValueError`` if the record is malformed or the replayed episode ends before its last action.

    Bit-for-bit holds for the same library versions, torch thread count, device and float path
    (:func:`prunegym.training.float_path`): when the record says
    what it was made with (``versions`` of an episode record, or ``runtime`` of a results row) and this
    process differs, a ``RuntimeWarning`` (one line) names the differences."""
    rec = EpisodeRecord.from_dict(record)
    env = PruningEnv(**{**rec.env_kwargs, **overrides})
    options = {"compute_budget": rec.compute_budget} if rec.compute_budget is not None else {}
    options.update(rec.regime or {})
    env.reset(seed=rec.seed, options=options or None)
    assert env.run is not None  # reset() made the run
    recorded = rec.extra.get("runtime") or rec.versions
    diffs = runtime_differences(recorded, runtime(device=env.run.device)) if isinstance(recorded, dict) else []
    if diffs:
        warnings.warn(
            f"replaying an episode recorded under other versions or settings ({'; '.join(diffs)}): the "
            "replay is bit-for-bit only under the same versions, torch thread count, device and float path "
            "(pin one with prunegym.training.float_path_env before torch is imported)",
            RuntimeWarning,
            stacklevel=2,
        )
    infos, rewards = [], []
    for i, a in enumerate(rec.actions):
        _, r, term, trunc, info = env.step(np.asarray(a, dtype=np.float64))
        infos.append(info)
        rewards.append(r)
        if (term or trunc) and i != len(rec.actions) - 1:
            raise ValueError(f"the replayed episode ended at step {i + 1} of {len(rec.actions)}")
    if "test_accuracy" not in infos[-1]:
        test = env.run.evaluate("test")
        infos[-1]["test_loss"], infos[-1]["test_accuracy"] = test.loss, test.accuracy
    env.close()
    return ReplayResult(infos, rewards)
