"""Dispatching the harness's episodes (:func:`dispatch`) to one of three runners: :func:`run_all` (one after the other,
in this process), :func:`run_all_batched` (each policy's seeds as one batch of a
:class:`~prunegym.envs.PruningVectorEnv`, in this process) and :func:`run_all_ray` (one Ray task per episode through
:func:`~prunegym.agents.parallel.ray_tasks.run_tasks`; an episode that still fails after its retry becomes a failed
row, :func:`~.episode.failed_outcome`). Each hands every :class:`~.episode.EpisodeOutcome` to ``on_result`` as soon
as it is done."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from prunegym.training import check_seed

from ..env_factory import module_env_id
from ..parallel.ray_tasks import RayCall, RayOptions, TaskFailure, run_tasks, torch_threads
from .batched_episodes import run_batched_episodes
from .episode import EpisodeOutcome, PolicySpec, failed_outcome, run_episode

__all__ = ["EpisodeTask", "dispatch", "run_all", "run_all_batched", "run_all_ray"]


@dataclass
class EpisodeTask:
    """The arguments of one :func:`run_episode` call."""

    spec: PolicySpec
    env_id: str
    env_kwargs: dict[str, Any]
    seed: int


def _seeds(seeds: Iterable[int]) -> list[int]:
    """The seeds as ints in ``[0, 2**63)``; none is an error."""
    out = [check_seed(s) for s in seeds]
    if not out:
        raise ValueError("no seeds given")
    return out


def run_all(
    tasks: Sequence[EpisodeTask],
    on_result: Callable[[EpisodeOutcome], None],
    *,
    progress: bool = False,
    runner: Callable[..., EpisodeOutcome] = run_episode,
    live: Callable[[EpisodeTask], Any] | None = None,
) -> list[EpisodeOutcome]:
    """Run ``tasks`` one after the other with ``runner`` and pass each outcome to ``on_result`` when done.
    ``live(task)``: a step callback for the task's episode (a live TensorBoard run), closed after it."""
    outcomes = []
    with tqdm(total=len(tasks), desc="episodes", unit="ep", disable=not progress) as bar:
        for task in tasks:
            bar.set_postfix_str(f"{task.spec.name} seed {task.seed}")
            watcher = live(task) if live is not None else None
            try:
                extra = {"on_step": watcher} if watcher is not None else {}
                outcome = runner(task.spec, task.env_id, task.env_kwargs, task.seed, progress=progress, **extra)
            finally:
                if watcher is not None:
                    watcher.close()
            on_result(outcome)
            outcomes.append(outcome)
            bar.update()
    return outcomes


def run_all_batched(
    tasks: Sequence[EpisodeTask], on_result: Callable[[EpisodeOutcome], None], *, progress: bool = False
) -> list[EpisodeOutcome]:
    """Run ``tasks`` grouped by (policy, env kwargs), each group's seeds as one batch
    (:func:`~.batched.run_batched_episodes`); outcomes come back group by group, in the order of ``tasks``
    within each."""
    groups: dict[tuple[int, str], list[EpisodeTask]] = {}
    for t in tasks:
        groups.setdefault((id(t.spec), repr(sorted(t.env_kwargs.items()))), []).append(t)
    outcomes: list[EpisodeOutcome] = []
    with tqdm(total=len(tasks), desc="episodes", unit="ep", disable=not progress) as bar:
        for group in groups.values():
            t0 = group[0]
            bar.set_postfix_str(f"{t0.spec.name} x{len(group)} seeds")
            for outcome in run_batched_episodes(
                t0.spec, t0.env_id, t0.env_kwargs, [t.seed for t in group], progress=progress
            ):
                on_result(outcome)
                outcomes.append(outcome)
                bar.update()
    return outcomes


def dispatch(
    tasks: Sequence[EpisodeTask],
    on_result: Callable[[EpisodeOutcome], None],
    progress: bool,
    ray: RayOptions,
    live: Callable[[EpisodeTask], Any] | None = None,
    batched: bool = False,
) -> list[EpisodeOutcome]:
    """Run ``tasks`` on Ray (``ray.enabled``), as batches (``batched``) or one after the other here; ``live``
    (sequential only: a Ray worker may not see the output folder) gives each episode a step callback."""
    if ray.enabled:
        if batched:
            raise ValueError("batched episodes run in this process: drop --batched or the Ray options")
        return run_all_ray(tasks, on_result, ray, progress=progress)
    with torch_threads(None if ray.cpus_per_run is None else ray.threads):
        if batched:
            return run_all_batched(tasks, on_result, progress=progress)
        return run_all(tasks, on_result, progress=progress, live=live)


def run_all_ray(
    tasks: Sequence[EpisodeTask],
    on_result: Callable[[EpisodeOutcome], None],
    options: RayOptions,
    *,
    progress: bool = False,
) -> list[EpisodeOutcome]:
    """Run ``tasks`` as Ray tasks (``run_episode`` each; a saved agent travels as its path); ``on_result``
    gets each outcome, failed ones included, in this process as it arrives. Returns the outcomes in the order
    of ``tasks``."""
    portable: dict[int, PolicySpec] = {}
    calls = []
    for t in tasks:
        spec = portable.setdefault(id(t.spec), t.spec.portable())
        # the id with its registering module, so that a worker that has not imported it yet can
        calls.append(
            RayCall((spec, module_env_id(t.env_id), t.env_kwargs, t.seed), f"episode {t.spec.name} seed {t.seed}")
        )
    outcomes: list[EpisodeOutcome | None] = [None] * len(tasks)

    def handle(i: int, result: Any) -> None:
        t = tasks[i]
        if isinstance(result, TaskFailure):
            result = failed_outcome(t.spec, t.env_id, t.env_kwargs, t.seed, result.error, result.wall_clock_s)
        outcomes[i] = result
        on_result(result)

    run_tasks(run_episode, calls, handle, options, progress=progress, unit="episode")
    return [o for o in outcomes if o is not None]
