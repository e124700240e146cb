"""Fixed policies: a method's published schedule of its knobs, computed from the observation alone.

Each policy has SB3's ``predict(observation, state=None, episode_start=None, deterministic=True)`` signature,
so one evaluation harness runs SB3 agents and baselines alike. The epoch index is read from the
``epoch_fraction`` feature (``round(epoch_fraction * epochs)``); the rest of the schedule is constants.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .base import ActionCodec

__all__ = ["FixedPolicy", "env_attr"]


def env_attr(env: Any, name: str):
    """Attribute ``name`` of a gymnasium env (through ``unwrapped``) or of the first env of an SB3 VecEnv."""
    if hasattr(env, "get_attr") and not hasattr(env, "unwrapped"):
        return env.get_attr(name)[0]
    return getattr(env.unwrapped, name)


class FixedPolicy:
    """Base class. Subclasses set ``name``, ``pruner`` (the env pruner the schedule is written for),
    ``defaults`` (hyperparameters, the paper's values) and implement :meth:`schedule`.

    ``env`` supplies the epoch budget, the feature layout and the action convention; its pruner must be
    ``pruner``. ``hparams`` override ``defaults``; unknown names raise ``ValueError``.
    """

    name: ClassVar[str] = "base"
    pruner: ClassVar[str] = "full"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, env: Any, **hparams: Any):
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            raise ValueError(f"policy {self.name!r} has no hyperparameter(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(self.defaults) or 'none'}")
        env_pruner = env_attr(env, "pruner_name")
        if env_pruner != self.pruner:
            raise ValueError(f"policy {self.name!r} drives the {self.pruner!r} pruner, but the env was made with "
                             f"pruner={env_pruner!r}; make it with pruner={self.pruner!r}")
        self.hparams = {**self.defaults, **hparams}
        self.epochs = int(env_attr(env, "epochs"))
        self.codec = ActionCodec(env_attr(env, "max_prune_ratio"), env_attr(env, "knobs"))
        self._epoch_feature = list(env_attr(env, "feature_names")).index("epoch_fraction")
        self.validate()

    def validate(self) -> None:
        """Check hyperparameter values: ``prune_ratio`` against the env's range and every hyperparameter named
        like one of the pruner's knobs against that knob's range (subclasses check the others)."""
        r = self.hparams.get("prune_ratio")
        if r is not None and not 0.0 <= r <= self.codec.max_prune_ratio:
            raise ValueError(f"prune_ratio={r!r} is out of range [0, {self.codec.max_prune_ratio}]")
        for knob in self.codec.knobs:
            v = self.hparams.get(knob.name)
            if v is not None and not knob.low <= v <= knob.high:
                raise ValueError(f"{knob.name}={v!r} is out of range [{knob.low}, {knob.high}] "
                                 f"(the {self.pruner!r} pruner's knob)")

    def schedule(self, epoch: int) -> dict[str, float]:
        """``{"prune_ratio": r, knob: value}`` for the epoch about to be trained (0-based)."""
        raise NotImplementedError

    def epoch_of(self, observation: np.ndarray) -> int:
        return int(round(float(observation[self._epoch_feature]) * self.epochs))

    def action_for(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(self.codec.encode(**self.schedule(self.epoch_of(observation))), dtype=np.float32)

    def predict(self, observation, state=None, episode_start=None, deterministic: bool = True):
        """The action for ``observation`` ``[F]`` (or a batch ``[n, F]`` from a VecEnv) and ``state``."""
        obs = np.asarray(observation, dtype=np.float32)
        if obs.ndim == 1:
            return self.action_for(obs), state
        return np.stack([self.action_for(o) for o in obs]), state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
        return f"{type(self).__name__}({args})"
