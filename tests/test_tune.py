"""The tuner's pure parts: the search space the hardware allows, and the coordinate descent over it."""

from cpugrpo.runs.tune import coordinate_descent, search_space, thread_arms


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
