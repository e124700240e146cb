"""``examples/plain_loop.py``: the pruners in a user's own PyTorch loop (no env, no engine) train and prune."""

from __future__ import annotations

import importlib.util
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plain_loop.py"


pytestmark = pytest.mark.usefixtures("one_thread")


def load_example():
    spec = importlib.util.spec_from_file_location("plain_loop_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plain_loop_example_trains_and_prunes():
    example = load_example()
    torch.manual_seed(12345), np.random.seed(12345), random.seed(12345)  # a known state, not the one found
    states = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    out = example.main(n_train=1000, n_test=1000, epochs=4, batch_size=128, seed=0, verbose=False)
    assert torch.equal(torch.get_rng_state(), states[0]) and np.array_equal(np.random.get_state()[1], states[1])
    assert random.getstate() == states[2]
    # trained: well above the 0.25 of chance on 4 classes
    assert out["infobatch_accuracy"] > 0.5 and out["pfb_accuracy"] > 0.5
    # InfoBatch pruned epochs 1-2 (epoch 0: all scores equal; epoch 3 >= floor(0.875 * 4): annealing)
    kept = out["infobatch_kept"]
    assert kept[0] == 1.0 and kept[3] == 1.0 and all(0.5 < k < 1.0 for k in kept[1:3])
    # PFB: epochs 1-2 send floor(0.6 B) rows of each batch through the deep part
    pruned = 7 * math.floor(0.6 * 128) + math.floor(0.6 * 104)
    assert out["pfb_deep_share"] == pytest.approx((2 * 1000 + 2 * pruned) / 4000)
    assert example.main(n_train=1000, n_test=1000, epochs=4, seed=0, verbose=False) == out  # seeded
