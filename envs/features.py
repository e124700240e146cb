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
    "val_accuracy_rel": "validation accuracy / best validation accuracy so far (initial evaluation included), in "
                        "[0, 1]; 1 at a new best",
    "val_accuracy_trend": "least-squares slope of validation accuracy over the last 3 evaluations (the initial one "
                          "included), in accuracy per tenth of the epoch budget; 0 before the first step",
    "train_val_gap": "latest correctness of the training samples trained at least once, averaged (stale for "
                     "pruned ones), minus validation accuracy, in [-1, 1]; 0 before training",
    "score_age": "mean over samples of the epochs since each was last trained / epochs completed, in [0, 1] "
                 "(0 after a full-data epoch; a never-trained sample counts 1; 0 before training)",
    "loss_noise": "mean sqrt(ema_var) / (mean ema + mean sqrt(ema_var)) over samples with a recorded loss, in "
                  "[0, 1): how noisy the per-sample scores are (Raju's UCB spread relative to mu)",
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
    best_val_accuracy: float | None = None  # best validation accuracy so far (None: the current one)
    # (epochs completed, validation accuracy) of the last (up to) 3 evaluations, the initial one included
    val_history: tuple[tuple[int, float], ...] = ()

    def __post_init__(self) -> None:
        # Made at reset (0 epochs completed): the initial evaluation starts the history and is the best so far.
        if self.best_val_accuracy is None:
            self.best_val_accuracy = self.val_accuracy
        if not self.val_history:
            self.val_history = ((0, float(self.val_accuracy)),)

    def record_val(self, epoch: int) -> None:
        """Record the current ``val_accuracy`` (after ``epoch`` epochs completed) in the history of the last 3
        evaluations and the best so far; the env calls it once per step, after setting ``val_accuracy``."""
        acc = float(self.val_accuracy)
        self.val_history = (self.val_history + ((int(epoch), acc),))[-3:]
        if math.isfinite(acc):
            self.best_val_accuracy = max(float(self.best_val_accuracy), acc)


def _finite(v: float, default: float = 0.0) -> float:
    return v if math.isfinite(v) else default


def _log_loss(v: float) -> float:
    """ln of a mean loss, in [ln 1e-8, ...]; a non-finite (diverged) loss maps to +OBS_BOUND, not to 0 loss."""
    return math.log(max(v, 1e-8)) if math.isfinite(v) else OBS_BOUND


def _slope(points: tuple[tuple[int, float], ...]) -> float:
    """Least-squares slope of ``(x, y)`` points (0 with fewer than 2 distinct x)."""
    if len(points) < 2:
        return 0.0
    xm = sum(x for x, _ in points) / len(points)
    ym = sum(y for _, y in points) / len(points)
    sxx = sum((x - xm) ** 2 for x, _ in points)
    return sum((x - xm) * (y - ym) for x, y in points) / sxx if sxx > 0 else 0.0


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
    observed = s.observed.float()
    n_observed = observed.sum()
    spread = s.ema_var.clamp_min(0.0).sqrt()
    on_device = torch.stack([
        q[0], q[1], q[2], loss.std(correction=0), (loss < mean).float().mean(), kept_mean, pruned_mean,
        (s.forgetting > 0).float().mean(),
        n_observed, (s.last_correct.float() * observed).sum(), (s.ema * observed).sum(), (spread * observed).sum(),
        s.last_epoch.float().mean(),
    ]).tolist()  # the one host sync
    n_obs, n_correct, ema_sum, spread_sum, mean_last_epoch = on_device[8:13]
    used = run.meter.total_fraction
    cfg = run.config
    best = max(float(stats.best_val_accuracy if stats.best_val_accuracy is not None else 0.0), stats.val_accuracy)
    noise_den = ema_sum + spread_sum
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
        stats.val_accuracy / best if best > 0 else 1.0,
        _slope(stats.val_history) * run.epochs / 10.0,
        n_correct / n_obs - stats.val_accuracy if n_obs > 0 else 0.0,
        (run.epoch - 1 - mean_last_epoch) / run.epoch if run.epoch > 0 else 0.0,
        spread_sum / noise_den if noise_den > 0 else 0.0,
    ]
    obs = np.nan_to_num(np.asarray(values, dtype=np.float32), nan=0.0, posinf=OBS_BOUND, neginf=-OBS_BOUND)
    return np.clip(obs, -OBS_BOUND, OBS_BOUND)
