"""Shared pytest fixtures.

``data_root``: a writable folder in torchvision's layout (``FashionMNIST/raw/*.gz``, ``MNIST/raw/*.gz``).
It is ``$PRUNEGYM_DATA`` when set; otherwise ``<repo>/../shared/datasets`` copied once per session into a
pytest temporary folder (torchvision extracts the archives beside themselves, so the root must be writable).
Tests that need real data are skipped, with the reason, when neither exists.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

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
