"""`cpugrpo baseline`: three sides in rotating order, per-pair ratios on the parent's outside clock with the child's
inside clock beside them, failed pairs counted; the real thing once on a test-sized model (slow)."""

import math

import pytest

from cpugrpo.core.config import TrainConfig
from cpugrpo.runs.baseline import SIDES, BaselineOptions, default_pairs, pair_order, ratio_text, summarize_baseline


def ok(outside, inside, tid="t", rss=100.0, tokens=48):
    steps = [{"completion_tokens": 0, "completions": 32}] + [{"completion_tokens": tokens * 32, "completions": 32}] * 3
    return {"status": "ok", "trial_id": tid, "spec": {"warmup_steps": 1}, "steps": steps,
            "summary": {"total_samples_per_s": inside, "samples_per_s": {"median": inside * 3}},
            "outside": {"samples_per_s": outside, "os_peak_rss_mb": rss}, "environment": {"commit": "abc"}}


def failed(reason="timeout", tid="x"):
    return {"status": "failed", "trial_id": tid, "reason": reason, "outside": {}}


def test_ratios_are_on_the_outside_clock_with_the_inside_clock_beside():
    rows = {"cpugrpo": [ok(10.0, 11.0), ok(12.0, 12.0), ok(9.0, 10.0)],
            "trl-defaults": [ok(2.0, 2.2), ok(3.0, 3.0), ok(3.0, 2.5)],
            "trl-cpu": [ok(5.0, 5.5), ok(4.0, 4.0), ok(4.5, 5.0, rss=300.0, tokens=40)]}
    s = summarize_baseline(rows, TrainConfig())
    cpu, dflt = s["peers"]["trl-cpu"], s["peers"]["trl-defaults"]
    assert cpu["ratios"] == [2.0, 3.0, 2.0] and cpu["ratio"] == 2.0 and cpu["range"] == [2.0, 3.0]
    assert cpu["ratios_inside"] == [2.0, 3.0, 2.0] and cpu["ratio_inside"] == 2.0
    assert dflt["ratios"] == [5.0, 4.0, 3.0] and dflt["ratio"] == 4.0 and dflt["ratio_inside"] == 4.0
    assert dflt["ratios_inside"] == [5.0, 4.0, 4.0]  # the child's own clock, kept apart from the headline
    assert cpu["pairs"] == 3 and cpu["failed_pairs"] == 0 and cpu["peak_rss_mb"] == 300.0
    assert cpu["samples_per_s"]["median"] == 4.5 and s["cpugrpo"]["samples_per_s"]["median"] == 10.0
    assert s["cpugrpo"]["samples_per_s_inside"]["median"] == 11.0
    assert s["cpugrpo"]["mean_completion_tokens"] == 48.0  # the warm-up step left out
    assert cpu["mean_completion_tokens"] == pytest.approx((48 * 6 + 40 * 3) / 9)
    assert s["headline"] == "trl-cpu" and s["commit"] == "abc" and s["pairs"] == 3
    assert s["order"] == [list(pair_order(i)) for i in range(3)]


def test_a_failed_side_drops_its_pair_for_that_peer_only_and_is_counted():
    rows = {"cpugrpo": [ok(10.0, 10.0), ok(12.0, 12.0), failed("crashed", "c3")],
            "trl-defaults": [ok(2.0, 2.0), failed("out of memory", "d2"), ok(3.0, 3.0)],
            "trl-cpu": [ok(5.0, 5.0), ok(4.0, 4.0), ok(4.0, 4.0)]}
    s = summarize_baseline(rows, TrainConfig())
    dflt, cpu = s["peers"]["trl-defaults"], s["peers"]["trl-cpu"]
    assert dflt["pairs"] == 1 and dflt["failed_pairs"] == 2 and dflt["ratios"] == [5.0]
    assert cpu["pairs"] == 2 and cpu["failed_pairs"] == 1 and cpu["ratios"] == [2.0, 3.0] and cpu["ratio"] == 2.5
    assert sorted(s["failures"]) == ["cpugrpo: crashed", "trl-defaults: out of memory"]
    assert ratio_text(dflt) == "5.00x (1 pairs, 5.00..5.00; 2 failed) outside clock; 5.00x inside"


def test_no_outside_stamps_means_no_ratio_even_with_an_inside_figure():
    """A trial whose step stamps never reached the parent has no outside figure: its pair is not complete."""
    no_stamps = ok(10.0, 10.0)
    no_stamps["outside"] = {"os_peak_rss_mb": 100.0}
    rows = {"cpugrpo": [no_stamps], "trl-defaults": [ok(2.0, 2.0)], "trl-cpu": [ok(4.0, 4.0)]}
    s = summarize_baseline(rows, TrainConfig())
    assert all(p["ratio"] is None and p["pairs"] == 0 and p["failed_pairs"] == 1 for p in s["peers"].values())
    assert ratio_text(s["peers"]["trl-cpu"]) == "no complete pair (1 failed)"


