"""``static_ramp`` (issue 23): ``static_schedule`` with a linear sharpness schedule. The per-epoch sharpness
follows the rule of :mod:`prunegym.baselines.static`; without an end value the actions are exactly those the
static policies gave before the ramp existed; ``tune`` searches the end value; a whole episode (plain and
under ``ResidualAction(track_budget=True)``) plays the ramp; bad values are one-line errors."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import numpy as np
import pytest

from prunegym.agents.evaluation.episode import policy_spec, run_episode
from prunegym.agents.evaluation.tuning import load_tuned, search_space, tune
from prunegym.baselines import POLICIES, make_policy
from prunegym.baselines.static import sharpness_schedule
from prunegym.envs import PruningEnv, ResidualAction

pytestmark = pytest.mark.usefixtures("one_thread")

ENV = "prunegym/Synthetic-MLP-v0"
EPISODE_KW = {"pruner": "learned", "compute_budget": 0.5, "epochs": 4, "train_size": 500}
KNOBS = {"sharpness": 0.3, "rescale": 0.2, "greedy": 0.1}
# sha256 of every action static_schedule and static_const gave before the ramp existed (captured from that
# code by _today_outputs: schedule(), action_for() and the re-planned action_at_keep(), 6 epochs, 3 budgets)
TODAY_DIGEST = "1a1bc01a13776b21a1c809166330ae05c2c26737f0c3f884c6e26e07bc412ab3"
# the same capture, readable: static_schedule at tilt 0.6, budget 0.5: action_for()'s component 0 per epoch
TODAY_TILT06_B05 = [-1.0, 0.7333333492279053, 0.5333333611488342, 0.3333333432674408, 0.13333334028720856]
TODAY_TILT06_B05 += [-0.06666667014360428]
TODAY_KNOBS = [0.30000001192092896, -0.6000000238418579, -0.800000011920929]  # sharpness, rescale, greedy


def _rule(s0, s1, epochs, w=1):
    """The module docstring's rule, written out: s0 in warm-up, then linear in u over the pruned epochs."""
    n = epochs - w
    return [s0 if e < w else s0 + (s1 - s0) * (0.5 if n == 1 else (e - w) / (n - 1)) for e in range(epochs)]


def test_the_sharpness_schedule_follows_the_rule():
    assert sharpness_schedule(0.8, -0.4, 6) == pytest.approx([0.8, 0.8, 0.5, 0.2, -0.1, -0.4])
    for s0, s1, epochs, w in [(0.8, -0.4, 6, 1), (-0.2, 0.9, 5, 2), (0.5, -0.5, 7, 0), (-1.0, 1.0, 9, 1)]:
        ramp = sharpness_schedule(s0, s1, epochs, w)
        assert ramp == pytest.approx(_rule(s0, s1, epochs, w), abs=1e-15)
        assert ramp[w] == s0 and ramp[-1] == s1 and all(-1.0 <= s <= 1.0 for s in ramp)  # exact ends
    assert sharpness_schedule(0.4, -0.2, 2) == pytest.approx([0.4, 0.1])  # one pruned epoch: its midpoint
    assert sharpness_schedule(0.4, -0.2, 1) == [0.4]  # warm-up only
    assert sharpness_schedule(0.4, None, 5) == [0.4] * 5  # no end: constant


def test_a_ramped_policy_plays_the_rule_with_and_without_an_env():
    env = PruningEnv(pruner="learned", compute_budget=0.5, epochs=6, train_size=200)
    names = env.feature_names
    hp = {"tilt": 0.4, "sharpness": 0.8, "sharpness_end": -0.4, "rescale": 0.2, "greedy": 0.1}
    want = _rule(0.8, -0.4, 6) + [-0.4]  # an epoch past the last one is the last one's
    by_schedule = make_policy("static_ramp", env, budget=0.5, **hp)
    assert [by_schedule.schedule(e)["sharpness"] for e in range(7)] == pytest.approx(want, abs=1e-15)
    by_obs = make_policy("static_ramp", env, **hp)
    for e in range(6):
        obs = np.zeros(len(names), np.float32)
        obs[names.index("epoch_fraction")], obs[names.index("compute_budget")] = e / 6, 0.5
        decoded = env.decode_action(by_obs.action_for(obs))
        assert decoded["sharpness"] == pytest.approx(want[e], abs=1e-6)
        assert decoded == env.decode_action(env.encode_action(**by_schedule.schedule(e)))
        assert env.decode_action(by_obs.action_at_keep(0.5, e))["sharpness"] == pytest.approx(want[e], abs=1e-6)


def _today_outputs(name: str, extra: dict) -> dict:
    """What the capture recorded for ``name``: schedule() per epoch (budget given), and action_for() and the
    re-planned action_at_keep() per epoch (budget read from a crafted observation), per budget."""
    env = PruningEnv(pruner="learned", compute_budget=0.5, epochs=6, train_size=200)
    names = env.feature_names
    out = {}
    for b in (0.3, 0.5, 0.8):
        hp = {**extra, **KNOBS}
        by_budget, by_obs = make_policy(name, env, budget=b, **hp), make_policy(name, env, **hp)
        acts, replanned = [], []
        for e in range(6):
            obs = np.zeros(len(names), np.float32)
            obs[names.index("epoch_fraction")], obs[names.index("compute_budget")] = e / 6, b
            obs[names.index("compute_used")] = min(b, e / 6 * 0.9)
            acts.append(by_obs.action_for(obs).tolist())
            replanned.append(by_obs.action_at_keep(by_obs.replanned_keep(obs)).tolist())
        sched = [by_budget.schedule(e) for e in range(7)]
        out[f"{name}|{json.dumps(extra)}|{b}"] = {"schedule": sched, "action_for": acts, "replanned": replanned}
    return out


