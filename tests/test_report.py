"""Reports render from a small results fixture, escape strings from the data, and survive partial data."""

import json
from pathlib import Path

import pytest

from cpugrpo.report.machine import ReportError, write_report
from cpugrpo.report.compare import write_compare


def _row(i, threads=2, prompts=4, rollout="fp32", update="fp32", sps=50.0, rss=1000.0, status="ok", machine="m1",
         tag="sweep", accuracy=None, model="tiny"):
    cfg = {"model": model, "threads": threads, "batch_size": prompts * 8, "num_generations": 8,
           "max_completion_length": 48, "update_precision": update, "rollout_precision": rollout,
           "gradient_checkpointing": False, "beta": 0.0, "eval_precision": "fp32"}
    row = {"trial_id": f"t{i}", "key": f"k{i}", "tag": tag, "machine_id": machine, "status": status,
           "started_at": 1795264252 + i, "config": cfg}
    if status != "ok":
        row["reason"] = "<script>alert(1)</script> timeout"
        return row
    m = lambda v: {"median": v, "min": v * 0.95, "max": v * 1.05}
    row.update(summary={"samples_per_s": m(sps), "tokens_per_s": m(sps * 20), "wall_s": m(32 / sps),
                        "rollout_s": m(0.3 * 32 / sps), "scoring_s": m(0.001), "update_s": m(0.7 * 32 / sps),
                        "cpu_util": m(0.98), "phase_share": {"rollout": 0.3, "scoring": 0.0, "update": 0.7}},
               outside={"os_peak_rss_mb": rss}, environment={"commit": "abc"}, random_weights=model != "tiny",
               effective={"threads": threads, "flags": []})
    if accuracy is not None:
        row["accuracy"] = {"overall": {"accuracy": accuracy, "ci95": [accuracy - 0.04, accuracy + 0.04], "n": 600}}
    return row


def _machine(root: Path, mid: str, rows, emulated=None, probes=True):
    prof = root / "profiles" / mid
    prof.mkdir(parents=True)
    (prof / "hardware.json").write_text(json.dumps({"machine_id": mid, "model_name": "Xeon <b>bold</b>",
                                                    "isa_class": "avx512bf16", "n_usable": 2, "emulated": emulated or {}}))
    if probes:
        (prof / "probes.json").write_text(json.dumps({"results": [
            {"probe": "fp32", "threads": 2, "gflops": {"median": 300.0}},
            {"probe": "bandwidth", "threads": 2, "gbps": {"median": 25.0}}]}))
    res = root / "results" / mid
    res.mkdir(parents=True)
    (res / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_report_renders_plots_tables_and_escapes(tmp_path):
    rows = [_row(0, threads=1, sps=27.0), _row(1), _row(2, rollout="int8", sps=55.0, rss=950),
            _row(3, prompts=8, sps=52.0, rss=1300), _row(4, status="failed"),
            _row(5, rollout="int8", tag="tune-gate", accuracy=0.45), _row(6, tag="tune-gate", accuracy=0.46)]
    _machine(tmp_path, "m1", rows)
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
    _machine(tmp_path, "m2", [_row(0), _row(1, status="failed")], probes=False)
    path = write_report("m2", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")
    md = (Path(path).parent / "report.md").read_text()
    assert "no probes.json" in md and "no tune.json" in md
    with pytest.raises(ReportError, match="no profile for nope"):
        write_report("nope", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")


def test_compare_ratios_match_the_numbers(tmp_path):
    _machine(tmp_path, "big", [_row(0, sps=50.0), _row(1, rollout="int8", sps=60.0)])
    _machine(tmp_path, "lesser", [_row(0, sps=20.0, machine="lesser"), _row(1, rollout="int8", sps=45.0,
                                                                          machine="lesser"),
                                  _row(2, prompts=8, sps=30.0, machine="lesser")], emulated={"isa": "avx2"})
    r = write_compare(["big", "lesser"], profiles_dir=tmp_path / "profiles", results_dir=tmp_path / "results",
                      out_root=tmp_path / "cmp")
    assert r["configurations"] == 2  # the prompts=8 point exists on one machine only: not comparable
    ratios = sorted(row["lesser / big"] for row in r["table"])
    assert ratios == pytest.approx([0.4, 0.75])
    page = Path(r["report"]).read_text()
    assert "emulated" in page and "0.400" in page


def test_report_shows_each_baseline_run_with_its_pairs(tmp_path):
    from cpugrpo.runs.baseline import record, summarize_baseline
    from cpugrpo.core.config import TrainConfig

    _machine(tmp_path, "m3", [_row(0)])
    cfg = TrainConfig(model="small", batch_size=64, rollout_precision="int8")
    rows = {"trl_defaults": [_row(1, sps=3.0, model="small"), _row(3, sps=4.0, model="small")],
            "cpugrpo": [_row(2, sps=9.0, model="small"), _row(4, sps=10.0, model="small")]}
    summary = summarize_baseline(rows, cfg)
    assert summary["ratios"] == [3.0, 2.5] and summary["ratio"]["median"] == 2.75 and summary["commit"] == "abc"
    path = record(summary, "m3", "profiles/m3/recommended-small.toml", tmp_path / "results")
    with open(path, "a") as fh:
        fh.write('{"torn": ')  # a run killed mid-write: reported, not fatal
    write_report("m3", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")
    md = (tmp_path / "reports" / "m3" / "report.md").read_text()
    assert "## Against TRL's GRPOTrainer defaults" in md
    assert "| small | 64 | all threads, fp32 update, int8 rollout, shared prefix on | 3.50 (3.00..4.00) | 9.50 (9.00..10.00) | 2.75x (3.00, 2.50) | abc |" in md
    assert "baselines.jsonl:2: not a complete JSON row" in md
