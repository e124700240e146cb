"""Issue 23, parts 1 and 2: data regimes (noisy labels, a long tail) for any dataset, drawn per episode, recorded
and replayed, with diagnostics in ``info``, result rows and TensorBoard, never in the observation."""

from __future__ import annotations

import json
import random

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import ItemsDataset, splits

import prunegym.envs  # noqa: F401  (registers the ids)
from prunegym.envs import PruningEnv, PruningVectorEnv, replay
from prunegym.training import RunConfig, register_dataset
from prunegym.training.regimes import corrupt_labels, long_tail_subset

pytestmark = pytest.mark.usefixtures("one_thread")
SMALL = dict(epochs=3, train_size=1500, val_size=300, test_size=300)


def _rng_state():
    return (torch.random.get_rng_state().clone(), np.random.get_state()[1].copy(), random.getstate())


def _same_rng(a, b) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


# -- the regime of a run's data ----------------------------------------------------------------------------------
def test_noisy_labels_are_a_seeds_own_exact_share_and_never_the_test_sets():
    clean = splits("synthetic", 4, train_size=2000, val_size=500)
    noisy = splits("synthetic", 4, train_size=2000, val_size=500, label_noise=0.3)
    again = splits("synthetic", 4, train_size=2000, val_size=500, label_noise=0.3)
    other = splits("synthetic", 5, train_size=2000, val_size=500, label_noise=0.3)
    marks = noisy.regime
    assert marks is not None and int(marks.noisy.sum()) == 600  # exactly round(0.3 * 2000)
    assert torch.equal(marks.clean, clean.y_train) and torch.equal(noisy.x_train, clean.x_train)
    assert torch.equal(noisy.y_train != clean.y_train, marks.noisy)  # symmetric: always another class
    assert torch.equal(noisy.y_train, again.y_train)  # the same for a seed ...
    assert not torch.equal(other.regime.noisy, marks.noisy)  # ... another for another seed
    assert torch.equal(noisy.y_test, clean.y_test)  # test labels are never corrupted
    assert int((noisy.y_val != clean.y_val).sum()) == 150  # validation carries the same noise ...
    oracle = splits("synthetic", 4, train_size=2000, val_size=500, label_noise=0.3, clean_val=True)
    assert torch.equal(oracle.y_val, clean.y_val) and torch.equal(oracle.y_train, noisy.y_train)  # ... unless clean
    pair = splits("synthetic", 4, train_size=2000, val_size=500, label_noise=0.3, label_noise_kind="pairflip")
    flipped = pair.regime.noisy
    assert torch.equal(pair.y_train[flipped], (clean.y_train[flipped] + 1) % 8)


def test_a_long_tail_keeps_the_protocols_counts_and_balanced_evaluation_sets():
    clean = splits("synthetic", 1, train_size=3000, val_size=500)
    tail = splits("synthetic", 1, train_size=3000, val_size=500, imbalance=10.0)
    counts = torch.bincount(clean.y_train, minlength=8)
    n_max = int(counts.max())
    want = [min(int(counts[c]), int(n_max * 10.0 ** (-c / 7))) for c in range(8)]
    assert torch.bincount(tail.y_train, minlength=8).tolist() == want
    assert torch.equal(tail.y_val, clean.y_val) and torch.equal(tail.y_test, clean.y_test)
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    y = torch.arange(400) % 4
    assert torch.equal(long_tail_subset(y, 4, 100.0, g1), long_tail_subset(y, 4, 100.0, g2))
    _, mask = corrupt_labels(y, 4, 0.25, "symmetric", torch.Generator().manual_seed(1))
    assert int(mask.sum()) == 100


@pytest.mark.parametrize(
    "field, bad, allowed",
    [
        ("label_noise", 1.0, "a fraction in [0, 1)"),
        ("label_noise", -0.1, "a fraction in [0, 1)"),
        ("label_noise_kind", "asym", "allowed: symmetric, pairflip"),
        ("imbalance", 0.5, "a number >= 1"),
        ("clean_val", "yes", "True or False"),
    ],
)
def test_bad_regime_fields_are_one_line_errors(field, bad, allowed):
    with pytest.raises(ValueError) as info:
        RunConfig(**{field: bad})
    assert f"{field}={bad!r}" in str(info.value) and allowed in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match="label_noise=\\(0.5, 0.2\\) must be a fraction in \\[0, 1\\), or a range"):
        PruningEnv("synthetic-mlp", label_noise=(0.5, 0.2))


