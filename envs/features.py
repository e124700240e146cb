"""Observation features: a flat float32 vector with named, finite, O(1)-scaled entries.

Everything is computed from the training run's state (score table, compute meter, last epoch, validation
metrics) with one host sync. Fixed policies read ``epoch_fraction`` to follow their schedules.
Scales: fractions in [0, 1], losses in nats (a few units: ln(num_classes) at chance), log-sizes divided to
about [0, 1.2]; every entry is finite and clipped to [-OBS_BOUND, OBS_BOUND] (NaN -> 0, +-inf -> +-OBS_BOUND),
so the observation always lies in the env's observation space, also after a diverged epoch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from prunegym.training import TrainingRun

__all__ = ["FEATURE_NAMES", "FEATURE_DOCS", "OBS_BOUND", "StepStats", "observe"]

OBS_BOUND = 10.0  # every feature is clipped to [-OBS_BOUND, OBS_BOUND]; NaN -> 0, +-inf -> +-OBS_BOUND

FEATURE_DOCS: dict[str, str] = {
    "epoch_fraction": "epochs completed / epoch budget, in [0, 1]",
    "compute_used": "training FLOPs so far / FLOPs of the full-data run",
    "compute_remaining": "1 - compute_used",
    "last_kept_fraction": "samples that reached the loss last step / (training-set size x epochs in the step)",
    "log_train_loss": "ln of last step's mean unweighted train loss (0 before training, 10 if non-finite)",
    "loss_q10": "10% quantile of the score table's latest per-sample losses",
    "loss_q50": "median of the latest per-sample losses",
    "loss_q90": "90% quantile of the latest per-sample losses",
    "loss_std": "standard deviation of the latest per-sample losses",
    "frac_below_mean": "fraction of samples whose latest loss is below the mean (InfoBatch's |D1| / N)",
    "kept_loss_mean": "mean latest loss of the samples trained in the last epoch",
    "pruned_loss_mean": "mean latest (stale) loss of the samples not trained in the last epoch (0 if none)",
    "forgetting_fraction": "fraction of samples with at least one forgetting event (correct -> incorrect)",
    "val_loss": "validation cross-entropy (10 if non-finite)",
    "val_accuracy": "validation accuracy in [0, 1]",
    "val_loss_delta": "change of validation loss since the last step",
    "val_accuracy_delta": "change of validation accuracy since the last step",
    "lr_fraction": "current learning rate / peak learning rate",
    "log_train_size": "ln(training-set size) / 10",
    "log_num_classes": "ln(number of classes) / ln(1000)",
    "log_param_count": "ln(parameter count) / 20",
}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_DOCS)


@dataclass
class StepStats:
    """What the env remembers between steps for the observation."""

    kept_fraction: float = 1.0
    train_loss: float = 0.0
    val_loss: float = 0.0
    val_accuracy: float = 0.0
    prev_val_loss: float = 0.0
    prev_val_accuracy: float = 0.0
    last_trained: torch.Tensor | None = None  # [M] int64 indices trained in the last epoch


def _finite(v: float, default: float = 0.0) -> float:
    return v if math.isfinite(v) else default


def _log_loss(v: float) -> float:
    """ln of a mean loss, in [ln 1e-8, ...]; a non-finite (diverged) loss maps to +OBS_BOUND, not to 0 loss."""
    return math.log(max(v, 1e-8)) if math.isfinite(v) else OBS_BOUND


def observe(run: TrainingRun, stats: StepStats) -> np.ndarray:
    """The observation vector ``[len(FEATURE_NAMES)]`` float32 for the run's current state."""
    s = run.scores
    loss = s.loss
    n = loss.numel()
    q = torch.quantile(loss, torch.tensor([0.1, 0.5, 0.9], device=loss.device))
    mean = loss.mean()
    if stats.last_trained is not None and stats.last_trained.numel() > 0:
        kept_mask = torch.zeros(n, dtype=torch.bool, device=loss.device)
        kept_mask[stats.last_trained] = True
        n_kept = kept_mask.sum()
        kept_mean = (loss * kept_mask).sum() / n_kept.clamp(min=1)
        pruned_mean = (loss * ~kept_mask).sum() / (n - n_kept).clamp(min=1)
    else:
        kept_mean = pruned_mean = torch.zeros((), device=loss.device)
    on_device = torch.stack([
        q[0], q[1], q[2], loss.std(correction=0), (loss < mean).float().mean(), kept_mean, pruned_mean,
        (s.forgetting > 0).float().mean(),
    ]).tolist()  # the one host sync
    used = run.meter.total_fraction
    cfg = run.config
    values = [
        run.epoch / run.epochs,
        used,
        1.0 - used,
        stats.kept_fraction,
        _log_loss(stats.train_loss) if run.epoch > 0 else 0.0,
        *on_device[:7],
        on_device[7],
        _finite(stats.val_loss, OBS_BOUND),
        stats.val_accuracy,
        _finite(stats.val_loss - stats.prev_val_loss),
        stats.val_accuracy - stats.prev_val_accuracy,
        run.lr / cfg.lr,
        math.log(run.num_train) / 10.0,
        math.log(run.data.num_classes) / math.log(1000.0),
        math.log(run.param_count) / 20.0,
    ]
    obs = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=OBS_BOUND, neginf=-OBS_BOUND)
    return np.clip(obs, -OBS_BOUND, OBS_BOUND)
