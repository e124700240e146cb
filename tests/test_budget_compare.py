"""Accuracy at matched compute: the static baselines, calibration, tuning, the budget comparison and its
TensorBoard runs, through the Python API and the CLI (tiny synthetic episodes)."""

from __future__ import annotations

import json
import math

import pytest
from tensorboard.backend.event_processing import event_file_loader
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from prunegym.agents.cli import main
from prunegym.agents.evaluation.calibration import calibrate
from prunegym.agents.evaluation.matched_compute import compare_budgets
from prunegym.agents.evaluation.tuning import load_tuned, search_space, tune
from prunegym.baselines import make_policy
from prunegym.baselines.static import budget_keep_fractions
from prunegym.envs import PruningEnv

pytestmark = pytest.mark.usefixtures("one_thread")

ENV = "prunegym/Synthetic-MLP-v0"
KW = {"epochs": 3, "train_size": 400}


def _play(env, policy, seed=0):
    obs, info = env.reset(seed=seed)
    infos, done = [info], False
    while not done:
        obs, _, term, trunc, info = env.step(policy.predict(obs)[0])
        infos.append(info)
        done = term or trunc
    return infos


@pytest.mark.parametrize("budget", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("tilt", [-1.0, 0.0, 0.6])
def test_static_schedule_spends_the_budget_exactly(budget, tilt):
    keep = budget_keep_fractions(budget, 10, tilt)
    assert keep[0] == 1.0 and sum(keep) / 10 == pytest.approx(budget)
    assert all(0.1 - 1e-12 <= k <= 1.0 for k in keep)
    if tilt > 0:
        assert keep[1] < keep[-1]  # prunes hard early, eases off late
    env = PruningEnv(pruner="learned", compute_budget=budget, epochs=5, train_size=500)
    infos = _play(env, make_policy("static_schedule", env, tilt=tilt, sharpness=0.3, greedy=0.2))
    assert infos[-1]["compute_fraction_total"] == pytest.approx(budget, abs=2 / 500)
    assert infos[-1]["compute_fraction_total"] <= budget + 1e-9
    assert sum(i["budget_trimmed"] for i in infos[1:]) <= 5  # at most ceil's few samples: met by the schedule


def test_static_policies_need_a_budget_and_check_their_knobs():
    with pytest.raises(ValueError, match="needs a budget: make the env with compute_budget=b or pass budget=b"):
        make_policy("static_const", PruningEnv(pruner="learned", epochs=3))
    env = PruningEnv(pruner="learned", compute_budget=0.5, epochs=3)
    with pytest.raises(ValueError, match=r"tilt=2.0 is out of range \[-1, 1\]"):
        make_policy("static_schedule", env, tilt=2.0)
    with pytest.raises(ValueError, match="no hyperparameter.*tilt"):
        make_policy("static_const", env, tilt=0.5)
    assert set(search_space("static_schedule")) == {"tilt", "sharpness", "rescale", "greedy"}
    assert set(search_space("static_const")) == {"sharpness", "rescale", "greedy"}
    with pytest.raises(ValueError, match="nothing to tune besides its main knob"):
        search_space("ies")  # its one knob, the threshold, is what calibration solves


def test_calibration_meets_the_budget_and_reports_what_it_cannot_reach(tmp_path):
    cal = calibrate(ENV, "uniform", 0.5, env_kwargs=KW, seeds=[20000], cache=tmp_path)
    assert cal.reachable and abs(cal.compute / 0.5 - 1) <= 0.01 and cal.knob == "prune_ratio"
    assert len(cal.points) <= 4  # compute is exact in the ratio: the secant step lands at once
    again = calibrate(
        ENV,
        "uniform",
        0.5,
        env_kwargs=KW,
        seeds=[20000],
        cache=tmp_path,
        runner=lambda *a, **k: pytest.fail("a cached calibration must not run episodes"),
    )
    assert again == cal
    stored = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert stored["command"].startswith("prunegym compare --env prunegym/Synthetic-MLP-v0 --budgets 0.5")
    low = calibrate(ENV, "infobatch", 0.3, env_kwargs=KW, seeds=[20000], cache=tmp_path)
    assert not low.reachable and low.value is None and low.compute > 0.3 and low.hparams == {}


def test_tune_is_seeded_resumable_and_written_where_compare_reads(tmp_path):
    first = tune(ENV, "static_const", 0.5, 2, out=tmp_path / "a", env_kwargs=KW, seeds=[30000])
    assert first.n_trials == 2 and first.n_episodes == 2 and set(first.params) == {"sharpness", "rescale", "greedy"}
    resumed = tune(ENV, "static_const", 0.5, 3, out=tmp_path / "a", env_kwargs=KW, seeds=[30000])
    assert resumed.n_trials == 3 and resumed.history[:2] == first.history  # the finished trials are kept
    twin = tune(ENV, "static_const", 0.5, 2, out=tmp_path / "b", env_kwargs=KW, seeds=[30000])
    assert twin.history == first.history  # same sampler seed, same episodes: the same study
    assert load_tuned(tmp_path / "a", ENV, "static_const", 0.5).params == resumed.params
    assert load_tuned(tmp_path / "a", ENV, "static_const", 0.7) is None


def test_budget_comparison_calibrates_tunes_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEGYM_CACHE", str(tmp_path / "cache"))
    tuned = tmp_path / "tuned"
    tune(ENV, "static_schedule", 0.5, 2, out=tuned, env_kwargs=KW, seeds=[30000])
    with pytest.warns(RuntimeWarning, match="static_schedule at budget 0.4 runs with its neutral defaults"):
        res = compare_budgets(
            ENV,
            [0, 1],
            [0.4, 0.5],
            policies=["full", "uniform", "infobatch", "static_schedule"],
            out=tmp_path / "cmp",
            env_kwargs=KW,
            tuned=tuned,
            calibration_seeds=[20000],
        )
    assert {c.policy for c in res.unreachable} == {"infobatch"}  # InfoBatch prunes only below-mean samples
    for b in (0.4, 0.5):
        rows = {e["policy"]: e for e in res.summaries[b]}
        assert set(rows) == {"uniform", "static_schedule"}
        for e in rows.values():
            assert e["n"] == 2 and abs(e["compute_fraction_mean"] / b - 1) <= 0.011
    assert [e["policy"] for e in res.reference] == ["full"] and res.reference[0]["compute_fraction_mean"] == 1.0
    tuned_rows = [r for r in res.rows if r["policy"] == "static_schedule" and r["env_kwargs"]["compute_budget"] == 0.5]
    assert tuned_rows[0]["policy_hparams"]["tilt"] == load_tuned(tuned, ENV, "static_schedule", 0.5).params["tilt"]
    md = res.markdown
    assert "Budget 0.4" in md and "Cannot reach this budget" in md and "95% Student-t interval over 2 seeds" in md
    assert res.figure.is_file() and res.figure.name == "accuracy_vs_budget.png"
    run = tmp_path / "cmp" / "runs" / "prunegym_Synthetic-MLP-v0" / "uniform" / "budget0.4" / "seed1"
    acc = EventAccumulator(str(run))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {
        "epoch/compute_fraction_total",
        "epoch/compute_fraction_step",
        "episode/test_accuracy",
        "hparams/test_accuracy",
    } <= tags
    assert [e.step for e in acc.Scalars("episode/test_accuracy")] == [KW["epochs"]]  # at the last epoch, not 0
    plugins = {
        v.tag: v.metadata.plugin_data.plugin_name
        for f in run.glob("events.out.tfevents.*")
        for ev in event_file_loader.EventFileLoader(str(f)).Load()
        if ev.HasField("summary")
        for v in ev.summary.value
    }
    assert plugins["_hparams_/experiment"] == plugins["_hparams_/session_start_info"] == "hparams"  # HPARAMS tab
    assert not list((tmp_path / "cmp" / "runs").rglob("*.live"))
    with pytest.warns(RuntimeWarning, match="neutral defaults"):
        again = compare_budgets(
            ENV,
            [0, 1],
            [0.4, 0.5],
            policies=["full", "uniform", "infobatch", "static_schedule"],
            out=tmp_path / "cmp",
            env_kwargs=KW,
            tuned=tuned,
            calibration_seeds=[20000],
        )
    assert again.ran == 0 and again.skipped == len(res.rows)


def test_cli_tune_and_budget_compare(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PRUNEGYM_CACHE", str(tmp_path / "cache"))
    kv = [f"{k}={v}" for k, v in KW.items()]
    assert (
        main(
            [
                "tune",
                "--env",
                ENV,
                "--policy",
                "static_const",
                "--budget",
                "0.5",
                "--trials",
                "1",
                "--seeds",
                "30000",
                "--out",
                str(tmp_path / "t"),
                "--quiet",
                "--env-kwargs",
                *kv,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "static_const at budget 0.5: best mean validation accuracy" in out
    assert (
        main(
            [
                "compare",
                "--env",
                ENV,
                "--budgets",
                "0.5",
                "--seeds",
                "0",
                "--policies",
                "uniform",
                "static_const",
                "--tuned",
                str(tmp_path / "t"),
                "--calibration-seeds",
                "20000",
                "--out",
                str(tmp_path / "c"),
                "--quiet",
                "--env-kwargs",
                *kv,
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "Budget 0.5" in out and "One seed per policy: means only" in out and "±" not in out.split("Budget 0.5")[1]
    for bad, msg in (
        (["--budgets", "1.5"], "budget=1.5 must be a fraction in (0, 1]"),
        (["--budgets", "0.5", "--env-kwargs", "compute_budget=0.3"], "compute_budget is set by --budgets"),
    ):
        argv = [
            "compare",
            "--env",
            ENV,
            "--seeds",
            "0",
            "--policies",
            "uniform",
            "--out",
            str(tmp_path / "x"),
            "--quiet",
            *bad,
        ]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1


def test_gym_packages_are_imported_before_the_env_id(tmp_path, capsys):
    assert main(["compare", "--env", ENV, "--gym-packages", "no_such_module_xyz", "--out", str(tmp_path)]) == 2
    assert "--gym-packages 'no_such_module_xyz' cannot be imported" in capsys.readouterr().err


def test_interval_caption_and_one_seed_tables():
    from prunegym.agents.evaluation.report import markdown_table, summarize

    rows = [
        {
            "policy": "a",
            "seed": 0,
            "test_accuracy": 0.5,
            "compute_fraction": 0.5,
            "kept_fraction": 0.5,
            "episode_return": 0.1,
            "wall_clock_s": 1.0,
            "error": None,
            "steps": 3,
        }
    ]
    md = markdown_table(summarize(rows))
    assert "One seed per policy" in md and "±" not in md and "| Pareto |" not in md
    two = rows + [{**rows[0], "seed": 1, "test_accuracy": 0.6}]
    e = summarize(two)[0]
    assert e["test_accuracy_ci95"] == pytest.approx(12.706 * 0.0707107 / math.sqrt(2), rel=1e-4)
    assert "95% Student-t interval over 2 seeds" in markdown_table(summarize(two))


def test_settings_tuned_for_other_env_kwargs_are_not_reused(tmp_path, monkeypatch):
    """Settings tuned at epochs=3 are not applied to an epochs=2 comparison: it runs the neutral defaults."""
    monkeypatch.setenv("PRUNEGYM_CACHE", str(tmp_path / "cache"))
    tuned = tmp_path / "tuned"
    tune(ENV, "static_const", 0.5, 1, out=tuned, env_kwargs=KW, seeds=[30000])
    kw = {**KW, "epochs": 2}
    with pytest.warns(RuntimeWarning, match="static_const at budget 0.5 runs with its neutral defaults"):
        res = compare_budgets(
            ENV, [0], [0.5], policies=["static_const"], out=tmp_path / "cmp", env_kwargs=kw, tuned=tuned
        )
    (row,) = res.rows
    assert {k: row["policy_hparams"][k] for k in ("sharpness", "rescale", "greedy")} == {
        "sharpness": 0.0,
        "rescale": 0.0,
        "greedy": 0.0,
    }
