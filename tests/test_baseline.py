"""The baseline's summary: a ratio per interleaved pair, failed pairs counted and their reasons kept."""

from cpugrpo.core.config import TrainConfig
from cpugrpo.runs.baseline import summarize_baseline


def test_baseline_summary_pairs_and_failures():
    ok = lambda v: {"status": "ok", "trial_id": f"t{v}", "summary": {"samples_per_s": {"median": v}},
                    "outside": {"os_peak_rss_mb": 100.0}}
    rows = {"trl_defaults": [ok(2.0), ok(4.0), {"status": "failed", "trial_id": "x", "reason": "timeout"}],
            "cpugrpo": [ok(5.0), ok(8.0), ok(9.0)]}
    s = summarize_baseline(rows, TrainConfig())
    assert s["ratios"] == [2.5, 2.0] and s["failed_pairs"] == 1 and s["ratio"]["median"] == 2.25
    assert s["failures"] == ["timeout"]
