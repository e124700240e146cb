"""BLS, the batch loss score (Zhou et al., CVPR 2026; official code mrazhou/BLS, ``seta.py``, class ``BLS``): a
sample's score is the EMA ``s <- 0.9 s + 0.1 L`` of the mean loss ``L`` of the batches it was in, every score 0
at the start. The rule on crafted batches (hand-computed, samples in no batch, dropped rows, rows gathered out of
order, K runs in one update), the default path unchanged (pinned episodes of HEAD), InfoBatch and SeTa with
``score="batch"`` on crafted scores, env episodes through the single and the batched engine, and
``PruningSampler(..., score="batch")`` taking one loss per batch; one-line errors for bad values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import run_pinned

from prunegym.baselines import InfoBatchPruner, PruningSampler, SeTaPruner, make_policy, make_pruner
from prunegym.envs import PruningEnv, PruningVectorEnv
from prunegym.training import EpochPlan, RunConfig, ScoreTable, TrainingRun
from prunegym.training.epoch import batch_means, update_scores

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(epochs=3, train_size=600, val_size=200, test_size=200, batch_size=64)


def official_bls(n: int, epochs, alpha: float = 0.9) -> torch.Tensor:
    """The official rule, batch by batch (``BLS.update``): ``scores[:] = 0``; per batch, the mean of its
    per-sample losses ``L``; ``scores[idx] = alpha * scores[idx] + (1 - alpha) * L``. ``epochs``: per epoch, a
    list of batches ``(indices, per-sample losses)``."""
    scores = torch.zeros(n)
    for batches in epochs:
        for idx, losses in batches:
            idx = torch.tensor(idx)
            scores[idx] = alpha * scores[idx] + (1 - alpha) * torch.tensor(losses).mean()
    return scores


def record(table: ScoreTable, epoch: int, plan: list[int], trained: list[int], losses: dict[int, float], bs: int):
    """One epoch of ``plan`` in batches of ``bs``: ``trained`` (in any order) reached the loss with ``losses``."""
    idx = torch.tensor(trained)
    loss = torch.tensor([losses[i] for i in trained])
    correct = torch.zeros(len(trained), dtype=torch.bool)
    plans = [EpochPlan(torch.tensor(plan))]
    update_scores(table, table.num_samples, [epoch], [idx], [loss], [correct], None, plans=plans, batch_size=bs)


# -- the rule ------------------------------------------------------------------------------------------------
def test_the_rule_on_crafted_batches_by_hand():
    """8 samples, batches of 2. Epoch 0 plans [5, 0 | 2, 7 | 1]; 7 is dropped (a selector), the rows come back
    out of plan order (as all-gathered): batch means 2, 6 (2 alone), 4. Epoch 1 plans [3, 5 | 1]: means 3, 2.
    Samples 4 and 6 are in no batch: they keep 0, and 7 (dropped) too."""
    table = ScoreTable(8)
    record(table, 0, [5, 0, 2, 7, 1], [2, 1, 0, 5], {5: 1.0, 0: 3.0, 2: 6.0, 1: 4.0}, 2)
    torch.testing.assert_close(table.batch_score, torch.tensor([0.2, 0.4, 0.6, 0.0, 0.0, 0.2, 0.0, 0.0]))
    record(table, 1, [3, 5, 1], [3, 5, 1], {3: 1.0, 5: 5.0, 1: 2.0}, 2)
    by_hand = torch.tensor([0.2, 0.9 * 0.4 + 0.2, 0.6, 0.3, 0.0, 0.9 * 0.2 + 0.3, 0.0, 0.0])
    torch.testing.assert_close(table.batch_score, by_hand)
    official = official_bls(
        8, [[([5, 0], [1.0, 3.0]), ([2], [6.0]), ([1], [4.0])], [([3, 5], [1.0, 5.0]), ([1], [2.0])]]
    )
    torch.testing.assert_close(table.batch_score, official)
    assert table.times_trained.tolist() == [1, 2, 1, 1, 0, 2, 0, 0]  # the per-sample record goes on as before


def test_the_rule_matches_the_official_loop_on_random_epochs():
    """Random plans over 5 epochs (N = 50, batches of 8, a short last batch, some samples left out): the
    epoch-at-once update equals the official per-batch loop."""
    g = torch.Generator().manual_seed(0)
    n, bs, table, history = 50, 8, ScoreTable(50), []
    for e in range(5):
        plan = torch.randperm(n, generator=g)[: 30 + 4 * e]
        losses = 3 * torch.rand(plan.numel(), generator=g)
        record(table, e, plan.tolist(), plan.tolist(), dict(zip(plan.tolist(), losses.tolist())), bs)
        history.append([(plan[s : s + bs].tolist(), losses[s : s + bs].tolist()) for s in range(0, plan.numel(), bs)])
    torch.testing.assert_close(table.batch_score, official_bls(n, history), rtol=1e-6, atol=1e-7)
    assert torch.equal(table.batch_score == 0, table.times_trained == 0)  # a sample in no batch keeps 0


def test_k_runs_in_one_update_equal_each_run_alone_and_mixup_rows_count():
    """The batched engine's form (K runs at rows [k N, (k + 1) N)) gives each run what it gets alone; a mix-up
    row's (mixed) loss counts in its batch's mean while the per-sample statistics leave it out."""
    g = torch.Generator().manual_seed(1)
    n, bs = 20, 4
    plans = [EpochPlan(torch.randperm(n, generator=g)[:k]) for k in (13, 20)]
    losses = [torch.rand(p.indices.numel(), generator=g) for p in plans]
    correct = [torch.zeros(p.indices.numel(), dtype=torch.bool) for p in plans]
    mixed = [torch.arange(p.indices.numel()) % 3 == 0 for p in plans]
    both = ScoreTable(2 * n)
    idx = [p.indices for p in plans]
    update_scores(both, n, [0, 0], idx, losses, correct, mixed, plans=plans, batch_size=bs)
    for k in range(2):
        alone = ScoreTable(n)
        update_scores(alone, n, [0], idx[k : k + 1], losses[k : k + 1], correct[k : k + 1], mixed[k : k + 1],
                      plans=plans[k : k + 1], batch_size=bs)  # fmt: skip
        assert torch.equal(both.batch_score[k * n : (k + 1) * n], alone.batch_score)
        means = torch.stack([chunk.mean() for chunk in losses[k].split(bs)]).repeat_interleave(bs)[: idx[k].numel()]
        torch.testing.assert_close(alone.batch_score[idx[k]], 0.1 * means)  # mixed rows in the mean
        assert not alone.observed[idx[k][mixed[k]]].any()  # ... not in the per-sample statistics
        torch.testing.assert_close(batch_means(plans[k : k + 1], idx[k : k + 1], losses[k : k + 1], bs, n), means)


def test_rate_and_errors_are_checked_once():
    t = ScoreTable(3, batch_ema_rate=0.5)
    t.update_batch_scores(torch.tensor([0, 2]), torch.tensor([2.0, 4.0]))
    t.update_batch_scores(torch.tensor([2]), torch.tensor([0.0]))
    assert t.batch_score.tolist() == [1.0, 0.0, 1.0]
    with pytest.raises(ValueError, match=r"batch_ema_rate=0.0 must be a fraction in \(0, 1\]"):
        ScoreTable(3, batch_ema_rate=0.0)
    for make in (InfoBatchPruner, SeTaPruner):
        with pytest.raises(ValueError, match="score='loss' is not allowed; allowed: sample, batch"):
            make(score="loss")
    with pytest.raises(ValueError, match="score='per-batch' is not allowed; allowed: sample, batch"):
        PruningEnv("synthetic-mlp", pruner="infobatch", pruner_kwargs={"score": "per-batch"})
    with pytest.raises(ValueError, match="bad hyperparameters for pruner 'ucb'.*score"):
        make_pruner("ucb", score="batch")


# -- the default path ------------------------------------------------------------------------------------------
def test_batch_scores_change_nothing_else():
    """The same epochs with and without the batches: every other field is bit-identical, and without them the
    batch scores stay 0."""
    g = torch.Generator().manual_seed(2)
    with_b, without = ScoreTable(40), ScoreTable(40)
    for e in range(3):
        plan = EpochPlan(torch.randperm(40, generator=g)[:30])
        args = ([e], [plan.indices], [torch.rand(30, generator=g)], [torch.rand(30, generator=g) > 0.5], None)
        update_scores(with_b, 40, *args, plans=[plan], batch_size=8)
        update_scores(without, 40, *args)
    a, b = with_b.state_dict(), without.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k != "batch_score")
    assert bool((a["batch_score"] > 0).any()) and not b["batch_score"].any()


def test_default_pruners_read_the_sample_loss():
    """InfoBatch and SeTa without ``score`` (or ``score="sample"``) read the latest loss, never the batch score."""
    g = torch.Generator().manual_seed(3)
    t = ScoreTable(200)
    t.loss.copy_(torch.rand(200, generator=g))
    t.observed.fill_(True)
    t.batch_score.copy_(1 - t.loss)  # the opposite order
    for kwargs in ({}, {"score": "sample"}):
        p = InfoBatchPruner(**kwargs)
        p.reset(200, 10, "cpu", torch.Generator().manual_seed(0))
        kept = set(p.plan(1, t, {"prune_ratio": 0.5}).indices.tolist())
        assert set(torch.nonzero(t.loss >= t.loss.mean()).view(-1).tolist()) <= kept
        s = SeTaPruner(**kwargs)
        s.reset(200, 10, "cpu", torch.Generator())
        assert torch.equal(s.scores_of(t), t.loss)


def test_seeded_episodes_reproduce_head():
    """InfoBatch and SeTa episodes under the pinned AVX2 float path: the kept sets of every step and the final
    losses are those of the code before BLS (measured on commit fbebe95)."""
    code = """
