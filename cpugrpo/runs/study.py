"""The curriculum study as evidence: forgetting of the first stage's level, and what EWC recovers of it.

``summarize`` reads the arms of one `cpugrpo curriculum` run (same start, same problems, one arm per lambda and Fisher
mode) and, per evaluation split, gives:

- each arm's **forgetting**: accuracy on the first stage's level right after that stage minus at the end of the
  curriculum, with the paired (Newcombe) interval over the same items;
- each EWC arm against the lambda = 0 arm: the paired difference of their final accuracies on that level
  (EWC - no EWC) with its interval, and the fraction of the lambda = 0 forgetting it recovers.

``record`` appends one row per arm to ``results/<machine-id>/curriculum.jsonl`` (the study id ties the arms together).
"""

from __future__ import annotations

import time
from pathlib import Path

from ..core.stats import paired_difference
from ..core.store import TrialStore
from .training import portable_config, results_root


def _items(entry: dict, split: str, level: str) -> list[bool]:
    s = entry["splits"][split]
    return [c == "1" for c, lv in zip(s["per_item"], s["levels"]) if lv == level[0]]


def summarize(studies: list[dict]) -> dict:
    """Forgetting per arm and EWC - no-EWC per EWC arm, per split. Needs an arm with lambda = 0 for the second."""
    if not studies or len(studies[0]["history"]) < 3:
        return {}
    first = studies[0]["history"][1]["stage"]
    out: dict = {"first_stage": first, "splits": {}}
    base = next((st for st in studies if st["lambda"] == 0), None)
    for split in studies[0]["eval_splits"]:
        arms = []
        for st in studies:
            after_first = _items(st["history"][1], split, first)
            final = _items(st["history"][-1], split, first)
            if not final:  # e.g. a user's file with no problem of that level in this split
                arms.append({"lambda": st["lambda"], "fisher": st.get("fisher", "gold"), "n": 0})
                continue
            d, lo, hi = paired_difference(after_first, final)
            arm = {"lambda": st["lambda"], "fisher": st.get("fisher", "gold"),
                   "after_first": sum(after_first) / len(after_first), "final": sum(final) / len(final),
                   "forgetting": -d, "forgetting_ci95": [-hi, -lo], "n": len(final)}
            if base is not None and st is not base and _items(base["history"][-1], split, first):
                base_final = _items(base["history"][-1], split, first)
                d, lo, hi = paired_difference(base_final, final)
                forgot = sum(_items(base["history"][1], split, first)) / len(final) - sum(base_final) / len(final)
                arm.update({"vs_no_ewc": d, "vs_no_ewc_ci95": [lo, hi],
                            "recovered_fraction": d / forgot if forgot > 0 else None})
            arms.append(arm)
        out["splits"][split] = arms
    return out


def record(out: dict, machine_id: str, environment: dict, results_dir: str | None = None) -> Path:
    """One row per arm of the study ``out`` (what cmd_curriculum returns) in ``results/<id>/curriculum.jsonl``."""
    store = TrialStore(Path(results_root(results_dir)) / machine_id / "curriculum.jsonl")
    study_id = f"curriculum-{int(time.time())}"
    for st in out["studies"]:
        store.append({"run_id": f"{study_id}-lambda{st['lambda']:g}-{st.get('fisher', 'gold')}",
                      "study_id": study_id, "kind": "curriculum", "machine_id": machine_id,
                      "stage_steps": out["stage_steps"], "config": portable_config(out["config"]),
                      "lambda": st["lambda"],
                      "fisher": st.get("fisher", "gold"), "fisher_dtype": st["fisher_dtype"],
                      "eval_splits": st["eval_splits"], "history": st["history"],
                      "stages": [{k: v for k, v in s.items() if k not in ("penalty", "grpo_loss")}
                                 | {"penalty_last": (s["penalty"] or [None])[-1]} for s in st["stages"]],
                      "summary": out.get("summary", {}), "environment": environment,
                      "model_cache_key": out.get("model_cache_key"), "started_at": out.get("started_at"),
                      "seconds": out.get("seconds"), "finished_at": time.time()})
    return store.path