def test_a_streamed_dataset_trains_on_its_regimes_labels():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(1200, 6, generator=g), torch.arange(1200) % 3
    items = ItemsDataset(x, y)
    items.targets = y  # what lets a regime read the labels without reading the items
    register_dataset("regime-items", {"train": items}, num_classes=3)
    config = RunConfig(dataset="regime-items", val_size=200, test_size=200, label_noise=0.4, seed=2)
    from prunegym.training.loading import load_run_data

    data = load_run_data(config, torch.device("cpu"))
    marks = data.regime
    assert marks is not None and int(marks.noisy.sum()) == round(0.4 * data.num_train)
    seen = torch.cat([yb for _, yb, _, _ in data.train_batches(torch.arange(data.num_train), None, 256)])
    assert torch.equal(seen != marks.clean, marks.noisy)  # the loader yields the noisy labels
    register_dataset("regime-nolabels", {"train": ItemsDataset(x, y)}, num_classes=3)
    with pytest.raises(ValueError, match="tells no labels.*label_noise and imbalance need"):
        load_run_data(config.replace(dataset="regime-nolabels"), torch.device("cpu"))


# -- episodes: drawn, recorded, replayed, diagnosed -------------------------------------------------------------
def test_a_regime_episode_is_drawn_recorded_replayed_and_leaks_nothing_into_the_observation():
    before = _rng_state()
    env = PruningEnv("synthetic-mlp", pruner="uniform", label_noise=(0.1, 0.5), imbalance=(1.0, 8.0), **SMALL)
    plain = PruningEnv("synthetic-mlp", pruner="uniform", **SMALL)
    assert env.feature_names == plain.feature_names  # the regime is not observed
    obs, info = env.reset(seed=7)
    inst = info["instance"]
    assert 0.1 <= inst["label_noise"] <= 0.5 and 1.0 <= inst["imbalance"] <= 8.0 and inst["epochs"] == 3
    assert info["noisy_fraction"] == pytest.approx(inst["label_noise"], abs=1e-3)
    done = False
    while not done:
        obs, _, term, trunc, step = env.step(env.encode_action(0.5))
        done = term or trunc
        for key in ("kept_noisy_fraction", "kept_head_fraction", "kept_tail_fraction"):
            assert 0.0 <= step[key] <= 1.0
    record = step["episode_record"]
    assert record["regime"] == {"label_noise": inst["label_noise"], "imbalance": inst["imbalance"]}
    again = replay(json.loads(json.dumps(record)))
    assert again.final_info["test_accuracy"] == step["test_accuracy"]
    assert again.final_info["kept_noisy_fraction"] == step["kept_noisy_fraction"]
    _, set_info = env.reset(seed=7, options={"label_noise": 0.2, "imbalance": 1.0})
    assert (set_info["instance"]["label_noise"], set_info["instance"]["imbalance"]) == (0.2, 1.0)
    with pytest.raises(ValueError, match="needs an env made with label_noise"):
        plain.reset(seed=0, options={"label_noise": 0.2})
    assert _same_rng(before, _rng_state())  # the global RNGs are untouched