def test_pairs_rotate_so_every_side_takes_every_position():
    orders = [pair_order(i) for i in range(len(SIDES))]
    assert set(SIDES) == {"cpugrpo", "trl-defaults", "trl-cpu"}
    assert orders[0] == SIDES and orders[1] == SIDES[1:] + SIDES[:1] and orders[2] == SIDES[2:] + SIDES[:2]
    for pos in range(len(SIDES)):
        assert {o[pos] for o in orders} == set(SIDES)
    assert pair_order(len(SIDES)) == SIDES


def test_default_pairs_follow_the_parameter_count():
    from cpugrpo.train.memory import shape_of

    large = shape_of("qwen2-0.5b").n_params
    assert default_pairs(shape_of("tiny").n_params, large) == 5
    assert default_pairs(shape_of("small").n_params, large) == 5
    assert default_pairs(large, large) == 3 and default_pairs(large * 3, large) == 3
    assert BaselineOptions().pairs_for("qwen2-0.5b") == 3 and BaselineOptions().pairs_for("tiny") == 5
    assert BaselineOptions(pairs=2).pairs_for("qwen2-0.5b") == 2


@pytest.mark.slow
def test_baseline_runs_all_three_sides_and_records_what_trl_ran(tiny_dir, tmp_path):
    """cpugrpo, TRL defaults and TRL with CPU settings on a test-sized model, one pair of one measured step each."""
    from cpugrpo.runs.baseline import record, run_baseline

    cfg = TrainConfig(model=str(tiny_dir), batch_size=8, num_generations=4, max_completion_length=8, threads=1)
    s = run_baseline(cfg, pairs=1, measured_steps=1, progress=False, timeout_s=600)
    assert {side: len(ids) for side, ids in s["trial_ids"].items()} == {side: 1 for side in SIDES}
    assert not s["failures"], s["failures"]
    for peer, bf16 in (("trl-defaults", True), ("trl-cpu", False)):
        p = s["peers"][peer]
        a = p["trl_args"]
        assert a["bf16"] is bf16 and a["gradient_checkpointing"] is bf16, a
        assert a["model_gradient_checkpointing"] is bf16 and a["mixed_precision"] == ("bf16" if bf16 else "no")
        assert a["rollout_dtype"] == ("bfloat16" if bf16 else "float32")
        assert (a["per_device_train_batch_size"], a["num_generations"], a["max_completion_length"],
                a["torch_threads"], a["max_steps"]) == (8, 4, 8, 1, 2)
        c = p["config"]  # the row's config is what ran, not cpugrpo's settings
        assert c["update_precision"] == ("bf16-autocast" if bf16 else "fp32")
        assert c["gradient_checkpointing"] is bf16 and c["learning_rate"] == a["learning_rate"]
        assert c["shared_prefix"] is False and c["threads"] == 1
        assert p["pairs"] == 1 and math.isfinite(p["ratio"]) and p["ratio"] > 0 and math.isfinite(p["ratio_inside"])
        assert 0 < p["mean_completion_tokens"] <= 8
    assert 0 < s["cpugrpo"]["mean_completion_tokens"] <= 8
    path = record(s, "m", None, tmp_path)
    assert path.read_text().count("\n") == 1


def test_an_untuned_machine_compares_the_defaults_and_says_so(tmp_path, monkeypatch, capsys):
    """No recommendation for this machine: cpugrpo's defaults are compared (and said); a missing --config is an
    error naming the file."""
    import pytest

    from cpugrpo.core.errors import ConfigError
    from cpugrpo.runs import baseline as b

    seen = {}

    def fake_run(cfg, **kw):
        seen["cfg"] = cfg
        return {"peers": {}, "pairs": kw["pairs"]}

    monkeypatch.setattr(b, "run_baseline", fake_run)
    out = b.baseline(b.BaselineOptions(model="tiny", pairs=1, steps=1, profiles_dir=str(tmp_path / "p"),
                                       results_dir=str(tmp_path / "r")), progress=False)
    assert out["config_file"] is None and seen["cfg"].update_precision == "fp32" and seen["cfg"].model == "tiny"
    assert "comparing cpugrpo's defaults" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="does not exist"):
        b.baseline(b.BaselineOptions(config=str(tmp_path / "nope.toml"), pairs=1, steps=1), progress=False)
