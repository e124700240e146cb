"""Per-run views of a :class:`~prunegym.training.BatchedTrainingRun`: row views of its score store and
:class:`RunView`, run ``k`` with the attributes of a :class:`~prunegym.training.TrainingRun`."""

from __future__ import annotations

from typing import Any

import torch

from .batched_data import RunData
from .config import RunConfig
from .meter import ComputeMeter
from .models import SplitModel
from .plan import EpochPlan
from .scores import ScoreTable

__all__ = ["RunView", "row_views"]


def row_views(table: ScoreTable, k_runs: int, sizes: list[int] | None = None) -> list[ScoreTable]:
    """K :class:`ScoreTable` objects whose tensors are row views of ``table`` (``K * N`` samples): updates
    through either side are seen by both. ``sizes``: row ``k``'s view holds its first ``sizes[k]`` samples
    (training sets of different sizes; ``None``: all ``N``)."""
    n = table.num_samples // k_runs
    views = []
    for k in range(k_runs):
        n_k = sizes[k] if sizes is not None else n
        v = ScoreTable.__new__(ScoreTable)
        for name, val in vars(table).items():
            if isinstance(val, torch.Tensor) and tuple(val.shape[:1]) == (table.num_samples,):
                val = val.view(k_runs, n, *val.shape[1:])[k, :n_k]
            setattr(v, name, val)
        v.num_samples = n_k
        views.append(v)
    return views


class RunView:
    """Run ``k`` of a :class:`BatchedTrainingRun` with the attributes a pruner, the env or
    :func:`~prunegym.training.trim_plan` reads from a :class:`~prunegym.training.TrainingRun`: ``config``,
    ``device``, ``epoch`` (this run's epochs completed), ``epochs``, ``done``, ``lr``, ``num_train``,
    ``param_count``, ``scores``, ``meter``, ``data``, ``generator(stream)``, ``full_plan()``; ``model`` is a copy
    of the run's current weights. Every attribute reads the batch's current state, so a view stays valid
    after :meth:`BatchedTrainingRun.reset_run`."""

    def __init__(self, batch: Any, k: int):  # batch: a BatchedTrainingRun (not imported: no cycle)
        self._batch, self.index = batch, int(k)
        self.data = RunData(batch.data, k)
        self.device, self.epochs = batch.device, batch.epochs
        self.param_count = batch.param_count

    @property
    def num_train(self) -> int:
        """This run's training-set size (a long tail's differs between runs and episodes)."""
        return self._batch.data.train_size(self.index)

    @property
    def config(self) -> RunConfig:
        return self._batch.configs[self.index]

    @property
    def scores(self) -> ScoreTable:
        return self._batch.scores[self.index]

    @property
    def meter(self) -> ComputeMeter:
        return self._batch.meters[self.index]

    @property
    def epoch(self) -> int:
        return self._batch.epochs_completed[self.index]

    @property
    def done(self) -> bool:
        return self.epoch >= self.epochs

    @property
    def lr(self) -> float:
        return self._batch.lr[self.index]

    @property
    def model(self) -> SplitModel:
        return self._batch.model(self.index)

    @property
    def pending_scoring(self) -> int:
        return self._batch.pending_scoring[self.index]

    def generator(self, stream: str) -> torch.Generator:
        return self._batch.generator(self.index, stream)

    def full_plan(self) -> EpochPlan:
        return self._batch.full_plan(self.index)
