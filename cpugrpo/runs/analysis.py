"""Pure functions over trial rows: the newest valid row per configuration, the Pareto front, the quality gate (a
non-inferiority test on the gain from the same start), the rank test that decides between two configurations,
thread-scaling efficiency. No I/O; tested from tables of inputs and expected outputs.
"""

from __future__ import annotations

import math

GATE_POINTS = 0.02   # non-inferiority margin: a candidate may lose at most 2 points against fp32 (lower bound)
ALPHA = 0.05         # the rank test that separates two configurations' per-step samples/s


def samples_per_s(row: dict) -> float | None:
    """A trial's throughput: median samples/s over its measured steps (None for a failed trial)."""
    if row.get("status") != "ok":
        return None
    return row["summary"]["samples_per_s"]["median"]


def peak_rss_mb(row: dict) -> float | None:
    """The kernel's high-water mark of the trial process (measured outside it), else the child's own figure.

    A data-parallel trial (``world_size`` > 1) is several processes: the outside figure (``wait4``) is the largest
    single one, so the ranks' own kernel peaks summed are used instead (a bound from above on their joint peak, as
    the ranks' peaks need not coincide; the launcher's own few tens of MiB are not in it).

    >>> peak_rss_mb({"outside": {"os_peak_rss_mb": 900}, "world_size": 2, "summary": {"peak_rss_mb_os": 1700}})
    1700
    """
    if row.get("world_size", 1) > 1 and row.get("summary", {}).get("peak_rss_mb_os"):
        return row["summary"]["peak_rss_mb_os"]
    out = row.get("outside", {}).get("os_peak_rss_mb")
    return out if out else row.get("summary", {}).get("peak_rss_mb_os")


def threads_per_process(row: dict):
    """A trial's threads per process: as configured, else what the launcher gave each rank, else what took effect
    (threads left to the default).

    >>> threads_per_process({"config": {"threads": None}, "threads_per_process": 1})
    1
    """
    return ((row.get("config") or {}).get("threads") or row.get("threads_per_process")
            or (row.get("effective") or {}).get("threads"))


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


def flags(per_item: str) -> list[bool]:
    """A trial's per-item record ("1" right, "0" wrong, one character per held-out item) as booleans."""
    return [c == "1" for c in per_item]


def gain(before: str, after: str) -> dict:
    """Did a training measurably change accuracy? The paired difference (after - before) on the same items, its
    95% Newcombe interval, and ``learned``: the interval lies above 0.

    >>> g = gain("0" * 60 + "1" * 40, "0" * 40 + "1" * 60)
    >>> round(g["difference"], 2), g["learned"]
    (0.2, True)
    >>> gain("01" * 50, "10" * 50)["learned"]
    False
    """
    from ..core.stats import paired_difference

    if not before or len(before) != len(after):
        raise ValueError(f"gain needs two records of the same held-out items, got lengths {len(before)} and "
                         f"{len(after)}")
    d, lo, hi = paired_difference(flags(before), flags(after))
    return {"n": len(before), "before": before.count("1") / len(before), "after": after.count("1") / len(after),
            "difference": d, "ci95": [lo, hi], "learned": lo > 0}


