"""The baselines through the env API: registries, fixed policies (defaults, overrides, schedules) and whole
synthetic episodes (InfoBatch's annealing, PFB's window, SwDPP's Mixup, global-RNG isolation, seeded
reproducibility)."""

from __future__ import annotations

import math
import random
import re

import gymnasium
import numpy as np
import pytest
import torch

from prunegym.baselines import POLICIES, PRUNERS, make_policy, make_pruner, policy_pruner
from prunegym.baselines.pfb import pfb_window
from prunegym.envs import PruningEnv

pytestmark = pytest.mark.usefixtures("one_thread")


SYNTHETIC_ID = "prunegym.envs:prunegym/Synthetic-MLP-v0"
SMALL = dict(epochs=3, train_size=1000)

PAPER_DEFAULTS = {
    "full": {},
    "uniform": {"prune_ratio": 0.5},
    "uniform_rescaled": {"prune_ratio": 0.5, "delta": 0.875},
    "infobatch": {"prune_ratio": 0.5, "delta": 0.875},
    "swdpp": {"prune_ratio": 0.3, "floor": 0.2, "mix_prob": None},
    "pfb": {"prune_ratio": 0.4, "start_fraction": 16 / 300, "end_fraction": 260 / 300},
    "epsilon_greedy": {"prune_ratio": 0.5, "epsilon": 0.1},
    "ucb": {"prune_ratio": 0.5, "c": 1.0},
    "seta": {"prune_ratio": 0.1, "window_scale": 0.9, "delta": 0.875},
    "ies": {"threshold": 1e-3},
    "rcap": {"prune_ratio": 0.8, "beta": 0.25},
    "orderdp": {"prune_ratio": 0.7, "top_q_ratio": 0.375},
    # the budget-matched static baselines of the learned pruner (issue 16): neutral defaults, made to be tuned
    "static_const": {"sharpness": 0.0, "rescale": 0.0, "greedy": 0.0, "budget": None, "warmup_epochs": 1},
    "static_schedule": {
        "tilt": 0.0,
        "sharpness": 0.0,
        "rescale": 0.0,
        "greedy": 0.0,
        "budget": None,
        "warmup_epochs": 1,
    },
    "static_ramp": {
        "tilt": 0.0,
        "sharpness": 0.0,
        "sharpness_end": None,
        "rescale": 0.0,
        "greedy": 0.0,
        "budget": None,
        "warmup_epochs": 1,
    },
}


def budget_kwargs(name: str) -> dict:
    """A compute budget for the policies that only run under one."""
    return {"compute_budget": 0.5} if POLICIES[name].requires_budget else {}


def env_for(name: str, **kwargs) -> PruningEnv:
    return PruningEnv(task="synthetic-mlp", pruner=policy_pruner(name), **budget_kwargs(name), **kwargs)


def schedule_of(name: str, epochs: int, **hparams) -> list[dict]:
    policy = make_policy(name, env_for(name, epochs=epochs), **hparams)
    return [policy.schedule(e) for e in range(epochs)]


def run_episode(name: str, seed: int = 0, record_plans: bool = False, **env_kwargs):
    """One episode of policy ``name`` on the synthetic task; returns (infos, plans)."""
    env = gymnasium.make(SYNTHETIC_ID, pruner=policy_pruner(name), **budget_kwargs(name), **env_kwargs)
    policy = make_policy(name, env)
    plans = []
    if record_plans:
        pruner = env.unwrapped.pruner
        plan = pruner.plan
        pruner.plan = lambda *a: plans.append(plan(*a)) or plans[-1]
    obs, _ = env.reset(seed=seed)
    infos, done = [], False
    while not done:
        action, _ = policy.predict(obs)
        obs, _, term, trunc, info = env.step(action)
        infos.append(info)
        done = term or trunc
    env.close()
    return infos, plans


# -- registries and policies -----------------------------------------------------------------------------------
def test_registries_list_every_method():
    assert set(PRUNERS) == {
        "full",
        "uniform",
        "infobatch",
        "swdpp",
        "pfb",
        "epsilon_greedy",
        "ucb",
        "seta",
        "ies",
        "rcap",
        "orderdp",
        "learned",
    }
    assert set(POLICIES) == set(PAPER_DEFAULTS)
    assert {n: policy_pruner(n) for n in POLICIES} == {
        "full": "full",
        "uniform": "uniform",
        "uniform_rescaled": "uniform",
        "infobatch": "infobatch",
        "swdpp": "swdpp",
        "pfb": "pfb",
        "epsilon_greedy": "epsilon_greedy",
        "ucb": "ucb",
        "seta": "seta",
        "ies": "ies",
        "rcap": "rcap",
        "orderdp": "orderdp",
        "static_const": "learned",
        "static_schedule": "learned",
        "static_ramp": "learned",
    }
    for name in PRUNERS:
        assert make_pruner(name).name == name
    with pytest.raises(ValueError, match="bad hyperparameters"):
        make_pruner("infobatch", delta=0.5)  # the policy, not the pruner, has delta


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_policy_defaults_are_the_papers_and_overridable(name):
    env = env_for(name)
    assert make_policy(name, env).hparams == PAPER_DEFAULTS[name]
    if PAPER_DEFAULTS[name]:
        key = next(iter(PAPER_DEFAULTS[name]))
        value = 0.01 if key == "threshold" else 0.2  # IES's threshold knob spans [1e-5, 1e-1]
        assert make_policy(name, env, **{key: value}).hparams[key] == value
    with pytest.raises(ValueError, match="no hyperparameter"):
        make_policy(name, env, bogus=1.0)


