"""Issue 14 section 3: ``PruningSampler`` in a plain loop, behind a ``DataLoader`` with 2 workers (``drop_last``
either way) and in a 2-process gloo run, each against the engine's own run of the same pruner and seed; its
epoch rules, budget and errors; ``progress_lr``; and the README's example, run as written."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from prunegym.baselines import IndexedDataset, PruningSampler, make_pruner
from prunegym.training import EpochPlan, RunConfig, TrainingRun, progress_lr

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
E, BS = 4, 128
CFG = RunConfig(
    dataset="synthetic",
    model="mlp",
    model_kwargs={"hidden": (64,)},
    epochs=E,
    batch_size=BS,
    lr_schedule="constant",
    seed=0,
)


def _infobatch_ratio(e: int, epochs: int = E) -> float:
    return 0.5 if e < math.floor(0.875 * epochs) else 0.0  # InfoBatch's published schedule


def engine_run(ratios=None, drop_last=False, pruner="infobatch", cfg=CFG):
    """The engine's own run; ``drop_last`` trains only the full batches of each plan (what the loader does)."""
    run = TrainingRun(cfg)
    p = make_pruner(pruner)
    p.reset(run.num_train, cfg.epochs, run.device, run.generator("pruner"))
    plans = []
    for e in range(cfg.epochs):
        r = ratios[e] if ratios is not None else _infobatch_ratio(e, cfg.epochs)
        plan = p.plan(e, run.scores, {"prune_ratio": r})
        plans.append(plan.indices.clone())
        if drop_last:
            m = plan.indices.numel() // cfg.batch_size * cfg.batch_size
            plan = EpochPlan(plan.indices[:m], plan.weights[:m] if plan.weights is not None else None)
        p.update(run.run_epoch(plan), run.scores)
    return plans, run.scores


def sampler_run(loader_kw=None, cfg=CFG, pruner="infobatch", **knobs):
    """A user's loop over the same model, data and optimizer: the sampler's kept indices, its weights, update."""
    run = TrainingRun(cfg)
    x, y = run.data.x_train, run.data.y_train
    sampler = PruningSampler(pruner, num_samples=run.num_train, epochs=cfg.epochs, seed=cfg.seed, **knobs)
    loader = None
    if loader_kw is not None:
        data = IndexedDataset(TensorDataset(x, y))
        loader = DataLoader(data, batch_size=cfg.batch_size, sampler=sampler, **loader_kw)
    plans, batches = [], []
    for e in range(cfg.epochs):
        sampler.set_epoch(e)
        if loader is None:
            order = torch.tensor(list(sampler))
            it = [(x[b], y[b], b) for b in order.split(cfg.batch_size)]
        else:
            it = loader
        run.model.train()
        n = 0
        for xb, yb, idx in it:
            logits = run.model(xb)
            loss = F.cross_entropy(logits, yb, reduction="none")
            run.optimizer.zero_grad()
            ((loss * sampler.weights(idx)).sum() / len(idx)).backward()
            run.optimizer.step()
            sampler.update(idx, loss.detach(), logits.detach().argmax(1) == yb)
            n += 1
        batches.append(n)
        plans.append(sampler.plan.indices.clone())
    sampler.end_epoch()
    return plans, sampler.scores, sampler, batches


def _same(engine, mine, atol=1e-6):
    (plans_e, scores_e), (plans_m, scores_m) = engine, mine[:2]
    assert len(plans_e) == len(plans_m) == E
    for a, b in zip(plans_e, plans_m):
        assert torch.equal(a, b)  # the same kept samples, in the same order
    assert plans_e[1].numel() < plans_e[0].numel()  # it really pruned
    torch.testing.assert_close(scores_m.loss, scores_e.loss, rtol=1e-5, atol=atol)
    torch.testing.assert_close(scores_m.ema, scores_e.ema, rtol=1e-5, atol=atol)
    assert torch.equal(scores_m.times_trained, scores_e.times_trained)


def test_plain_loop_matches_the_engine():
    _same(engine_run(), sampler_run())


