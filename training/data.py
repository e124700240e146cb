"""Datasets as device-resident tensors with fixed, seeded train / validation / test splits.

A dataset name is one of:

* a preset, :data:`DATASETS`: ``synthetic`` (generated in code from the seed) or ``fashion_mnist``, ``mnist``,
  ``cifar10``, ``cifar100`` (torchvision's classes, normalised with the literature's per-channel constants);
* ``"torchvision:NAME"``: any torchvision classification dataset class that holds its images in memory
  (``KMNIST``, ``EMNIST``, ``SVHN``, ``STL10``, ``USPS``, ...; see :mod:`prunegym.training.tv_datasets`);
* a name given to :func:`~prunegym.training.sources.register_dataset` (the user's tensors or ``Dataset``).

Files are read from the data root (``PRUNEGYM_DATA`` or the ``root`` argument). Images are stored normalised,
``[N, C, H, W]`` float32; features ``[N, D]``; labels ``[N]`` int64. uint8 images of ``torchvision:`` and
registered data are scaled to [0, 1] and standardised per channel with the mean / std of *that seed's
training split* (so nothing of the validation or test set leaks into the inputs); the presets keep their
constants; float inputs of registered data are used as given.

Splits (:func:`split_indices`): the validation set is carved from the training pool with the seed's ``split``
stream (unless the data bring their own); ``train_size`` subsamples what is left; ``test_size`` subsamples the
test set with the ``test-subset`` stream. Data without a test split get a test set carved once, independently
of the seed (the same for every seed, like an official test set), of ``test_size`` samples (default: as many
as the validation set).
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import sources
from .raw_data import DATASETS, TORCHVISION_PREFIX, DatasetMissingError
from .regimes import RegimeMarks
from .seeding import numpy_generator, torch_generator

__all__ = [
    "DATASETS",
    "DataSplits",
    "DatasetMissingError",
    "SplitIndices",
    "check_val_size",
    "data_root",
    "make_synthetic",
    "split_indices",
]


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$PRUNEGYM_DATA``, else ``~/.cache/prunegym/data``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("PRUNEGYM_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "prunegym" / "data"


@dataclass
class DataSplits:
    """Train / validation / test tensors on one device.

    ``x_*``: float32 inputs (``[N, C, H, W]`` images or ``[N, D]`` features); ``y_*``: int64 labels ``[N]``.
    ``augment``: whether training batches get CIFAR augmentation (random crop with padding 4, flip).
    ``regime``: what the run's data regime did to the training set (its noisy labels and true classes; see
    :mod:`prunegym.training.regimes`), ``None`` for splits made without one.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    augment: bool = False
    regime: RegimeMarks | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 28, 28)`` or ``(32,)``."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_train(self) -> int:
        return int(self.y_train.shape[0])

    # -- batches for the engine (the streaming path has the same three methods) ----------------------------
    def train_batches(
        self, indices: torch.Tensor, partners: torch.Tensor | None, batch_size: int, shard=None
    ) -> Iterator[tuple]:
        """Per batch of ``batch_size`` plan rows: ``(x, y, x_partner, y_partner)`` of the rows ``shard`` keeps
        (all without one); the partner pair is ``(None, None)`` without mix-up partners."""
        for s in range(0, int(indices.numel()), batch_size):
            bi = indices[s : s + batch_size]
            pi = partners[s : s + batch_size] if partners is not None else None
            if shard is not None:
                bi = shard(bi)
                pi = shard(pi) if pi is not None else None
            xp, yp = (self.x_train[pi], self.y_train[pi]) if pi is not None else (None, None)
            yield self.x_train[bi], self.y_train[bi], xp, yp

    def index_batches(self, indices: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` of the training samples ``indices`` in batches of ``batch_size`` (the scoring pass)."""
        for s in range(0, int(indices.numel()), batch_size):
            bi = indices[s : s + batch_size]
            yield self.x_train[bi], self.y_train[bi]

    def split_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` of ``split`` (``"train"``, ``"val"``, ``"test"``) in order, in batches of ``batch_size``."""
        x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
        for s in range(0, int(y.shape[0]), batch_size):
            yield x[s : s + batch_size], y[s : s + batch_size]


@dataclass(frozen=True)
class SplitIndices:
    """A seed's split: ``train`` and ``val`` index the training pool, ``test`` the test set (int64, CPU)."""

    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


def check_val_size(val_size: int | float) -> None:
    """``val_size`` is an int count >= 1 (an integral float such as ``5e3`` counts) or a float fraction in
    (0, 1); anything else raises a one-line ``ValueError``."""
    ok = isinstance(val_size, numbers.Real) and not isinstance(val_size, bool) and math.isfinite(val_size)
    if ok and isinstance(val_size, numbers.Integral):
        ok = val_size >= 1
    elif ok:
        ok = 0.0 < val_size < 1.0 or (val_size >= 1 and float(val_size).is_integer())
    if not ok:
        raise ValueError(
            f"val_size={val_size!r} is not allowed; allowed: an int count >= 1 of validation "
            "samples, or a float fraction in (0, 1) of the training pool"
        )


def _val_count(val_size, n_pool: int) -> int:
    check_val_size(val_size)
    if isinstance(val_size, float) and val_size < 1:
        return int(round(val_size * n_pool))
    return int(val_size)


def split_indices(
    n_pool: int,
    seed: int,
    val_size: int | float = 5000,
    train_size: int | None = None,
    *,
    n_test: int,
    test_size: int | None = None,
    has_val: bool = False,
    name: str = "data",
) -> SplitIndices:
    """The train / validation / test indices of ``seed`` for a pool of ``n_pool`` training samples and a test
    set of ``n_test`` (see the module docstring). ``has_val``: the data bring their own validation set, so
    ``val`` is empty and the whole (shuffled) pool is the training set. Used by :func:`load_splits`."""
    perm = torch.randperm(n_pool, generator=torch_generator(seed, "split"))
    if has_val:
        val_idx, train_idx = perm[:0], perm
    else:
        n_val = _val_count(val_size, n_pool)
        if not 0 < n_val < n_pool:
            raise ValueError(f"val_size={val_size!r} must leave samples for training (pool of {n_pool})")
        val_idx, train_idx = perm[:n_val], perm[n_val:]
    if train_size is not None:
        if not 0 < train_size <= train_idx.numel():
            raise ValueError(f"train_size={train_size!r} must be in [1, {train_idx.numel()}] for {name!r}")
        train_idx = train_idx[:train_size]
    if test_size is not None:
        if not 0 < test_size <= n_test:
            raise ValueError(f"test_size={test_size!r} must be in [1, {n_test}] for {name!r}")
        test_idx = torch.randperm(n_test, generator=torch_generator(seed, "test-subset"))[:test_size]
    else:
        test_idx = torch.arange(n_test)
    return SplitIndices(train_idx, val_idx, test_idx)


def carve_test(n_total: int, n_test: int, name: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """``(pool, test)`` indices of data without a test split: ``n_test`` samples drawn once from a fixed
    stream (the same for every run seed), the rest is the training pool."""
    if not 0 < n_test < n_total:
        raise ValueError(f"test_size={n_test!r}: the test set carved from {name!r} must be in [1, {n_total - 1}]")
    perm = torch.randperm(n_total, generator=torch_generator(0, "test-carve"))
    return perm[n_test:], perm[:n_test]


def make_synthetic(
    seed: int,
    n_total: int = 6000,
    dim: int = 32,
    num_classes: int = 8,
    clusters_per_class: int = 3,
    label_noise: float = 0.05,
    imbalance: float = 0.6,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A classification task with heterogeneous sample difficulty, generated from ``seed``.

    Each class is a mixture of ``clusters_per_class`` Gaussian clusters of different spreads whose centres
    overlap with other classes' clusters; class frequencies decay geometrically (the rarest class has
    ``imbalance ** (num_classes - 1)`` times the samples of the most frequent, floored at 3%); a fraction
    ``label_noise`` of labels is replaced by a random class. Returns features ``[n_total, dim]`` float32 and
    labels ``[n_total]`` int64 on the CPU.
    """
    rng = numpy_generator(seed, "synthetic-data")
    freq = np.maximum(imbalance ** np.arange(num_classes), 0.03)
    freq = freq / freq.sum()
    counts = np.floor(freq * n_total).astype(int)
    counts[0] += n_total - counts.sum()
    # Centre spread 3.2 / sqrt(dim) per coordinate: classes overlap (an MLP reaches about 80% validation
    # accuracy in 10 epochs), so per-sample losses range from near 0 to well above log(num_classes).
    centres = rng.normal(0.0, 1.0, size=(num_classes, clusters_per_class, dim)) * (3.2 / np.sqrt(dim))
    spreads = rng.uniform(0.6, 1.8, size=(num_classes, clusters_per_class))
    xs, ys = [], []
    for c in range(num_classes):
        which = rng.integers(0, clusters_per_class, size=counts[c])
        x = centres[c, which] + rng.normal(size=(counts[c], dim)) * spreads[c, which, None]
        xs.append(x)
        ys.append(np.full(counts[c], c))
    x = np.concatenate(xs).astype(np.float32)
    y = np.concatenate(ys).astype(np.int64)
    noisy = rng.random(n_total) < label_noise
    y[noisy] = rng.integers(0, num_classes, size=int(noisy.sum()))
    order = rng.permutation(n_total)
    x = (x[order] - x.mean(0)) / x.std(0)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y[order])


def allowed_datasets() -> str:
    """The allowed dataset names, for error messages."""
    reg = sources.registered_datasets()
    return (
        ", ".join(DATASETS) + f", {TORCHVISION_PREFIX}<class name> (e.g. torchvision:KMNIST), or a name "
        "registered with register_dataset" + (f" (registered: {', '.join(reg)})" if reg else "")
    )


def is_dataset_name(name) -> bool:
    """Whether ``name`` names a preset, a ``torchvision:`` class or a registered dataset."""
    return isinstance(name, str) and (
        name in DATASETS
        or name in sources.registered_datasets()
        or (name.startswith(TORCHVISION_PREFIX) and len(name) > len(TORCHVISION_PREFIX))
    )


def num_batches(n: int, batch_size: int) -> int:
    """Batches in an epoch of ``n`` samples (the last one may be short)."""
    return math.ceil(n / batch_size)
