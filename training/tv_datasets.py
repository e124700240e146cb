"""torchvision classification datasets by class name, read from the data root without surprises.

:func:`load_torchvision` takes any class of ``torchvision.datasets`` that keeps its images in memory
(``.data`` plus ``.targets`` or ``.labels``: MNIST, FashionMNIST, KMNIST, EMNIST, QMNIST, CIFAR10, CIFAR100,
SVHN, STL10, USPS, SEMEION, ...) and returns uint8 (or float) images ``[N, C, H, W]`` and int64 labels ``[N]``
of its training and test splits. The train / test choice is the class's ``train=True / False`` argument, or
``split="train" / "test"`` (SVHN, STL10); a class with neither has no test split (``None``: one is carved).
Other constructor arguments come from ``dataset_kwargs`` (EMNIST needs ``split=``).

In this order, so that a problem is named before anything is downloaded or created:

1. intact local idx archives (``<Class>/raw/*.gz``) are extracted beside themselves (torchvision only does
   that inside ``download()``), then the class is built with ``download=False``;
2. if that fails, every local archive the class declares (``resources``, ``url`` / ``md5``, ``filename`` /
   ``tgz_md5``, ``split_list``) is checked against torchvision's published md5: a file that fails is a
   :class:`~prunegym.training.DatasetMissingError` naming it and the expected md5, with no download;
3. a data root that is not a folder, or not writable, is an error naming the path (nothing is written);
4. only then, with ``download=True``, torchvision's own download runs; if it fails (offline), every file and
   folder it created under the root is removed and the error is one line (the reason, the expected layout,
   ``PRUNEGYM_DATA``).
"""

from __future__ import annotations

import gzip
import inspect
import os
import shutil
from pathlib import Path

import numpy as np
import torch
import torchvision  # imported lazily: the synthetic task needs none of it
from torchvision.datasets.utils import calculate_md5, check_integrity

from .raw_data import DatasetMissingError

__all__ = ["archives", "expected_layout", "load_torchvision"]

_NHWC = {"CIFAR10", "CIFAR100"}  # .data is [N, H, W, C]; every other 4-D layout is [N, C, H, W]
_HINT = (
    "Set PRUNEGYM_DATA (or pass data_root=...) to a writable folder holding these files; downloading "
    "needs internet access."
)


def _raw_folder(cls, root: Path) -> Path:
    return root / cls.__name__ / "raw"


def archives(cls, root: Path) -> list[tuple[Path, str]]:
    """``(path, md5)`` of every archive or data file ``cls`` declares with a checksum, where it would lie
    under ``root`` (present or not)."""
    out: list[tuple[Path, str]] = []
    res = getattr(cls, "resources", None)
    if isinstance(res, (list, tuple)):
        out += [(_raw_folder(cls, root) / os.path.basename(n), md5) for n, md5 in res]
    if isinstance(getattr(cls, "url", None), str) and isinstance(getattr(cls, "md5", None), str):
        out.append((_raw_folder(cls, root) / os.path.basename(cls.url), cls.md5))  # EMNIST's gzip.zip
    if isinstance(getattr(cls, "filename", None), str) and isinstance(getattr(cls, "tgz_md5", None), str):
        out.append((root / cls.filename, cls.tgz_md5))  # CIFAR, STL10
    split_list = getattr(cls, "split_list", None)
    if isinstance(split_list, dict):
        for entry in split_list.values():
            if len(entry) == 3:
                out.append((root / entry[1], entry[2]))  # SVHN, USPS: (url, filename, md5)
    return out


_LAYOUT = {
    "FashionMNIST": "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz",
    "MNIST": "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz",
    "KMNIST": "KMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz",
    "CIFAR10": "cifar-10-python.tar.gz (or the extracted cifar-10-batches-py/)",
    "CIFAR100": "cifar-100-python.tar.gz (or the extracted cifar-100-python/)",
}


def expected_layout(cls, root: Path) -> str:
    """The files ``cls`` reads, relative to the data root, for error messages."""
    if cls.__name__ in _LAYOUT:
        return _LAYOUT[cls.__name__]
    files = [str(p.relative_to(root)) for p, _ in archives(cls, root)]
    base = getattr(cls, "base_folder", None)
    if files:
        return ", ".join(files) + (f" (or the extracted {base}/)" if isinstance(base, str) else "")
    return f"the files torchvision.datasets.{cls.__name__} reads (see its documentation)"


def _md5(path: Path) -> str:

    return calculate_md5(str(path))


