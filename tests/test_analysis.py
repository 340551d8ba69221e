"""Pure analysis and recommendation functions, from tables of inputs and expected outputs."""

import tomllib

from cpugrpo.runs import analysis
from cpugrpo.core.config import load_toml, resolve_config
from cpugrpo.runs.tune import search_space, thread_arms


def test_pareto_front_table():
    cases = [([(1, 1)], [0]), ([(1, 2), (2, 1)], [1]), ([(3, 3), (2, 2), (1, 1)], [0, 1, 2]),
             ([(2, 2), (2, 2)], [0, 1])]
    for points, expected in cases:
        assert analysis.pareto_front(points) == expected


def test_quality_gate_margin_and_paired_interval():
    base = {"overall": {"accuracy": 0.50}, "per_item": "1" * 50 + "0" * 50}
    worse = {"overall": {"accuracy": 0.47}, "per_item": "1" * 47 + "0" * 53}
    close = {"overall": {"accuracy": 0.49}, "per_item": "1" * 49 + "0" * 51}
    g = analysis.quality_gate(worse, base)
    assert not g["passed"] and round(g["difference"], 2) == -0.03 and g["ci95"][0] < -0.03 < g["ci95"][1]
    assert analysis.quality_gate(close, base)["passed"]


def test_scaling_efficiency_hand_computed():
    rows = analysis.scaling([(2, 30.0), (1, 20.0)])
    assert [(r["threads"], r["speedup"], r["efficiency"]) for r in rows] == [(1, 1.0, 1.0), (2, 1.5, 0.75)]


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


def test_recommendation_renders_toml_that_train_accepts(tmp_path):
    from cpugrpo.runs import recommend

    rec = {"train": {"model": "tiny", "threads": 2, "batch_size": 64, "num_generations": 8,
                     "max_completion_length": 48, "update_precision": "fp32", "rollout_precision": "int8",
                     "gradient_checkpointing": False},
           "reasons": {"rollout_precision": 'samples/s fp32: 50.1, int8: 61.0 "quoted"'},
           "evidence": {"machine_id": "m", "mode": "quick", "tuned_at": "now", "samples_per_s": 61.0,
                        "samples_per_s_range": [60.0, 62.0], "peak_rss_mb": 1400.0, "trial_id": "t-1",
                        "pareto_front": ["a", "b"], "commit": None}}
    path = tmp_path / "recommended.toml"
    recommend.write(rec, path)
    doc = tomllib.loads(path.read_text())
    assert doc["reasons"]["rollout_precision"].endswith('"quoted"') and "commit" not in doc["evidence"]
    assert load_toml(path) == rec["train"]
    cfg, origin = resolve_config(path, {"steps": 5})
    assert cfg.rollout_precision == "int8" and cfg.steps == 5 and origin["steps"] == "flag"


def test_coordinate_descent_walks_one_axis_at_a_time():
    from cpugrpo.runs.tune import coordinate_descent

    speed = {"threads": {1: 1.0, 2: 2.0}, "rollout_precision": {"fp32": 1.0, "int8": 1.5, "bf16": 0.5},
             "update_precision": {"fp32": 1.0, "bf16": 0.8}, "prompts_per_step": {4: 1.1, 8: 1.0}}
    calls = []

    def measure(p):
        calls.append(dict(p))
        v = 1.0
        for k, table in speed.items():
            v *= table[p[k]]
        return {"status": "ok", "trial_id": str(len(calls)),
                "summary": {"samples_per_s": {"median": v, "min": v, "max": v}}}

    start = {"threads": 2, "rollout_precision": "fp32", "update_precision": "fp32", "gradient_checkpointing": False,
             "prompts_per_step": 8}
    axes = {"threads": [1, 2], "rollout_precision": ["fp32", "int8", "bf16"], "update_precision": ["fp32", "bf16"],
            "prompts_per_step": [4, 8]}
    best, row, record = coordinate_descent(start, axes, measure, log=lambda m: None)
    assert best == {**start, "rollout_precision": "int8", "prompts_per_step": 4}
    assert [r["axis"] for r in record] == ["threads", "rollout_precision", "update_precision", "prompts_per_step"]
    assert len(calls) == 1 + 2 + 3 + 2 + 2  # repeated points are the caller's cache's business


def test_baseline_summary_pairs_and_failures():
    from cpugrpo.runs.baseline import summarize_baseline
    from cpugrpo.core.config import TrainConfig

    ok = lambda v: {"status": "ok", "trial_id": f"t{v}", "summary": {"samples_per_s": {"median": v}},
                    "outside": {"os_peak_rss_mb": 100.0}}
    rows = {"trl_defaults": [ok(2.0), ok(4.0), {"status": "failed", "trial_id": "x", "reason": "timeout"}],
            "cpugrpo": [ok(5.0), ok(8.0), ok(9.0)]}
    s = summarize_baseline(rows, TrainConfig())
    assert s["ratios"] == [2.5, 2.0] and s["failed_pairs"] == 1 and s["ratio"]["median"] == 2.25
    assert s["failures"] == ["timeout"]
