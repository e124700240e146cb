"""Tests of the batched engine (prunegym.training.batched): K runs in one stacked model against K
``TrainingRun``s of the same seeds. Its optimizers and model back ends: tests/test_batched_parts.py.

Equivalence contract tested here: for decision rules that read no losses (``full``, ``uniform``) each run's
kept sets, pass counts and FLOPs equal its ``TrainingRun`` exactly, and its weights, score table and
evaluation agree within ``WEIGHT_TOL`` (float summation order may differ; on CPU they usually agree to the
bit). For loss-driven rules, near-ties in the losses may flip a few kept samples, so only statistics are
compared. Padding and masking: a run with no rows keeps weights and optimizer state bit-identical.
"""

from __future__ import annotations

import importlib.util
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import splits
from torch.testing import assert_close

from prunegym.baselines import PRUNERS, kept_count, make_pruner
from prunegym.training import EpochPlan, MixupSpec, RunConfig, TrainingRun
from prunegym.training.batched_data import BatchedData, load_batched_data
from prunegym.training.batched_run import BatchedTrainingRun

pytestmark = pytest.mark.usefixtures("one_thread")

WEIGHT_TOL = dict(rtol=1e-4, atol=1e-5)  # final weights, batched vs sequential (float summation order)
SEEDS = [3, 0, 11]
REPO = Path(__file__).resolve().parents[1]


