"""The streaming path: training data that does not fit on the device, fed through a ``DataLoader``.

:class:`StreamSplits` has the three batch methods of :class:`~prunegym.training.DataSplits`
(``train_batches``, ``index_batches``, ``split_batches``), so :class:`~prunegym.training.TrainingRun` runs the
same epoch loop, plans, weights, selectors, mix-up, score table and compute meter on it. Its ``DataLoader``
(``num_workers`` persistent workers, pinned memory on CUDA) has one batch sampler whose batches are set for
every pass: the plan's indices in the plan's order, ``batch_size`` rows per batch (the rank's share of each
under ``torch.distributed``), mix-up partners fetched in the same batch. Samples are used as the dataset
returns them (float32); labels are checked on the host, per batch, before they move; the per-sample losses
stay on the device. The host syncs once per epoch for the plan's indices (the loader needs Python ints).

:func:`~prunegym.training.loading.load_run_data` picks the path: ``RunConfig.streaming`` True or False, or None
for automatic (stream a registered source that holds a ``Dataset``; keep tensors resident).
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, TensorDataset

from .config import RunConfig
from .data import DataSplits, _val_count, carve_test, split_indices
from .regimes import RegimeMarks, apply_regime
from .sources import dataset_source, registered_datasets

__all__ = ["PlanBatchSampler", "StreamSplits", "uses_streaming"]


class PlanBatchSampler(Sampler[list[int]]):
    """A batch sampler whose batches (lists of dataset indices) are set before each pass."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(list(self.batches))

    def __len__(self) -> int:
        return len(self.batches)