def gate_verdict(before: str, baseline_after: str, candidate_after: str, tolerance: float = GATE_POINTS) -> dict:
    """Non-inferiority of a candidate precision pair on the gain from the same start. Pure; per-item strings in.

    ``before`` is the start's per-item record (the same for every pair: one model, one seed, greedy decoding);
    ``baseline_after`` and ``candidate_after`` are the records after the same short training at fp32 and at the
    candidate's precisions, on the same items. Since both gains start from the same record, the difference of the
    gains equals the difference of the after-records, item by item; its 95% paired interval (Newcombe) decides:

    - ``inconclusive`` when the fp32 training did not measurably learn (the paired interval of its gain, after -
      before, does not exclude 0): a gate that cannot tell learning from no learning passes a candidate that learns
      nothing;
    - ``passed`` when the interval's lower bound is above ``-tolerance`` (non-inferior);
    - ``failed`` otherwise (a loss of ``tolerance`` or more is not ruled out).

    >>> v = gate_verdict("0000011111", "1111111111", "0111111111", tolerance=0.2)
    >>> v["verdict"], round(v["difference"], 2), round(v["baseline_gain"]["difference"], 2)
    ('failed', -0.1, 0.5)
    >>> gate_verdict("01" * 50, "01" * 50, "01" * 50)["verdict"]
    'inconclusive'
    """
    from ..core.stats import paired_difference

    n = len(before)
    if not n or len(baseline_after) != n or len(candidate_after) != n:
        raise ValueError(f"gate_verdict needs three records of the same held-out items, got lengths {n}, "
                         f"{len(baseline_after)} and {len(candidate_after)}")
    base_gain, cand_gain = gain(before, baseline_after), gain(before, candidate_after)
    base, cand = flags(baseline_after), flags(candidate_after)
    d, lo, hi = paired_difference(base, cand)
    out = {"n": n, "before": base_gain["before"], "baseline": base_gain["after"], "candidate": cand_gain["after"],
           "baseline_gain": base_gain, "candidate_gain": cand_gain,
           "difference": d, "ci95": [lo, hi], "discordance": sum(x != y for x, y in zip(base, cand)) / n,
           "tolerance": tolerance}
    if not base_gain["learned"]:
        g, (g_lo, g_hi) = base_gain["difference"], base_gain["ci95"]
        out["verdict"] = "inconclusive"
        out["why"] = (f"fp32 did not measurably learn in the gate's budget (gain {g:+.1%} [{g_lo:+.1%}, "
                      f"{g_hi:+.1%}] includes 0)")
    elif lo > -tolerance:
        out["verdict"] = "passed"
        out["why"] = f"lower bound {lo:+.1%} is above -{tolerance:.0%}: non-inferior"
    else:
        out["verdict"] = "failed"
        out["why"] = f"lower bound {lo:+.1%} is not above -{tolerance:.0%}: a loss of {tolerance:.0%} is not ruled out"
    out["passed"] = out["verdict"] == "passed"
    return out


def quality_gate(candidate: dict, baseline: dict, before: dict, tolerance: float = GATE_POINTS) -> dict:
    """``gate_verdict`` on trial ``accuracy`` dicts (each with its ``per_item`` record): the candidate's and the
    fp32 baseline's after training, and the start's (``accuracy_before`` of the fp32 gate trial).

    >>> acc = lambda s: {"per_item": s}
    >>> quality_gate(acc("1" * 60 + "0" * 40), acc("1" * 60 + "0" * 40), acc("1" * 40 + "0" * 60))["verdict"]
    'passed'
    """
    return gate_verdict(before["per_item"], baseline["per_item"], candidate["per_item"], tolerance)


def step_rates(row: dict) -> list[float]:
    """samples/s of each measured step of an ok trial (completions / the step's wall time), warm-up left out.

    >>> step_rates({"spec": {"warmup_steps": 1}, "steps": [{"completions": 64, "wall_s": 4.0},
    ...                                                   {"completions": 64, "wall_s": 1.0}]})
    [64.0]
    """
    warm = (row.get("spec") or {}).get("warmup_steps", 1)
    return [s["completions"] / s["wall_s"] for s in row.get("steps", [])[warm:] if s.get("wall_s")]


def min_attainable_p(n1: int, n2: int) -> float:
    """The smallest two-sided p-value the exact Mann-Whitney test can give with samples of n1 and n2: below
    ``ALPHA`` only from 4 against 4 (3 against 3 can never be separated at 0.05).

    >>> round(min_attainable_p(3, 3), 3), round(min_attainable_p(4, 4), 3), round(min_attainable_p(5, 5), 4)
    (0.1, 0.029, 0.0079)
    """
    return min(1.0, 2 / math.comb(n1 + n2, n1)) if n1 and n2 else 1.0


def rank_test(a: list[float], b: list[float], alpha: float = ALPHA) -> dict:
    """Mann-Whitney U, two-sided (scipy's; exact for small samples without ties), as asv compares benchmark
    samples: ``separated`` when p < ``alpha``. Fewer than two samples on a side cannot be separated.

    >>> rank_test([10, 11, 12, 13, 14], [20, 21, 22, 23, 24])["separated"]
    True
    >>> rank_test([10, 12, 14, 16], [11, 13, 15, 17])["separated"]
    False
    """
    if len(a) < 2 or len(b) < 2:
        return {"p": 1.0, "separated": False, "n": [len(a), len(b)], "min_p": 1.0}
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return {"p": p, "separated": p < alpha, "n": [len(a), len(b)], "min_p": min_attainable_p(len(a), len(b))}


