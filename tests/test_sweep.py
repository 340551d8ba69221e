"""Grid expansion, sweep specs and resuming a sweep (fast: no training)."""

import pytest

from cpugrpo.core.config import ConfigError
from cpugrpo.core.store import TrialStore
from cpugrpo.runs.sweep import SweepSpec, expand_grid, parse_axes


def test_grid_expands_product_and_skips_invalid_points_with_reasons():
    axes = {"prompts_per_step": [2, 4], "rollout_precision": ["fp32", "int8"], "threads": [1, 3]}
    ok, skipped = expand_grid({"num_generations": 4}, axes, max_threads=2)
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


def test_resume_reports_a_torn_line_on_stderr(tmp_path, capsys):
    """A torn line in the store is said on resume (stderr, stdout stays clean for --json), not silently ignored."""
    from cpugrpo.runs.sweep import run_trials
    from cpugrpo.runs.trial import TrialSpec

    spec = TrialSpec(config={"model": "tiny"})
    store = TrialStore(tmp_path / "m" / "trials.jsonl")
    store.append({"key": spec.key, "trial_id": f"{spec.key}-1", "status": "ok"})
    with open(store.path, "a") as fh:
        fh.write('{"key": "b", "trial_')  # a sweep killed mid-write
    rows = run_trials([spec], store, "m", resume=True, progress=False)  # every trial done: nothing runs
    out, err = capsys.readouterr()
    assert rows == [] and out == ""
    assert "resume: " in err and "trials.jsonl:2: not a complete JSON row (torn write?)" in err
    assert "1 of 1 trials already in" in err


def test_a_sweep_spec_may_run_a_trl_peer_under_a_memory_limit(tmp_path):
    import pytest

    from cpugrpo.core.config import TrainConfig
    from cpugrpo.core.errors import ConfigError
    from cpugrpo.runs.sweep import SweepSpec, specs_for

    f = tmp_path / "s.toml"
    f.write_text('[sweep]\nmode = "trl-defaults"\nmemory_limit_mb = 20480\n[axes]\nseed = [0]\n')
    spec = SweepSpec.from_toml(f)
    (t,) = specs_for([TrainConfig()], spec)
    assert (t.mode, t.memory_limit_mb) == ("trl-defaults", 20480)
    f.write_text('[sweep]\nmode = "vllm"\n[axes]\nseed = [0]\n')
    with pytest.raises(ConfigError, match="unknown mode 'vllm'"):
        SweepSpec.from_toml(f)
