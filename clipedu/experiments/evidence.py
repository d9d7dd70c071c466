"""The course's evidence standard for a comparison: several seeds, mean +/- standard error, drawn as error bars.

A difference between two training recipes is only worth stating when it is
larger than the spread between seeds of the same recipe. Every comparison in
the course therefore runs at least 3 seeds (or, for evaluations of one model,
reports a paired standard error) and prints `mean +/- se`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def mean_and_se(values: Sequence[float]) -> tuple[float, float]:
    """The mean and its standard error: sample standard deviation / sqrt(n) (0 for a single value)."""
    n = len(values)
    if n == 0:
        raise ValueError("mean_and_se needs at least one value")
    mean = sum(values) / n
    if n == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """mean_and_se of a[i] - b[i]: for two recipes run on the same seeds (or two models on the same images)."""
    if len(a) != len(b):
        raise ValueError(f"paired values need equal lengths, got {len(a)} and {len(b)}")
    return mean_and_se([x - y for x, y in zip(a, b)])


def describe_difference(diff: float, se: float, what: str = "difference") -> str:
    """Words no stronger than the error bar allows: 'no measurable difference' inside 2 standard errors."""
    if se == 0 or abs(diff) < 2 * se:
        return f"no measurable {what} ({diff:+.3f} +/- {se:.3f})"
    return f"a {what} of {diff:+.3f} +/- {se:.3f} (more than 2 standard errors)"
