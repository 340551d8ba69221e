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
    assert "Xeon &lt;b&gt;bold&lt;/b&gt;" in page and page.count("data:image/png;base64,") == 8  # 7 + predicted
    md = (out / "report.md").read_text()
    # configurations aggregate their speed trials: the newest trial id labels the row; quality-gate trials (t5 is
    # the int8 gate run of t2's configuration) train another budget and stay out of the speed rows
    assert "![pareto](pareto.png)" in md and "| t3 |" in md and "| t2 |" in md and "failed" in md
    assert "| t5 |" not in md and "| t6 |" not in md


def test_report_with_partial_data_says_what_is_missing(tmp_path):
    make_machine(tmp_path, "m2", [trial_row(0), trial_row(1, status="failed")], probes=False)
    path = write_report("m2", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")
    md = (Path(path).parent / "report.md").read_text()
    assert "no probes.json" in md and "no tune.json" in md
    with pytest.raises(ReportError, match="no profile for nope"):
        write_report("nope", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")


def _baseline_side(i, outside, inside):
    row = trial_row(i, sps=inside, model="small")
    row["outside"]["samples_per_s"] = outside
    row["summary"]["total_samples_per_s"] = inside
    return row


def test_report_shows_each_baseline_run_old_and_new_format(tmp_path):
    """A run with both TRL peers leads with the CPU-settings ratio on the outside clock (pairs, min..max, the inside
    clock beside); a stored run from before the second peer is shown as a TRL-defaults-only run on its own clock."""
    import json

    from cpugrpo.core.config import TrainConfig
    from cpugrpo.runs.baseline import record, summarize_baseline

    make_machine(tmp_path, "m3", [trial_row(0)])
    cfg = TrainConfig(model="small", batch_size=64, rollout_precision="int8")
    rows = {"cpugrpo": [_baseline_side(2, 9.0, 12.0), _baseline_side(5, 10.0, 12.0)],
            "trl-defaults": [_baseline_side(1, 3.0, 3.0), _baseline_side(4, 4.0, 4.0)],
            "trl-cpu": [_baseline_side(3, 4.5, 4.0), _baseline_side(6, 4.0, 4.0)]}
    summary = summarize_baseline(rows, cfg)
    path = record(summary, "m3", "profiles/m3/recommended-small.toml", tmp_path / "results")
    old = {"config": {**cfg.to_dict(), "shared_prefix": False, "threads": 2}, "pairs": 2, "failed_pairs": 0,
           "trl_defaults_samples_per_s": {"median": 3.5, "min": 3.0, "max": 4.0, "n": 2},
           "cpugrpo_samples_per_s": {"median": 6.0, "min": 5.0, "max": 7.0, "n": 2},
           "ratio": {"median": 1.75, "min": 1.5, "max": 2.0, "n": 2}, "ratios": [2.0, 1.5], "commit": "0ld",
           "started_at": 1795200000.0, "machine_id": "m3", "config_file": None}
    with open(path, "a") as fh:
        fh.write(json.dumps(old) + "\n" + '{"torn": ')  # a run killed mid-write: reported, not fatal
    write_report("m3", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")
    md = (tmp_path / "reports" / "m3" / "report.md").read_text()
    assert "## Against TRL's GRPOTrainer" in md
    header = [ln for ln in md.splitlines() if ln.startswith("| when (UTC) | model | completions/step | run |")][0]
    assert header.index("vs TRL, CPU settings") < header.index("vs TRL defaults")  # the CPU-settings peer leads
    assert ("| small | 64 | 2 pairs of 3 sides, rotating order | all threads, fp32 update, int8 rollout, shared "
            "prefix on | 9.50 (9.00..10.00) | 2.25x (2 pairs, 2.00..2.50) outside clock; 3.00x inside | 2.75x (2 "
            "pairs, 2.50..3.00) outside clock; 3.50x inside | 4.25 (4.00..4.50) / 3.50 (3.00..4.00) | abc |") in md
    assert ("| small | 64 | TRL-defaults-only run (A B A B; ratio of the child's per-step medians) | 2 threads, fp32 "
            "update, int8 rollout, shared prefix off | 6.00 (5.00..7.00) | not run | 1.75x (2 pairs, 1.50..2.00) "
            "inside clock | not run / 3.50 (3.00..4.00) | 0ld |") in md
    assert md.index("| 0ld |") < md.index("| abc |")  # oldest first
    assert "baselines.jsonl:3: not a complete JSON row" in md
    page = (tmp_path / "reports" / "m3" / "index.html").read_text()
    assert "<h2>Against TRL&#x27;s GRPOTrainer</h2>" in page and "TRL-defaults-only run" in page
    assert "2.25x (2 pairs, 2.00..2.50) outside clock; 3.00x inside" in page


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


def test_a_figure_that_cannot_be_drawn_is_listed_as_missing(tmp_path, monkeypatch):
    """A figure maker that fails on unforeseen data leaves a placeholder and a line in the report's missing list."""
    from cpugrpo.report import plots

    def boom(df):
        raise ValueError("unforeseen")

    monkeypatch.setattr(plots, "phases", boom)
    make_machine(tmp_path, "m6", [trial_row(0), trial_row(1, threads=1, sps=27.0)])
    path = write_report("m6", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")
    md = (Path(path).parent / "report.md").read_text()
    assert "- Phase breakdown figure not drawn: could not plot these data (ValueError: unforeseen)" in md
    assert "Phase breakdown figure not drawn" in Path(path).read_text()