@pytest.mark.parametrize(
    "name,bad",
    [
        ("infobatch", {"delta": 1.5}),
        ("swdpp", {"floor": -0.1}),
        ("swdpp", {"mix_prob": 2.0}),
        ("pfb", {"start_fraction": 0.9}),
        ("epsilon_greedy", {"epsilon": 1.2}),
        ("ucb", {"c": -1.0}),
        ("infobatch", {"prune_ratio": 0.95}),
    ],
)
def test_policy_rejects_bad_values(name, bad):
    ((key, value),) = bad.items()
    with pytest.raises(ValueError, match=f"{key}={value!r}"):
        make_policy(name, env_for(name), **bad)


@pytest.mark.parametrize(
    "name,key,value,bounds", [("epsilon_greedy", "epsilon", 1.2, "[0.0, 1.0]"), ("ucb", "c", 4.5, "[0.0, 4.0]")]
)
def test_policy_checks_knob_hyperparameters_against_the_knob_range(name, key, value, bounds):
    env = env_for(name)
    knob = next(k for k in env.unwrapped.codec.knobs if k.name == key)
    assert f"[{knob.low}, {knob.high}]" == bounds
    with pytest.raises(ValueError, match=re.escape(f"{key}={value!r} is out of range {bounds}")):
        make_policy(name, env, **{key: value})
    make_policy(name, env, **{key: knob.high})  # the range is closed


def test_policy_needs_its_pruner():
    with pytest.raises(ValueError, match="pruner='infobatch'"):
        make_policy("infobatch", env_for("uniform"))


@pytest.mark.parametrize("epochs,first_full", [(10, 8), (8, 7), (300, 262), (3, 2)])
def test_infobatch_schedule_anneals_from_floor_delta_e(epochs, first_full):
    ratios = [s["prune_ratio"] for s in schedule_of("infobatch", epochs)]
    assert ratios == [0.5] * first_full + [0.0] * (epochs - first_full)


@pytest.mark.parametrize(
    "epochs,window",
    [(300, (16, 260)), (10, (1, 9)), (20, (1, 17)), (100, (5, 87)), (8, (1, 7)), (5, (1, 4)), (3, (1, 3)), (1, (1, 1))],
)
def test_pfb_schedule_window(epochs, window):
    """The authors' window; epoch 0 is never pruned, whatever the run length (before issue 11, runs of 9
    epochs or fewer pruned it: round(16 / 300 * E) = 0)."""
    assert pfb_window(16 / 300, 260 / 300, epochs) == window
    ratios = [s["prune_ratio"] for s in schedule_of("pfb", epochs)]
    assert [e for e, r in enumerate(ratios) if r > 0] == list(range(*window))
    assert set(ratios) == ({0.0, 0.4} if epochs > 1 else {0.0})


def test_swdpp_mix_prob_follows_ratio_unless_given():
    assert schedule_of("swdpp", 4)[1] == {"prune_ratio": 0.3, "floor": 0.2, "mix_prob": 0.3}
    assert schedule_of("swdpp", 4, prune_ratio=0.6)[1]["mix_prob"] == 0.6
    assert schedule_of("swdpp", 4, prune_ratio=0.6, mix_prob=0.1)[1]["mix_prob"] == 0.1


@pytest.mark.parametrize("name", ["epsilon_greedy", "ucb", "swdpp", "pfb", "infobatch"])
def test_predict_encodes_the_schedule(name):
    env = env_for(name, epochs=10)
    policy = make_policy(name, env)
    obs = np.zeros((2, len(env.feature_names)), dtype=np.float32)
    obs[1, env.feature_names.index("epoch_fraction")] = 0.5
    actions, state = policy.predict(obs)
    assert actions.shape == (2, env.action_space.shape[0]) and state is None
    for o, a in zip(obs, actions):
        decoded = env.decode_action(a)
        for k, v in policy.schedule(policy.epoch_of(o)).items():
            assert decoded[k] == pytest.approx(v, abs=1e-6)


