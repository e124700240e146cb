"""Nothing stale, nothing doubled, nothing lost (issue 12, items 1, 5, 6, 7, 9 and the strict-JSON rows).

A done (policy, seed) pair must match what the policy is now and have its TensorBoard run; one writer per
``--out``; ``--rerun`` replaces; outputs are checked before the first episode; diverged and failed episodes
are marked, kept out of the means and the Pareto front, and make the command exit 1.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prunegym.agents import compare, read_rows
from prunegym.agents.cli import main
from prunegym.agents.evaluation.results import append_rows

ENV = "prunegym/Synthetic-MLP-v0"
LABEL = "prunegym_Synthetic-MLP-v0"
KW = dict(epochs=2, train_size=300, val_size=100, test_size=100)
KW_ARGS = [f"{k}={v}" for k, v in KW.items()]
TINY_PPO = ["--hyperparams", "n_steps=2", "batch_size=2", "n_epochs=1", "n_envs=1"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_line(capsys, prefix: str = "prunegym") -> str:
    err = capsys.readouterr().err
    assert err.startswith(prefix) and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture
def no_episodes(monkeypatch):
    """Fail the test if any episode is scheduled (the error must come first)."""
    from prunegym.agents.evaluation import harness as evaluation

    def refuse(*args, **kwargs):
        raise AssertionError("an episode was scheduled before the error")

    monkeypatch.setattr(evaluation, "dispatch", refuse)


def _compare_argv(out: Path, *extra: str, policies=("uniform",), seeds=("0", "1")) -> list[str]:
    return [
        "compare",
        "--env",
        ENV,
        "--seeds",
        *seeds,
        "--policies",
        *policies,
        "--out",
        str(out),
        "--quiet",
        *extra,
        "--env-kwargs",
        *KW_ARGS,
    ]


def _events(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _train(out: Path, seed: int) -> int:
    return main(
        [
            "train",
            "--algo",
            "ppo",
            "--env",
            ENV,
            "--total-timesteps",
            "4",
            "--seed",
            str(seed),
            "--quiet",
            "--tensorboard-log",
            "",
            "--out",
            str(out),
            "--eval-freq",
            "0",
            *TINY_PPO,
            "--overwrite",
            "--env-kwargs",
            *KW_ARGS,
        ]
    )


# -- 1: a done pair must match what the policy is --------------------------------------------------------------
def test_a_retrained_agent_runs_again_and_rows_record_the_policy_hash(tmp_path, capsys):
    from prunegym.agents.sb3.agent import agent_fingerprint

    agent, out = tmp_path / "agent", tmp_path / "cmp"
    assert _train(agent, 0) == 0
    argv = _compare_argv(out, "--agent", str(agent / "model.zip"))
    assert main(argv) == 0 and "ran 4 episode(s), skipped 0" in capsys.readouterr().out
    first = {(r["policy"], r["seed"]): r for r in read_rows(out / "results.jsonl")}
    old_hash = agent_fingerprint(agent / "model.zip")
    assert {r["policy_hash"] for k, r in first.items() if k[0] == "ppo_uniform"} == {old_hash}
    assert main(argv) == 0 and "ran 0 episode(s), skipped 4" in capsys.readouterr().out

    assert _train(agent, 1) == 0  # another agent into the same path
    new_hash = agent_fingerprint(agent / "model.zip")
    assert new_hash != old_hash
    assert main(argv) == 0
    assert "ran 2 episode(s), skipped 2" in capsys.readouterr().out  # the agent's pairs, not the baseline's
    rows = read_rows(out / "results.jsonl")
    latest = {(r["policy"], r["seed"]): r for r in rows}
    assert {latest["ppo_uniform", s]["policy_hash"] for s in (0, 1)} == {new_hash}
    assert latest["uniform", 0]["policy_hash"] == first["uniform", 0]["policy_hash"]
    summary = (out / "summary.csv").read_text()
    assert summary.count("ppo_uniform,2,") == 1


def test_a_baseline_with_other_hyperparameters_or_another_prunegym_version_runs_again(tmp_path, monkeypatch):
    import prunegym.training
    from prunegym.agents.evaluation.episode import policy_spec

    out = tmp_path / "cmp"
    assert compare(ENV, [0], policies=["uniform"], out=out, **KW).ran == 1
    assert compare(ENV, [0], policies=["uniform"], out=out, **KW).ran == 0
    # the same label with other hyperparameters is another policy
    assert compare(ENV, [0], policies=[policy_spec("uniform", hparams={"prune_ratio": 0.3})], out=out, **KW).ran == 1
    hashes = [r["policy_hash"] for r in read_rows(out / "results.jsonl")]
    assert len(set(hashes)) == 2 and all(h.startswith("sha256:") for h in hashes)
    # another prunegym version: nothing done counts
    real = prunegym.training.versions
    monkeypatch.setattr(prunegym.training, "versions", lambda: {**real(), "prunegym": "99.0"})
    assert compare(ENV, [0], policies=["uniform"], out=out, **KW).ran == 1


def test_rows_of_the_previous_schema_are_read_and_run_again(tmp_path):
    out = tmp_path / "cmp"
    compare(ENV, [0], policies=["uniform"], out=out, **KW)
    row = read_rows(out / "results.jsonl")[0]
    for key in ("policy_hash", "runtime"):
        row.pop(key)
    row["schema"] = "prunegym.results/1"
    (out / "results.jsonl").write_text(json.dumps(row) + "\n")
    again = compare(ENV, [0], policies=["uniform"], out=out, **KW)
    assert (again.ran, again.skipped) == (1, 0)
    schemas = [r["schema"] for r in read_rows(out / "results.jsonl")]
    assert schemas == ["prunegym.results/1", "prunegym.results/2"]


# -- 5: a pair is done only with its TensorBoard run -----------------------------------------------------------
def test_a_pair_whose_tensorboard_run_is_missing_runs_again(tmp_path, capsys):
    import shutil

    out = tmp_path / "cmp"
    assert main(_compare_argv(out)) == 0
    run = out / "runs" / LABEL / "uniform" / "seed1"
    expected = _events(run)
    shutil.rmtree(run)  # as if killed after the row and before the run
    assert main(_compare_argv(out)) == 0
    assert "ran 1 episode(s), skipped 1" in capsys.readouterr().out
    assert _events(run) == expected


def test_the_run_is_written_before_the_row(tmp_path, monkeypatch):
    """A kill between the two leaves a run without its row (run again on resume), never a row without its run."""
    from prunegym.agents.evaluation import harness as evaluation

    def killed(*args, **kwargs):
        raise RuntimeError("killed while writing the row")

    monkeypatch.setattr(evaluation, "append_rows", killed)
    with pytest.raises(RuntimeError, match="killed while writing the row"):
        compare(ENV, [0], policies=["uniform"], out=tmp_path / "cmp", **KW)
    assert (tmp_path / "cmp" / "runs" / LABEL / "uniform" / "seed0").is_dir()
    assert not (tmp_path / "cmp" / "results.jsonl").exists()
    monkeypatch.undo()
    again = compare(ENV, [0], policies=["uniform"], out=tmp_path / "cmp", **KW)
    assert again.ran == 1 and len(read_rows(tmp_path / "cmp" / "results.jsonl")) == 1


# -- 6: one writer per --out; --rerun replaces ------------------------------------------------------------------
def test_a_second_writer_on_one_out_fails_naming_the_holder(tmp_path, capsys, no_episodes):
    out = tmp_path / "cmp"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from prunegym.agents.output import output_lock\n"
            "with output_lock(sys.argv[1]):\n print('locked', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(_compare_argv(out)) == 2
        err = _one_line(capsys, "prunegym compare: error:")
        assert f"in use by another prunegym compare (pid {holder.pid})" in err
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "results.jsonl").exists()


def test_rerun_replaces_rows_and_tensorboard_runs(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(_compare_argv(out)) == 0
    before = read_rows(out / "results.jsonl")
    runs = [out / "runs" / LABEL / "uniform" / f"seed{s}" for s in (0, 1)]
    events = [_events(r) for r in runs]
    assert main(_compare_argv(out, "--rerun")) == 0
    assert "ran 2 episode(s), skipped 0" in capsys.readouterr().out
    after = read_rows(out / "results.jsonl")
    assert len(after) == 2 and [r["seed"] for r in after] == [0, 1]
    for a, b in zip(before, after):
        a, b = dict(a), dict(b)
        a.pop("wall_clock_s"), b.pop("wall_clock_s")
        assert a == b
    for run, ev in zip(runs, events):
        assert len([p for p in run.iterdir() if p.name.startswith("events.")]) == 1
        assert _events(run) == ev and [s for s, _ in ev["epoch/val_accuracy"]] == [1, 2]  # not doubled
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "runs" / LABEL / "comparison"))
    acc.Reload()
    assert len(acc.Images("comparison/accuracy_vs_compute")) == 1  # the summary run is replaced too
    assert not any(p.name.startswith(".runs") and any(p.iterdir()) for p in out.iterdir() if p.is_dir())


# -- 7: outputs are checked before the first episode ------------------------------------------------------------
@pytest.mark.parametrize(
    "make_argv",
    [
        lambda t: _compare_argv(Path("/proc/prunegym-x")),
        lambda t: _compare_argv(t / "a-file"),
        lambda t: [
            "evaluate",
            "--policy",
            "uniform",
            "--env",
            ENV,
            "--seeds",
            "0",
            "--quiet",
            "--results",
            "/proc/prunegym-x/r.jsonl",
            "--env-kwargs",
            *KW_ARGS,
        ],
        lambda t: [
            "evaluate",
            "--policy",
            "uniform",
            "--env",
            ENV,
            "--seeds",
            "0",
            "--quiet",
            "--results",
            str(t),
            "--env-kwargs",
            *KW_ARGS,
        ],
        lambda t: [
            "evaluate",
            "--policy",
            "uniform",
            "--env",
            ENV,
            "--seeds",
            "0",
            "--quiet",
            "--results",
            str(t / "r.jsonl"),
            "--tensorboard-log",
            str(t / "a-file"),
            "--env-kwargs",
            *KW_ARGS,
        ],
    ],
    ids=["compare-proc", "compare-file", "evaluate-proc", "evaluate-results-is-a-folder", "evaluate-tb-is-a-file"],
)
def test_unusable_outputs_fail_before_the_first_episode(make_argv, tmp_path, capsys, no_episodes):
    (tmp_path / "a-file").write_text("x")
    assert main(make_argv(tmp_path)) == 2
    err = _one_line(capsys)
    assert "choose another path" in err


def test_train_checks_its_output_folder_before_training(tmp_path, capsys, monkeypatch):
    from prunegym.agents.sb3 import train as training

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the error")

    monkeypatch.setattr(training, "make_vec_env", refuse)
    (tmp_path / "a-file").write_text("x")
    for out in (tmp_path / "a-file", Path("/proc/prunegym-x")):
        assert (
            main(
                [
                    "train",
                    "--algo",
                    "ppo",
                    "--env",
                    ENV,
                    "--total-timesteps",
                    "4",
                    "--quiet",
                    "--out",
                    str(out),
                    "--tensorboard-log",
                    "",
                    "--env-kwargs",
                    *KW_ARGS,
                ]
            )
            == 2
        )
        assert str(out) in _one_line(capsys, "prunegym train: error:")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_fails_before_the_first_episode(tmp_path, capsys, no_episodes):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(_compare_argv(ro / "cmp")) == 2
        assert "not writable" in _one_line(capsys)
    finally:
        ro.chmod(0o755)


# -- 9: diverged and failed episodes ------------------------------------------------------------------------------
def test_diverged_episodes_are_marked_kept_off_the_front_and_exit_1(tmp_path, capsys):
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
        "--out",
        str(out),
        "--quiet",
        "--env-kwargs",
        *KW_ARGS,
        "lr=1e12",
        "lr_schedule='constant'",
    ]
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "prunegym compare: 2 episode(s) diverged (full seed 0, full seed 1;" in err
    rows = read_rows(out / "results.jsonl")
    assert all(r["error"].startswith("non-finite training loss") and r["steps"] >= 1 for r in rows)
    assert all(0 <= r["test_accuracy"] <= 1 for r in rows)  # a NaN model still "predicts" a class
    (entry,) = compare(ENV, [0, 1], policies=["full"], out=out, **KW, lr=1e12, lr_schedule="constant").summary
    assert entry["n"] == 0 and entry["n_diverged"] == 2 and not entry["pareto"]
    assert math.isnan(entry["test_accuracy_mean"])
    md = (out / "summary.md").read_text()
    assert "| full | 0 (+2 diverged) | — ±" not in md and "| full | 0 (+2 diverged) | — |" in md
    assert "**Diverged episodes (2)**" in md and "non-finite training loss" in md
    assert "DIVERGED" not in captured.out  # compare prints the table; evaluate marks its rows (below)
    assert (
        main(
            [
                "evaluate",
                "--policy",
                "full",
                "--env",
                ENV,
                "--seeds",
                "0",
                "--quiet",
                "--results",
                str(tmp_path / "r.jsonl"),
                "--env-kwargs",
                *KW_ARGS,
                "lr=1e12",
                "lr_schedule='constant'",
            ]
        )
        == 1
    )
    captured = capsys.readouterr()
    assert "DIVERGED: non-finite training loss" in captured.out and "1 episode(s) diverged (full seed 0" in captured.err


def test_summary_keeps_error_rows_out_of_means_and_the_front():
    from prunegym.agents.evaluation.report import markdown_table, summarize

    def row(policy, seed, acc, comp, error=None, steps=2):
        return {
            "policy": policy,
            "seed": seed,
            "test_accuracy": acc,
            "compute_fraction": comp,
            "kept_fraction": comp,
            "episode_return": acc - comp,
            "wall_clock_s": 1.0,
            "error": error,
            "steps": steps,
        }

    rows = [
        row("a", 0, 0.5, 0.5),
        row("a", 1, 0.6, 0.5),
        row("a", 2, 0.9, 0.1, "non-finite training loss"),
        row("b", 0, 0.99, 0.01, "non-finite validation loss"),
        row("c", 0, 0.4, 0.9),
        row("c", 1, float("nan"), float("nan"), "RuntimeError: boom", steps=0),
    ]
    s = {e["policy"]: e for e in summarize(rows)}
    assert s["a"]["n"] == 2 and s["a"]["n_diverged"] == 1 and s["a"]["test_accuracy_mean"] == pytest.approx(0.55)
    assert s["b"]["n"] == 0 and s["b"]["n_diverged"] == 1 and not s["b"]["pareto"]
    assert s["c"]["n"] == 1 and s["c"]["n_failed"] == 1
    assert [p for p, e in s.items() if e["pareto"]] == ["a"]
    md = markdown_table(list(s.values()))
    assert "| a | 2 (+1 diverged) |" in md and "| b | 0 (+1 diverged) |" in md and "| c | 1 (+1 failed) |" in md


def test_compare_exits_1_naming_the_failed_episodes(tmp_path, capsys, monkeypatch):
    from prunegym.agents.evaluation import harness as evaluation
    from prunegym.agents.evaluation.episode import failed_outcome

    def all_fail(tasks, on_result, progress, ray, **kwargs):
        outs = [failed_outcome(t.spec, t.env_id, t.env_kwargs, t.seed, "RuntimeError: boom") for t in tasks]
        for o in outs:
            on_result(o)
        return outs

    monkeypatch.setattr(evaluation, "dispatch", all_fail)
    assert main(_compare_argv(tmp_path / "cmp")) == 1
    err = _one_line(capsys, "prunegym compare: 2 episode(s) failed (uniform seed 0, uniform seed 1;")
    assert "run the same command again to retry them" in err


# -- rows are strict JSON ---------------------------------------------------------------------------------------
def test_failed_rows_are_written_as_strict_json_and_read_back_as_nan(tmp_path):
    from prunegym.agents.evaluation.episode import failed_outcome, policy_spec

    path = tmp_path / "results.jsonl"
    row = failed_outcome(policy_spec("uniform"), ENV, KW, 0, "RuntimeError: boom").row
    row.prune_ratios = [0.5, float("nan")]
    append_rows(path, [row])
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text

    def reject(constant):
        raise ValueError(f"non-standard JSON constant {constant}")

    doc = json.loads(text, parse_constant=reject)  # what a strict parser accepts
    assert doc["test_accuracy"] is None and doc["prune_ratios"] == [0.5, None]
    back = read_rows(path)[0]
    assert math.isnan(back["test_accuracy"]) and math.isnan(back["wall_clock_s"])
    assert back["prune_ratios"][0] == 0.5 and math.isnan(back["prune_ratios"][1])


def test_the_agent_hash_follows_content_not_file_times(tmp_path):
    """The hash is of what decides the actions (weights, observation statistics), not of mtime or name."""
    from prunegym.agents.sb3.agent import agent_fingerprint

    assert _train(tmp_path / "a", 0) == 0
    h = agent_fingerprint(tmp_path / "a" / "model.zip")
    time.sleep(0.01)
    os.utime(tmp_path / "a" / "model.zip")  # touched, same content
    assert agent_fingerprint(tmp_path / "a" / "model.zip") == h
    meta = json.loads((tmp_path / "a" / "model.json").read_text())
    meta["obs_normalizer"]["mean"][0] += 1.0  # other observation statistics: another policy
    (tmp_path / "a" / "model.json").write_text(json.dumps(meta))
    assert agent_fingerprint(tmp_path / "a" / "model.zip") != h


# -- issue 21: a finished --out keeps no lock file and no staging folder; two writers still exclude each other --
def test_a_finished_compare_leaves_no_lock_file_and_no_staging_folder(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(_compare_argv(out)) == 0
    assert not (out / ".prunegym.lock").exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no `.runs.staging` either
    assert main(_compare_argv(out)) == 0  # a resume takes the lock again
    assert not (out / ".prunegym.lock").exists()


def test_the_lock_still_excludes_a_second_writer_after_the_file_was_removed(tmp_path):
    from prunegym.agents.output import OutputError, output_lock

    with output_lock(tmp_path):
        with pytest.raises(OutputError, match=f"pid {os.getpid()}"):
            with output_lock(tmp_path):
                pass
    assert not (tmp_path / ".prunegym.lock").exists()
    with output_lock(tmp_path):  # the next writer makes a new file
        assert (tmp_path / ".prunegym.lock").read_text().strip() == str(os.getpid())
