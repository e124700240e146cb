"""The engine's support for IES's end-of-epoch scoring pass (``EpochPlan.score_after``) and for an in-batch
selector's own FLOPs (``Selector.flops``, ``PassCounts.selector_flops``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from prunegym.training import EpochPlan, RunConfig, TrainingRun, selector_flops

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_run(label_smoothing: float = 0.0) -> TrainingRun:
    cfg = RunConfig(
        dataset="synthetic",
        model="mlp",
        model_kwargs={"hidden": (32,)},
        epochs=3,
        batch_size=64,
        train_size=500,
        val_size=100,
        seed=0,
        label_smoothing=label_smoothing,
        eval_batch_size=128,
    )
    return TrainingRun(cfg)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_score_after_returns_eval_losses_after_training_and_charges_this_epoch(label_smoothing):
    run = tiny_run(label_smoothing)
    out = torch.arange(400, 500)
    plan = EpochPlan(torch.randperm(400, generator=torch.Generator().manual_seed(0)), score_after=out)
    res = run.run_epoch(plan)
    assert torch.equal(res.scored_indices, out)
    run.model.eval()
    with torch.no_grad():  # the model after the epoch's training, eval mode, the training criterion
        expected = F.cross_entropy(
            run.model(run.data.x_train[out]), run.data.y_train[out], reduction="none", label_smoothing=label_smoothing
        )
    torch.testing.assert_close(res.scored_losses, expected)
    assert res.passes.scoring_forward == 100 and res.kept_fraction == pytest.approx(0.8)
    f = run.meter.flops
    assert res.flops == pytest.approx(400 * f.train_step + 100 * f.forward)
    assert run.meter.total_by_category["scoring_forward"] == pytest.approx(100 * f.forward)
    assert not set(res.indices.tolist()) & set(out.tolist())  # scored, not trained
    assert int(run.scores.times_trained[out].sum()) == 0
    nxt = run.run_epoch(run.full_plan())  # nothing pending for the next epoch
    assert nxt.passes.scoring_forward == 0 and nxt.scored_indices is None and nxt.scored_losses is None


def test_score_after_empty_and_score_still_charges_the_next_epoch():
    run = tiny_run()
    res = run.run_epoch(EpochPlan(torch.arange(500), score_after=torch.zeros(0, dtype=torch.int64)))
    assert res.scored_losses.numel() == 0 and res.passes.scoring_forward == 0
    run.score(torch.arange(30))
    res = run.run_epoch(EpochPlan(torch.arange(500), score_after=torch.arange(5)))
    assert res.passes.scoring_forward == 30 + 5


@pytest.mark.parametrize("bad,match", [(torch.arange(3.0), "1-D int64"), (torch.tensor([0, 500]), r"\[0, 500\)")])
def test_score_after_is_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        tiny_run().run_epoch(EpochPlan(torch.arange(10), score_after=bad))


def test_selector_flops_protocol():
    """A selector with ``flops`` is charged what it reports per batch (host ints: rows in, rows kept, feature
    shape); a plain callable costs 0."""
    calls = []

    class Counted:
        def __call__(self, features, batch_indices):
            return torch.arange(features.shape[0] // 2)

        def flops(self, rows_in, rows_kept, feature_shape):
            calls.append((rows_in, rows_kept, feature_shape))
            return 10.0 * rows_in + rows_kept

    def plain(features, batch_indices):
        return torch.arange(features.shape[0])

    assert selector_flops(plain, 8, 8, (8, 4)) == 0.0
    run = tiny_run()
    res = run.run_epoch(EpochPlan(torch.arange(500), selector=Counted()))
    batches = [64] * 7 + [52]
    assert calls == [(b, b // 2, (b, 32)) for b in batches]
    assert res.passes.selector_flops == sum(10.0 * b + b // 2 for b in batches)
    f = run.meter.flops
    deep = sum(b // 2 for b in batches)
    assert res.flops == pytest.approx(
        500 * (f.shallow_forward + f.shallow_backward)
        + deep * (f.deep_forward + f.deep_backward)
        + res.passes.selector_flops
    )
    res = run.run_epoch(EpochPlan(torch.arange(500), selector=plain))
    assert res.passes.selector_flops == 0.0
