""":class:`EpisodeRecord`: what :func:`prunegym.envs.replay` needs to reproduce an episode (typed state replay,
as CompilerGym keeps it), with a JSON round trip."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["EpisodeRecord"]


@dataclass
class EpisodeRecord:
    """One episode: the env to rebuild (``env_kwargs``: every ``PruningEnv`` argument but the wall-clock
    limit), the run ``seed`` of its ``reset``, the episode's ``compute_budget`` (drawn at reset when the env
    draws budgets from a range; ``None`` without a budget) and the validated, clipped ``actions`` ``[T][A]``
    (float64 lists, so a replay is bit for bit). ``task`` and ``env_id`` say where it came from, ``versions``
    the library versions and CPU float path it was made with (bit for bit holds under the same ones);
    ``regime``: the episode's data regime (``label_noise``, ``imbalance``) when the env has one."""

    env_kwargs: dict[str, Any]
    seed: int
    actions: list[list[float]]
    task: str | None = None
    env_id: str | None = None
    compute_budget: float | None = None
    versions: dict[str, Any] | None = None
    regime: dict[str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not d["extra"]:
            d.pop("extra")
        for key in ("compute_budget", "versions", "regime"):
            if d[key] is None:
                d.pop(key)
        return d

    @classmethod
    def from_dict(cls, d: EpisodeRecord | dict[str, Any]) -> EpisodeRecord:
        """Read a record from ``info["episode_record"]`` (also after a JSON round trip); ``ValueError`` names
        what is missing or malformed."""
        if isinstance(d, EpisodeRecord):
            return d
        if not isinstance(d, dict):
            raise ValueError(f"an episode record is a dict (info['episode_record']), got {type(d).__name__}")
        for key in ("env_kwargs", "seed", "actions"):
            if key not in d:
                raise ValueError(f"episode record lacks {key!r}; it needs env_kwargs, seed and actions")
        if not d["actions"]:
            raise ValueError("episode record has no actions")
        known = {"env_kwargs", "seed", "actions", "task", "env_id", "compute_budget", "versions", "regime", "extra"}
        return cls(
            env_kwargs=dict(d["env_kwargs"]),
            seed=int(d["seed"]),
            actions=[[float(v) for v in a] for a in d["actions"]],
            task=d.get("task"),
            env_id=d.get("env_id"),
            compute_budget=d.get("compute_budget"),
            versions=d.get("versions"),
            regime=d.get("regime"),
            extra={**dict(d.get("extra") or {}), **{k: v for k, v in d.items() if k not in known}},
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EpisodeRecord:
        return cls.from_dict(json.loads(text))
