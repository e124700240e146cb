"""``headroom``: what knowing the data regime is worth to a static policy (issue 23).

For *instances* (data regimes: ``{"label_noise": 0.2}``, ``{"imbalance": 10}``, ...) and budgets, :func:`headroom`
tunes a static policy with Optuna as ``tune`` does (:func:`~.tuning.run_study`): the **single best**, one study per
budget whose objective is the mean over instances x tuning seeds (``<out>/tuning/single``), and the
**per-instance best**, one ``tune`` study per (instance, budget) (``<out>/tuning/<instance>``). It plays both, every
published baseline (calibrated per instance and budget) and ``full`` on held-out seeds in ``compare --budgets``
folders (``<out>/eval/<instance>``, see :func:`_evaluate`) and reports per budget and instance, and on average
(per seed, the mean over instances), test accuracy (mean ± 95% Student-t interval), the paired difference from
the single best with seeds won / lost (``instance_best``'s is the **headroom**) and the share of noisy labels
kept (``headroom.md``, ``.csv``, ``.png``, TensorBoard ``<out>/runs``). The single best goes where ``compare
--budgets`` finds it: ``<out>/tuned`` (common env kwargs: the id's own drawn regimes) and ``<out>/tuned/<instance>``
(that instance's env kwargs; ``compare`` ignores settings tuned for other ones).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prunegym.baselines import POLICIES
from prunegym.training import check_seed
from prunegym.training.io import write_json_atomic, write_text_atomic

from ..env_factory import canonical_env_id, env_label, unbudgeted_kwargs
from ..output import output_lock, staging_folder
from ..parallel.ray_tasks import RayOptions
from .calibration import CALIBRATION_SEEDS
from .dispatch import EpisodeTask, _seeds
from .episode import check_episode, policy_spec
from .harness import _prepare, run_comparison
from .headroom_report import BEST, SINGLE, headroom_figure, headroom_markdown, headroom_summary, instance_label
from .matched_compute import REFERENCE, BudgetComparison, _budgets, _policy_specs, _report
from .report import publish_figure
from .tuning import TUNING_SEEDS, TuneResult, run_study, tuned_path

__all__ = [
    "BEST",
    "DEFAULT_POLICY",
    "EVALUATION_SEEDS",
    "SINGLE",
    "HeadroomResult",
    "check_instances",
    "headroom",
    "headroom_summary",
]

EVALUATION_SEEDS = tuple(range(8))
FIELDS = {"label_noise": "a fraction in [0, 1)", "imbalance": "a number >= 1 (1: balanced)"}
DEFAULT_POLICY = "static_ramp"  # the whole static family: keep schedule (tilt) and sharpness ramp


def check_instances(instances: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The instances (``{"label_noise": 0.2}``, ...) as dicts, checked: known fields, values in range, distinct
    (one-line ``ValueError``s naming the bad value and the allowed ones)."""
    out = [dict(i) for i in instances]
    for name, value in (kv for i in out for kv in i.items()):
        if name not in FIELDS:
            raise ValueError(f"unknown instance field {name!r}; allowed: {', '.join(FIELDS)}")
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not number or not (0 <= value < 1 if name == "label_noise" else value >= 1):
            raise ValueError(f"instance {name}={value!r} is out of range: {name} is {FIELDS[name]}")
    labels = [instance_label(i) for i in out]
    if not out or not all(out) or len(set(labels)) < len(labels):
        raise ValueError(f"instances must be given, distinct and not empty, not {labels}; e.g. label_noise=0,0.2,0.4")
    return out


@dataclass
class HeadroomResult:
    """What :func:`headroom` produced: the summary entries (see :func:`headroom_summary`), the rows, the tuned
    settings (``single`` per budget, ``per_instance`` per (instance, budget)) and the files."""

    entries: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    single: dict[float, TuneResult]
    per_instance: dict[tuple[str, float], TuneResult]
    table_md: Path
    table_csv: Path
    figure: Path
    out: Path  # also holds tuned/ (the single best for compare), tuning/ (the studies), eval/ and runs/
    ran: int = 0
    skipped: int = 0

    @property
    def markdown(self) -> str:
        return self.table_md.read_text()

    @property
    def headroom(self) -> dict[tuple[float, str], dict[str, Any]]:
        """``{(budget, instance or "average"): entry}`` of ``instance_best``: its ``minus_single_*``, the headroom."""
        return {(e["budget"], e["instance"]): e for e in self.entries if e["policy"] == BEST}


@dataclass
class _Plan:
    """The checked arguments of one :func:`headroom` call."""

    env_id: str
    insts: list[dict[str, Any]]
    budgets: list[float]
    policy: str
    names: list[str]
    base: dict[str, Any]
    tuning: list[int]
    seeds: list[int]
    sampler_seed: int
    calibration_seeds: Sequence[int]
    out: Path
    progress: bool
    ray: RayOptions
    batched: bool


