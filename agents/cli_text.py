"""What the ``prunegym`` command line prints: the per-episode table, the one-line summary of failed and
diverged episodes, and the command that resumes interrupted work."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from .evaluation.results import is_diverged, is_failed

__all__ = ["command_line", "errors_line", "replace_seeds", "row_table"]


def command_line(argv: Sequence[str]) -> str:
    """``prunegym <argv>``, quoted for a POSIX shell."""
    return "prunegym " + shlex.join(list(argv))


def replace_seeds(argv: list[str], seeds: list[int]) -> list[str]:
    """``argv`` with its ``--seeds`` values replaced by ``seeds``."""
    out, skip = [], False
    for a in argv:
        if skip and not a.startswith("-"):
            continue
        skip = False
        if a == "--seeds":
            skip = True
            continue
        out.append(a)
    return out + ["--seeds", *map(str, seeds)]


def errors_line(rows: list[dict[str, Any]]) -> str | None:
    """One line naming the failed and diverged episodes of ``rows`` (``None`` if there are none)."""

    parts = []
    for what, test, hint in (
        ("failed", is_failed, "run the same command again to retry them"),
        ("diverged", is_diverged, "deterministic: their rows are kept, out of the means"),
    ):
        bad = [r for r in rows if test(r)]
        if bad:
            names = ", ".join(f"{r['policy']} seed {r['seed']}" for r in bad[:8]) + (", ..." if len(bad) > 8 else "")
            parts.append(f"{len(bad)} episode(s) {what} ({names}; {hint})")
    return "; ".join(parts) or None


def row_table(rows: list[dict[str, Any]]) -> str:
    """One line per episode row; failed ones show their error, diverged ones are marked ``DIVERGED``."""

    head = (
        f"{'policy':<18} {'seed':>6} {'test_acc':>9} {'val_acc':>8} {'compute':>8} {'kept':>6} "
        f"{'return':>8} {'wall_s':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if is_failed(r):
            lines.append(f"{r['policy']:<18} {r['seed']:>6} FAILED: {r['error']}")
            continue
        lines.append(
            f"{r['policy']:<18} {r['seed']:>6} {r['test_accuracy']:>9.4f} {r['val_accuracy']:>8.4f} "
            f"{r['compute_fraction']:>8.4f} {r['kept_fraction']:>6.3f} {r['episode_return']:>8.4f} "
            f"{r['wall_clock_s']:>7.2f}" + (f"  DIVERGED: {r['error']}" if is_diverged(r) else "")
        )
    return "\n".join(lines)
