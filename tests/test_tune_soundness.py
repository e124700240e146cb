"""``tune`` and ``calibrate`` refuse what they cannot trust: a study made with other settings, a second tuning
of the same study, a calibration entry that does not match its request; and they survive what they should: a
killed trial, a resumed study (it continues as an uninterrupted one), an unwritable cache. Episodes are faked
(a ``runner`` whose accuracy and compute are functions of the hyperparameters), so each test takes seconds."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from prunegym.agents.cli import main
from prunegym.agents.evaluation import calibration
from prunegym.agents.evaluation.calibration import calibrate
from prunegym.agents.evaluation.tuning import load_tuned, tune, tuned_path
from prunegym.agents.output import OutputError

pytestmark = pytest.mark.usefixtures("one_thread")

ENV = "prunegym/Synthetic-MLP-v0"
KW = {"epochs": 3, "train_size": 400}
CLI_KW = ["epochs=3", "train_size=400"]


def fake_runner(compute=lambda h: 1.0 - h.get("prune_ratio", 0.0)):
    """A ``run_episode`` stand-in: validation accuracy a smooth function of the hyperparameters, compute
    ``compute(hparams)``; every call is recorded in ``.calls`` as ``(hparams, env_kwargs, seed)``."""
    calls = []

    def run(spec, env_id, env_kwargs, seed):
        h = dict(spec.hparams)
        calls.append((h, dict(env_kwargs), seed))
        acc = 0.8 - 0.1 * sum((v - 0.3) ** 2 for v in h.values() if isinstance(v, float)) + 1e-4 * (seed % 7)
        return SimpleNamespace(row=SimpleNamespace(val_accuracy=acc, compute_fraction=float(compute(h))))

    run.calls = calls
    return run


def never(*args, **kwargs):
    pytest.fail("no episode should run here")


def _tune(out, trials=1, policy="static_const", **kw):
    kw = {"env_kwargs": KW, "seeds": [30000], "runner": fake_runner(), **kw}
    return tune(ENV, policy, 0.5, trials, out=out, **kw)


def _study(result):
    storage = f"sqlite:///{result.storage}"
    (name,) = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


@pytest.mark.parametrize(
    ("change", "attr"),
    [
        ({"env_kwargs": {**KW, "epochs": 2}}, "env_kwargs"),
        ({"seeds": [30001]}, "seeds"),
        ({"sampler_seed": 1}, "sampler_seed"),
        ({"calibrated": {"prune_ratio": 0.4}}, "fixed"),
    ],
)
def test_a_study_made_with_other_settings_is_refused_and_its_settings_kept(tmp_path, change, attr):
    first = _tune(tmp_path)
    path = tuned_path(tmp_path, ENV, "static_const", 0.5)
    before = path.read_text()
    with pytest.raises(ValueError, match=rf"budget0\.5\.db.*{attr}.*->.*use another --out or remove the file") as e:
        _tune(tmp_path, **change)  # 0 new trials needed: the old code rewrote the settings as its own
    assert "\n" not in str(e.value) and path.read_text() == before
    assert load_tuned(tmp_path, ENV, "static_const", 0.5).params == first.params
    stored = json.loads(before)
    assert stored["fixed"] == {} and set(stored["search_space"]) == {"sharpness", "rescale", "greedy"}


def test_a_study_made_before_its_settings_were_recorded_is_refused(tmp_path):
    db = tuned_path(tmp_path, ENV, "static_const", 0.5).with_suffix(".db")
    db.parent.mkdir(parents=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    old = optuna.create_study(
        study_name="prunegym_Synthetic-MLP-v0/static_const/budget0.5", storage=f"sqlite:///{db}", direction="maximize"
    )
    old.optimize(lambda t: t.suggest_float("sharpness", -1, 1), n_trials=1)
    with pytest.raises(ValueError, match=r"budget0\.5\.db.*records no settings.*use another --out or remove the file"):
        _tune(tmp_path, trials=2)
    assert not tuned_path(tmp_path, ENV, "static_const", 0.5).exists()


def test_a_resumed_study_continues_as_an_uninterrupted_one(tmp_path):
    whole = _tune(tmp_path / "a", trials=3)
    _tune(tmp_path / "b", trials=1)
    resumed = _tune(tmp_path / "b", trials=3)
    params = [h["params"] for h in whole.history]
    assert len({json.dumps(p, sort_keys=True) for p in params}) == 3
    assert [h["params"] for h in resumed.history] == params


def test_a_killed_trial_is_marked_failed_and_the_study_goes_on_as_if_uninterrupted(tmp_path):
    params = [h["params"] for h in _tune(tmp_path / "a", trials=3).history]
    first = _tune(tmp_path / "c", trials=1)
    killed = _study(first).ask()  # a trial whose process was killed (kill -9): RUNNING forever
    killed.suggest_float("sharpness", -1, 1)
    after = _tune(tmp_path / "c", trials=3)
    states = [t.state for t in _study(first).trials]
    assert states.count(optuna.trial.TrialState.RUNNING) == 0 and states[1] == optuna.trial.TrialState.FAIL
    assert after.n_trials == 3 and [h["params"] for h in after.history] == params


def test_a_second_tune_of_a_study_in_use_fails_at_once_naming_the_pid(tmp_path, capsys):
    seen = {}
    inner = fake_runner()

    def runner(spec, env_id, env_kwargs, seed):
        if not seen:  # while the first tune holds the study
            busy = rf"budget0\.5.*in use by another prunegym tune \(pid {os.getpid()}\)"
            with pytest.raises(OutputError, match=busy):
                _tune(tmp_path, trials=1, runner=never)
            argv = ["tune", "--env", ENV, "--policy", "static_const", "--budget", "0.5", "--trials", "1"]
            argv += ["--seeds", "30000", "--out", str(tmp_path), "--quiet", "--env-kwargs", *CLI_KW]
            seen["rc"], seen["err"] = main(argv), capsys.readouterr().err
        return inner(spec, env_id, env_kwargs, seed)

    assert _tune(tmp_path, trials=2, runner=runner).n_trials == 2
    assert seen["rc"] == 2 and f"(pid {os.getpid()})" in seen["err"] and seen["err"].count("\n") == 1
    assert len(inner.calls) == 2  # the second tune ran nothing
    assert _tune(tmp_path, trials=2, runner=never).n_trials == 2  # the lock is released at the end


def test_tune_calibrates_the_main_knob_of_a_policy_that_does_not_spend_the_budget_itself(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEGYM_CACHE", str(tmp_path / "cache"))
    run = fake_runner()
    res = _tune(tmp_path / "t", trials=2, policy="swdpp", runner=run)
    assert res.params["prune_ratio"] == pytest.approx(0.5, rel=0.01)
    assert res.fixed == {"prune_ratio": res.params["prune_ratio"]}
    trials = [c for c in run.calls if "compute_budget" in c[1]]
    assert len(trials) == 2 and all(abs(h["prune_ratio"] / 0.5 - 1) <= 0.01 for h, _, _ in trials)
    assert all(abs(c / 0.5 - 1) <= 0.01 for h in res.history for c in h["compute_fractions"])
    assert {s for _, kw, s in run.calls if "compute_budget" not in kw} == set(calibration.CALIBRATION_SEEDS)
    static = fake_runner()
    _tune(tmp_path / "s", policy="static_const", runner=static)  # spends the budget itself: no calibration
    assert all(kw.get("compute_budget") == 0.5 and "prune_ratio" not in h for h, kw, _ in static.calls)
    dear = fake_runner(lambda h: 1 - h["prune_ratio"] / 2)  # 0.55 at its cheapest
    with pytest.raises(ValueError, match=r"swdpp cannot reach budget 0\.3.*cheapest.*0\.55") as e:
        tune(ENV, "swdpp", 0.3, 1, out=tmp_path / "u", env_kwargs=KW, runner=dear)
    assert "\n" not in str(e.value) and not (tmp_path / "u").exists()


def test_cli_tune_calibrates_swdpp_with_real_episodes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PRUNEGYM_CACHE", str(tmp_path / "cache"))
    argv = ["tune", "--env", ENV, "--policy", "swdpp", "--budget", "0.5", "--trials", "1", "--seeds", "30000"]
    assert main([*argv, "--out", str(tmp_path / "t"), "--quiet", "--env-kwargs", *CLI_KW]) == 0
    assert "(calibrated)" in capsys.readouterr().out
    res = load_tuned(tmp_path / "t", ENV, "swdpp", 0.5)
    assert 0.0 < res.fixed["prune_ratio"] < 0.9 and res.params["prune_ratio"] == res.fixed["prune_ratio"]
    assert len(list((tmp_path / "cache" / "calibration").glob("*.json"))) == 1
    again = calibrate(ENV, "swdpp", 0.5, env_kwargs={**KW, "reward": "accuracy"}, runner=never)  # as compare asks
    assert again.value == res.fixed["prune_ratio"]


def test_a_custom_runner_s_points_do_not_leak_into_a_later_calibration(tmp_path):
    stuck = calibrate(
        ENV, "uniform", 0.5, env_kwargs=KW, seeds=[20000], cache=tmp_path / "a", runner=fake_runner(lambda h: 1)
    )
    assert not stuck.reachable
    real = calibrate(ENV, "uniform", 0.5, env_kwargs=KW, seeds=[20000], cache=tmp_path / "b")  # real episodes
    assert real.reachable and abs(real.compute / 0.5 - 1) <= 0.01


def test_an_unwritable_calibration_cache_warns_once_and_goes_on(tmp_path, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("PRUNEGYM_CACHE", str(blocker))
    with pytest.warns(RuntimeWarning, match=r"calibration cache '.*a_file/calibration' cannot be written") as rec:
        a = calibrate(ENV, "uniform", 0.5, env_kwargs=KW, seeds=[1], runner=fake_runner())
        b = calibrate(ENV, "uniform", 0.6, env_kwargs=KW, seeds=[1], runner=fake_runner())
    assert a.value == pytest.approx(0.5, rel=0.01) and b.value == pytest.approx(0.4, rel=0.01)
    assert len([w for w in rec if "cannot be written" in str(w.message)]) == 1


def test_a_calibration_entry_is_used_only_if_it_matches_its_request(tmp_path, monkeypatch):
    monkeypatch.setattr(calibration, "SHIPPED_CALIBRATIONS", tmp_path / "shipped")
    cache = tmp_path / "cache"

    def cal(folder=cache, expect_run=True):
        run = fake_runner()
        out = calibrate(ENV, "uniform", 0.5, env_kwargs=KW, seeds=[1], cache=folder, runner=run)
        assert bool(run.calls) == expect_run
        return out

    first = cal()
    (entry,) = cache.glob("*.json")
    stored = json.loads(entry.read_text())
    assert stored["version"] and stored["float_path"] and first.version == stored["version"]
    cal(expect_run=False)
    for field, wrong in (("budget", 0.7), ("env_kwargs", {"epochs": 9}), ("seeds", [2]), ("policy", "pfb")):
        entry.write_text(json.dumps({**stored, field: wrong}))  # a wrong entry under the right name
        assert cal().value == first.value
    entry.write_text(json.dumps({**stored, "float_path": "AVX9"}))
    cal()
    monkeypatch.setattr(calibration, "float_path", lambda: "AVX9", raising=False)
    cal()  # another float path: another entry
    monkeypatch.setattr(calibration, "versions", lambda: {"prunegym": "0.0.1"}, raising=False)
    cal()  # another prunegym: another entry
    assert len(list(cache.glob("*.json"))) == 3
    monkeypatch.undo()
    monkeypatch.setattr(calibration, "SHIPPED_CALIBRATIONS", tmp_path / "shipped")
    entry.write_text("{garbage")
    with pytest.warns(RuntimeWarning, match=rf"calibration cache entry '{re.escape(str(entry))}' is corrupt") as rec:
        cal()
    assert len(rec) == 1 and "\n" not in str(rec[0].message)
    (tmp_path / "shipped").mkdir()
    shutil.copy(entry, tmp_path / "shipped" / entry.name)
    cal(tmp_path / "empty", expect_run=False)  # the shipped entry
    (tmp_path / "shipped" / entry.name).write_text(json.dumps({**stored, "budget": 0.7}))
    cal(tmp_path / "empty2")  # a shipped entry that does not match is not used either


def test_a_broken_study_or_settings_file_is_one_line_naming_it(tmp_path):
    good = _tune(tmp_path / "a", trials=2)
    db = tuned_path(tmp_path / "b", ENV, "static_const", 0.5).with_suffix(".db")
    db.parent.mkdir(parents=True)
    for data in (b"garbage" * 300, Path(good.storage).read_bytes()[:5000]):
        db.write_bytes(data)
        with pytest.raises(
            ValueError, match=rf"{re.escape(str(db))}.*not a readable Optuna study.*remove the file"
        ) as e:
            _tune(tmp_path / "b", runner=never)
        assert "\n" not in str(e.value)
    path = tuned_path(tmp_path / "a", ENV, "static_const", 0.5)
    for text in ("{garbage", "[1, 2]", json.dumps({"format": "prunegym-tuned/1", "budget": 0.5})):
        path.write_text(text)
        with pytest.raises(
            ValueError, match=rf"{re.escape(str(path))}.*not a readable prunegym tuning result.*prunegym tune"
        ) as e:
            load_tuned(tmp_path / "a", ENV, "static_const", 0.5)
        assert "\n" not in str(e.value)


def test_tune_checks_the_env_and_its_kwargs_before_creating_anything(tmp_path, capsys):
    with pytest.raises(ValueError, match="unknown env id 'prunegym/NoSuch-v0'"):
        tune("prunegym/NoSuch-v0", "static_const", 0.5, 1, out=tmp_path / "x", runner=never)
    with pytest.raises(ValueError, match=r"compute_budget is set by --budget; remove it from the env kwargs"):
        _tune(tmp_path / "x", env_kwargs={"compute_budget": 0.3}, runner=never)
    assert not (tmp_path / "x").exists()
    base = ["tune", "--policy", "static_const", "--budget", "0.5", "--trials", "1", "--out", str(tmp_path / "x")]
    for extra, msg in (
        (["--env", "prunegym/NoSuch-v0"], "unknown env id"),
        (["--env", ENV, "--env-kwargs", "compute_budget=0.3"], "compute_budget is set by --budget"),
    ):
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()
