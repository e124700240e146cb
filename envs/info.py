"""The typed records behind ``PruningEnv``'s ``info`` dicts: :class:`ResetInfo` and :class:`StepInfo`.

Gymnasium's API hands ``info`` over as a dict; these dataclasses are its one definition. Their fields are the
documented keys (optional ones are left out of the dict while ``None``), ``to_dict()`` builds the dict the env
returns and ``from_dict()`` reads one back (unknown keys, e.g. added by wrappers, are ignored). Everything is
a deterministic function of the seed and the actions, except ``wall_time`` and ``wall_time_total``, which
only appear with ``record_wall_time=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["ResetInfo", "StepInfo"]


def _to_dict(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj) if getattr(obj, f.name) is not None}


def _from_dict(cls, info: dict[str, Any]):
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in info.items() if k in names})


@dataclass
class ResetInfo:
    """``reset``'s info: epochs completed (0), the initial validation metrics and the episode's run seed;
    ``compute_budget`` (fraction of the full-data run's FLOPs) when the env has one; with a data regime
    (``label_noise`` or ``imbalance``): the episode's ``instance`` (``label_noise``, ``label_noise_kind``,
    ``clean_val``, ``imbalance``, ``compute_budget``, ``epochs``) and ``noisy_fraction`` (the share of training
    labels corrupted). The regime is never in the observation."""

    epoch: int
    val_loss: float
    val_accuracy: float
    seed: int
    compute_budget: float | None = None
    instance: dict[str, Any] | None = None
    noisy_fraction: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, info: dict[str, Any]) -> ResetInfo:
        return _from_dict(cls, info)


@dataclass
class StepInfo:
    """``step``'s info.

    Every step: ``epoch`` (epochs completed), ``prune_ratio`` (what the action asked),
    ``claimed_prune_ratio`` (what the pruner's plan claims, mean over the step's epochs; 0 for an epoch that
    prunes nothing), ``action`` (the decoded decision), ``kept_fraction`` (samples that reached the loss / N,
    per epoch of the step), ``planned_fraction`` (samples in the plan / N), ``compute_fraction_step`` and
    ``compute_fraction_total`` (training FLOPs of the step / so far, every pass: model, scoring and selector,
    as fractions of the full-data run), ``selector_compute_fraction_step`` and
    ``selector_compute_fraction_total`` (an in-batch selector's own FLOPs, same unit), ``flops_step``, ``train_loss``,
    ``train_accuracy`` (of the step's last epoch), ``val_loss``, ``val_accuracy``, ``lr``.
    With a compute budget: ``compute_budget``, ``budget_left`` (share of it not yet spent, in [0, 1]) and
    ``budget_trimmed`` (samples the env removed from the step's plans so that they fit the budget; 0 if
    none). When the run diverged: ``error``. With the ``lossless`` reward, at the end:
    ``reference_accuracy``. With ``record_wall_time``: ``wall_time`` (seconds of training in the step) and
    ``wall_time_total`` (since ``reset``). With a data regime, diagnostics (never in the observation):
    ``noisy_fraction`` (training labels corrupted), ``kept_noisy_fraction`` (the share of the step's kept samples
    whose label is corrupted), ``kept_head_fraction`` and ``kept_tail_fraction`` (the share of the head class's,
    class 0, and of the tail class's, class K - 1, training samples kept). At the end of the episode:
    ``test_loss``, ``test_accuracy``,
    ``episode_return`` and ``episode_record`` (a :class:`~prunegym.envs.record.EpisodeRecord` as a dict,
    for :func:`prunegym.envs.replay`).
    """

    epoch: int
    prune_ratio: float
    claimed_prune_ratio: float
    action: dict[str, float]
    kept_fraction: float
    planned_fraction: float
    compute_fraction_step: float
    compute_fraction_total: float
    selector_compute_fraction_step: float
    selector_compute_fraction_total: float
    flops_step: float
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    compute_budget: float | None = None
    budget_left: float | None = None
    budget_trimmed: int | None = None
    error: str | None = None
    reference_accuracy: float | None = None
    wall_time: float | None = None
    wall_time_total: float | None = None
    noisy_fraction: float | None = None
    kept_noisy_fraction: float | None = None
    kept_head_fraction: float | None = None
    kept_tail_fraction: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    episode_return: float | None = None
    episode_record: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)

    @classmethod
    def from_dict(cls, info: dict[str, Any]) -> StepInfo:
        return _from_dict(cls, info)
