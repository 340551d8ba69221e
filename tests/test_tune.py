"""The tuner's parts without trials: the search space the hardware allows, the coordinate descent and its rank-test
decisions, the re-measure of noisy trials, the finalists, and the quality gate's walk over candidates (fake rows)."""

import pytest

from cpugrpo.core.config import ConfigError
from cpugrpo.runs.tune import (
    REFERENCE,
    Searcher,
    TuneOptions,
    coordinate_descent,
    finalists_order,
    gate,
    search_space,
    thread_arms,
)


class _Profile:
    def __init__(self, flags, n):
        self.features, self.n_usable = flags, n


def test_search_space_prunes_bf16_without_hardware_support():
    axes, pruned = search_space(_Profile(["avx2", "fma"], 4), quick=False)
    assert axes["rollout_precision"] == ["fp32", "int8"] and axes["update_precision"] == ["fp32"]
    assert any("bf16" in p for p in pruned)
    axes, pruned = search_space(_Profile(["avx512f", "avx512_bf16"], 2), quick=True)
    assert "bf16" in axes["rollout_precision"] and axes["gradient_checkpointing"] == [False]
    assert thread_arms(1) == [1] and thread_arms(12) == [1, 2, 4, 8, 12]


def test_coordinate_descent_walks_one_axis_at_a_time():
    speed = {"threads": {1: 1.0, 2: 2.0}, "rollout_precision": {"fp32": 1.0, "int8": 1.5, "bf16": 0.5},
             "update_precision": {"fp32": 1.0, "bf16": 0.8}, "prompts_per_step": {4: 1.1, 8: 1.0}}
    calls = []

    def measure(p):
        calls.append(dict(p))
        v = 1.0
        for k, table in speed.items():
            v *= table[p[k]]
        return _row([v * f for f in (0.98, 0.99, 1.0, 1.01, 1.02)], 1000, str(len(calls)))

    start = {"threads": 2, "rollout_precision": "fp32", "update_precision": "fp32", "gradient_checkpointing": False,
             "prompts_per_step": 8}
    axes = {"threads": [1, 2], "rollout_precision": ["fp32", "int8", "bf16"], "update_precision": ["fp32", "bf16"],
            "prompts_per_step": [4, 8]}
    best, row, record = coordinate_descent(start, axes, measure, log=lambda m: None)
    assert best == {**start, "rollout_precision": "int8", "prompts_per_step": 4}
    assert [r["axis"] for r in record] == ["threads", "rollout_precision", "update_precision", "prompts_per_step"]
    assert len(calls) == 1 + 2 + 3 + 2 + 2  # repeated points are the caller's cache's business


