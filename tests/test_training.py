"""Tests of prunegym.training: data splits, determinism, RNG isolation, the pruned epoch engine (weights,
selectors, mix-up, pass counts, FLOPs), the learning-rate schedule, the score table, augmentation and config
validation. Real-data tests use small Fashion-MNIST subsets from the ``data_root`` fixture (tests/conftest.py)."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import splits
from torch.testing import assert_close

from prunegym.training import (
    DATASETS,
    MODELS,
    OPTIMIZERS,
    SCHEDULES,
    DatasetMissingError,
    DataSplits,
    EpochPlan,
    MixupSpec,
    PassCounts,
    RunConfig,
    ScoreTable,
    TrainingRun,
    build_model,
    lr_at,
    measure_flops,
)
from prunegym.training.augment import random_crop_flip

FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530
FMNIST_SUBSET = dict(val_size=500, train_size=2000, test_size=500)


# -- helpers ---------------------------------------------------------------------------------------------------
def config(**changes) -> RunConfig:
    base = dict(dataset="synthetic", model="mlp", epochs=2, batch_size=128, device="cpu", seed=0)
    base.update(changes)
    return RunConfig(**base)


def plain_sgd(**changes) -> RunConfig:
    """SGD without momentum or weight decay at a constant lr: a step is exactly ``p -= lr * grad``."""
    base = dict(optimizer="sgd", momentum=0.0, weight_decay=0.0, lr_schedule="constant", lr=0.1, epochs=1)
    base.update(changes)
    return config(**base)


def local_perm(n: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def params(run: TrainingRun) -> list[torch.Tensor]:
    return [p.detach().clone() for p in run.model.parameters()]


def image_splits(
    n: int = 256, shape=(1, 28, 28), classes: int = 10, augment: bool = False, seed: int = 0
) -> DataSplits:
    """A tiny random image task, so that CNN code paths run without real data."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n + 64, *shape), generator=g)
    y = torch.randint(0, classes, (n + 64,), generator=g)
    return DataSplits(
        "tiny-images", x[:n], y[:n], x[n : n + 32], y[n : n + 32], x[n + 32 :], y[n + 32 :], classes, augment
    )


@pytest.fixture(scope="module")
def syn() -> DataSplits:
    return splits("synthetic", 0)


@pytest.fixture(scope="module")
def fmnist_root(data_root):
    if not (data_root / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"FashionMNIST/raw not found under the data root {str(data_root)!r}")
    return data_root


# -- data ------------------------------------------------------------------------------------------------------
def test_fashion_mnist_subset_sizes_dtypes_normalisation(fmnist_root):
    s = splits("fashion_mnist", 0, root=fmnist_root, download=False, **FMNIST_SUBSET)
    assert (s.name, s.num_classes, s.augment) == ("fashion_mnist", 10, False)
    assert s.input_shape == (1, 28, 28) and s.num_train == 2000
    for x, y, n in ((s.x_train, s.y_train, 2000), (s.x_val, s.y_val, 500), (s.x_test, s.y_test, 500)):
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32 and x.device.type == "cpu"
        assert y.shape == (n,) and y.dtype == torch.int64
        assert 0 <= int(y.min()) and int(y.max()) <= 9
        # stored as (pixel / 255 - mean) / std with integer pixels in [0, 255]
        pixels = (x.double() * FMNIST_STD + FMNIST_MEAN) * 255
        assert_close(pixels, pixels.round(), rtol=0, atol=1e-3)
        assert float(pixels.min().round()) == 0.0 and float(pixels.max().round()) == 255.0
        assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1.0) < 0.05
    assert torch.unique(s.y_train).numel() == 10


