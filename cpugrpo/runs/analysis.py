"""Pure functions over trial rows: the newest valid row per configuration, the Pareto front, the quality gate,
thread-scaling efficiency. No I/O; tested from tables of inputs and expected outputs.
"""

from __future__ import annotations

import math

GATE_POINTS = 0.02   # a candidate may lose at most 2 points of held-out accuracy against the fp32 baseline


def samples_per_s(row: dict) -> float | None:
    """A trial's throughput: median samples/s over its measured steps (None for a failed trial)."""
    if row.get("status") != "ok":
        return None
    return row["summary"]["samples_per_s"]["median"]


def peak_rss_mb(row: dict) -> float | None:
    """The kernel's high-water mark of the trial process (measured outside it), else the child's own figure."""
    out = row.get("outside", {}).get("os_peak_rss_mb")
    return out if out else row.get("summary", {}).get("peak_rss_mb_os")


def latest_ok(rows: list[dict]) -> dict[str, dict]:
    """Per trial key, the newest ok row, where a re-measurement replaces the noisy row it re-measured.

    >>> rows = [{"key": "a", "status": "ok", "trial_id": "a-1"}, {"key": "a", "status": "failed", "trial_id": "a-2"},
    ...         {"key": "b", "status": "ok", "trial_id": "b-1", "noisy": True},
    ...         {"key": "c", "status": "ok", "trial_id": "c-1", "remeasure_of": "b-1"}]
    >>> {k: r["trial_id"] for k, r in latest_ok(rows).items()}
    {'a': 'a-1', 'b': 'c-1'}
    """
    by_id = {r["trial_id"]: r for r in rows if "trial_id" in r}
    out = {}
    for r in rows:
        if r.get("status") != "ok":
            continue
        key = r["key"]
        if r.get("remeasure_of") in by_id:
            key = by_id[r["remeasure_of"]]["key"]
        out[key] = r
    return out


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated when maximising the first value and minimising the second.

    >>> pareto_front([(10, 100), (12, 150), (9, 90), (11, 200), (12, 140)])
    [0, 2, 4]
    """
    front = []
    for i, (t, m) in enumerate(points):
        dominated = any((t2 >= t and m2 <= m) and (t2 > t or m2 < m) for j, (t2, m2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def quality_gate(candidate: dict, baseline: dict, tolerance: float = GATE_POINTS) -> dict:
    """Does ``candidate``'s held-out accuracy stay within ``tolerance`` of ``baseline``'s? Both are trial
    ``accuracy`` dicts on the same held-out items; the paired difference interval is shown with the verdict,
    which is on the point estimate (an interval of +-4 points at n=600 cannot certify a 2-point margin).

    >>> base = {"overall": {"accuracy": 0.50, "n": 4}, "per_item": "1100"}
    >>> quality_gate({"overall": {"accuracy": 0.25, "n": 4}, "per_item": "1000"}, base)["passed"]
    False
    >>> quality_gate({"overall": {"accuracy": 0.50, "n": 4}, "per_item": "1010"}, base)["difference"]
    0.0
    """
    from ..core.stats import paired_difference

    a, b = candidate["overall"]["accuracy"], baseline["overall"]["accuracy"]
    out = {"candidate": a, "baseline": b, "difference": a - b, "tolerance": tolerance, "passed": a >= b - tolerance}
    if candidate.get("per_item") and baseline.get("per_item") and len(candidate["per_item"]) == \
            len(baseline["per_item"]):
        _, lo, hi = paired_difference([c == "1" for c in baseline["per_item"]],
                                      [c == "1" for c in candidate["per_item"]])
        out["ci95"] = [lo, hi]
    return out


def scaling(rows: list[tuple[int, float]]) -> list[dict]:
    """Thread scaling: speed-up over the fewest threads measured and parallel efficiency (speed-up / ratio of
    thread counts).

    >>> [round(r["efficiency"], 2) for r in scaling([(1, 10.0), (2, 18.0), (4, 30.0)])]
    [1.0, 0.9, 0.75]
    """
    if not rows:
        return []
    rows = sorted(rows)
    t0, v0 = rows[0]
    return [{"threads": t, "samples_per_s": v, "speedup": v / v0, "ideal": t / t0, "efficiency": v / v0 / (t / t0)}
            for t, v in rows]


def relative(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0 or (isinstance(value, float) and math.isnan(value)):
        return None
    return value / reference
