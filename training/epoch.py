"""One training epoch's semantics, written once for both engines.

:class:`~prunegym.training.TrainingRun` (one model) and :class:`~prunegym.training.BatchedTrainingRun` (K models
stacked) differ only in how they gather a batch's rows and step their optimizers; what an epoch *means* is
here, and both call it:

* the learning rate of batch ``b`` of ``n`` in epoch ``e``: the schedule at progress ``(e + b / n) / E``
  (:func:`run_lr`), and after the epoch at ``(e + 1) / E``;
* mix-up: inputs ``lam x + (1 - lam) x_partner`` and losses ``lam l(y) + (1 - lam) l(y_partner)``
  (:func:`mix_inputs`, :func:`sample_losses`);
* the loss a batch backpropagates: ``sum_i w_i l_i / m`` over the ``m`` rows that reach it, per run
  (:func:`batch_loss`);
* the epoch's close: its mean loss and accuracy in one host sync (:func:`epoch_means`), the score-table update
  (mix-up rows do not count as the sample's own loss; :func:`update_scores`) and the meter's charge and the
  :class:`EpochResult` (:func:`close_epoch`).

Each function takes the rows of one run (``[B]``) or of K runs (``[K, B]``) and does the same arithmetic in the
same order either way, so the single run's results are bit for bit those it always had.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .config import RunConfig
from .learning_rate import lr_at
from .meter import ComputeMeter
from .plan import EpochPlan, EpochResult, PassCounts
from .scores import ScoreTable

__all__ = [
    "batch_loss",
    "close_epoch",
    "epoch_means",
    "mix_inputs",
    "run_lr",
    "sample_losses",
    "update_scores",
]


def run_lr(config: RunConfig, epoch: int, batch: int = 0, n_batches: int = 1) -> float:
    """The learning rate of batch ``batch`` of ``n_batches`` in epoch ``epoch`` (epochs completed before it):
    ``config``'s schedule at training progress ``(epoch + batch / n_batches) / epochs`` in [0, 1]; with the
    defaults, the rate at the start of epoch ``epoch`` (after ``epoch`` epochs)."""
    return lr_at(config.lr_schedule, (epoch + batch / n_batches) / config.epochs, config.lr, pct_start=config.pct_start)


def mix_inputs(x: torch.Tensor, x_partner: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Mix-up inputs ``lam x + (1 - lam) x_partner``: ``lam`` ``[B]`` or ``[K, B]`` in [0, 1], ``x`` and
    ``x_partner`` ``[B, ...]`` or ``[K, B, ...]``."""
    shape = (*lam.shape, *([1] * (x.ndim - lam.ndim)))
    return lam.view(shape) * x + (1 - lam).view(shape) * x_partner


def sample_losses(
    logits: torch.Tensor,
    y: torch.Tensor,
    label_smoothing: float,
    y_partner: torch.Tensor | None = None,
    lam: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample cross-entropy, the shape of ``y`` (``[B]`` or ``[K, B]``; ``logits`` ``[..., C]``); with
    mix-up partners' labels ``y_partner`` and coefficients ``lam``, ``lam l(y) + (1 - lam) l(y_partner)``."""

    per_sample = _cross_entropy(logits, y, label_smoothing)
    if y_partner is not None and lam is not None:
        per_sample = lam * per_sample + (1 - lam) * _cross_entropy(logits, y_partner, label_smoothing)
    return per_sample


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """Per-sample cross-entropy in the shape of ``labels`` (one run's ``[B, C]`` logits as they are: the hot
    path of every batch; K runs' ``[K, B, C]`` flattened to ``[K B, C]`` and back)."""
    if logits.ndim == 2:
        return F.cross_entropy(logits, labels, reduction="none", label_smoothing=label_smoothing)
    flat = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), reduction="none", label_smoothing=label_smoothing)
    return flat.view(labels.shape)


