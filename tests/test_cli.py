"""The ``prunegym`` command line: list, train, evaluate, compare, and its one-line errors."""

from __future__ import annotations

import json

import pytest

from prunegym.agents.cli import main, parse_kv
from prunegym.agents.evaluation.results import read_rows
from prunegym.agents.tensorboard import EPISODE_TAGS, EPOCH_TAGS

ENV = "prunegym/Synthetic-MLP-v0"
KW = ["epochs=4", "train_size=500", "val_size=200", "test_size=200"]


def test_parse_kv_reads_literals():
    assert parse_kv(
        [
            "epochs=5",
            "lr=0.1",
            "nesterov=True",
            "x=none",
            "y=false",
            "pruner=uniform",
            "s='a b'",
            "model_kwargs={'hidden': (32,)}",
        ]
    ) == {
        "epochs": 5,
        "lr": 0.1,
        "nesterov": True,
        "x": None,
        "y": False,
        "pruner": "uniform",
        "s": "a b",
        "model_kwargs": {"hidden": (32,)},
    }


@pytest.mark.parametrize("command", ["list", "train", "evaluate", "compare"])
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "usage: prunegym " + command in capsys.readouterr().out


def test_list_names_envs_pruners_policies_and_algos(capsys):
    from prunegym.baselines import POLICIES, PRUNERS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert ENV in out and "ppo, a2c, sac, td3, dqn" in out
    assert all(name in out for name in POLICIES) and all(name in out for name in PRUNERS)


@pytest.mark.parametrize(
    "argv, expected",
    [
        ([], "required"),
        (["train", "--algo", "xyz", "--env", ENV], "choose from 'ppo', 'a2c', 'sac', 'td3', 'dqn'"),
        (["train", "--algo", "ppo", "--env", "prunegym/Nope-v0"], "allowed: prunegym/Synthetic-MLP-v0"),
        (["evaluate", "--policy", "nope", "--env", ENV], "allowed: full, uniform"),
        (["evaluate", "--policy", "full", "--env", "Nope-v0"], "allowed: prunegym/Synthetic-MLP-v0"),
        (["evaluate", "--policy", "full", "--env", ENV, "--env-kwargs", "epochs"], "expected key=value"),
        (["evaluate", "--policy", "full", "--env", ENV, "--env-kwargs", "bogus=1"], "allowed: batch_size"),
        (["evaluate", "--policy", "missing/agent.zip", "--env", ENV], "no saved agent"),
        (["compare", "--env", ENV, "--policies", "full", "nope"], "allowed: full, uniform"),
        (["compare", "--env", ENV, "--agent", "missing.zip"], "no saved agent"),
        (["compare", "--env", ENV, "--agent", "mine=missing.zip"], "no saved agent"),
        (["compare", "--env", ENV, "--agent", "uniform=missing.zip"], "label 'uniform' is a baseline's name"),
        (["evaluate", "--policy", "full", "--env", ENV, "--seeds", "x"], "invalid int value"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(argv, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err
    assert err.startswith("prunegym") and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_train_evaluate_compare(tmp_path, capsys):
    """train -> evaluate the saved file -> compare it with two baselines (TB tags, PNG, table, resume)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    agent_dir = tmp_path / "agent"
    assert (
        main(
            [
                "train",
                "--algo",
                "ppo",
                "--env",
                ENV,
                "--total-timesteps",
                "8",
                "--seed",
                "1",
                "--quiet",
                "--tensorboard-log",
                str(tmp_path / "train_runs"),
                "--out",
                str(agent_dir),
                "--eval-freq",
                "0",
                "--hyperparams",
                "n_steps=4",
                "batch_size=4",
                "n_epochs=1",
                "--env-kwargs",
                *KW,
            ]
        )
        == 0
    )
    assert "saved" in capsys.readouterr().out
    model = agent_dir / "model.zip"
    assert json.loads((agent_dir / "model.json").read_text())["num_timesteps"] == 8

    results = tmp_path / "eval.jsonl"
    assert (
        main(
            [
                "evaluate",
                "--policy",
                str(model),
                "--env",
                "prunegym.envs:" + ENV,
                "--seeds",
                "0",
                "--quiet",
                "--results",
                str(results),
                "--env-kwargs",
                *KW,
            ]
        )
        == 0
    )
    assert "test_acc" in capsys.readouterr().out
    assert [r["policy"] for r in read_rows(results)] == ["ppo_uniform"]

    out = tmp_path / "cmp"
    argv = [
        "compare",
        "--env",
        ENV,
        "--seeds",
        "0",
        "1",
        "--policies",
        "full",
        "uniform",
        "--agent",
        str(model),
        "--out",
        str(out),
        "--quiet",
        "--env-kwargs",
        *KW,
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "| full | 2 |" in text and "| ppo_uniform | 2 |" in text and "ran 6 episode(s)" in text
    rows = read_rows(out / "results.jsonl")
    assert sorted((r["policy"], r["seed"]) for r in rows) == sorted(
        (p, s) for p in ("full", "uniform", "ppo_uniform") for s in (0, 1)
    )
    png = out / "accuracy_vs_compute.png"
    assert png.stat().st_size > 1000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "summary.csv").read_text().startswith("policy,n,test_accuracy_mean")
    for policy in ("full", "uniform", "ppo_uniform"):
        for seed in (0, 1):
            acc = EventAccumulator(str(out / "runs" / "prunegym_Synthetic-MLP-v0" / policy / f"seed{seed}"))
            acc.Reload()
            tags = set(acc.Tags()["scalars"])
            assert set(EPOCH_TAGS) | set(EPISODE_TAGS) <= tags, (policy, seed)
            assert [e.step for e in acc.Scalars("epoch/val_accuracy")] == [1, 2, 3, 4]
    fig = EventAccumulator(str(out / "runs" / "prunegym_Synthetic-MLP-v0" / "comparison"))
    fig.Reload()
    assert "comparison/accuracy_vs_compute" in fig.Tags()["images"]

    # an interrupted or repeated comparison skips the pairs it already has (same env kwargs) ...
    assert main(argv) == 0
    assert "ran 0 episode(s), skipped 6" in capsys.readouterr().out
    # ... but not those with other env kwargs
    other = ["epochs=3" if k.startswith("epochs=") else k for k in KW]
    assert (
        main(
            [
                "compare",
                "--env",
                ENV,
                "--seeds",
                "0",
                "--policies",
                "full",
                "--out",
                str(out),
                "--quiet",
                "--env-kwargs",
                *other,
            ]
        )
        == 0
    )
    assert "ran 1 episode(s), skipped 0" in capsys.readouterr().out
    assert len(read_rows(out / "results.jsonl")) == 7

    # LABEL=PATH names an agent: the same file under a second label runs again, the first label is skipped
    assert (
        main(
            [
                "compare",
                "--env",
                ENV,
                "--seeds",
                "0",
                "1",
                "--policies",
                "full",
                "--agent",
                str(model),
                f"ppo_again={model}",
                "--out",
                str(out),
                "--quiet",
                "--env-kwargs",
                *KW,
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "| ppo_again | 2 |" in text and "ran 2 episode(s), skipped 4" in text
    again = {r["seed"]: r for r in read_rows(out / "results.jsonl") if r["policy"] == "ppo_again"}
    first = {r["seed"]: r for r in read_rows(out / "results.jsonl") if r["policy"] == "ppo_uniform"}
    assert sorted(again) == [0, 1]
    assert all(again[s]["episode_return"] == first[s]["episode_return"] for s in (0, 1))
