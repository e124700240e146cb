"""``prunegym headroom``: the instances reader, the two kinds of studies (single best over every instance,
per-instance best), resuming, the report's headroom against a hand computation, the files where ``compare`` finds
them, and the command end to end. Tuning episodes are faked (a ``runner``); the held-out episodes are tiny real
ones on the synthetic task (a few seconds in all)."""

from __future__ import annotations

import json
import math
import statistics
from types import SimpleNamespace

import optuna
import pytest

from prunegym.agents import cli
from prunegym.agents.cli import main
from prunegym.agents.cli_headroom import parse_instances
from prunegym.agents.evaluation.headroom import BEST, SINGLE, check_instances, headroom, headroom_summary
from prunegym.agents.evaluation.matched_compute import _policy_specs
from prunegym.agents.evaluation.stats import half_width
from prunegym.agents.evaluation.tuning import load_tuned

pytestmark = pytest.mark.usefixtures("one_thread")

ENV = "prunegym/Synthetic-MLP-v0"
KW = {"epochs": 3, "train_size": 300, "val_size": 100, "test_size": 100}
CLI_KW = ["epochs=3", "train_size=300", "val_size=100", "test_size=100"]
INSTANCES = [{"label_noise": 0}, {"label_noise": 0.3}]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PRUNEGYM_CACHE", str(tmp_path / "cache"))  # calibrations of this test only


def fake_runner():
    """A ``run_episode`` stand-in: validation accuracy a function of the hyperparameters, the instance's label noise
    and the seed; every call is recorded in ``.calls`` as ``(hparams, env_kwargs, seed)``."""
    calls = []

    def run(spec, env_id, env_kwargs, seed):
        calls.append((dict(spec.hparams), dict(env_kwargs), seed))
        h = spec.hparams
        acc = (
            0.8
            - 0.1 * (h["tilt"] - env_kwargs["label_noise"]) ** 2
            - 0.2 * env_kwargs["label_noise"]
            + 1e-4 * (seed % 7)
        )
        return SimpleNamespace(row=SimpleNamespace(val_accuracy=acc, compute_fraction=env_kwargs["compute_budget"]))

    run.calls = calls
    return run


def never(*args, **kwargs):
    pytest.fail("no episode should run here")


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["label_noise=0,0.2,0.4"], [{"label_noise": 0}, {"label_noise": 0.2}, {"label_noise": 0.4}]),
        (["imbalance=1,10"], [{"imbalance": 1}, {"imbalance": 10}]),
        (
            ["label_noise=0,0.2", "imbalance=1,10"],
            [
                {"label_noise": 0, "imbalance": 1},
                {"label_noise": 0, "imbalance": 10},
                {"label_noise": 0.2, "imbalance": 1},
                {"label_noise": 0.2, "imbalance": 10},
            ],
        ),
    ],
)
def test_instances_are_read_as_the_grid_of_their_fields(items, expected):
    got = parse_instances(items)
    assert got == expected and isinstance(got[0][next(iter(got[0]))], int)


@pytest.mark.parametrize(
    ("items", "message"),
    [
        (["label_noise"], r"malformed --instances item 'label_noise': expected FIELD=V1,V2,.*label_noise, imbalance"),
        (["noise=0.1"], r"malformed --instances item 'noise=0.1'.*one of label_noise, imbalance"),
        (["label_noise=0,x"], r"--instances 'label_noise=0,x': 'x' is not a number"),
        (["label_noise=0,1.5"], r"instance label_noise=1.5 is out of range: label_noise is a fraction in \[0, 1\)"),
        (["imbalance=0.5"], r"instance imbalance=0.5 is out of range: imbalance is a number >= 1"),
        (["label_noise=0", "label_noise=0.2"], r"field 'label_noise' given twice"),
        (["label_noise=0.2,0.2"], r"instances must be given, distinct"),
        ([], r"instances must be given"),
    ],
)
def test_bad_instances_are_one_line_errors(items, message):
    with pytest.raises(ValueError, match=message) as e:
        parse_instances(items)
    assert "\n" not in str(e.value)


