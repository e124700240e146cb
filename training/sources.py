"""The user's own data, registered under a name so that a :class:`~prunegym.training.RunConfig` (which stays
JSON-able: episode records, replay, results rows) can refer to it as ``dataset="<name>"``.

A source is ``{"train": split, "val": split, "test": split}`` (``val`` and ``test`` optional: carved from
``train`` with seeded splits, see :mod:`prunegym.training.data`), or one split alone (the training data).
A split is a pair ``(x, y)`` of tensors (or numpy arrays; ``x`` ``[N, ...]`` float, or uint8 images that are
scaled to [0, 1] and standardised per channel with the seed's training split; ``y`` ``[N]`` integer labels in
``[0, num_classes)``) or a map-style ``torch.utils.data.Dataset`` whose items are ``(x, y)`` with ``x`` a tensor
of a fixed shape (used as given) and ``y`` an int. Tensor sources train resident on the device; a source with
a ``Dataset`` streams through a ``DataLoader`` (:mod:`prunegym.training.streaming`) unless
``RunConfig.streaming=False`` loads it into memory.

Registration is per process: a replay (or a Ray worker) must import the module that registers the data.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from .raw_data import DATASETS, RAW_CACHE, TORCHVISION_PREFIX, RawData

__all__ = ["DataSource", "dataset_source", "register_dataset", "registered_datasets"]

Split = tuple[torch.Tensor, torch.Tensor] | Dataset
_SPLITS = ("train", "val", "test")
_SOURCES: dict[str, DataSource] = {}
_VERSIONS = itertools.count(1)


@dataclass
class DataSource:
    """A registered source: its splits (``"train"`` and optionally ``"val"``, ``"test"``), the number of
    classes, the shape of one sample and a version (a re-registration under the same name gets a new one,
    so no cache serves the old data)."""

    name: str
    splits: dict[str, Split]
    num_classes: int
    input_shape: tuple[int, ...]
    version: int

    @property
    def is_tensors(self) -> bool:
        """Whether every split is a pair of tensors (the resident path's default)."""
        return all(isinstance(s, tuple) for s in self.splits.values())


def registered_datasets() -> tuple[str, ...]:
    return tuple(_SOURCES)


def dataset_source(name: str) -> DataSource:
    """The source registered as ``name``; an unknown name raises a ``ValueError`` saying what is registered."""
    if name not in _SOURCES:
        reg = ", ".join(_SOURCES) or "none"
        raise ValueError(
            f"unknown dataset {name!r}; registered with register_dataset: {reg} (import the module "
            "that registers it, e.g. with --gym-packages MODULE)"
        )
    return _SOURCES[name]


def _tensor_pair(split: str, pair: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        raise ValueError(
            f"dataset {name!r}: split {split!r} must be a pair (x, y) of tensors or a map-style "
            f"Dataset, got {type(pair).__name__}"
        )
    x, y = (p if isinstance(p, torch.Tensor) else torch.as_tensor(np.asarray(p)) for p in pair)
    if x.ndim < 2:
        raise ValueError(
            f"dataset {name!r}: x of split {split!r} has shape {tuple(x.shape)}; expected [N, ...] "
            "with one sample per row (e.g. [N, D] features or [N, C, H, W] images)"
        )
    if not (x.is_floating_point() or x.dtype == torch.uint8):
        raise ValueError(
            f"dataset {name!r}: x of split {split!r} has dtype {x.dtype}; allowed: a floating "
            "point dtype, or uint8 images (scaled to [0, 1] and standardised)"
        )
    if y.ndim != 1 or y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise ValueError(
            f"dataset {name!r}: y of split {split!r} has shape {tuple(y.shape)} and dtype {y.dtype}; "
            "expected integer class labels of shape [N]"
        )
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"dataset {name!r}: x of split {split!r} has {x.shape[0]} samples but y has {y.shape[0]}; "
            "they must be the same length"
        )
    if x.shape[0] == 0:
        raise ValueError(f"dataset {name!r}: split {split!r} is empty")
    bad = x.numel() - int(torch.isfinite(x).sum()) if x.is_floating_point() else 0
    if bad:
        raise ValueError(
            f"dataset {name!r}: x of split {split!r} holds {bad} non-finite values (NaN or inf); every feature "
            "must be finite (a training run on them diverges)"
        )
    return x.detach().cpu().contiguous(), y.detach().cpu().to(torch.int64)


def _dataset_split(split: str, ds: Any, name: str) -> tuple[Dataset, tuple[int, ...], torch.Tensor | None]:
    if isinstance(ds, IterableDataset) or not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
        raise ValueError(
            f"dataset {name!r}: split {split!r} ({type(ds).__name__}) is not a map-style Dataset; "
            "a plan indexes samples, so it needs __getitem__ and __len__"
        )
    if len(ds) == 0:
        raise ValueError(f"dataset {name!r}: split {split!r} is empty")
    item = ds[0]
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        got = type(item).__name__ + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else "")
        raise ValueError(f"dataset {name!r}: items of split {split!r} must be pairs (x, y), got {got}")
    x = item[0] if isinstance(item[0], torch.Tensor) else torch.as_tensor(np.asarray(item[0]))
    targets = getattr(ds, "targets", None)
    targets = getattr(ds, "labels", None) if targets is None else targets
    y = torch.as_tensor(np.asarray(targets)).to(torch.int64) if targets is not None else None
    return ds, tuple(x.shape), y


