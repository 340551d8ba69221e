"""The committed trial rows (results/*/trials.jsonl): the rows the tuner, the baseline and the reports use."""

import json
from pathlib import Path

import pytest

from cpugrpo.report.results import load_trials
from cpugrpo.train.models import PRESETS

ROOT = Path(__file__).resolve().parents[2]
STORES = sorted(ROOT.glob("results/*/trials.jsonl"))


def _rows():
    return [json.loads(line) for f in STORES for line in f.read_text().splitlines() if line.strip()]


def test_every_committed_trial_agrees_with_the_outside_measurement():
    """Every ok trial has its samples/s within 5% of the parent's clock and its peak RSS within 5% of the kernel's
    wait4 figure. The per-step median can differ more from either (it is a different statistic); the comparison is
    on the same quantity: samples over the measured steps / their wall time."""
    ok = [r for r in _rows() if r.get("status") == "ok" and r["outside"].get("samples_per_s")]
    assert ok, "no committed trials to check"
    for r in ok:
        s, o = r["summary"], r["outside"]
        assert abs(s["total_samples_per_s"] / o["samples_per_s"] - 1) < 0.05, r["trial_id"]
        if r.get("world_size", 1) > 1:  # several ranks: wait4 sees the largest process; the parent polls them all
            ranks = [x["peak_rss_mb"] for x in r["ranks"]]
            assert abs(max(ranks) / o["os_peak_rss_mb"] - 1) < 0.05, r["trial_id"]
            assert s["peak_rss_mb_os"] == pytest.approx(sum(ranks)) and sum(ranks) <= o["polled_peak_rss_mb"]
            continue
        assert abs(s["peak_rss_mb_os"] / o["os_peak_rss_mb"] - 1) < 0.05, r["trial_id"]


def test_committed_rows_name_models_by_preset_and_load():
    """A row's model is a preset name; the tiny preset's rows say which build by its cache key (the row's seed's).
    Every store loads whole (no unreadable line) into the tidy frame the reports are built from."""
    rows = [r for r in _rows() if r.get("status") == "ok"]
    assert rows and {r["model"] for r in rows} <= set(PRESETS)
    for r in rows:
        assert r["model"] == r["config"]["model"], r["trial_id"]
        if r["model"] == "tiny":
            assert r["model_cache_key"].startswith(f"tiny-v1-seed{r['config'].get('seed', 0)}-"), r["trial_id"]
        else:
            assert "model_cache_key" not in r and r["random_weights"], r["trial_id"]
    for store in STORES:
        df = load_trials(store.parent)
        assert df.attrs["problems"] == [], store
        n_rows = sum(1 for line in store.read_text().splitlines() if line.strip())
        assert df.trial_id.nunique() == n_rows, store
        assert set(df.model) <= set(PRESETS), store
