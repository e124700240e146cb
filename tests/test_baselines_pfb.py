"""PFB (Partial Forward Blocking): the in-batch selector's counts, descriptor, density ranking of a planted
rare cluster, the noise scaled to the batch's spread, centre updates and their warm-up on unpruned epochs,
absence of host syncs, the selector's FLOPs against ``FlopCounterMode``, the engine's compute meter with a
selector, the CIFAR ResNet-18's split after ``layer2`` (the official code's) and the cost of its pruned epoch;
and on three real tasks, the overlap with the noise-free ranking and a whole epoch's FLOPs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from prunegym.baselines import PFBPruner
from prunegym.baselines.pfb import descriptor
from prunegym.envs.tasks import task_config
from prunegym.training import DataSplits, RunConfig, ScoreTable, TrainingRun, build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def pfb(seed: int = 0, n: int = 10_000, **kwargs) -> PFBPruner:
    p = PFBPruner(**kwargs)
    p.reset(n, 10, "cpu", torch.Generator().manual_seed(seed))
    return p


def selector(p: PFBPruner, ratio: float):
    return p.plan(1, ScoreTable(p.num_samples), {"prune_ratio": ratio}).selector


def rare_cluster_batches(n_batches: int, batch: int = 128, dim: int = 8, rare_share: float = 0.05, seed: int = 0):
    """Batches of ``[batch, dim]`` points: 95% from N(0, I), 5% from N(6, I); yields (features, rare mask)."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_batches):
        x = torch.randn(batch, dim, generator=g)
        rare = torch.rand(batch, generator=g) < rare_share
        x[rare] += 6.0
        yield x, rare


@pytest.mark.parametrize("b,p", [(128, 0.4), (128, 0.3), (100, 0.7), (7, 0.5), (1, 0.5)])
def test_selector_keeps_floor_of_batch(b, p):
    sel = selector(pfb(), p)
    rows = sel(torch.randn(b, 16, 3, 3, generator=torch.Generator().manual_seed(b)), torch.arange(b))
    assert rows.dtype == torch.int64 and rows.ndim == 1
    assert rows.numel() == math.floor((1 - p) * b + 1e-9)
    assert len(set(rows.tolist())) == rows.numel() and all(0 <= r < b for r in rows.tolist())


def test_descriptor_pools_space_and_averages_adjacent_channels():
    f = torch.arange(2 * 256 * 2 * 2, dtype=torch.float32).view(2, 256, 2, 2)
    d = descriptor(f)
    gap = f.mean((2, 3))
    assert d.shape == (2, 128)
    torch.testing.assert_close(d, gap.view(2, 128, 2).mean(2))
    torch.testing.assert_close(descriptor(f[:, :64]), gap[:, :64])  # C <= 128: as is
    x = torch.randn(5, 40)
    torch.testing.assert_close(descriptor(x), x)  # 2-D features as is


@pytest.mark.parametrize("spatial", [False, True])
def test_rare_cluster_kept_far_more_often_than_chance(spatial):
    p, keep = pfb(), 0.5
    sel = selector(p, 1 - keep)
    kept_rare = total_rare = kept_common = total_common = 0
    for x, rare in rare_cluster_batches(60):
        feats = x[:, :, None, None].expand(-1, -1, 3, 3) if spatial else x  # GAP of a constant map = x
        rows = sel(feats, torch.arange(x.shape[0]))
        mask = torch.zeros(x.shape[0], dtype=torch.bool)
        mask[rows] = True
        kept_rare += int((mask & rare).sum())
        total_rare += int(rare.sum())
        kept_common += int((mask & ~rare).sum())
        total_common += int((~rare).sum())
    assert kept_rare / total_rare > 0.85  # chance: 0.5
    assert kept_common / total_common < 0.5


