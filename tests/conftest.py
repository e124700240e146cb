"""Shared pytest fixtures and helpers.

``data_root``: a writable folder in torchvision's layout (``FashionMNIST/raw/*.gz``, ``MNIST/raw/*.gz``).
It is ``$PRUNEGYM_DATA`` when set; otherwise ``<repo>/../shared/datasets`` copied once per session into a
pytest temporary folder (torchvision extracts the archives beside themselves, so the root must be writable).
Tests that need real data are skipped, with the reason, when neither exists.

:func:`run_pinned`: Python code in a fresh interpreter under a pinned CPU float path (one torch thread), for the
tests that compare with committed figures: those figures hold under the float path they were measured with, so
such a test passes on AVX2 and AVX-512 machines alike and still fails when the code changes the result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from torch.utils.data import Dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """The data root for real datasets (see the module docstring); skips the test if there is none."""
    env = os.environ.get("PRUNEGYM_DATA")
    if env:
        root = Path(env).expanduser()
        if not root.is_dir():
            pytest.skip(f"PRUNEGYM_DATA={env!r} is not a directory")
        return root
    if SHARED_DATASETS.is_dir():
        root = tmp_path_factory.mktemp("datasets")
        shutil.copytree(SHARED_DATASETS, root, dirs_exist_ok=True)
        return root
    pytest.skip(
        f"no real datasets: PRUNEGYM_DATA is unset and {str(SHARED_DATASETS)!r} does not exist; set PRUNEGYM_DATA "
        "to a writable folder holding FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz"
    )


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a module (restored after): small tensors run fastest so, above all on a
    loaded 2-core machine. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_CANNOT = 77  # exit status of a pinned interpreter whose CPU cannot run the float path asked for
_PRELUDE = """
import sys, torch
from prunegym.training import float_path
if float_path() != {want!r}:
    print(f"this CPU runs float path {{float_path()}}, not {want}", file=sys.stderr)
    sys.exit({cannot})
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
"""


def run_pinned(code: str, float_path: str = "avx2", timeout: float = 900) -> str:
    """Run ``code`` in a new interpreter under float path ``float_path`` (``prunegym.training.float_path_env``;
    one torch thread; the tests folder importable) and return its standard output; skip the test when this CPU
    cannot run that float path (a higher one than its best), fail it with the child's error otherwise."""
    from prunegym.training import float_path_env

    env = {**os.environ, **float_path_env(float_path), "OMP_NUM_THREADS": "1"}
    prelude = _PRELUDE.format(want=float_path.upper(), cannot=_CANNOT, tests=str(Path(__file__).parent))
    proc = subprocess.run(
        [sys.executable, "-c", prelude + code], env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode == _CANNOT:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, f"pinned run failed:\n{proc.stderr[-4000:]}"
    return proc.stdout


class ItemsDataset(Dataset):
    """A map-style dataset over tensors ``x`` ``[N, ...]`` and ``y`` ``[N]``, item by item, with no ``targets``
    (what a user's own dataset looks like to prunegym)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def splits(name: str, seed: int = 0, device: str = "cpu", *, root=None, download: bool = True, **fields):
    """``load_splits`` of the run config of dataset ``name``, seed ``seed`` and data ``fields`` (``val_size``,
    ``train_size``, ``test_size``, ``dataset_kwargs``), read from ``root`` (the config's ``data_root``)."""
    from prunegym.training import RunConfig, load_splits

    config = RunConfig(dataset=name, seed=seed, data_root=None if root is None else str(root), **fields)
    return load_splits(config, device, download=download)
