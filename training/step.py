"""One decision applied to a run: the plan -> ``run_epoch`` -> pruner update sequence, written once.

Every caller that advances a :class:`~prunegym.training.TrainingRun` under a pruner (the env, the lossless
reference, the DDP example, the benchmarks) goes through :func:`step_run`, and the K runs of a
:class:`~prunegym.training.BatchedTrainingRun` (the vector env) through :func:`step_runs`; both are made of
:func:`plan_epoch` and :func:`finish_epoch`, so they cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .batched_run import BatchedTrainingRun
from .budget import trim_plan
from .plan import EpochPlan, EpochResult
from .run import TrainingRun
from .run_state import RunState
from .scores import ScoreTable

__all__ = ["PlanMaker", "finish_epoch", "plan_epoch", "step_run", "step_runs"]


class PlanMaker(Protocol):
    """What :func:`step_run` needs of a pruner (``prunegym.baselines.Pruner`` is one)."""

    def plan(self, epoch: int, scores: ScoreTable, action: Mapping[str, float]) -> EpochPlan: ...

    def update(self, result: Any, scores: ScoreTable) -> None: ...


def plan_epoch(
    run: RunState, pruner: PlanMaker, decision: Mapping[str, float], max_flops: float | None = None
) -> tuple[EpochPlan, int]:
    """``(plan, dropped)``: ``pruner``'s plan for ``run``'s next epoch under ``decision``, cut to ``max_flops``
    when given (``dropped``: planned rows removed, 0 when it fitted). ``run``: a ``TrainingRun`` or a
    ``RunView`` of a batch."""
    plan = pruner.plan(run.epoch, run.scores, decision)
    dropped = 0
    if max_flops is not None:
        plan, dropped = trim_plan(run, plan, max(0.0, max_flops))
    return plan, dropped


def finish_epoch(run: RunState, pruner: PlanMaker, result: EpochResult, dropped: int | None) -> EpochResult:
    """Record ``dropped`` (``None``: no cap was applied) in ``result.extra["budget_trimmed"]`` and let the
    pruner read the epoch's losses; returns ``result``."""
    if dropped is not None:
        result.extra["budget_trimmed"] = dropped
    pruner.update(result, run.scores)
    return result


def step_run(
    run: TrainingRun, pruner: PlanMaker, decision: Mapping[str, float], max_flops: float | None = None
) -> EpochResult:
    """Train one epoch of ``run`` on ``pruner``'s plan for the decoded ``decision``
    (``{"prune_ratio": r, knob: value}``), then let the pruner read the epoch's losses; returns the result.

    ``max_flops``: a cap on the epoch's FLOPs (a compute budget's remainder): a plan that would cost more is
    cut to its longest prefix that fits (:func:`~prunegym.training.budget.trim_plan`), and
    ``result.extra["budget_trimmed"]`` says how many planned rows were dropped (0 when it fitted)."""
    plan, dropped = plan_epoch(run, pruner, decision, max_flops)
    return finish_epoch(run, pruner, run.run_epoch(plan), dropped if max_flops is not None else None)


def step_runs(
    batch: BatchedTrainingRun,
    pruners: Sequence[PlanMaker | None],
    decisions: Sequence[Mapping[str, float] | None],
    max_flops: Sequence[float | None],
) -> list[EpochResult | None]:
    """:func:`step_run` for the K runs of a ``BatchedTrainingRun`` in one batched epoch: run ``k`` trains
    ``pruners[k]``'s plan for ``decisions[k]`` within ``max_flops[k]``; a ``None`` decision leaves run ``k``
    out (its result is ``None``)."""
    runs = batch.runs
    plans: list[EpochPlan | None] = []
    dropped: list[int | None] = []
    for k, d in enumerate(decisions):
        pruner = pruners[k]
        if d is None or pruner is None:
            plans.append(None)
            dropped.append(None)
            continue
        plan, n_dropped = plan_epoch(runs[k], pruner, d, max_flops[k])
        plans.append(plan)
        dropped.append(n_dropped if max_flops[k] is not None else None)
    results = batch.run_epoch(plans)
    out: list[EpochResult | None] = []
    for k, r in enumerate(results):
        pruner = pruners[k]
        out.append(finish_epoch(runs[k], pruner, r, dropped[k]) if r is not None and pruner is not None else None)
    return out