def config(**changes) -> RunConfig:
    base = dict(
        dataset="synthetic",
        model="mlp",
        model_kwargs={"hidden": (32,)},
        epochs=3,
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


def weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def play(cfg: RunConfig, seeds, pruner: str, ratios, backend="auto"):
    """Both engines under per-run pruners reset as ``PruningEnv.reset`` does; ``ratios[k][e]`` is run k's
    prune ratio in epoch e. Returns (batch, batch results [E][K], runs, run results [K][E])."""
    batch = BatchedTrainingRun(cfg, seeds, backend=backend)
    pruners = [make_pruner(pruner) for _ in seeds]
    for k, p in enumerate(pruners):
        p.reset(batch.num_train, batch.epochs, batch.device, batch.runs[k].generator("pruner"))
    b_res = []
    for e in range(cfg.epochs):
        plans = [p.plan(e, batch.scores[k], {"prune_ratio": ratios[k][e]}) for k, p in enumerate(pruners)]
        res = batch.run_epoch(plans)
        for k, p in enumerate(pruners):
            p.update(res[k], batch.scores[k])
        b_res.append(res)
    runs, r_res = [], []
    for k, s in enumerate(seeds):
        run = TrainingRun(cfg.replace(seed=s))
        p = make_pruner(pruner)
        p.reset(run.num_train, run.epochs, run.device, run.generator("pruner"))
        out = []
        for e in range(cfg.epochs):
            r = run.run_epoch(p.plan(e, run.scores, {"prune_ratio": ratios[k][e]}))
            p.update(r, run.scores)
            out.append(r)
        runs.append(run)
        r_res.append(out)
    return batch, b_res, runs, r_res


# -- data ------------------------------------------------------------------------------------------------------
def test_synthetic_splits_equal_load_splits():
    cfg = config()
    data = load_batched_data([cfg.replace(seed=s) for s in SEEDS], torch.device("cpu"))
    assert data.train.shape == (3, 512) and data.val.shape == (3, 200) and data.test.shape == (3, 200)
    for k, s in enumerate(SEEDS):
        ref, got = splits("synthetic", s, val_size=200, train_size=512, test_size=200), data.split(k)
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            assert torch.equal(getattr(ref, name), getattr(got, name)), name


def test_real_data_is_one_shared_pool(data_root):
    if not (data_root / "FashionMNIST" / "raw").is_dir():
        pytest.skip("FashionMNIST/raw not under the data root")
    cfg = config(dataset="fashion_mnist", data_root=str(data_root), train_size=3000, val_size=500, test_size=400)
    data = load_batched_data([cfg.replace(seed=s) for s in SEEDS], torch.device("cpu"))
    assert data.x.shape == (70000, 1, 28, 28)  # 60,000 training + 10,000 test samples, once, whatever K
    for k, s in enumerate(SEEDS):
        ref = splits("fashion_mnist", s, val_size=500, train_size=3000, test_size=400, root=data_root)
        got = data.split(k)
        for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            assert torch.equal(getattr(ref, name), getattr(got, name)), name
    assert not torch.equal(data.train[0], data.train[1])


def test_initial_weights_and_evaluation_equal_training_run():
    cfg = config()
    batch = BatchedTrainingRun(cfg, SEEDS)
    evals = batch.evaluate("val")
    for k, s in enumerate(SEEDS):
        run = TrainingRun(cfg.replace(seed=s))
        for a, b in zip(weights(run.model), weights(batch.model(k))):
            assert torch.equal(a, b)
        ref = run.evaluate("val")
        assert evals[k].accuracy == ref.accuracy and math.isclose(evals[k].loss, ref.loss, rel_tol=1e-6)
        assert batch.runs[k].param_count == run.param_count and batch.meters[k].flops == run.meter.flops


# -- equivalence -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pruner,optimizer,backend",
    [
        ("full", "sgd", "bmm"),
        ("uniform", "sgd", "bmm"),
        ("uniform", "adamw", "bmm"),
        ("uniform", "sgd", "func"),
    ],
)
def test_loss_free_rules_match_training_run(pruner, optimizer, backend):
    cfg = config(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 3e-3, epochs=4)
    # different ratios per run: kept counts differ, so steps are padded and runs finish at different steps
    ratios = [[0.0, 0.3, 0.5, 0.8], [0.0, 0.0, 0.9, 0.2], [0.0, 0.6, 0.1, 0.0]]
    batch, b_res, runs, r_res = play(cfg, SEEDS, pruner, ratios, backend)
    assert batch.backend == backend
    for k, run in enumerate(runs):
        for e in range(cfg.epochs):
            b, r = b_res[e][k], r_res[k][e]
            assert torch.equal(b.indices, r.indices)  # the same kept samples in the same order
            assert b.passes == r.passes and b.flops == r.flops and b.flops_fraction == r.flops_fraction
            assert (b.kept_fraction, b.planned_fraction, b.lr, b.epoch) == (
                r.kept_fraction,
                r.planned_fraction,
                r.lr,
                r.epoch,
            )
            assert_close(b.losses, r.losses, rtol=1e-4, atol=1e-5)
            assert math.isclose(b.train_loss, r.train_loss, rel_tol=1e-4)
        assert batch.meters[k].total_flops == run.meter.total_flops
        for a, w in zip(weights(batch.model(k)), weights(run.model)):
            assert_close(a, w, **WEIGHT_TOL)
        for name, t in run.scores.state_dict().items():
            assert_close(batch.scores[k].state_dict()[name], t, rtol=1e-4, atol=1e-5)
        for split, res in (("val", batch.evaluate("val")[k]), ("test", batch.evaluate("test")[k])):
            ref = run.evaluate(split)
            assert math.isclose(res.loss, ref.loss, rel_tol=1e-4) and abs(res.accuracy - ref.accuracy) <= 0.01


def test_loss_driven_rule_statistics():
    """epsilon_greedy ranks samples by EMA loss: float rounding may flip near-ties, so kept sets may differ in
    a few samples. Kept counts are fixed by the rule (exact); kept sets, score tables and accuracy are close."""
    cfg = config(epochs=4)
    ratios = [[0.0, 0.5, 0.5, 0.7]] * 3
    batch, b_res, runs, r_res = play(cfg, SEEDS, "epsilon_greedy", ratios)
    n = batch.num_train
    for k, run in enumerate(runs):
        for e in range(cfg.epochs):
            b, r = b_res[e][k], r_res[k][e]
            assert b.indices.numel() == r.indices.numel() == kept_count(n, ratios[k][e])
            overlap = np.intersect1d(b.indices.numpy(), r.indices.numpy()).size / r.indices.numel()
            assert overlap >= 0.95
        close = torch.isclose(batch.scores[k].ema, run.scores.ema, rtol=1e-3, atol=1e-4).float().mean()
        assert close >= 0.95
        assert abs(batch.evaluate("val")[k].accuracy - run.evaluate("val").accuracy) <= 0.03


