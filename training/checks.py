"""Values checked once, at the edge: the one check of a fraction in (0, 1] (compute budgets, EMA rates).

Seeds have theirs in :mod:`prunegym.training.seeding` (:func:`~prunegym.training.seeding.check_seed`). Each
returns the value normalised (a Python ``float`` or ``int``; numpy scalars are accepted) or raises a one-line
``ValueError`` naming the value and what is allowed.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["check_fraction"]


def check_fraction(value: Any, name: str, of: str = "") -> float:
    """``value`` as a ``float`` if it is a real number in (0, 1] (Python's or numpy's, not a bool); else a
    ``ValueError`` ``"<name>=<value> must be a fraction in (0, 1] <of>"`` (``of``: what it is a fraction of,
    e.g. ``"of the full-data run's training FLOPs"``)."""
    real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if real and math.isfinite(value) and 0.0 < value <= 1.0:
        return float(value)
    what = f" {of}" if of else ""
    kind = "" if real and math.isfinite(value) else " (a real number, not a bool)"
    raise ValueError(f"{name}={value!r} must be a fraction in (0, 1]{what}{kind}")