def _check_archives(cls, root: Path, name: str) -> None:
    """Raise naming the first local archive whose md5 differs from torchvision's published one."""
    for path, md5 in archives(cls, root):
        if path.is_file():
            got = _md5(path)
            if got != md5:
                raise DatasetMissingError(
                    f"{str(path)!r} failed its check: md5 {got}, expected {md5} (torchvision.datasets."
                    f"{cls.__name__}'s published checksum); the file is truncated or not the official one. "
                    f"Delete it (it is then downloaded again with download=True) or replace it with the "
                    f"official archive; expected layout under the data root (PRUNEGYM_DATA or data_root=): "
                    f"{expected_layout(cls, root)}"
                )


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


def _extract_idx_archives(cls, root: Path) -> None:
    """Extract ``<Class>/raw/*.gz`` archives (if intact) beside themselves, without the network.

    torchvision's MNIST-family classes read the extracted idx files and only extract archives inside
    ``download()``, so with ``download=False`` the documented archive-only layout would not load.
    """

    res = getattr(cls, "resources", None)
    raw = _raw_folder(cls, root)
    if not isinstance(res, (list, tuple)) or not raw.is_dir() or not _writable(raw):
        return
    for filename, md5 in res:
        gz = raw / os.path.basename(filename)
        if gz.suffix == ".gz" and not (raw / gz.stem).is_file() and check_integrity(str(gz), md5):
            tmp = raw / f".{gz.stem}.{os.getpid()}.part"  # write then rename: concurrent readers never see half a file
            with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(tmp, raw / gz.stem)


def _split_kwargs(cls, kwargs: dict, name: str) -> tuple[dict, dict | None]:
    """Constructor arguments of the training and test splits (test None: the class has no test split)."""
    params = inspect.signature(cls.__init__).parameters
    inherited = any(
        "train" in inspect.signature(c.__init__).parameters for c in cls.__mro__ if "__init__" in vars(c)
    )  # EMNIST passes train= on to MNIST through **kwargs
    if "train" in params or inherited:
        return {**kwargs, "train": True}, {**kwargs, "train": False}
    if "split" in params:
        if "split" in kwargs:
            raise ValueError(
                f"dataset {name!r}: split= chooses the train / test split and is set by prunegym; "
                "remove it from dataset_kwargs"
            )
        return {**kwargs, "split": "train"}, {**kwargs, "split": "test"}
    return dict(kwargs), None


def _build(cls, root: Path, kw: dict, download: bool, name: str):
    try:
        return cls(str(root), download=download, **kw)
    except ImportError as exc:
        raise ValueError(
            f"dataset {name!r}: torchvision.datasets.{cls.__name__} needs the package "
            f"{exc.name or exc}; install it (pip install {exc.name or '...'})"
        ) from None
    except TypeError as exc:
        need = getattr(cls, "splits", None)
        hint = f" (EMNIST-like: dataset_kwargs={{'split': ...}}, allowed: {', '.join(need)})" if need else ""
        raise ValueError(
            f"dataset {name!r}: torchvision.datasets.{cls.__name__}({', '.join(kw)}) failed: {exc}{hint}"
        ) from exc


def _snapshot(cls, root: Path) -> dict[Path, set[str] | None]:
    """Entries of the folders a download writes into (None: the folder does not exist yet)."""
    dirs = [root, root / cls.__name__, _raw_folder(cls, root), root / cls.__name__ / "processed"]
    base = getattr(cls, "base_folder", None)
    if isinstance(base, str):
        dirs.append(root / base)
    return {d: set(os.listdir(d)) if d.is_dir() else None for d in dirs}


def _remove_created(cls, root: Path, before: dict[Path, set[str] | None]) -> None:
    """Delete what appeared since :func:`_snapshot` in the folders that existed then (new folders whole); in
    the root itself only the entries ``cls`` writes (a concurrent writer's other files stay)."""
    owned = {cls.__name__, str(getattr(cls, "base_folder", ""))}
    owned |= {p.relative_to(root).parts[0] for p, _ in archives(cls, root)}
    for d, entries in before.items():
        if entries is None or not d.is_dir():
            continue
        new = set(os.listdir(d)) - entries
        for entry in new & owned if d == root else new:
            p = d / entry
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)


def _first_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {' '.join(lines)[:300]}" if lines else type(exc).__name__


def _topmost_missing(root: Path) -> Path | None:
    """The highest ancestor of ``root`` (or ``root``) that does not exist."""
    top = None
    for p in [root, *root.parents]:
        if p.exists():
            break
        top = p
    return top