NOT_THE_PLAN = ("threads", "processes", "memory_budget_gb", "release_memory")  # how it ran, not what it trained


def _plan(row: dict) -> str:
    """What two studies must share to be paired: stages, the training config (knobs added since at the value older
    rows ran with; the build is the model and its preset seed), not how many CPUs ran it."""
    import json

    from ..core.config import fill_before

    config = {k: v for k, v in fill_before(row.get("config") or {}).items() if k not in NOT_THE_PLAN}
    return json.dumps([row.get("stage_steps"), config], sort_keys=True, default=str)


def _final_rate(row: dict, split: str, level: str) -> float:
    items = _items(row["history"][-1], split, level)
    return sum(items) / len(items) if items else float("nan")


def fisher_comparison(rows: list[dict], choose_on: str = "dev", report_on: str = "test") -> list[dict]:
    """Across the studies of one plan (same stages, config and build, so the same start and the same items): the
    lambda > 0 each Fisher mode's rule picks on ``choose_on`` (the highest final accuracy on the first stage's level),
    then sample - gold at those lambdas on ``report_on``, paired over the same items; and whether the lambda = 0 arms
    of two studies reproduced each other item for item.

    >>> h = lambda a, b: [{"stage": "start"}, {"stage": "basic", "splits": {s: {"per_item": a, "levels": "bbbb"}
    ...     for s in ("dev", "test")}}, {"stage": "x", "splits": {s: {"per_item": b, "levels": "bbbb"}
    ...     for s in ("dev", "test")}}]
    >>> arm = lambda lam, f, b: {"lambda": lam, "fisher": f, "study_id": f, "stage_steps": {}, "config": {},
    ...     "history": h("1111", b), "eval_splits": ["dev", "test"]}
    >>> out = fisher_comparison([arm(0, "gold", "0000"), arm(5, "gold", "1100"), arm(0, "sample", "0000"),
    ...                          arm(5, "sample", "1110")])[0]
    >>> out["lambda"], out["difference"], out["no_ewc_same_items"]
    ({'gold': 5, 'sample': 5}, 0.25, 1.0)
    """
    plans: dict[str, list[dict]] = {}
    for r in rows:
        if len(r.get("history") or []) >= 3:  # a start, the first stage and a later one
            plans.setdefault(_plan(r), []).append(r)
    out = []
    for arms in plans.values():
        first = arms[0]["history"][1]["stage"]
        splits = set(arms[0].get("eval_splits") or [])
        if not {choose_on, report_on} <= splits:
            continue
        chosen = {}
        for fisher in ("gold", "sample"):
            cands = [a for a in arms if a["lambda"] > 0 and a.get("fisher", "gold") == fisher]
            if cands:
                chosen[fisher] = max(cands, key=lambda a: _final_rate(a, choose_on, first))
        if len(chosen) < 2:
            continue
        gold = _items(chosen["gold"]["history"][-1], report_on, first)
        sample = _items(chosen["sample"]["history"][-1], report_on, first)
        d, lo, hi = paired_difference(gold, sample)
        entry = {"first_stage": first, "split": report_on, "n": len(gold),
                 "lambda": {f: a["lambda"] for f, a in chosen.items()},
                 "final": {f: _final_rate(a, report_on, first) for f, a in chosen.items()},
                 "difference": d, "ci95": [lo, hi]}
        bases = {a.get("study_id"): a for a in arms if a["lambda"] == 0}
        if len(bases) >= 2:
            x, y = list(bases.values())[:2]
            sx, sy = x["history"][-1]["splits"][report_on], y["history"][-1]["splits"][report_on]
            entry["no_ewc_same_items"] = sum(p == q for p, q in zip(sx["per_item"], sy["per_item"])) / \
                len(sx["per_item"])
        out.append(entry)
    return out