@pytest.mark.parametrize("pruner", [p for p in PRUNERS if p != "pfb"])
def test_every_pruner_runs_unchanged_on_the_score_views(pruner):
    """Each pruner (mix-up of swdpp included) plans from its run's ScoreTable view and updates from its
    EpochResult; its run stays close to the TrainingRun of the same seed (kept counts within 2%)."""
    cfg = config(epochs=3)
    ratios = [[0.5] * 3, [0.3] * 3]
    batch, b_res, runs, r_res = play(cfg, SEEDS[:2], pruner, ratios)
    for k, run in enumerate(runs):
        for e in range(cfg.epochs):
            b, r = b_res[e][k], r_res[k][e]
            assert abs(b.indices.numel() - r.indices.numel()) <= 0.02 * batch.num_train
            assert abs(int(b.mixed.sum()) - int(r.mixed.sum())) <= 0.02 * batch.num_train
        assert abs(batch.evaluate("val")[k].accuracy - run.evaluate("val").accuracy) <= 0.03


def test_pfb_plans_are_refused_with_the_alternative():
    batch = BatchedTrainingRun(config(epochs=2), SEEDS[:2])
    pruners = [make_pruner("pfb") for _ in range(2)]
    for k, p in enumerate(pruners):
        p.reset(batch.num_train, batch.epochs, batch.device, batch.runs[k].generator("pruner"))
    # PFB's plans carry a selector at every epoch (its full-data epochs warm the density estimator up)
    with pytest.raises(ValueError, match=r"in-batch selector \(PFB\).*PruningEnv"):
        batch.run_epoch([p.plan(0, batch.scores[k], {"prune_ratio": 0.0}) for k, p in enumerate(pruners)])
    with pytest.raises(ValueError, match=r"in-batch selector \(PFB\).*PruningEnv"):
        batch.run_epoch([p.plan(1, batch.scores[k], {"prune_ratio": 0.5}) for k, p in enumerate(pruners)])


# -- padding and masking ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_run_with_no_rows_is_frozen(optimizer):
    cfg = config(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 3e-3)
    batch = BatchedTrainingRun(cfg, SEEDS)
    batch.run_epoch([batch.full_plan(k) for k in range(3)])  # momentum / Adam moments now non-zero
    before_w, before_opt = weights(batch.model(1)), batch.optimizer_state(1)
    before_scores = batch.scores[1].state_dict()
    empty = EpochPlan(torch.zeros(0, dtype=torch.int64))
    res = batch.run_epoch([batch.full_plan(0), empty, EpochPlan(batch.full_plan(2).indices[:70])])
    for a, b in zip(before_w, weights(batch.model(1))):
        assert torch.equal(a, b)
    for s0, s1 in zip(before_opt, batch.optimizer_state(1)):
        assert s0.keys() == s1.keys() and all(
            torch.equal(s0[n], s1[n]) if isinstance(s0[n], torch.Tensor) else s0[n] == s1[n] for n in s0
        )
    for name, t in batch.scores[1].state_dict().items():
        assert torch.equal(t, before_scores[name]), name
    r = res[1]
    assert r.flops == 0.0 and r.indices.numel() == 0 and math.isnan(r.train_loss) and r.kept_fraction == 0.0
    assert batch.meters[1].total_flops == batch.meters[0].total_flops - res[0].flops  # only epoch 0 charged
    assert res[2].passes.deep_backward == 70 and res[2].flops == 70 * batch.meters[2].flops.train_step


