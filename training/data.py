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
from .raw_data import DATASETS, RAW_CACHE, TORCHVISION_PREFIX, DatasetMissingError, RawData
from .seeding import numpy_generator, torch_generator
from .tv_datasets import load_torchvision

__all__ = [
    "DATASETS",
    "DataSplits",
    "DatasetMissingError",
    "SplitIndices",
    "check_val_size",
    "data_root",
    "load_splits",
    "make_synthetic",
    "split_indices",
]

# Per-channel mean / std of the training sets (the values used throughout the literature).
_NORMALIZATION = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_PRESET_CLASS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}


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


def _normalize(x: torch.Tensor, name: str) -> torch.Tensor:
    mean, std = _NORMALIZATION[name]
    x = x.float().div_(255.0)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x - m) / s


def _standardizer(x_train: torch.Tensor):
    """``f(x)``: uint8 ``x`` scaled to [0, 1] and standardised per channel (dim 1 of ``[N, C, H, W]``; one
    mean / std otherwise) with the exact statistics of ``x_train`` (from its value histogram, population std)."""
    flat = x_train.transpose(0, 1).reshape(x_train.shape[1], -1) if x_train.ndim == 4 else x_train.reshape(1, -1)
    values = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for row in flat:
        h = torch.bincount(row, minlength=256).double()
        mean = float((h * values).sum() / h.sum())
        means.append(mean)
        std = math.sqrt(float((h * (values - mean) ** 2).sum() / h.sum()))
        stds.append(std if std > 0 else 1.0)  # a constant channel is only centred
    shape = (1, -1, 1, 1) if x_train.ndim == 4 else (1,)
    mean_t, std_t = torch.tensor(means).view(shape), torch.tensor(stds).view(shape)
    return lambda t: (t.float().div_(255.0) - mean_t) / std_t


def _raw(name: str, root, download: bool, dataset_kwargs: dict | None) -> RawData:
    if name.startswith(TORCHVISION_PREFIX) or name in _PRESET_CLASS:
        cls_name = _PRESET_CLASS.get(name) or name[len(TORCHVISION_PREFIX) :]
        kwargs = dict(dataset_kwargs or {})
        preset = (
            name
            if name in _PRESET_CLASS
            else next((p for p, c in _PRESET_CLASS.items() if c == cls_name and not kwargs), None)
        )
        root_path = data_root(root)
        key: tuple = (preset or name, str(root_path.resolve()), repr(sorted(kwargs.items())))
        if key not in RAW_CACHE:
            x_tr, y_tr, x_te, y_te, nc = load_torchvision(cls_name, root_path, download, kwargs, name)
            if preset is not None:  # the presets' constants, normalised once for every seed
                RAW_CACHE[key] = RawData(
                    _normalize(x_tr, preset),
                    y_tr,
                    _normalize(x_te, preset),
                    y_te,
                    nc,
                    augment=preset in ("cifar10", "cifar100"),
                )
            else:
                scale = "stats" if x_tr.dtype == torch.uint8 else "none"
                RAW_CACHE[key] = RawData(x_tr, y_tr, x_te, y_te, nc, scale=scale)
        return RAW_CACHE[key]
    source = sources.dataset_source(name)
    key = ("registered", name, source.version)
    if key not in RAW_CACHE:
        RAW_CACHE[key] = sources.as_raw(source)
    return RAW_CACHE[key]


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


def load_splits(
    name: str,
    seed: int,
    device: torch.device | str = "cpu",
    val_size: int | float = 5000,
    train_size: int | None = None,
    root: str | os.PathLike | None = None,
    download: bool = True,
    test_size: int | None = None,
    dataset_kwargs: dict | None = None,
) -> DataSplits:
    """Load ``name`` and split it with generators derived from ``seed`` (see the module docstring).

    ``val_size``: a count, or a fraction in (0, 1) of the training pool. ``synthetic`` makes 6,000 samples
    and splits them 4,000 / 1,000 / 1,000 unless sizes are given. ``dataset_kwargs``: extra constructor
    arguments of a ``torchvision:`` class (e.g. ``{"split": "balanced"}`` for EMNIST).
    """
    if not is_dataset_name(name):
        raise ValueError(f"unknown dataset {name!r}; allowed: {allowed_datasets()}")
    check_val_size(val_size)
    device = torch.device(device)
    if name == "synthetic":
        x, y = make_synthetic(seed)
        raw = RawData(x[:5000], y[:5000], x[5000:], y[5000:], 8)
        if isinstance(val_size, int) and val_size >= 5000:
            val_size = 1000  # the default meant for real data; the synthetic pool holds 5,000
    else:
        raw = _raw(name, root, download, dataset_kwargs)
    x_pool, y_pool, x_test, y_test = raw.x_pool, raw.y_pool, raw.x_test, raw.y_test
    if x_test is None:  # no test split: carve one, the same for every seed
        if test_size is not None:
            n_carve = test_size
        else:  # as many as the validation set
            n_carve = int(raw.y_val.shape[0]) if raw.y_val is not None else _val_count(val_size, int(y_pool.shape[0]))
        pool_idx, test_idx = carve_test(int(y_pool.shape[0]), n_carve, name)
        x_test, y_test = x_pool[test_idx], y_pool[test_idx]
        x_pool, y_pool = x_pool[pool_idx], y_pool[pool_idx]
        test_size = None
    assert y_test is not None  # RawData's x_test and y_test are None together
    idx = split_indices(
        int(y_pool.shape[0]),
        seed,
        val_size,
        train_size,
        n_test=int(y_test.shape[0]),
        test_size=test_size,
        has_val=raw.x_val is not None,
        name=name,
    )
    x_train, y_train = x_pool[idx.train], y_pool[idx.train]
    if raw.x_val is not None:
        x_val, y_val = raw.x_val, raw.y_val
        assert y_val is not None  # RawData's x_val and y_val are None together
    else:
        x_val, y_val = x_pool[idx.val], y_pool[idx.val]
    x_test, y_test = (x_test, y_test) if test_size is None else (x_test[idx.test], y_test[idx.test])
    if raw.scale == "stats":
        f = _standardizer(x_train)
        x_train, x_val, x_test = f(x_train), f(x_val), f(x_test)
    return DataSplits(
        name=name,
        x_train=x_train.to(device),
        y_train=y_train.to(device),
        x_val=x_val.to(device),
        y_val=y_val.to(device),
        x_test=x_test.to(device),
        y_test=y_test.to(device),
        num_classes=raw.num_classes,
        augment=raw.augment,
    )


def num_batches(n: int, batch_size: int) -> int:
    """Batches in an epoch of ``n`` samples (the last one may be short)."""
    return math.ceil(n / batch_size)