def _open_splits(cls, root: Path, download: bool, kwargs: dict, name: str):
    train_kw, test_kw = _split_kwargs(cls, kwargs, name)
    layout = expected_layout(cls, root)
    if root.is_dir():
        _extract_idx_archives(cls, root)
        try:
            return _build(cls, root, train_kw, False, name), (
                _build(cls, root, test_kw, False, name) if test_kw is not None else None
            )
        except ValueError:
            raise
        except Exception as exc:  # not there (or not all there): check what is there, then maybe download
            first_failure = exc
        _check_archives(cls, root, name)
        if not _writable(root):
            raise DatasetMissingError(
                f"dataset {name!r} is not complete under data root {str(root)!r} ({_first_line(first_failure)}) "
                f"and the root is not writable (torchvision extracts and downloads into it). Expected layout "
                f"under the data root: {layout}. {_HINT}"
            )
    elif root.exists():
        raise DatasetMissingError(
            f"data root {str(root)!r} is not a folder. Expected a folder holding {layout}. {_HINT}"
        )
    if not download:
        why = "does not exist" if not root.exists() else "does not hold it (download=False)"
        raise DatasetMissingError(
            f"dataset {name!r}: data root {str(root)!r} {why}. Expected layout under the data root: {layout}. {_HINT}"
        )
    top = _topmost_missing(root)
    before = _snapshot(cls, root) if top is None else None
    try:
        train = _build(cls, root, train_kw, True, name)
        test = _build(cls, root, test_kw, True, name) if test_kw is not None else None
        return train, test
    except ValueError:
        raise
    except Exception as exc:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)  # the root did not exist: remove all that was made
        elif before is not None:
            _remove_created(cls, root, before)
        state = "does not exist" if top is not None else "does not hold it"
        raise DatasetMissingError(
            f"dataset {name!r}: data root {str(root)!r} {state} and downloading it failed "
            f"({_first_line(exc)}); nothing was left under the root. Expected layout under the data root: "
            f"{layout}. {_HINT}"
        ) from None


def _images(ds, cls_name: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(ds.data))
    if x.ndim == 3:  # [N, H, W] grayscale
        return x.unsqueeze(1).contiguous()
    if x.ndim == 4:
        return (x.permute(0, 3, 1, 2) if cls_name in _NHWC else x).contiguous()
    raise ValueError(
        f"torchvision.datasets.{cls_name}.data has shape {tuple(x.shape)}; expected [N, H, W], "
        "[N, H, W, C] or [N, C, H, W] images"
    )


def _labels(ds, cls_name: str) -> torch.Tensor:
    for attr in ("targets", "labels"):
        t = getattr(ds, attr, None)
        if t is not None:
            y = torch.as_tensor(np.asarray(t))
            if y.ndim == 2:  # QMNIST without compat: the class is the first column
                y = y[:, 0]
            return y.to(torch.int64)
    raise ValueError(f"torchvision.datasets.{cls_name} has no .targets or .labels")


def load_torchvision(cls_name: str, root: Path, download: bool, kwargs: dict | None = None, name: str | None = None):
    """``(x_train, y_train, x_test, y_test, num_classes)`` of ``torchvision.datasets.<cls_name>`` under
    ``root`` (see the module docstring); ``x_test`` / ``y_test`` are None for a class without a test split.
    ``name``: the dataset's name in messages (default ``torchvision:<cls_name>``)."""

    name = name or f"torchvision:{cls_name}"
    cls = getattr(torchvision.datasets, cls_name, None)
    if not (inspect.isclass(cls) and issubclass(cls, torchvision.datasets.VisionDataset)):
        known = sorted(n for n in torchvision.datasets.__all__ if n[0].isupper())
        raise ValueError(
            f"unknown dataset {name!r}: torchvision.datasets has no dataset class {cls_name!r}; "
            f"allowed: torchvision:<one of {', '.join(known)}> (classes keeping images in memory)"
        )
    train, test = _open_splits(cls, Path(root), download, dict(kwargs or {}), name)
    if getattr(train, "data", None) is None:
        raise ValueError(
            f"dataset {name!r} keeps its images as files (no .data array), so it cannot be held "
            "as tensors; wrap it with a transform to fixed-size tensors and register it: "
            "register_dataset(name, {'train': ..., 'test': ...})"
        )
    x_tr, y_tr = _images(train, cls_name), _labels(train, cls_name)
    x_te, y_te = (_images(test, cls_name), _labels(test, cls_name)) if test is not None else (None, None)
    classes = getattr(train, "classes", None)
    top = int(max(int(y_tr.max()), int(y_te.max()) if y_te is not None else 0)) + 1
    num_classes = len(classes) if classes else top
    if int(y_tr.min()) < 0 or top > num_classes:
        raise ValueError(
            f"dataset {name!r} has labels outside [0, {num_classes}) (unlabelled samples?); "
            "choose a labelled split with dataset_kwargs"
        )
    return x_tr, y_tr, x_te, y_te, num_classes