def headroom(
    env_id: str,
    instances: Iterable[Mapping[str, Any]],
    budgets: Iterable[float],
    trials: int,
    *,
    out: str | Path = "headroom",
    policy: str = DEFAULT_POLICY,
    policies: Iterable[str] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    tuning_seeds: Sequence[int] = TUNING_SEEDS,
    seeds: Iterable[int] = EVALUATION_SEEDS,
    sampler_seed: int = 0,
    calibration_seeds: Sequence[int] = CALIBRATION_SEEDS,
    progress: bool = False,
    runner: Any = None,
    ray: RayOptions | None = None,
    batched: bool = False,
) -> HeadroomResult:
    """Tune ``policy`` (a static one) single best and per instance at each budget (a fraction of the full-data
    run's training FLOPs) with ``trials`` trials, then play both, the published baselines (``policies``; default
    all) and full data on the held-out ``seeds`` into ``out`` (see the module docstring). ``runner``: the
    tuning episodes' ``run_episode`` (tests); a second call with the same arguments runs nothing new."""
    env_id, insts, budgets = canonical_env_id(env_id), check_instances(instances), _budgets(budgets)
    base = dict(env_kwargs or {})
    clash = sorted(set(base) & {"compute_budget", *(k for i in insts for k in i)})
    if clash:
        raise ValueError(f"{clash[0]} is set by --instances or --budgets; remove it from the env kwargs")
    if policy not in POLICIES or not POLICIES[policy].requires_budget:
        statics = [n for n, c in POLICIES.items() if c.requires_budget]
        raise ValueError(f"policy {policy!r} is not a static policy; allowed: {', '.join(statics)}")
    published = [n for n, c in POLICIES.items() if not c.requires_budget and n != REFERENCE]
    names = published if policies is None else list(policies)
    bad = [n for n in names if n not in published]
    if bad:
        raise ValueError(f"{bad[0]!r} is not a published baseline; allowed: {', '.join(published)}")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials={trials!r} must be a positive int")
    tuning, held_out = _seeds(tuning_seeds), _seeds(seeds)
    kept = sorted(set(held_out) & {*tuning, *map(int, calibration_seeds)})
    if kept:
        raise ValueError(f"held-out seed {kept[0]} is also a tuning or calibration seed; keep them apart")
    sampler_seed, ray = check_seed(sampler_seed, "sampler_seed"), (ray or RayOptions()).validate()
    p = _Plan(env_id, insts, budgets, policy, names, base, tuning, held_out, sampler_seed, calibration_seeds,
              Path(out), progress, ray, batched)  # fmt: skip
    for i in insts:  # bad env kwargs fail here, before any study records them
        check_episode(policy_spec(policy), env_id, {**base, **i, "compute_budget": budgets[0]})
    with output_lock(p.out, "prunegym headroom", name=".headroom.lock"):
        single, per = _tune(p, trials, runner)
        _write_tuned(p, single)
        parts = [_evaluate(p, i, single, per) for i in insts]
        rows = [r for part in parts for r in part[0]]
        ran, skipped = sum(part[1] for part in parts), sum(part[2] for part in parts)
        cannot = [c for part in parts for c in part[3]]
        entries = headroom_summary(rows, insts, budgets, order=[SINGLE, BEST, *names, REFERENCE])
        files = _write_report(entries, p, cannot)
    return HeadroomResult(entries, rows, single, per, *files, p.out, ran, skipped)


def _tune(p: _Plan, trials: int, runner: Any) -> tuple[dict[float, TuneResult], dict[tuple[str, float], TuneResult]]:
    """The single best (per budget, one study over every instance) and the per-instance best (one ``tune``
    study per instance and budget), each run to ``trials`` complete trials."""
    fields = {k: list(dict.fromkeys(f"{i[k]:g}" for i in p.insts)) for k in p.insts[0]}
    command = f"prunegym headroom --env {p.env_id} --instances " + " ".join(
        f"{k}={','.join(v)}" for k, v in fields.items()
    )
    command += f" --budgets {' '.join(f'{b:g}' for b in p.budgets)} --trials {trials} --out {p.out}"
    command += (" --env-kwargs" + "".join(f" {k}={v!r}" for k, v in sorted(p.base.items()))) if p.base else ""
    single, per = {}, {}
    for b in p.budgets:
        head, seeds = (p.env_id, p.policy, b, trials), (p.tuning, p.sampler_seed, None, runner)
        bar = f"single best @ {b:g}" if p.progress else None
        study = p.out / "tuning" / "single"
        single[b] = run_study(
            *head, study, p.base, *seeds, bar, instances=p.insts, command=command, holder="prunegym headroom"
        )
        for i in p.insts:
            lab = instance_label(i)
            bar = f"{lab} @ {b:g}" if p.progress else None
            per[lab, b] = run_study(*head, p.out / "tuning" / lab, {**p.base, **i}, *seeds, bar)
    return single, per


