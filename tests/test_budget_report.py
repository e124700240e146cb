"""``benchmarks/budget_report.py``: the paired held-out report of a budget comparison, on crafted rows whose
verdicts are known (ahead of the best, behind one, a row with an error left out)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("budget_report", REPO / "benchmarks" / "budget_report.py")
assert _spec is not None and _spec.loader is not None
budget_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(budget_report)


def _row(policy, seed, acc, budget=0.5, compute=None, error=None):
    kw = {"epochs": 10} if budget is None else {"epochs": 10, "compute_budget": budget}
    return {
        "policy": policy,
        "seed": seed,
        "env_kwargs": kw,
        "test_accuracy": acc,
        "compute_fraction": budget if compute is None else compute,
        "error": error,
    }


def _write(folder: Path, rows) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_report_pairs_seeds_and_gives_verdicts(tmp_path):
    seeds = range(8)
    rows = [_row("full", s, 0.90, budget=None, compute=1.0) for s in seeds]
    for s in seeds:  # budget 0.3: agent ahead of both by 0.5 +- 0.1 points; budget 0.7: behind static by 1 point
        rows += [_row("agent", s, 0.880 + 0.001 * (s % 2), 0.3), _row("static", s, 0.875, 0.3)]
        rows += [_row("uniform", s, 0.870, 0.3)]
        rows += [_row("agent", s, 0.880 + 0.001 * (s % 2), 0.7), _row("static", s, 0.890, 0.7)]
    rows.append(_row("agent", 99, float("nan"), 0.7, error="diverged"))
    text = budget_report.report(_write(tmp_path / "cmp", rows), "agent")
    assert "1 episode(s) with an error are left out" in text
    assert "Reference, full without a budget: 90.00 ± 0.00 over 8 seeds" in text
    assert (
        "Budget 0.3: `agent` mean 88.05%; best other `static` 87.50%. At least every policy's mean: yes; "
        "significantly ahead of the best: yes; significantly behind: none." in text
    )
    assert "| static | 8 | 87.50 ± 0.00 | 0.300 | +0.55 ± 0.04 | 8/0 |" in text
    assert (
        "Budget 0.7: `agent` mean 88.05%; best other `static` 89.00%. At least every policy's mean: no; "
        "significantly ahead of the best: no; significantly behind: static." in text
    )


def test_report_says_when_the_agent_has_no_rows(tmp_path):
    text = budget_report.report(_write(tmp_path / "cmp", [_row("static", 0, 0.9)]), "agent")
    assert "## Budget 0.5: no rows of `agent`" in text