@pytest.mark.parametrize("drop_last", [False, True])
def test_dataloader_with_two_workers_matches_the_engine(drop_last):
    mine = sampler_run(dict(num_workers=2, drop_last=drop_last))
    _same(engine_run(drop_last=drop_last), mine)
    sampler, batches = mine[2], mine[3]
    for e, plan in enumerate(mine[0]):  # every epoch ended, with the loader's own batch count
        k = plan.numel()
        assert batches[e] == (k // BS if drop_last else math.ceil(k / BS))
        assert sampler.kept_fractions[e] == pytest.approx((k // BS * BS if drop_last else k) / 4000)


def test_repeated_iter_within_an_epoch_replays_the_plan_and_len_agrees():
    # without set_epoch: iter() twice before consuming (what a DataLoader with workers does) -> one plan
    s = PruningSampler("uniform", num_samples=100, epochs=3, seed=1, warmup_epochs=0)
    it1, it2 = iter(s), iter(s)
    first = list(it2)
    assert list(it1) == first and len(first) == len(s) == 50 and s.epoch == 0
    second = list(s)  # the plan was handed out: this iter() starts epoch 1 with its own draw
    assert s.epoch == 1 and len(second) == 50 and second != first
    # with set_epoch: iter() never moves on
    s2 = PruningSampler("uniform", num_samples=100, epochs=3, seed=1, warmup_epochs=0)
    s2.set_epoch(0)
    assert list(s2) == first and list(s2) == first and s2.epoch == 0
    s2.set_epoch(0)  # the current epoch again: nothing changes
    assert list(s2) == first
    s2.set_epoch(1)
    assert list(s2) == second
    with pytest.raises(ValueError, match=r"set_epoch\(3\).*at epoch 1.*allowed: 1 or 2"):
        s2.set_epoch(3)
    s2.set_epoch(2)
    with pytest.raises(ValueError, match="epoch 3 is past the 3 epochs"):
        s2.set_epoch(3)


def test_budget_is_met_within_one_percent_and_the_engine_replays_its_ratios():
    cfg = CFG.replace(epochs=10)
    plans, scores, sampler, _ = sampler_run(cfg=cfg, budget=0.8)
    assert abs(sampler.budget_spent / 0.8 - 1) < 0.01 and len(sampler.ratios) == 10
    assert sampler.ratios[8:] == [0.0, 0.0]  # InfoBatch's annealing epochs stay full
    engine_plans, engine_scores = engine_run(ratios=sampler.ratios, cfg=cfg)
    assert all(torch.equal(a, b) for a, b in zip(engine_plans, plans))
    torch.testing.assert_close(scores.loss, engine_scores.loss, rtol=1e-5, atol=1e-6)
    for pruner, b in (("uniform", 0.5), ("ucb", 0.37)):
        s = sampler_run(cfg=cfg, pruner=pruner, budget=b)[2]
        assert abs(s.budget_spent / b - 1) < 0.01, (pruner, s.budget_spent)


def test_budget_out_of_reach_warns_and_reports_what_was_spent():
    with pytest.warns(UserWarning, match="budget=0.6 is out of reach for 'infobatch'"):
        s = sampler_run(budget=0.6)[2]
    assert s.budget_spent > 0.61


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pruner="pfb"), "selects rows inside the forward pass"),
        (dict(pruner="swdpp"), "mixes kept samples"),
        (dict(pruner="nope"), "unknown pruner 'nope'; allowed: full, uniform"),
        (dict(bogus=1), "no knob.s. bogus; allowed: delta, prune_ratio"),
        (dict(budget=0.5, prune_ratio=0.3), "budget= or prune_ratio=, not both"),
        (dict(budget=1.5), r"budget=1.5 must be a fraction in \(0, 1\]"),
        (dict(budget=0.2), "budget=0.2 is below what 'infobatch' can reach"),
        (dict(num_samples=0), "num_samples=0 must be a positive int"),
        (dict(prune_ratio=0.95), r"prune_ratio=0.95 is out of range \[0, 0.9\]"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, match):
    args = {"pruner": "infobatch", "num_samples": 100, "epochs": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        PruningSampler(**args)


def test_weights_are_infobatchs_rescaling_and_update_checks_lengths():
    s = PruningSampler("infobatch", num_samples=50, epochs=4, seed=0)
    order = torch.tensor(list(s))
    assert torch.equal(s.weights(order), torch.ones(50))  # epoch 0: no scores yet, everything kept
    with pytest.raises(ValueError, match="3 indices but 2 losses"):
        s.update(order[:3], torch.zeros(2))
    s.update(order, torch.linspace(0, 1, 50)[order])  # sample i has loss i / 49
    s.set_epoch(1)
    kept = torch.tensor(list(s))
    w = s.weights(kept)
    assert kept.numel() == 25 + 12 and int((w == 2.0).sum()) == 12 and int((w == 1.0).sum()) == 25
    assert bool((kept[w == 2.0] < 25).all()) and bool((kept[w == 1.0] >= 25).all())  # D1: below-mean loss
    missing = sorted(set(range(50)) - set(kept.tolist()))
    assert s.weights(torch.tensor(missing)).eq(0).all() and s.kept_fraction == pytest.approx(37 / 50)


# -- two processes (gloo) -----------------------------------------------------------------------------------------
def test_two_process_gloo_run_matches_the_engines_ddp_run(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "examples" / "sampler_ddp.py"),
        "--epochs",
        "3",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    for a, b, c in zip(r0["sampler"]["plans"], r1["sampler"]["plans"], r0["engine"]["plans"]):
        assert torch.equal(a, b) and torch.equal(a, c)  # every rank, and the engine, keep the same samples
    assert any(p.numel() % 2 for p in r0["sampler"]["plans"])  # a plan of odd length: the padding was exercised
    for key, value in r0["sampler"]["scores"].items():
        assert torch.equal(value, r1["sampler"]["scores"][key]), key
    torch.testing.assert_close(r0["sampler"]["scores"]["loss"], r0["engine"]["scores"]["loss"], rtol=1e-4, atol=1e-5)
    assert torch.equal(r0["sampler"]["scores"]["times_trained"], r0["engine"]["scores"]["times_trained"])
    for key, value in r0["engine"]["state"].items():
        torch.testing.assert_close(r0["sampler"]["state"][key], value, rtol=1e-4, atol=1e-5)


# -- progress_lr ------------------------------------------------------------------------------------------------
def _lrs(batches_per_epoch: list[int], full: int, wrapped: bool) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=len(batches_per_epoch) * full)
    wrapper = progress_lr(sched, steps_per_epoch=full)
    out = []
    for e, n in enumerate(batches_per_epoch):
        for i in range(n):
            opt.step()
            if wrapped:
                wrapper.step(e, i + 1, n)
            else:
                sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def test_progress_lr_keeps_a_full_epoch_schedule_on_pruned_epochs():
    full = _lrs([20] * 5, 20, wrapped=False)
    pruned = _lrs([20, 9, 9, 11, 20], 20, wrapped=True)
    naive = _lrs([20, 9, 9, 11, 20], 20, wrapped=False)
    assert pruned == pytest.approx(full, rel=1e-9)  # at every epoch boundary: the full run's learning rate
    assert naive[-1] > 100 * full[-1]  # stepped per batch, the schedule never reaches its end
    assert _lrs([20] * 5, 20, wrapped=True) == full
    with pytest.raises(ValueError, match="ReduceLROnPlateau follows a metric"):
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        progress_lr(torch.optim.lr_scheduler.ReduceLROnPlateau(opt), 10)
    with pytest.raises(ValueError, match="steps_per_epoch=0 must be a positive int"):
        progress_lr(torch.optim.lr_scheduler.StepLR(opt, 1), 0)


# -- the README's example -------------------------------------------------------------------------------------
def test_readme_sampler_example_runs_as_written():
    text = (REPO / "README.md").read_text()
    section = text.split("## The pruners in your own training loop", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "PruningSampler" in code and "progress_lr" in code and len(code.strip().splitlines()) <= 25
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"passed \d+% of the full run's samples", proc.stdout), proc.stdout