@dataclass
class StreamSplits:
    """Train / validation / test positions into one map-style ``source`` (items ``(x, y)``).

    ``train``, ``val``, ``test``: int64 CPU indices into ``source``; training-set position ``i`` (what plans
    index) is sample ``train[i]`` of ``source``.
    """

    name: str
    source: Dataset
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    num_classes: int
    input_shape: tuple[int, ...]
    device: torch.device
    num_workers: int = 0
    augment: bool = False
    train_labels: torch.Tensor | None = None  # [N] labels of the training positions, where the source tells them
    regime: RegimeMarks | None = None  # what the run's data regime did (see prunegym.training.regimes)
    relabel: torch.Tensor | None = None  # [len(source)] label each item is trained on (-1: its own), for noise
    _loader: DataLoader | None = field(default=None, repr=False)
    _sampler: PlanBatchSampler = field(default_factory=PlanBatchSampler, repr=False)

    @property
    def num_train(self) -> int:
        return int(self.train.numel())

    @classmethod
    def from_tensors(cls, splits: DataSplits, device: torch.device, num_workers: int = 0) -> StreamSplits:
        """The same tensors (on the CPU) streamed: the splits, order and values of the resident path."""
        parts = [(splits.x_train, splits.y_train), (splits.x_val, splits.y_val), (splits.x_test, splits.y_test)]
        source: ConcatDataset[tuple[torch.Tensor, ...]] = ConcatDataset(
            [TensorDataset(x.cpu(), y.cpu()) for x, y in parts]
        )
        n = [int(y.shape[0]) for _, y in parts]
        pos = torch.arange(sum(n))
        return cls(
            splits.name,
            source,
            pos[: n[0]],
            pos[n[0] : n[0] + n[1]],
            pos[n[0] + n[1] :],
            splits.num_classes,
            splits.input_shape,
            torch.device(device),
            num_workers,
            splits.augment,
            splits.y_train.cpu(),
            splits.regime,
        )

    # -- the loader ----------------------------------------------------------------------------------------
    def _batches(self, batches: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` on the device for each index tensor of ``batches`` (an empty one gives empty tensors)."""
        if self._loader is None:
            w = self.num_workers
            self._loader = DataLoader(
                self.source,
                batch_sampler=self._sampler,
                num_workers=w,
                pin_memory=self.device.type == "cuda",
                persistent_workers=w > 0,
                generator=torch.Generator().manual_seed(0),
            )  # workers' seeds: not global
        self._sampler.batches = [b.tolist() for b in batches if b.numel()]
        it: Iterator[Any] = iter(self._loader) if self._sampler.batches else iter(())
        for b in batches:
            if not b.numel():
                yield (
                    torch.zeros((0, *self.input_shape), device=self.device),
                    torch.zeros(0, dtype=torch.int64, device=self.device),
                )
                continue
            x, y = next(it)
            y = torch.as_tensor(y)
            if self.relabel is not None:  # noisy labels of the run's regime
                own = self.relabel[b]
                y = torch.where(own >= 0, own, y.to(torch.int64))
            lo, hi = torch.aminmax(y)
            if int(lo) < 0 or int(hi) >= self.num_classes:  # a host tensor: no device sync
                raise ValueError(
                    f"dataset {self.name!r}: a batch has labels in [{int(lo)}, {int(hi)}], outside "
                    f"[0, {self.num_classes}); labels must be integers in [0, num_classes)"
                )
            yield (
                torch.as_tensor(x).to(self.device, torch.float32, non_blocking=True),
                y.to(self.device, torch.int64, non_blocking=True),
            )

    def train_batches(
        self, indices: torch.Tensor, partners: torch.Tensor | None, batch_size: int, shard=None
    ) -> Iterator[tuple]:
        """As :meth:`DataSplits.train_batches`: ``(x, y, x_partner, y_partner)`` per batch of plan rows."""
        idx = indices.cpu()  # the epoch's one host sync: the loader takes Python ints
        part = partners.cpu() if partners is not None else None
        rows, sizes = [], []
        for s in range(0, int(idx.numel()), batch_size):
            bi = idx[s : s + batch_size]
            pi = part[s : s + batch_size] if part is not None else None
            if shard is not None:
                bi = shard(bi)
                pi = shard(pi) if pi is not None else None
            rows.append(self.train[bi] if pi is None else torch.cat([self.train[bi], self.train[pi]]))
            sizes.append(int(bi.numel()))
        for (x, y), m in zip(self._batches(rows), sizes):
            if part is None:
                yield x, y, None, None
            else:
                yield x[:m], y[:m], x[m:], y[m:]

    def index_batches(self, indices: torch.Tensor, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` of training-set positions ``indices`` in batches of ``batch_size`` (the scoring pass)."""
        idx = self.train[indices.cpu()]
        yield from self._batches([idx[s : s + batch_size] for s in range(0, int(idx.numel()), batch_size)])

    def split_batches(self, split: str, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """``(x, y)`` of ``split`` (``"train"``, ``"val"``, ``"test"``) in order, in batches of ``batch_size``."""
        idx = getattr(self, split)
        yield from self._batches([idx[s : s + batch_size] for s in range(0, int(idx.numel()), batch_size)])


def _as_dataset(split) -> Dataset:
    return TensorDataset(*split) if isinstance(split, tuple) else split


def _len(ds: Dataset) -> int:
    """Length of a split's dataset (``dataset_source`` checked that every ``Dataset`` split has ``__len__``)."""
    return len(cast(Sized, ds))


def _from_source(config: RunConfig, device: torch.device) -> StreamSplits:
    """Splits of a registered source streamed from its datasets (tensor splits wrapped as ``TensorDataset``)."""
    src = dataset_source(config.dataset)
    parts = {k: _as_dataset(v) for k, v in src.splits.items()}
    names = [k for k in ("train", "val", "test") if k in parts]
    offsets, start = {}, 0
    for k in names:
        offsets[k] = start
        start += _len(parts[k])
    source: ConcatDataset[Any] = ConcatDataset([parts[k] for k in names])
    pool = torch.arange(_len(parts["train"]))
    if "test" in parts:
        test = offsets["test"] + torch.arange(_len(parts["test"]))
        test_size = config.test_size
    else:
        n_carve = config.test_size or (_len(parts["val"]) if "val" in parts else _val_count(config.val_size, len(pool)))
        pool, test = carve_test(len(pool), n_carve, config.dataset)
        test_size = None
    idx = split_indices(
        int(pool.numel()),
        config.seed,
        config.val_size,
        config.train_size,
        n_test=int(test.numel()),
        test_size=test_size,
        has_val="val" in parts,
        name=config.dataset,
    )
    val = offsets["val"] + torch.arange(_len(parts["val"])) if "val" in parts else pool[idx.val]
    labels = _targets(parts["train"])
    train, regime, relabel = pool[idx.train], None, None
    if labels is not None:
        val_labels = _targets(parts["val"]) if "val" in parts else labels[pool[idx.val]]
        if val_labels is None:
            raise ValueError(_NO_LABELS.format(name=config.dataset, split="val"))
        train_pos, y_train, y_val, regime = apply_regime(config, idx.train, labels[pool], val_labels, src.num_classes)
        train = pool[train_pos]
        relabel = torch.full((len(source),), -1, dtype=torch.int64)
        relabel[train] = y_train
        relabel[val] = y_val
        labels = y_train
    elif config.label_noise > 0 or config.imbalance > 1:
        raise ValueError(_NO_LABELS.format(name=config.dataset, split="train"))
    return StreamSplits(
        config.dataset,
        source,
        train,
        val,
        test[idx.test],
        src.num_classes,
        src.input_shape,
        device,
        config.num_workers,
        train_labels=labels,
        regime=regime,
        relabel=relabel if config.label_noise > 0 else None,
    )


_NO_LABELS = (
    "dataset {name!r}: its {split} Dataset tells no labels (no TensorDataset, .targets or .labels), which "
    "label_noise and imbalance need; give the Dataset a .targets attribute"
)


def _targets(ds: Dataset) -> torch.Tensor | None:
    """The labels ``[N]`` of a map-style dataset without reading its items: a ``TensorDataset``'s second tensor,
    else its ``targets`` or ``labels`` attribute; ``None`` when it has none."""
    if isinstance(ds, TensorDataset):
        return ds.tensors[1].to(torch.int64)
    targets = getattr(ds, "targets", None)
    targets = getattr(ds, "labels", None) if targets is None else targets
    return torch.as_tensor(targets).to(torch.int64).view(-1) if targets is not None else None


def uses_streaming(config: RunConfig) -> bool:
    """Whether ``config`` trains on the streaming path (see the module docstring)."""
    if config.streaming is not None:
        return bool(config.streaming)
    return config.dataset in registered_datasets() and not dataset_source(config.dataset).is_tensors
