"""The evaluation harness: ``evaluate`` (one policy, some seeds) and ``compare`` (many policies, same seeds).

Three layers:

1. :func:`prunegym.agents.episode.run_episode` plays one (policy spec, env id, env kwargs, seed) episode
   and returns an ``EpisodeOutcome`` (row + per-epoch records), with no side effects;
2. a scheduler runs a list of :class:`EpisodeTask` and hands each outcome to a callback as soon as it is
   done: :func:`run_all` one after the other in this process, or, with ``workers=`` / ``ray_address=``,
   :func:`prunegym.agents.parallel.run_all_ray`, one Ray task per episode (failures become failed rows);
3. :class:`ResultSink` records an outcome (``results.jsonl`` row, TensorBoard run), and ``compare`` turns
   the rows into tables and the figure once everything has run.

Either scheduler gives the same rows (up to ``wall_clock_s`` and the order of the lines).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .agent import load_agent
from .env_factory import canonical_env_id, env_label
from .episode import EpisodeOutcome, PolicySpec, check_episode, policy_spec, run_episode
from .parallel import RayOptions, run_all_ray, torch_threads
from .results import append_rows, canonical_json, completed_keys, is_failed, read_rows, row_key
from .tensorboard_log import run_dir, write_episode

__all__ = ["Comparison", "EpisodeTask", "ResultSink", "compare", "evaluate", "run_all"]


@dataclass
class EpisodeTask:
    """The arguments of one :func:`run_episode` call."""

    spec: PolicySpec
    env_id: str
    env_kwargs: dict[str, Any]
    seed: int


def run_all(tasks: Sequence[EpisodeTask], on_result: Callable[[EpisodeOutcome], None], *,
            progress: bool = False, runner: Callable[..., EpisodeOutcome] = run_episode) -> list[EpisodeOutcome]:
    """Run ``tasks`` one after the other with ``runner`` and pass each outcome to ``on_result`` when done."""
    from tqdm.auto import tqdm

    outcomes = []
    with tqdm(total=len(tasks), desc="episodes", unit="ep", disable=not progress) as bar:
        for task in tasks:
            bar.set_postfix_str(f"{task.spec.name} seed {task.seed}")
            outcome = runner(task.spec, task.env_id, task.env_kwargs, task.seed, progress=progress)
            on_result(outcome)
            outcomes.append(outcome)
            bar.update()
    return outcomes


def _schedule(tasks: Sequence[EpisodeTask], on_result: Callable[[EpisodeOutcome], None], progress: bool,
              ray: RayOptions) -> list[EpisodeOutcome]:
    if ray.enabled:
        return run_all_ray(tasks, on_result, ray, progress=progress)
    with torch_threads(None if ray.cpus_per_run is None else ray.threads):
        return run_all(tasks, on_result, progress=progress)


@dataclass
class ResultSink:
    """Records outcomes: appends the row to ``results`` (if set) and writes the TensorBoard run
    ``<tensorboard_log>/<env>/<policy>/seed<k>`` (if set; not for a failed episode, which has no epochs)."""

    results: str | Path | None = None
    tensorboard_log: str | Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, outcome: EpisodeOutcome) -> None:
        row = outcome.row.to_dict()
        if self.results is not None:
            append_rows(self.results, [row])
        if self.tensorboard_log is not None and not outcome.failed:
            write_episode(run_dir(self.tensorboard_log, row["env_id"], row["policy"], row["seed"]),
                          outcome.epochs, row, index=0)
        self.rows.append(row)


def _seeds(seeds: Iterable[int]) -> list[int]:
    out = []
    for s in seeds:
        if isinstance(s, bool) or int(s) != s or int(s) < 0:
            raise ValueError(f"seed {s!r} must be a non-negative int")
        out.append(int(s))
    if not out:
        raise ValueError("no seeds given")
    return out


def evaluate(policy: Any, env_id: str, seeds: Iterable[int], *, results: str | Path | None = "results.jsonl",
             tensorboard_log: str | Path | None = None, name: str | None = None,
             hparams: dict[str, Any] | None = None, env_kwargs: dict[str, Any] | None = None,
             progress: bool = False, workers: int | None = None, ray_address: str | None = None,
             cpus_per_run: float | None = None, gpus_per_run: float = 0.0,
             **more_env_kwargs: Any) -> list[dict[str, Any]]:
    """Run one deterministic episode of ``policy`` per seed on ``env_id`` and return the rows (dicts of
    the :class:`~prunegym.agents.results.EpisodeRow` schema), appending each to ``results`` as it finishes
    (``None``: no file) and writing its TensorBoard run under ``tensorboard_log`` (``None``: none).

    ``policy``: a name in ``POLICIES`` (the env is made with ``pruner=policy_pruner(name)``; ``hparams``
    override its defaults), a path to a saved agent, an :class:`Agent`, an SB3 model or any object with
    ``predict``. ``name`` overrides the label. Env kwargs come from ``env_kwargs`` and/or keywords.

    Parallel: ``workers=N`` runs the seeds as Ray tasks on a local Ray with N workers, ``ray_address``
    on a running cluster; each task takes ``cpus_per_run`` CPUs (default 1) and ``gpus_per_run`` GPUs (see
    :mod:`prunegym.agents.parallel`). There an episode that fails after its retry gives a failed row
    (``results.is_failed``) instead of raising. The rows come back in the order of ``seeds``.
    ``cpus_per_run`` is also each episode's torch thread count, on Ray and, when given, here: CPU results
    can depend on it, and a sequential and a Ray run with the same value give the same rows.
    """
    ray = RayOptions(workers, ray_address, cpus_per_run, gpus_per_run).validate()
    env_id = canonical_env_id(env_id)
    spec = policy_spec(policy, name=name, hparams=hparams)
    kwargs = {**(env_kwargs or {}), **more_env_kwargs}
    check_episode(spec, env_id, kwargs)
    sink = ResultSink(results, tensorboard_log)
    outcomes = _schedule([EpisodeTask(spec, env_id, kwargs, s) for s in _seeds(seeds)], sink, progress, ray)
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


def _unique_labels(specs: list[PolicySpec]) -> list[PolicySpec]:
    seen: dict[str, int] = {}
    out = []
    for spec in specs:
        n = seen.get(spec.name, 0) + 1
        seen[spec.name] = n
        if n > 1:
            spec = PolicySpec(spec.kind, f"{spec.name}_{n}", spec.hparams, spec.path, spec.obj)
        out.append(spec)
    return out


def compare(env_id: str, seeds: Iterable[int], policies: Iterable[Any] | None = None, agents: Iterable[Any] = (),
            out: str | Path = "compare", *, env_kwargs: dict[str, Any] | None = None, progress: bool = False,
            skip_done: bool = True, workers: int | None = None, ray_address: str | None = None,
            cpus_per_run: float | None = None, gpus_per_run: float = 0.0, **more_env_kwargs: Any) -> Comparison:
    """Every policy of ``policies`` (default: every name in ``POLICIES``) and every agent of ``agents``
    (paths, :class:`Agent` objects or SB3 models) on the same ``seeds``, into ``out``:

    ``results.jsonl`` (rows), ``runs/`` (TensorBoard: one run per policy and seed, and
    ``runs/<env>/comparison`` with the figure and the table), ``accuracy_vs_compute.png``, ``summary.md``
    and ``summary.csv`` (mean ± std over seeds per policy). With ``skip_done``, (policy, seed) pairs already
    in ``out/results.jsonl`` for the same env id and env kwargs are not run again, so an interrupted
    comparison resumes where it stopped (failed episodes are run again).

    Parallel: ``workers``, ``ray_address``, ``cpus_per_run``, ``gpus_per_run`` as in :func:`evaluate`; one Ray
    task per (policy, seed), each row, TensorBoard run and the figure as in the sequential run. Episodes that
    fail after their retry are in ``rows`` and ``results.jsonl`` as failed rows (``Comparison.failed``), out
    of the summary, and listed under the table.
    """
    from prunegym.baselines import POLICIES

    ray = RayOptions(workers, ray_address, cpus_per_run, gpus_per_run).validate()
    env_id = canonical_env_id(env_id)
    seeds = _seeds(seeds)
    kwargs = {**(env_kwargs or {}), **more_env_kwargs}
    names = list(POLICIES) if policies is None else list(policies)
    specs = _unique_labels([policy_spec(p) for p in names] + [policy_spec(a) for a in agents])
    if not specs:
        raise ValueError("nothing to compare: no policies and no agents")
    for spec in specs:
        if spec.kind == "agent" and spec.obj is None:
            spec.obj = load_agent(spec.path)  # once, not once per episode
        check_episode(spec, env_id, kwargs)
    out = Path(out)
    results, tb_root = out / "results.jsonl", out / "runs"
    done = completed_keys(read_rows(results)) if skip_done else set()
    key_kwargs = canonical_json(kwargs)
    tasks = [EpisodeTask(spec, env_id, kwargs, s) for spec in specs for s in seeds
             if (env_id, key_kwargs, spec.name, s) not in done]
    _schedule(tasks, ResultSink(results, tb_root), progress, ray)
    return _report(env_id, kwargs, [s.name for s in specs], seeds, out, ran=len(tasks),
                   skipped=len(specs) * len(seeds) - len(tasks))


def _report(env_id: str, env_kwargs: dict[str, Any], labels: list[str], seeds: list[int], out: Path,
            ran: int, skipped: int) -> Comparison:
    """Tables, figure and TensorBoard summary of the rows of ``out/results.jsonl`` that match."""
    from .plots import accuracy_compute_figure, failures_table, markdown_table, summarize, write_csv
    from .tensorboard_log import EpisodeWriter

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
    (out / "summary.md").write_text(md)
    csv_path = write_csv(summary, out / "summary.csv")
    fig = accuracy_compute_figure(summary, title=env_id)
    png = out / "accuracy_vs_compute.png"
    fig.savefig(png)
    writer = EpisodeWriter(tb_root / env_label(env_id) / "comparison")
    try:
        writer.writer.add_figure("comparison/accuracy_vs_compute", fig, global_step=0, close=False)
        writer.writer.add_text("comparison/summary", md, global_step=0)
    finally:
        writer.close()
    return Comparison(rows, summary, results, png, out / "summary.md", csv_path, tb_root, ran, skipped)
