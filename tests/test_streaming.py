"""Issue 14 section 2: the streaming path (a map-style ``Dataset`` through a ``DataLoader`` with workers) gives the
resident path's kept sets, per-sample losses, pass counts and evaluations on the same data and seed, for an
epoch-level pruner (InfoBatch), mix-up (SwDPP) and an in-batch selector (PFB); and how the path is chosen."""

from __future__ import annotations

import pytest
import torch
from conftest import ItemsDataset

from prunegym.baselines import make_pruner
from prunegym.training import DataSplits, RunConfig, TrainingRun, register_dataset
from prunegym.training.streaming import StreamSplits, uses_streaming

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def image_sources():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1200, 1, 8, 8, generator=g)
    y = torch.randint(0, 4, (1200,), generator=g)
    register_dataset("s-tensors", {"train": (x[:1000], y[:1000]), "test": (x[1000:], y[1000:])})
    register_dataset(
        "s-dataset",
        {"train": ItemsDataset(x[:1000], y[:1000]), "test": ItemsDataset(x[1000:], y[1000:])},
        num_classes=4,
    )
    register_dataset("s-carved", ItemsDataset(x, y), num_classes=4)  # no test split: one is carved
    register_dataset("s-carved-t", (x, y))
    return x, y


def _episode(dataset, pruner, action, **cfg):
    config = RunConfig(dataset=dataset, model="cnn", epochs=3, batch_size=64, val_size=100, seed=1, **cfg)
    run = TrainingRun(config)
    p = make_pruner(pruner)
    p.reset(run.num_train, run.epochs, run.device, run.generator("pruner"))
    out = []
    while not run.done:
        plan = p.plan(run.epoch, run.scores, action)
        res = run.run_epoch(plan)
        p.update(res, run.scores)
        out.append(res)
    return run, out, run.evaluate("val"), run.evaluate("test"), run.score(torch.arange(50))


def _assert_same(a, b):
    run_a, res_a, val_a, test_a, score_a = a
    run_b, res_b, val_b, test_b, score_b = b
    for ra, rb in zip(res_a, res_b):
        assert torch.equal(ra.indices, rb.indices)  # the same kept sets, in the same order
        torch.testing.assert_close(ra.losses, rb.losses, rtol=1e-5, atol=1e-6)
        assert torch.equal(ra.mixed, rb.mixed) and ra.passes == rb.passes and ra.flops == rb.flops
    assert val_a.accuracy == pytest.approx(val_b.accuracy) and test_a.loss == pytest.approx(test_b.loss, rel=1e-5)
    torch.testing.assert_close(score_a, score_b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(run_a.scores.ema, run_b.scores.ema, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "pruner, action",
    [
        ("infobatch", {"prune_ratio": 0.5}),
        ("swdpp", {"prune_ratio": 0.3, "floor": 0.2, "mix_prob": 0.5}),
        ("pfb", {"prune_ratio": 0.4}),
    ],
)
def test_streaming_dataset_with_two_workers_equals_resident_tensors(image_sources, pruner, action):
    resident = _episode("s-tensors", pruner, action)
    streamed = _episode("s-dataset", pruner, action, num_workers=2)
    assert isinstance(resident[0].data, DataSplits) and isinstance(streamed[0].data, StreamSplits)
    if pruner != "pfb":
        assert resident[1][1].indices.numel() < 900  # it pruned
    _assert_same(resident, streamed)


def test_streaming_setting_on_tensors_and_resident_setting_on_a_dataset(image_sources):
    base = _episode("s-tensors", "infobatch", {"prune_ratio": 0.5})
    forced = _episode("s-tensors", "infobatch", {"prune_ratio": 0.5}, streaming=True)
    assert isinstance(forced[0].data, StreamSplits)
    _assert_same(base, forced)
    loaded = _episode("s-dataset", "infobatch", {"prune_ratio": 0.5}, streaming=False)  # read into memory once
    assert isinstance(loaded[0].data, DataSplits)
    _assert_same(base, loaded)
    carved = _episode("s-carved", "uniform", {"prune_ratio": 0.5}, num_workers=0)
    carved_t = _episode("s-carved-t", "uniform", {"prune_ratio": 0.5})
    assert carved[0].data.test.numel() == 100 and carved_t[0].data.y_test.numel() == 100  # test carved as val
    _assert_same(carved_t, carved)


def test_automatic_choice_of_the_path(image_sources):
    assert not uses_streaming(RunConfig(dataset="s-tensors"))
    assert uses_streaming(RunConfig(dataset="s-dataset"))
    assert not uses_streaming(RunConfig(dataset="s-dataset", streaming=False))
    assert uses_streaming(RunConfig(dataset="synthetic", streaming=True))
    with pytest.raises(ValueError, match="num_workers=-1 must be an int >= 0"):
        RunConfig(num_workers=-1)


def test_streamed_labels_out_of_range_are_a_clear_error():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 1, 8, 8, generator=g), torch.randint(0, 3, (300,), generator=g)
    y[7] = 5  # outside the declared 3 classes; a Dataset without .targets is only checked as it streams
    register_dataset("s-badlabels", ItemsDataset(x, y), num_classes=3)
    run = TrainingRun(RunConfig(dataset="s-badlabels", model="cnn", epochs=1, val_size=50, test_size=50))
    with pytest.raises(ValueError, match=r"'s-badlabels': a batch has labels in \[0, 5\], outside \[0, 3\)"):
        run.run_epoch(run.full_plan())
        run.evaluate("val"), run.evaluate("test")


def test_streaming_path_leaves_the_global_rngs_alone(image_sources):
    import random

    import numpy as np

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    before = torch.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate()
    _episode("s-dataset", "infobatch", {"prune_ratio": 0.5}, num_workers=2)
    _episode("s-dataset", "infobatch", {"prune_ratio": 0.5}, streaming=False)
    assert torch.equal(before[0], torch.get_rng_state()) and np.array_equal(before[1], np.random.get_state()[1])
    assert before[2] == random.getstate()
