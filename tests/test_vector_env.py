"""``PruningVectorEnv`` (prunegym.envs.vector_env): the Gymnasium 1.x vector API, and each sub-env against a
``PruningEnv`` of the same seed and actions.

Equivalence contract (CPU): for rules that read no losses (``full``, ``uniform``) each sub-env's kept sets,
kept fractions, FLOPs, compute fractions, budget trimming, seeds and episode records equal ``PruningEnv``'s
exactly; rewards, observations and metrics agree within ``ACC_TOL`` / ``OBS_TOL`` (the batched matmuls may sum
in another order, which can flip a near-tied validation prediction: one prediction moves an accuracy by
1 / val_size) and final weights within ``WEIGHT_TOL``. For a loss-driven rule (``infobatch``: keeps samples by
comparing losses with their mean) rounding can flip near-ties, so a few other samples are kept: only the
statistics are compared (kept fraction, compute and accuracy within ``LOSS_RULE_TOL``).
Infos are compared with ``gymnasium.vector.SyncVectorEnv`` over ``PruningEnv``: same keys, masks and dtypes.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from torch.testing import assert_close

from prunegym.envs import PruningEnv, PruningVectorEnv, replay
from prunegym.envs.features import device_stats, device_stats_rows
from prunegym.training import EpochPlan

pytestmark = pytest.mark.usefixtures("one_thread")

ENV_ID = "prunegym/Synthetic-MLP-v0"
VAL = 200
SMALL = dict(epochs=3, train_size=600, val_size=VAL, test_size=200, batch_size=64)
ACC_TOL = 2.0 / VAL + 1e-6  # rewards, accuracies: at most two near-tied validation predictions flipped
OBS_TOL = dict(rtol=1e-3, atol=2.0 / VAL)
WEIGHT_TOL = dict(rtol=1e-4, atol=1e-5)
LOSS_RULE_TOL = 0.03


def actions_for(env, rng, k: int) -> np.ndarray:
    return rng.uniform(-1, 1, (k, *env.single_action_space.shape)).astype(np.float32)


def compare_infos(got: dict, want: dict, path: str = "info") -> None:
    """``got`` has ``want``'s keys, masks and dtypes; numbers close, everything else equal where set."""
    assert sorted(got) == sorted(want), f"{path}: {sorted(set(got) ^ set(want))}"
    for key, w in want.items():
        g, where = got[key], f"{path}[{key!r}]"
        if isinstance(w, dict):
            compare_infos(g, w, where)
            continue
        assert isinstance(g, np.ndarray) and g.dtype == w.dtype and g.shape == w.shape, where
        if key.startswith("_"):
            assert np.array_equal(g, w), where
        elif w.dtype.kind in "fc":
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=ACC_TOL, err_msg=where)
        elif w.dtype.kind == "O":
            for a, b in zip(g, w):
                if isinstance(b, np.ndarray):
                    np.testing.assert_allclose(a, b, **OBS_TOL, err_msg=where)
                elif key not in ("wall_time", "wall_time_total"):
                    assert a == b, where
        else:
            assert np.array_equal(g, w), where


# -- the vector API -----------------------------------------------------------------------------------------
def test_make_vec_returns_the_batched_env_with_batched_spaces():
    venv = gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="vector_entry_point", pruner="uniform", **SMALL)
    try:
        single = PruningEnv("synthetic-mlp", pruner="uniform", **SMALL)
        assert isinstance(venv, PruningVectorEnv) and venv.num_envs == 4 and venv.spec.id == ENV_ID
        assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
        assert venv.single_observation_space == single.observation_space
        assert venv.single_action_space == single.action_space
        assert venv.observation_space == gym.vector.utils.batch_space(single.observation_space, 4)
        assert venv.action_space.shape == (4, 2) and venv.observation_space.shape == (4, len(single.feature_names))
        obs, info = venv.reset(seed=3)
        assert obs.shape == (4, len(single.feature_names)) and obs.dtype == np.float32 and obs in venv.observation_space
        assert info["seed"].tolist() == [3, 4, 5, 6] and info["_seed"].all()
        obs, rewards, term, trunc, info = venv.step(venv.action_space.sample())
        assert obs in venv.observation_space and rewards.dtype == np.float64 and rewards.shape == (4,)
        assert term.dtype == np.bool_ and trunc.dtype == np.bool_ and not term.any()
        assert venv.get_attr("pruner_name") == ("uniform",) * 4 and len(set(venv.get_attr("run_seed"))) == 4
        assert venv.call("encode_action", prune_ratio=0.45)[2].tolist() == single.encode_action(0.45).tolist()
        ctx, want = venv.policy_context, single.policy_context
        assert (ctx.pruner, ctx.epochs, ctx.feature_names, ctx.codec.names, ctx.codec.max_prune_ratio) == (
            want.pruner,
            want.epochs,
            want.feature_names,
            want.codec.names,
            want.codec.max_prune_ratio,
        )
    finally:
        venv.close()
    assert venv.closed and venv.batch is None
    with pytest.raises(RuntimeError, match="reset"):
        venv.step(np.zeros((4, 2), np.float32))


