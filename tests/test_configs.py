"""Configurations named in the report: every knob that differs between the rows a table or figure shows is a column
or part of each row's label, the rest is said once; two rows that differ only in the shared prefix never look
alike (they once showed as two identical rows at 73.5 and 49.8 samples/s)."""

import json
from pathlib import Path

import pandas as pd

from cpugrpo.report import configs, plots
from cpugrpo.report.compare import display, render_figure, table
from cpugrpo.report.machine import trials_table, write_report
from cpugrpo.report.results import load_trials

from .report_data import make_machine, trial_row

FAST, SLOW = 73.5, 49.8


def _prefix_pair(tmp_path, mid="m1"):
    """Two configurations that differ only in the shared prefix (the faster uses more memory: both on the front)."""
    rows = [trial_row(0, prompts=8, rollout="int8", sps=FAST, rss=900, prefix=True, machine=mid),
            trial_row(1, prompts=8, rollout="int8", sps=SLOW, rss=800, prefix=False, machine=mid)]
    make_machine(tmp_path, mid, rows)
    return load_trials(tmp_path / "results" / mid)


def _texts(fig) -> str:
    out = [t.get_text() for t in fig.texts]
    for ax in fig.axes:
        out += [ax.get_title()] + [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        if ax.get_legend():
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return "\n".join(out)


def test_labels_name_exactly_the_knobs_that_differ():
    named = {"model": "tiny", "threads": 2, "processes": 1, "prompts_per_step": 8, "num_generations": 8,
             "max_completion_length": 48, "micro_batch": None, "optimizer": "adamw_torch_fused", "adapter": "none",
             "update_precision": "fp32", "rollout_precision": "int8", "int8_lm_head": False,
             "gradient_checkpointing": False, "shared_prefix": True, "release_memory": True, "beta": 0.0}
    assert set(named) == set(configs.KNOBS)
    base = {k: named[k] for k in configs.KNOBS}
    rows = pd.DataFrame([base, {**base, "shared_prefix": False}, {**base, "shared_prefix": False, "threads": 1}])
    labels, fixed = configs.row_labels(rows)
    assert labels == ["threads 2, shared prefix on", "threads 2, shared prefix off", "threads 1, shared prefix off"]
    assert fixed == ("model tiny, processes 1, prompts per step 8, micro batch -, num generations 8, max completion "
                     "length 48, optimizer adamw_torch_fused, adapter none, update precision fp32, rollout precision "
                     "int8, int8 lm head off, checkpointing off, release memory on, beta 0")
    assert configs.row_labels(rows, skip=("threads",))[0] == ["shared prefix on", "shared prefix off",
                                                              "shared prefix off"]
    assert configs.header("gradient_checkpointing") == "checkpointing"  # the registry's label


def test_the_trials_table_has_a_column_for_the_shared_prefix(tmp_path):
    df = _prefix_pair(tmp_path)
    t = trials_table(df)
    assert list(t["shared prefix"]) == ["on", "off"] and list(t["samples/s (median)"]) == ["73.50", "49.80"]
    assert "threads" not in t and "threads 2" in t.attrs["fixed"] and "noisy" not in t and "failure" not in t
    write_report("m1", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")
    md = (tmp_path / "reports" / "m1" / "report.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith("| t0 |") or ln.startswith("| t1 |")]
    assert len(rows) == 2
    config_cells = [ln.split("|")[2:-5] for ln in rows]  # every cell left of the numbers
    assert config_cells[0] != config_cells[1], rows
    assert "| shared prefix |" in md and "Every row: model tiny, threads 2, processes 1, prompts per step 8" in md
    page = (tmp_path / "reports" / "m1" / "index.html").read_text()
    assert "<th>shared prefix</th>" in page and "<div class='scroll trials'>" in page


def test_figures_label_rows_by_every_knob_that_differs(tmp_path):
    df = _prefix_pair(tmp_path)
    notes = _texts(plots.pareto(df, None, {}))
    assert f"{FAST:.1f} samples/s, 900 MiB - shared prefix on" in notes
    assert f"{SLOW:.1f} samples/s, 800 MiB - shared prefix off" in notes
    assert "every point on it: model tiny, threads 2" in notes.replace("\n", " ")
    gate = [trial_row(2, tag="tune-gate", accuracy=0.46, prefix=True), trial_row(3, tag="tune-gate", accuracy=0.45,
                                                                                 prefix=False)]
    acc = _texts(plots.accuracy(load_trials_rows(tmp_path, "m2", gate)))
    assert "shared prefix on" in acc and "shared prefix off" in acc


def load_trials_rows(tmp_path, mid, rows):
    make_machine(tmp_path, mid, rows)
    return load_trials(tmp_path / "results" / mid)


def test_single_knob_figures_say_every_knob_held_fixed(tmp_path):
    rows = [trial_row(0, threads=1, sps=27.0, prefix=True), trial_row(1, sps=50.0, prefix=True),
            trial_row(2, prompts=8, sps=52.0, rss=1300, prefix=True),
            trial_row(3, prompts=1, sps=5.0, model="small", prefix=True)]  # another model's batch: not on the axis
    df = load_trials_rows(tmp_path, "m3", rows)
    scaling = _texts(plots.thread_scaling(df)).replace("\n", " ")
    assert "shared prefix on" in scaling and "checkpointing off" in scaling and "optimizer adamw_torch_fused" in scaling
    fig = plots.batch_memory(df)
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["4", "8"]  # no empty tick for prompts 1
    assert "shared prefix on" in _texts(fig).replace("\n", " ")
    assert "shared prefix on" in _texts(plots.phases(df)).replace("\n", " ")


def test_the_comparison_tells_the_shared_prefix_apart(tmp_path):
    machines = {mid: {"trials": _prefix_pair(tmp_path, mid), "profile": {"isa_class": "avx512bf16", "n_usable": 2},
                      "probes": None} for mid in ("a", "b")}
    t = table(machines, "a")
    shown, fixed = display(t)
    assert list(shown["shared prefix"]) != [] and sorted(shown["shared prefix"]) == ["off", "on"]
    assert "threads 2" in fixed and "shared prefix" not in fixed
    labels = [x.get_text() for x in render_figure(t, machines, "a").axes[0].get_yticklabels()]
    assert sorted(labels) == ["shared prefix off", "shared prefix on"]


def test_html_reads_well(tmp_path):
    """Code spans render as <code>, the reasons as lists with their trial ids apart, cache sizes in KiB/MiB, and a
    missing figure is one short line."""
    make_machine(tmp_path, "m4", [trial_row(0, prefix=True)])
    prof = tmp_path / "profiles" / "m4"
    hw = json.loads((prof / "hardware.json").read_text())
    (prof / "hardware.json").write_text(json.dumps({**hw, "l1d_kb": 48.0, "l2_kb": 2048.0, "l3_kb": 266240.0}))
    (prof / "tune.json").write_text(json.dumps({
        "train": {"model": "tiny", "threads": 2, "shared_prefix": True},
        "reasons": {"threads": "samples/s (median, min-max over measured steps) 1: 37.6 (37.1-40.4), 2: 67.1 "
                               "(65.2-73.4) (trials 715f2baa5de8-1795278520, 091e74ee82cd-1795278509)"},
        "evidence": {"machine_id": "m4", "samples_per_s": 67.1, "samples_per_s_range": [65.2, 73.4],
                     "peak_rss_mb": 900.0, "trial_id": "t0", "mode": "quick", "tuned_at": "now"}}))
    path = write_report("m4", tmp_path / "profiles", tmp_path / "results", tmp_path / "none", tmp_path / "reports")
    page = Path(path).read_text()
    assert "<code>cpugrpo train --config profiles/m4/recommended.toml</code>" in page and "`cpugrpo" not in page
    assert "<li>1: 37.6 (37.1-40.4)</li><li>2: 67.1 (65.2-73.4)</li>" in page
    assert "<span class='id'>(trials 715f2baa5de8-1795278520, 091e74ee82cd-1795278509)</span>" in page
    assert "48 KiB / 2 MiB / 260 MiB" in page and "266240.0" not in page
    assert "optimizer adamw_torch_fused (default)" in page and "shared prefix on" in page
    md = (Path(path).parent / "report.md").read_text()
    assert "- threads: samples/s (median, min-max over measured steps)\n  - 1: 37.6 (37.1-40.4)\n" in md
    from PIL import Image

    history = Image.open(Path(path).parent / "history.png")
    assert history.size[1] < 80, history.size  # one line of text, not a large empty figure