def _row(rates, rss, trial_id="t", point=None, spread=0.05):
    """An ok speed row: per-step samples/s ``rates`` after one warm-up step, peak RSS ``rss``."""
    med = sorted(rates)[len(rates) // 2]
    return {"status": "ok", "trial_id": trial_id, "key": trial_id, "spec": {"warmup_steps": 1},
            "steps": [{"completions": 64, "wall_s": 6.4}] + [{"completions": 64, "wall_s": 64 / r} for r in rates],
            "outside": {"os_peak_rss_mb": rss, "wall_s": 10.0}, "point": point or {},
            "summary": {"samples_per_s": {"median": med, "min": min(rates), "max": max(rates)},
                        "wall_s": {"rel_spread": spread}}}


def test_coordinate_descent_calls_a_tie_and_takes_the_lower_memory():
    rows = {"fp32": _row([60.0, 62, 64, 66, 68], 900, "a"), "int8": _row([59.0, 61, 63, 65, 67], 850, "b")}
    start = {"threads": 2, "rollout_precision": "fp32"}
    best, row, record = coordinate_descent(start, {"rollout_precision": ["fp32", "int8"]},
                                           lambda p: rows[p["rollout_precision"]], log=lambda m: None)
    assert best["rollout_precision"] == "int8" and row["trial_id"] == "b"
    assert record[0]["decision"]["tie"] and "lower peak RSS decides" in record[0]["decision"]["text"]
    # the same medians, but int8 clearly faster step by step: the speed decides, whatever the memory
    rows["int8"] = _row([70.0, 71, 72, 73, 74], 990, "c")
    best, _, record = coordinate_descent(start, {"rollout_precision": ["fp32", "int8"]},
                                         lambda p: rows[p["rollout_precision"]], log=lambda m: None)
    assert best["rollout_precision"] == "int8" and not record[0]["decision"]["tie"]
    rows["int8"] = _row([50.0, 51, 52, 53, 54], 700, "d")  # clearly slower, less memory: fp32 stays
    best, _, _ = coordinate_descent(start, {"rollout_precision": ["fp32", "int8"]},
                                    lambda p: rows[p["rollout_precision"]], log=lambda m: None)
    assert best["rollout_precision"] == "fp32"


def test_searcher_measures_a_noisy_trial_again_with_twice_the_steps():
    runs, stored = [], []

    class Store:
        path = "trials.jsonl"

        def append(self, row):
            stored.append(row)

    def run(spec, machine_id):
        runs.append(spec)
        noisy = len(runs) == 1
        return {**_row([60.0] * spec.measured_steps, 900, f"t{len(runs)}", spread=0.4 if noisy else 0.1),
                "key": spec.key}

    s = Searcher(TuneOptions(), Store(), "m", 10_000, run=run)
    row = s.measure({"threads": 1, "prompts_per_step": 4})
    assert [r.measured_steps for r in runs] == [6, 12] and runs[1].tag == "tune remeasure"
    assert [r["trial_id"] for r in stored] == ["t1", "t2"] and stored[0]["noisy"] and row["remeasure_of"] == "t1"
    assert s.spent_s == 20.0 and row["point"] == {"threads": 1, "prompts_per_step": 4}
    s.measure({"threads": 1, "prompts_per_step": 4})  # cached: nothing runs
    s.measure({"threads": 1, "prompts_per_step": 8})  # steady: measured once
    assert len(runs) == 3 and len(stored) == 3


def test_finalists_tie_goes_to_lower_memory_and_is_recorded():
    a = _row([60.0, 62, 64, 66, 68, 70, 72, 74, 76, 78], 900, "a", {"threads": 2, "rollout_precision": "fp32"})
    b = _row([59.0, 61, 63, 65, 67, 69, 71, 73, 75, 77], 850, "b", {"threads": 2, "rollout_precision": "int8"})
    ordered, rec = finalists_order([a, b])
    assert [r["trial_id"] for r in ordered] == ["b", "a"] and rec["tie"] and rec["chosen"] == "b"
    assert "rollout_precision fp32 and rollout_precision int8 not separated" in rec["text"]
    assert finalists_order([a]) == ([a], None)


def _cand(update, rollout, tid):
    return {"trial_id": tid, "point": {"update_precision": update, "rollout_precision": rollout}}


def _gate_row(before, after, tid, key="k"):
    row = {"status": "ok", "trial_id": tid, "model_cache_key": key, "steps": [{}] * 10,
           "accuracy": {"per_item": after}}
    return {**row, "accuracy_before": {"per_item": before}} if before else row


START = "1" * 450 + "0" * 550
LEARNED = "0" * 20 + "1" * 430 + "1" * 80 + "0" * 470      # +6 points from START
SAME = "1" * 20 + "0" * 20 + "1" * 410 + "1" * 80 + "0" * 470  # as LEARNED, 40 items swapped


def test_gate_walk_passes_a_non_inferior_candidate():
    trained = []

    def run_gate(pair, before):
        trained.append((pair, before))
        return _gate_row(START, LEARNED, "g-ref") if pair == REFERENCE else _gate_row(None, SAME, "g-int8")

    chosen, verdicts, gates, base = gate([_cand("fp32", "int8", "c1"), _cand("fp32", "fp32", "c2")], run_gate, 2,
                                         log=lambda m: None)
    assert chosen["trial_id"] == "c1" and verdicts[("fp32", "int8")]["verdict"] == "passed" and base["learned"]
    assert trained == [(REFERENCE, True), (("fp32", "int8"), False)]  # the start is evaluated once, by fp32


def test_gate_walk_rejects_a_candidate_that_learned_nothing_and_falls_to_fp32():
    def run_gate(pair, before):
        return _gate_row(START, LEARNED, "g-ref") if pair == REFERENCE else _gate_row(None, START, "g-bad")

    chosen, verdicts, _, _ = gate([_cand("fp32", "int8", "c1"), _cand("fp32", "fp32", "c2")], run_gate, 2,
                                  log=lambda m: None)
    assert chosen["trial_id"] == "c2" and verdicts[("fp32", "int8")]["verdict"] == "failed"
    assert verdicts[REFERENCE]["verdict"] == "reference" and "FAILED" in verdicts[("fp32", "int8")]["text"]


def test_gate_walk_is_inconclusive_when_fp32_did_not_learn():
    trained = []

    def run_gate(pair, before):
        trained.append(pair)
        return _gate_row(START, START, "g-ref")

    chosen, verdicts, _, base = gate([_cand("fp32", "int8", "c1"), _cand("bf16", "bf16", "c2"),
                                      _cand("fp32", "fp32", "c3")], run_gate, 4, log=lambda m: None)
    assert chosen["trial_id"] == "c3" and not base["learned"] and trained == [REFERENCE]  # no candidate trained
    assert [v["verdict"] for v in verdicts.values()] == ["inconclusive", "inconclusive", "fallback"]
    assert "fallback" in verdicts[REFERENCE]["text"] and "did not measurably learn" in verdicts[REFERENCE]["text"]
    # another build of the preset is not the same start: inconclusive, whatever its accuracy
    chosen, verdicts, _, _ = gate([_cand("fp32", "int8", "c1")],
                                  lambda p, b: _gate_row(START, LEARNED, "r") if p == REFERENCE else
                                  _gate_row(None, LEARNED, "x", key="other"), 2, log=lambda m: None)
    assert chosen is None and verdicts[("fp32", "int8")]["verdict"] == "inconclusive"


def test_tune_options_refuse_too_few_steps_for_the_rank_test():
    assert TuneOptions(quick=True).measured_steps == 5 and TuneOptions().measured_steps == 6
    with pytest.raises(ConfigError, match="measured_steps must be at least 4"):
        TuneOptions(measured_steps=3)
    with pytest.raises(ConfigError, match="not a multiple of num_generations"):
        TuneOptions(gate_batch_size=60)


def _layout_speed(speeds: dict, measured: list):
    """A fake measure: samples/s by (processes, threads); records every point it is asked for."""
    def measure(p):
        measured.append((p.get("processes", 1), p["threads"]))
        v = speeds[measured[-1]]
        return _row([v * f for f in (0.98, 0.99, 1.0, 1.01, 1.02)], 1000 * measured[-1][0], str(len(measured)))
    return measure


def test_processes_axis_is_explored_within_the_usable_cpus():
    from cpugrpo.runs.recommend import _axis_reason
    from cpugrpo.runs.tune import AXES_ORDER

    axes, _ = search_space(_Profile(["avx2"], 2), quick=True)
    assert axes["processes"] == [1, 2] and axes["threads"] == [1, 2]
    assert AXES_ORDER.index("threads") < AXES_ORDER.index("processes") < AXES_ORDER.index("rollout_precision")
    measured = []
    start = {"threads": 2, "processes": 1, "rollout_precision": "fp32"}
    best, row, record = coordinate_descent(start, {"threads": [1, 2], "processes": [1, 2]},
                                           _layout_speed({(1, 1): 30.0, (1, 2): 50.0, (2, 1): 70.0}, measured),
                                           log=lambda m: None, cpus=2)
    assert set(measured) == {(1, 1), (1, 2), (2, 1)}  # 2 x 2 is never tried on 2 CPUs
    assert best == {**start, "processes": 2, "threads": 1}
    rec = next(r for r in record if r["axis"] == "processes")
    assert [t["layout"] for t in rec["tried"]] == [[1, 2], [2, 1]] and rec["chosen"] == 2
    reason = _axis_reason(rec, 8)
    assert reason.startswith("processes x threads per process: ")
    assert "1 x 2: 50.0" in reason and "2 x 1: 70.0" in reason


def test_no_point_over_the_usable_cpus_on_a_larger_machine():
    axes, _ = search_space(_Profile(["avx2"], 6), quick=False)
    assert axes["processes"] == [1, 2, 4, 6] == axes["threads"]
    speeds = {(p, t): 10.0 * p * t + p for p in range(1, 7) for t in range(1, 7)}
    for threads_first in (1, 6):  # whatever threads won, the processes sweep stays within 6 CPUs
        measured = []
        best, _, record = coordinate_descent({"threads": threads_first, "processes": 1}, {"processes": [1, 2, 4, 6]},
                                             _layout_speed(speeds, measured), log=lambda m: None, cpus=6)
        assert all(p * t <= 6 for p, t in measured) and {p for p, _ in measured} == {1, 2, 4, 6}
        assert best["processes"] * best["threads"] <= 6
    assert measured == [(1, 6), (1, 6), (2, 3), (4, 1), (6, 1)]  # the start, then the threads give way: 6 // P


def test_processes_multiply_the_memory_estimate():
    from cpugrpo.core.config import TrainConfig
    from cpugrpo.train.memory import estimate_peak_mb, shape_of

    one = estimate_peak_mb(shape_of("tiny"), TrainConfig())["total"]
    runs = []

    def run(spec, machine_id):
        runs.append(spec)
        return {**_row([60.0] * spec.measured_steps, 900, f"t{len(runs)}"), "key": spec.key}

    class Store:
        path = "trials.jsonl"

        def append(self, row):
            pass

    s = Searcher(TuneOptions(), Store(), "m", one * 1.5, run=run)
    assert s.measure({"threads": 1, "processes": 1})["status"] == "ok"
    row = s.measure({"threads": 1, "processes": 2})  # two replicas of the weights: over a budget one fits in
    assert row["status"] == "skipped" and "over the" in row["reason"] and len(runs) == 1


def test_the_tuner_measures_trls_reward_settings_not_tinys_training_recipe():
    """Tune trials build their configs without tiny's recipe (no reference pass, the work every committed trial
    measured); `cpugrpo train` on tiny resolves it."""
    from cpugrpo.core.config import TINY_RECIPE, resolve_config
    from cpugrpo.runs.tune import Searcher, TuneOptions

    cfg = Searcher(TuneOptions(), None, "m", 10_000).config({"threads": 2})
    assert (cfg.model, cfg.beta, cfg.format_reward_weight, cfg.scale_rewards) == ("tiny", 0.0, 0.25, "group")
    trained, _ = resolve_config(None, {"threads": 2})
    assert {k: getattr(trained, k) for k in TINY_RECIPE} == TINY_RECIPE
