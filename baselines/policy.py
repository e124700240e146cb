"""Fixed policies: a method's published schedule of its knobs, computed from the observation alone.

Each policy has SB3's ``predict(observation, state=None, episode_start=None, deterministic=True)`` signature,
so one evaluation harness runs SB3 agents and baselines alike. What a policy needs of its env (the pruner it
drives, the epoch budget, the action convention, the feature layout) comes as one typed
:class:`PolicyContext` that the env provides (``PruningEnv.policy_context``). The epoch index is read from the
``epoch_fraction`` feature (``round(epoch_fraction * epochs)``); the rest of the schedule is constants.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

from .base import Knob

__all__ = ["ActionEncoder", "FixedPolicy", "PolicyContext", "policy_context_of"]


class ActionEncoder(Protocol):
    """The part of the env's action codec a policy uses (``prunegym.envs.ActionCodec`` is one)."""

    max_prune_ratio: float
    knobs: tuple[Knob, ...]

    def encode(self, prune_ratio: float = 0.0, **knobs: float) -> list[float]: ...


@dataclass(frozen=True)
class PolicyContext:
    """What a fixed policy needs of its env: the ``pruner`` name the env was made with, the run's ``epochs``,
    the action ``codec``, the observation's ``feature_names`` and the env's ``decision_interval``."""

    pruner: str
    epochs: int
    codec: ActionEncoder
    feature_names: tuple[str, ...]
    decision_interval: int = 1


def policy_context_of(env: Any) -> PolicyContext:
    """The :class:`PolicyContext` of a gymnasium env (any wrapper), of the first env of an SB3 VecEnv, or
    ``env`` itself if it is one."""
    if isinstance(env, PolicyContext):
        return env
    ctx = getattr(getattr(env, "unwrapped", None), "policy_context", None)
    if ctx is None and hasattr(env, "get_attr"):
        ctx = env.get_attr("policy_context")[0]
    if not isinstance(ctx, PolicyContext):
        raise ValueError(f"{type(env).__name__} provides no policy_context: pass a PruningEnv (or a wrapper or "
                         "VecEnv of one) or a PolicyContext")
    return ctx


class FixedPolicy:
    """Base class. Subclasses set ``name``, ``pruner`` (the env pruner the schedule is written for),
    ``defaults`` (hyperparameters, the paper's values) and implement :meth:`schedule`.

    ``env``: a :class:`PolicyContext`, or an env that provides one (:func:`policy_context_of`); its pruner
    must be ``pruner``. ``hparams`` override ``defaults``; unknown names raise ``ValueError``.
    """

    name: ClassVar[str] = "base"
    pruner: ClassVar[str] = "full"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, env: Any, **hparams: Any):
        unknown = sorted(set(hparams) - set(self.defaults))
        if unknown:
            raise ValueError(f"policy {self.name!r} has no hyperparameter(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(self.defaults) or 'none'}")
        ctx = policy_context_of(env)
        if ctx.pruner != self.pruner:
            raise ValueError(f"policy {self.name!r} drives the {self.pruner!r} pruner, but the env was made with "
                             f"pruner={ctx.pruner!r}; make it with pruner={self.pruner!r}")
        self.context = ctx
        self.hparams = {**self.defaults, **hparams}
        self.epochs = int(ctx.epochs)
        self.codec = ctx.codec
        self._epoch_feature = list(ctx.feature_names).index("epoch_fraction")
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
