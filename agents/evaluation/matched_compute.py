"""Accuracy at matched compute (issue 16): every method at every compute budget, on the same seeds.

:func:`compare_budgets` runs, for each budget ``b`` (a fraction of the full-data run's training FLOPs, every
pass counted), every policy in an env with ``compute_budget=b`` and the ``accuracy`` reward:

* a fixed baseline with its main knob (prune ratio; IES's threshold) solved so that its realised compute
  meets ``b`` (:func:`~prunegym.agents.evaluation.calibration.calibrate`, on calibration seeds, cached); a
  method that cannot reach ``b`` is reported as such, not forced (the env's cap would otherwise trim it);
* the tuned static baselines ``static_const`` and ``static_schedule`` with their settings for ``b`` from the
  tuning folder (``prunegym tune``; the ones shipped with prunegym by default), or their neutral defaults,
  with a warning, when none were tuned;
* every agent, unchanged (an agent trained on a range of budgets reads ``b`` from its observation);
* ``full`` once per seed without a budget: the reference line.

The report is the field's: one table per budget (test accuracy, realised compute, with 95% intervals over
the seeds), and a figure of test accuracy (%) against realised compute with one line per method through its
budget points and full data as the reference line (``accuracy_vs_budget.png``, 150 dpi). Rows, TensorBoard
runs (``runs/<env>/<policy>/budget<b>/seed<k>``) and resuming are those of
:func:`~prunegym.agents.evaluation.harness.compare`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prunegym.baselines import POLICIES
from prunegym.training import check_fraction
from prunegym.training.io import canonical_json, write_text_atomic

from ..env_factory import canonical_env_id, env_label, unbudgeted_kwargs
from ..parallel.ray_tasks import RayOptions, ray_options_of
from .calibration import CALIBRATION_SEEDS, Calibration, calibrate, calibration_kwargs
from .dispatch import EpisodeTask
from .episode import PolicySpec, policy_spec
from .harness import _prepare, _seeds, _unique_labels, run_comparison
from .report import FIGURE_DPI, interval_caption, markdown_table, publish_figure, summarize, write_csv
from .results import read_rows, row_key
from .tuning import SHIPPED_TUNED, load_tuned

__all__ = ["BudgetComparison", "budget_figure", "compare_budgets"]

REFERENCE = "full"


@dataclass
class BudgetComparison:
    """What :func:`compare_budgets` produced: the rows, one summary per budget (and the full-data reference),
    the methods that could not reach a budget, and the files."""

    rows: list[dict[str, Any]]
    summaries: dict[float, list[dict[str, Any]]]
    reference: list[dict[str, Any]]
    unreachable: list[Calibration]
    results: Path
    figure: Path
    table_md: Path
    table_csv: Path
    tensorboard_log: Path
    ran: int = 0
    skipped: int = 0
    untuned: list[tuple[str, float]] = field(default_factory=list)

    @property
    def markdown(self) -> str:
        return self.table_md.read_text()


def _budgets(budgets: Iterable[float]) -> list[float]:
    out = [check_fraction(b, "budget", of="of the full-data run's training FLOPs") for b in budgets]
    if not out:
        raise ValueError("no budgets given; e.g. --budgets 0.3 0.5 0.7")
    return sorted(set(out))


def _policy_specs(
    env_id: str,
    name: str,
    budget: float,
    kwargs: dict[str, Any],
    tuned: str | Path | None,
    calibration_seeds: Sequence[int],
    progress: bool,
    notes: dict[str, list],
) -> PolicySpec | None:
    """The spec of baseline ``name`` at ``budget``: tuned (static policies) or calibrated; None if the
    method cannot reach the budget (recorded in ``notes``)."""
    cls = POLICIES[name]
    base = calibration_kwargs(kwargs)
    result = load_tuned(tuned, env_id, name, budget) if tuned is not None else None
    if result is not None and calibration_kwargs(result.env_kwargs) != base:
        result = None  # tuned for another task setting (e.g. other epochs): not reused stale
    hparams: dict[str, Any] = dict(result.params) if result is not None else {}
    if cls.requires_budget:
        if result is None:
            notes["untuned"].append((name, budget))
        return policy_spec(name, hparams=hparams)
    cal = calibrate(env_id, name, budget, env_kwargs=base, seeds=calibration_seeds, progress=progress)
    if not cal.reachable:
        notes["unreachable"].append(cal)
        return None
    return policy_spec(name, hparams={**hparams, **cal.hparams})


def compare_budgets(
    env_id: str,
    seeds: Iterable[int],
    budgets: Iterable[float],
    policies: Iterable[str] | None = None,
    agents: Iterable[Any] = (),
    out: str | Path = "compare_budgets",
    *,
    env_kwargs: dict[str, Any] | None = None,
    tuned: str | Path | None = SHIPPED_TUNED,
    calibration_seeds: Sequence[int] = CALIBRATION_SEEDS,
    progress: bool = False,
    skip_done: bool = True,
    workers: int | None = None,
    ray_address: str | None = None,
    cpus_per_run: float | None = None,
    gpus_per_run: float = 0.0,
    ray: RayOptions | None = None,
    batched: bool = False,
) -> BudgetComparison:
    """Every policy (default: all of ``POLICIES``) and agent at every budget (see the module docstring); the
    Ray settings as in :func:`~prunegym.agents.evaluation.harness.compare`."""
    ray = ray_options_of(ray, workers, ray_address, cpus_per_run, gpus_per_run).validate()
    env_id = canonical_env_id(env_id)
    seeds, budgets = _seeds(seeds), _budgets(budgets)
    kwargs = dict(env_kwargs or {})
    if "compute_budget" in kwargs:
        raise ValueError("compute_budget is set by --budgets; remove it from the env kwargs")
    kwargs.setdefault("reward", "accuracy")
    names = list(POLICIES) if policies is None else list(policies)
    bad = [n for n in names if n not in POLICIES]
    if bad:
        raise ValueError(f"unknown policy {bad[0]!r}; allowed: {', '.join(POLICIES)}")
    agent_specs = _unique_labels([policy_spec(a) for a in agents])
    notes: dict[str, list] = {"unreachable": [], "untuned": []}
    tasks: list[EpisodeTask] = []
    if REFERENCE in names:
        ref_kwargs = unbudgeted_kwargs(env_id, kwargs)  # full data, no budget, whatever the id draws
        ref = _prepare(policy_spec(REFERENCE), env_id, ref_kwargs, ray)
        tasks += [EpisodeTask(ref, env_id, ref_kwargs, s) for s in seeds]
    for b in budgets:
        kw = {**kwargs, "compute_budget": b}
        specs = [
            s
            for n in names
            if n != REFERENCE
            for s in [_policy_specs(env_id, n, b, kw, tuned, calibration_seeds, progress, notes)]
            if s is not None
        ]
        specs += agent_specs
        for spec in specs:
            _prepare(spec, env_id, kw, ray)
        tasks += [EpisodeTask(spec, env_id, kw, s) for spec in specs for s in seeds]
    for name, b in notes["untuned"]:
        warnings.warn(
            f"{name} at budget {b:g} runs with its neutral defaults: no tuned settings for it in "
            f"{str(tuned)!r} (run: prunegym tune --env {env_id} --policy {name} --budget {b:g} "
            "--trials T)",
            RuntimeWarning,
            stacklevel=2,
        )
    labels = list(dict.fromkeys([t.spec.name for t in tasks]))

    def report(folder: Path, ran: int, skipped: int) -> BudgetComparison:
        return _report(env_id, kwargs, budgets, labels, tasks, notes, folder, ran, skipped)

    return run_comparison(out, tasks, report, skip_done=skip_done, ray=ray, progress=progress, batched=batched)


def _report(
    env_id: str,
    kwargs: dict[str, Any],
    budgets: list[float],
    labels: list[str],
    tasks: list[EpisodeTask],
    notes: dict[str, list],
    out: Path,
    ran: int,
    skipped: int,
) -> BudgetComparison:
    results, tb_root = out / "results.jsonl", out / "runs"
    wanted = {(t.env_id, canonical_json(t.env_kwargs), t.spec.name, t.seed) for t in tasks}
    latest: dict[tuple, dict[str, Any]] = {}
    for row in read_rows(results):
        key = row_key(row)
        if key in wanted:
            latest[key] = row
    rows = sorted(
        latest.values(),
        key=lambda r: (r["env_kwargs"].get("compute_budget") or 2.0, labels.index(r["policy"]), r["seed"]),
    )
    reference = summarize([r for r in rows if "compute_budget" not in r["env_kwargs"]], order=labels)
    summaries = {
        b: summarize([r for r in rows if r["env_kwargs"].get("compute_budget") == b], order=labels) for b in budgets
    }
    md = _markdown(env_id, kwargs, budgets, summaries, reference, notes)
    write_text_atomic(out / "summary.md", md)
    flat = [{**e, "budget": b} for b, summary in summaries.items() for e in summary]
    flat += [{**e, "budget": "none"} for e in reference]
    csv_path = write_csv(flat, out / "summary.csv", extra=("budget",))
    fig = budget_figure(summaries, reference, title=f"{env_id}: accuracy at matched compute")
    png = out / "accuracy_vs_budget.png"
    publish_figure(fig, md, png, tb_root, Path(env_label(env_id)) / "comparison_budgets", "accuracy_vs_budget")
    return BudgetComparison(
        rows,
        summaries,
        reference,
        notes["unreachable"],
        results,
        png,
        out / "summary.md",
        csv_path,
        tb_root,
        ran,
        skipped,
        notes["untuned"],
    )


def _markdown(
    env_id: str,
    kwargs: dict[str, Any],
    budgets: list[float],
    summaries: dict[float, list[dict]],
    reference: list[dict],
    notes: dict[str, list],
) -> str:
    parts = [f"# {env_id} at matched compute {canonical_json(kwargs)}", ""]
    if reference:
        parts.append(markdown_table(reference, title="Reference: full data, no budget"))
    for b in budgets:
        parts.append(markdown_table(summaries[b], title=f"Budget {b:g} of the full-data run's training FLOPs"))
        missing = [c for c in notes["unreachable"] if c.budget == b]
        if missing:
            parts.append(
                "Cannot reach this budget (its cheapest setting, on the calibration seeds, spends more): "
                + "; ".join(f"{c.policy} (at least {c.compute:.3f})" for c in missing)
                + ".\n"
            )
        untuned = [n for n, bb in notes["untuned"] if bb == b]
        if untuned:
            parts.append(
                "Run with neutral defaults (not tuned for this budget and env kwargs): " + ", ".join(untuned) + ".\n"
            )
    return "\n".join(parts)


def budget_figure(summaries: dict[float, list[dict[str, Any]]], reference: list[dict[str, Any]], title: str = ""):
    """Test accuracy (%) against realised compute: one line per policy through its budget points (95% error
    bars on both axes), full data as a dashed reference line (with its 95% band)."""
    fig = Figure(figsize=(7.2, 5.0), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    points: dict[str, list[tuple[float, float, float, float]]] = {}
    for b in sorted(summaries):
        for e in summaries[b]:
            if e.get("n", 0) > 0:
                points.setdefault(e["policy"], []).append(
                    (
                        e["compute_fraction_mean"],
                        100.0 * e["test_accuracy_mean"],
                        e.get("compute_fraction_ci95", math.nan),
                        100.0 * e.get("test_accuracy_ci95", math.nan),
                    )
                )
    for i, (name, pts) in enumerate(points.items()):
        pts.sort()
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        xerr = [p[2] if math.isfinite(p[2]) else 0.0 for p in pts]
        yerr = [p[3] if math.isfinite(p[3]) else 0.0 for p in pts]
        ax.errorbar(
            xs,
            ys,
            xerr=xerr,
            yerr=yerr,
            fmt="o-",
            color=f"C{i % 10}",
            capsize=3,
            markersize=4,
            linewidth=1.2,
            label=name,
        )
    ref = [e for e in reference if e.get("n", 0) > 0]
    if ref:
        e = ref[0]
        y = 100.0 * e["test_accuracy_mean"]
        ax.axhline(y, color="black", linestyle="--", linewidth=1, label=f"{e['policy']} (no budget)")
        hw = 100.0 * e.get("test_accuracy_ci95", math.nan)
        if math.isfinite(hw):
            ax.axhspan(y - hw, y + hw, color="black", alpha=0.08)
    ax.set_xlabel("realised compute (training FLOPs / full-data run)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "accuracy at matched compute")
    all_entries = [e for s in summaries.values() for e in s] + ref
    if all_entries:
        ax.text(0.01, 0.01, interval_caption(all_entries), transform=ax.transAxes, fontsize=7, alpha=0.7)
    ax.grid(True, alpha=0.3)
    if points or ref:
        ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    return fig
