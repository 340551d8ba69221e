"""Grid expansion, the trial store, sweep specs, and the trial runner's failure capture (fast: no training)."""


import pytest

from cpugrpo.core.config import ConfigError
from cpugrpo.runs.sweep import SweepSpec, expand_grid, parse_axes
from cpugrpo.core.store import TrialStore


def test_grid_expands_product_and_skips_invalid_points_with_reasons():
    ok, skipped = expand_grid({"num_generations": 4}, {"prompts_per_step": [2, 4], "rollout_precision": ["fp32", "int8"],
                                                       "threads": [1, 3]}, max_threads=2)
    assert [(c.batch_size, c.rollout_precision, c.threads) for c in ok] == [
        (8, "fp32", 1), (8, "int8", 1), (16, "fp32", 1), (16, "int8", 1)]
    assert len(skipped) == 4 and all("threads 3 exceeds" in r for _, r in skipped)


def test_grid_reports_config_errors_and_duplicates():
    ok, skipped = expand_grid({}, {"batch_size": [64, 60, 64]})
    assert [c.batch_size for c in ok] == [64]
    reasons = [r for _, r in skipped]
    assert "not divisible by num_generations 8: use 56 or 64" in reasons[0]
    assert reasons[1] == "duplicate of an earlier point"


def test_parse_axes_rejects_unknown_names_and_bad_syntax():
    assert parse_axes(["gradient-checkpointing=on,off"]) == {"gradient_checkpointing": [True, False]}
    with pytest.raises(ConfigError, match="unknown axis 'thread'"):
        parse_axes(["thread=1,2"])
    with pytest.raises(ConfigError, match="is not name=v1,v2"):
        parse_axes(["threads"])


def test_sweep_spec_from_toml(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[sweep]\nmeasured_steps = 2\n[base]\nmodel = "tiny"\n[axes]\nthreads = [1, 2]\n')
    s = SweepSpec.from_toml(f)
    assert s.measured_steps == 2 and s.axes == {"threads": [1, 2]} and s.base == {"model": "tiny"}
    f.write_text('[axes]\nthreads = 2\n')
    with pytest.raises(ConfigError, match="must be a non-empty list"):
        SweepSpec.from_toml(f)
    f.write_text('[sweeps]\n')
    with pytest.raises(ConfigError, match="unknown table"):
        SweepSpec.from_toml(f)


def test_store_appends_whole_rows_and_survives_a_torn_line(tmp_path):
    store = TrialStore(tmp_path / "m" / "trials.jsonl")
    store.append({"key": "a", "trial_id": "a-1", "status": "ok"})
    with open(store.path, "a") as fh:  # a crash mid-write leaves a torn line
        fh.write('{"key": "b", "trial_')
    store.append({"key": "c", "trial_id": "c-1", "status": "failed", "reason": "timeout"})
    rows, problems = store.rows()
    assert [r["key"] for r in rows] == ["a", "c"]
    assert len(problems) == 1 and "trials.jsonl:2" in problems[0]
    assert store.done_keys() == {"a", "c"}


def test_trial_records_a_crash_and_a_timeout(tmp_path, monkeypatch):
    """The runner's failure paths, with a stand-in child (a python that crashes or hangs): no torch needed."""
    from cpugrpo.runs.trial import TrialSpec, run_trial

    crash = tmp_path / "crash.sh"
    crash.write_text("#!/bin/sh\necho 'RuntimeError: boom' >&2\nexit 7\n")
    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\nsleep 30\n")
    kill = tmp_path / "kill.sh"
    kill.write_text("#!/bin/sh\nkill -9 $$\n")
    for f in (crash, hang, kill):
        f.chmod(0o755)
    spec = TrialSpec(config={"model": "tiny"}, timeout_s=1.0)
    r = run_trial(spec, "m", python=str(crash))
    assert r["status"] == "failed" and r["exit_code"] == 7 and "boom" in r["reason"]
    r = run_trial(spec, "m", python=str(hang))
    assert r["status"] == "failed" and r["reason"].startswith("timeout") and r["outside"]["wall_s"] < 10
    r = run_trial(spec, "m", python=str(kill))
    assert r["status"] == "failed" and "SIGKILL" in r["reason"] and "out-of-memory" in r["reason"]


def test_trial_key_ignores_tag_and_steps_field():
    from cpugrpo.runs.trial import TrialSpec

    a = TrialSpec(config={"model": "tiny", "steps": 5}, tag="x")
    b = TrialSpec(config={"model": "tiny", "steps": 300}, tag="y")
    assert a.key == b.key
    assert TrialSpec(config={"model": "tiny"}, measured_steps=4).key != a.key
    with pytest.raises(ConfigError):
        TrialSpec(config={"model": "tiny", "batch_size": 7})
