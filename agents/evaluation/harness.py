"""The evaluation harness: ``evaluate`` (one policy, some seeds) and ``compare`` (many policies, same seeds).

Three layers:

1. :func:`prunegym.agents.evaluation.episode.run_episode` plays one (policy spec, env id, env kwargs, seed) episode
   and returns an ``EpisodeOutcome`` (row + per-epoch records), with no side effects;
2. :func:`~prunegym.agents.evaluation.dispatch.dispatch` runs a list of :class:`EpisodeTask` and hands each
   outcome to a callback as soon as it is done: :func:`run_all` one after the other in this process, or, with
   ``workers=`` / ``ray_address=``, :func:`prunegym.agents.evaluation.dispatch.run_all_ray`, one Ray task per
   episode (failures become failed rows) through the generic :func:`prunegym.agents.parallel.ray_tasks.run_tasks`;
3. :class:`ResultSink` records an outcome (TensorBoard run first, then the ``results.jsonl`` row), and
   ``compare`` turns the rows into tables and the figure once everything has run.

Every runner gives the same rows (up to ``wall_clock_s`` and the order of the lines).

Before the first episode: every input is checked (env kwargs, policies, the data splits, seeds in
``[0, 2**63)``), the output is checked writable and its existing results readable, and ``compare`` takes
the lock of ``out`` (a second writer fails at once). A (policy, seed) pair counts as done only if its latest
row is a result of the policy as it is now (same ``policy_hash``, same prunegym version) and its TensorBoard
run exists; anything else runs again.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from prunegym.baselines import POLICIES
from prunegym.envs import ENV_IDS, task_config
from prunegym.training import resolve_device, runtime, versions
from prunegym.training.io import write_text_atomic

from ..env_factory import canonical_env_id, env_label
from ..output import output_lock, staging_folder, writable_file, writable_folder
from ..parallel.ray_tasks import RayOptions, ray_options_of
from ..sb3.agent import Agent, load_agent
from ..sb3.pretrained import is_pretrained, runtime_warning
from ..tensorboard import (
    LiveRun,
    episode_hparams,
    has_events,
    remove_live_runs,
    row_run_dir,
    run_dir,
    write_episode,
)
from .dispatch import EpisodeTask, _seeds, dispatch
from .episode import EpisodeOutcome, PolicySpec, check_episode, policy_fingerprint, policy_spec
from .report import accuracy_compute_figure, failures_table, markdown_table, publish_figure, summarize, write_csv
from .results import append_rows, canonical_json, completed_keys, is_diverged, is_failed, read_rows, row_key

__all__ = ["Comparison", "Interrupted", "ResultSink", "compare", "evaluate"]


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during ``evaluate`` / ``compare``: ``done`` holds the rows recorded before it."""

    def __init__(self, done: list[dict[str, Any]]):
        super().__init__()
        self.done = done


@dataclass
class ResultSink:
    """Records outcomes: writes the TensorBoard run ``<tensorboard_log>/<env>/<policy>/seed<k>`` (if set; not
    for a failed episode, which has no epochs; ``.../<policy>/budget<b>/seed<k>`` under a compute budget), with
    its hyperparameters for the HPARAMS tab, replacing an earlier one, then appends the row to ``results``
    (if set; ``replace``: replacing the earlier rows of the pair). In this order a kill between the two
    leaves a run without a row, which a resumed ``compare`` runs again, never a row without its run.
    :meth:`live_run` gives a running episode its live TensorBoard run."""

    results: str | Path | None = None
    tensorboard_log: str | Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    replace: bool = False

    def __call__(self, outcome: EpisodeOutcome) -> None:
        row = outcome.row.to_dict()
        if self.tensorboard_log is not None and not outcome.failed:
            write_episode(
                row_run_dir(self.tensorboard_log, row),
                outcome.epochs,
                row,
                staging=staging_folder(self.tensorboard_log),
                hparams=episode_hparams(row),
            )
        if self.results is not None:
            append_rows(self.results, [row], replace=self.replace)
        self.rows.append(row)

    def live_run(self, task: EpisodeTask) -> LiveRun | None:
        """A live run for ``task``'s episode (its ``epoch/`` scalars as they come), or None without TensorBoard."""
        if self.tensorboard_log is None:
            return None
        budget = task.env_kwargs.get("compute_budget")
        return LiveRun(
            run_dir(
                self.tensorboard_log,
                task.env_id,
                task.spec.name,
                task.seed,
                budget if isinstance(budget, (int, float)) else None,
            )
        )