def test_instances_given_as_mappings_are_checked():
    assert check_instances(INSTANCES) == INSTANCES
    with pytest.raises(ValueError, match=r"unknown instance field 'budget'; allowed: label_noise, imbalance"):
        check_instances([{"budget": 0.5}])
    with pytest.raises(ValueError, match=r"instance label_noise=True is out of range"):
        check_instances([{"label_noise": True}])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"env_kwargs": {**KW, "label_noise": 0.1}}, r"label_noise is set by --instances or --budgets"),
        (
            {"policy": "uniform"},
            r"policy 'uniform' is not a static policy; allowed: static_const, static_schedule, static_ramp",
        ),
        ({"policies": ["static_const"]}, r"'static_const' is not a published baseline; allowed: uniform"),
        ({"seeds": [0, 30001]}, r"held-out seed 30001 is also a tuning or calibration seed"),
        ({"env_kwargs": {**KW, "bogus": 1}}, r"bogus"),
    ],
)
def test_bad_arguments_fail_before_any_study_or_episode(tmp_path, change, message):
    kw = {"out": tmp_path / "h", "env_kwargs": KW, "runner": never, **change}
    with pytest.raises(ValueError, match=message):
        headroom(ENV, INSTANCES, [0.5], 2, **kw)
    assert not (tmp_path / "h" / "tuning").exists()


def _studies(out):
    """``{folder name: study}`` of the studies under ``out/tuning``."""
    found = {}
    for db in sorted((out / "tuning").rglob("*.db")):
        storage = f"sqlite:///{db}"
        (name,) = optuna.get_all_study_names(storage)
        found[db.relative_to(out / "tuning").parts[0]] = optuna.load_study(study_name=name, storage=storage)
    return found


def test_studies_average_over_instances_resume_and_write_where_compare_finds(tmp_path):
    out, run, seeds = tmp_path / "h", fake_runner(), [30000, 30001]
    kw = {"out": out, "policies": [], "env_kwargs": KW, "seeds": [0, 1], "tuning_seeds": seeds}
    res = headroom(ENV, INSTANCES, [0.5], 2, runner=run, **kw)
    single_calls, per_calls = run.calls[:8], run.calls[8:]
    assert len(run.calls) == 2 * 4 + 2 * 2 * 2  # single: trials x instances x seeds; per instance: trials x seeds
    for t in range(2):  # each single-best trial plays every instance on every tuning seed, with one setting
        calls = single_calls[4 * t : 4 * t + 4]
        assert {(c[1]["label_noise"], c[2]) for c in calls} == {(n, s) for n in (0, 0.3) for s in seeds}
        assert len({json.dumps(c[0], sort_keys=True) for c in calls}) == 1
    assert [c[1]["label_noise"] for c in per_calls] == [0] * 4 + [0.3] * 4  # each per-instance study: its own
    assert all(c[1]["compute_budget"] == 0.5 and c[1]["epochs"] == 3 for c in run.calls)
    studies = _studies(out)
    assert set(studies) == {"single", "label_noise=0", "label_noise=0.3"}
    for t in studies["single"].trials:
        assert len(t.user_attrs["val_accuracies"]) == 4 and t.value == pytest.approx(
            statistics.fmean(t.user_attrs["val_accuracies"])
        )
    assert studies["single"].user_attrs["instances"] == INSTANCES
    assert studies["label_noise=0.3"].user_attrs["env_kwargs"] == {**KW, "label_noise": 0.3}
    assert res.single[0.5].n_episodes == 8 and res.single[0.5].command.startswith(
        f"prunegym headroom --env {ENV} --instances label_noise=0,0.3 --budgets 0.5 --trials 2"
    )
    assert res.ran == 2 * 2 * 3 and {r["policy"] for r in res.rows} == {SINGLE, BEST, "full"}

    again = headroom(ENV, INSTANCES, [0.5], 2, runner=never, **kw)  # resumed: nothing new runs
    assert (again.ran, again.skipped) == (0, 12) and json.dumps(again.entries) == json.dumps(res.entries)

    common = load_tuned(out / "tuned", ENV, "static_ramp", 0.5)
    assert common.env_kwargs == KW and common.params == res.single[0.5].params
    one = {**KW, "label_noise": 0.3, "reward": "accuracy", "compute_budget": 0.5}
    notes: dict = {"unreachable": [], "untuned": []}
    spec = _policy_specs(ENV, "static_ramp", 0.5, one, out / "tuned" / "label_noise=0.3", [20000], False, notes)
    assert spec.hparams == res.single[0.5].params and notes["untuned"] == []  # compare --budgets finds it
    assert res.per_instance["label_noise=0.3", 0.5].env_kwargs == {**KW, "label_noise": 0.3}
    md = res.table_md.read_text()
    assert "Headroom (points): label_noise=0 " in md and "| average | instance_best | 2 |" in md
    header = res.table_csv.read_text().splitlines()[0].split(",")
    assert header[:4] == ["budget", "instance", "policy", "n"] and "minus_single_ci95" in header
    assert res.figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((out / "runs").rglob("events.out.tfevents.*")) and not (out / ".runs.staging").exists()
    assert (out / "eval" / "label_noise=0" / "results.jsonl").is_file()
    assert (out / "eval" / "label_noise=0" / BEST / "results.jsonl").is_file()