def _label_range(split: str, y: torch.Tensor, num_classes: int, name: str) -> None:
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"dataset {name!r}: labels of split {split!r} span [{lo}, {hi}], outside [0, {num_classes}) "
            f"for num_classes={num_classes}; labels must be integers in [0, num_classes)"
        )


def _unseen_classes(labels: dict[str, torch.Tensor], name: str) -> None:
    """Refuse val / test labels of a class that no training sample has (when the training labels are known)."""
    if "train" not in labels:
        return
    seen = set(torch.unique(labels["train"]).tolist())
    for split in ("val", "test"):
        if split not in labels:
            continue
        unseen = sorted(set(torch.unique(labels[split]).tolist()) - seen)
        if unseen:
            shown = str(unseen[:10])[:-1] + (f", ...] ({len(unseen)} classes)" if len(unseen) > 10 else "]")
            raise ValueError(
                f"dataset {name!r}: labels of split {split!r} hold classes {shown} that no training sample has; every "
                "val / test class must appear in the training split"
            )


def _num_classes(name: str, splits: dict[str, Split], labels: dict[str, torch.Tensor], num_classes: int | None) -> int:
    """``num_classes`` if given, else the length of a split's ``.classes`` or the largest label + 1; checked to be
    an int >= 2."""
    if num_classes is None:
        classes = next((getattr(s, "classes", None) for s in splits.values() if hasattr(s, "classes")), None)
        if classes:
            num_classes = len(classes)
        elif "train" in labels:
            num_classes = max(int(y.max()) for y in labels.values()) + 1
        else:
            raise ValueError(
                f"dataset {name!r}: the training Dataset has no .classes, .targets or .labels; pass num_classes="
            )
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"dataset {name!r}: num_classes={num_classes!r} must be an int >= 2")
    return num_classes


