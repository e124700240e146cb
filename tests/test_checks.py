"""Issue 22 item 3: values checked once, at the edge. One ``check_seed`` and one ``check_fraction`` serve every
entry point (same one-line message wherever the value enters), the seed bounds are named constants, and a
``ComputeBudget`` owns the unit changes between a budget fraction, the FLOPs left and the share left."""

from __future__ import annotations

import numpy as np
import pytest

from prunegym.training import (
    DRAWN_SEED_LIMIT,
    SEED_LIMIT,
    ComputeBudget,
    ComputeMeter,
    PassCounts,
    RunConfig,
    check_fraction,
    check_seed,
)
from prunegym.training.flops import PassFlops

SMALL = dict(epochs=2, train_size=300, val_size=100, test_size=100)


@pytest.mark.parametrize("bad", [1.5, True, np.bool_(False), "3", None])
def test_every_seed_entry_point_gives_the_one_message(bad):
    from prunegym.agents import evaluate
    from prunegym.envs import PruningEnv, PruningVectorEnv
    from prunegym.training import BatchedTrainingRun

    want = f"seed={bad!r} must be an int in [0, 2**63)"
    entries = {
        "check_seed": lambda: check_seed(bad),
        "RunConfig": lambda: RunConfig(seed=bad),
        "evaluate": lambda: evaluate("uniform", "prunegym/Synthetic-MLP-v0", [bad], results=None, **SMALL),
        "BatchedTrainingRun": lambda: BatchedTrainingRun(RunConfig(**SMALL), [bad]),
    }
    if bad is not None:  # None means "draw one" to an env's reset
        entries["PruningEnv.reset"] = lambda: PruningEnv("synthetic-mlp", **SMALL).reset(seed=bad)
        entries["PruningVectorEnv.reset"] = lambda: PruningVectorEnv("synthetic-mlp", 1, **SMALL).reset(seed=[bad])
    for name, call in entries.items():
        with pytest.raises(ValueError) as info:
            call()
        msg = str(info.value)
        assert "\n" not in msg, name
        core = want.replace("seed=", "seeds=") if name == "BatchedTrainingRun" else want
        assert core.split(" must")[0] in msg and "must be an int in [0, 2**63)" in msg, (name, msg)


def test_seed_bounds_are_named_and_checked():
    assert SEED_LIMIT == 2**63 and DRAWN_SEED_LIMIT == 2**31 - 1
    assert check_seed(np.int64(7)) == 7 and type(check_seed(np.int64(7))) is int
    assert RunConfig(seed=np.int64(3)).seed == 3  # stored as a Python int (records stay JSON)
    with pytest.raises(ValueError, match=r"seed=9223372036854775808 is outside the allowed range \[0, 2\*\*63\)"):
        RunConfig(seed=2**63)
    from prunegym.envs import PruningEnv

    env = PruningEnv("synthetic-mlp", **SMALL)
    _, info = env.reset()  # no seed: the env draws one from its own generator
    assert 0 <= info["seed"] < DRAWN_SEED_LIMIT


@pytest.mark.parametrize("bad", [1.5, 0.0, -0.2, float("nan"), True, "0.5"])
def test_every_budget_entry_point_gives_the_one_message(bad):
    from prunegym.agents.evaluation.calibration import calibrate
    from prunegym.agents.evaluation.matched_compute import compare_budgets
    from prunegym.agents.evaluation.tuning import tune
    from prunegym.baselines import PruningSampler
    from prunegym.baselines.static import budget_keep_fractions
    from prunegym.envs import PruningEnv

    env = PruningEnv("synthetic-mlp", compute_budget=0.5, **SMALL)
    entries = {
        "budget": [
            lambda: check_fraction(bad, "budget"),
            lambda: calibrate("prunegym/Synthetic-MLP-v0", "uniform", bad, runner=pytest.fail),
            lambda: tune("prunegym/Synthetic-MLP-v0", "static_const", bad, 1, runner=pytest.fail),
            lambda: budget_keep_fractions(bad, 10),
            lambda: PruningSampler("uniform", num_samples=100, epochs=3, budget=bad),
            lambda: compare_budgets("prunegym/Synthetic-MLP-v0", [0], [bad], policies=["uniform"]),
        ],
        "compute_budget": [
            lambda: env.reset(seed=0, options={"compute_budget": bad}),
            lambda: ComputeBudget(bad),
        ],
    }
    for name, calls in entries.items():
        for call in calls:
            with pytest.raises(ValueError) as info:
                call()
            msg = str(info.value)
            assert msg.startswith(f"{name}={bad!r} must be a fraction in (0, 1]") and "\n" not in msg, msg
    assert check_fraction(np.float32(0.5), "x") == 0.5 and check_fraction(1, "x") == 1.0


def test_a_compute_budget_owns_its_unit_changes():
    flops = PassFlops(shallow_forward=1.0, deep_forward=2.0, shallow_backward=2.0, deep_backward=5.0)
    meter = ComputeMeter(flops, num_samples=100, epochs=10)  # a full epoch: 100 x 10 FLOPs; the run 10,000
    budget = ComputeBudget(0.3)
    assert budget.flops_left(meter) == pytest.approx(3000.0) and budget.share_left(meter) == 1.0
    meter.charge(PassCounts(100, 100, 100, 100))  # one full epoch
    assert budget.flops_left(meter) == pytest.approx(2000.0)
    assert budget.share_left(meter) == pytest.approx((0.3 - 0.1) / 0.3)
    for _ in range(3):
        meter.charge(PassCounts(100, 100, 100, 100))
    assert budget.flops_left(meter) == 0.0 and budget.share_left(meter) == 0.0  # overspent: never negative
