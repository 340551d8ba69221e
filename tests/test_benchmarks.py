"""The asv suite's structure: the default star, skips for impossible or off-star points, results loadable."""

import itertools
import os

import pytest

os.environ["CPUGRPO_BENCH_PRELOAD"] = "0"  # the suite's forkserver preload is not needed to inspect it

from benchmarks import bench_grpo, common  # noqa: E402


def _runs(model_filter=None):
    out = []
    for model, *p in itertools.product(*bench_grpo.GRPOStep.params):
        try:
            common.check_star(common.point(*p), model)
        except NotImplementedError:
            continue
        out.append((model, *p))
    return out


def test_default_star_is_one_knob_at_a_time(monkeypatch):
    monkeypatch.delenv("CPUGRPO_BENCH_FULL", raising=False)
    runs = _runs()
    tiny = [r for r in runs if r[0] == "tiny"]
    n_threads = len(common.thread_params())
    # default + every other value of each knob: threads, prompts (1), update (2), rollout (2), checkpointing (1)
    assert len(tiny) == 1 + (n_threads - 1) + 1 + 2 + 2 + 1
    assert [r[4:] for r in runs if r[0] == "small"] == [("fp32", False), ("int8", False)]


def test_impossible_and_off_star_points_raise_not_implemented(monkeypatch):
    with pytest.raises(NotImplementedError, match="usable CPUs"):
        common.check_star(common.point(common.usable() + 1, 4, "fp32", "fp32", False))
    with pytest.raises(NotImplementedError, match="off the default star"):
        common.check_star(common.point(common.usable(), 8, "bf16", "fp32", False))
    monkeypatch.setenv("CPUGRPO_BENCH_FULL", "1")
    common.check_star(common.point(common.usable(), 8, "bf16", "int8", True), "small")


def test_parameters_come_from_the_knob_registry_and_keep_their_asv_history():
    # asv keys its history by parameter names and values: a change here starts a new history, so it is pinned
    assert bench_grpo.GRPOStep.param_names == ["model", "threads", "prompts_per_step", "update_precision",
                                               "rollout_precision", "gradient_checkpointing"]
    assert list(bench_grpo.GRPOStep.params[2:]) == [[4, 8], ["fp32", "bf16-autocast", "bf16"],
                                                    ["fp32", "bf16", "int8"], [False, True]]
    assert common.default_point() == {"threads": common.usable(), "prompts_per_step": 4, "update_precision": "fp32",
                                      "rollout_precision": "fp32", "gradient_checkpointing": False}
    cfg = common.train_config("tiny", common.default_point(), steps=5)
    assert (cfg.batch_size, cfg.num_generations, cfg.steps, cfg.threads) == (32, 8, 5, common.usable())


def test_processes_axis_is_its_own_tiny_only_star_arm(monkeypatch):
    from benchmarks import bench_processes

    monkeypatch.delenv("CPUGRPO_BENCH_FULL", raising=False)
    cls = bench_processes.GRPOProcesses
    assert "processes" not in bench_grpo.GRPOStep.param_names  # the GRPO benchmarks keep their history
    assert cls.param_names == ["model", "processes"] and list(cls.params) == [common.models(), common.thread_params()]
    runs = []
    for model, processes in itertools.product(*cls.params):
        try:
            common.check_processes(processes, model)
        except NotImplementedError:
            continue
        runs.append((model, processes))
    assert runs == [("tiny", p) for p in common.thread_params()]  # tiny only in the default suite
    for _, processes in runs:  # the centre with its CPUs split among the ranks
        p = common.processes_point(processes)
        assert p["processes"] * p["threads"] <= common.usable()
        assert {k: v for k, v in p.items() if k not in ("processes", "threads")} == {
            k: v for k, v in common.default_point().items() if k != "threads"}
        cfg = common.train_config("tiny", p, steps=4)
        assert (cfg.processes, cfg.threads) == (processes, p["threads"])
    with pytest.raises(NotImplementedError, match="usable CPUs"):
        common.check_processes(common.usable() + 1)
    monkeypatch.setenv("CPUGRPO_BENCH_FULL", "1")
    common.check_processes(1, "small")