def decide(rows: list[dict], labels: list[str], alpha: float = ALPHA) -> dict:
    """Choose among ok trial rows: the leader has the highest median samples/s; a row whose per-step samples/s
    the rank test cannot separate from the leader's is tied with it; among the leader and its ties the lowest peak
    RSS wins (a tie in speed goes to memory). Pure; returns the chosen index, the tie, the p-values and a line of
    text for the recommendation's reasons.

    >>> def row(rates, rss): return {"status": "ok", "summary": {"samples_per_s": {"median": sorted(rates)[2]}},
    ...     "spec": {"warmup_steps": 0}, "steps": [{"completions": r, "wall_s": 1.0} for r in rates],
    ...     "outside": {"os_peak_rss_mb": rss}}
    >>> d = decide([row([50, 52, 54, 55, 58], 900), row([49, 51, 53, 56, 57], 800)], ["fp32", "int8"])
    >>> d["chosen"], d["tie"]
    (1, True)
    >>> decide([row([50, 52, 54, 55, 58], 900), row([20, 21, 22, 23, 24], 800)], ["fp32", "int8"])["chosen"]
    0
    """
    speeds = [samples_per_s(r) for r in rows]
    if not rows or any(s is None for s in speeds):
        raise ValueError("decide needs ok trial rows")
    lead = max(range(len(rows)), key=lambda i: speeds[i])
    tests = {i: rank_test(step_rates(rows[lead]), step_rates(r), alpha) for i, r in enumerate(rows) if i != lead}
    tied = [i for i, t in tests.items() if not t["separated"]]
    mem = [peak_rss_mb(r) or math.inf for r in rows]
    chosen = min([lead] + tied, key=lambda i: (mem[i], -speeds[i]))
    out = {"chosen": chosen, "leader": lead, "tie": bool(tied), "tied": tied, "alpha": alpha,
           "p": {labels[i]: t["p"] for i, t in tests.items()}}
    sep = [i for i, t in tests.items() if t["separated"]]
    parts = []
    if sep:
        parts.append(f"{labels[lead]} faster than " + ", ".join(f"{labels[i]} (p={tests[i]['p']:.3f})" for i in sep))
    if tied:
        who = [lead] + tied
        small = [i for i in tied if tests[i]["min_p"] >= alpha]
        parts.append("tie: " + " and ".join(labels[i] for i in who) + " not separated ("
                     + ", ".join(f"p={tests[i]['p']:.2f}" for i in tied) + f" >= {alpha})"
                     + (f", too few steps for the test to separate {', '.join(labels[i] for i in small)}"
                        if small else "")
                     + "; lower peak RSS decides: " + ", ".join(f"{labels[i]} {mem[i]:.0f} MiB" for i in who)
                     + f" -> {labels[chosen]}")
    out["text"] = ("Mann-Whitney U on per-step samples/s, two-sided, alpha " + f"{alpha}: " + "; ".join(parts)
                   if parts else "one candidate")
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


GATE_REFERENCE = ("fp32", "fp32")  # the gate key every candidate is judged against (fp32 update and rollout)
DEFAULT_OPTIMIZER = "adamw_torch_fused"


def gate_key(point: dict) -> tuple:
    """What the quality gate trains for a configuration: its (update precision, rollout precision), then its
    optimizer when that is not the default (the optimizer's arithmetic changes the update too), then "lora" under
    LoRA adapters (after the optimizer, which is then always named).

    >>> gate_key({"update_precision": "bf16-sr", "rollout_precision": "bf16", "optimizer": "adafactor"})
    ('bf16-sr', 'bf16', 'adafactor')
    >>> gate_key({"update_precision": "fp32", "rollout_precision": "int8"})
    ('fp32', 'int8')
    """
    key = (point["update_precision"], point["rollout_precision"])
    opt = point.get("optimizer") or DEFAULT_OPTIMIZER
    lora = (point.get("adapter") or "none") != "none"
    return key + ((opt,) if opt != DEFAULT_OPTIMIZER or lora else ()) + ((point["adapter"],) if lora else ())


def gate_text(key: tuple) -> str:
    """The gate key in words.

    >>> gate_text(("bf16-sr", "bf16", "adafactor"))
    'bf16-sr update / bf16 rollout / adafactor'
    """
    return f"{key[0]} update / {key[1]} rollout" + "".join(f" / {x}" for x in key[2:])
