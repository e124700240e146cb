"""Loading a run config's data: :func:`load_splits` (resident tensors with fixed, seeded splits) and
:func:`load_run_data` (resident, or streamed through a ``DataLoader``: :mod:`prunegym.training.streaming`).

Both take the :class:`~prunegym.training.RunConfig` whole, so every data field (``dataset``, ``data_root``,
``dataset_kwargs``, the split sizes, and whatever is added later) reaches every path that loads data: the run,
the batched engine (:mod:`prunegym.training.batched_data`) and the harness's pre-check. Names, split rules and
normalisation are described in :mod:`prunegym.training.data`.
"""

from __future__ import annotations

import math

import torch

from . import sources
from .config import RunConfig
from .data import (
    DataSplits,
    _val_count,
    allowed_datasets,
    carve_test,
    check_val_size,
    data_root,
    is_dataset_name,
    make_synthetic,
    split_indices,
)
from .raw_data import RAW_CACHE, TORCHVISION_PREFIX, RawData
from .regimes import apply_regime
from .sources import dataset_source, registered_datasets
from .streaming import StreamSplits, _from_source, uses_streaming
from .tv_datasets import load_torchvision

__all__ = ["load_run_data", "load_splits"]

# Per-channel mean / std of the training sets (the values used throughout the literature).
_NORMALIZATION = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_PRESET_CLASS = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "cifar10": "CIFAR10", "cifar100": "CIFAR100"}


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


def load_splits(config: RunConfig, device: torch.device | str = "cpu", *, download: bool = True) -> DataSplits:
    """Load ``config.dataset`` from ``config.data_root`` and split it with generators derived from
    ``config.seed`` (see the module docstring), on ``device``.

    Of the config it reads the data fields: ``val_size`` (a count, or a fraction in (0, 1) of the training
    pool), ``train_size``, ``test_size`` and ``dataset_kwargs`` (extra constructor arguments of a
    ``torchvision:`` class, e.g. ``{"split": "balanced"}`` for EMNIST, or what a registered source reads).
    ``synthetic`` makes 6,000 samples and splits them 4,000 / 1,000 / 1,000 unless sizes are given. The data
    regime (``label_noise``, ``imbalance``, ...) is applied to the drawn training and validation splits
    (:mod:`prunegym.training.regimes`) before the inputs are standardised.
    ``download=False``: fail instead of downloading a missing torchvision dataset.
    """
    name, seed, val_size = config.dataset, config.seed, config.val_size
    train_size, test_size = config.train_size, config.test_size
    root, dataset_kwargs = config.data_root, config.dataset_kwargs
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
    if raw.x_val is not None:
        x_val, y_val = raw.x_val, raw.y_val
        assert y_val is not None  # RawData's x_val and y_val are None together
    else:
        x_val, y_val = x_pool[idx.val], y_pool[idx.val]
    train_idx, y_train, y_val, marks = apply_regime(config, idx.train, y_pool, y_val, raw.num_classes)
    x_train = x_pool[train_idx]
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
        regime=marks.to(device),
    )


def load_run_data(config: RunConfig, device: torch.device) -> DataSplits | StreamSplits:
    """The data of ``config`` on ``device``: resident :class:`DataSplits`, or :class:`StreamSplits` (a registered
    ``Dataset``, or ``streaming=True``; see :func:`~prunegym.training.streaming.uses_streaming`)."""
    if not uses_streaming(config):
        return load_splits(config, device)
    if config.dataset in registered_datasets() and not dataset_source(config.dataset).is_tensors:
        return _from_source(config, device)
    return StreamSplits.from_tensors(load_splits(config, "cpu"), device, config.num_workers)
