"""PFB (Partial Forward Blocking): the in-batch selector's counts, descriptor, density ranking of a planted
rare cluster, centre updates, absence of host syncs, the engine's compute meter with a selector, and the full
plan at p = 0."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from prunegym.baselines import PFBPruner
from prunegym.baselines.pfb import descriptor
from prunegym.training import DataSplits, EpochPlan, RunConfig, ScoreTable, TrainingRun


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
    feats = [torch.randn(128, 32, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    sel(feats[0], torch.arange(128))  # centre initialisation may do anything once
    with _SyncSpy() as spy:
        for f in feats[1:]:
            sel(f, torch.arange(128))
    assert spy.bad == []
    with _SyncSpy() as spy:  # the spy itself catches a sync
        torch.ones(3).sum().item()
    assert spy.bad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (sync debug mode)")
def test_selector_no_sync_on_cuda():
    p = PFBPruner()
    p.reset(1000, 10, "cuda", torch.Generator(device="cuda").manual_seed(0))
    sel = p.plan(1, ScoreTable(1000, "cuda"), {"prune_ratio": 0.4}).selector
    feats = torch.randn(128, 64, 8, 8, device="cuda")
    sel(feats, torch.arange(128, device="cuda"))
    torch.cuda.set_sync_debug_mode("error")
    try:
        rows = sel(feats, torch.arange(128, device="cuda"))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert rows.shape == (76,)


def test_ratio_zero_is_plain_full_plan():
    plan = pfb(n=50).plan(0, ScoreTable(50), {"prune_ratio": 0.0})
    assert plan.selector is None and plan.weights is None and plan.mixup is None
    assert sorted(plan.indices.tolist()) == list(range(50))


def test_engine_charges_shallow_for_all_rows_and_deep_for_kept_rows():
    n, bs, ratio = 300, 64, 0.4
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n + 40, 10, generator=g)
    y = (x[:, 0] > 0).long()
    splits = DataSplits("tiny", x[:n], y[:n], x[n:n + 20], y[n:n + 20], x[n + 20:], y[n + 20:], 2)
    cfg = RunConfig(dataset="synthetic", model="mlp", model_kwargs={"hidden": (16, 16)}, epochs=2, batch_size=bs,
                    device="cpu", seed=0)
    run = TrainingRun(cfg, splits=splits)
    p = PFBPruner()
    p.reset(n, 2, "cpu", run.generator("pruner"))
    res = run.run_epoch(p.plan(0, run.scores, {"prune_ratio": ratio}))
    batches = [bs] * (n // bs) + ([n % bs] if n % bs else [])
    deep = sum(math.floor((1 - ratio) * b + 1e-9) for b in batches)
    ps = res.passes
    assert (ps.shallow_forward, ps.shallow_backward) == (n, n)
    assert (ps.deep_forward, ps.deep_backward) == (deep, deep)
    assert res.indices.numel() == deep and res.kept_fraction == pytest.approx(deep / n)
    f = run.meter.flops
    expected = n * (f.shallow_forward + f.shallow_backward) + deep * (f.deep_forward + f.deep_backward)
    assert res.flops == pytest.approx(expected)
    assert res.flops_fraction < 1.0
    full = run.run_epoch(p.plan(1, run.scores, {"prune_ratio": 0.0}))
    assert full.passes.deep_forward == n and full.flops_fraction == pytest.approx(1.0)
