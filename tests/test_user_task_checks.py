"""A user's task end to end: ``register_task`` ids run batched (``vector_entry_point``) as the presets do, the
batched env refuses streaming data at construction, registration refuses non-finite features and val / test
classes that no training sample has, and ``PruningSampler`` takes numpy numbers but not bools.

Batched against sequential: the tolerances of tests/test_vector_env.py and tests/test_batched_agents.py
(kept fractions, compute and actions of a rule that reads no losses exactly; accuracies and rewards within two
flipped validation predictions, ``ACC_TOL``)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ItemsDataset
from torch import nn

from prunegym.agents import evaluate
from prunegym.agents.evaluation.batched_episodes import run_batched_episodes
from prunegym.agents.evaluation.episode import policy_spec, run_episode
from prunegym.baselines import PruningSampler
from prunegym.envs import PruningEnv, PruningVectorEnv, register_task
from prunegym.training import register_dataset
from prunegym.training import sources as sources_module

pytestmark = pytest.mark.usefixtures("one_thread")

VAL = 100
ACC_TOL = 2.0 / VAL + 1e-6
OBS_TOL = dict(rtol=1e-3, atol=2.0 / VAL)
TASK = dict(epochs=3, val_size=VAL, test_size=100, batch_size=64)


def _toy(n=500, dim=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g)


def _mlp(input_shape, num_classes, generator):
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 32), nn.ReLU(), nn.Linear(32, num_classes))


class _Labelled(ItemsDataset):
    """``ItemsDataset`` with a ``targets`` attribute (as torchvision's datasets have)."""

    def __init__(self, x, y):
        super().__init__(x, y)
        self.targets = y


@pytest.fixture(scope="module")
def toy_task():
    return register_task("checks/Toy-v0", {"train": _toy()}, _mlp, model_split="2", **TASK)


# -- 1. a registered task runs batched ------------------------------------------------------------------------
def test_registered_task_make_vec_gives_the_batched_env_that_agrees_with_pruning_env(toy_task):
    venv = gym.make_vec(toy_task, num_envs=2, vectorization_mode="vector_entry_point", pruner="uniform")
    envs = [PruningEnv(toy_task, pruner="uniform") for _ in range(2)]
    try:
        assert isinstance(venv, PruningVectorEnv) and venv.spec.id == toy_task
        assert venv.single_observation_space == envs[0].observation_space
        assert venv.single_action_space == envs[0].action_space
        obs, _ = venv.reset(seed=5)
        for i, env in enumerate(envs):
            np.testing.assert_allclose(obs[i], env.reset(seed=5 + i)[0], **OBS_TOL)
        rng = np.random.default_rng(0)
        for _ in range(TASK["epochs"]):
            actions = rng.uniform(-1, 1, (2, *venv.single_action_space.shape)).astype(np.float32)
            obs, rewards, term, trunc, info = venv.step(actions)
            for i, env in enumerate(envs):
                o_i, r_i, t_i, tr_i, info_i = env.step(actions[i])
                assert info["kept_fraction"][i] == info_i["kept_fraction"]
                assert info["compute_fraction_total"][i] == info_i["compute_fraction_total"]
                assert term[i] == t_i and trunc[i] == tr_i
                assert abs(rewards[i] - r_i) <= ACC_TOL
                assert abs(info["val_accuracy"][i] - info_i["val_accuracy"]) <= ACC_TOL
                np.testing.assert_allclose(obs[i], o_i, **OBS_TOL)
        assert term.all() or trunc.all()
    finally:
        venv.close()
        for env in envs:
            env.close()


def test_registered_task_batched_episodes_and_evaluate_equal_the_sequential_rows(toy_task, tmp_path):
    seeds = [3, 0]
    spec = policy_spec("uniform")
    batched = run_batched_episodes(spec, toy_task, {}, seeds)
    for out, seed in zip(batched, seeds):
        got, want = out.row.__dict__, run_episode(spec, toy_task, {}, seed).row.__dict__
        for key in ("env_id", "policy", "seed", "compute_fraction", "kept_fractions", "actions", "steps", "error"):
            assert got[key] == want[key], key
        for key in ("test_accuracy", "val_accuracy", "episode_return"):
            assert abs(got[key] - want[key]) <= ACC_TOL, key
        assert math.isclose(got["test_loss"], want["test_loss"], rel_tol=1e-3)
    rows = evaluate("uniform", toy_task, seeds, results=tmp_path / "b.jsonl", batched=True)
    ref = evaluate("uniform", toy_task, seeds, results=tmp_path / "s.jsonl")
    for got, want in zip(rows, ref):
        assert (got["seed"], got["compute_fraction"], got["kept_fractions"]) == (
            want["seed"],
            want["compute_fraction"],
            want["kept_fractions"],
        )
        assert abs(got["test_accuracy"] - want["test_accuracy"]) <= ACC_TOL


# -- 2. the batched env refuses streaming data ----------------------------------------------------------------
def _refused(make):
    with pytest.raises(ValueError) as info:
        make()
    msg = str(info.value)
    assert "streaming=True" in msg and "vectorization_mode='sync'" in msg and "\n" not in msg
    return msg


def test_vector_env_refuses_streaming_true_at_construction(toy_task, monkeypatch):
    monkeypatch.setattr(sources_module, "_materialise", lambda *a, **k: pytest.fail("materialised"))
    _refused(lambda: PruningVectorEnv("synthetic-mlp", 2, streaming=True))
    _refused(lambda: gym.make_vec(toy_task, num_envs=2, vectorization_mode="vector_entry_point", streaming=True))
    streamed = register_task("checks/Streamed-v0", {"train": _toy()}, _mlp, model_split="2", streaming=True, **TASK)
    _refused(lambda: gym.make_vec(streamed, num_envs=2, vectorization_mode="vector_entry_point"))
    sync = gym.make_vec(streamed, num_envs=2, vectorization_mode="sync")  # K PruningEnvs stream
    sync.close()


def test_vector_env_refuses_a_registered_dataset_task_instead_of_materialising_it(monkeypatch):
    x, y = _toy()
    env_id = register_task(
        "checks/Items-v0", {"train": ItemsDataset(x, y)}, _mlp, model_split="2", num_classes=3, **TASK
    )
    monkeypatch.setattr(sources_module, "_materialise", lambda *a, **k: pytest.fail("materialised"))
    msg = _refused(lambda: gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point"))
    assert "Dataset" in msg
    venv = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", streaming=False)
    assert isinstance(venv, PruningVectorEnv)  # streaming=False: loaded into memory on purpose
    venv.close()


# -- 3. registration refuses non-finite features and classes unseen in training -------------------------------
def _bad_x(split_n, where, value):
    x, y = _toy(split_n)
    x[where] = value
    return x, y


@pytest.mark.parametrize(
    "source, expected",
    [
        (
            {"train": _bad_x(100, (slice(0, 3), 0), float("nan"))},
            "x of split 'train' holds 3 non-finite values (NaN or inf)",
        ),
        (
            {"train": _toy(100), "val": _bad_x(20, (0, 1), float("inf"))},
            "x of split 'val' holds 1 non-finite values (NaN or inf)",
        ),
        (
            {"train": (torch.randn(30, 4), torch.arange(30) % 3), "test": (torch.randn(8, 4), torch.arange(8))},
            "labels of split 'test' hold classes [3, 4, 5, 6, 7] that no training sample has",
        ),
        (
            {"train": (torch.randn(30, 4), torch.arange(30) % 3 * 2), "val": (torch.randn(4, 4), torch.arange(4))},
            "labels of split 'val' hold classes [1, 3] that no training sample has",
        ),
        (
            {
                "train": _Labelled(torch.randn(30, 4), torch.arange(30) % 3),
                "test": (torch.randn(8, 4), torch.arange(8)),
            },
            "labels of split 'test' hold classes [3, 4, 5, 6, 7]",
        ),
    ],
)
def test_register_task_refuses_nonfinite_features_and_unseen_classes(source, expected):
    with pytest.raises(ValueError) as info:
        register_task("checks/Bad-v0", source, _mlp, num_classes=8)
    msg = str(info.value)
    assert expected in msg and "'checks/Bad-v0'" in msg and "\n" not in msg
    assert "checks/Bad-v0" not in gym.registry
    with pytest.raises(ValueError, match="non-finite|no training sample"):
        register_dataset("checks-bad", source, num_classes=8)


def test_finite_uint8_and_dataset_sources_still_register():
    x = torch.randint(0, 256, (40, 1, 4, 4), dtype=torch.uint8)
    assert register_dataset("checks-u8", {"train": (x, torch.arange(40) % 4), "test": (x[:8], torch.arange(8) % 4)})
    nan_items = ItemsDataset(torch.full((10, 4), float("nan")), torch.arange(10) % 2)
    assert register_dataset("checks-ds", nan_items, num_classes=2)  # a Dataset is not read whole (documented)


# -- 4. PruningSampler's numbers --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kw, expected",
    [
        ({"budget": True}, "budget=True must be a fraction in (0, 1] (a real number"),
        ({"budget": np.bool_(True)}, "budget=np.True_ must be a fraction in (0, 1] (a real number"),
        ({"budget": "0.5"}, "budget='0.5' must be a fraction in (0, 1] (a real number"),
        ({"budget": float("nan")}, "budget=nan must be a fraction in (0, 1] (a real number"),
        ({"num_samples": True}, "num_samples=True must be a positive int"),
        ({"epochs": np.float64(3.0)}, "epochs=np.float64(3.0) must be a positive int"),
        ({"ema_rate": True}, "ema_rate=True must be a fraction in (0, 1] (a real number"),
        ({"ema_rate": "x"}, "ema_rate='x' must be a fraction in (0, 1] (a real number"),
        ({"delta": True}, "delta=True must be a real number"),
        ({"warmup_epochs": True}, "warmup_epochs=True must be an int"),
        ({"warmup_epochs": 0.5}, "warmup_epochs=0.5 must be an int"),
    ],
)
def test_sampler_refuses_bools_and_non_numbers(kw, expected):
    args = {"num_samples": 100, "epochs": 4, **kw}
    pruner = "uniform_rescaled" if "warmup_epochs" in kw else "infobatch"
    with pytest.raises(ValueError) as info:
        PruningSampler(pruner, **args)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_sampler_takes_numpy_numbers_as_their_python_values():
    ref = PruningSampler("infobatch", num_samples=200, epochs=4, seed=1, budget=0.875, ema_rate=0.25, delta=0.75)
    got = PruningSampler(
        "infobatch",
        num_samples=np.int64(200),
        epochs=np.int32(4),
        seed=np.int64(1),
        budget=np.float32(0.875),
        ema_rate=np.float32(0.25),
        delta=np.float64(0.75),
    )
    assert type(got.num_samples) is int and type(got.epochs) is int and type(got.budget) is float
    for e in range(4):
        for s in (ref, got):
            s.set_epoch(e)
            idx = torch.tensor(list(s))
            s.update(idx, (idx % 7).float())
        assert list(ref) == list(got)
    assert got.budget_spent == ref.budget_spent
    assert PruningSampler("uniform", num_samples=50, epochs=3, warmup_epochs=np.int64(1)).ratios == []