def test_seeding_int_list_constructor_and_unseeded():
    venv = PruningVectorEnv("synthetic-mlp", 3, seed=10, compute_budget=(0.3, 0.9), **SMALL)
    _, info = venv.reset()  # the constructor's seed: 10, 11, 12
    assert info["seed"].tolist() == [10, 11, 12]
    envs = [PruningEnv("synthetic-mlp", compute_budget=(0.3, 0.9), **SMALL) for _ in range(3)]
    for i, e in enumerate(envs):
        assert e.reset(seed=10 + i)[1]["compute_budget"] == info["compute_budget"][i]
    _, info = venv.reset()  # unseeded: each sub-env draws from its own generator, as PruningEnv does
    want = [e.reset()[1] for e in envs]
    assert info["seed"].tolist() == [w["seed"] for w in want]
    assert info["compute_budget"].tolist() == [w["compute_budget"] for w in want]
    _, info = venv.reset(seed=[7, None, 2])
    assert info["seed"][0] == 7 and info["seed"][2] == 2 and info["seed"][1] == envs[1].reset()[1]["seed"]
    obs_a, _ = venv.reset(seed=5)
    obs_b, _ = PruningVectorEnv("synthetic-mlp", 3, compute_budget=(0.3, 0.9), **SMALL).reset(seed=5)
    assert np.array_equal(obs_a, obs_b)
    with pytest.raises(ValueError, match="needs num_envs=3"):
        venv.reset(seed=[1, 2])
    with pytest.raises(ValueError, match="seed=1.5 of sub-env 0 must be an int"):
        venv.reset(seed=[1.5, 2, 3])
    venv.close()


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
def test_autoreset_and_infos_match_sync_vector_env(mode):
    """Two episodes and a bit, K = 3: same observations, rewards, flags and infos (keys, masks, dtypes, values)
    as SyncVectorEnv over PruningEnvs, including the autoreset step and the reset seeds drawn there."""
    kw = dict(pruner="uniform", epochs=2, train_size=400, val_size=VAL, test_size=200, batch_size=64)
    venv = PruningVectorEnv("synthetic-mlp", 3, autoreset_mode=mode, **kw)
    sync = SyncVectorEnv([lambda: PruningEnv("synthetic-mlp", **kw) for _ in range(3)], autoreset_mode=mode)
    assert venv.metadata["autoreset_mode"] == sync.metadata["autoreset_mode"] == mode
    o1, i1 = venv.reset(seed=21)
    o2, i2 = sync.reset(seed=21)
    np.testing.assert_allclose(o1, o2, **OBS_TOL)
    compare_infos(i1, i2)
    rng = np.random.default_rng(0)
    ended = []
    for _ in range(5):
        a = actions_for(venv, rng, 3)
        got, want = venv.step(a), sync.step(a)
        np.testing.assert_allclose(got[0], want[0], **OBS_TOL)
        np.testing.assert_allclose(got[1], want[1], atol=ACC_TOL)
        assert np.array_equal(got[2], want[2]) and np.array_equal(got[3], want[3])
        compare_infos(got[4], want[4])
        ended.append(bool(got[2].all()))
    assert (
        ended == [False, True, False, False, True]
        if mode == AutoresetMode.NEXT_STEP
        else ended == [False, True, False, True, False]
    )
    venv.close()
    sync.close()


