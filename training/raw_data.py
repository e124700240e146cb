"""What every data source shares: the preset dataset names, the ``torchvision:`` prefix, the error type, the
un-split tensors (:class:`RawData`) and their in-memory cache."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["DATASETS", "RAW_CACHE", "TORCHVISION_PREFIX", "DatasetMissingError", "RawData"]

DATASETS = ("synthetic", "fashion_mnist", "mnist", "cifar10", "cifar100")
TORCHVISION_PREFIX = "torchvision:"


class DatasetMissingError(ValueError, RuntimeError):
    """The dataset files are not usable under the data root (missing, failing their checksum, or the root is
    missing / not writable) and could not be downloaded. A ``ValueError`` (the CLI prints it as one line and
    exits 2) and, as before, a ``RuntimeError``."""


@dataclass
class RawData:
    """Un-split tensors on the CPU. ``x_test`` None: no test split (one is carved); ``x_val`` None: no
    validation split (one is carved per seed). ``scale``: ``"none"`` (inputs are final), ``"stats"`` (uint8
    images: scale to [0, 1] and standardise with the seed's training split)."""

    x_pool: torch.Tensor
    y_pool: torch.Tensor
    x_test: torch.Tensor | None
    y_test: torch.Tensor | None
    num_classes: int
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None
    scale: str = "none"
    augment: bool = False


# Raw (un-split) tensors per source are cached in memory: envs reset many times.
RAW_CACHE: dict[tuple, RawData] = {}
