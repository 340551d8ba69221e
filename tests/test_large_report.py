"""The Qwen2-shapes section (report/large.py): one row per large-model configuration from the raw trial rows, medians
and ranges over every measured step of its trials, ratios to the TRL peers on the same work, failed trials listed,
and the section in the machine report only when such trials exist."""

from pathlib import Path

import pytest

from cpugrpo.report.large import interleaved, large_failures, large_rows, large_table_html, large_table_markdown
from cpugrpo.report.machine import write_report
from cpugrpo.train.measure import StepMeasurement, summarize

from .report_data import make_machine, trial_row

NAN = float("nan")
PROBES = {"results": [{"probe": "bandwidth", "threads": 2, "gbps": {"median": 25.0}}]}


def _trial(tid, key, measured, mode="cpugrpo", tag="sweep", started=0, rss=7000.0, model="qwen2-0.5b", **cfg):
    """A trial row as trial.py writes it: 1 warm-up step (0.1 samples/s, left out) and ``measured`` samples/s; each
    step 8 completions of 48 tokens, rollout 12.2 s of which 0.2 s refresh (cpugrpo; TRL records no phases)."""
    trl = mode != "cpugrpo"
    steps = [StepMeasurement(step=i, wall_s=8 / sps, rollout_s=NAN if trl else 12.2, scoring_s=NAN if trl else 0.0,
                             update_s=NAN if trl else 8 / sps - 12.2, completions=8, completion_tokens=384,
                             peak_rss_mb=rss, cpu_util=0.9, rollout_refresh_s=0.0 if trl else 0.2,
                             decode_steps=0 if trl else 48, decode_weight_bytes=0 if trl else 10**9)
             for i, sps in enumerate([0.1, *measured])]
    summary = summarize(steps, warmup=1)
    summary["peak_rss_mb_os"] = rss + 500  # the child's own high-water mark: used only without the parent's
    config = {"model": model, "threads": 2, "batch_size": 8, "num_generations": 8, "max_completion_length": 48,
              "update_precision": "fp32", "rollout_precision": "fp32", "gradient_checkpointing": False, "beta": 0.0,
              **cfg}
    return {"trial_id": tid, "key": key, "tag": tag, "machine_id": "m1", "status": "ok", "started_at": started,
            "spec": {"mode": mode, "warmup_steps": 1, "measured_steps": len(measured)}, "config": config,
            "summary": summary, "steps": [s.to_dict() for s in steps], "environment": {"commit": "0123456789abcdef"},
            "outside": {"os_peak_rss_mb": rss, "samples_per_s": sum(measured) / len(measured)},
            "random_weights": True, "effective": {"threads": 2, "flags": []}}


def _rows():
    a1 = _trial("a1", "kA", [0.30, 0.32], started=100, update_precision="bf16-sr", rollout_precision="bf16",
                micro_batch=4, optimizer="adafactor", release_memory=True)
    a2 = _trial("a2", "kA", [0.34, 0.36, 0.40], started=300, rss=7200.0, update_precision="bf16-sr",
                rollout_precision="bf16", micro_batch=4, optimizer="adafactor", release_memory=True)
    a2["outside"].pop("os_peak_rss_mb")  # an older row: the child's own high-water mark (7700) stands in
    b = _trial("b1", "kB", [0.20, 0.22, 0.21], started=200, adapter="lora")
    peer = _trial("p1", "kP", [0.25, 0.20, 0.30], mode="trl-cpu", started=400)
    failed = {"trial_id": "f1", "key": "kF", "status": "failed", "started_at": 500, "spec": {"mode": "cpugrpo"},
              "reason": "timeout: still running after 1800 s (raise the trial timeout)",
              "config": {"model": "qwen2-1.5b", "threads": 2, "batch_size": 8}}
    small = [trial_row(9), trial_row(10, status="failed")]  # tiny model: not this section's
    return [a1, b, a2, peer, failed, *small]