def register_dataset(name: str, source: Any, *, num_classes: int | None = None) -> str:
    """Register ``source`` (see the module docstring) as dataset ``name``; returns ``name``.

    ``num_classes``: default ``max label + 1`` (tensor splits), ``len(dataset.classes)`` or the dataset's
    ``targets`` / ``labels``; a ``Dataset`` with none of these needs it. Every split is checked now: shapes,
    lengths, dtypes, the label range, NaN or inf features and val / test classes that no training sample has
    give a one-line ``ValueError`` naming the split and what is wrong. A ``Dataset`` split is not read whole:
    only its first item's shape is checked, its features are not checked for NaN or inf, and its labels (range,
    classes) only when it has ``targets`` or ``labels``.
    Registering a name again replaces the data (and every cache of the old data).
    """
    if not isinstance(name, str) or not name or name in DATASETS or name.startswith(TORCHVISION_PREFIX):
        raise ValueError(
            f"dataset name {name!r} is not allowed: use a non-empty string that is not a preset "
            f"({', '.join(DATASETS)}) and does not start with {TORCHVISION_PREFIX!r}"
        )
    if isinstance(source, dict):
        bad = sorted(set(source) - set(_SPLITS))
        if bad or "train" not in source:
            raise ValueError(f"dataset {name!r}: splits {sorted(source)}; allowed: 'train' (required), 'val', 'test'")
        raw = {k: source[k] for k in _SPLITS if source.get(k) is not None}
    else:
        raw = {"train": source}
    splits: dict[str, Split] = {}
    shapes, labels, kinds = {}, {}, set()
    for split, value in raw.items():
        if isinstance(value, Dataset) or (
            hasattr(value, "__getitem__") and hasattr(value, "__len__") and not isinstance(value, (tuple, list))
        ):
            ds, shapes[split], y = _dataset_split(split, value, name)
            splits[split] = ds
            kinds.add("dataset")
            if y is not None:
                labels[split] = y
        else:
            x, y = _tensor_pair(split, value, name)
            splits[split], shapes[split], labels[split] = (x, y), tuple(x.shape[1:]), y
            kinds.add("uint8" if x.dtype == torch.uint8 else "float")
    if len(set(shapes.values())) > 1:
        raise ValueError(
            f"dataset {name!r}: samples of the splits have different shapes "
            f"({', '.join(f'{k}: {v}' for k, v in shapes.items())}); they must all be the same"
        )
    if {"uint8", "float"} <= kinds:
        raise ValueError(f"dataset {name!r}: some splits hold uint8 images and others floats; use one kind")
    for split, y in labels.items():
        if int(y.min()) < 0:
            _label_range(split, y, num_classes if num_classes is not None else int(y.max()) + 1, name)
    num_classes = _num_classes(name, splits, labels, num_classes)
    for split, y in labels.items():
        _label_range(split, y, num_classes, name)
    _unseen_classes(labels, name)
    for key in [k for k in RAW_CACHE if k[:2] == ("registered", name)]:
        del RAW_CACHE[key]
    _SOURCES[name] = DataSource(name, splits, int(num_classes), shapes["train"], next(_VERSIONS))
    return name


def _materialise(ds: Dataset, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """All items of a map-style ``ds`` as ``(x [N, ...] float32, y [N] int64)`` (one pass, in order)."""

    xs, ys = [], []
    for x, y in DataLoader(ds, batch_size=batch_size, shuffle=False, generator=torch.Generator().manual_seed(0)):
        xs.append(torch.as_tensor(x).float())
        ys.append(torch.as_tensor(y).to(torch.int64))
    return torch.cat(xs), torch.cat(ys)


def as_raw(source: DataSource) -> RawData:
    """The source as un-split CPU tensors (a ``Dataset`` split is read once, in order)."""
    parts = {}
    for split, value in source.splits.items():
        x, y = value if isinstance(value, tuple) else _materialise(value)
        _label_range(split, y, source.num_classes, source.name)
        parts[split] = (x, y)
    x_tr, y_tr = parts["train"]
    x_te, y_te = parts.get("test", (None, None))
    x_va, y_va = parts.get("val", (None, None))
    scale = "stats" if x_tr.dtype == torch.uint8 else "none"
    if scale == "none":
        x_tr = x_tr.float()
        x_te, x_va = (t.float() if t is not None else None for t in (x_te, x_va))
    return RawData(x_tr, y_tr, x_te, y_te, source.num_classes, x_va, y_va, scale=scale)
