"""The trial runner: a real (test-sized) model in a real child process, with the measurement cross-checks (the
child's own samples/s against the parent's clock, its peak RSS against the kernel's accounting); its failure paths;
what makes two trials the same measurement (the key)."""

import pytest

from cpugrpo.core.config import ConfigError
from cpugrpo.core.paths import portable
from cpugrpo.core.stats import wilson
from cpugrpo.runs.trial import TrialSpec, run_trial


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
    assert abs(inside - outside) / outside < 0.05, (inside, outside)  # within 5% (1.3% when last measured)
    # peak RSS: the child's own high-water mark vs the kernel's figure for the child, read by the parent (wait4)
    assert row["outside"]["os_peak_rss_mb"] >= s["peak_rss_mb_os"] * 0.99
    assert row["outside"]["os_peak_rss_mb"] <= s["peak_rss_mb_os"] * 1.05  # evaluation after training adds little
    # the held-out evaluation: 9 problems, 3 per difficulty; the totals, the interval and the per-item record agree
    acc = row["accuracy"]
    assert len(acc["per_item"]) == 9 and set(acc["per_item"]) <= {"0", "1"}
    correct = acc["per_item"].count("1")
    assert acc["overall"]["correct"] == correct and acc["overall"]["n"] == 9
    assert acc["overall"]["accuracy"] == correct / 9 and acc["overall"]["ci95"] == list(wilson(correct, 9))
    assert [v["n"] for v in acc["by_difficulty"].values()] == [3, 3, 3]
    assert sum(v["correct"] for v in acc["by_difficulty"].values()) == correct
    assert row["accuracy_by_precision"] == {"fp32": acc}
    # the model is recorded as given (a directory: no home or temp path), with no cache key (not a cached preset)
    assert row["model"] == portable(str(tiny_dir)) and "model_cache_key" not in row


def test_trial_over_its_memory_limit_is_killed_and_recorded(tiny_dir):
    row = run_trial(_spec(tiny_dir, memory_limit_mb=60), "m")
    assert row["status"] == "failed" and row["reason"].startswith("out of memory: RSS")
    assert row["exit_code"] == -9


def test_trial_with_a_bad_model_records_the_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    row = run_trial(TrialSpec(config={"model": str(tmp_path)}), "m")
    assert row["status"] == "failed" and row["reason"] and row["exit_code"] == 1


def test_trial_records_a_crash_and_a_timeout(tmp_path, monkeypatch):
    """The runner's failure paths, with a stand-in child (a python that crashes or hangs): no torch needed."""
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
    a = TrialSpec(config={"model": "tiny", "steps": 5}, tag="x")
    b = TrialSpec(config={"model": "tiny", "steps": 300}, tag="y")
    assert a.key == b.key
    assert TrialSpec(config={"model": "tiny"}, measured_steps=4).key != a.key
    with pytest.raises(ConfigError):
        TrialSpec(config={"model": "tiny", "batch_size": 7})


def test_a_killed_sweep_leaves_no_trial_running(tiny_dir, tmp_path):
    """SIGKILL `cpugrpo sweep` mid-trial: its trial process (and the trial's own group) dies with it, rather than
    running on and competing for the CPUs with the resumed sweep."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    def alive(p):
        try:
            return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def is_trial(p):
        # the sweep's short-lived helpers (git, probes) may already be zombies when their command line is read
        try:
            return "cpugrpo.runs.trial" in " ".join(p.cmdline())
        except psutil.Error:
            return False

    cmd = [sys.executable, "-m", "cpugrpo.cli", "sweep", "--axis", "threads=1", "--model", str(tiny_dir),
           "--steps", "50", "--results-dir", str(tmp_path / "results"), "--json"]
    sweep = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and sweep.poll() is None:
            trials = [c for c in psutil.Process(sweep.pid).children() if is_trial(c)]
            # mid-run (torch imported: a few hundred MiB; 50 steps take about a minute more); the trial's own
            # children (its group guard, see die_with_parent) must go too
            try:
                if trials and trials[0].memory_info().rss > 200 * 2**20:
                    procs = [trials[0], *trials[0].children(recursive=True)]
                    break
            except psutil.Error:  # the trial ended between the listing and the reading
                pass
            time.sleep(0.1)
        assert procs, f"the sweep never started a trial (exit code {sweep.poll()})"
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
        time.sleep(2)
        left = [p.pid for p in procs if alive(p)]
        assert not left, f"trial processes {left} outlived the killed sweep"
    finally:
        sweep.kill()
        sweep.wait()
        for p in procs:
            if alive(p):
                os.kill(p.pid, signal.SIGKILL)


def test_a_stored_spec_without_a_preset_seed_reruns_its_own_build_and_keeps_its_key():
    """Before ``preset_seed`` the seed chose the build: an old seed-1 spec trained build 1, so it still does, and a
    new seed-1 spec on build 0 is another measurement (another key)."""
    from cpugrpo.runs.trial import TrialSpec

    old = TrialSpec(config={"model": "tiny", "seed": 1, "steps": 3}, measured_steps=2)
    assert old.train_config().preset_seed == 1
    same = TrialSpec(config={"model": "tiny", "seed": 1, "preset_seed": 1, "steps": 3}, measured_steps=2)
    new = TrialSpec(config={"model": "tiny", "seed": 1, "preset_seed": 0, "steps": 3}, measured_steps=2)
    assert old.key == same.key != new.key
    zero = TrialSpec(config={"model": "tiny", "seed": 0, "steps": 3}, measured_steps=2)
    assert zero.key == TrialSpec(config={"model": "tiny", "seed": 0, "preset_seed": 0, "steps": 3},
                                 measured_steps=2).key