# -- whole synthetic episodes --------------------------------------------------------------------------------
def test_infobatch_episode_prunes_then_anneals_with_weight_one():
    infos, plans = run_episode("infobatch", record_plans=True, epochs=10)  # floor(0.875 * 10) = 8
    n = 4000
    assert [round(i["prune_ratio"], 6) for i in infos] == [0.5] * 8 + [0.0] * 2
    for e, (plan, info) in enumerate(zip(plans, infos)):
        assert info["kept_fraction"] == pytest.approx(plan.indices.numel() / n)
        if e == 0 or e >= 8:  # all scores equal before training; annealing after
            assert plan.indices.numel() == n
            assert plan.weights is None or torch.all(plan.weights == 1)
        else:
            assert 0.5 < info["kept_fraction"] < 0.95
            assert set(plan.weights.unique().tolist()) == {1.0, 2.0}
    assert 0.6 < infos[-1]["compute_fraction_total"] < 0.9


def test_pfb_episode_keeps_every_row_outside_the_window():
    """Outside the window the plan keeps every row, claims 0, and its selector (since issue 11: before, there
    was none) warms the density estimator up at a cost charged as selector FLOPs."""
    infos, plans = run_episode("pfb", record_plans=True, epochs=10)
    kept = [i["kept_fraction"] for i in infos]
    assert kept[0] == kept[9] == 1.0
    assert [p.selector.prune_ratio for p in plans] == [0.0] + [0.4] * 8 + [0.0]
    assert [i["claimed_prune_ratio"] for i in infos] == [0.0] + [0.4] * 8 + [0.0]
    deep = (4000 // 128) * math.floor(0.6 * 128) + math.floor(0.6 * (4000 % 128))
    assert kept[1:9] == [pytest.approx(deep / 4000)] * 8
    assert all(i["selector_compute_fraction_step"] > 0 for i in infos)
    assert infos[-1]["selector_compute_fraction_total"] == pytest.approx(
        sum(i["selector_compute_fraction_step"] for i in infos)
    )
    # the model's own passes save compute; on this 32-64-8 MLP the selector's arithmetic costs more than that
    assert infos[-1]["compute_fraction_total"] - infos[-1]["selector_compute_fraction_total"] < 1.0


def test_swdpp_episode_mixes_kept_rows():
    infos, plans = run_episode("swdpp", record_plans=True, epochs=3)
    assert plans[0].mixup is None and len(plans[0].indices) == 1000 * 4  # warm-up: full data
    for plan, info in zip(plans[1:], infos[1:]):
        assert info["kept_fraction"] == pytest.approx(0.7)
        assert abs(float((plan.mixup.lam < 1).float().mean()) - 0.3) < 0.05


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_episode_leaves_global_rngs_alone_and_repeats_from_seed(name):
    torch.manual_seed(54321), np.random.seed(54321), random.seed(54321)  # a known state, not the one found
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    first, _ = run_episode(name, seed=3, **SMALL)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and np.random.get_state()[2] == np_state[2]
    assert random.getstate() == py_state
    torch.manual_seed(12345)  # a different global state must not change the episode
    second, _ = run_episode(name, seed=3, **SMALL)
    torch.set_rng_state(torch_state)
    keys = ("kept_fraction", "val_accuracy", "compute_fraction_total", "train_loss")
    assert [[i[k] for k in keys] for i in first] == [[i[k] for k in keys] for i in second]
    assert first[-1]["test_accuracy"] == second[-1]["test_accuracy"]


@pytest.mark.parametrize("name", ["infobatch", "swdpp", "pfb", "epsilon_greedy", "ucb"])
@pytest.mark.parametrize("corner", [-1.0, 1.0])
def test_extreme_actions_keep_the_episode_finite(name, corner):
    """Every action component at -1 (no pruning, knobs at their lows) or +1 (prune ratio 0.9, knobs high)."""
    env = PruningEnv(task="synthetic-mlp", pruner=name, **SMALL)
    action = np.full(env.action_space.shape, corner, np.float32)
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        obs, reward, term, trunc, info = env.step(action)
        assert env.observation_space.contains(obs) and np.all(np.isfinite(obs)) and math.isfinite(reward)
        done = term or trunc
        if corner < 0:
            assert info["kept_fraction"] == 1.0
    assert "error" not in info
    if corner > 0:  # the last epoch prunes (PFB's savings are capped by the MLP's large shallow share)
        # PFB's selector FLOPs (charged since issue 11) exceed what this tiny MLP saves: judge its model passes
        model_compute = info["compute_fraction_total"] - info["selector_compute_fraction_total"]
        assert info["kept_fraction"] < 0.7 and model_compute < 0.9
        if name != "pfb":
            assert info["compute_fraction_total"] == model_compute
