"""Comparison summaries: per-policy mean, std and 95% interval over seeds, the Pareto front, tables and figures.

Tables show ``mean ± 95% half-width`` (Student t over the seeds; the caption says so and gives the number of
seeds) and, with a single seed, the mean alone and no Pareto column: one seed has no spread and ranks
nothing. The figure (matplotlib's Agg canvas, no display, pyplot untouched; saved at 150 dpi) plots test
accuracy in percent against the compute fraction, one point per policy with 95% error bars; policies on the
Pareto front (no other policy has at least its accuracy for at most its compute, one of the two strictly)
are ringed and joined by a dashed line.

Rows with ``error`` set (failed episodes, and episodes that diverged) are kept out of the means and the
Pareto front; each policy's entry counts them (``n_failed``, ``n_diverged``), the table marks them next to
the seed count and :func:`failures_table` lists them.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from prunegym.training.io import write_bytes_atomic, write_text_atomic

from ..output import new_staging_dir, replace_folder, staging_folder
from ..tensorboard import EpisodeWriter
from .results import is_diverged, is_failed
from .stats import half_width

__all__ = [
    "FIGURE_DPI",
    "METRICS",
    "accuracy_compute_figure",
    "failures_table",
    "interval_caption",
    "markdown_table",
    "pareto_front",
    "summarize",
    "write_csv",
]

FIGURE_DPI = 150

# row key -> column title
METRICS: dict[str, str] = {
    "test_accuracy": "test accuracy",
    "compute_fraction": "compute fraction",
    "kept_fraction": "kept fraction",
    "episode_return": "return",
    "wall_clock_s": "wall-clock (s)",
}


def _mean_std(values: list[float]) -> tuple[float, float]:
    vals = [float(v) for v in values]
    if not vals:
        return float("nan"), float("nan")
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))


def summarize(rows: Iterable[dict[str, Any]], order: list[str] | None = None) -> list[dict[str, Any]]:
    """One dict per policy: ``policy``, ``n`` (seeds with a result), ``<metric>_mean``, ``<metric>_std``
    (sample std, 0 for one seed; NaN with no result) and ``<metric>_ci95`` (95% Student-t half-width, NaN for
    fewer than 2 seeds) for every metric of :data:`METRICS`, ``pareto``
    (bool), ``n_failed`` and ``n_diverged``. Policies in ``order`` first, then in order of appearance; a
    policy with rows but no result is listed with ``n = 0``. Rows with an error (failed or diverged) are
    left out of the means and the front (see :func:`failures_table`)."""

    groups: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, list[int]] = {}
    for name in order or []:
        groups.setdefault(name, [])
    for row in rows:
        rs = groups.setdefault(row["policy"], [])
        c = counts.setdefault(row["policy"], [0, 0])
        if is_failed(row):
            c[0] += 1
        elif is_diverged(row):
            c[1] += 1
        else:
            rs.append(row)
    out = []
    for name, rs in groups.items():
        failed, diverged = counts.get(name, [0, 0])
        if not rs and not failed + diverged:
            continue
        entry: dict[str, Any] = {"policy": name, "n": len(rs)}
        for key in METRICS:
            values = [float(r[key]) for r in rs]
            entry[f"{key}_mean"], entry[f"{key}_std"] = _mean_std(values)
            entry[f"{key}_ci95"] = half_width(values)
        entry["n_failed"], entry["n_diverged"] = failed, diverged
        out.append(entry)
    front = set(pareto_front([e for e in out if e["n"] > 0]))
    for entry in out:
        entry["pareto"] = entry["policy"] in front
    return out


def pareto_front(summary: list[dict[str, Any]]) -> list[str]:
    """Policies not dominated in (higher mean test accuracy, lower mean compute fraction), by compute."""
    pts = [(e["compute_fraction_mean"], e["test_accuracy_mean"], e["policy"]) for e in summary]
    front = []
    for c, a, name in pts:
        dominated = any((c2 <= c and a2 >= a) and (c2 < c or a2 > a) for c2, a2, _ in pts)
        if not dominated and math.isfinite(c) and math.isfinite(a):
            front.append((c, a, name))
    return [name for _, _, name in sorted(front)]


def _fmt(mean: float, spread: float, digits: int, show_spread: bool) -> str:
    if not math.isfinite(mean):
        return "—"
    if not show_spread or not math.isfinite(spread):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {spread:.{digits}f}"


def _seeds_cell(e: dict[str, Any]) -> str:
    marks = [f"{e[k]} {word}" for k, word in (("n_diverged", "diverged"), ("n_failed", "failed")) if e.get(k)]
    return f"{e['n']} (+{', '.join(marks)})" if marks else str(e["n"])


def interval_caption(summary: list[dict[str, Any]]) -> str:
    """What the ± of a table means: the 95% Student-t interval over the seeds (or nothing for one seed)."""
    ns = sorted({int(e["n"]) for e in summary if e.get("n")})
    if not ns:
        return "No results."
    seeds = f"{ns[0]}" if len(ns) == 1 else f"{ns[0]} to {ns[-1]}"
    if ns[-1] < 2:
        return "One seed per policy: means only (no interval, no Pareto front)."
    return f"Mean ± 95% Student-t interval over {seeds} seeds per policy."


def markdown_table(summary: list[dict[str, Any]], title: str | None = None) -> str:
    """A Markdown table, mean ± 95% interval per metric (its caption says so), Pareto-front policies marked
    (with more than one seed); diverged and failed episodes are counted next to the seeds (``2 (+1 diverged)``)
    and left out of the means."""
    several = any(e.get("n", 0) > 1 for e in summary)
    head = ["policy", "seeds"] + list(METRICS.values()) + (["Pareto"] if several else [])
    lines = [f"## {title}", ""] if title else []
    lines += [interval_caption(summary), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for e in summary:
        cells = [e["policy"], _seeds_cell(e)]
        for key in METRICS:
            cells.append(
                _fmt(
                    e[f"{key}_mean"],
                    e.get(f"{key}_ci95", math.nan),
                    2 if key == "wall_clock_s" else 4,
                    e.get("n", 0) > 1,
                )
            )
        if several:
            cells.append("yes" if e["pareto"] else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _error_section(rows: list[dict[str, Any]], heading: str) -> list[str]:
    lines = ["", heading, "", "| policy | seed | error |", "|---|---|---|"]
    for r in rows:
        error = str(r.get("error")).replace("|", "\\|")
        lines.append(f"| {r['policy']} | {r['seed']} | {error} |")
    return lines


def failures_table(rows: Iterable[dict[str, Any]]) -> str:
    """The failed and the diverged episodes among ``rows`` as Markdown sections (policy, seed, error);
    ``""`` if none."""

    rows = list(rows)
    failed = [r for r in rows if is_failed(r)]
    diverged = [r for r in rows if is_diverged(r)]
    lines: list[str] = []
    if failed:
        lines += _error_section(
            failed,
            f"**Failed episodes ({len(failed)})**, left out of the table above; a rerun "
            "of the same comparison runs them again:",
        )
    if diverged:
        lines += _error_section(
            diverged,
            f"**Diverged episodes ({len(diverged)})** (non-finite loss), left out of "
            "the means and the Pareto front above; deterministic, a rerun gives them "
            "again:",
        )
    return "\n".join(lines) + "\n" if lines else ""


def write_csv(summary: list[dict[str, Any]], path: str | Path, extra: tuple[str, ...] = ()) -> Path:
    """The summary as CSV (written atomically): policy, the ``extra`` columns (e.g. ``budget``), n,
    <metric>_mean, <metric>_std, <metric>_ci95 ..., pareto, n_failed, n_diverged."""

    cols = (
        ["policy", *extra, "n"]
        + [f"{k}_{s}" for k in METRICS for s in ("mean", "std", "ci95")]
        + ["pareto", "n_failed", "n_diverged"]
    )
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    for e in summary:
        w.writerow({c: e.get(c, 0) for c in cols})
    return write_text_atomic(path, buf.getvalue())


def accuracy_compute_figure(summary: list[dict[str, Any]], title: str = ""):
    """A matplotlib ``Figure`` (Agg canvas) of test accuracy (%) versus compute fraction, 95% error bars."""
    fig = Figure(figsize=(6.4, 4.8), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    summary = [e for e in summary if e.get("n", 1) > 0]
    several = any(e.get("n", 0) > 1 for e in summary)
    front = set(pareto_front(summary)) if several else set()
    for i, e in enumerate(summary):
        color = f"C{i % 10}"
        x, y = e["compute_fraction_mean"], 100.0 * e["test_accuracy_mean"]
        xerr, yerr = e.get("compute_fraction_ci95", math.nan), 100.0 * e.get("test_accuracy_ci95", math.nan)
        ax.errorbar(
            x,
            y,
            xerr=xerr if math.isfinite(xerr) else None,
            yerr=yerr if math.isfinite(yerr) else None,
            fmt="o",
            color=color,
            capsize=3,
            label=e["policy"],
        )
        if e["policy"] in front:
            ax.scatter([x], [y], s=160, facecolors="none", edgecolors="black", linewidths=1.2, zorder=3)
        ax.annotate(e["policy"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    pts = sorted((e["compute_fraction_mean"], 100.0 * e["test_accuracy_mean"]) for e in summary if e["policy"] in front)
    if len(pts) > 1:
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "k--", linewidth=1, label="Pareto front")
    ax.set_xlabel("compute fraction (training FLOPs / full-data run)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "accuracy versus compute")
    if summary:
        ax.text(0.01, 0.01, interval_caption(summary), transform=ax.transAxes, fontsize=7, alpha=0.7)
    ax.grid(True, alpha=0.3)
    if summary:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def publish_figure(fig: Figure, md: str, png: Path, tb_root: Path, run: str | Path, tag: str) -> None:
    """Write ``fig`` to ``png`` at :data:`FIGURE_DPI` (atomically) and, with the Markdown summary ``md``, as the
    TensorBoard run ``tb_root / run`` (figure ``comparison/<tag>``, text ``comparison/summary``; the run
    folder is replaced whole, so a reader never sees half of it)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI)
    write_bytes_atomic(png, buf.getvalue())
    staging = staging_folder(tb_root)
    tmp = new_staging_dir(staging)
    writer = EpisodeWriter(tmp)
    try:
        writer.writer.add_figure(f"comparison/{tag}", fig, global_step=0, close=False)
        writer.writer.add_text("comparison/summary", md, global_step=0)
    finally:
        writer.close()
    replace_folder(tmp, tb_root / run, staging)