def test_fashion_mnist_validation_is_carved_from_training_set(fmnist_root):
    s = splits("fashion_mnist", 0, root=fmnist_root, download=False, val_size=500)
    assert s.num_train == 59_500 and s.y_val.numel() == 500 and s.y_test.numel() == 10_000
    # train + val is a partition of the official 60k training set (balanced: 6,000 per class; no image twice)
    y = torch.cat([s.y_train, s.y_val])
    assert torch.equal(torch.bincount(y, minlength=10), torch.full((10,), 6000))
    w = torch.randn(28 * 28, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    h_train = s.x_train.flatten(1).double() @ w
    h_val = s.x_val.flatten(1).double() @ w
    assert torch.unique(torch.cat([h_train, h_val])).numel() == 60_000


def test_fashion_mnist_split_is_seeded(fmnist_root):
    a, b, c = (splits("fashion_mnist", seed, root=fmnist_root, download=False, **FMNIST_SUBSET) for seed in (0, 0, 1))
    for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
        assert not torch.equal(getattr(a, name), getattr(c, name)), name


def test_missing_data_root_raises_dataset_missing_error(tmp_path):
    root = tmp_path / "no-data-here"
    root.mkdir()
    with pytest.raises(DatasetMissingError) as info:
        splits("fashion_mnist", 0, root=root, download=False)
    msg = str(info.value)
    assert str(root) in msg
    assert "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz" in msg
    assert "PRUNEGYM_DATA" in msg


def test_synthetic_splits(syn):
    assert syn.x_train.shape == (4000, 32) and syn.x_val.shape == (1000, 32) and syn.x_test.shape == (1000, 32)
    assert syn.x_train.dtype == torch.float32 and syn.y_train.dtype == torch.int64 and syn.num_classes == 8
    assert torch.equal(splits("synthetic", 0).x_train, syn.x_train)
    assert not torch.equal(splits("synthetic", 1).x_train, syn.x_train)


# -- determinism and RNG isolation -----------------------------------------------------------------------------
def _two_epochs(cfg: RunConfig, splits: DataSplits | None = None):
    run = TrainingRun(cfg, splits)
    return run, [run.run_epoch(run.full_plan()) for _ in range(2)]


def _assert_same_epochs(r1, r2):
    for a, b in zip(r1, r2):
        assert torch.equal(a.indices, b.indices)
        assert torch.equal(a.losses, b.losses)
        assert torch.equal(a.correct, b.correct)


def test_same_config_and_seed_bit_identical_synthetic(syn):
    cfg = config(epochs=2)
    run1, r1 = _two_epochs(cfg)
    run2, r2 = _two_epochs(cfg)
    _assert_same_epochs(r1, r2)
    for p, q in zip(params(run1), params(run2)):
        assert torch.equal(p, q)
    assert run1.evaluate("val") == run2.evaluate("val")
    # another run seed on the same data: other initial weights and order, so other losses
    _, r3 = _two_epochs(cfg, syn)
    _, r4 = _two_epochs(cfg.replace(seed=1), syn)
    _assert_same_epochs(r1, r3)
    assert not torch.equal(r3[0].indices, r4[0].indices)
    assert not torch.equal(torch.sort(r3[1].losses).values, torch.sort(r4[1].losses).values)


def test_same_config_and_seed_bit_identical_fashion_mnist_cnn(fmnist_root):
    cfg = RunConfig(
        dataset="fashion_mnist",
        model="cnn",
        epochs=2,
        batch_size=64,
        seed=3,
        data_root=str(fmnist_root),
        train_size=384,
        val_size=256,
        test_size=256,
    )
    _, r1 = _two_epochs(cfg)
    _, r2 = _two_epochs(cfg)
    _assert_same_epochs(r1, r2)
    _, r3 = _two_epochs(cfg.replace(seed=4))
    assert not torch.equal(torch.sort(r1[1].losses).values, torch.sort(r3[1].losses).values)


def test_synthetic_mlp_learns(syn):
    run = TrainingRun(config(epochs=3), syn)
    before = run.evaluate("val")
    for _ in range(3):
        run.run_epoch(run.full_plan())
    after = run.evaluate("val")
    assert after.accuracy > 0.6 > before.accuracy and after.loss < before.loss


def _global_rng_state():
    return torch.get_rng_state().clone(), np.random.get_state(), random.getstate()


def _assert_rng_unchanged(before, after):
    assert torch.equal(before[0], after[0]), "global torch RNG state changed"
    nb, na = before[1], after[1]
    assert nb[0] == na[0] and np.array_equal(nb[1], na[1]) and nb[2:] == na[2:], "global numpy RNG state changed"
    assert before[2] == after[2], "global python RNG state changed"


def test_global_rng_states_untouched():
    # a known, unusual state first: code that reseeds the globals (to their default or any fixed value) cannot
    # leave them as this test found them by chance
    torch.manual_seed(12345), np.random.seed(12345), random.seed(12345)
    before = _global_rng_state()
    syn = splits("synthetic", 5)
    run = TrainingRun(config(epochs=2, seed=5), syn)
    run.score(torch.arange(100))
    n = run.num_train
    keep_half = lambda h, bi: torch.topk(h.flatten(1).norm(dim=1), h.shape[0] // 2).indices  # noqa: E731
    plan = run.full_plan()
    weights = torch.rand(n, generator=run.generator("w")) + 0.5
    run.run_epoch(EpochPlan(plan.indices, weights=weights, selector=keep_half))
    mix = MixupSpec(run.full_plan().indices, torch.full((n,), 0.7))
    run.run_epoch(EpochPlan(plan.indices, mixup=mix))
    run.evaluate("val"), run.evaluate("test")
    # a CNN run with CIFAR-style augmentation, model building and FLOP counting
    cnn = TrainingRun(config(model="cnn", epochs=1, batch_size=32), image_splits(64, (3, 8, 8), augment=True))
    cnn.run_epoch(cnn.full_plan())
    cnn.evaluate("val")
    measure_flops(build_model("cnn", (1, 28, 28), 10, run.generator("init2")), (1, 28, 28))
    random_crop_flip(torch.zeros(4, 3, 8, 8), torch.Generator().manual_seed(0))
    _assert_rng_unchanged(before, _global_rng_state())


# -- the loss: weights, selectors, mix-up ----------------------------------------------------------------------
def _one_epoch(run: TrainingRun, plan: EpochPlan):
    """Train ``plan``; returns the result, the gradients of the last batch and the parameter updates."""
    before = params(run)
    res = run.run_epoch(plan)
    grads = [p.grad.detach().clone() for p in run.model.parameters()]
    deltas = [p.detach() - b for p, b in zip(run.model.parameters(), before)]
    return res, grads, deltas


def test_weight_two_doubles_the_gradient(syn):
    cfg = plain_sgd(batch_size=256)
    idx = local_perm(syn.num_train, 0)[:200]  # one batch
    r0, g0, d0 = _one_epoch(TrainingRun(cfg, syn), EpochPlan(idx))
    r1, g1, d1 = _one_epoch(TrainingRun(cfg, syn), EpochPlan(idx, weights=torch.ones(200)))
    r2, g2, d2 = _one_epoch(TrainingRun(cfg, syn), EpochPlan(idx, weights=torch.full((200,), 2.0)))
    for a, b, c in zip(g0, g1, g2):
        assert torch.equal(a, b)
        assert torch.equal(c, 2 * a)  # scaling by a power of two is exact in floating point
    for a, c in zip(d1, d2):
        assert_close(c, 2 * a, rtol=1e-4, atol=1e-6)
        assert a.abs().max() > 0
    assert torch.equal(r1.losses, r2.losses)  # reported losses are unweighted


def test_per_row_weights_give_the_weighted_mean(syn):
    cfg = plain_sgd(batch_size=64)
    idx = local_perm(syn.num_train, 1)[:64]
    w = torch.rand(64, generator=torch.Generator().manual_seed(2)) * 3  # mean about 1.5, so mean != sum/sum(w)
    run = TrainingRun(cfg, syn)
    ref = copy.deepcopy(run.model)
    res, grads, deltas = _one_epoch(run, EpochPlan(idx, weights=w))
    per_sample = F.cross_entropy(ref(syn.x_train[idx]), syn.y_train[idx], reduction="none")
    (w * per_sample).mean().backward()
    assert torch.equal(res.indices, idx)
    assert_close(res.losses, per_sample.detach(), rtol=1e-6, atol=1e-6)
    for g, p, d in zip(grads, ref.parameters(), deltas):
        assert_close(g, p.grad, rtol=1e-5, atol=1e-7)
        assert_close(d, -0.1 * p.grad, rtol=1e-3, atol=1e-6)


def test_selector_equals_a_plan_of_the_kept_rows(syn):
    """Deep part on kept rows == a full forward on those rows (the MLP has no BatchNorm: batch composition in the
    shallow part does not matter). 10 batches of 64 keep their even rows; the reference trains 10 batches of 32."""
    idx = local_perm(syn.num_train, 3)[:640]
    even = torch.arange(0, 64, 2)
    seen_batches = []

    def keep_even(h, bi):
        seen_batches.append(bi.clone())
        return even

    run_a = TrainingRun(config(epochs=2, batch_size=64), syn)
    res_a = run_a.run_epoch(EpochPlan(idx, selector=keep_even))
    kept = idx.view(10, 64)[:, ::2].reshape(-1)
    run_b = TrainingRun(config(epochs=2, batch_size=32), syn)
    res_b = run_b.run_epoch(EpochPlan(kept))
    assert torch.equal(torch.stack(seen_batches), idx.view(10, 64))
    assert torch.equal(res_a.indices, kept) and torch.equal(res_b.indices, kept)
    assert_close(res_a.losses, res_b.losses, rtol=1e-5, atol=1e-6)
    assert torch.equal(res_a.correct, res_b.correct)
    for p, q in zip(params(run_a), params(run_b)):
        assert_close(p, q, rtol=1e-5, atol=1e-6)
    assert res_a.passes == PassCounts(shallow_forward=640, shallow_backward=640, deep_forward=320, deep_backward=320)
    assert res_b.passes == PassCounts(shallow_forward=320, shallow_backward=320, deep_forward=320, deep_backward=320)
    assert res_a.flops < res_b.flops * 2 and res_a.kept_fraction == res_b.kept_fraction == 320 / syn.num_train


def test_mixup_with_lam_one_equals_the_plain_plan(syn):
    idx = local_perm(syn.num_train, 4)[:1000]
    partner = local_perm(syn.num_train, 5)[:1000]
    run_a, run_b = TrainingRun(config(epochs=1), syn), TrainingRun(config(epochs=1), syn)
    a = run_a.run_epoch(EpochPlan(idx))
    b = run_b.run_epoch(EpochPlan(idx, mixup=MixupSpec(partner, torch.ones(1000))))
    assert torch.equal(a.indices, b.indices) and torch.equal(a.losses, b.losses) and torch.equal(a.correct, b.correct)
    assert not b.mixed.any()
    for p, q in zip(params(run_a), params(run_b)):
        assert torch.equal(p, q)
    for k, v in run_a.scores.state_dict().items():
        assert torch.equal(v, run_b.scores.state_dict()[k]), k


def test_mixup_partners_mix_inputs_and_losses(syn):
    k = 128
    idx = local_perm(syn.num_train, 6)[:k]
    partner = local_perm(syn.num_train, 7)[:k]
    lam = torch.rand(k, generator=torch.Generator().manual_seed(8)) * 0.8 + 0.1  # in (0, 1) on even rows
    lam = torch.where(torch.arange(k) % 2 == 0, lam, 1.0)
    run = TrainingRun(plain_sgd(batch_size=k), syn)
    ref = copy.deepcopy(run.model)
    res, grads, _ = _one_epoch(run, EpochPlan(idx, mixup=MixupSpec(partner, lam)))
    assert torch.equal(res.mixed, lam < 1) and res.mixed.sum() == k // 2
    x = lam.view(-1, 1) * syn.x_train[idx] + (1 - lam).view(-1, 1) * syn.x_train[partner]
    logits = ref(x)
    per_sample = lam * F.cross_entropy(logits, syn.y_train[idx], reduction="none") + (1 - lam) * F.cross_entropy(
        logits, syn.y_train[partner], reduction="none"
    )
    per_sample.mean().backward()
    assert_close(res.losses, per_sample.detach(), rtol=1e-5, atol=1e-6)
    for g, p in zip(grads, ref.parameters()):
        assert_close(g, p.grad, rtol=1e-5, atol=1e-7)
    # mixed rows count as trained but leave the sample's loss statistics alone
    s = run.scores
    assert torch.equal(s.times_trained[idx], torch.ones(k, dtype=torch.int64))
    assert torch.equal(s.ema[idx[res.mixed]], torch.zeros(k // 2))
    assert torch.equal(s.ema[idx[~res.mixed]], res.losses[~res.mixed])


def test_augmentation_is_applied_to_augmented_datasets_only():
    plain, aug = image_splits(64, (3, 8, 8), augment=False), image_splits(64, (3, 8, 8), augment=True)
    cfg = config(model="cnn", epochs=1, batch_size=32)
    r_plain = TrainingRun(cfg, plain).run_epoch(EpochPlan(torch.arange(64)))
    r_aug1 = TrainingRun(cfg, aug).run_epoch(EpochPlan(torch.arange(64)))
    r_aug2 = TrainingRun(cfg, aug).run_epoch(EpochPlan(torch.arange(64)))
    assert torch.equal(r_aug1.losses, r_aug2.losses)
    assert not torch.equal(r_plain.losses, r_aug1.losses)


# -- compute accounting ----------------------------------------------------------------------------------------
def test_half_the_indices_count_half_the_passes_and_flops(syn):
    run = TrainingRun(config(epochs=2), syn)
    n = run.num_train
    full = run.run_epoch(run.full_plan())
    half = run.run_epoch(EpochPlan(run.full_plan().indices[: n // 2]))
    h = n // 2
    assert full.passes == PassCounts(shallow_forward=n, deep_forward=n, shallow_backward=n, deep_backward=n)
    assert half.passes == PassCounts(shallow_forward=h, deep_forward=h, shallow_backward=h, deep_backward=h)
    assert full.flops == pytest.approx(n * run.meter.flops.train_step, rel=1e-12)
    assert full.flops_fraction == pytest.approx(1.0) and half.flops_fraction == pytest.approx(0.5)
    assert half.flops == pytest.approx(0.5 * full.flops, rel=1e-12)
    assert (half.kept_fraction, half.planned_fraction) == (0.5, 0.5)
    assert run.meter.total_fraction == pytest.approx(0.75)


def test_selector_charges_shallow_for_all_rows_and_deep_for_kept_rows(syn):
    run = TrainingRun(config(epochs=2, batch_size=128), syn)
    f = run.meter.flops
    run.score(torch.arange(50))  # scoring passes are charged to the next epoch
    idx = run.full_plan().indices[:1001]  # 7 batches of 128 and one of 105

    def keep_floor_half(h, bi):
        return torch.topk(h.flatten(1).norm(dim=1), h.shape[0] // 2).indices

    res = run.run_epoch(EpochPlan(idx, selector=keep_floor_half))
    kept = 7 * 64 + 52
    assert res.passes == PassCounts(
        shallow_forward=1001, shallow_backward=1001, deep_forward=kept, deep_backward=kept, scoring_forward=50
    )
    assert res.indices.numel() == kept and torch.unique(res.indices).numel() == kept
    assert torch.isin(res.indices, idx).all()
    expected = (
        1001 * (f.shallow_forward + f.shallow_backward) + kept * (f.deep_forward + f.deep_backward) + 50 * f.forward
    )
    assert res.flops == pytest.approx(expected, rel=1e-12)
    assert res.kept_fraction == kept / run.num_train and res.planned_fraction == 1001 / run.num_train
    nxt = run.run_epoch(EpochPlan(idx[:10]))
    assert nxt.passes.scoring_forward == 0


def test_cnn_flops_match_a_hand_count():
    model = build_model("cnn", (1, 28, 28), 10, torch.Generator().manual_seed(0))  # split after block1
    f = measure_flops(model, (1, 28, 28))
    conv1, conv2, fc, head = 28 * 28 * 32 * 9 * 1, 14 * 14 * 64 * 32 * 9, 3136 * 128, 128 * 10  # multiply-adds
    forward = 2 * (conv1 + conv2 + fc + head)
    assert forward == pytest.approx(8.46e6, rel=0.01)
    assert f.forward == pytest.approx(forward, rel=0.03)
    assert f.shallow_forward == pytest.approx(2 * conv1, rel=0.03)
    assert f.deep_forward == pytest.approx(2 * (conv2 + fc + head), rel=0.03)
    # backward: weight gradients everywhere, input gradients everywhere but the first layer
    assert f.shallow_backward == pytest.approx(2 * conv1, rel=0.03)
    assert f.deep_backward == pytest.approx(4 * (conv2 + fc + head), rel=0.03)
    assert f.train_step == pytest.approx(25e6, rel=0.03)
    assert f.forward == pytest.approx(f.shallow_forward + f.deep_forward, rel=1e-12)
    assert f.train_step == pytest.approx(
        f.shallow_forward + f.deep_forward + f.shallow_backward + f.deep_backward, rel=1e-12
    )
    assert f.shallow_share == pytest.approx(4 * conv1 / f.train_step, rel=0.03)
    # another split point moves conv2 into the shallow part; the whole-model totals do not change
    g = measure_flops(
        build_model("cnn", (1, 28, 28), 10, torch.Generator().manual_seed(0), split="block2"), (1, 28, 28)
    )
    assert g.shallow_forward == pytest.approx(2 * (conv1 + conv2), rel=0.03)
    assert g.forward == pytest.approx(f.forward, rel=1e-9) and g.train_step == pytest.approx(f.train_step, rel=1e-9)


# -- learning-rate schedule ------------------------------------------------------------------------------------
def test_lr_follows_progress_not_batch_count(syn):
    cfg = config(epochs=3, batch_size=100, lr=0.1, lr_schedule="onecycle", pct_start=0.3)
    full_run, half_run = TrainingRun(cfg, syn), TrainingRun(cfg, syn)
    assert full_run.lr == pytest.approx(0.1 / 25)

    def recorder(run, log):
        def select_all(h, bi):
            log.append(run.optimizer.param_groups[0]["lr"])
            return torch.arange(h.shape[0])

        return select_all

    for e in range(3):
        lf, lh = [], []
        rf = full_run.run_epoch(EpochPlan(full_run.full_plan().indices, selector=recorder(full_run, lf)))
        rh = half_run.run_epoch(EpochPlan(half_run.full_plan().indices[:2000], selector=recorder(half_run, lh)))
        assert len(lf) == 40 and len(lh) == 20
        assert lf == pytest.approx([lr_at("onecycle", (e + b / 40) / 3, 0.1, pct_start=0.3) for b in range(40)])
        assert lh == pytest.approx(lf[::2])  # the half epoch covers the same stretch of the schedule
        assert rh.lr == rf.lr == pytest.approx(lr_at("onecycle", (e + 1) / 3, 0.1, pct_start=0.3))
    assert full_run.lr == pytest.approx(0.1 / 25 / 1e4)


def test_onecycle_cosine_constant_shapes():
    peak = 0.4
    for pct in (0.3, 0.5):
        grid = np.linspace(0.0, 1.0, 1001)
        lrs = np.array([lr_at("onecycle", p, peak, pct_start=pct) for p in grid])
        top = int(round(pct * 1000))
        assert lrs[0] == pytest.approx(peak / 25)
        assert lrs[top] == pytest.approx(peak) and int(np.argmax(lrs)) == top
        assert np.all(np.diff(lrs[: top + 1]) > 0) and np.all(np.diff(lrs[top:]) < 0)
        assert lrs[-1] == pytest.approx(peak / 25 / 1e4)
        # halfway through the warm-up the cosine ramp is at the midpoint
        assert lr_at("onecycle", pct / 2, peak, pct_start=pct) == pytest.approx((peak + peak / 25) / 2)
    assert lr_at("cosine", 0.0, peak) == pytest.approx(peak) and lr_at("cosine", 0.5, peak) == pytest.approx(peak / 2)
    assert lr_at("cosine", 1.0, peak) == pytest.approx(0.0, abs=1e-12)
    assert lr_at("constant", 0.7, peak) == peak


# -- score table -----------------------------------------------------------------------------------------------
def test_score_table_ema_variance_and_forgetting():
    t = ScoreTable(5, ema_rate=0.25)
    tt = lambda *v: torch.tensor(v)  # noqa: E731
    t.update(tt(0, 1, 2), tt(1.0, 2.0, 0.5), tt(True, False, True), epoch=0)
    assert torch.equal(t.ema, tt(1.0, 2.0, 0.5, 0.0, 0.0)) and torch.equal(t.ema_var, torch.zeros(5))
    assert torch.equal(t.times_trained, tt(1, 1, 1, 0, 0)) and torch.equal(t.last_epoch, tt(0, 0, 0, -1, -1))
    # 0: correct -> incorrect (a forgetting event); 1: incorrect -> correct; 3: first observation
    t.update(tt(3, 0, 1), tt(4.0, 3.0, 1.0), tt(False, False, True), epoch=1)
    assert torch.equal(t.ema, tt(0.75 * 1 + 0.25 * 3, 0.75 * 2 + 0.25 * 1, 0.5, 4.0, 0.0))
    assert torch.equal(t.ema_var, tt(0.25 * (3 - 1) ** 2, 0.25 * (1 - 2) ** 2, 0.0, 0.0, 0.0))
    assert torch.equal(t.forgetting, tt(1, 0, 0, 0, 0))
    assert torch.equal(t.loss, tt(3.0, 1.0, 0.5, 4.0, 0.0))
    # 0: incorrect -> incorrect; 2: correct -> incorrect after a skipped epoch
    t.update(tt(0, 2), tt(0.5, 2.0), tt(False, False), epoch=2)
    assert torch.equal(t.ema[[0, 2]], tt(0.75 * 1.5 + 0.25 * 0.5, 0.75 * 0.5 + 0.25 * 2.0))
    assert torch.equal(t.ema_var[[0, 2]], tt(0.75 * 1.0 + 0.25 * (0.5 - 1.5) ** 2, 0.25 * (2.0 - 0.5) ** 2))
    assert torch.equal(t.forgetting, tt(1, 0, 1, 0, 0))
    assert torch.equal(t.times_trained, tt(3, 2, 2, 1, 0)) and torch.equal(t.last_epoch, tt(2, 1, 2, 1, -1))


def test_score_table_mixed_rows_leave_loss_statistics_unchanged():
    t = ScoreTable(3, ema_rate=0.5)
    tt = lambda *v: torch.tensor(v)  # noqa: E731
    t.update(tt(0, 1), tt(1.0, 2.0), tt(True, True), epoch=0)
    before = t.state_dict()
    # row 0 mixed (wrong and with a large loss), row 1 its own; sample 2 is first seen in a mixed row
    t.update(tt(0, 1, 2), tt(9.0, 4.0, 7.0), tt(False, False, False), epoch=1, valid=tt(False, True, False))
    for name in ("loss", "ema", "ema_var", "forgetting", "last_correct"):
        assert getattr(t, name)[0] == before[name][0], name
    assert t.ema[1] == 0.5 * 2.0 + 0.5 * 4.0 and t.ema_var[1] == 0.5 * (4.0 - 2.0) ** 2 and t.forgetting[1] == 1
    assert torch.equal(t.times_trained, tt(2, 2, 1)) and torch.equal(t.last_epoch, tt(1, 1, 1))
    assert t.ema[2] == 0 and t.loss[2] == 0
    # the first loss observed for sample 2 sets mu = loss and v = 0 although it was trained before (mixed)
    t.update(tt(2), tt(3.0), tt(True), epoch=2)
    assert t.ema[2] == 3.0 and t.ema_var[2] == 0.0 and t.loss[2] == 3.0


# -- augmentation ----------------------------------------------------------------------------------------------
def _all_crops_and_flips(x: torch.Tensor, padding: int):
    c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    for dy in range(2 * padding + 1):
        for dx in range(2 * padding + 1):
            crop = padded[:, dy : dy + h, dx : dx + w]
            yield (dy, dx, False), crop
            yield (dy, dx, True), crop.flip(-1)


def test_random_crop_flip_shape_reproducibility_and_content():
    base = torch.arange(1, 2 * 3 * 5 * 5 + 1, dtype=torch.float32).view(2, 3, 5, 5)
    batch = base.repeat(400, 1, 1, 1)  # [800, 3, 5, 5]
    keep = batch.clone()
    out1 = random_crop_flip(batch, torch.Generator().manual_seed(7), padding=2)
    out2 = random_crop_flip(batch, torch.Generator().manual_seed(7), padding=2)
    out3 = random_crop_flip(batch, torch.Generator().manual_seed(8), padding=2)
    assert out1.shape == batch.shape and out1.dtype == batch.dtype and out1.is_contiguous()
    assert torch.equal(batch, keep)  # the input is not modified
    assert torch.equal(out1, out2) and not torch.equal(out1, out3)
    seen = set()
    for i in range(batch.shape[0]):
        match = [t for t, cand in _all_crops_and_flips(batch[i], 2) if torch.equal(cand, out1[i])]
        assert len(match) == 1, f"sample {i} is not a padded crop (or its flip) of its input"
        seen.add(match[0])
    assert len(seen) == 5 * 5 * 2  # every offset, flipped and not, occurs in 800 draws
    # by hand: a 3x3 image with padding 1; the top-left crop and its mirror image are among the outputs
    img = torch.arange(1.0, 10.0).view(1, 1, 3, 3).repeat(64, 1, 1, 1)
    out = random_crop_flip(img, torch.Generator().manual_seed(0), padding=1)
    top_left = torch.tensor([[0.0, 0, 0], [0, 1, 2], [0, 4, 5]])
    outs = [o[0] for o in out]
    assert any(torch.equal(o, top_left) for o in outs) and any(torch.equal(o, top_left.flip(-1)) for o in outs)
    assert any(torch.equal(o, img[0, 0]) for o in outs) and any(torch.equal(o, img[0, 0].flip(-1)) for o in outs)


# -- configuration ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,value,allowed",
    [
        ("dataset", "imagenet", DATASETS),
        ("model", "vgg16", MODELS),
        ("optimizer", "rmsprop", OPTIMIZERS),
        ("lr_schedule", "step", SCHEDULES),
    ],
)
def test_invalid_choices_raise_naming_value_and_allowed(name, value, allowed):
    with pytest.raises(ValueError) as info:
        RunConfig(**{name: value})
    msg = str(info.value)
    assert name in msg and repr(value) in msg
    assert all(a in msg for a in allowed)


@pytest.mark.parametrize(
    "changes",
    [
        dict(epochs=0),
        dict(epochs=-1),
        dict(batch_size=0),
        dict(lr=0.0),
        dict(lr=float("inf")),
        dict(lr=float("nan")),
        dict(momentum=-0.1),
        dict(weight_decay=float("inf")),
        dict(ema_rate=1.5),
        dict(pct_start=1.0),
        dict(label_smoothing=1.0),
    ],
)
def test_invalid_numbers_raise(changes):
    ((name, value),) = changes.items()
    with pytest.raises(ValueError, match=f"{name}={value!r}"):
        RunConfig(**changes)
    with pytest.raises(ValueError, match=f"{name}={value!r}"):
        RunConfig().replace(**changes)


def test_other_invalid_names_raise():
    with pytest.raises(ValueError, match="bogus.*allowed:.*epochs"):
        RunConfig().replace(bogus=1)
    with pytest.raises(ValueError, match="'vgg16'.*mlp, cnn, resnet18"):
        build_model("vgg16", (1, 28, 28), 10, torch.Generator())
    with pytest.raises(ValueError, match="'imagenet'.*synthetic"):
        splits("imagenet", 0)
    with pytest.raises(ValueError, match="'step'.*onecycle"):
        lr_at("step", 0.5, 0.1)
    with pytest.raises(ValueError, match="'block9'.*block1"):
        build_model("cnn", (1, 28, 28), 10, torch.Generator(), split="block9")


# -- AdamW and the CIFAR ResNet-18 (issue 12: untested before) -------------------------------------------------------
def test_adamw_runs_are_adamw_train_and_repeat_from_the_seed(syn):
    cfg = config(optimizer="adamw", lr=1e-3, weight_decay=0.05, epochs=3, lr_schedule="constant")
    run = TrainingRun(cfg, syn)
    opt = run.optimizer
    assert type(opt) is torch.optim.AdamW
    assert opt.param_groups[0]["weight_decay"] == 0.05 and opt.param_groups[0]["lr"] == pytest.approx(1e-3)
    before = run.evaluate("val")
    losses = [run.run_epoch(run.full_plan()).train_loss for _ in range(3)]
    after = run.evaluate("val")
    assert losses[-1] < losses[0] and after.loss < before.loss
    assert opt.state and all("exp_avg_sq" in s for s in opt.state.values())  # Adam moments, not SGD momentum
    again = TrainingRun(cfg, syn)
    for _ in range(3):
        again.run_epoch(again.full_plan())
    assert all(torch.equal(a, b) for a, b in zip(params(run), params(again)))
    # decoupled weight decay: with zero gradients a step only shrinks the weights by lr * wd
    p = torch.nn.Parameter(torch.ones(3))
    step = torch.optim.AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = torch.zeros(3)
    step.step()
    assert torch.allclose(p.detach(), torch.full((3,), 1 - 0.1 * 0.5))


def test_cifar_resnet18_builds_splits_trains_and_is_measured_on_random_32x32_images():
    g = torch.Generator().manual_seed(0)
    model = build_model("resnet18", (3, 32, 32), 10, g)
    assert model.split == "layer2" and model.stage_names == ("stem", "layer1", "layer2", "layer3", "layer4", "head")
    stem = model.shallow.stem[0]
    assert (stem.kernel_size, stem.stride) == ((3, 3), (1, 1))  # the CIFAR variant: 3x3 stem, no max-pool
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    assert sum(p.numel() for p in model.parameters()) == 11_173_962  # ResNet-18 with a 10-way head
    x = torch.randn(4, 3, 32, 32, generator=g)
    h = model.shallow(x)
    assert h.shape == (4, 128, 16, 16)  # layer2 halves the resolution (split after it, as PFB's official code)
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    a, b = (build_model("resnet18", (3, 32, 32), 10, torch.Generator().manual_seed(0)).state_dict() for _ in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)  # seeded initialisation
    flops = measure_flops(model, (3, 32, 32), batch=2)
    assert 1.0e9 < flops.forward < 1.2e9  # about 0.56 G multiply-adds a 32x32 image, 2 FLOPs each
    # split after layer2: the 3x3 stem (3 -> 64) and four 64 -> 64 convolutions at 32x32, then layer2's
    # 64 -> 128 and three 128 -> 128 convolutions and its 1x1 64 -> 128 shortcut at 16x16, by hand
    by_hand = 2 * (3 * 64 * 9 + 4 * 64 * 64 * 9) * 32 * 32 + 2 * (64 * 128 * 9 + 3 * 128 * 128 * 9 + 64 * 128) * 16 * 16
    assert flops.shallow_forward == pytest.approx(by_hand, rel=0.01)
    assert 1.9 < flops.deep_backward / flops.deep_forward < 2.1
