"""Paired report of a ``prunegym compare --budgets`` folder (issue 16's held-out and transfer tables).

    python benchmarks/budget_report.py OUT --agent LABEL [--out report.md]

Reads ``OUT/results.jsonl`` and prints, per budget, every policy's test accuracy (mean and 95% Student-t
interval over its seeds, in %), its realised compute, and the paired difference of test accuracy ``LABEL``
minus that policy on the same seeds (mean, 95% Student-t half-width, seeds won / lost), with a verdict per
budget: is ``LABEL`` at least every policy's mean, significantly ahead of the best other policy (the interval
of the paired difference above 0), or significantly behind one. The full-data reference (no budget) is
listed first. Episodes with an error are left out and counted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from prunegym.agents import read_rows
from prunegym.agents.evaluation.stats import half_width


def _pct(values: list[float]) -> str:
    hw = half_width(values)
    mean = 100 * statistics.fmean(values)
    return f"{mean:.2f} ± {100 * hw:.2f}" if hw == hw else f"{mean:.2f}"


def report(folder: Path, agent: str) -> str:
    rows = [r for r in read_rows(folder / "results.jsonl") if not r.get("error")]
    failed = sum(1 for r in read_rows(folder / "results.jsonl") if r.get("error"))
    budgets = sorted({r["env_kwargs"].get("compute_budget") for r in rows} - {None})
    lines = [
        f"# {folder}: test accuracy at matched compute, `{agent}` paired against each policy",
        "",
        "Test accuracy in %: mean ± 95% Student-t interval over the seeds; paired: "
        f"`{agent}` minus the policy on the same seed (mean ± 95% half-width, seeds won/lost)."
        + (f" {failed} episode(s) with an error are left out." if failed else ""),
        "",
    ]
    ref = [r for r in rows if "compute_budget" not in r["env_kwargs"]]
    if ref:
        accs = [r["test_accuracy"] for r in ref]
        lines += [
            f"Reference, {ref[0]['policy']} without a budget: {_pct(accs)} over {len(accs)} seeds, compute "
            f"{statistics.fmean(r['compute_fraction'] for r in ref):.3f}.",
            "",
        ]
    verdicts = []
    for b in budgets:
        at = [r for r in rows if r["env_kwargs"].get("compute_budget") == b]
        by: dict[str, dict[int, dict]] = {}
        for r in at:
            by.setdefault(r["policy"], {})[r["seed"]] = r
        if agent not in by:
            lines += [f"## Budget {b:g}: no rows of `{agent}`", ""]
            continue
        mine = by[agent]
        lines += [
            f"## Budget {b:g}",
            "",
            f"| policy | seeds | test accuracy (%) | compute | {agent} minus policy (points) | won/lost |",
            "|---|---|---|---|---|---|",
        ]
        means = {}
        stats = {}
        for name, seeds in sorted(
            by.items(), key=lambda kv: -statistics.fmean(r["test_accuracy"] for r in kv[1].values())
        ):
            accs = [r["test_accuracy"] for r in seeds.values()]
            means[name] = statistics.fmean(accs)
            comp = statistics.fmean(r["compute_fraction"] for r in seeds.values())
            cell, wl = "—", ""
            if name != agent:
                common = sorted(set(seeds) & set(mine))
                diffs = [mine[s]["test_accuracy"] - seeds[s]["test_accuracy"] for s in common]
                if diffs:
                    hw = half_width(diffs)
                    mean = statistics.fmean(diffs)
                    stats[name] = (mean, hw)
                    cell = f"{100 * mean:+.2f} ± {100 * hw:.2f}" if hw == hw else f"{100 * mean:+.2f}"
                    wl = f"{sum(d > 0 for d in diffs)}/{sum(d < 0 for d in diffs)}"
            lines.append(f"| {name} | {len(accs)} | {_pct(accs)} | {comp:.3f} | {cell} | {wl} |")
        others = {n: m for n, m in means.items() if n != agent}
        best = max(others, key=others.get) if others else None
        at_least = all(means[agent] >= m for m in others.values())
        ahead = best is not None and best in stats and stats[best][0] - stats[best][1] > 0
        behind = [n for n, (m, hw) in stats.items() if m + hw < 0]
        verdict = (
            (
                f"Budget {b:g}: `{agent}` mean {100 * means[agent]:.2f}%; best other `{best}` "
                f"{100 * others[best]:.2f}%. At least every policy's mean: {'yes' if at_least else 'no'}; "
                f"significantly ahead of the best: {'yes' if ahead else 'no'}; significantly behind: "
                f"{', '.join(behind) if behind else 'none'}."
            )
            if best
            else f"Budget {b:g}: no other policy."
        )
        verdicts.append(verdict)
        lines += ["", verdict, ""]
    lines += ["## Verdict", ""] + [f"- {v}" for v in verdicts]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--agent", required=True, help="the label of the agent (or policy) paired against the others")
    ap.add_argument("--out", type=Path, default=None, help="also write the report here")
    args = ap.parse_args(argv)
    text = report(args.folder, args.agent)
    if args.out is not None:
        args.out.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
