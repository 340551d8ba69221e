"""Pure statistics used across the package: binomial intervals, paired accuracy differences, medians with spread.

No torch, no I/O: numbers in, numbers out, each with a doctest.
"""

from __future__ import annotations

import math
import statistics

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """95% Wilson score interval for k successes in n trials.

    >>> [round(x, 4) for x in wilson(5, 10)]
    [0.2366, 0.7634]
    >>> wilson(0, 0)
    (0.0, 1.0)
    """
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(before: list[bool], after: list[bool], z: float = Z95) -> tuple[float, float, float]:
    """Difference in accuracy (after - before) on the same items, with Newcombe's (1998) method-10 interval.

    >>> d, lo, hi = paired_difference([True, False] * 50, [True, True] * 50)
    >>> round(d, 2), lo > 0
    (0.5, True)
    """
    n = len(before)
    if n == 0 or n != len(after):
        raise ValueError("paired_difference needs two equal, non-empty lists")
    a = sum(b and c for b, c in zip(before, after))
    b = sum(x and not y for x, y in zip(before, after))
    c = sum(y and not x for x, y in zip(before, after))
    d = n - a - b - c
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + c, n, z)
    denom = (a + b) * (c + d) * (a + c) * (b + d)
    phi = (a * d - b * c) / math.sqrt(denom) if denom else 0.0
    diff = p2 - p1
    lo = diff - math.sqrt(max(0.0, (p2 - l2) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1) + (u1 - p1) ** 2))
    hi = diff + math.sqrt(max(0.0, (u2 - p2) ** 2 - 2 * phi * (u2 - p2) * (p1 - l1) + (p1 - l1) ** 2))
    return diff, max(-1.0, lo), min(1.0, hi)


def median_and_spread(values: list[float]) -> dict:
    """Median, min, max, relative spread ((max-min)/median) and a 95% CI of the median (order statistics).

    >>> s = median_and_spread([1.0, 2.0, 3.0, 4.0, 5.0])
    >>> s["median"], s["min"], s["max"], round(s["rel_spread"], 2)
    (3.0, 1.0, 5.0, 1.33)
    """
    vals = sorted(v for v in values if v == v)
    if not vals:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "rel_spread": float("nan"),
                "n": 0, "ci95": [float("nan"), float("nan")]}
    n = len(vals)
    med = statistics.median(vals)
    # Distribution-free CI for the median: ranks n/2 -/+ 1.96*sqrt(n)/2 (clamped; wide for small n, as it should be).
    half = 1.96 * math.sqrt(n) / 2
    lo = vals[max(0, math.floor(n / 2 - half))]
    hi = vals[min(n - 1, math.ceil(n / 2 + half) - 1 if n > 1 else 0)]
    return {"median": med, "min": vals[0], "max": vals[-1], "rel_spread": (vals[-1] - vals[0]) / med if med else 0.0,
            "n": n, "ci95": [lo, hi]}
