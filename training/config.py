"""The configuration of one training run."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from .data import DATASETS
from .models import MODELS
from .schedule import SCHEDULES

__all__ = ["RunConfig", "OPTIMIZERS"]

OPTIMIZERS = ("sgd", "adamw")


@dataclass
class RunConfig:
    """Everything that defines a training run; the same config and seed give the same run on CPU.

    ``lr`` is the peak learning rate of ``lr_schedule``; ``pct_start`` the one-cycle warm-up share of
    training progress. ``val_size`` samples (or a fraction < 1) are carved from the official training set;
    ``train_size`` optionally subsamples what is left; ``test_size`` optionally subsamples the test set.
    ``model_split`` names the stage after which the model is split into shallow and deep parts (None: the
    model's default). ``ema_rate`` is the score table's EMA rate. ``device``: ``"cpu"``, ``"cuda"``,
    ``"cuda:1"`` or ``"auto"`` (CUDA when available).
    """

    dataset: str = "synthetic"
    model: str = "mlp"
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    label_smoothing: float = 0.0
    lr_schedule: str = "onecycle"
    pct_start: float = 0.3
    device: str = "cpu"
    seed: int = 0
    train_size: int | None = None
    val_size: int | float = 5000
    test_size: int | None = None
    data_root: str | None = None
    model_split: str | None = None
    model_kwargs: dict = field(default_factory=dict)
    ema_rate: float = 0.2
    eval_batch_size: int = 256  # faster than 1024 on CPU; no effect on training

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def choice(name, value, allowed):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not allowed; allowed: {', '.join(allowed)}")

        choice("dataset", self.dataset, DATASETS)
        choice("model", self.model, MODELS)
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("lr_schedule", self.lr_schedule, SCHEDULES)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive int")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr={self.lr!r} must be a finite number > 0")
        for name in ("momentum", "weight_decay"):
            v = getattr(self, name)
            if not (v >= 0 and math.isfinite(v)):
                raise ValueError(f"{name}={v!r} must be a finite number >= 0")
        if not 0.0 < self.ema_rate <= 1.0:
            raise ValueError(f"ema_rate={self.ema_rate!r} must be in (0, 1]")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing!r} must be in [0, 1)")
        if not 0.0 < self.pct_start < 1.0:
            raise ValueError(f"pct_start={self.pct_start!r} must be in (0, 1)")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed={self.seed!r} must be an int")

    def replace(self, **changes) -> "RunConfig":
        """A copy with ``changes`` applied; unknown names raise ``ValueError`` listing the fields."""
        names = {f.name for f in fields(self)}
        bad = sorted(set(changes) - names)
        if bad:
            raise ValueError(f"unknown RunConfig field(s) {', '.join(bad)}; allowed: {', '.join(sorted(names))}")
        d = asdict(self)
        d.update(changes)
        return RunConfig(**d)

    def to_dict(self) -> dict:
        return asdict(self)
