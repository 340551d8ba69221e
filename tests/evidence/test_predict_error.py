"""The committed performance-model fits (profiles/<id>/predict-fit.json): the held-out errors meet the issue's
targets, docs/DESIGN.md states the numbers the fits hold, and the committed parameters still reproduce the stored
predictions with today's model code (a change to runs/predict.py needs `cpugrpo predict --fit` and new numbers)."""

import json
from pathlib import Path

import pytest

from cpugrpo.runs.predict_fit import errors, samples

ROOT = Path(__file__).resolve().parents[2]
FITS = sorted((ROOT / "profiles").glob("*/predict-fit.json"))


def _fits():
    return {p.parent.name: json.loads(p.read_text()) for p in FITS}


def test_there_is_a_fit_and_every_fit_holds_the_same_validation():
    fits = _fits()
    assert fits, "no predict-fit.json committed: run `cpugrpo predict --fit`"
    validations = [json.dumps(f["validation"], sort_keys=True) for f in fits.values()]
    assert len(set(validations)) == 1, "fits from different runs of `cpugrpo predict --fit`: refit them together"


def test_held_out_errors_meet_the_targets():
    v = next(iter(_fits().values()))["validation"]
    h = v["held_out"]
    assert h["n"] >= 50
    assert h["step"] <= 0.20, f"held-out step-time median |error| {h['step']:.1%} > 20%"
    assert h["peak_rss"] <= 0.10, f"held-out peak-RSS median |error| {h['peak_rss']:.1%} > 10%"
    assert len(v["worst_held_out"]) == 3


def test_design_states_the_committed_numbers():
    v = next(iter(_fits().values()))["validation"]
    h = v["held_out"]
    design = " ".join((ROOT / "docs" / "DESIGN.md").read_text().split())  # line breaks are spaces
    for number in (h["step"], h["peak_rss"], h["step_max_length"]):
        assert f"{number:.1%}" in design, f"docs/DESIGN.md does not state {number:.1%}"
    for model, x in h["by_model"].items():
        assert f"{model} {x['step']:.1%}" in design, f"docs/DESIGN.md lacks '{model} {x['step']:.1%}'"
    assert f"{h['n']} held-out trials" in design


def test_committed_parameters_reproduce_the_stored_predictions():
    rows = {s["trial_id"]: s for s in samples(ROOT / "results", ROOT / "profiles")}
    checked = 0
    for mid, f in _fits().items():
        stored = [t for t in f["trials"] if t["trial_id"] in rows]
        for s in stored:
            rows[s["trial_id"]]["held_out"] = s["held_out"]
        again = {e["trial_id"]: e for e in errors([rows[t["trial_id"]] for t in stored], f["params"])}
        for t in stored:
            assert again[t["trial_id"]]["predicted_step_s"] == pytest.approx(t["predicted_step_s"], rel=1e-3, abs=1e-4)
            assert again[t["trial_id"]]["predicted_rss_mb"] == pytest.approx(t["predicted_rss_mb"], rel=1e-3)
        checked += len(stored)
    assert checked > 100
