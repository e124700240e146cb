"""The cost of a plan before it runs, and trimming a plan to a FLOP cap (compute budgets).

:func:`plan_flops` prices an :class:`~prunegym.training.EpochPlan` with the run's measured FLOPs per pass,
exactly as the meter will charge it afterwards: every row pays the shallow forward and backward, the rows
that reach the loss also the deep ones (all rows, unless an in-batch selector keeps fewer: it says how many
through ``kept_rows(rows_in)``; a selector without it is priced as keeping every row, an upper bound), a
selector's own arithmetic through its ``flops(rows_in, rows_kept, feature_shape)`` if it has one, and the
scoring passes (``run.pending_scoring`` ones from :meth:`TrainingRun.score` and the plan's ``score_after``) a
full forward each. :func:`trim_plan` keeps the longest prefix of the plan (plans are shuffled, so a prefix is a uniform
subset) whose cost fits the cap.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, replace

import torch

from .checks import check_fraction
from .meter import ComputeMeter
from .plan import EpochPlan, MixupSpec, selector_flops
from .run_state import RunState

__all__ = ["ComputeBudget", "plan_flops", "shallow_shape", "trim_plan"]


@dataclass(frozen=True)
class ComputeBudget:
    """An episode's compute budget: ``fraction`` in (0, 1] of the full-data run's training FLOPs (every pass).

    It owns the unit changes: the FLOPs the next epochs may still spend (:meth:`flops_left`, the cap
    :func:`trim_plan` cuts a plan to) and the share of the budget not yet spent (:meth:`share_left`), both from a
    run's :class:`~prunegym.training.ComputeMeter`."""

    fraction: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "fraction", check_fraction(self.fraction, "compute_budget"))

    def flops_left(self, meter: ComputeMeter) -> float:
        """FLOPs left, >= 0: ``fraction`` of the full-data run's FLOPs minus what ``meter`` has charged."""
        return max(0.0, self.fraction * meter.full_run_flops - meter.total_flops)

    def share_left(self, meter: ComputeMeter) -> float:
        """The share of the budget not yet spent, in [0, 1] (1 before training, 0 once spent)."""
        return max(0.0, self.fraction - meter.total_fraction) / self.fraction


def shallow_shape(run: RunState) -> tuple[int, ...]:
    """The shape of one sample's shallow features (the selector's input), from a meta-device pass."""
    with torch.device("meta"):
        x = torch.empty((1, *run.data.input_shape))
    meta = copy.deepcopy(run.model.shallow).to("meta")
    return tuple(meta(x).shape[1:])


def _batch_cost(run: RunState, plan: EpochPlan, rows: int) -> float:
    f = run.meter.flops
    sel = plan.selector
    kept = rows
    extra = 0.0
    if sel is not None:
        kept_rows = getattr(sel, "kept_rows", None)
        kept = int(kept_rows(rows)) if kept_rows is not None else rows
        extra = selector_flops(sel, rows, kept, (rows, *shallow_shape(run)))
    return rows * (f.shallow_forward + f.shallow_backward) + kept * (f.deep_forward + f.deep_backward) + extra


def _scoring_rows(run: RunState, plan: EpochPlan) -> int:
    after = getattr(plan, "score_after", None)
    return int(run.pending_scoring) + (int(after.numel()) if after is not None else 0)


def _training_flops(run: RunState, plan: EpochPlan, length: int) -> float:
    """FLOPs of the training passes of the first ``length`` rows of ``plan`` (batched as the engine does)."""
    bs = run.config.batch_size
    if plan.selector is None:
        f = run.meter.flops
        return length * f.train_step
    full, rest = divmod(length, bs)
    cost = full * _batch_cost(run, plan, bs) if full else 0.0
    return cost + (_batch_cost(run, plan, rest) if rest else 0.0)


def plan_flops(run: RunState, plan: EpochPlan) -> float:
    """FLOPs the engine will charge for running ``plan`` on ``run`` now (see the module docstring)."""
    return _training_flops(run, plan, int(plan.indices.numel())) + _scoring_rows(run, plan) * run.meter.flops.forward


def _prefix(plan: EpochPlan, length: int) -> EpochPlan:
    mix = plan.mixup
    return replace(
        plan,
        indices=plan.indices[:length],
        weights=plan.weights[:length] if plan.weights is not None else None,
        mixup=MixupSpec(mix.partner[:length], mix.lam[:length]) if mix is not None else None,
    )


def trim_plan(run: RunState, plan: EpochPlan, max_flops: float) -> tuple[EpochPlan, int]:
    """``(plan', dropped)``: the longest prefix of ``plan``'s rows whose cost (:func:`plan_flops`) is at most
    ``max_flops``, and how many rows were dropped (0: ``plan`` itself). Scoring passes come first: if even they
    do not fit, the plan's ``score_after`` is cut too (pending scoring passes already happened and are
    always charged)."""
    n = int(plan.indices.numel())
    slack = 1e-9 * max(abs(max_flops), 1.0)  # float rounding of the sums, not a real overrun
    if plan_flops(run, plan) <= max_flops + slack:
        return plan, 0
    forward = run.meter.flops.forward
    after = getattr(plan, "score_after", None)
    budget = max_flops - int(run.pending_scoring) * forward
    if after is not None:
        keep_scoring = max(0, min(int(after.numel()), math.floor((budget + slack) / forward)))
        if keep_scoring < int(after.numel()):
            plan = replace(plan, score_after=after[:keep_scoring])
        budget -= keep_scoring * forward
    lo, hi = 0, n  # the largest length with cost <= budget (cost is nondecreasing in the length)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _training_flops(run, plan, mid) <= budget + slack:
            lo = mid
        else:
            hi = mid - 1
    return _prefix(plan, lo), n - lo
