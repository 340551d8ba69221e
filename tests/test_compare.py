"""Cross-machine comparison: ratios computed from exactly the numbers in its table."""

from pathlib import Path

import pytest

from cpugrpo.report.compare import write_compare

from .report_data import make_machine, trial_row


def test_compare_ratios_match_the_numbers(tmp_path):
    make_machine(tmp_path, "big", [trial_row(0, sps=50.0), trial_row(1, rollout="int8", sps=60.0)])
    lesser = [trial_row(0, sps=20.0, machine="lesser"), trial_row(1, rollout="int8", sps=45.0, machine="lesser"),
              trial_row(2, prompts=8, sps=30.0, machine="lesser")]
    make_machine(tmp_path, "lesser", lesser, emulated={"isa": "avx2"})
    r = write_compare(["big", "lesser"], profiles_dir=tmp_path / "profiles", results_dir=tmp_path / "results",
                      out_root=tmp_path / "cmp")
    assert r["configurations"] == 2  # the prompts=8 point exists on one machine only: not comparable
    ratios = sorted(row["lesser / big"] for row in r["table"])
    assert ratios == pytest.approx([0.4, 0.75])
    page = Path(r["report"]).read_text()
    assert "emulated" in page and "0.400" in page


def test_a_machine_without_readable_trials_is_listed_as_missing(tmp_path):
    make_machine(tmp_path, "big", [trial_row(0, sps=50.0)])
    make_machine(tmp_path, "gone", [trial_row(0, sps=20.0, machine="gone")])
    (tmp_path / "results" / "gone" / "trials.jsonl").unlink()
    make_machine(tmp_path, "torn", [trial_row(0, sps=30.0, machine="torn")])
    with open(tmp_path / "results" / "torn" / "trials.jsonl", "a") as fh:
        fh.write('{"trial_id": ')
    r = write_compare(["big", "gone", "torn"], profiles_dir=tmp_path / "profiles", results_dir=tmp_path / "results",
                      out_root=tmp_path / "cmp")
    md = (Path(r["report"]).parent / "report.md").read_text()
    assert "## Missing data" in md and "- gone: trial results" in md and "do not exist" in md
    assert "- torn: Warning: 1 unreadable line" in md and r["configurations"] == 1
    assert "<h2>Missing data</h2>" in Path(r["report"]).read_text()