import hashlib, json
from prunegym.baselines import make_policy
from prunegym.envs import PruningEnv
out = {}
for pruner in ("infobatch", "seta"):
    env = PruningEnv("synthetic-mlp", pruner=pruner, epochs=3, train_size=600, val_size=200, test_size=200,
                     batch_size=64)
    policy = make_policy(pruner, env)
    obs, _ = env.reset(seed=0)
    h, done = hashlib.sha256(), False
    while not done:
        obs, _, term, trunc, info = env.step(policy.predict(obs)[0])
        h.update(env._stats.last_trained.numpy().tobytes())
        done = term or trunc
    out[pruner] = [h.hexdigest()[:16], repr(env.run.scores.loss.double().sum().item())]
print(json.dumps(out))
"""
    got = json.loads(run_pinned(code).strip().splitlines()[-1])
    assert got == {
        "infobatch": ["aefb2e4916935d61", "860.6888964176178"],
        "seta": ["9d5523d4f2da2c8b", "890.0997431129217"],
    }


# -- InfoBatch and SeTa with score="batch" -----------------------------------------------------------------------
@pytest.mark.parametrize("r", [0.3, 0.5, 0.8])
def test_infobatch_keeps_what_the_rule_says_of_the_batch_scores(r):
    """The official InfoBatch rule on the batch scores: all of D2 (score >= mean) with weight 1, exactly
    ``int(keep |D1|)`` of D1 with weight ``1 / keep``; the latest losses (here the opposite order) play no part."""
    g = torch.Generator().manual_seed(4)
    t = ScoreTable(300)
    t.batch_score.copy_(torch.rand(300, generator=g).square())
    t.loss.copy_(1 - t.batch_score)
    p = InfoBatchPruner(score="batch")
    p.reset(300, 10, "cpu", torch.Generator().manual_seed(0))
    plan = p.plan(1, t, {"prune_ratio": r})
    below = t.batch_score < t.batch_score.mean()
    keep = min(1.0, max(0.1, 1.0 - r))
    d1, d2 = set(torch.nonzero(below).view(-1).tolist()), set(torch.nonzero(~below).view(-1).tolist())
    kept = plan.indices.tolist()
    assert d2 <= set(kept) and len(set(kept) & d1) == int(keep * len(d1)) == len(kept) - len(d2)
    for i, w in zip(kept, plan.weights.tolist()):
        assert w == pytest.approx(1 / keep if i in d1 else 1.0)
    assert p.plan(0, ScoreTable(300), {"prune_ratio": r}).indices.numel() == 300  # every score 0: keep all


def test_seta_scores_samples_in_no_batch_zero_as_the_official_bls():
    """80 samples with batch scores in four tight clusters and 20 in no batch yet (batch score 0, never trained):
    BLS starts every score at 0, so at t = 1 (groups 1-4 of 5) the window drops them with the easiest group;
    ``score="sample"`` scores them 3 (SeTa's start) and keeps them with the hard groups."""
    g = torch.Generator().manual_seed(0)
    labels = (torch.arange(100) // 20)[torch.randperm(100, generator=g)]
    untrained = labels == 4
    t = ScoreTable(100)
    t.batch_score.copy_(torch.where(untrained, 0.0, 0.1 + 0.05 * labels.float() + 0.004 * torch.rand(100, generator=g)))
    t.loss.copy_(t.batch_score * 10)
    t.observed.copy_(~untrained)

    def window_at_1(score: str) -> set[int]:
        s = SeTaPruner(score=score)
        s.reset(100, 10, "cpu", torch.Generator().manual_seed(0))
        s.plan(0, t, {"prune_ratio": 0.0, "window_scale": 0.9})
        return set(s.plan(1, t, {"prune_ratio": 0.0, "window_scale": 0.9}).indices.tolist())

    def members(groups) -> set[int]:
        return set(torch.nonzero(torch.isin(labels, torch.tensor(groups))).view(-1).tolist())

    assert window_at_1("batch") == members([0, 1, 2, 3])  # the 20 in no batch (score 0) dropped
    assert window_at_1("sample") == members([1, 2, 3, 4])  # scored 3: kept with the hard groups


# -- env episodes through both engines ---------------------------------------------------------------------------
def test_infobatch_episode_on_batch_scores_single_and_batched_engines():
    """``pruner_kwargs={"score": "batch"}``: both engines fill the batch scores (epoch 0: 0.1 x the mean loss of
    each batch of 64 in training order), InfoBatch keeps all of D2 of them at epoch 1, and the vector env's
    runs keep the same samples, in the same order, as PruningEnv's."""
    kw = dict(pruner="infobatch", pruner_kwargs={"score": "batch"}, **SMALL)
    envs = [PruningEnv("synthetic-mlp", **kw) for _ in range(2)]
    venv = PruningVectorEnv("synthetic-mlp", 2, **kw)
    policy = make_policy("infobatch", envs[0])
    obs = [e.reset(seed=7 + i)[0] for i, e in enumerate(envs)]
    venv.reset(seed=7)
    kept, sample_kept = [], []
    for step in range(SMALL["epochs"]):
        before = [e.run.scores.batch_score.clone() for e in envs]
        a = policy.predict(obs[0])[0]
        obs = [e.step(a)[0] for e in envs]
        venv.step(np.stack([a, a]))
        for i, e in enumerate(envs):
            trained = e._stats.last_trained
            assert torch.equal(venv.episodes[i].stats.last_trained, trained), (step, i)
            torch.testing.assert_close(venv.batch.scores[i].batch_score, e.run.scores.batch_score, rtol=1e-5, atol=1e-6)
            if step == 0:  # every sample once: its loss is this epoch's; batches are chunks of the training order
                means = torch.stack([e.run.scores.loss[c].mean() for c in trained.split(64)])
                torch.testing.assert_close(e.run.scores.batch_score[trained], 0.1 * means.repeat_interleave(64)[:600])
            if step == 1:
                b = before[i]
                assert set(torch.nonzero(b >= b.mean()).view(-1).tolist()) <= set(trained.tolist())
                assert trained.numel() < 600
        kept.append(envs[0]._stats.last_trained.clone())
    venv.close()
    env = PruningEnv("synthetic-mlp", pruner="infobatch", **SMALL)  # the latest losses keep another set
    o = env.reset(seed=7)[0]
    for _ in range(2):
        o = env.step(policy.predict(o)[0])[0]
        sample_kept.append(env._stats.last_trained.clone())
    assert not torch.equal(torch.sort(sample_kept[1]).values, torch.sort(kept[1]).values)


# -- PruningSampler with score="batch" --------------------------------------------------------------------------
def test_sampler_takes_one_loss_per_batch_and_keeps_what_the_rule_says():
    """50 samples in batches of 10 reporting losses 0, 1, 5, 6, 8 (a number, a 0-d and a 1-element tensor):
    scores 0.1 x that; at epoch 1 InfoBatch keeps batches 2-4 (above the mean 0.4) with weight 1 and 10 of the 20
    of batches 0-1 with weight 2. The per-sample losses are not recorded; the training is."""
    s = PruningSampler("infobatch", num_samples=50, epochs=4, seed=0, score="batch")
    assert s.score == "batch"
    order = torch.tensor(list(s))
    loss_of = torch.tensor([0.0, 1.0, 5.0, 6.0, 8.0])
    for b, chunk in enumerate(order.split(10)):
        value = float(loss_of[b])
        s.update(chunk, [value, torch.tensor(value), torch.tensor([value])][b % 3])
    s.set_epoch(1)
    batch_of = torch.empty(50, dtype=torch.long)
    batch_of[order] = torch.arange(50) // 10
    torch.testing.assert_close(s.scores.batch_score, 0.1 * loss_of[batch_of])
    assert not s.scores.loss.any() and not s.scores.observed.any() and s.scores.times_trained.eq(1).all()
    kept = torch.tensor(list(s))
    w = s.weights(kept)
    assert set(kept[w == 1.0].tolist()) == set(torch.nonzero(batch_of >= 2).view(-1).tolist())
    assert int((w == 2.0).sum()) == 10 and bool((batch_of[kept[w == 2.0]] < 2).all())


def test_sampler_with_batch_losses_plans_as_the_engine():
    """A plain loop with one loss per batch (the batch mean, backpropagated times the batch's mean weight, as
    the official BLS) against the engine's run of ``InfoBatchPruner(score="batch")``: the same batch scores after
    epoch 0 (which trains every sample with weight 1 in both) and so the same plans at epochs 0 and 1."""
    cfg = RunConfig(dataset="synthetic", model="mlp", model_kwargs={"hidden": (64,)}, epochs=3, batch_size=128,
                    lr_schedule="constant", seed=0)  # fmt: skip
    run = TrainingRun(cfg)
    p = InfoBatchPruner(score="batch")
    p.reset(run.num_train, cfg.epochs, run.device, run.generator("pruner"))
    engine_plans, engine_scores = [], []
    for e in range(2):
        plan = p.plan(e, run.scores, {"prune_ratio": 0.5})
        engine_plans.append(plan.indices.clone())
        p.update(run.run_epoch(plan), run.scores)
        engine_scores.append(run.scores.batch_score.clone())
    loop = TrainingRun(cfg)
    x, y = loop.data.x_train, loop.data.y_train
    s = PruningSampler("infobatch", num_samples=loop.num_train, epochs=cfg.epochs, seed=cfg.seed, score="batch")
    for e in range(2):
        s.set_epoch(e)
        if e == 1:
            torch.testing.assert_close(s.scores.batch_score, engine_scores[0], rtol=1e-4, atol=1e-5)
        assert torch.equal(s.plan.indices, engine_plans[e]), e
        for idx in torch.tensor(list(s)).split(cfg.batch_size):
            loss = F.cross_entropy(loop.model(x[idx]), y[idx])  # one loss per batch
            loop.optimizer.zero_grad()
            (loss * s.weights(idx).mean()).backward()
            loop.optimizer.step()
            s.update(idx, loss.detach())
    assert s.plan.indices.numel() < loop.num_train  # epoch 1 pruned


@pytest.mark.parametrize(
    "args, match",
    [
        ((torch.arange(3), torch.zeros(3)), r"takes one loss per batch .*got shape \(3,\) for 3 indices"),
        ((torch.arange(3), torch.zeros(1, 2)), r"got shape \(1, 2\) for 3 indices"),
        ((torch.arange(3), torch.tensor(1)), r"1-element float tensor\); got tensor\(1\) for 3 indices"),
        ((torch.arange(3), 0.5, torch.ones(3, dtype=torch.bool)), "records no per-sample correctness"),
    ],
)
def test_sampler_batch_update_errors_are_one_line(args, match):
    s = PruningSampler("infobatch", num_samples=10, epochs=2, seed=0, score="batch")
    list(s)
    with pytest.raises(ValueError, match=match) as err:
        s.update(*args)
    assert "\n" not in str(err.value)


def test_sampler_score_errors():
    with pytest.raises(ValueError, match="score='batches' is not allowed; allowed: sample, batch"):
        PruningSampler("infobatch", num_samples=10, epochs=2, score="batches")
    with pytest.raises(ValueError, match="pruner 'ucb' has no knob.s. score"):
        PruningSampler("ucb", num_samples=10, epochs=2, score="batch")
    s = PruningSampler("infobatch", num_samples=10, epochs=2)  # the default: one loss per sample
    list(s)
    assert s.score == "sample"
    with pytest.raises(ValueError, match="3 indices but 1 losses"):
        s.update(torch.arange(3), torch.tensor([0.5]))
