"""The data of K runs of one task: one device-resident pool of samples and per-run index maps into it.

Run ``k`` sees exactly the train / validation / test split that :func:`~prunegym.training.load_splits` gives
its seed, but the samples are stored once: ``pool_x[train[k, i]]`` is run ``k``'s training sample ``i``. Real
datasets share one pool (the official training set followed by the test set) whatever the seed; datasets
generated from the seed (``synthetic``, and any dataset not known to be seed-independent) hold each run's
own samples, concatenated, because their samples differ between seeds; so do runs with a data regime (noisy
labels, a long tail: :mod:`prunegym.training.regimes`), whose labels and training sets are their own. Their
training sets may differ in size (a long tail is cut from each seed's split): each run then has room for the
training set before the cut (``N``, the same for every run), uses its first ``sizes[k]`` positions, and the
rest are padding (zero inputs, label 0) that no plan, score or statistic reads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import RunConfig
from .data import DataSplits, split_indices
from .loading import load_splits
from .regimes import RegimeMarks

__all__ = ["BatchedData", "RunData", "load_batched_data", "reload_run"]

# Datasets whose samples do not depend on the run seed (only their split does): one shared pool.
SHARED_POOL_DATASETS = ("fashion_mnist", "mnist", "cifar10", "cifar100")


@dataclass
class BatchedData:
    """One pool and the index maps of K runs, all on one device.

    ``x`` ``[P, ...]`` float32 inputs and ``y`` ``[P]`` int64 labels of the pool; ``train`` ``[K, N]``,
    ``val`` ``[K, V]``, ``test`` ``[K, T]`` int64 pool positions of each run's splits, in the order
    :func:`~prunegym.training.load_splits` gives them. ``augment``: CIFAR augmentation of training batches.
    ``where`` (shared pools only): ``[P_train]`` pool position of each official training sample.
    ``regimes``: each run's :class:`~prunegym.training.regimes.RegimeMarks` (its own pool rows only).
    ``sizes``: each run's training-set size ``N_k <= N`` where they differ (a long tail; ``None``: all ``N``);
    run ``k``'s training samples are ``train[k, :N_k]``.
    """

    name: str
    x: torch.Tensor
    y: torch.Tensor
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    num_classes: int
    augment: bool = False
    where: torch.Tensor | None = None
    regimes: list[RegimeMarks | None] | None = None
    sizes: list[int] | None = None

    @property
    def num_runs(self) -> int:
        return int(self.train.shape[0])

    @property
    def num_train(self) -> int:
        """``N``: each run's room for training samples (every run's size unless ``sizes`` says otherwise)."""
        return int(self.train.shape[1])

    def train_size(self, k: int) -> int:
        """Run ``k``'s training-set size ``N_k`` (its samples are ``train[k, :N_k]``)."""
        return self.sizes[k] if self.sizes is not None else self.num_train

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. ``(1, 28, 28)`` or ``(32,)``."""
        return tuple(self.x.shape[1:])

    def split(self, k: int) -> DataSplits:
        """Run ``k``'s splits as a :class:`DataSplits` (a copy, gathered from the pool)."""
        train = self.train[k, : self.train_size(k)]
        return DataSplits(
            self.name,
            self.x[train],
            self.y[train],
            self.x[self.val[k]],
            self.y[self.val[k]],
            self.x[self.test[k]],
            self.y[self.test[k]],
            self.num_classes,
            self.augment,
            self.regime(k),
        )

    def regime(self, k: int) -> RegimeMarks | None:
        """Run ``k``'s regime marks (``None`` for a shared pool, which has no regime)."""
        return self.regimes[k] if self.regimes is not None else None


class RunData:
    """Run ``k``'s view of a :class:`BatchedData` with the attributes of :class:`DataSplits`; the ``x_*`` /
    ``y_*`` tensors are gathered from the pool on each access (copies: read them outside hot loops)."""

    def __init__(self, data: BatchedData, k: int):
        self._data, self._k = data, int(k)
        self.name, self.num_classes, self.augment = data.name, data.num_classes, data.augment

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._data.input_shape

    @property
    def num_train(self) -> int:
        return self._data.train_size(self._k)

    @property
    def regime(self) -> RegimeMarks | None:
        return self._data.regime(self._k)

    def _pos(self, split: str) -> torch.Tensor:
        pos = getattr(self._data, split)[self._k]
        return pos[: self.num_train] if split == "train" else pos

    def _x(self, split: str) -> torch.Tensor:
        return self._data.x[self._pos(split)]

    def _y(self, split: str) -> torch.Tensor:
        return self._data.y[self._pos(split)]

    x_train = property(lambda self: self._x("train"))
    y_train = property(lambda self: self._y("train"))
    x_val = property(lambda self: self._x("val"))
    y_val = property(lambda self: self._y("val"))
    x_test = property(lambda self: self._x("test"))
    y_test = property(lambda self: self._y("test"))


def has_regime(config: RunConfig) -> bool:
    """Whether ``config`` asks for a data regime (noisy labels or a long tail)."""
    return config.label_noise > 0.0 or config.imbalance > 1.0


