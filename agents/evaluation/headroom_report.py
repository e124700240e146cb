"""The report of ``prunegym headroom`` (issue 23): per (budget, instance, policy) entries of test accuracy, compute,
kept noisy share and the paired difference from the single best (:func:`headroom_summary`), their Markdown table
(:func:`headroom_markdown`) and figure (:func:`headroom_figure`). Pure functions of result rows: no episode runs
here (:mod:`.headroom` tunes and plays)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .matched_compute import REFERENCE
from .report import FIGURE_DPI
from .stats import half_width

__all__ = ["AVERAGE", "BEST", "SINGLE", "headroom_figure", "headroom_markdown", "headroom_summary", "instance_label"]

SINGLE, BEST = "single_best", "instance_best"  # the labels of the two tuned statics in rows and tables
AVERAGE = "average"


def instance_label(instance: Mapping[str, Any]) -> str:
    """``label_noise=0.2,imbalance=10``: an instance's name in tables and folder names."""
    return ",".join(f"{k}={v:g}" for k, v in instance.items())


def _noisy(row: dict[str, Any]) -> float:
    """The mean over steps of the share of noisy labels among the kept samples (NaN without a noise regime)."""
    vals = [float(v) for v in row.get("kept_noisy_fractions") or [] if v is not None and math.isfinite(v)]
    return statistics.fmean(vals) if vals else math.nan


def _entry(budget: float, inst: str, policy: str, cell: dict[int, dict], single: dict[int, dict]) -> dict[str, Any]:
    """One (budget, instance, policy) line: test accuracy, compute, kept noisy share, and the paired difference
    from the single best on the seeds both have (mean, 95% half-width, seeds won and lost)."""
    accs = [float(r["test_accuracy"]) for r in cell.values()]
    noisy = [v for v in map(_noisy, cell.values()) if math.isfinite(v)]
    common = sorted(set(cell) & set(single)) if policy != SINGLE else []
    diffs = [cell[s]["test_accuracy"] - single[s]["test_accuracy"] for s in common]
    return {
        "budget": budget,
        "instance": inst,
        "policy": policy,
        "n": len(accs),
        "test_accuracy_mean": statistics.fmean(accs),
        "test_accuracy_ci95": half_width(accs),
        "compute_fraction_mean": statistics.fmean(float(r["compute_fraction"]) for r in cell.values()),
        "kept_noisy_fraction_mean": statistics.fmean(noisy) if noisy else math.nan,
        "minus_single_mean": statistics.fmean(diffs) if diffs else math.nan,
        "minus_single_ci95": half_width(diffs),
        "won": sum(d > 0 for d in diffs),
        "lost": sum(d < 0 for d in diffs),
    }


def _average(cells: list[dict[int, dict]]) -> dict[int, dict]:
    """Per seed that every instance has: the mean over instances (test accuracy, compute, kept noisy share)."""
    common = sorted(set.intersection(*(set(c) for c in cells))) if cells else []
    out: dict[int, dict] = {}
    for s in common:
        out[s] = {k: statistics.fmean(c[s][k] for c in cells) for k in ("test_accuracy", "compute_fraction")}
        out[s]["kept_noisy_fractions"] = [v for v in (_noisy(c[s]) for c in cells) if math.isfinite(v)]
    return out