def test_noise_free_selection_is_the_lowest_density():
    p = pfb(noise_scale=0.0)
    sel = selector(p, 0.5)
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(3))
    sel(x, torch.arange(64))  # initialises the centres
    centres, counts = p.centres.clone(), p.counts.clone()
    desc = descriptor(x)
    h = p.bandwidth(desc)
    log_f = p.log_density(desc, h)
    rows = sel(x, torch.arange(64))
    assert set(rows.tolist()) == set(torch.argsort(log_f)[:32].tolist())
    # hand-computed KDE with the centres before this step: weights counts / sum, Silverman bandwidth
    d = desc.shape[1]
    sigma = desc.std(0, unbiased=False)
    h_ref = sigma * (4 / ((d + 2) * centres.shape[0])) ** (1 / (d + 4))
    torch.testing.assert_close(h, h_ref)
    z = ((desc[:, None, :] - centres[None]) / h_ref).square().sum(-1)
    f_ref = ((counts / counts.sum())[None] * torch.exp(-0.5 * z)).sum(1) / (h_ref.prod() * (2 * math.pi) ** (d / 2))
    torch.testing.assert_close(log_f, f_ref.log(), rtol=1e-4, atol=1e-4)


def test_centres_initialised_from_first_batch_then_counts_and_ema():
    p = pfb(noise_scale=0.0)
    sel = selector(p, 0.5)
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(1))
    rows = sel(x, torch.arange(40))
    assert p.centres.shape == (40, 6)  # fewer than 100 rows: all of them
    assert float(p.counts.sum()) == 40 + rows.numel()
    # each kept row is nearest to its own initial centre: that centre moves 1% toward it, i.e. stays put
    torch.testing.assert_close(p.centres, x)
    p2 = pfb(noise_scale=0.0)
    sel2 = selector(p2, 0.5)
    big = torch.randn(300, 6, generator=torch.Generator().manual_seed(2))
    sel2(big, torch.arange(300))
    assert p2.centres.shape == (100, 6)  # N_C = 100 from the first batch's first rows
    # one centre at 0; of two new points the farther (lower density) is kept and pulls it by rate 0.01
    p3 = pfb(noise_scale=0.0, num_centres=1)
    sel3 = selector(p3, 0.5)
    sel3(torch.zeros(2, 3), torch.arange(2))
    torch.testing.assert_close(p3.centres, torch.zeros(1, 3))
    assert p3.counts.tolist() == [2.0]
    rows = sel3(torch.tensor([[10.0, 10.0, 10.0], [12.0, 12.0, 12.0]]), torch.arange(2))
    assert rows.tolist() == [1]
    torch.testing.assert_close(p3.centres, torch.full((1, 3), 0.12))
    assert p3.counts.tolist() == [3.0]


class _SyncSpy(TorchDispatchMode):
    """Records aten ops that need the host to read device data or whose output size depends on data."""

    SYNCING = ("_local_scalar_dense", "nonzero", "masked_select", "bincount", "unique", "item", "repeat_interleave")

    def __init__(self):
        super().__init__()
        self.bad: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__
        if any(s in name for s in self.SYNCING):
            self.bad.append(name)
        if func.__name__.startswith("index.") and any(getattr(a, "dtype", None) == torch.bool for a in args[1] or []):
            self.bad.append("boolean-mask index")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("noise", [0.1, 0.0])