def batch_loss(per_sample: torch.Tensor, weights: torch.Tensor | None, denom: int | torch.Tensor) -> torch.Tensor:
    """The scalar a batch backpropagates: ``sum_i w_i l_i / denom`` (``denom``: the rows that reach the loss,
    an int, or ``[K]`` per run for ``[K, B]`` losses, whose runs' terms are summed: each run's gradient is its
    own). ``weights`` ``None``: all 1."""
    weighted = per_sample * weights if weights is not None else per_sample
    if per_sample.ndim == 1:
        return weighted.sum() / denom
    return (weighted.sum(-1) / denom).sum()


def epoch_means(losses: Sequence[torch.Tensor], correct: Sequence[torch.Tensor]) -> list[tuple[float, float]]:
    """``(mean loss, accuracy in [0, 1])`` of each run's trained rows, in one host sync; ``(nan, nan)`` for a
    run that trained nothing."""
    nonempty = [i for i, lo in enumerate(losses) if lo.numel()]
    pairs = [torch.stack([losses[i].mean(), correct[i].float().mean()]) for i in nonempty]
    values = iter(torch.stack(pairs).tolist() if pairs else [])
    nan = float("nan")
    return [tuple(next(values)) if lo.numel() else (nan, nan) for lo in losses]


def update_scores(
    table: ScoreTable,
    num_train: int,
    epochs: Sequence[int],
    indices: Sequence[torch.Tensor],
    losses: Sequence[torch.Tensor],
    correct: Sequence[torch.Tensor],
    mixed: Sequence[torch.Tensor] | None,
) -> None:
    """Record K runs' epochs in ``table`` (``K * num_train`` samples, run ``k`` at rows ``[k N, (k + 1) N)``;
    ``K = 1``: a run's own table) in one update: run ``k`` trained ``indices[k]`` in its epoch ``epochs[k]`` with
    ``losses[k]`` and ``correct[k]``; ``mixed[k]`` marks mix-up rows, whose loss is not the sample's own
    (``None``: the epoch mixed nothing)."""
    runs = [k for k, i in enumerate(indices) if i.numel()]
    if not runs:
        return
    rows = indices[0] if len(indices) == 1 else torch.cat([indices[k] + k * num_train for k in runs])
    same = len({epochs[k] for k in runs}) == 1
    epoch: int | torch.Tensor = epochs[runs[0]]
    if not same:
        dev = rows.device
        epoch = torch.cat([torch.full((indices[k].numel(),), epochs[k], dtype=torch.int64, device=dev) for k in runs])

    def cat(parts: Sequence[torch.Tensor]) -> torch.Tensor:
        return parts[0] if len(parts) == 1 else torch.cat([parts[k] for k in runs])

    valid = ~cat(mixed) if mixed is not None else None
    table.update(rows, cat(losses), cat(correct), epoch, valid=valid)


def close_epoch(
    meter: ComputeMeter,
    plan: EpochPlan,
    passes: PassCounts,
    *,
    epoch: int,
    num_train: int,
    indices: torch.Tensor,
    losses: torch.Tensor,
    correct: torch.Tensor,
    mixed: torch.Tensor,
    means: tuple[float, float],
    lr: float,
    wall_time: float,
    scored: tuple[torch.Tensor, torch.Tensor] | None = None,
    extra: dict | None = None,
) -> EpochResult:
    """Charge ``passes`` to ``meter`` and return the epoch's :class:`EpochResult` (``indices`` ``[M]`` the rows
    that reached the loss, of ``num_train``; ``means``: :func:`epoch_means`' pair; ``lr``: the rate after the
    epoch; ``scored``: the plan's ``score_after`` samples and their losses)."""
    flops = meter.charge(passes)
    m = int(indices.numel())
    return EpochResult(
        epoch=epoch,
        indices=indices,
        losses=losses,
        correct=correct,
        mixed=mixed,
        passes=passes,
        flops=flops,
        flops_fraction=flops / meter.full_epoch_flops,
        kept_fraction=m / num_train,
        planned_fraction=int(plan.indices.numel()) / num_train,
        claimed_prune_ratio=float(plan.claimed_prune_ratio),
        train_loss=means[0],
        train_accuracy=means[1],
        lr=lr,
        wall_time=wall_time,
        scored_indices=scored[0] if scored is not None else None,
        scored_losses=scored[1] if scored is not None else None,
        extra=dict(extra or {}),
    )
