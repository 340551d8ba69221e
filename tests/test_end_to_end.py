"""The real thing through the CLI: the embedded tiny preset (built and cached on first use, ~5 min on 2 cores),
`cpugrpo train --steps 3 --json`, then `cpugrpo eval` on the run directory reproducing the post-training accuracy."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_train_three_steps_then_eval_reproduces(tmp_path):
    run_dir = tmp_path / "run"
    p = subprocess.run([sys.executable, "-m", "cpugrpo.cli", "train", "--steps", "3", "--eval-n", "60", "--json",
                        "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=1500)
    assert p.returncode == 0, p.stderr[-2000:]
    m = json.loads(p.stdout)
    s = m["summary"]
    assert s["measured_steps"] == 2 and len(s["warmup_steps"]) == 1
    for key in ("samples_per_s", "tokens_per_s", "rollout_s", "scoring_s", "update_s", "peak_rss_mb"):
        assert s[key]["median"] > 0, key
    assert s["peak_rss_mb_os"] >= s["peak_rss_mb"]["median"] * 0.9
    before = m["accuracy_before"]["overall"]["accuracy"]
    assert 0.05 < before < 0.9  # the warm start leaves room both ways
    e = subprocess.run([sys.executable, "-m", "cpugrpo.cli", "eval", "--model", str(run_dir), "--n", "60", "--json"],
                       capture_output=True, text=True, timeout=600)
    assert e.returncode == 0, e.stderr[-2000:]
    assert json.loads(e.stdout)["overall"]["correct"] == m["accuracy_after"]["overall"]["correct"]