def test_without_an_end_value_the_actions_are_exactly_todays():
    cases = [("static_schedule", {"tilt": t}) for t in (-1.0, 0.0, 0.6)] + [("static_const", {})]
    got = {k: v for name, extra in cases for k, v in _today_outputs(name, extra).items()}
    assert hashlib.sha256(json.dumps(got, sort_keys=True).encode()).hexdigest() == TODAY_DIGEST
    acts = got['static_schedule|{"tilt": 0.6}|0.5']["action_for"]
    assert [a[0] for a in acts] == TODAY_TILT06_B05 and all(a[1:] == TODAY_KNOBS for a in acts)
    for t in (-1.0, 0.0, 0.6):  # static_ramp without sharpness_end is static_schedule, bit for bit
        ramp = _today_outputs("static_ramp", {"tilt": t}).values()
        assert list(ramp) == list(_today_outputs("static_schedule", {"tilt": t}).values())


def test_tune_searches_the_end_value_and_writes_it(tmp_path):
    assert search_space("static_ramp") == {
        "tilt": (-1.0, 1.0, False),
        "sharpness": (-1.0, 1.0, False),
        "sharpness_end": (-1.0, 1.0, False),
        "rescale": (0.0, 1.0, False),
        "greedy": (0.0, 1.0, False),
    }
    assert list(search_space("static_schedule")) == ["tilt", "sharpness", "rescale", "greedy"]  # unchanged
    calls = []

    def runner(spec, env_id, env_kwargs, seed):
        calls.append(dict(spec.hparams))
        acc = 0.8 - 0.1 * (spec.hparams["sharpness_end"] + 0.5) ** 2
        return SimpleNamespace(row=SimpleNamespace(val_accuracy=acc, compute_fraction=0.5))

    res = tune(ENV, "static_ramp", 0.5, 3, out=tmp_path, env_kwargs={"epochs": 3}, seeds=[30000], runner=runner)
    assert len(calls) == 3 and all(-1.0 <= c["sharpness_end"] <= 1.0 for c in calls)
    assert len({c["sharpness_end"] for c in calls}) == 3  # searched, not fixed
    stored = load_tuned(tmp_path, ENV, "static_ramp", 0.5)
    assert stored is not None and stored.params == res.params and "sharpness_end" in stored.params
    assert stored.search_space["sharpness_end"] == [-1.0, 1.0, False]
    assert all("sharpness_end" in h["params"] for h in stored.history)
    make_policy("static_ramp", PruningEnv(**EPISODE_KW), **stored.params)  # the tuned settings run


def test_a_whole_episode_plays_the_ramp():
    hp = {"tilt": 0.5, "sharpness": 0.9, "sharpness_end": -0.6, "rescale": 0.2, "greedy": 0.1}
    want = _rule(0.9, -0.6, 4)  # [0.9, 0.9, 0.15, -0.6]
    infos: list[dict] = []
    kw = {k: v for k, v in EPISODE_KW.items() if k != "pruner"}
    out = run_episode(policy_spec("static_ramp", hparams=hp), ENV, kw, 0, on_step=infos.append)
    assert [i["action"]["sharpness"] for i in infos] == pytest.approx(want, abs=1e-6)
    assert out.row.compute_fraction == pytest.approx(0.5, abs=2 / 500) and out.row.compute_fraction <= 0.5 + 1e-9
    residual = ResidualAction(PruningEnv(**EPISODE_KW), "static_ramp", hp, track_budget=True)
    residual.reset(seed=0)
    done, got = False, []
    while not done:
        _, _, term, trunc, info = residual.step(np.zeros(residual.action_space.shape, np.float32))
        got.append(info["action"]["sharpness"])
        done = term or trunc
    assert got == pytest.approx(want, abs=1e-6)


def test_bad_values_are_one_line_errors():
    env = PruningEnv(**EPISODE_KW)
    cases = [
        (lambda: make_policy("static_ramp", env, sharpness_end=1.5), r"^sharpness_end=1.5 is out of range \[-1, 1\]$"),
        (lambda: make_policy("static_ramp", env, sharpness_end=-2), r"^sharpness_end=-2 is out of range \[-1, 1\]$"),
        (lambda: make_policy("static_ramp", env, sharpness=1.2), r"^sharpness=1.2 is out of range \[-1.0, 1.0\]"),
        (lambda: sharpness_schedule(0.0, 1.01, 5), r"^sharpness_end=1.01 is out of range \[-1, 1\]$"),
        (lambda: sharpness_schedule(-1.5, None, 5), r"^sharpness=-1.5 is out of range \[-1, 1\]$"),
        (lambda: make_policy("static_ramp", env, sharpness_end=0.5).action_at_keep(0.5), "pass the epoch$"),
        (lambda: make_policy("static_schedule", env, sharpness_end=0.5), "no hyperparameter.*sharpness_end"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message) as e:
            call()
        assert "\n" not in str(e.value)
    assert POLICIES["static_ramp"].pruner == "learned" and POLICIES["static_ramp"].requires_budget
