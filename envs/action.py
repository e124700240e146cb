"""The action contract: a ``Box(-1, 1)`` vector <-> a decoded decision ``{"prune_ratio": r, knob: value}``.

Component 0 maps linearly to a prune ratio in ``[0, max_prune_ratio]``, every further component to one of
the pruner's knobs (:meth:`prunegym.baselines.Knob.decode`). This is the one place where the float32
round-off of an action is handled: decoded values are rounded to 6 decimals, so ``encode(prune_ratio=0.1)``
decodes to exactly 0.1 (float32 gives 0.09999999404, which would move ``ceil((1 - r) N)`` by one sample).
Every policy, agent or baseline, goes through :meth:`ActionCodec.decode` inside ``PruningEnv.step``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from prunegym.baselines import Knob, PolicyContext

__all__ = ["DECIMALS", "ActionCodec", "PolicyInterface"]

DECIMALS = 6  # float32 round-off of an action in [-1, 1] is about 6e-8


class ActionCodec:
    """Encodes decisions as action vectors and decodes action vectors (already clipped to [-1, 1])."""

    def __init__(self, max_prune_ratio: float, knobs: Sequence[Knob]):
        self.max_prune_ratio = float(max_prune_ratio)
        self.knobs = tuple(knobs)

    @property
    def names(self) -> tuple[str, ...]:
        """``("prune_ratio", knob names...)``: the meaning of each action component."""
        return ("prune_ratio",) + tuple(k.name for k in self.knobs)

    def encode(self, prune_ratio: float = 0.0, **knobs: float) -> list[float]:
        """The action components for ``prune_ratio`` in ``[0, max_prune_ratio]`` and knob values (missing
        knobs take their defaults); unknown knobs or out-of-range values raise ``ValueError``."""
        unknown = sorted(set(knobs) - {k.name for k in self.knobs})
        if unknown:
            raise ValueError(
                f"no knob(s) {', '.join(unknown)}; allowed: {', '.join(k.name for k in self.knobs) or 'none'}"
            )
        if not 0.0 <= prune_ratio <= self.max_prune_ratio + 1e-12:
            raise ValueError(f"prune_ratio={prune_ratio!r} is out of range [0, {self.max_prune_ratio}]")
        a0 = 2.0 * prune_ratio / self.max_prune_ratio - 1.0 if self.max_prune_ratio > 0 else -1.0
        out = [a0] + [k.encode(float(knobs.get(k.name, k.default))) for k in self.knobs]
        return [min(1.0, max(-1.0, v)) for v in out]

    def decode(self, action: Iterable[float]) -> dict[str, float]:
        """``{"prune_ratio": r, knob: value}`` of ``action`` (components in [-1, 1]), each rounded to
        :data:`DECIMALS` places (significant digits for a log-scale knob; see the module docstring)."""
        vals = [float(v) for v in action]
        out = {"prune_ratio": round((vals[0] + 1.0) * 0.5 * self.max_prune_ratio, DECIMALS)}
        for k, v in zip(self.knobs, vals[1:]):
            out[k.name] = k.rounded(k.decode(v), DECIMALS)  # significant digits on a log-scale knob
        return out


class PolicyInterface:
    """What fixed policies and wrappers read of an env, shared by ``PruningEnv`` and ``PruningVectorEnv``
    (for the vector env: of each sub-env, all alike). The env sets the attributes annotated here."""

    codec: ActionCodec
    pruner_name: str
    epochs: int
    feature_names: tuple[str, ...]
    decision_interval: int

    @property
    def action_names(self) -> tuple[str, ...]:
        """``("prune_ratio", knob names...)``: the meaning of each action component."""
        return self.codec.names

    @property
    def policy_context(self) -> PolicyContext:
        """What a fixed policy needs of this env: pruner, epochs, action codec and feature layout."""
        return PolicyContext(
            pruner=self.pruner_name,
            epochs=self.epochs,
            codec=self.codec,
            feature_names=self.feature_names,
            decision_interval=self.decision_interval,
        )

    def encode_action(self, prune_ratio: float = 0.0, **knobs: float) -> np.ndarray:
        """The action vector ``[A]`` (float32) for ``prune_ratio`` in ``[0, max_prune_ratio]`` and the pruner's
        knob values (missing knobs take their defaults)."""
        return np.asarray(self.codec.encode(prune_ratio, **knobs), dtype=np.float32)