def _write_tuned(p: _Plan, single: dict[float, TuneResult]) -> None:
    """The single best where ``compare --budgets --tuned`` finds it: with the common env kwargs under
    ``<out>/tuned``, and with each instance's env kwargs under ``<out>/tuned/<instance>``."""
    for b, result in single.items():
        write_json_atomic(tuned_path(p.out / "tuned", p.env_id, p.policy, b), result.to_dict())
        for i in p.insts:
            path = tuned_path(p.out / "tuned" / instance_label(i), p.env_id, p.policy, b)
            write_json_atomic(path, replace(result, env_kwargs={**p.base, **i}).to_dict())


def _evaluate(
    p: _Plan, instance: dict[str, Any], single: dict[float, TuneResult], per: dict[tuple[str, float], TuneResult]
) -> tuple[list[dict[str, Any]], int, int, list[str]]:
    """One instance's rows (relabelled ``single_best`` / ``instance_best``), episodes run and skipped, and the
    baselines that cannot reach a budget there. A baseline's label is its name, so the two tuned statics play in
    two ``compare --budgets`` folders: ``eval/<instance>`` (the single best, as ``compare --tuned
    <out>/tuned/<instance>`` plays it, the calibrated baselines and full data) and ``eval/<instance>/instance_best``."""
    lab, kw = instance_label(instance), {"reward": "accuracy", **p.base, **instance}
    notes: dict[str, list] = {"unreachable": [], "untuned": []}
    ref = unbudgeted_kwargs(p.env_id, kw)  # full data, no budget (the regimes ids draw one by default)
    tasks = [EpisodeTask(_prepare(policy_spec(REFERENCE), p.env_id, ref, p.ray), p.env_id, ref, s) for s in p.seeds]
    best = []
    for b in p.budgets:
        kwb = {**kw, "compute_budget": b}
        specs = [policy_spec(p.policy, hparams=single[b].params)]
        for n in p.names:
            spec = _policy_specs(p.env_id, n, b, kwb, None, p.calibration_seeds, p.progress, notes)
            specs += [spec] if spec is not None else []
        tasks += [EpisodeTask(_prepare(sp, p.env_id, kwb, p.ray), p.env_id, kwb, s) for sp in specs for s in p.seeds]
        spec = _prepare(policy_spec(p.policy, hparams=per[lab, b].params), p.env_id, kwb, p.ray)
        best += [EpisodeTask(spec, p.env_id, kwb, s) for s in p.seeds]
    done = [
        _compare(p, kw, tasks, notes, p.out / "eval" / lab),
        _compare(p, kw, best, {"unreachable": [], "untuned": []}, p.out / "eval" / lab / BEST),
    ]
    rows = [{**r, "policy": SINGLE if r["policy"] == p.policy else r["policy"]} for r in done[0].rows]
    rows += [{**r, "policy": BEST} for r in done[1].rows]
    cannot = [f"{c.policy} at {c.budget:g} on {lab} (at least {c.compute:.3f})" for c in notes["unreachable"]]
    return rows, sum(c.ran for c in done), sum(c.skipped for c in done), cannot


def _compare(p: _Plan, kw: dict, tasks: list[EpisodeTask], notes: dict, out: Path) -> BudgetComparison:
    """``tasks`` played into the ``compare --budgets`` folder ``out`` (resumable; its own tables and figure)."""
    labels = list(dict.fromkeys(t.spec.name for t in tasks))

    def report(folder: Path, ran: int, skipped: int) -> BudgetComparison:
        return _report(p.env_id, kw, p.budgets, labels, tasks, notes, folder, ran, skipped)

    return run_comparison(out, tasks, report, skip_done=True, ray=p.ray, progress=p.progress, batched=p.batched)


def _write_report(entries: list[dict], p: _Plan, cannot: list[str]) -> tuple[Path, Path, Path]:
    """``headroom.md``, ``headroom.csv`` and ``headroom.png`` (also in TensorBoard) under ``<out>``."""
    env_id, out = p.env_id, p.out
    md = headroom_markdown(entries, p.budgets, env_id, p.policy, cannot)
    write_text_atomic(out / "headroom.md", md)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=list(entries[0]) if entries else ["budget", "instance", "policy"])
    w.writeheader()
    w.writerows(entries)
    write_text_atomic(out / "headroom.csv", buf.getvalue())
    fig = headroom_figure(entries, p.insts, p.budgets, title=f"{env_id}: test accuracy per instance")
    publish_figure(fig, md, out / "headroom.png", out / "runs", Path(env_label(env_id)) / "headroom", "headroom")
    staging = staging_folder(out / "runs")
    if staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()  # every run is in place: no empty staging folder is left
    return out / "headroom.md", out / "headroom.csv", out / "headroom.png"