def _budget_of(key_kwargs: str) -> float | None:
    """The compute budget in a row key's canonical env kwargs (``None``: none)."""
    budget = json.loads(key_kwargs).get("compute_budget")
    return float(budget) if isinstance(budget, (int, float)) else None


def _episode_threads(ray: RayOptions) -> int:

    return ray.threads if ray.enabled or ray.cpus_per_run is not None else torch.get_num_threads()


def _warn_shipped_runtime(spec: PolicySpec, env_id: str, env_kwargs: dict[str, Any], ray: RayOptions) -> None:
    """One warning when a shipped agent runs under other versions, threads or device than it was measured."""

    if spec.kind != "agent" or not is_pretrained(spec.path) or not isinstance(spec.obj, Agent):
        return

    device = env_kwargs.get("device") or task_config(ENV_IDS.get(env_id, (env_id,))[0]).device  # user tasks: by id
    current = runtime(device=resolve_device(device), threads=_episode_threads(ray))
    msg = runtime_warning(f"pretrained:{Path(spec.path).stem}", spec.obj.meta.get("runtime"), current)
    if msg:
        warnings.warn(msg, RuntimeWarning, stacklevel=3)


def _prepare(spec: PolicySpec, env_id: str, kwargs: dict[str, Any], ray: RayOptions) -> PolicySpec:
    """Load an agent once, check the episode (before any runs), fingerprint the policy."""
    if spec.kind == "agent" and spec.obj is None:
        assert spec.path is not None  # an agent spec without obj has a path (policy_spec)
        spec.obj = load_agent(spec.path)  # once, not once per episode
    check_episode(spec, env_id, kwargs)
    spec.fingerprint = policy_fingerprint(spec)
    return spec


def _run(
    tasks: list[EpisodeTask], sink: ResultSink, progress: bool, ray: RayOptions, batched: bool = False
) -> list[EpisodeOutcome]:
    """Play ``tasks`` into ``sink``; a shipped agent among them that runs under another runtime than it was
    measured warns once first (not when nothing of it runs, e.g. a resume that skips every pair)."""
    warned: set[int] = set()
    for t in tasks:
        if id(t.spec) not in warned:
            warned.add(id(t.spec))
            _warn_shipped_runtime(t.spec, t.env_id, t.env_kwargs, ray)
    try:
        return dispatch(tasks, sink, progress, ray, live=sink.live_run, batched=batched)
    except KeyboardInterrupt:
        raise Interrupted(list(sink.rows)) from None


def evaluate(
    policy: Any,
    env_id: str,
    seeds: Iterable[int],
    *,
    results: str | Path | None = "results.jsonl",
    tensorboard_log: str | Path | None = None,
    name: str | None = None,
    hparams: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    workers: int | None = None,
    ray_address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float = 0.0,
    ray: RayOptions | None = None,
    batched: bool = False,
    **more_env_kwargs: Any,
) -> list[dict[str, Any]]:
    """Run one deterministic episode of ``policy`` per seed on ``env_id`` and return the rows (dicts of
    the :class:`~prunegym.agents.evaluation.results.EpisodeRow` schema), appending each to ``results`` as it finishes
    (``None``: no file) and writing its TensorBoard run under ``tensorboard_log`` (``None``: none).

    ``policy``: a name in ``POLICIES`` (the env is made with ``pruner=policy_pruner(name)``; ``hparams``
    override its defaults), a path to a saved agent, an :class:`Agent`, an SB3 model or any object with
    ``predict``. ``name`` overrides the label. Env kwargs come from ``env_kwargs`` and/or keywords.

    Parallel: ``workers=N`` runs the seeds as Ray tasks on a local Ray with N workers, ``ray_address``
    on a running cluster; each task takes ``cpus_per_run`` CPUs (default 1) and ``gpus_per_run`` GPUs (see
    :mod:`prunegym.agents.parallel.ray_tasks`), or the four as one ``ray=RayOptions(...)``. There an episode
    that fails after its retry gives a failed row (``results.is_failed``) instead of raising. The rows come
    back in the order of ``seeds``.
    ``cpus_per_run`` is also each episode's torch thread count, on Ray and, when given, here: CPU results
    can depend on it, and a sequential and a Ray run with the same value give the same rows.
    ``batched``: play all seeds as one batch of a :class:`~prunegym.envs.PruningVectorEnv` (one stacked model;
    equal to the sequential rows within float rounding; not for PFB or BatchNorm models).
    """
    ray = ray_options_of(ray, workers, ray_address, cpus_per_run, gpus_per_run).validate()
    env_id = canonical_env_id(env_id)
    seeds = _seeds(seeds)
    spec = policy_spec(policy, name=name, hparams=hparams)
    kwargs = {**(env_kwargs or {}), **more_env_kwargs}
    _prepare(spec, env_id, kwargs, ray)
    if results is not None:
        writable_file(results, "results file")
        read_rows(results)  # a corrupt file fails now, not after the episodes
    if tensorboard_log is not None:
        writable_folder(tensorboard_log, "TensorBoard folder")
    sink = ResultSink(results, tensorboard_log)
    outcomes = _run([EpisodeTask(spec, env_id, kwargs, s) for s in seeds], sink, progress, ray, batched)
    return [o.row.to_dict() for o in outcomes]


