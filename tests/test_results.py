"""The tidy DataFrame loaders: asv results (format version 2) and the trial store."""

import json
import math
from pathlib import Path

import pytest

from cpugrpo.report.results import ResultsError, load_asv, load_trials, trial_rows_to_records

FIXTURES = Path(__file__).parent / "fixtures"


def test_load_asv_flattens_params_last_fastest_with_statuses():
    df = load_asv(FIXTURES / "asv")
    t = df[df.benchmark == "bench_grpo.GRPOTrack.track_samples_per_s"]
    got = [(r.threads, r.rollout_precision, r.status, r.value) for r in t.itertuples()]
    assert got[:3] == [(1, "fp32", "ok", 50.5), (1, "int8", "ok", 55.0), (2, "fp32", "ok", 27.5)]
    assert got[3][:3] == (2, "int8", "skipped") and math.isnan(got[3][3])
    step = df[df.benchmark == "bench_grpo.GRPOStep.time_step"].set_index("model")
    tiny = step.loc["tiny"]
    assert tiny["status"] == "ok" and tiny["ci_low"] == 1.1 and tiny["unit"] == "seconds"
    assert step.loc["small", "status"] == "failed"
    bw = df[df.benchmark == "bench_probes.Bandwidth.track_copy_gbps"]
    assert sorted(bw.commit.str[:8].unique()) == ["1111aaaa", "2222bbbb"]  # history across commits
    assert set(df.machine) == {"m1"} and df[df.benchmark == "bench_misc.track_plain"].value.tolist() == [7.0]


def test_load_asv_errors_name_the_file(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        load_asv(tmp_path / "nope")
    (tmp_path / "benchmarks.json").write_text("{not json")
    with pytest.raises(ResultsError, match=r"benchmarks.json is not valid JSON"):
        load_asv(tmp_path)
    (tmp_path / "benchmarks.json").write_text("{}")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "abc-env.json").write_text('{"results": {}}')
    with pytest.raises(ResultsError, match=r"abc-env.json is not asv format version 2"):
        load_asv(tmp_path)


def _trial(status="ok", **kw):
    row = {"trial_id": "t1", "key": "k1", "tag": "sweep", "machine_id": "m1", "status": status,
           "started_at": 1795264252,
           "config": {"model": "tiny", "threads": 2, "batch_size": 32, "num_generations": 8, "update_precision": "fp32",
                      "rollout_precision": "int8", "gradient_checkpointing": False, "eval_precision": "fp32"}}
    if status == "ok":
        m = {"median": 50.0, "min": 48.0, "max": 52.0}
        row.update(summary={"samples_per_s": m, "wall_s": {"median": 0.64, "min": 0.6, "max": 0.7},
                            "phase_share": {"rollout": 0.3, "scoring": 0.0, "update": 0.7}},
                   outside={"os_peak_rss_mb": 990.0}, environment={"commit": "abc"})
    else:
        row["reason"] = "timeout: still running after 10 s"
    row.update(kw)
    return row


def test_trial_records_are_tidy_and_keep_failures():
    recs = trial_rows_to_records([_trial(), _trial("failed", trial_id="t2")])
    by = {(r["trial_id"], r["benchmark"]): r for r in recs}
    assert by[("t1", "trial.samples_per_s")]["value"] == 50.0 and by[("t1", "trial.samples_per_s")]["ci_low"] == 48.0
    assert by[("t1", "trial.peak_rss_mb")]["value"] == 990.0 and by[("t1", "trial.share_update")]["value"] == 0.7
    assert by[("t1", "trial.samples_per_s")]["prompts_per_step"] == 4
    assert by[("t2", "trial")]["status"] == "failed" and by[("t2", "trial")]["reason"].startswith("timeout")


def test_load_trials_reports_torn_lines_and_missing_files(tmp_path):
    f = tmp_path / "trials.jsonl"
    f.write_text(json.dumps(_trial()) + "\n" + '{"trial_id": "x", "sta')
    df = load_trials(tmp_path)
    assert "trial.samples_per_s" in set(df.benchmark) and len(df.attrs["problems"]) == 1
    with pytest.raises(ResultsError, match="do not exist"):
        load_trials(tmp_path / "missing.jsonl")