def test_selector_has_no_host_sync(noise):
    p = pfb(noise_scale=noise)
    sel = selector(p, 0.4)
    warm = p.plan(0, ScoreTable(p.num_samples), {"prune_ratio": 0.4}).selector
    feats = [torch.randn(128, 32, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    sel(feats[0], torch.arange(128))  # centre initialisation may do anything once
    with _SyncSpy() as spy:
        for f in feats[1:3]:
            rows = sel(f, torch.arange(128))
            sel.flops(128, rows.numel(), tuple(f.shape))
        rows = warm(feats[3], torch.arange(128))  # the warm-up path too
        warm.flops(128, rows.numel(), tuple(feats[3].shape))
    assert spy.bad == []
    with _SyncSpy() as spy:  # the spy itself catches a sync
        torch.ones(3).sum().item()
    assert spy.bad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (sync debug mode)")
def test_selector_no_sync_on_cuda():
    p = PFBPruner()
    p.reset(1000, 10, "cuda", torch.Generator(device="cuda").manual_seed(0))
    sel = p.plan(1, ScoreTable(1000, "cuda"), {"prune_ratio": 0.4}).selector
    warm = p.plan(0, ScoreTable(1000, "cuda"), {"prune_ratio": 0.4}).selector
    feats = torch.randn(128, 64, 8, 8, device="cuda")
    sel(feats, torch.arange(128, device="cuda"))
    torch.cuda.set_sync_debug_mode("error")
    try:
        rows = sel(feats, torch.arange(128, device="cuda"))
        flops = sel.flops(128, rows.numel(), tuple(feats.shape))
        all_rows = warm(feats, torch.arange(128, device="cuda"))
        warm.flops(128, all_rows.numel(), tuple(feats.shape))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert rows.shape == (76,) and all_rows.shape == (128,) and flops > 0


@pytest.mark.parametrize("epoch,ratio", [(3, 0.0), (0, 0.0), (0, 0.4), (0, 0.9)])
def test_unpruned_epochs_keep_every_row_and_warm_the_estimator(epoch, ratio):
    """Prune ratio 0, and epoch 0 whatever the ratio: the full data, weight 1, claimed ratio 0, and a selector
    that keeps every row (``arange(B)``) and absorbs them into the estimator (the official no-prune path).
    (Before issue 11 these plans carried no selector; the estimator then first met the data at the first
    pruned batch.)"""
    p = pfb(n=50)
    plan = p.plan(epoch, ScoreTable(50), {"prune_ratio": ratio})
    assert plan.weights is None and plan.mixup is None and plan.claimed_prune_ratio == 0.0
    assert sorted(plan.indices.tolist()) == list(range(50))
    first = torch.randn(30, 6, generator=torch.Generator().manual_seed(0))
    assert plan.selector(first, torch.arange(30)).tolist() == list(range(30))
    torch.testing.assert_close(p.centres, first)  # the first batch ever seen gives the centres (N_C >= 30 rows)
    assert float(p.counts.sum()) == 30 + 30  # one count each at creation, then every row absorbed
    second = torch.randn(20, 6, generator=torch.Generator().manual_seed(1)) + 3.0
    assert plan.selector(second, torch.arange(20)).tolist() == list(range(20))
    assert float(p.counts.sum()) == 80 and not torch.allclose(p.centres, first)  # centres move toward new rows


def test_first_pruned_batch_meets_a_warmed_up_estimator():
    """Centres come from the full-data epochs' batches, not from the first pruned batch's own rows."""
    p = pfb(noise_scale=0.0)
    warm = p.plan(0, ScoreTable(p.num_samples), {"prune_ratio": 0.4}).selector
    batches = list(rare_cluster_batches(5))
    for x, _ in batches:
        warm(x, torch.arange(x.shape[0]))
    centres, counts = p.centres.clone(), p.counts.clone()
    assert float(counts.sum()) == 100 + 5 * 128
    x, _ = next(rare_cluster_batches(1, seed=9))
    desc = descriptor(x)
    expected = torch.argsort(p.log_density(desc, p.bandwidth(desc)))[: math.floor(0.6 * 128)]
    rows = selector(p, 0.4)(x, torch.arange(128))
    assert set(rows.tolist()) == set(expected.tolist())  # ranked under the warmed-up centres
    assert not torch.allclose(centres, x[:100])


@pytest.mark.parametrize("noise", [0.1, 0.5])
def test_noise_is_scaled_to_the_batchs_spread_of_log_densities(noise):
    """Rank by ``log f + noise_scale * N(0, 1) * std(log f)`` (population std), normals from the pruner's
    generator; before issue 11 the noise was ``0.1 N(0, 1)`` on ``f / max f`` and decided most of the ranking."""
    p = pfb(noise_scale=noise)
    sel = selector(p, 0.4)
    x = torch.randn(128, 8, generator=torch.Generator().manual_seed(5))
    sel(x, torch.arange(128))
    desc = descriptor(x)
    log_f = p.log_density(desc, p.bandwidth(desc))
    twin = torch.Generator().set_state(p.generator.get_state())
    score = log_f + noise * torch.randn(128, generator=twin) * log_f.std(unbiased=False)
    rows = sel(x, torch.arange(128))
    assert rows.tolist() == torch.topk(score, math.floor(0.6 * 128), largest=False).indices.tolist()


def test_default_noise_leaves_the_density_in_charge():
    """Over planted batches the kept set overlaps the noise-free lowest-density set by >= 0.9 (chance: 0.6)."""
    p = pfb()
    sel = selector(p, 0.4)
    overlaps = []
    for x, _ in rare_cluster_batches(20, dim=16):
        desc = descriptor(x)
        log_f = p.log_density(desc, p.bandwidth(desc)) if p.centres is not None else None
        rows = sel(x, torch.arange(128))
        if log_f is not None:
            ref = set(torch.argsort(log_f)[: rows.numel()].tolist())
            overlaps.append(len(ref & set(rows.tolist())) / rows.numel())
    assert sum(overlaps) / len(overlaps) >= 0.9


@pytest.mark.parametrize("ratio,first", [(0.4, True), (0.4, False), (0.0, True), (0.0, False), (0.7, False)])
@pytest.mark.parametrize("shape", [(96, 8), (96, 200, 2, 2)])
def test_selector_flops_match_flop_counter(ratio, first, shape):
    """``PFBSelector.flops`` (from the shapes) equals ``FlopCounterMode``'s count of the call, both paths,
    descriptor widths below and above 128, with and without the centres' creation in the call."""
    from torch.utils.flop_counter import FlopCounterMode

    p = pfb()
    sel = p.plan(1, ScoreTable(p.num_samples), {"prune_ratio": ratio}).selector
    g = torch.Generator().manual_seed(4)
    if not first:
        sel(torch.randn(*shape, generator=g), torch.arange(shape[0]))
    x = torch.randn(*shape, generator=g)
    with FlopCounterMode(display=False) as counter:
        rows = sel(x, torch.arange(shape[0]))
    expected = counter.get_total_flops()
    assert expected > 0
    assert sel.flops(shape[0], rows.numel(), shape) == expected


def test_engine_charges_shallow_for_all_rows_and_deep_for_kept_rows():
    """Pass counts and FLOPs of a pruned epoch (epoch 1: epoch 0 never prunes), selector FLOPs included, and of
    a full-data epoch whose warm-up selector still costs its own FLOPs."""
    n, bs, ratio = 300, 64, 0.4
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + 40, 10, generator=g)
    y = (x[:, 0] > 0).long()
    splits = DataSplits("tiny", x[:n], y[:n], x[n : n + 20], y[n : n + 20], x[n + 20 :], y[n + 20 :], 2)
    # hidden 256 wide: the selector's FLOPs stay below what pruning saves (on a 16-wide MLP they would not)
    cfg = RunConfig(
        dataset="synthetic",
        model="mlp",
        model_kwargs={"hidden": (256, 256)},
        epochs=3,
        batch_size=bs,
        device="cpu",
        seed=0,
    )
    run = TrainingRun(cfg, splits=splits)
    p = PFBPruner()
    p.reset(n, 3, "cpu", run.generator("pruner"))
    batches = [bs] * (n // bs) + ([n % bs] if n % bs else [])
    d, n_c = 128, 64  # shallow features [B, 256] pooled to 128; the first batch (64 rows) gives 64 centres
    full = run.run_epoch(p.plan(0, run.scores, {"prune_ratio": ratio}))  # epoch 0: full data, warm-up
    assert full.passes.deep_forward == n and full.claimed_prune_ratio == 0.0
    assert p.centres.shape == (n_c, d)
    warm_selector = sum(2.0 * n_c * d * 2 * b for b in batches)
    assert full.passes.selector_flops == pytest.approx(warm_selector)
    assert full.flops_fraction == pytest.approx(1.0 + warm_selector / run.meter.full_epoch_flops)
    res = run.run_epoch(p.plan(1, run.scores, {"prune_ratio": ratio}))
    deep = sum(math.floor((1 - ratio) * b + 1e-9) for b in batches)
    ps = res.passes
    assert (ps.shallow_forward, ps.shallow_backward) == (n, n)
    assert (ps.deep_forward, ps.deep_backward) == (deep, deep)
    assert res.indices.numel() == deep and res.kept_fraction == pytest.approx(deep / n)
    selector_flops = sum(2.0 * n_c * d * (b + 2 * math.floor((1 - ratio) * b + 1e-9)) for b in batches)
    assert ps.selector_flops == pytest.approx(selector_flops)
    f = run.meter.flops
    expected = n * (f.shallow_forward + f.shallow_backward) + deep * (f.deep_forward + f.deep_backward)
    assert res.flops == pytest.approx(expected + selector_flops)
    assert res.flops_fraction < 1.0
    by_cat = run.meter.total_by_category
    assert by_cat["selector"] == pytest.approx(warm_selector + selector_flops)
    assert sum(by_cat.values()) == pytest.approx(run.meter.total_flops)


# -- the CIFAR ResNet-18's split (the official code's: after layer2) ------------------------------------------
def test_resnet18_splits_after_layer2_as_the_official_code():
    """PFB's official ResNet runs the stem, layer1 and layer2 on the whole batch and the rest on the kept rows;
    the preset's default split (the CIFAR ResNet-18 tasks set none) is the same."""
    model = build_model("resnet18", (3, 32, 32), 10, torch.Generator().manual_seed(0))
    assert model.split == "layer2"
    assert tuple(model.shallow._modules) == ("stem", "layer1", "layer2")
    assert tuple(model.deep._modules) == ("layer3", "layer4", "head")
    h = model.shallow(torch.zeros(2, 3, 32, 32))
    assert h.shape == (2, 128, 16, 16) and descriptor(h).shape == (2, 128)  # 128 channels: no averaging
    for task, classes in (("cifar10-resnet18", 10), ("cifar100-resnet18", 100)):
        cfg = task_config(task)
        g = torch.Generator().manual_seed(0)
        with torch.device("meta"):
            assert build_model(cfg.model, (3, 32, 32), classes, g, split=cfg.model_split).split == "layer2", task
    assert build_model("resnet18", (3, 32, 32), 10, g, split="layer1").split == "layer1"  # still a setting


@pytest.mark.parametrize("split,shallow_share,cost", [(None, 0.516, 0.806), ("layer1", 0.274, 0.710)])
def test_resnet18_pruned_epoch_at_p04_costs_what_its_split_leaves(split, shallow_share, cost):
    """One pruned epoch (p = 0.4) of the CIFAR ResNet-18 on random 32x32 images through the engine: every row
    pays the shallow passes, ``floor(0.6 B)`` rows the deep ones (B = 10: exactly 0.6), plus the selector. The
    default split (after layer2) costs 0.806 of a full epoch; the earlier split after layer1 cost 0.710."""
    n = 10
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + 4, 3, 32, 32, generator=g)
    y = torch.arange(n + 4) % 10
    splits = DataSplits("tiny32", x[:n], y[:n], x[n : n + 2], y[n : n + 2], x[n + 2 :], y[n + 2 :], 10)
    cfg = RunConfig(model="resnet18", model_split=split, epochs=2, batch_size=n, device="cpu", seed=0)
    run = TrainingRun(cfg, splits=splits)
    assert run.model.split == (split or "layer2")
    p = PFBPruner()
    p.reset(n, 2, "cpu", run.generator("pruner"))
    res = run.run_epoch(p.plan(1, run.scores, {"prune_ratio": 0.4}))
    assert (res.passes.shallow_forward, res.passes.deep_forward) == (n, 6)
    f = run.meter.flops
    assert f.shallow_share == pytest.approx(shallow_share, abs=5e-4)
    selector = res.passes.selector_flops / run.meter.full_epoch_flops
    assert 0.0 < selector < 1e-5
    assert res.flops_fraction == pytest.approx(f.shallow_share + 0.6 * (1.0 - f.shallow_share) + selector)
    assert res.flops_fraction == pytest.approx(cost, abs=5e-4)
