"""Summarise a ``prunegym compare`` folder with 95% intervals (issue 7's report).

    python benchmarks/agent_report.py compare/heldout [--paired ppo_learned ...] [--out report.md]

Reads ``OUT/results.jsonl`` and prints, per policy, the mean and a 95% Student-t interval over seeds of the
episode return, the test accuracy (%) and the compute fraction, plus the mean kept fraction. Failed episodes
are left out and counted. ``--paired A`` adds, for policy ``A``, the paired differences of the return
(``A`` minus each other policy on the same seeds): mean, 95% Student-t half-width and how many seeds ``A`` won.
Policies are seeded alike, so the paired difference removes what every policy shares on a seed (its initial
accuracy, its data split) and is the sharper comparison.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from prunegym.agents import read_rows
from prunegym.agents.evaluation.stats import half_width


def interval(values: list[float], scale: float = 1.0) -> str:
    """``mean ± half-width`` of the 95% t interval, values multiplied by ``scale``."""
    vals = [v * scale for v in values]
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {half_width(vals):.3f}"


def completed(folder: Path) -> tuple[dict[str, list[dict]], int]:
    """Completed rows per policy (a re-run seed replaces the earlier row) and the number of failed rows."""
    by_key: dict[tuple[str, int], dict] = {}
    failed = 0
    for r in read_rows(folder / "results.jsonl"):
        if r.get("steps", 0) == 0:
            failed += 1
            continue
        by_key[(r["policy"], r["seed"])] = r
    if not by_key:
        raise SystemExit(f"no completed episodes in {folder / 'results.jsonl'}")
    by_policy: dict[str, list[dict]] = {}
    for (policy, _), r in sorted(by_key.items(), key=lambda kv: kv[0][1]):
        by_policy.setdefault(policy, []).append(r)
    return by_policy, failed


def paired(by_policy: dict[str, list[dict]], name: str) -> str:
    """Markdown: return of ``name`` minus each other policy's on their shared seeds (mean ± 95% half-width)."""
    if name not in by_policy:
        raise SystemExit(f"--paired {name!r}: no such policy; allowed: {', '.join(sorted(by_policy))}")
    mine = {r["seed"]: r["episode_return"] for r in by_policy[name]}
    lines = [f"| {name} minus | seeds | paired return difference (95% CI) | seeds won |", "|---|---|---|---|"]
    for other in sorted(by_policy, key=lambda p: -statistics.fmean(r["episode_return"] for r in by_policy[p])):
        if other == name:
            continue
        diffs = [mine[r["seed"]] - r["episode_return"] for r in by_policy[other] if r["seed"] in mine]
        if not diffs:
            continue
        lines.append(
            f"| {other} | {len(diffs)} | {statistics.fmean(diffs):+.4f} ± {half_width(diffs):.4f} | "
            f"{sum(d > 0 for d in diffs)}/{len(diffs)} |"
        )
    return "\n".join(lines)


def report(folder: Path, paired_with: list[str] = ()) -> str:
    by_policy, failed = completed(folder)
    order = sorted(by_policy, key=lambda p: -statistics.fmean(r["episode_return"] for r in by_policy[p]))
    lines = [
        "| policy | seeds | return (95% CI) | test accuracy % (95% CI) | compute fraction (95% CI) | kept fraction |",
        "|---|---|---|---|---|---|",
    ]
    for p in order:
        rs = by_policy[p]
        lines.append(
            f"| {p} | {len(rs)} | {interval([r['episode_return'] for r in rs])} | "
            f"{interval([r['test_accuracy'] for r in rs], 100.0)} | {interval([r['compute_fraction'] for r in rs])} | "
            f"{statistics.fmean(r['kept_fraction'] for r in rs):.3f} |"
        )
    if failed:
        lines.append(f"\n{failed} failed episode(s) left out.")
    for name in paired_with:
        lines += ["", paired(by_policy, name)]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a prunegym compare --out folder")
    ap.add_argument(
        "--paired",
        nargs="+",
        default=[],
        metavar="POLICY",
        help="add paired return differences of these policies against every other",
    )
    ap.add_argument("--out", type=Path, help="also write the table here")
    args = ap.parse_args(argv)
    text = report(args.folder, args.paired)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