def test_autoreset_disabled_needs_reset_mask():
    venv = PruningVectorEnv("synthetic-mlp", 2, autoreset_mode="Disabled", epochs=1, train_size=300, val_size=VAL)
    with pytest.raises(ValueError, match="first reset must reset every sub-env"):
        venv.reset(seed=0, options={"reset_mask": np.array([True, False])})
    venv.reset(seed=0)
    _, _, term, _, _ = venv.step(np.zeros((2, 1), np.float32))
    assert term.all()
    with pytest.raises(RuntimeError, match=r"sub-env\(s\) \[0, 1\] ended.*reset_mask"):
        venv.step(np.zeros((2, 1), np.float32))
    _, info = venv.reset(seed=[None, 9], options={"reset_mask": np.array([False, True])})
    assert info["_seed"].tolist() == [False, True] and info["seed"][1] == 9
    with pytest.raises(RuntimeError, match=r"sub-env\(s\) \[0\] ended"):
        venv.step(np.zeros((2, 1), np.float32))
    for bad in (np.array([1, 0]), np.array([False, False]), [True, True]):
        with pytest.raises(ValueError, match="reset_mask"):
            venv.reset(options={"reset_mask": bad})
    venv.close()


def test_render_and_errors():
    venv = PruningVectorEnv("synthetic-mlp", 2, render_mode="rgb_array", epochs=2, train_size=300, val_size=VAL)
    single = PruningEnv("synthetic-mlp", render_mode="rgb_array", epochs=2, train_size=300, val_size=VAL)
    venv.reset(seed=0)
    single.reset(seed=1)
    venv.step(np.zeros((2, 1), np.float32))
    single.step(np.zeros(1, np.float32))
    frames = venv.render()
    assert isinstance(frames, tuple) and len(frames) == 2 and frames[1].shape == (64, 128, 3)
    assert np.array_equal(frames[1], single.render())
    ansi = PruningVectorEnv("synthetic-mlp", 2, render_mode="ansi", epochs=2, train_size=300, val_size=VAL)
    ansi.reset(seed=0)
    assert all(f.startswith("epoch 0/2 ") for f in ansi.render())
    assert PruningVectorEnv("synthetic-mlp", 1).render() is None
    with pytest.raises(ValueError, match="pruner='pfb' selects rows inside each batch.*PruningEnv"):
        PruningVectorEnv("synthetic-mlp", 2, pruner="pfb")
    with pytest.raises(ValueError, match="num_envs=0 must be a positive int"):
        PruningVectorEnv("synthetic-mlp", 0)
    with pytest.raises(ValueError, match="autoreset_mode='later'; allowed: 'NextStep', 'SameStep', 'Disabled'"):
        PruningVectorEnv("synthetic-mlp", 2, autoreset_mode="later")
    with pytest.raises(ValueError, match="unknown PruningEnv argument"):
        PruningVectorEnv("synthetic-mlp", 2, epoch=3)
    with pytest.raises(ValueError, match=r"actions have shape \(1,\); expected \(2, 1\)"):
        venv.step(np.zeros(1))
    with pytest.raises(ValueError, match="NaN or inf"):
        venv.step(np.array([[0.0], [np.nan]]))
    venv.close()


# -- equivalence with PruningEnv ----------------------------------------------------------------------------
def play_both(k: int, seed: int, steps_rng_seed: int = 1, reset_options=None, **kw):
    """One episode of a K-env vector env and of K PruningEnvs (seeds ``seed + i``) under the same random
    actions; returns per step (vector outputs, [per-env outputs]) and the envs."""
    venv = PruningVectorEnv("synthetic-mlp", k, **kw)
    envs = [PruningEnv("synthetic-mlp", **kw) for _ in range(k)]
    v_reset = venv.reset(seed=seed, options=reset_options)
    e_reset = [e.reset(seed=seed + i, options=reset_options) for i, e in enumerate(envs)]
    rng = np.random.default_rng(steps_rng_seed)
    steps = []
    while True:
        a = actions_for(venv, rng, k)
        v = venv.step(a)
        e = [env.step(a[i]) for i, env in enumerate(envs)]
        kept = [(venv.episodes[i].stats.last_trained, envs[i]._stats.last_trained) for i in range(k)]
        steps.append((v, e, kept))
        if v[2].all():
            return v_reset, e_reset, steps, venv, envs


