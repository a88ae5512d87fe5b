"""Input checks shared by the modules.

Each raises ValueError naming the argument and saying what was expected, so a wrong
size or rate fails at the public edge with a message the reader can act on. Booleans
are refused even though Python counts them as integers.
"""
from __future__ import annotations

import math
import numbers

__all__ = ["positive_int", "nonnegative_int", "positive_number"]


def positive_int(name: str, value: object) -> None:
    """Raise ValueError unless `value` is an integer >= 1 (NumPy integers included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def nonnegative_int(name: str, value: object) -> None:
    """Raise ValueError unless `value` is an integer >= 0 (a count that may be zero)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an int >= 0, got {value!r}")


def positive_number(name: str, value: object) -> None:
    """Raise ValueError unless `value` is a finite real number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