def load_batched_data(configs: list[RunConfig], device: torch.device, per_run: bool = False) -> BatchedData:
    """The pool and index maps of the runs of ``configs`` (one per run, the same task; see the module
    docstring); ``per_run``: each run's own samples even for a seed-independent dataset (runs whose regime may
    change at a reset)."""
    c, seeds = configs[0], [cfg.seed for cfg in configs]
    own = per_run or c.dataset not in SHARED_POOL_DATASETS or any(has_regime(cfg) for cfg in configs)
    if own:  # each run's own samples, concatenated (training sets padded to the room n)
        splits = [load_splits(cfg, "cpu") for cfg in configs]
        sizes = [s.num_train for s in splits]
        s0 = splits[0]
        n, v, t = max(_room(s) for s in splits), int(s0.y_val.shape[0]), int(s0.y_test.shape[0])
        x = torch.cat([torch.cat([_padded(s.x_train, n), s.x_val, s.x_test]) for s in splits]).to(device)
        y = torch.cat([torch.cat([_padded(s.y_train, n), s.y_val, s.y_test]) for s in splits]).to(device)
        per = n + v + t
        rows = torch.arange(len(seeds), device=device).view(-1, 1) * per
        return BatchedData(
            c.dataset,
            x,
            y,
            rows + torch.arange(n, device=device),
            rows + n + torch.arange(v, device=device),
            rows + n + v + torch.arange(t, device=device),
            s0.num_classes,
            s0.augment,
            regimes=[s.regime.to(device) if s.regime else None for s in splits],
            sizes=sizes if any(m != n for m in sizes) else None,
        )
    # One shared pool: the first seed's full split (train_size / test_size unset), laid out as
    # [its train | its val | the whole test set]; ``where[j]`` = pool position of official training sample j.
    base = load_splits(c.replace(seed=seeds[0], train_size=None, test_size=None), "cpu")
    n_train0, n_val = base.num_train, int(base.y_val.shape[0])
    n_pool, n_test = n_train0 + n_val, int(base.y_test.shape[0])
    first = split_indices(n_pool, seeds[0], n_val, n_test=n_test, name=c.dataset)
    train0, val0 = first.train, first.val
    where = torch.empty(n_pool, dtype=torch.int64)
    where[train0] = torch.arange(n_train0)
    where[val0] = torch.arange(n_train0, n_pool)
    maps: dict[str, list[torch.Tensor]] = {"train": [], "val": [], "test": []}
    for s in seeds:
        sp = split_indices(n_pool, s, n_val, c.train_size, n_test=n_test, test_size=c.test_size, name=c.dataset)
        maps["train"].append(where[sp.train])
        maps["val"].append(where[sp.val])
        maps["test"].append(n_pool + sp.test)
    x = torch.cat([base.x_train, base.x_val, base.x_test]).to(device)
    y = torch.cat([base.y_train, base.y_val, base.y_test]).to(device)
    train, val, test = (torch.stack(maps[k]).to(device) for k in ("train", "val", "test"))
    return BatchedData(c.dataset, x, y, train, val, test, base.num_classes, base.augment, where.to(device))


def reload_run(data: BatchedData, config: RunConfig, k: int) -> None:
    """Give run ``k`` of ``data`` the splits of ``config`` (its seed and regime) in place (the other runs are
    untouched): a run's own samples are written over run ``k``'s rows of the pool; in a shared pool only row
    ``k`` of the index maps changes."""
    c, dev, seed = config, data.x.device, config.seed
    if data.where is None:  # run k's own samples, at rows [k * per, (k + 1) * per) of the pool
        s, n = load_splits(c, "cpu"), data.num_train
        if s.num_train > n:
            raise ValueError(f"seed {seed} gives {s.num_train} training samples; run {k} has room for {n}")
        x = torch.cat([_padded(s.x_train, n), s.x_val, s.x_test])
        rows = torch.cat([data.train[k], data.val[k], data.test[k]])
        if x.shape[0] != rows.numel():
            raise ValueError(f"seed {seed} gives {x.shape[0]} samples, run {k} holds {rows.numel()}")
        data.x[rows] = x.to(dev)
        data.y[rows] = torch.cat([_padded(s.y_train, n), s.y_val, s.y_test]).to(dev)
        if data.regimes is not None:
            data.regimes[k] = s.regime.to(dev) if s.regime else None
        if s.num_train != data.train_size(k):
            data.sizes = [data.train_size(j) for j in range(data.num_runs)]
        if data.sizes is not None:
            data.sizes[k] = s.num_train
        return
    if has_regime(c):
        raise ValueError("a run with a data regime needs its own pool rows; build the batch with it from the start")
    n_pool = int(data.where.numel())
    n_test = int(data.x.shape[0]) - n_pool
    sp = split_indices(
        n_pool, seed, int(data.val.shape[1]), c.train_size, n_test=n_test, test_size=c.test_size, name=c.dataset
    )
    where = data.where.cpu()
    data.train[k] = where[sp.train].to(dev)
    data.val[k] = where[sp.val].to(dev)
    data.test[k] = (n_pool + sp.test).to(dev)


def _room(s: DataSplits) -> int:
    """Training positions a run of ``s`` needs room for: its size before a long tail was cut (its size without)."""
    return max(s.num_train, s.regime.base_size if s.regime is not None else 0)


def _padded(a: torch.Tensor, n: int) -> torch.Tensor:
    """``a`` ``[M, ...]`` followed by zeros up to ``n`` rows (``a`` itself when ``M == n``)."""
    m = int(a.shape[0])
    return a if m == n else torch.cat([a, a.new_zeros(n - m, *a.shape[1:])])
