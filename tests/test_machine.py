"""The per-machine report renders from a small results fixture, escapes strings from the data, survives partial
data, and shows each baseline run."""

from pathlib import Path

import pytest

from cpugrpo.report.machine import ReportError, write_report

from .report_data import make_machine, trial_row


def test_report_renders_plots_tables_and_escapes(tmp_path):
    rows = [trial_row(0, threads=1, sps=27.0), trial_row(1), trial_row(2, rollout="int8", sps=55.0, rss=950),
            trial_row(3, prompts=8, sps=52.0, rss=1300), trial_row(4, status="failed"),
            trial_row(5, rollout="int8", tag="tune-gate", accuracy=0.45), trial_row(6, tag="tune-gate", accuracy=0.46)]
    make_machine(tmp_path, "m1", rows)
    path = write_report("m1", tmp_path / "profiles", tmp_path / "results", tmp_path / "no-asv", tmp_path / "reports")
    out = Path(path).parent
    for name in ("thread_scaling", "batch_memory", "pareto", "phases", "roofline", "accuracy", "history"):
        png = (out / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    page = (out / "index.html").read_text()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Xeon &lt;b&gt;bold&lt;/b&gt;" in page and page.count("data:image/png;base64,") == 7
    md = (out / "report.md").read_text()
    # configurations aggregate their trials: the newest trial id labels the row (t5 is the int8 gate run of t2)
    assert "![pareto](pareto.png)" in md and "| t3 |" in md and "| t5 |" in md and "failed" in md


def test_report_with_partial_data_says_what_is_missing(tmp_path):
    make_machine(tmp_path, "m2", [trial_row(0), trial_row(1, status="failed")], probes=False)
    path = write_report("m2", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")
    md = (Path(path).parent / "report.md").read_text()
    assert "no probes.json" in md and "no tune.json" in md
    with pytest.raises(ReportError, match="no profile for nope"):
        write_report("nope", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")


def test_report_shows_each_baseline_run_with_its_pairs(tmp_path):
    from cpugrpo.core.config import TrainConfig
    from cpugrpo.runs.baseline import record, summarize_baseline

    make_machine(tmp_path, "m3", [trial_row(0)])
    cfg = TrainConfig(model="small", batch_size=64, rollout_precision="int8")
    rows = {"trl_defaults": [trial_row(1, sps=3.0, model="small"), trial_row(3, sps=4.0, model="small")],
            "cpugrpo": [trial_row(2, sps=9.0, model="small"), trial_row(4, sps=10.0, model="small")]}
    summary = summarize_baseline(rows, cfg)
    assert summary["ratios"] == [3.0, 2.5] and summary["ratio"]["median"] == 2.75 and summary["commit"] == "abc"
    path = record(summary, "m3", "profiles/m3/recommended-small.toml", tmp_path / "results")
    with open(path, "a") as fh:
        fh.write('{"torn": ')  # a run killed mid-write: reported, not fatal
    write_report("m3", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")
    md = (tmp_path / "reports" / "m3" / "report.md").read_text()
    assert "## Against TRL's GRPOTrainer defaults" in md
    assert ("| small | 64 | all threads, fp32 update, int8 rollout, shared prefix on | 3.50 (3.00..4.00) "
            "| 9.50 (9.00..10.00) | 2.75x (3.00, 2.50) | abc |") in md
    assert "baselines.jsonl:2: not a complete JSON row" in md


def test_a_torn_result_line_is_a_warning_in_the_report_its_return_value_and_the_cli(tmp_path, capsys):
    """A run killed mid-write leaves a torn last line: the report says so at the top (Markdown and HTML), returns it,
    and `cpugrpo report` prints it (stderr; in the object with --json)."""
    import json

    from cpugrpo.cli.main import main

    make_machine(tmp_path, "m4", [trial_row(0), trial_row(1, threads=1, sps=27.0)])
    with open(tmp_path / "results" / "m4" / "trials.jsonl", "a") as fh:
        fh.write('{"trial_id": "t2", "key": ')
    path = write_report("m4", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")
    assert len(path.warnings) == 1 and path.warnings[0].startswith("Warning: 1 unreadable line")
    assert "trials.jsonl:3: not a complete JSON row" in path.warnings[0]
    md = (Path(path).parent / "report.md").read_text()
    assert md.splitlines()[2].startswith("> **Warning: 1 unreadable line")  # right under the title
    page = Path(path).read_text()
    assert page.index("<p class='warn'><b>Warning: 1 unreadable line") < page.index("<h2>Hardware</h2>")

    args = ["report", "--machine", "m4", "--profiles-dir", str(tmp_path / "profiles"), "--results-dir",
            str(tmp_path / "results"), "--asv-dir", str(tmp_path / "none"), "--out-dir", str(tmp_path / "out")]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert "report for m4:" in out and "Warning: 1 unreadable line" in err and "trials.jsonl:3" in err
    assert main(args + ["--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert len(r["warnings"]) == 1 and "trials.jsonl:3" in r["warnings"][0]

    make_machine(tmp_path, "m5", [trial_row(0)])  # a clean store: no warning anywhere
    clean = write_report("m5", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")
    assert clean.warnings == [] and "Warning" not in Path(clean).read_text()
