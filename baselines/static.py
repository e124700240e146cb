"""The strongest static baselines of the ``learned`` pruner under a compute budget: ``static_const`` and
``static_schedule`` (issue 16), and ``static_ramp`` (issue 23). They are what an RL agent has to beat: tuned
once per task and budget (``prunegym tune``), fixed for the whole run, no state.

All three spend exactly the episode's compute budget ``b`` (a fraction of the full-data run's training FLOPs;
read from the observation's ``compute_budget`` feature, or the ``budget`` hyperparameter). With ``E`` epochs
and the ``learned`` pruner's full-data warm-up epoch (epoch 0), the ``E - 1`` pruned epochs keep, on average,
the fraction ``m = (b E - 1) / (E - 1)`` of the training set, so that ``1 + (E - 1) m = b E`` epochs of
compute are spent (the pruner's ``ceil`` can ask for a few samples more; the env's budget cap trims them).
The keep fraction of pruned epoch ``e`` (``u = (e - 1) / (E - 2)`` in [0, 1]) is
``k_e = m + tilt * s_max * (u - 1/2)``, linear in the epoch, with ``s_max = 2 min(m - k_min, 1 - m)`` the
steepest slope that keeps every ``k_e`` in ``[k_min, 1]`` (``k_min = 1 - max_prune_ratio``): ``tilt = 0``
is a constant ratio (``static_const``), ``tilt > 0`` prunes hard early and eases off late, ``tilt < 0`` the
reverse. The prune ratio of an epoch is ``1 - k_e``; the knobs ``sharpness``, ``rescale`` and ``greedy`` of
the ``learned`` pruner (see :mod:`prunegym.baselines.learned`) are constants. A budget below what the
pruner can reach (``m < k_min``) is met by the env's cap, which then trims the last epochs.

``static_ramp`` is ``static_schedule`` with a linear *sharpness* schedule as well (issue 23: "keep hard
early, drop hard late" as a static policy, the fair opponent where the regime flips over a run), its end
value ``sharpness_end`` tuned with the rest. The sharpness of epoch ``e`` (0-based, clipped to ``E - 1``)
is ``s_0 = sharpness`` in the ``w = warmup_epochs`` warm-up epochs (the pruner ignores it there) and
``s_e = (1 - u) s_0 + u s_1`` in pruned epoch ``e``, with the keep schedule's ``u = (e - w) / (E - w - 1)``
(``u = 1/2`` when only one epoch is pruned) and ``s_1 = sharpness_end``: ``s_0`` in the first pruned epoch,
``s_1`` in the last, clipped to the ``learned`` pruner's range [-1, 1]. ``sharpness_end = None`` (the
default) is the constant ``s_0``, exactly ``static_schedule``. ``static_schedule`` keeps its declared
hyperparameters and search space, so its shipped tuned settings and their ``prunegym tune`` commands
still mean the same.

Defaults are the pruner's neutral settings (uniform, no reweighting); the point of these policies is to be
tuned (``prunegym tune --policy static_schedule --budget b``), and ``compare`` picks up the tuned settings.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from prunegym.training import check_fraction

from .base import DEFAULT_MAX_PRUNE_RATIO, FixedPolicy, Knob

__all__ = [
    "StaticConstPolicy",
    "StaticRampPolicy",
    "StaticSchedulePolicy",
    "budget_keep_fractions",
    "keep_schedule",
    "sharpness_schedule",
]


def budget_keep_fractions(
    budget: float,
    epochs: int,
    tilt: float = 0.0,
    max_prune_ratio: float = DEFAULT_MAX_PRUNE_RATIO,
    warmup_epochs: int = 1,
) -> list[float]:
    """Keep fractions ``[E]`` in [0, 1] per epoch that spend ``budget`` of the full-data run (see the module
    docstring): 1 for the ``warmup_epochs`` full-data epochs, then linear with slope set by ``tilt`` in [-1, 1]."""
    budget = check_fraction(budget, "budget")
    if not -1.0 <= tilt <= 1.0:
        raise ValueError(f"tilt={tilt!r} must be in [-1, 1]")
    w = min(int(warmup_epochs), epochs)
    n = epochs - w
    if n <= 0:
        return [1.0] * epochs
    k_min = 1.0 - float(max_prune_ratio)
    m = (budget * epochs - w) / n
    if m >= 1.0:
        return [1.0] * epochs
    m = max(m, k_min)
    s = tilt * 2.0 * min(m - k_min, 1.0 - m)
    us = [0.5] if n == 1 else [i / (n - 1) for i in range(n)]
    return [1.0] * w + [min(1.0, max(k_min, m + s * (u - 0.5))) for u in us]


keep_schedule = budget_keep_fractions  # deprecated alias (renamed in 0.3: "schedule" names a method's own)


def _check_sharpness(value: float, name: str) -> float:
    v = float(value)
    if not -1.0 <= v <= 1.0:
        raise ValueError(f"{name}={value!r} is out of range [-1, 1]")
    return v


def sharpness_schedule(start: float, end: float | None, epochs: int, warmup_epochs: int = 1) -> list[float]:
    """Sharpness ``[E]`` in [-1, 1] per epoch (see the module docstring): ``start`` in the ``warmup_epochs``
    warm-up epochs, then linear from ``start`` (first pruned epoch) to ``end`` (last); ``end=None``: constant."""
    s0 = _check_sharpness(start, "sharpness")
    if end is None:
        return [s0] * epochs
    s1 = _check_sharpness(end, "sharpness_end")
    w = min(int(warmup_epochs), epochs)
    n = epochs - w
    us = [0.5] if n == 1 else [i / (n - 1) for i in range(n)]
    return [s0] * w + [min(1.0, max(-1.0, (1.0 - u) * s0 + u * s1)) for u in us]


class StaticSchedulePolicy(FixedPolicy):
    """A linear prune-ratio schedule that spends the budget exactly, plus constant knobs (module docstring).

    Hyperparameters: ``tilt`` in [-1, 1], ``sharpness``, ``rescale``, ``greedy`` (the ``learned`` pruner's
    knobs), ``budget`` (None: read from the observation's ``compute_budget``; needed for an env without a
    budget feature), ``warmup_epochs`` (the ``learned`` pruner's, default 1)."""

    name = "static_schedule"
    pruner = "learned"
    defaults: ClassVar[dict[str, Any]] = {
        "tilt": 0.0,
        "sharpness": 0.0,
        "rescale": 0.0,
        "greedy": 0.0,
        "budget": None,
        "warmup_epochs": 1,
    }
    tuned: ClassVar[tuple[str, ...]] = ("tilt", "sharpness", "rescale", "greedy")  # what ``prunegym tune`` searches
    schedule_knobs: ClassVar[tuple[Knob, ...]] = (
        Knob("tilt", -1.0, 1.0, 0.0, "slope of the keep fractions: > 0 prunes hard early, < 0 late"),
    )
    requires_budget = True  # runs only in an env with a compute budget (or with ``budget=`` given)
    sampler_unfit = "reads its compute budget from the env's observation"  # budget= is the sampler's own

    def validate(self) -> None:
        super().validate()
        if not -1.0 <= float(self.hparams.get("tilt", 0.0)) <= 1.0:
            raise ValueError(f"tilt={self.hparams['tilt']!r} is out of range [-1, 1]")
        if self.hparams.get("sharpness_end") is not None:
            _check_sharpness(self.hparams["sharpness_end"], "sharpness_end")
        b = self.hparams["budget"]
        if b is None and "compute_budget" not in self.context.feature_names:
            raise ValueError(
                f"policy {self.name!r} needs a budget: make the env with compute_budget=b or pass budget=b"
            )
        if b is not None:
            check_fraction(b, "budget")
        self._budget_feature = (
            self.context.feature_names.index("compute_budget")
            if "compute_budget" in self.context.feature_names
            else None
        )
        names = self.context.feature_names
        self._used_feature = names.index("compute_used") if "compute_used" in names else None

    def budget_of(self, observation: np.ndarray) -> float:
        b = self.hparams["budget"]
        if b is not None:
            return float(b)
        return round(float(observation[self._budget_feature]), 6)  # float32 round-off of the feature

    def keep_fractions(self, budget: float) -> list[float]:
        return budget_keep_fractions(
            budget,
            self.epochs,
            float(self.hparams.get("tilt", 0.0)),
            self.codec.max_prune_ratio,
            int(self.hparams["warmup_epochs"]),
        )

    def sharpness_at(self, epoch: int) -> float:
        """The sharpness in [-1, 1] of epoch ``epoch`` (0-based): ``sharpness``, or its ramp to ``sharpness_end``."""
        end = self.hparams.get("sharpness_end")
        if end is None:
            return float(self.hparams["sharpness"])
        ramp = sharpness_schedule(self.hparams["sharpness"], end, self.epochs, int(self.hparams["warmup_epochs"]))
        return ramp[min(max(int(epoch), 0), self.epochs - 1)]

    def knobs_at(self, epoch: int | None) -> dict[str, float]:
        """The ``learned`` pruner's knobs of epoch ``epoch`` (None: only without a sharpness ramp)."""
        if epoch is None and self.hparams.get("sharpness_end") is not None:
            raise ValueError(f"policy {self.name!r} ramps its sharpness: pass the epoch")
        sharpness = float(self.hparams["sharpness"]) if epoch is None else self.sharpness_at(epoch)
        return {"sharpness": sharpness, **{k: float(self.hparams[k]) for k in ("rescale", "greedy")}}

    def action_for(self, observation: np.ndarray) -> np.ndarray:
        epoch = min(self.epoch_of(observation), self.epochs - 1)
        return self.action_at_keep(self.keep_fractions(self.budget_of(observation))[epoch], epoch)

    def replanned_keep(self, observation: np.ndarray) -> float:
        """The keep fraction in [k_min, 1] of the epoch about to be trained, re-planned on the compute left
        (closed loop, used by ``ResidualAction(track_budget=True)``): the planned fractions ``k_s`` of the
        epochs ``s >= t`` still to come are scaled to spend ``R = (b - compute_used) E`` full-data epochs,
        ``k_t R / sum_{s >= t} k_s``; warm-up epochs stay at 1."""
        epoch = min(self.epoch_of(observation), self.epochs - 1)
        budget = self.budget_of(observation)
        plan = self.keep_fractions(budget)
        if epoch < int(self.hparams["warmup_epochs"]):
            return plan[epoch]
        if self._used_feature is None:
            raise ValueError(f"policy {self.name!r} re-plans on the compute used: the env needs feature compute_used")
        used = float(observation[self._used_feature])
        left = max(0.0, budget - used) * self.epochs
        rest = sum(plan[epoch:])
        k_min = 1.0 - self.codec.max_prune_ratio
        return min(1.0, max(k_min, plan[epoch] * left / rest)) if rest > 0 else plan[epoch]

    def action_at_keep(self, keep: float, epoch: int | None = None) -> np.ndarray:
        """This policy's action with the prune ratio ``1 - keep`` (clipped to the env's range) and the knobs of
        epoch ``epoch`` (0-based; needed only with a sharpness ramp)."""
        ratio = min(self.codec.max_prune_ratio, max(0.0, 1.0 - keep))
        return np.asarray(self.codec.encode(prune_ratio=ratio, **self.knobs_at(epoch)), dtype=np.float32)

    def schedule(self, epoch: int) -> dict[str, float]:
        b = self.hparams["budget"]
        if b is None:
            raise ValueError(f"policy {self.name!r} reads its budget from the observation; use predict()")
        ratio = 1.0 - self.keep_fractions(float(b))[min(epoch, self.epochs - 1)]
        return {"prune_ratio": min(self.codec.max_prune_ratio, max(0.0, ratio)), **self.knobs_at(epoch)}


class StaticConstPolicy(StaticSchedulePolicy):
    """One constant action of the ``learned`` pruner for the whole run (after its warm-up epoch): the prune
    ratio that spends the budget, constant knobs (``static_schedule`` at ``tilt = 0``)."""

    name = "static_const"
    defaults = {"sharpness": 0.0, "rescale": 0.0, "greedy": 0.0, "budget": None, "warmup_epochs": 1}
    tuned = ("sharpness", "rescale", "greedy")


class StaticRampPolicy(StaticSchedulePolicy):
    """``static_schedule`` with a linear sharpness schedule from ``sharpness`` to ``sharpness_end`` in [-1, 1]
    over the pruned epochs (module docstring); ``sharpness_end=None``: constant, exactly ``static_schedule``."""

    name = "static_ramp"
    defaults = {
        "tilt": 0.0,
        "sharpness": 0.0,
        "sharpness_end": None,
        "rescale": 0.0,
        "greedy": 0.0,
        "budget": None,
        "warmup_epochs": 1,
    }
    tuned = ("tilt", "sharpness", "sharpness_end", "rescale", "greedy")
    schedule_knobs = (
        *StaticSchedulePolicy.schedule_knobs,
        Knob("sharpness_end", -1.0, 1.0, 0.0, "sharpness of the last epoch: ramps linearly from sharpness"),
    )
