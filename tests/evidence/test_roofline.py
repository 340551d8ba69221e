"""The committed evidence stays inside its physical bounds: for every machine with probes and trials that recorded
executed work, every configuration's MFU is at most 1 and no decode rate beats its bandwidth bound."""

import json
from pathlib import Path

from cpugrpo.report.results import load_trials
from cpugrpo.report.roofline import check, llc_bytes, roofline_rows

ROOT = Path(__file__).resolve().parents[2]


def test_no_committed_row_breaks_a_physical_bound():
    checked = 0
    for prof in sorted((ROOT / "profiles").iterdir()):
        trials = ROOT / "results" / prof.name / "trials.jsonl"
        if not (prof / "probes.json").exists() or not trials.exists():
            continue
        probes = json.loads((prof / "probes.json").read_text())
        profile = json.loads((prof / "hardware.json").read_text())
        rows, _ = roofline_rows(load_trials(trials), probes, llc_bytes(profile))
        assert not check(rows), check(rows)
        assert all(r["mfu"] is None or 0 < r["mfu"] <= 1 for r in rows)
        checked += len(rows)
    assert checked > 0, "no committed trial recorded executed work: nothing was checked"