def _row(noise, policy, seed, acc, budget=0.5, kept_noisy=(), error=None):
    kw = {"label_noise": noise, **({"compute_budget": budget} if budget is not None else {})}
    return {
        "env_kwargs": kw,
        "policy": policy,
        "seed": seed,
        "test_accuracy": acc,
        "compute_fraction": budget or 1.0,
        "kept_noisy_fractions": list(kept_noisy),
        "error": error,
    }


def test_the_headroom_is_the_paired_difference_computed_by_hand():
    single = {0: [0.70, 0.72, 0.71], 0.3: [0.60, 0.58, 0.61]}
    best = {0: [0.71, 0.75, 0.70], 0.3: [0.66, 0.65, 0.64]}
    rows = [_row(n, SINGLE, s, a, kept_noisy=[n, math.nan]) for n, accs in single.items() for s, a in enumerate(accs)]
    rows += [_row(n, BEST, s, a, kept_noisy=[n / 2]) for n, accs in best.items() for s, a in enumerate(accs)]
    rows += [_row(n, "full", s, 0.9, budget=None) for n in (0, 0.3) for s in range(3)]
    rows += [_row(0.3, BEST, 3, 0.1, error="diverged"), _row(0.5, BEST, 0, 0.0)]  # left out: error, other instance
    entries = headroom_summary(rows, [{"label_noise": 0}, {"label_noise": 0.3}], [0.5], order=[SINGLE, BEST])
    got = {(e["instance"], e["policy"]): e for e in entries}
    assert [k[1] for k in got][:2] == [SINGLE, SINGLE] and ("average", "full") in got
    for n in (0, 0.3):
        diffs = [b - s for b, s in zip(best[n], single[n])]
        e = got[f"label_noise={n:g}", BEST]
        assert e["n"] == 3 and e["minus_single_mean"] == pytest.approx(statistics.fmean(diffs))
        assert e["minus_single_ci95"] == pytest.approx(4.303 * statistics.stdev(diffs) / math.sqrt(3))
        assert (e["won"], e["lost"]) == (sum(d > 0 for d in diffs), sum(d < 0 for d in diffs))
        assert e["kept_noisy_fraction_mean"] == pytest.approx(n / 2)
    per_seed = [statistics.fmean(best[n][s] - single[n][s] for n in (0, 0.3)) for s in range(3)]
    avg = got["average", BEST]
    assert avg["minus_single_mean"] == pytest.approx(statistics.fmean(per_seed))
    assert avg["minus_single_ci95"] == pytest.approx(half_width(per_seed)) and (avg["won"], avg["lost"]) == (3, 0)
    assert avg["test_accuracy_mean"] == pytest.approx(statistics.fmean(best[0] + best[0.3]))
    assert got["average", SINGLE]["kept_noisy_fraction_mean"] == pytest.approx(0.15)
    assert math.isnan(got["label_noise=0", SINGLE]["minus_single_mean"]) and got["label_noise=0", "full"]["n"] == 3


def test_cli_headroom_end_to_end_resumes_and_prints_the_resume_command(tmp_path, capsys, monkeypatch):
    out = tmp_path / "h"
    argv = ["headroom", "--env", ENV, "--env-kwargs", *CLI_KW, "--instances", "label_noise=0,0.3", "--budgets"]
    argv += ["0.5", "--trials", "2", "--seeds", "0", "1", "--policies", "uniform", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| average | instance_best | 2 |" in printed and "| label_noise=0.3 | uniform | 2 |" in printed
    assert "ran 16 episode(s), skipped 0" in printed and f"single best for compare in {out / 'tuned'}" in printed
    assert main(argv) == 0 and "ran 0 episode(s), skipped 16" in capsys.readouterr().out
    assert main([*argv, "--instances", "label_noise=0,1.2"]) == 2  # the last --instances counts
    err = capsys.readouterr().err
    assert err.startswith("prunegym headroom: error: instance label_noise=1.2 is out of range") and err.count("\n") == 1

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "headroom", interrupted)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert f"saved under {out}; resume with: prunegym headroom --env {ENV}" in err and err.count("\n") == 1