@dataclass
class Comparison:
    """What ``compare`` produced: every matching row (old and new), the per-policy summary and the files."""

    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    results: Path
    figure: Path
    table_md: Path
    table_csv: Path
    tensorboard_log: Path
    ran: int = 0
    skipped: int = 0

    @property
    def markdown(self) -> str:
        return self.table_md.read_text()

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The failed episodes among ``rows`` (left out of ``summary``; a rerun runs them again)."""
        return [r for r in self.rows if is_failed(r)]

    @property
    def diverged(self) -> list[dict[str, Any]]:
        """The episodes among ``rows`` that ran and diverged (``error`` set; left out of the means and the
        Pareto front; deterministic, so a rerun gives them again)."""
        return [r for r in self.rows if is_diverged(r)]


def _unique_labels(specs: list[PolicySpec]) -> list[PolicySpec]:
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        n = seen.get(spec.name, 0) + 1
        seen[spec.name] = n
        if n > 1:
            spec = replace(spec, name=f"{spec.name}_{n}")
        out.append(spec)
    return out


def compare(
    env_id: str,
    seeds: Iterable[int],
    policies: Iterable[Any] | None = None,
    agents: Iterable[Any] = (),
    out: str | Path = "compare",
    *,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    skip_done: bool = True,
    workers: int | None = None,
    ray_address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float = 0.0,
    ray: RayOptions | None = None,
    batched: bool = False,
    **more_env_kwargs: Any,
) -> Comparison:
    """Every policy of ``policies`` (default: every name in ``POLICIES`` that runs without a compute budget;
    :func:`~prunegym.agents.evaluation.matched_compute.compare_budgets` compares at matched compute) and every agent
    of ``agents`` (paths, :class:`Agent` objects or SB3 models) on the same ``seeds``, into ``out``:

    ``results.jsonl`` (rows), ``runs/`` (TensorBoard: one run per policy and seed, and
    ``runs/<env>/comparison`` with the figure and the table), ``accuracy_vs_compute.png``, ``summary.md``
    and ``summary.csv`` (mean ± 95% Student-t interval over seeds per policy). With ``skip_done``, (policy,
    seed) pairs already in ``out/results.jsonl`` for the same env id and env kwargs, from the same policy
    (``policy_hash``: a retrained agent file runs again) and prunegym version, and with their TensorBoard
    run, are not run again, so an interrupted comparison resumes where it stopped (failed episodes are run
    again). Without it (``--rerun``) every pair runs and its row and run replace the earlier ones. ``out``
    is locked for the duration (:func:`prunegym.agents.output.output_lock`).

    Parallel: ``workers``, ``ray_address``, ``cpus_per_run``, ``gpus_per_run``, ``ray`` as in :func:`evaluate`; one Ray
    task per (policy, seed), each row, TensorBoard run and the figure as in the sequential run. Episodes that
    fail after their retry are in ``rows`` and ``results.jsonl`` as failed rows (``Comparison.failed``), out
    of the summary, and listed under the table. ``batched``: each policy's seeds as one batch (see
    :func:`evaluate`).
    """

    ray = ray_options_of(ray, workers, ray_address, cpus_per_run, gpus_per_run).validate()
    env_id = canonical_env_id(env_id)
    seeds = _seeds(seeds)
    kwargs = {**(env_kwargs or {}), **more_env_kwargs}
    names = [n for n, c in POLICIES.items() if not c.requires_budget] if policies is None else list(policies)
    specs = _unique_labels([policy_spec(p) for p in names] + [policy_spec(a) for a in agents])
    if not specs:
        raise ValueError("nothing to compare: no policies and no agents")
    for spec in specs:
        _prepare(spec, env_id, kwargs, ray)
    tasks = [EpisodeTask(spec, env_id, kwargs, s) for spec in specs for s in seeds]
    return run_comparison(
        out,
        tasks,
        lambda o, ran, skipped: _report(env_id, kwargs, [s.name for s in specs], seeds, o, ran=ran, skipped=skipped),
        skip_done=skip_done,
        ray=ray,
        progress=progress,
        batched=batched,
    )


def run_comparison(
    out: str | Path,
    tasks: list[EpisodeTask],
    report: Callable[[Path, int, int], Any],
    *,
    skip_done: bool,
    ray: RayOptions,
    progress: bool,
    batched: bool = False,
) -> Any:
    """Run ``tasks`` into ``out`` under its lock (``compare``'s engine, shared by the budget comparison): the
    output is checked and its rows read first; with ``skip_done``, tasks whose latest row is a result of the
    policy as it is now (same ``policy_hash`` for that label and env kwargs, same prunegym version) with its
    TensorBoard run are skipped; then ``report(out, ran, skipped)`` makes the tables (still under the lock)."""
    out = Path(out)
    with output_lock(out, "prunegym compare"):
        results, tb_root = out / "results.jsonl", out / "runs"
        writable_file(results, "results file")
        rows = read_rows(results)  # a corrupt file fails now, before any episode
        staging = staging_folder(tb_root)
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)  # leftovers of a killed run (we hold the lock)
        remove_live_runs(tb_root)
        done = set()
        if skip_done:
            hashes = {(t.spec.name, canonical_json(t.env_kwargs)): t.spec.fingerprint for t in tasks}
            done = completed_keys(rows, hashes, versions()["prunegym"])
            done = {k for k in done if has_events(run_dir(tb_root, k[0], k[2], k[3], _budget_of(k[1])))}
        todo = [t for t in tasks if (t.env_id, canonical_json(t.env_kwargs), t.spec.name, t.seed) not in done]
        sink = ResultSink(results, tb_root, replace=not skip_done)
        _run(todo, sink, progress, ray, batched)
        try:
            return report(out, len(todo), len(tasks) - len(todo))
        except KeyboardInterrupt:
            raise Interrupted(list(sink.rows)) from None
        finally:
            if staging.is_dir() and not any(staging.iterdir()):
                staging.rmdir()  # every run was moved into place: no empty staging folder is left


def _report(
    env_id: str, env_kwargs: dict[str, Any], labels: list[str], seeds: list[int], out: Path, ran: int, skipped: int
) -> Comparison:
    """Tables, figure and TensorBoard summary of the rows of ``out/results.jsonl`` that match."""

    results, tb_root = out / "results.jsonl", out / "runs"
    wanted = {(env_id, canonical_json(env_kwargs), name, s) for name in labels for s in seeds}
    latest: dict[tuple, dict[str, Any]] = {}
    for row in read_rows(results):
        key = row_key(row)
        if key in wanted:
            latest[key] = row  # a re-run replaces the earlier row
    rows = sorted(latest.values(), key=lambda r: (labels.index(r["policy"]), r["seed"]))
    summary = summarize(rows, order=labels)
    title = f"{env_id} {canonical_json(env_kwargs)}" if env_kwargs else env_id
    md = markdown_table(summary, title=title) + failures_table(rows)
    write_text_atomic(out / "summary.md", md)
    csv_path = write_csv(summary, out / "summary.csv")
    fig = accuracy_compute_figure(summary, title=env_id)
    png = out / "accuracy_vs_compute.png"
    publish_figure(fig, md, png, tb_root, Path(env_label(env_id)) / "comparison", "accuracy_vs_compute")
    return Comparison(rows, summary, results, png, out / "summary.md", csv_path, tb_root, ran, skipped)
