"""Intervals over seeds: the two-sided 95% Student-t half-width every table and figure of the harness uses."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["half_width", "t95"]

# Two-sided 95% Student-t quantiles for n - 1 degrees of freedom (a dof between two keys takes the smaller key:
# the wider interval); beyond 29, 1.96.
_T95 = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    7: 2.365,
    8: 2.306,
    9: 2.262,
    10: 2.228,
    15: 2.131,
    20: 2.086,
    29: 2.045,
}


def t95(dof: int) -> float:
    """The 0.975 quantile of Student's t with ``dof`` degrees of freedom (NaN for ``dof <= 0``)."""
    if dof <= 0:
        return float("nan")
    keys = [k for k in sorted(_T95) if k <= dof]
    return _T95[keys[-1]] if dof < 30 else 1.96


def half_width(values: Sequence[float]) -> float:
    """Half-width of the 95% Student-t interval of the mean of ``values`` (NaN for fewer than 2)."""
    if len(values) < 2:
        return math.nan
    return t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
