"""One decision applied to a run: the plan -> ``run_epoch`` -> pruner update sequence, written once.

Every caller that advances a :class:`~prunegym.training.TrainingRun` under a pruner (the env, the lossless
reference, the DDP example, the benchmarks) goes through :func:`step_run`, so they cannot drift apart.
"""
from __future__ import annotations

from typing import Any, Mapping, Protocol

from .budget import trim_plan
from .plan import EpochPlan, EpochResult
from .run import TrainingRun
from .scores import ScoreTable

__all__ = ["PlanMaker", "step_run"]


class PlanMaker(Protocol):
    """What :func:`step_run` needs of a pruner (``prunegym.baselines.Pruner`` is one)."""

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan: ...

    def update(self, result: Any, scores: ScoreTable) -> None: ...


def step_run(run: TrainingRun, pruner: PlanMaker, decision: Mapping[str, float],
             max_flops: float | None = None) -> EpochResult:
    """Train one epoch of ``run`` on ``pruner``'s plan for the decoded ``decision``
    (``{"prune_ratio": r, knob: value}``), then let the pruner read the epoch's losses; returns the result.

    ``max_flops``: a cap on the epoch's FLOPs (a compute budget's remainder): a plan that would cost more is
    cut to its longest prefix that fits (:func:`~prunegym.training.budget.trim_plan`), and
    ``result.extra["budget_trimmed"]`` says how many planned rows were dropped (0 when it fitted)."""
    plan = pruner.plan(run.epoch, run.scores, decision)
    dropped = 0
    if max_flops is not None:
        plan, dropped = trim_plan(run, plan, max(0.0, max_flops))
    result = run.run_epoch(plan)
    if max_flops is not None:
        result.extra["budget_trimmed"] = dropped
    pruner.update(result, run.scores)
    return result
