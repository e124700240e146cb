"""The configuration of one training run."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from .checks import check_fraction
from .data import allowed_datasets, check_val_size, is_dataset_name
from .learning_rate import SCHEDULES
from .models import allowed_models, is_model_name
from .regimes import check_regime
from .seeding import check_seed

__all__ = ["RunConfig", "OPTIMIZERS"]

OPTIMIZERS = ("sgd", "adamw")


@dataclass
class RunConfig:
    """Everything that defines a training run; the same config and seed give the same run on CPU.

    ``dataset``: a preset, ``"torchvision:NAME"`` or a name registered with ``register_dataset``
    (``dataset_kwargs``: extra constructor arguments of a torchvision class, e.g. ``{"split": "balanced"}``);
    ``model``: a preset, ``"torchvision:NAME"`` or a name registered with ``register_model`` (``model_kwargs``
    go to its builder). ``lr`` is the peak learning rate of ``lr_schedule``; ``pct_start`` the one-cycle
    warm-up share of training progress. ``val_size`` samples (an int, or a float fraction in (0, 1)) are
    carved from the official training set; ``train_size`` optionally subsamples what is left; ``test_size``
    optionally subsamples the test set (data without one: the size of the carved test set).
    ``model_split`` names the stage after which the model is split into shallow and deep parts (None: the
    model's default). ``ema_rate`` is the score table's EMA rate. ``device``: ``"cpu"``, ``"cuda"``,
    ``"cuda:1"`` or ``"auto"`` (CUDA when available). ``streaming``: feed the training data through a
    ``DataLoader`` with ``num_workers`` workers instead of indexing device-resident tensors (None: only for
    a registered ``Dataset`` that is not tensors; see :mod:`prunegym.training.streaming`). The data regime:
    ``label_noise`` in [0, 1) (the fraction of training labels corrupted, ``label_noise_kind`` ``"symmetric"`` or
    ``"pairflip"``; validation labels too unless ``clean_val``; test labels never) and ``imbalance`` >= 1 (a
    long-tailed training set; validation and test stay balanced); see :mod:`prunegym.training.regimes`.
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
    dataset_kwargs: dict = field(default_factory=dict)
    streaming: bool | None = None
    num_workers: int = 0
    label_noise: float = 0.0
    label_noise_kind: str = "symmetric"
    clean_val: bool = False
    imbalance: float = 1.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def choice(name, value, allowed):
            if value not in allowed:
                raise ValueError(f"{name}={value!r} is not allowed; allowed: {', '.join(allowed)}")

        if not is_dataset_name(self.dataset):
            raise ValueError(f"dataset={self.dataset!r} is not allowed; allowed: {allowed_datasets()}")
        if not is_model_name(self.model):
            raise ValueError(f"model={self.model!r} is not allowed; allowed: {allowed_models()}")
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
        check_fraction(self.ema_rate, "ema_rate")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing!r} must be in [0, 1)")
        if not 0.0 < self.pct_start < 1.0:
            raise ValueError(f"pct_start={self.pct_start!r} must be in (0, 1)")
        self.seed = check_seed(self.seed)  # an int (numpy ints too) in [0, 2**63)
        check_val_size(self.val_size)
        for name in ("model_kwargs", "dataset_kwargs"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name}={getattr(self, name)!r} must be a dict")
        if self.streaming not in (None, True, False):
            raise ValueError(f"streaming={self.streaming!r}; allowed: None (automatic), True, False")
        if not isinstance(self.num_workers, int) or isinstance(self.num_workers, bool) or self.num_workers < 0:
            raise ValueError(f"num_workers={self.num_workers!r} must be an int >= 0")
        check_regime(self.label_noise, self.label_noise_kind, self.clean_val, self.imbalance)

    def replace(self, **changes) -> RunConfig:
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