def test_different_kept_counts_weights_and_mixup_in_one_step():
    """Runs with 3 batches + 10 rows, 1 batch and 1 row, loss weights and a mix-up plan in the same steps:
    each run equals a TrainingRun trained on the same plan."""
    cfg = config(epochs=2, lr_schedule="cosine")
    batch = BatchedTrainingRun(cfg, SEEDS)
    g = torch.Generator().manual_seed(5)
    n = batch.num_train
    plans = []
    for c in (64 * 3 + 10, 64, 1):
        idx = torch.randperm(n, generator=g)[:c]
        plans.append(EpochPlan(idx, torch.rand(c, generator=g) + 0.5))
    partner = torch.randperm(n, generator=g)[:64]
    lam = torch.where(torch.rand(64, generator=g) < 0.5, torch.rand(64, generator=g), torch.ones(64))
    plans[1].mixup = MixupSpec(partner, lam)
    for _ in range(2):
        res = batch.run_epoch(plans)
    for k, s in enumerate(SEEDS):
        run = TrainingRun(cfg.replace(seed=s))
        for _ in range(2):
            ref = run.run_epoch(plans[k])
        assert torch.equal(res[k].indices, ref.indices) and torch.equal(res[k].mixed, ref.mixed)
        assert res[k].passes == ref.passes and res[k].flops == ref.flops and res[k].lr == ref.lr
        assert_close(res[k].losses, ref.losses, rtol=1e-4, atol=1e-5)
        for a, w in zip(weights(batch.model(k)), weights(run.model)):
            assert_close(a, w, **WEIGHT_TOL)
        for name, t in run.scores.state_dict().items():
            assert_close(batch.scores[k].state_dict()[name], t, rtol=1e-4, atol=1e-5)


# -- runs of real models, errors ------------------------------------------------------------------------------
def test_cnn_preset_matches_training_run_both_backends(data_root):
    if not (data_root / "FashionMNIST" / "raw").is_dir():
        pytest.skip("FashionMNIST/raw not under the data root")
    cfg = config(
        dataset="fashion_mnist",
        model="cnn",
        model_kwargs={},
        data_root=str(data_root),
        train_size=192,
        val_size=64,
        test_size=64,
        epochs=1,
    )
    out = {}
    for backend in ("bmm", "func"):
        batch = BatchedTrainingRun(cfg, SEEDS[:2], backend=backend)
        batch.run_epoch([batch.full_plan(0), EpochPlan(batch.full_plan(1).indices[:100])])
        out[backend] = [weights(batch.model(k)) for k in range(2)]
    for k, s in enumerate(SEEDS[:2]):
        run = TrainingRun(cfg.replace(seed=s))
        plan = run.full_plan()
        run.run_epoch(plan if k == 0 else EpochPlan(plan.indices[:100]))
        for backend in ("bmm", "func"):
            for a, w in zip(out[backend][k], weights(run.model)):
                assert_close(a, w, **WEIGHT_TOL)


def test_global_rng_untouched():
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    for backend in ("bmm", "func"):
        batch = BatchedTrainingRun(config(epochs=1), SEEDS, backend=backend)
        batch.run_epoch([batch.full_plan(k) for k in range(3)])
        batch.evaluate("test")
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]


def test_score_views_share_the_store_and_scoring_is_charged():
    cfg = config(epochs=2)
    batch = BatchedTrainingRun(cfg, SEEDS)
    n = batch.num_train
    assert all(type(s).__name__ == "ScoreTable" and s.num_samples == n for s in batch.scores)
    batch.run_epoch([batch.full_plan(k) for k in range(3)])
    assert torch.equal(batch.score_store.loss.view(3, n)[2], batch.scores[2].loss)
    assert bool((batch.scores[1].times_trained == 1).all())
    idx = [torch.arange(10), torch.arange(0), torch.arange(5, 40)]
    losses = batch.score(idx)
    for k, s in enumerate(SEEDS):
        run = TrainingRun(cfg.replace(seed=s))
        run.run_epoch(run.full_plan())
        assert_close(losses[k], run.score(idx[k]), rtol=1e-4, atol=1e-5)
    res = batch.run_epoch([EpochPlan(torch.arange(8)) for _ in range(3)])
    assert [r.passes.scoring_forward for r in res] == [10, 0, 35]
    assert res[0].flops == 8 * batch.meters[0].flops.train_step + 10 * batch.meters[0].flops.forward