def headroom_summary(
    rows: Iterable[dict], instances: Sequence[Mapping[str, Any]], budgets: Sequence[float], order: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """One entry per (budget, instance or ``"average"``, policy) of ``rows`` (matched to an instance by their
    env kwargs; ``full``'s rows, without a budget, at every budget; rows with an error left out): see
    :func:`_entry`. Policies in ``order`` first; the average needs a policy's rows on every instance."""
    idx: dict[tuple[str, Any, str], dict[int, dict]] = {}
    for r in rows:
        kw = r.get("env_kwargs") or {}
        lab = next((instance_label(i) for i in instances if all(kw.get(k) == v for k, v in i.items())), None)
        if lab is not None and not r.get("error"):
            idx.setdefault((lab, kw.get("compute_budget"), r["policy"]), {})[int(r["seed"])] = r
    labels = [instance_label(i) for i in instances]
    policies = [p for p in dict.fromkeys([*order, *(k[2] for k in idx)]) if any(k[2] == p for k in idx)]
    entries = []
    for b in budgets:
        single = {lab: idx.get((lab, b, SINGLE), {}) for lab in labels}
        mean_single = _average(list(single.values())) if all(single.values()) else {}
        for p in policies:
            cells = {lab: idx.get((lab, b, p)) or idx.get((lab, None, p)) or {} for lab in labels}
            entries += [_entry(b, lab, p, cells[lab], single[lab]) for lab in labels if cells[lab]]
            if all(cells.values()):
                entries.append(_entry(b, AVERAGE, p, _average(list(cells.values())), mean_single))
    return entries


def _pct(e: dict[str, Any], key: str, sign: str = "") -> str:
    """``e``'s ``<key>_mean`` ± ``<key>_ci95`` in % (points), ``—`` without a mean."""
    mean, hw = e[f"{key}_mean"], e[f"{key}_ci95"]
    text = f"{100 * mean:{sign}.2f}" + (f" ± {100 * hw:.2f}" if math.isfinite(hw) else "")
    return text if math.isfinite(mean) else "—"


def headroom_markdown(
    entries: list[dict], budgets: Sequence[float], env_id: str, policy: str, cannot: list[str]
) -> str:
    """``headroom.md``: the caption, then per budget the headroom line and the table."""
    lines = [
        f"# {env_id}: headroom of knowing the regime, {policy}",
        "",
        f"`{SINGLE}`: one {policy} setting tuned for every instance; `{BEST}`: one per instance; `{REFERENCE}`: "
        "full data, no budget. Test accuracy in %: mean ± 95% Student-t interval over the held-out seeds; minus "
        f"single best: paired on the same seeds (points, ± 95% half-width), won/lost; the headroom is `{BEST}` "
        "minus `single_best`. Average: per seed, the mean over instances. Episodes with an error are left out.",
        "",
    ]
    head = "| instance | policy | seeds | test accuracy (%) | compute | kept noisy | minus single best | won/lost |"
    for b in budgets:
        at = [e for e in entries if e["budget"] == b]
        room = "; ".join(f"{e['instance']} {_pct(e, 'minus_single', '+')}" for e in at if e["policy"] == BEST)
        lines += [f"## Budget {b:g} of the full-data run's training FLOPs", "", f"Headroom (points): {room}.", ""]
        lines += [head, "|" + "---|" * 8]
        for e in at:
            noisy = f"{e['kept_noisy_fraction_mean']:.3f}" if math.isfinite(e["kept_noisy_fraction_mean"]) else "—"
            cells = [e["instance"], e["policy"], e["n"], _pct(e, "test_accuracy"), f"{e['compute_fraction_mean']:.3f}"]
            cells += [noisy, _pct(e, "minus_single", "+"), "" if e["policy"] == SINGLE else f"{e['won']}/{e['lost']}"]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        lines.append("")
    if cannot:
        lines += ["Cannot reach the budget (cheapest setting, calibration seeds): " + "; ".join(cannot) + ".", ""]
    return "\n".join(lines)


def headroom_figure(
    entries: list[dict], instances: Sequence[Mapping[str, Any]], budgets: Sequence[float], title: str = ""
) -> Figure:
    """Test accuracy (%) per instance (x axis, in order), one line per policy with 95% error bars, one panel per
    budget (a matplotlib ``Figure`` on the Agg canvas)."""
    labels = [instance_label(i) for i in instances]
    fig = Figure(figsize=(1.0 + 4.6 * len(budgets), 4.6), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(budgets), squeeze=False, sharey=True)[0]
    for ax, b in zip(axes, budgets):
        at = [e for e in entries if e["budget"] == b and e["instance"] != AVERAGE]
        for k, p in enumerate(dict.fromkeys(e["policy"] for e in at)):
            pts = sorted((labels.index(e["instance"]), e) for e in at if e["policy"] == p)
            xs, ys = [x + 0.02 * k for x, _ in pts], [100 * e["test_accuracy_mean"] for _, e in pts]  # dodged
            yerr = [100 * e["test_accuracy_ci95"] if math.isfinite(e["test_accuracy_ci95"]) else 0.0 for _, e in pts]
            style = {"fmt": "o--" if p == REFERENCE else "o-", "color": f"C{k % 10}", "capsize": 3, "markersize": 4}
            ax.errorbar(xs, ys, yerr=yerr, label=p, **style)
        ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
        ax.set_title(f"budget {b:g}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("test accuracy (%)")
    axes[-1].legend(fontsize=7, loc="best")
    fig.suptitle(title or "test accuracy per instance")
    fig.tight_layout()
    return fig
