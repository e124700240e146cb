"""The evaluation harness: one episode (:func:`run_episode`, or many seeds as one batch with
:func:`run_batched_episodes`), :func:`evaluate` and :func:`compare` (sequential or on Ray), the results rows
(:class:`EpisodeRow`), reports, TensorBoard runs, and for budgets the calibration of baselines and the tuning
of static schedules."""

from __future__ import annotations

from .batched_episodes import run_batched_episodes
from .episode import EpisodeOutcome, PolicySpec, policy_spec, run_episode
from .harness import Comparison, compare, evaluate
from .results import ROW_FIELDS, SCHEMA, EpisodeRow, append_rows, read_rows

__all__ = [
    "ROW_FIELDS",
    "SCHEMA",
    "Comparison",
    "EpisodeOutcome",
    "EpisodeRow",
    "PolicySpec",
    "append_rows",
    "compare",
    "evaluate",
    "policy_spec",
    "read_rows",
    "run_batched_episodes",
    "run_episode",
]