def test_errors_are_clear():
    cfg = config(epochs=1)
    batch = BatchedTrainingRun(cfg, SEEDS)
    plans = [batch.full_plan(k) for k in range(3)]
    with pytest.raises(ValueError, match="needs 3 plans"):
        batch.run_epoch(plans[:2])
    sel = EpochPlan(plans[1].indices, selector=lambda h, bi: torch.arange(h.shape[0]))
    with pytest.raises(ValueError, match=r"plans\[1\] has an in-batch selector \(PFB\).*PruningEnv"):
        batch.run_epoch([plans[0], sel, plans[2]])
    with pytest.raises(ValueError, match="plan indices must lie in"):
        batch.run_epoch([plans[0], EpochPlan(torch.tensor([0, 10**6])), plans[2]])
    with pytest.raises(ValueError, match="split='bad'; allowed"):
        batch.evaluate("bad")
    for bad in ([], [1.5], [True]):
        with pytest.raises(ValueError, match="seeds="):
            BatchedTrainingRun(cfg, bad)
    with pytest.raises(ValueError, match="backend='jax' is not allowed"):
        BatchedTrainingRun(cfg, SEEDS, backend="jax")
    batch.run_epoch(plans)
    with pytest.raises(RuntimeError, match="completed their 1 epochs"):
        batch.run_epoch(plans)


def test_batchnorm_model_refused_with_the_reason():
    g = torch.Generator().manual_seed(0)
    n = 40
    x, y = torch.randn(3 * n, 3, 32, 32, generator=g), torch.randint(0, 10, (3 * n,), generator=g)
    rows = torch.arange(2).view(2, 1) * n
    data = BatchedData(
        "images",
        x[: 2 * n],
        y[: 2 * n],
        rows + torch.arange(20),
        rows + 20 + torch.arange(10),
        rows + 30 + torch.arange(10),
        10,
    )
    with pytest.raises(ValueError, match="BatchNorm.*padding|BatchNorm.*pad"):
        BatchedTrainingRun(config(model="resnet18", model_kwargs={}), [0, 1], data=data)


def test_benchmark_script_runs_tiny(tmp_path):
    spec = importlib.util.spec_from_file_location("batched_engine", REPO / "benchmarks" / "batched_engine.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert (
        bench.main(
            [
                "--tasks",
                "synthetic-mlp",
                "--k",
                "2",
                "--repeats",
                "1",
                "--seq-runs",
                "1",
                "--out",
                str(out),
                "--markdown",
                str(tmp_path / "bench.md"),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["machine"]["torch"] == torch.__version__ and len(report["load_average_before"]) == 3
    (res,) = report["results"]
    assert res["K"] == 2 and {"sequential", "bmm", "func"} <= set(res)
    assert res["bmm"]["train_samples_per_s"] > 0 and "| synthetic-mlp | 2 |" in (tmp_path / "bench.md").read_text()


def test_augmented_images_use_each_runs_stream():
    """CIFAR-style augmentation (random crop and flip) draws from each run's own ``augment`` stream for its
    real rows only: each run equals a TrainingRun on the same data."""
    g = torch.Generator().manual_seed(0)
    n, k_runs = 100, 2
    x, y = torch.randn(k_runs * n, 3, 16, 16, generator=g), torch.randint(0, 10, (k_runs * n,), generator=g)
    rows = torch.arange(k_runs).view(k_runs, 1) * n
    data = BatchedData(
        "images",
        x,
        y,
        rows + torch.arange(60),
        rows + 60 + torch.arange(20),
        rows + 80 + torch.arange(20),
        10,
        augment=True,
    )
    cfg = config(model="cnn", model_kwargs={}, epochs=1, batch_size=32)
    batch = BatchedTrainingRun(cfg, [0, 1], data=data)
    plans = [EpochPlan(torch.arange(60)), EpochPlan(torch.arange(40, 0, -1))]  # 60 and 40 rows
    res = batch.run_epoch(plans)
    for k in range(k_runs):
        run = TrainingRun(cfg.replace(seed=k), splits=data.split(k))
        ref = run.run_epoch(plans[k])
        assert_close(res[k].losses, ref.losses, rtol=1e-4, atol=1e-5)
        for a, w in zip(weights(batch.model(k)), weights(run.model)):
            assert_close(a, w, **WEIGHT_TOL)
