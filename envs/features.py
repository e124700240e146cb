"""Observation features as a table of objects: each :class:`Feature` has a name, a doc, a documented range and
a function of the step's :class:`FeatureContext`.

Everything is computed from the training run's state (score table, compute meter, last epoch, validation
metrics) with one host sync (:func:`device_stats`). Fixed policies read ``epoch_fraction`` to follow their
schedules. Scales: fractions in [0, 1], losses in nats (a few units: ln(num_classes) at chance), log-sizes
divided to about [0, 1.2]; every entry is finite and clipped to [-OBS_BOUND, OBS_BOUND] (NaN -> 0,
+-inf -> +-OBS_BOUND), so the observation always lies in the env's observation space, also after a diverged
epoch.

:data:`FEATURES` is the default table (its names are :data:`FEATURE_NAMES`); an env with a compute budget
appends :data:`BUDGET_FEATURES`. Adding a feature is one entry in a table here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from prunegym.training import ComputeBudget, RunState
from prunegym.training.batched_views import row_views

__all__ = [
    "BUDGET_FEATURES",
    "FEATURES",
    "FEATURE_DOCS",
    "FEATURE_NAMES",
    "OBS_BOUND",
    "DeviceStats",
    "Feature",
    "FeatureContext",
    "StepStats",
    "device_stats",
    "device_stats_rows",
    "features_for",
    "observe",
]

OBS_BOUND = 10.0  # every feature is clipped to [-OBS_BOUND, OBS_BOUND]; NaN -> 0, +-inf -> +-OBS_BOUND


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
            self.best_val_accuracy = max(float(self.best_val_accuracy or 0.0), acc)


@dataclass(frozen=True)
class DeviceStats:
    """The score-table statistics of one step, computed on the device and read with one host sync."""

    loss_q10: float
    loss_q50: float
    loss_q90: float
    loss_std: float
    frac_below_mean: float
    kept_loss_mean: float
    pruned_loss_mean: float
    forgetting_fraction: float
    n_observed: float
    n_correct: float
    ema_sum: float
    spread_sum: float
    mean_last_epoch: float


@torch.no_grad()
def device_stats_rows(store, k_runs: int, last_trained, sizes: list[int] | None = None) -> list[DeviceStats]:
    """:class:`DeviceStats` of the K runs of a score ``store`` (a :class:`ScoreTable` of ``K * N`` samples, run
    ``k`` at rows ``[k N, (k + 1) N)``; ``K = 1``: one run's table) with one host sync; ``last_trained[k]``: run
    ``k``'s kept samples of its last epoch (``None`` before training). ``sizes``: run ``k`` has only its first
    ``sizes[k]`` rows (training sets of different sizes): each run's statistics are then those of its own
    rows, as a single run's table gives them."""
    if sizes is not None and any(n != store.num_samples // k_runs for n in sizes):
        views = row_views(store, k_runs, sizes)
        values = torch.cat([_stat_values(views[k], 1, [t]) for k, t in enumerate(last_trained)])
        return [DeviceStats(*v) for v in values.tolist()]  # the one host sync
    return [DeviceStats(*v) for v in _stat_values(store, k_runs, last_trained).tolist()]  # the one host sync


def _stat_values(store, k_runs: int, last_trained) -> torch.Tensor:
    """The values of :func:`device_stats_rows`, ``[K, 13]`` on the store's device (no host sync)."""
    loss = store.loss.view(k_runs, -1)
    dev, n = loss.device, loss.shape[1]
    q = torch.quantile(loss, torch.tensor([0.1, 0.5, 0.9], device=dev), dim=1)  # [3, K]
    mean = loss.mean(1, keepdim=True)
    has = [t is not None and t.numel() > 0 for t in last_trained]
    kept_mask = torch.zeros(k_runs, n, dtype=torch.bool, device=dev)
    rows = [t.to(dev) + k * n for k, t in enumerate(last_trained) if t is not None and t.numel() > 0]
    if rows:
        kept_mask.view(-1)[torch.cat(rows)] = True
    n_kept = kept_mask.sum(1)
    kept_mean = (loss * kept_mask).sum(1) / n_kept.clamp(min=1)
    pruned_mean = (loss * ~kept_mask).sum(1) / (n - n_kept).clamp(min=1)
    if not all(has):  # a run before its first epoch: both means are 0
        has_kept, zero = torch.tensor(has, device=dev), torch.zeros(k_runs, device=dev)
        kept_mean, pruned_mean = torch.where(has_kept, kept_mean, zero), torch.where(has_kept, pruned_mean, zero)
    observed = store.observed.view(k_runs, -1).float()
    spread = store.ema_var.view(k_runs, -1).clamp_min(0.0).sqrt()
    return torch.stack(
        [
            q[0],
            q[1],
            q[2],
            loss.std(1, correction=0),
            (loss < mean).float().mean(1),
            kept_mean,
            pruned_mean,
            (store.forgetting.view(k_runs, -1) > 0).float().mean(1),
            observed.sum(1),
            (store.last_correct.view(k_runs, -1).float() * observed).sum(1),
            (store.ema.view(k_runs, -1) * observed).sum(1),
            (spread * observed).sum(1),
            store.last_epoch.view(k_runs, -1).float().mean(1),
        ],
        1,
    )


def device_stats(run: RunState, stats: StepStats) -> DeviceStats:
    """:class:`DeviceStats` of ``run``'s score table (``stats.last_trained`` marks the kept samples): the
    ``K = 1`` case of :func:`device_stats_rows`."""
    return device_stats_rows(run.scores, 1, [stats.last_trained])[0]


@dataclass(frozen=True)
class FeatureContext:
    """What a feature function reads: the run, the env's step memory, the device statistics and the episode's
    compute budget (a fraction of the full-data run's FLOPs, ``None`` without one)."""

    run: RunState
    stats: StepStats
    dev: DeviceStats
    budget: ComputeBudget | None = None


@dataclass(frozen=True)
class Feature:
    """One observation entry: ``fn(ctx)`` in the documented range ``[low, high]`` (before the clip)."""

    name: str
    doc: str
    low: float
    high: float
    fn: Callable[[FeatureContext], float]


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


def _val_accuracy_rel(c: FeatureContext) -> float:
    st = c.stats
    best = max(float(st.best_val_accuracy if st.best_val_accuracy is not None else 0.0), st.val_accuracy)
    return st.val_accuracy / best if best > 0 else 1.0


def _loss_noise(c: FeatureContext) -> float:
    den = c.dev.ema_sum + c.dev.spread_sum
    return c.dev.spread_sum / den if den > 0 else 0.0


def _log_train_size(c: FeatureContext) -> float:
    """ln of the training-set size before a long tail was cut from it, / 10: the size a long tail leaves
    would tell the imbalance, which the observation must not (issue 23)."""
    marks = getattr(c.run.data, "regime", None)
    n = max(c.run.num_train, marks.base_size) if marks is not None else c.run.num_train
    return math.log(n) / 10.0


def _budget_left(c: FeatureContext) -> float:
    if c.budget is None:
        return 1.0
    return c.budget.share_left(c.run.meter)


_INF = math.inf
FEATURES: tuple[Feature, ...] = (
    Feature("epoch_fraction", "epochs completed / epoch budget, in [0, 1]", 0, 1, lambda c: c.run.epoch / c.run.epochs),
    Feature(
        "compute_used",
        "training FLOPs so far / FLOPs of the full-data run",
        0,
        _INF,
        lambda c: c.run.meter.total_fraction,
    ),
    Feature("compute_remaining", "1 - compute_used", -_INF, 1, lambda c: 1.0 - c.run.meter.total_fraction),
    Feature(
        "last_kept_fraction",
        "samples that reached the loss last step / (training-set size x epochs in the step)",
        0,
        1,
        lambda c: c.stats.kept_fraction,
    ),
    Feature(
        "log_train_loss",
        "ln of last step's mean unweighted train loss (0 before training, 10 if non-finite)",
        math.log(1e-8),
        OBS_BOUND,
        lambda c: _log_loss(c.stats.train_loss) if c.run.epoch > 0 else 0.0,
    ),
    Feature(
        "loss_q10", "10% quantile of the score table's latest per-sample losses", 0, _INF, lambda c: c.dev.loss_q10
    ),
    Feature("loss_q50", "median of the latest per-sample losses", 0, _INF, lambda c: c.dev.loss_q50),
    Feature("loss_q90", "90% quantile of the latest per-sample losses", 0, _INF, lambda c: c.dev.loss_q90),
    Feature("loss_std", "standard deviation of the latest per-sample losses", 0, _INF, lambda c: c.dev.loss_std),
    Feature(
        "frac_below_mean",
        "fraction of samples whose latest loss is below the mean (InfoBatch's |D1| / N)",
        0,
        1,
        lambda c: c.dev.frac_below_mean,
    ),
    Feature(
        "kept_loss_mean",
        "mean latest loss of the samples trained in the last epoch",
        0,
        _INF,
        lambda c: c.dev.kept_loss_mean,
    ),
    Feature(
        "pruned_loss_mean",
        "mean latest (stale) loss of the samples not trained in the last epoch (0 if none)",
        0,
        _INF,
        lambda c: c.dev.pruned_loss_mean,
    ),
    Feature(
        "forgetting_fraction",
        "fraction of samples with at least one forgetting event (correct -> incorrect)",
        0,
        1,
        lambda c: c.dev.forgetting_fraction,
    ),
    Feature(
        "val_loss",
        "validation cross-entropy (10 if non-finite)",
        0,
        OBS_BOUND,
        lambda c: _finite(c.stats.val_loss, OBS_BOUND),
    ),
    Feature("val_accuracy", "validation accuracy in [0, 1]", 0, 1, lambda c: c.stats.val_accuracy),
    Feature(
        "val_loss_delta",
        "change of validation loss since the last step",
        -_INF,
        _INF,
        lambda c: _finite(c.stats.val_loss - c.stats.prev_val_loss),
    ),
    Feature(
        "val_accuracy_delta",
        "change of validation accuracy since the last step",
        -1,
        1,
        lambda c: c.stats.val_accuracy - c.stats.prev_val_accuracy,
    ),
    Feature("lr_fraction", "current learning rate / peak learning rate", 0, 1, lambda c: c.run.lr / c.run.config.lr),
    Feature("log_train_size", "ln(training-set size, before a long tail's cut) / 10", 0, _INF, _log_train_size),
    Feature(
        "log_num_classes",
        "ln(number of classes) / ln(1000)",
        0,
        _INF,
        lambda c: math.log(c.run.data.num_classes) / math.log(1000.0),
    ),
    Feature("log_param_count", "ln(parameter count) / 20", 0, _INF, lambda c: math.log(c.run.param_count) / 20.0),
    Feature(
        "val_accuracy_rel",
        "validation accuracy / best validation accuracy so far (initial evaluation "
        "included), in [0, 1]; 1 at a new best",
        0,
        1,
        _val_accuracy_rel,
    ),
    Feature(
        "val_accuracy_trend",
        "least-squares slope of validation accuracy over the last 3 evaluations (the "
        "initial one included), in accuracy per tenth of the epoch budget; 0 before the first step",
        -_INF,
        _INF,
        lambda c: _slope(c.stats.val_history) * c.run.epochs / 10.0,
    ),
    Feature(
        "train_val_gap",
        "latest correctness of the training samples trained at least once, averaged (stale for "
        "pruned ones), minus validation accuracy, in [-1, 1]; 0 before training",
        -1,
        1,
        lambda c: c.dev.n_correct / c.dev.n_observed - c.stats.val_accuracy if c.dev.n_observed > 0 else 0.0,
    ),
    Feature(
        "score_age",
        "mean over samples of the epochs since each was last trained / epochs completed, in [0, 1] "
        "(0 after a full-data epoch; a never-trained sample counts 1; 0 before training)",
        0,
        1,
        lambda c: (c.run.epoch - 1 - c.dev.mean_last_epoch) / c.run.epoch if c.run.epoch > 0 else 0.0,
    ),
    Feature(
        "loss_noise",
        "mean sqrt(ema_var) / (mean ema + mean sqrt(ema_var)) over samples with a recorded loss, in "
        "[0, 1): how noisy the per-sample scores are (Raju's UCB spread relative to mu)",
        0,
        1,
        _loss_noise,
    ),
)
BUDGET_FEATURES: tuple[Feature, ...] = (
    Feature(
        "compute_budget",
        "the episode's compute budget: a fraction in (0, 1] of the full-data run's training FLOPs (1 without a budget)",
        0,
        1,
        lambda c: c.budget.fraction if c.budget is not None else 1.0,
    ),
    Feature(
        "budget_left", "share of the budget not yet spent, in [0, 1] (1 at reset, 0 when spent)", 0, 1, _budget_left
    ),
)
FEATURE_DOCS: dict[str, str] = {f.name: f.doc for f in FEATURES}
FEATURE_NAMES: tuple[str, ...] = tuple(FEATURE_DOCS)
_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES + BUDGET_FEATURES}


def features_for(names: Sequence[str] | None = None, budget: bool = False) -> tuple[Feature, ...]:
    """The feature table of an env: ``names`` (any of :data:`FEATURES` and :data:`BUDGET_FEATURES`, in that
    order), or by default :data:`FEATURES`, followed by :data:`BUDGET_FEATURES` when ``budget``."""
    if names is None:
        return FEATURES + (BUDGET_FEATURES if budget else ())
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ValueError(f"unknown feature(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(_BY_NAME)}")
    if len(set(names)) != len(names):
        raise ValueError(f"features={list(names)!r} names a feature twice")
    return tuple(_BY_NAME[n] for n in names)


def observe(ctx: FeatureContext, features: Sequence[Feature] = FEATURES) -> np.ndarray:
    """The observation ``[len(features)]`` float32: each feature's value, finite and clipped to
    [-OBS_BOUND, OBS_BOUND]."""
    obs = np.nan_to_num(
        np.asarray([f.fn(ctx) for f in features], dtype=np.float32), nan=0.0, posinf=OBS_BOUND, neginf=-OBS_BOUND
    )
    return np.clip(obs, -OBS_BOUND, OBS_BOUND)
