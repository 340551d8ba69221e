"""The trial runner on a real (test-sized) model in a real child process, and the measurement cross-checks:
the child's own samples/s against the parent's clock, and its peak RSS against the kernel's accounting."""


from cpugrpo.trial import TrialSpec, run_trial


def _spec(tiny_dir, **kw):
    cfg = {"model": str(tiny_dir), "batch_size": 16, "num_generations": 4, "max_completion_length": 12, "threads": 1,
           "eval_n": 9}
    return TrialSpec(config=cfg, **kw)


def test_trial_measures_in_a_child_and_outside_numbers_agree(tiny_dir):
    row = run_trial(_spec(tiny_dir, measured_steps=3, evaluate=True), "test-machine")
    assert row["status"] == "ok", row.get("reason")
    s = row["summary"]
    assert s["measured_steps"] == 3 and len(s["warmup_steps"]) == 1
    assert row["effective"]["threads"] == 1 and row["effective"]["flags"] == []
    assert row["environment"]["versions"]["trl"] and row["machine_id"] == "test-machine"
    # samples/s: the child's (sum over measured steps) vs the parent's timestamps of the same step ends
    inside, outside = s["total_samples_per_s"], row["outside"]["samples_per_s"]
    assert abs(inside - outside) / outside < 0.25, (inside, outside)
    # peak RSS: the child's own high-water mark vs the kernel's figure for the child, read by the parent (wait4)
    assert row["outside"]["os_peak_rss_mb"] >= s["peak_rss_mb_os"] * 0.99
    assert row["outside"]["os_peak_rss_mb"] <= s["peak_rss_mb_os"] * 1.25  # evaluation after training adds little
    assert 0.0 <= row["accuracy"]["overall"]["accuracy"] <= 1.0 and len(row["accuracy"]["per_item"]) == 9


def test_trial_over_its_memory_limit_is_killed_and_recorded(tiny_dir):
    row = run_trial(_spec(tiny_dir, memory_limit_mb=60), "m")
    assert row["status"] == "failed" and row["reason"].startswith("out of memory: RSS")
    assert row["exit_code"] == -9


def test_trial_with_a_bad_model_records_the_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    row = run_trial(TrialSpec(config={"model": str(tmp_path)}), "m")
    assert row["status"] == "failed" and row["reason"] and row["exit_code"] == 1