@pytest.mark.parametrize(
    "pruner,extra",
    [
        ("full", {}),
        ("uniform", {}),
        (
            "uniform",
            {
                "decision_interval": 2,
                "reward": "lossless",
                "record_wall_time": True,
                "features": ("epoch_fraction", "val_accuracy", "loss_q50", "kept_loss_mean"),
            },
        ),
    ],
)
def test_loss_free_rules_equal_pruning_env(pruner, extra, tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEGYM_CACHE", str(tmp_path))  # the lossless reference runs
    v_reset, e_reset, steps, venv, envs = play_both(3, 40, pruner=pruner, **SMALL, **extra)
    assert len(steps) == (2 if extra else 3)
    np.testing.assert_allclose(v_reset[0], np.stack([o for o, _ in e_reset]), **OBS_TOL)
    for v, e, kept in steps:
        obs, rewards, term, trunc, info = v
        for i, (o_i, r_i, t_i, tr_i, info_i) in enumerate(e):
            assert torch.equal(kept[i][0], kept[i][1])  # the same samples in the same order
            for key in (
                "kept_fraction",
                "planned_fraction",
                "flops_step",
                "compute_fraction_step",
                "compute_fraction_total",
                "epoch",
                "prune_ratio",
                "lr",
            ):
                assert info[key][i] == info_i[key], key
            assert sorted(k for k in info if not k.startswith("_") and info[f"_{k}"][i]) == sorted(info_i)
            assert term[i] == t_i and trunc[i] == tr_i
            assert abs(rewards[i] - r_i) <= ACC_TOL and abs(info["val_accuracy"][i] - info_i["val_accuracy"]) <= ACC_TOL
            assert math.isclose(info["train_loss"][i], info_i["train_loss"], rel_tol=1e-4)
            np.testing.assert_allclose(obs[i], o_i, **OBS_TOL)
    final = steps[-1][0][4]
    for i, env in enumerate(envs):
        rec, want = final["episode_record"], steps[-1][1][i][4]["episode_record"]
        assert rec["seed"][i] == want["seed"] == 40 + i and rec["actions"][i] == want["actions"]
        assert abs(final["test_accuracy"][i] - steps[-1][1][i][4]["test_accuracy"]) <= 2.0 / 200 + 1e-6
        for a, b in zip(venv.batch.model(i).parameters(), env.run.model.parameters()):
            assert_close(a.detach(), b.detach(), **WEIGHT_TOL)
        assert venv.batch.meters[i].total_flops == env.run.meter.total_flops
    kwargs = final["episode_record"]["env_kwargs"]  # a dict of arrays, as SyncVectorEnv gives nested dicts
    assert kwargs["task"].tolist() == ["synthetic-mlp"] * 3 and kwargs["pruner"].tolist() == [pruner] * 3
    venv.close()


def test_episode_record_replays_in_pruning_env():
    venv = PruningVectorEnv("synthetic-mlp", 2, pruner="uniform", **SMALL)
    venv.reset(seed=3)
    rng = np.random.default_rng(2)
    infos = []
    for _ in range(SMALL["epochs"]):
        infos.append(venv.step(actions_for(venv, rng, 2))[4])
    record = {
        "env_kwargs": venv._record_kwargs(),
        "seed": int(infos[-1]["episode_record"]["seed"][1]),
        "actions": infos[-1]["episode_record"]["actions"][1],
    }
    result = replay(record)
    assert [i["kept_fraction"] for i in result.infos] == [float(x["kept_fraction"][1]) for x in infos]
    assert abs(result.final_info["val_accuracy"] - infos[-1]["val_accuracy"][1]) <= ACC_TOL
    venv.close()


def test_loss_driven_rule_statistics():
    """infobatch keeps the samples whose loss is below the mean with probability 1 - r: float rounding may
    flip samples at the threshold, so kept sets can differ; kept fraction, compute and accuracy stay close."""
    _, _, steps, venv, envs = play_both(
        2, 60, pruner="infobatch", epochs=4, train_size=600, val_size=VAL, test_size=200, batch_size=64
    )
    for v, e, _ in steps:
        for i, e_i in enumerate(e):
            info, info_i = v[4], e_i[4]
            assert abs(info["kept_fraction"][i] - info_i["kept_fraction"]) <= LOSS_RULE_TOL
            assert abs(info["compute_fraction_total"][i] - info_i["compute_fraction_total"]) <= LOSS_RULE_TOL
            assert abs(info["val_accuracy"][i] - info_i["val_accuracy"]) <= LOSS_RULE_TOL
    assert steps[0][0][4]["kept_fraction"].tolist() == [1.0, 1.0]  # epoch 0 trains everything, as PruningEnv
    venv.close()


def test_budgets_trim_each_sub_env_as_pruning_env():
    kw = dict(pruner="uniform", compute_budget=(0.3, 0.7), **SMALL)
    _, e_reset, steps, venv, envs = play_both(3, 8, **kw)
    final = steps[-1][0][4]
    for i in range(3):
        budget = e_reset[i][1]["compute_budget"]
        assert final["compute_budget"][i] == budget
        assert final["compute_fraction_total"][i] <= budget + 1e-9
        for v, e, _ in steps:
            for key in ("budget_trimmed", "budget_left", "compute_fraction_total"):
                assert v[4][key][i] == e[i][4][key], key
    assert sum(int(v[4]["budget_trimmed"].sum()) for v, _, _ in steps) > 0  # the budgets did cut plans
    _, info = venv.reset(seed=1, options={"compute_budget": [0.2, 0.5, 1.0]})
    assert info["compute_budget"].tolist() == [0.2, 0.5, 1.0]
    with pytest.raises(ValueError, match="compute_budget=1.5 must be a fraction"):
        venv.reset(options={"compute_budget": 1.5})
    with pytest.raises(ValueError, match="has 2 values; it needs num_envs=3"):
        venv.reset(options={"compute_budget": [0.2, 0.5]})
    venv.close()


# -- a sub-env that ends early -------------------------------------------------------------------------------
def test_diverged_runs_are_penalised_as_in_pruning_env():
    kw = dict(pruner="uniform", lr=1e6, **SMALL)
    venv = PruningVectorEnv("synthetic-mlp", 2, **kw)
    env = PruningEnv("synthetic-mlp", **kw)
    venv.reset(seed=0)
    env.reset(seed=1)
    _, rewards, term, _, info = venv.step(np.zeros((2, 2), np.float32))
    _, r, t, _, i = env.step(np.zeros(2, np.float32))
    assert t and term.all() and info["error"][1] == i["error"] and "non-finite" in i["error"]
    assert abs(rewards[1] - r) <= ACC_TOL and rewards[1] < -1.0
    _, rewards, term, _, info = venv.step(np.zeros((2, 2), np.float32))  # next step: both restart
    assert rewards.tolist() == [0.0, 0.0] and not term.any() and info["_seed"].all()
    assert info["epoch"].tolist() == [0, 0]
    venv.close()


def test_one_diverging_sub_env_restarts_alone_and_leaves_the_others_bit_identical():
    kw = dict(pruner="uniform", epochs=3, train_size=600, val_size=VAL, test_size=200, batch_size=64)
    sabotaged, clean = PruningVectorEnv("synthetic-mlp", 3, **kw), PruningVectorEnv("synthetic-mlp", 3, **kw)
    p = sabotaged.pruners[1]
    original = p.plan

    def blow_up(epoch, scores, action):  # huge loss weights: run 1's weights overflow in its first step
        plan = original(epoch, scores, action)
        return EpochPlan(plan.indices, torch.full(plan.indices.shape, 1e38), claimed_prune_ratio=0.0)

    p.plan = blow_up
    sabotaged.reset(seed=30)
    clean.reset(seed=30)
    a = np.tile(sabotaged.encode_action(0.2), (3, 1))
    out_s, out_c = sabotaged.step(a), clean.step(a)
    assert out_s[2].tolist() == [False, True, False] and "non-finite" in out_s[4]["error"][1]
    assert out_s[4]["_error"].tolist() == [False, True, False]
    p.plan = original
    for step in range(2):
        out_s, out_c = sabotaged.step(a), clean.step(a)
        for i in (0, 2):
            assert np.array_equal(out_s[0][i], out_c[0][i]) and out_s[1][i] == out_c[1][i]
        if step == 0:  # sub-env 1 restarts with a seed from its own generator, the others step on
            assert out_s[1][1] == 0.0 and out_s[4]["_seed"].tolist() == [False, True, False]
            assert sabotaged.episodes[1].run.epoch == 0 and sabotaged.batch.runs[0].epoch == 2
    assert out_s[2].tolist() == [True, False, True]  # sub-env 1 is one step behind
    for i in (0, 2):
        for x, y in zip(sabotaged.batch.model(i).parameters(), clean.batch.model(i).parameters()):
            assert torch.equal(x, y)
    assert all(math.isfinite(float(w.detach().abs().sum())) for w in sabotaged.batch.model(1).parameters())
    sabotaged.close()
    clean.close()


def test_max_wall_time_truncates_each_sub_env():
    venv = PruningVectorEnv("synthetic-mlp", 2, max_wall_time=0.0, **SMALL)
    venv.reset(seed=0)
    _, _, term, trunc, info = venv.step(np.zeros((2, 1), np.float32))
    assert trunc.all() and not term.any() and info["_test_accuracy"].all() and info["_episode_record"].all()
    _, rewards, _, trunc, info = venv.step(np.zeros((2, 1), np.float32))
    assert rewards.tolist() == [0.0, 0.0] and not trunc.any() and info["epoch"].tolist() == [0, 0]
    venv.close()


def test_device_stats_of_all_runs_equal_each_runs():
    venv = PruningVectorEnv("synthetic-mlp", 3, pruner="uniform", **SMALL)
    venv.reset(seed=0)
    for ratio in (0.0, 0.5):
        venv.step(np.tile(venv.encode_action(ratio), (3, 1)))
        venv.episodes[2].stats.last_trained = None  # one run without kept samples
        rows = device_stats_rows(venv.batch.score_store, 3, [ep.stats.last_trained for ep in venv.episodes])
        for i, ep in enumerate(venv.episodes):
            want = device_stats(ep.run, ep.stats)
            np.testing.assert_allclose(list(vars(rows[i]).values()), list(vars(want).values()), rtol=1e-5, atol=1e-6)
    venv.close()


def test_benchmark_script_runs_tiny(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "vector_env.py"
    spec = importlib.util.spec_from_file_location("vector_env_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out, md = tmp_path / "v.json", tmp_path / "v.md"
    assert (
        bench.main(
            [
                "--tasks",
                "synthetic-mlp",
                "--k",
                "1",
                "2",
                "--steps",
                "1",
                "--train-size",
                "300",
                "--epochs",
                "3",
                "--out",
                str(out),
                "--markdown",
                str(md),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    assert report["machine"]["torch"] == torch.__version__ and report["machine"]["gymnasium"] == gym.__version__
    assert len(report["load_average_before"]) == 3 and len(report["load_average_after"]) == 3
    (task,) = report["tasks"]
    assert [r["K"] for r in task["rows"]] == [1, 2] and task["subproc"]["workers"] == 2
    assert all(r["batched"]["steps_per_s"] > 0 and r["sequential"]["steps_per_s"] > 0 for r in task["rows"])
    assert "| synthetic-mlp | 2 |" in md.read_text()


def test_ies_scoring_passes_run_and_are_charged_in_the_batched_engine():
    """IES scores its excluded samples after each epoch (``EpochPlan.score_after``): the batched engine used to
    skip that pass, so its sub-envs paid no scoring compute and IES never saw the losses it judges by."""
    kw = dict(pruner="ies", pruner_kwargs={"m": 1, "k": 1}, epochs=8, train_size=1500, val_size=300, test_size=300)
    venv = PruningVectorEnv("synthetic-mlp", 2, **kw)
    venv.reset(seed=[11, 12])
    action = venv.encode_action(0.0, threshold=0.05)
    single = [PruningEnv("synthetic-mlp", **kw) for _ in range(2)]
    for env, s in zip(single, (11, 12)):
        env.reset(seed=s)
    for _ in range(8):
        *_, info = venv.step(np.tile(action, (2, 1)))
        for i, env in enumerate(single):
            *_, want = env.step(action)
            assert abs(info["compute_fraction_total"][i] - want["compute_fraction_total"]) < 2e-3
            assert abs(info["kept_fraction"][i] - want["kept_fraction"]) < 5e-3
    assert (info["kept_fraction"] < 0.8).all()  # IES excluded samples: their scoring passes were charged above
    venv.close()
