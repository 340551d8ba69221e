"""Every committed trial row's key is the key its own spec gives today: the key rule (core/config.py key_dict) kept
every stored row addressable across the knobs added since, so `--resume` and the report's grouping still find them."""

import json
from pathlib import Path

from cpugrpo.runs.trial import TrialSpec

ROOT = Path(__file__).resolve().parents[2]


def test_every_committed_row_keeps_its_key():
    rows = [json.loads(line) for f in sorted(ROOT.glob("results/*/trials.jsonl"))
            for line in f.read_text().splitlines() if line.strip()]
    with_spec = [r for r in rows if "spec" in r and r.get("status") != "skipped"]
    assert len(with_spec) > 200
    wrong = [r["trial_id"] for r in with_spec if TrialSpec(**r["spec"]).key != r["key"]]
    assert not wrong, f"{len(wrong)} rows whose key changed, e.g. {wrong[:3]}"
