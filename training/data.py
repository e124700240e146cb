"""Datasets as device-resident tensors with fixed, seeded train / validation / test splits.

Real datasets (``fashion_mnist``, ``mnist``, ``cifar10``, ``cifar100``) are read through torchvision's
dataset classes from the data root (``PRUNEGYM_DATA`` or the ``root`` argument); ``synthetic`` is generated
in code from the seed. Images are stored normalized, shape ``[N, C, H, W]`` float32; synthetic features are
``[N, D]``; labels are ``[N]`` int64. Everything lives on the training device: the hot loop only indexes.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .seeding import numpy_generator, torch_generator

__all__ = [
    "DATASETS",
    "DataSplits",
    "DatasetMissingError",
    "data_root",
    "load_splits",
    "make_synthetic",
    "split_indices",
]

DATASETS = ("synthetic", "fashion_mnist", "mnist", "cifar10", "cifar100")

# Per-channel mean / std of the training sets (the values used throughout the literature).
_NORMALIZATION = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_TV_CLASS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}
_LAYOUT = {
    "fashion_mnist": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz",
    "mnist": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz",
    "cifar10": "cifar-10-python.tar.gz (or the extracted cifar-10-batches-py/)",
    "cifar100": "cifar-100-python.tar.gz (or the extracted cifar-100-python/)",
}


class DatasetMissingError(RuntimeError):
    """The dataset files are not under the data root and could not be downloaded."""


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


# Raw (un-split) tensors per (dataset, root) are cached in memory: envs reset many times.
_RAW_CACHE: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]] = {}


def _extract_idx_archives(cls, root: Path) -> None:
    """Extract ``<Class>/raw/*.gz`` archives (if intact) beside themselves, without the network.

    torchvision's MNIST-family classes read the extracted idx files and only extract archives inside
    ``download()``, so with ``download=False`` the documented archive-only layout would not load.
    """
    import gzip
    import shutil

    from torchvision.datasets.utils import check_integrity

    raw = root / cls.__name__ / "raw"
    for filename, md5 in cls.resources:
        gz = raw / os.path.basename(filename)
        if not (raw / gz.stem).is_file() and check_integrity(str(gz), md5):
            tmp = raw / f".{gz.stem}.{os.getpid()}.part"  # write then rename: concurrent readers never see half a file
            with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, raw / gz.stem)


def _load_torchvision(name: str, root: Path, download: bool):
    import torchvision  # imported lazily: the synthetic task needs none of it

    cls = getattr(torchvision.datasets, _TV_CLASS[name])
    try:
        if name in ("fashion_mnist", "mnist"):
            _extract_idx_archives(cls, root)
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except Exception as exc:  # offline download failure, missing or corrupt files
        raise DatasetMissingError(
            f"dataset {name!r} could not be loaded from data root {str(root)!r} "
            f"({type(exc).__name__}: {exc}). Expected layout under the data root: {_LAYOUT[name]}. "
            "Set PRUNEGYM_DATA (or pass data_root=...) to a writable folder holding these files; "
            "downloading needs internet access."
        ) from exc

    def to_tensor(ds):
        data = ds.data
        x = torch.as_tensor(np.asarray(data))
        if x.ndim == 3:  # [N, H, W] grayscale
            x = x.unsqueeze(1)
        else:  # CIFAR: [N, H, W, C]
            x = x.permute(0, 3, 1, 2)
        y = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
        return x.contiguous(), y

    x_tr, y_tr = to_tensor(train)
    x_te, y_te = to_tensor(test)
    return x_tr, y_tr, x_te, y_te, len(train.classes)


def _normalize(x: torch.Tensor, name: str) -> torch.Tensor:
    mean, std = _NORMALIZATION[name]
    x = x.float().div_(255.0)
    m = torch.tensor(mean).view(1, -1, 1, 1)
    s = torch.tensor(std).view(1, -1, 1, 1)
    return (x - m) / s


def split_indices(
    seed: int,
    n_pool: int,
    n_test: int,
    val_size: int | float = 5000,
    train_size: int | None = None,
    test_size: int | None = None,
    name: str = "dataset",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The split of ``seed``: ``(train, val, test)`` int64 CPU index tensors, ``train`` and ``val`` into the
    pool of ``n_pool`` samples (the official training set), ``test`` into the ``n_test`` test samples (``None``:
    the whole test set in order). Rules as in :func:`load_splits`; ``name`` only labels errors."""
    n_val = int(round(val_size * n_pool)) if isinstance(val_size, float) and val_size < 1 else int(val_size)
    if not 0 < n_val < n_pool:
        raise ValueError(f"val_size={val_size!r} must leave samples for training (pool of {n_pool})")
    perm = torch.randperm(n_pool, generator=torch_generator(seed, "split"))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if train_size is not None:
        if not 0 < train_size <= train_idx.numel():
            raise ValueError(f"train_size={train_size!r} must be in [1, {train_idx.numel()}] for {name!r}")
        train_idx = train_idx[:train_size]
    test_idx = None
    if test_size is not None:
        if not 0 < test_size <= n_test:
            raise ValueError(f"test_size={test_size!r} must be in [1, {n_test}] for {name!r}")
        test_idx = torch.randperm(n_test, generator=torch_generator(seed, "test-subset"))[:test_size]
    return train_idx, val_idx, test_idx


def load_splits(
    name: str,
    seed: int,
    device: torch.device | str = "cpu",
    val_size: int | float = 5000,
    train_size: int | None = None,
    root: str | os.PathLike | None = None,
    download: bool = True,
    test_size: int | None = None,
) -> DataSplits:
    """Load ``name`` and split it with generators derived from ``seed``.

    The validation set is carved from the official training set (``val_size`` samples, or a fraction if a
    float < 1), the rest is the training set, optionally subsampled to ``train_size``. ``test_size``
    optionally subsamples the test set (for fast tests). ``synthetic`` makes 6,000 samples and splits
    them 4,000 / 1,000 / 1,000 unless sizes are given.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    device = torch.device(device)
    if name == "synthetic":
        x, y = make_synthetic(seed)
        x_test, y_test = x[5000:], y[5000:]
        x_pool, y_pool = x[:5000], y[:5000]
        num_classes = 8
        if isinstance(val_size, int) and val_size >= 5000:
            val_size = 1000  # the default meant for real data; the synthetic pool holds 5,000
    else:
        root_path = data_root(root)
        key = (name, str(root_path.resolve()))
        if key not in _RAW_CACHE:
            x_tr, y_tr, x_te, y_te, nc = _load_torchvision(name, root_path, download)
            _RAW_CACHE[key] = (_normalize(x_tr, name), y_tr, _normalize(x_te, name), y_te, nc)
        x_pool, y_pool, x_test, y_test, num_classes = _RAW_CACHE[key]

    train_idx, val_idx, test_idx = split_indices(seed, int(y_pool.shape[0]), int(y_test.shape[0]), val_size,
                                                 train_size, test_size, name)
    x_test, y_test = (x_test, y_test) if test_idx is None else (x_test[test_idx], y_test[test_idx])
    return DataSplits(
        name=name,
        x_train=x_pool[train_idx].to(device),
        y_train=y_pool[train_idx].to(device),
        x_val=x_pool[val_idx].to(device),
        y_val=y_pool[val_idx].to(device),
        x_test=x_test.to(device),
        y_test=y_test.to(device),
        num_classes=num_classes,
        augment=name in ("cifar10", "cifar100"),
    )


def num_batches(n: int, batch_size: int) -> int:
    """Batches in an epoch of ``n`` samples (the last one may be short)."""
    return math.ceil(n / batch_size)