def test_rows_medians_ranges_ratios_and_failures():
    rows = large_rows(_rows(), PROBES, llc=2**20)
    assert [r["key"] for r in rows] == ["kA", "kP", "kB"]  # fastest first
    a, p, b = rows
    # kA: the measured steps of both trials pooled (warm-up steps left out)
    assert a["n_trials"] == 2 and a["n_steps"] == 5 and a["trial_ids"] == ["a1", "a2"]
    assert a["samples_per_s"] == {"median": 0.34, "min": 0.30, "max": 0.40}
    assert a["wall_s"] == pytest.approx(8 / 0.34) and a["rollout_s"] == 12.2 and a["refresh_s"] == 0.2
    assert a["update_s"] == pytest.approx(8 / 0.34 - 12.2)
    assert a["os_peak_rss_mb"] == 7700.0  # max over trials; the second has only the child's own mark
    assert (a["model"], a["mode"], a["adapter"], a["optimizer"], a["update_precision"], a["rollout_precision"],
            a["int8_lm_head"], a["micro_batch"], a["threads"], a["batch_size"]) == \
        ("qwen2-0.5b", "cpugrpo", "none", "adafactor", "bf16-sr", "bf16", False, 4, 2, 8)
    assert b["adapter"] == "lora" and b["optimizer"] == "adamw_torch_fused" and b["micro_batch"] is None
    # decode: 384 tokens / (12.2 - 0.2) s; bound 384 / (48 x 1e9 bytes) x 25 GB/s = 200 tokens/s
    assert a["decode_tokens_per_s"] == pytest.approx(32.0) and a["decode_bound_tokens_per_s"] == pytest.approx(200)
    assert a["decode_fraction"] == pytest.approx(0.16) and a["bound_note"] is None
    assert p["mode"] == "trl-cpu" and p["samples_per_s"]["median"] == 0.25 and p["decode_tokens_per_s"] is None
    assert p["rollout_s"] is None and p["ratios"] == {}
    # ratios to the peer's median on the same work; from separate runs (sweep tags), not a baseline's pairs
    assert a["ratios"] == {"trl-cpu": [{"ratio": pytest.approx(0.34 / 0.25), "peer_key": "kP",
                                        "interleaved": False}]}
    assert b["ratios"]["trl-cpu"][0]["ratio"] == pytest.approx(0.21 / 0.25) and "trl-defaults" not in b["ratios"]
    fails = large_failures(_rows())
    assert [(f["trial_id"], f["status"], f["knobs"]["model"]) for f in fails] == [("f1", "failed", "qwen2-1.5b")]
    assert fails[0]["reason"].startswith("timeout")
    # the weights (1e9 bytes) fit a 2 GB last-level cache: no bound, said instead
    big = large_rows(_rows(), PROBES, llc=2e9)[0]
    assert big["decode_bound_tokens_per_s"] is None and "fit in the" in big["bound_note"]


def test_markdown_and_html_table():
    rows = _rows()
    md = large_table_markdown(large_rows(rows, PROBES), large_failures(rows))
    lines = md.splitlines()
    assert lines[0].startswith("Every trial ran in its own process; one trial per configuration unless")
    assert "after 1 warm-up step per trial" in lines[0] and "OS peak RSS" in lines[0]
    table = [x for x in lines if x.startswith("| ")]
    assert len(table) == 4 and "| samples/s (median) | min..max |" in table[0]
    assert table[1].startswith("| cpugrpo | qwen2-0.5b | none | adafactor | bf16-sr | bf16 | off | 4 | 2 | 8 |")
    assert "| 2 | 0.340 | 0.300..0.400 |" in table[1] and "| 7700 |" in table[1]
    assert "| 32.0 | 0.16 of 200 tokens/s | 1.36x (separate runs) | no peer run |" in table[1]
    assert table[2].startswith("| TRL, CPU settings (TRL peer) |") and "| 0.250 | 0.200..0.300 |" in table[2]
    assert "| 0.84x (separate runs) |" in table[3] and "| whole batch |" in table[3]
    assert "- TRL" not in md and "qwen2-1.5b" in md and "timeout: still running after 1800 s" in md
    assert "| tiny |" not in md and "t9" not in md
    page = large_table_html(large_rows(rows, PROBES), large_failures(rows))
    assert "<td>1.36x (separate runs)</td>" in page and "<li>cpugrpo, model qwen2-1.5b" in page


def test_ratio_from_a_baselines_interleaved_pairs():
    """Trials of a baseline run (tags baseline-*), pair by pair, give an interleaved ratio; the same trials one side
    after the other do not."""
    def side(tid, key, mode, t):
        return _trial(tid, key, [0.3], mode=mode, tag=f"baseline-{mode}", started=t)

    paired = [side("c1", "kC", "cpugrpo", 10), side("p1", "kP", "trl-cpu", 20),
              side("c2", "kC", "cpugrpo", 40), side("p2", "kP", "trl-cpu", 30)]
    ours, theirs = sorted(large_rows(paired), key=lambda r: r["mode"])
    assert interleaved(ours, theirs) and ours["ratios"]["trl-cpu"][0]["interleaved"]
    apart = [side("c1", "kC", "cpugrpo", 10), side("c2", "kC", "cpugrpo", 20),
             side("p1", "kP", "trl-cpu", 30), side("p2", "kP", "trl-cpu", 40)]
    ours, theirs = sorted(large_rows(apart), key=lambda r: r["mode"])
    assert not interleaved(ours, theirs)
    assert "(separate runs)" in large_table_markdown([ours, theirs])


def test_machine_report_has_the_section_only_with_large_trials(tmp_path):
    make_machine(tmp_path, "m1", [trial_row(0), *_rows()])
    path = write_report("m1", tmp_path / "profiles", tmp_path / "results", tmp_path / "no-asv", tmp_path / "reports")
    md = (Path(path).parent / "report.md").read_text()
    assert "## The Qwen2 shapes" in md and "1.36x (separate runs)" in md and "qwen2-1.5b" in md
    assert "<h2>The Qwen2 shapes</h2>" in (Path(path).parent / "index.html").read_text()
    make_machine(tmp_path, "m2", [trial_row(0), trial_row(1)])
    path = write_report("m2", tmp_path / "profiles", tmp_path / "results", tmp_path / "no-asv", tmp_path / "reports")
    assert "Qwen2 shapes" not in (Path(path).parent / "report.md").read_text()