def test_the_vector_env_gives_each_sub_env_its_regime():
    kw = dict(pruner="uniform", label_noise=(0.0, 0.5), **SMALL)
    venv = PruningVectorEnv("synthetic-mlp", 2, **kw)
    _, info = venv.reset(seed=[3, 4])
    singles = [PruningEnv("synthetic-mlp", **kw) for _ in range(2)]
    for i, env in enumerate(singles):
        _, want = env.reset(seed=3 + i)
        assert info["noisy_fraction"][i] == want["noisy_fraction"]
    for _ in range(3):
        *_, info = venv.step(np.tile(venv.encode_action(0.5), (2, 1)))
        for i, env in enumerate(singles):
            *_, want = env.step(env.encode_action(0.5))
            assert info["kept_noisy_fraction"][i] == want["kept_noisy_fraction"]
            assert info["kept_fraction"][i] == want["kept_fraction"]
    venv.close()
    g = torch.Generator().manual_seed(0)
    register_dataset("regime-balanced", {"train": (torch.randn(2400, 16, generator=g), torch.arange(2400) % 8)})
    balanced = dict(dataset="regime-balanced", epochs=2, val_size=300, test_size=300)
    tail = dict(pruner="uniform", imbalance=(2.0, 8.0), **balanced)
    one = PruningEnv("synthetic-mlp", **tail)
    size = one.feature_names.index("log_train_size")  # the size a long tail leaves would tell the imbalance
    shown = {float(one.reset(seed=7, options={"imbalance": r})[0][size]): one.run.num_train for r in (2.0, 8.0)}
    assert len(shown) == 1 and one.run.num_train < 1800  # one value shown, though the cut set is smaller
    venv = PruningVectorEnv("synthetic-mlp", 2, **tail)
    singles = [PruningEnv("synthetic-mlp", **tail) for _ in range(2)]
    for seeds in ([3, 4], [5, 6]):  # the second reset gives each run a training set of another size
        _, info = venv.reset(seed=seeds)
        for env, s in zip(singles, seeds):
            env.reset(seed=s)
        sizes = [env.unwrapped.run.num_train for env in singles]
        assert [venv.batch.runs[i].num_train for i in range(2)] == sizes and sizes[0] != sizes[1]
        for _ in range(2):
            obs, _, _, _, info = venv.step(np.tile(venv.encode_action(0.5), (2, 1)))
            for i, env in enumerate(singles):
                want_obs, _, _, _, want = env.step(env.encode_action(0.5))
                assert info["kept_fraction"][i] == want["kept_fraction"]
                assert info["kept_tail_fraction"][i] == want["kept_tail_fraction"]
                assert info["compute_fraction_total"][i] == pytest.approx(want["compute_fraction_total"], rel=1e-6)
                assert info["val_accuracy"][i] == pytest.approx(want["val_accuracy"], abs=2e-3)
                assert np.allclose(obs[i], want_obs, rtol=1e-3, atol=1e-3)
    venv.close()


def test_the_regime_ids_rows_and_tensorboard_carry_the_diagnostics(data_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from prunegym.agents import evaluate

    spec = gym.spec("prunegym/FashionMNIST-Noisy-v0")
    assert spec.kwargs["label_noise"] == (0.0, 0.5) and spec.kwargs["compute_budget"] == (0.25, 0.75)
    assert gym.spec("prunegym/MNIST-LT-v0").kwargs["imbalance"] == (1.0, 100.0)
    kw = dict(epochs=2, train_size=2000, val_size=500, test_size=500, data_root=str(data_root))
    (row,) = evaluate("uniform", "prunegym/FashionMNIST-Noisy-v0", [0], results=None, tensorboard_log=tmp_path, **kw)
    assert set(row["instance"]) == {"label_noise", "compute_budget"} and 0 <= row["instance"]["label_noise"] <= 0.5
    assert row["noisy_fraction"] == pytest.approx(row["instance"]["label_noise"], abs=1e-3)
    assert len(row["kept_noisy_fractions"]) == len(row["kept_head_fractions"]) == row["steps"] == 2
    run = next(p for p in tmp_path.rglob("seed0") if p.is_dir())
    acc = EventAccumulator(str(run))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert {"epoch/kept_noisy_fraction", "epoch/kept_tail_fraction", "episode/noisy_fraction"} <= set(tags)


def test_full_data_and_calibration_run_without_the_ids_drawn_budget(data_root, tmp_path):
    """The regimes ids draw a budget per episode by default: the reference (full data) and a calibration's
    natural compute must still run with none (``compute_budget=None``), or full data is trimmed and every
    calibrated knob looks cheap enough."""
    from prunegym.agents.env_factory import unbudgeted_kwargs
    from prunegym.agents.evaluation.matched_compute import compare_budgets

    assert unbudgeted_kwargs("prunegym/FashionMNIST-LT-v0", {"epochs": 2}) == {"epochs": 2, "compute_budget": None}
    assert unbudgeted_kwargs("prunegym/FashionMNIST-MLP-v0", {"epochs": 2}) == {"epochs": 2}  # nothing drawn
    kw = dict(epochs=3, train_size=1500, val_size=300, test_size=300, data_root=str(data_root), imbalance=1.0)
    res = compare_budgets(
        "prunegym/FashionMNIST-LT-v0", [0], [0.5], policies=["full", "uniform"], env_kwargs=kw,
        out=tmp_path / "c", tuned=None,
    )  # fmt: skip
    full = next(r for r in res.rows if r["policy"] == "full")
    uniform = next(r for r in res.rows if r["policy"] == "uniform")
    assert full["compute_fraction"] == pytest.approx(1.0, abs=1e-6) and full["instance"]["compute_budget"] is None
    assert min(uniform["kept_fractions"][1:]) > 0.0  # calibrated to prune each epoch, not to run out of budget
    assert uniform["compute_fraction"] == pytest.approx(0.5, abs=0.02)
