"""Restarting one run of a batch (``BatchedTrainingRun.reset_run``) and leaving runs out of an epoch (``None``
plans), as the vector env does when one sub-env's episode ends before the others.

Contract: the runs that were not reset are bit-identical (weights, optimizer state, score table, meter, results)
to a batch where nothing was reset; the reset run is a new run of its new seed (its splits equal
``load_splits``, its kept sets and FLOPs equal a ``TrainingRun`` of that seed exactly, its weights within
``WEIGHT_TOL``), counting its own epochs.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import splits
from torch.testing import assert_close

from prunegym.training import EpochPlan, RunConfig, TrainingRun
from prunegym.training.batched_run import BatchedTrainingRun

pytestmark = pytest.mark.usefixtures("one_thread")

WEIGHT_TOL = dict(rtol=1e-4, atol=1e-5)
SEEDS = [3, 0, 11]
NEW_SEED = 7


def config(**changes) -> RunConfig:
    base = dict(
        dataset="synthetic",
        model="mlp",
        model_kwargs={"hidden": (32,)},
        epochs=4,
        batch_size=64,
        train_size=512,
        val_size=200,
        test_size=200,
        optimizer="sgd",
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        device="cpu",
    )
    base.update(changes)
    return RunConfig(**base)


def prefix(batch, k: int, count: int) -> EpochPlan:
    return EpochPlan(batch.full_plan(k).indices[:count])


def weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def state_equal(a: list[dict], b: list[dict]) -> bool:
    return all(
        s0.keys() == s1.keys()
        and all(torch.equal(s0[n], s1[n]) if isinstance(s0[n], torch.Tensor) else s0[n] == s1[n] for n in s0)
        for s0, s1 in zip(a, b)
    )


# counts[e][k]: rows of run k in epoch e (None: left out); run 1 is reset after epoch 1 and then left out once
COUNTS = [[512, 300, 200], [256, 512, 100], [400, None, 512], [100, 512, 300], [512, 256, 64]]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_reset_run_leaves_the_other_runs_bit_identical(optimizer):
    cfg = config(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 3e-3, epochs=5)
    reset, plain = BatchedTrainingRun(cfg, SEEDS), BatchedTrainingRun(cfg, SEEDS)
    res_reset, res_plain = [], []
    for e, counts in enumerate(COUNTS):
        if e == 2:
            reset.reset_run(1, NEW_SEED)
            assert reset.runs[1].epoch == 0 and reset.epochs_completed == [2, 0, 2] and reset.epoch == 0
        res_reset.append(reset.run_epoch([None if c is None else prefix(reset, k, c) for k, c in enumerate(counts)]))
        res_plain.append(plain.run_epoch([prefix(plain, k, c or 512) for k, c in enumerate(counts)]))
    for k in (0, 2):
        for a, b in zip(weights(reset.model(k)), weights(plain.model(k))):
            assert torch.equal(a, b)
        assert state_equal(reset.optimizer_state(k), plain.optimizer_state(k))
        for name, t in plain.scores[k].state_dict().items():
            assert torch.equal(reset.scores[k].state_dict()[name], t), name
        assert reset.meters[k].total_flops == plain.meters[k].total_flops
        assert reset.runs[k].epoch == plain.runs[k].epoch == 5 and reset.lr[k] == plain.lr[k]
        for ra, rb in zip(res_reset, res_plain):
            assert torch.equal(ra[k].indices, rb[k].indices) and torch.equal(ra[k].losses, rb[k].losses)
            assert ra[k].flops == rb[k].flops and ra[k].lr == rb[k].lr and ra[k].epoch == rb[k].epoch
        assert [r.accuracy for r in reset.evaluate("val")][k] == [r.accuracy for r in plain.evaluate("val")][k]
    assert res_reset[2][1] is None and reset.runs[1].epoch == 2 and not reset.runs[1].done
    assert [r[1].epoch for r in res_reset[3:]] == [0, 1]


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_reset_run_is_a_new_run_of_its_seed(optimizer):
    cfg = config(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 3e-3, epochs=3)
    batch = BatchedTrainingRun(cfg, SEEDS)
    batch.run_epoch([prefix(batch, k, 300) for k in range(3)])
    batch.score([torch.arange(5), torch.arange(9), torch.arange(2)])  # pending scoring passes of the old run
    batch.reset_run(1, NEW_SEED)
    assert batch.seeds[1] == NEW_SEED and batch.configs[1].seed == NEW_SEED and batch.runs[1].config.seed == NEW_SEED
    assert batch.meters[1].total_flops == 0.0 and batch.runs[1].meter is batch.meters[1]
    assert batch.scores[1].last_epoch.eq(-1).all() and not batch.scores[1].observed.any()
    assert all(torch.count_nonzero(s[n]) == 0 for s in batch.optimizer_state(1) for n in s if n != "step")
    ref = TrainingRun(cfg.replace(seed=NEW_SEED))
    got = batch.data.split(1)
    want = splits("synthetic", NEW_SEED, val_size=200, train_size=512, test_size=200)
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    for a, b in zip(weights(batch.model(1)), weights(ref.model)):
        assert torch.equal(a, b)  # the initial weights of the new seed
    for count in (512, 200, 64):
        res = batch.run_epoch(
            [prefix(batch, 0, 100) if batch.runs[0].epoch < 3 else None, prefix(batch, 1, count), None]
        )[1]
        r = ref.run_epoch(EpochPlan(ref.full_plan().indices[:count]))
        assert torch.equal(res.indices, r.indices) and res.passes == r.passes and res.flops == r.flops
        assert res.epoch == r.epoch and res.lr == r.lr and math.isclose(res.train_loss, r.train_loss, rel_tol=1e-4)
    for a, b in zip(weights(batch.model(1)), weights(ref.model)):
        assert_close(a, b, **WEIGHT_TOL)
    assert batch.meters[1].total_flops == ref.meter.total_flops and batch.runs[1].done
    for name, t in ref.scores.state_dict().items():
        assert_close(batch.scores[1].state_dict()[name], t, rtol=1e-4, atol=1e-5)
    val = batch.evaluate("val")[1]
    assert math.isclose(val.loss, ref.evaluate("val").loss, rel_tol=1e-4)


def test_reset_run_in_a_shared_pool(data_root):
    if not (data_root / "FashionMNIST" / "raw").is_dir():
        pytest.skip("FashionMNIST/raw not under the data root")
    cfg = config(
        dataset="fashion_mnist",
        data_root=str(data_root),
        train_size=600,
        val_size=300,
        test_size=200,
        model_kwargs={"hidden": (16,)},
    )
    batch = BatchedTrainingRun(cfg, SEEDS)
    x_before = batch.data.x.clone()
    batch.reset_run(2, NEW_SEED)
    assert torch.equal(batch.data.x, x_before)  # one pool for every seed: only the index maps change
    want = splits("fashion_mnist", NEW_SEED, val_size=300, train_size=600, test_size=200, root=data_root)
    for k, ref in (
        (2, want),
        (0, splits("fashion_mnist", SEEDS[0], val_size=300, train_size=600, test_size=200, root=data_root)),
    ):
        got = batch.data.split(k)
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            assert torch.equal(getattr(got, name), getattr(ref, name)), (k, name)


def test_left_out_runs_and_errors():
    cfg = config(epochs=1)
    batch = BatchedTrainingRun(cfg, SEEDS)
    with pytest.raises(ValueError, match="no plan"):
        batch.run_epoch([None, None, None])
    before = weights(batch.model(2))
    res = batch.run_epoch([batch.full_plan(0), batch.full_plan(1), None])
    assert res[2] is None and batch.epochs_completed == [1, 1, 0] and not batch.done
    assert all(torch.equal(a, b) for a, b in zip(before, weights(batch.model(2))))
    with pytest.raises(RuntimeError, match="run 0 has completed its 1 epochs.*None"):
        batch.run_epoch([batch.full_plan(0), None, batch.full_plan(2)])
    res = batch.run_epoch([None, None, batch.full_plan(2)])
    assert res[2].epoch == 0 and batch.done
    with pytest.raises(ValueError, match=r"run index 3 is out of range \[0, 3\)"):
        batch.reset_run(3, 1)
    with pytest.raises(ValueError, match="seed=1.5 must be an int"):
        batch.reset_run(0, 1.5)
    batch.reset_run(0, 5)
    assert not batch.done and batch.runs[0].epoch == 0
