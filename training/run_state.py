"""The run interface the env side reads: :class:`RunState`, a typed protocol.

Two things are a run to the env, the observation features, the compute budget and the pruners: a
:class:`~prunegym.training.TrainingRun`, and run ``k`` of a :class:`~prunegym.training.BatchedTrainingRun` (its
:class:`~prunegym.training.batched_views.RunView`). Both satisfy :class:`RunState` (mypy checks it where they are
passed), so nothing on the env side reads a run through ``Any`` or a private attribute. Advancing a run is the
engines' job: :func:`~prunegym.training.step_run` takes a ``TrainingRun``, :func:`~prunegym.training.step_runs` a
batch.
"""

from __future__ import annotations

from typing import Protocol

import torch

from .config import RunConfig
from .meter import ComputeMeter
from .models import SplitModel
from .plan import EpochPlan
from .regimes import RegimeMarks
from .scores import ScoreTable

__all__ = ["RunState", "TaskShape"]


class TaskShape(Protocol):
    """What a run's data say about the task: the classes and one sample's shape."""

    @property
    def num_classes(self) -> int: ...

    @property
    def input_shape(self) -> tuple[int, ...]: ...

    @property
    def regime(self) -> RegimeMarks | None: ...


class RunState(Protocol):
    """One training run's state, as the env side reads it (see the module docstring).

    ``epoch``: epochs completed; ``lr``: the learning rate after them; ``scores``: the per-sample score table
    ``[N]``; ``meter``: the compute charged so far (FLOPs); ``pending_scoring``: forward passes of scoring not yet
    charged (the next epoch pays them); ``model``: the current weights (a copy for a batch's run)."""

    @property
    def config(self) -> RunConfig: ...

    @property
    def device(self) -> torch.device: ...

    @property
    def epoch(self) -> int: ...

    @property
    def epochs(self) -> int: ...

    @property
    def done(self) -> bool: ...

    @property
    def num_train(self) -> int: ...

    @property
    def lr(self) -> float: ...

    @property
    def param_count(self) -> int: ...

    @property
    def scores(self) -> ScoreTable: ...

    @property
    def meter(self) -> ComputeMeter: ...

    @property
    def data(self) -> TaskShape: ...

    @property
    def model(self) -> SplitModel: ...

    @property
    def pending_scoring(self) -> int: ...

    def generator(self, stream: str) -> torch.Generator: ...

    def full_plan(self) -> EpochPlan: ...
