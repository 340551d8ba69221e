"""The per-machine report: ``reports/<machine-id>/{index.html, report.md, *.png}`` (the cross-machine comparison,
``reports/compare/<name>/``, is compare.py).

``gather*`` read files; ``render_*`` are pure (data in, str or Figure out); ``write_*`` do the I/O. The HTML is
self-contained (figures embedded as base64 PNG, no scripts, no server); every string taken from data is escaped.
Missing data never fail a report: each figure and section says what is missing instead.
"""

from __future__ import annotations

import base64
import html
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import CpugrpoError
from ..core.options import plain_name
from . import configs, large, plots, predicted, quality, ranks
from .render import CSS, figure_png, html_table, inline, md_table, probe_peak, read_json, reason_parts
from .results import ResultsError
from .roofline import FIELDS, check, llc_bytes, roofline_rows


class ReportError(CpugrpoError, ValueError):
    """Cannot build a report at all (no profile); the message names the fix."""


@dataclass(frozen=True)
class ReportOptions:
    """What `cpugrpo report` builds. Validated on construction: a bad value is a ConfigError naming the flag and the
    fix."""
    machine: str | None = None       # --machine: machine id; None: this machine
    profiles_dir: str = "profiles"   # --profiles-dir
    results_dir: str = "results"     # --results-dir
    asv_dir: str = ".asv/results"    # --asv-dir (optional data)
    out_dir: str = "reports"         # --out-dir: reports/<id>/ is written here

    def __post_init__(self):
        plain_name("--machine", self.machine, "a machine id",
                   f"pass a folder name under {self.profiles_dir}/ (ls {self.profiles_dir}), or leave --machine out")


def report(opts: ReportOptions) -> dict:
    """Write reports/<id>/{index.html, report.md, *.png} for ``opts.machine`` (default: this machine)."""
    from ..hw import hardware

    mid = opts.machine or hardware.detect(with_torch=False).machine_id
    path = write_report(mid, opts.profiles_dir, opts.results_dir, opts.asv_dir, opts.out_dir)
    # warnings: unreadable result lines; roofline: MFU and decode rows (roofline.py)
    return {"machine_id": mid, "report": str(path), "warnings": path.warnings, "roofline": path.roofline}


def gather(machine_id: str, profiles_dir="profiles", results_dir="results", asv_dir=".asv/results") -> dict:
    from ..core.store import TrialStore
    from .results import load_asv, read_trials, trials_frame

    prof_dir = Path(profiles_dir) / machine_id
    profile = read_json(prof_dir / "hardware.json")
    if profile is None:
        raise ReportError(f"no profile for {machine_id} in {prof_dir}: run `cpugrpo detect --save` (or `cpugrpo "
                          f"tune`) on that machine, or pass --machine with an id under {profiles_dir}/")
    data = {"machine_id": machine_id, "profile": profile, "probes": read_json(prof_dir / "probes.json"),
            "tune": read_json(prof_dir / "tune.json"), "missing": []}
    try:
        rows, data["problems"] = read_trials(Path(results_dir) / machine_id)
        data["trials"] = trials_frame(rows, data["problems"])
    except ResultsError as e:
        rows, data["trials"], data["problems"] = [], None, []
        data["missing"].append(str(e))
    data["effective"] = _effective(rows, data["tune"])
    data["large"] = large.gather_large(rows, data["probes"], llc_bytes(profile))  # the Qwen2 shapes (large.py)
    data["ranks"] = ranks.layout_lines(rows) + ranks.memory_lines(rows)  # the memory of data-parallel ranks (ranks.py)
    data["quality"] = quality.gather(results_dir, machine_id)  # training.jsonl and curriculum.jsonl (quality.py)
    data["prediction"] = predicted.gather(machine_id, profiles_dir)  # the performance model's errors (predicted.py)
    data["baselines"], problems = TrialStore(Path(results_dir) / machine_id / "baselines.jsonl").rows()
    data["problems"] = list(data["problems"]) + problems
    data["asv"] = None
    if Path(asv_dir).is_dir():
        try:
            a = load_asv(asv_dir)
            data["asv"] = a[a.machine == machine_id] if not a.empty else a
        except ResultsError as e:
            data["missing"].append(str(e))
    if data["probes"] is None:
        data["missing"].append("no probes.json: roofline figures need `cpugrpo probe`")
    if data["tune"] is None:
        data["missing"].append("no tune.json: run `cpugrpo tune` for a recommendation")
    data["roofline"], notes = roofline_rows(data["trials"], data["probes"], llc_bytes(profile))
    data["missing"] += notes + check(data["roofline"])
    return data


def render_figures(data: dict) -> dict:
    """name -> Figure. Pure apart from matplotlib, and ``data["missing"]``: a figure that could not be drawn from
    these data is also listed there, so the report's text says so as well as the figure."""
    df = data["trials"]
    empty = df is None or df.empty
    rec_key = _recommended_key(data)
    gate = {}
    if not empty:
        acc = df[(df.benchmark == "trial.accuracy") & (df.tag == "tune-gate")] if "tag" in df else df.iloc[0:0]
        for _, r in acc.sort_values("date").iterrows():
            gate[f"{r.update_precision}/{r.rollout_precision}"] = r.value
    why = "no trial results (run `cpugrpo tune` or `cpugrpo sweep`)"
    makers = {
        "thread_scaling": ("Scaling over processes x threads", lambda: plots.thread_scaling(df)),
        "batch_memory": ("Throughput and memory against batch", lambda: plots.batch_memory(df)),
        "pareto": ("Pareto front", lambda: plots.pareto(df, rec_key, gate)),
        "phases": ("Phase breakdown", lambda: plots.phases(df)),
        "roofline": ("Roofline", lambda: plots.roofline(data["roofline"])),
        "accuracy": ("Accuracy by precision", lambda: plots.accuracy(df)),
        "predicted": (predicted.TITLE, lambda: predicted.figure(data.get("prediction"))),
    }
    figs = {}
    for name, (title, make) in makers.items():
        if empty:
            figs[name] = plots.missing(title, why)
            continue
        try:
            figs[name] = make()
        except Exception as e:  # noqa: BLE001 - data we did not foresee: said in the figure and the missing list
            why = f"could not plot these data ({type(e).__name__}: {e})"[:160]
            figs[name] = plots.missing(title, why)
            data.setdefault("missing", []).append(f"{title} figure not drawn: {why}")
    figs["history"] = plots.history(data.get("asv"))
    return figs


def _recommended_key(data) -> dict | None:
    """The recommended configuration's knob values (figures aggregate trials per configuration)."""
    tune = data.get("tune") or {}
    tid = (tune.get("evidence") or {}).get("trial_id")
    df = data["trials"]
    if tid is None or df is None or df.empty:
        return None
    m = df[df.trial_id == tid]
    return {k: m[k].iloc[0] for k in plots.KNOBS} if not m.empty else None


CAPTIONS = {
    "thread_scaling": "Median samples/s against the CPUs used, processes x threads per process (trials from before "
                      "the processes knob ran one process), a line per process count, with the ideal line linear "
                      "from the fewest CPUs; labels give each layout and its parallel efficiency.",
    "batch_memory": "Throughput and the trial process's peak RSS (kernel high-water mark) against prompts per step.",
    "pareto": "Every speed trial; the blue line joins the configurations no other beats on both throughput and "
              "memory (one model); quality-gate trials are not speed trials and are left out. Accuracy: the newest "
              "quality-gate trial of the precision pair (tiny preset; tunes before 2026-11-22 trained 15 steps quick, "
              "40 full, and evaluated 600 problems; since then 200 steps and 3000 problems).",
    "phases": "Median seconds per step in rollout (generation), scoring (rewards) and update (everything else).",
    "roofline": "Left: the update's executed FLOP/s (counted from the shapes every step ran: shared prefix, padding, "
                "backward, recomputation, LM head at the real vocabulary; train/flops.py) over the measured GEMM "
                "peak at the same precision and threads (MFU). Right: decode tokens/s (completion tokens / rollout "
                "time less refresh) against tokens / (decode steps x weight bytes read per step / copy bandwidth); "
                "no bound where the weights fit in the last-level cache.",
    "accuracy": "Greedy exact match on fixed held-out problems after the same short GRPO training (quality-gate "
                "trials: 600 problems before 2026-11-22, 3000 since).",
    "history": "asv results per commit, each line relative to its value at the oldest commit.",
    "predicted": predicted.CAPTION,
}


def trials_table(df):
    """One row per configuration (median over its trials, the newest trial's id), fastest first, then failed trials
    with their reasons (pure). A column per knob whose value differs between the rows, headed by the knob's label;
    the knobs every row shares are in ``attrs["fixed"]`` (one line of text), and columns that would be empty in
    every row (noisy, failure) are left out."""
    import pandas as pd

    if df is None or df.empty:
        return pd.DataFrame()
    s = plots.wide(df, "trial.samples_per_s")
    m = plots.wide(df, "trial.peak_rss_mb")
    m = m.set_index("key").value if not m.empty else {}
    failed = df[df.status.isin(["failed", "skipped"])]
    cols = ["trial_id", *plots.KNOBS, "value", "ci_low", "ci_high", "key", "n_trials", "noisy", "status", "reason"]
    rows = pd.concat([s.sort_values("value", ascending=False).reindex(columns=cols), failed.reindex(columns=cols)],
                     ignore_index=True)
    vary, fixed = configs.split(rows)
    t = pd.DataFrame({"trial": rows.trial_id})
    for c in vary:
        t[configs.header(c)] = [configs.value(c, v) for v in rows[c]]
    ok = list(rows.value.notna())
    t["samples/s (median)"] = [f"{v:.2f}" if o else "" for v, o in zip(rows.value, ok)]
    t["min..max"] = [f"{a:.2f}..{b:.2f}" if o else "" for a, b, o in zip(rows.ci_low, rows.ci_high, ok)]
    t["peak RSS MiB"] = [f"{m.get(k, float('nan')):.0f}" if o else "" for k, o in zip(rows.key, ok)]
    t["trials"] = [f"{n:.0f}" if o else "" for n, o in zip(rows.n_trials, ok)]
    noisy = [bool(n) and n == n and o for n, o in zip(rows.noisy, ok)]
    if any(noisy):
        t["noisy"] = ["yes" if n else "" for n in noisy]
    if not all(ok):
        t["failure"] = ["" if o else f"{st}: {str(r)[:80]}" for st, r, o in zip(rows.status, rows.reason, ok)]
    t.attrs["fixed"] = configs.fixed_text(fixed)
    return t


def _hardware_rows(p: dict, probes: dict | None) -> list[tuple[str, str]]:
    rows = [("machine id", p.get("machine_id")), ("CPU", p.get("model_name")),
            ("microarchitecture", p.get("microarch")), ("ISA class", p.get("isa_class")),
            ("usable CPUs", f"{p.get('n_usable')} of {p.get('logical_cpus')} logical ({p.get('physical_cores')} "
                            f"physical)"),
            ("caches L1d / L2 / L3", " / ".join(_size_kib(p.get(k)) for k in ("l1d_kb", "l2_kb", "l3_kb"))),
            ("RAM (GiB)", p.get("ram_total_gb")), ("NUMA nodes", len(p.get("numa_nodes") or {}) or "unknown"),
            ("torch", (p.get("torch") or {}).get("version")),
            ("emulated", json.dumps(p.get("emulated")) if p.get("emulated") else "no (real hardware)")]
    if probes:
        for kind, unit in (("fp32", "GFLOP/s"), ("bf16", "GFLOP/s"), ("int8", "GOP/s"), ("bandwidth", "GB/s")):
            v = probe_peak(probes, kind, None)
            rows.append((f"probe: {kind} {'GEMM' if kind != 'bandwidth' else 'copy'}",
                         f"{v:.1f} {unit}" if v else "not measured"))
    return [(k, str(v)) for k, v in rows]


def _size_kib(kb) -> str:
    """A cache size given in KiB as a reader writes it: whole KiB, or whole MiB from 1 MiB up where exact.

    >>> _size_kib(48.0), _size_kib(2048.0), _size_kib(266240.0), _size_kib(1280.0), _size_kib(None)
    ('48 KiB', '2 MiB', '260 MiB', '1280 KiB', 'unknown')
    """
    if kb is None:
        return "unknown"
    kb = float(kb)
    return f"{kb / 1024:.0f} MiB" if kb >= 1024 and kb % 1024 == 0 else f"{kb:.0f} KiB"


def _df_rows(t):
    return [tuple("" if (isinstance(v, float) and v != v) else v for v in r) for r in t.itertuples(index=False)]


def _settings(train: dict) -> str:
    """Every knob of a trial's identity as ``cpugrpo train --config`` runs it: the file's ``[train]`` value, else
    the default (said), then any other key the file sets."""
    from ..core.config import IDENTITY_KEYS, KNOBS, TrainConfig

    default = TrainConfig()
    keys = list(IDENTITY_KEYS) + [k for k in train if k not in IDENTITY_KEYS]
    return ", ".join(f"{KNOBS[k].text(k) if k in KNOBS else k} {configs.value(k, train[k])}" if k in train else
                     f"{KNOBS[k].text(k)} {configs.value(k, getattr(default, k))} (default)" for k in keys)


def _recommendation(tune: dict | None) -> list[tuple[str, list[str], list[str]]]:
    """The recommendation as list entries: (text, sub-items, trial ids); reasons broken into their values."""
    if not tune:
        return [("No recommendation yet: run `cpugrpo tune` on this machine.", [], [])]
    from ..core.config import KNOBS

    ev = tune["evidence"]
    lines = [("Use: `cpugrpo train --config profiles/" + ev["machine_id"] + "/recommended.toml`", [], []),
             ("Settings (the file's `[train]`; knobs it leaves out run at their defaults): "
              + _settings(tune["train"]), [], []),
             (f"Measured {ev['samples_per_s']:.1f} samples/s (range {ev['samples_per_s_range'][0]:.1f}-"
              f"{ev['samples_per_s_range'][1]:.1f}), peak RSS {ev['peak_rss_mb']:.0f} MiB ({ev['mode']} tune, "
              f"{ev['tuned_at']})", [], [ev["trial_id"]])]
    for k, v in tune["reasons"].items():
        lead, items, trials = reason_parts(v)
        lines.append((f"{KNOBS[k].text(k) if k in KNOBS else k.replace('_', ' ')}: {lead}", items, trials))
    return lines


def _recommendation_md(tune) -> list[str]:
    out = []
    for text, items, trials in _recommendation(tune):
        out += [f"- {text}"] + [f"  - {x}" for x in items]
        out += [f"  - trial{'s' if len(trials) > 1 else ''}: {', '.join(trials)}"] if trials else []
    return out


def _recommendation_html(tune) -> str:
    out = []
    for text, items, trials in _recommendation(tune):
        sub = "".join(f"<li>{inline(x)}</li>" for x in items)
        ids = (f" <span class='id'>(trial{'s' if len(trials) > 1 else ''} {html.escape(', '.join(trials))})</span>"
               if trials else "")
        out.append(f"<li>{inline(text)}{ids}" + (f"<ul>{sub}</ul>" if sub else "") + "</li>")
    return "<ul>" + "".join(out) + "</ul>"


def _recommended_trial_line(data) -> str:
    """The recommended trial and every knob of its configuration, in words."""
    key = _recommended_key(data)
    tid = ((data.get("tune") or {}).get("evidence") or {}).get("trial_id")
    return f"Trial {tid}: {configs.describe(key)}." if key else f"Trial {tid}."


BASELINE_TITLE = "Against TRL's GRPOTrainer"
BASELINE_HEADER = ("when (UTC)", "model", "completions/step", "run", "cpugrpo settings", "cpugrpo samples/s",
                   "vs TRL, CPU settings", "vs TRL defaults", "TRL samples/s (CPU settings / defaults)",
                   "cpugrpo commit")
OLD_BASELINE = "TRL-defaults-only run (A B A B; ratio of the child's per-step medians)"


def baseline_rows(runs: list[dict]) -> list[tuple]:
    """One row per `cpugrpo baseline` run, the TRL-with-CPU-settings ratio first: each ratio on the parent's outside
    clock with its pairs and min..max, and the inside-clock ratio beside it. Rows from before the second peer (no
    ``peers``) are shown as TRL-defaults-only runs, on the clock they used."""
    from ..runs.baseline import cpugrpo_settings, ratio_text

    def sps(s):
        return f"{s['median']:.2f} ({s['min']:.2f}..{s['max']:.2f})" if s and s.get("n") else "failed"

    out = []
    for r in sorted(runs, key=lambda r: r.get("started_at") or 0):
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["started_at"])) if r.get("started_at") else "?"
        c = r["config"]
        if "peers" in r:
            cpu, dflt = r["peers"].get("trl-cpu") or {}, r["peers"].get("trl-defaults") or {}
            cells = (f"{r['pairs']} pairs of 3 sides, rotating order", sps(r["cpugrpo"]["samples_per_s"]),
                     ratio_text(cpu), ratio_text(dflt),
                     f"{sps(cpu.get('samples_per_s'))} / {sps(dflt.get('samples_per_s'))}")
        else:
            ratios = r.get("ratios") or []
            old = (f"{r['ratio']['median']:.2f}x ({len(ratios)} pairs, {min(ratios):.2f}..{max(ratios):.2f}) "
                   f"inside clock" if ratios else "no complete pair")
            cells = (OLD_BASELINE, sps(r.get("cpugrpo_samples_per_s")), "not run", old,
                     f"not run / {sps(r.get('trl_defaults_samples_per_s'))}")
        out.append((when, c["model"], c["batch_size"], cells[0], cpugrpo_settings(c), *cells[1:],
                    (r.get("commit") or "?")[:10]))
    return out


BASELINE_TEXT = ("`cpugrpo baseline`: a cpugrpo config against TRL's GRPOTrainer twice, with TRL's own defaults "
                 "(use_cpu=True the only change: bf16 autocast, gradient checkpointing) and with the CPU settings an "
                 "informed user picks (bf16 and gradient checkpointing off): the same model, prompts, rewards, "
                 "completions per step, max completion length, steps, seed and threads, each trial in its own "
                 "process, the three sides in an order that rotates from pair to pair. Ratio = cpugrpo / TRL per "
                 "pair on the outside clock (samples over the measured steps / the parent's time between its own "
                 "stamps of the warm-up's end and the last step's end), the median over the pairs with min..max; "
                 "the child's own (inside) clock beside it. samples/s: outside clock, median (min..max) over the "
                 "trials; 1 warm-up step excluded. What TRL ran is read back from its GRPOConfig (trial rows, "
                 "trl_args).")


def report_warnings(data: dict) -> list[str]:
    """What a reader must not miss, shown at the top of the report and returned to the caller: unreadable (torn)
    lines in the result stores, whose rows the report leaves out."""
    from .results import unreadable_warning

    w = unreadable_warning(data.get("problems") or [])
    return [w] if w else []


def render_markdown(data: dict, figure_files: dict) -> str:
    p = data["profile"]
    out = [f"# cpugrpo report: {p.get('machine_id')}", ""]
    out += [f"> **{w}**\n" for w in report_warnings(data)]
    if p.get("emulated"):
        out += [f"**Emulated machine**: {json.dumps(p['emulated'])} on real hardware {p.get('model_name')}.", ""]
    out += ["## Hardware", "", md_table(_hardware_rows(p, data["probes"]), ("fact", "value")), ""]
    out += ["## What to use here and why", ""] + _recommendation_md(data["tune"]) + [""]
    if data["baselines"]:
        out += [f"## {BASELINE_TITLE}", "", BASELINE_TEXT, "",
                md_table(baseline_rows(data["baselines"]), BASELINE_HEADER), ""]
    out += large.section_markdown(data)
    out += ranks.section_markdown(data.get("ranks") or ranks.memory_lines([]))
    out += quality.section_markdown(data.get("quality"))
    out += predicted.section_markdown(data.get("prediction"))
    eff = data["effective"]
    if eff:
        out += ["## Effective settings (recommended trial)", "", _recommended_trial_line(data), "",
                md_table(list(eff.items()), ("setting", "value")), ""]
    if data["missing"] or data["problems"]:
        out += ["## Missing data", ""] + [f"- {m}" for m in data["missing"] + data["problems"]] + [""]
    for name, path in figure_files.items():
        out += [f"## {name.replace('_', ' ').capitalize()}", "", f"![{name}]({path})", "", CAPTIONS[name], ""]
    t = trials_table(data["trials"])
    out += ["## Configurations (median over their trials, min..max over every measured step; failures last)", ""]
    out += [f"Every row: {t.attrs['fixed']}.", ""] if not t.empty and t.attrs.get("fixed") else []
    out += [md_table(_df_rows(t), list(t.columns)) if not t.empty else "No trials.", ""]
    if _random_weights(data):
        out += ["Models with random weights (small, qwen2-0.5b): their accuracy is not meaningful.", ""]
    out += [f"Trials: {len(t)} rows from `results/{p.get('machine_id')}/trials.jsonl`; each ran in its own process "
            f"(1 warm-up step excluded, medians over the measured steps; min..max is the step-to-step range)."]
    return "\n".join(out) + "\n"


def _random_weights(data) -> bool:
    df = data["trials"]
    return df is not None and not df.empty and bool(df.random_weights.fillna(False).any())


def _effective(rows: list[dict], tune: dict | None) -> dict:
    """The effective settings recorded by the recommended trial."""
    tid = ((tune or {}).get("evidence") or {}).get("trial_id")
    if not tid:
        return {}
    for r in rows:
        if r.get("trial_id") == tid:
            e = r.get("effective", {})
            return {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in e.items()}
    return {}


def render_html(data: dict, pngs: dict[str, bytes]) -> str:
    """Self-contained HTML: figures inline as base64, all data strings escaped, pandas tables (escape=True)."""
    e = html.escape
    p = data["profile"]
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>cpugrpo report: {e(str(p.get('machine_id')))}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;"
             "text-align:left}img{max-width:100%}.warn{color:#a33}.cap{color:#555;font-size:13px}"
             ".trials td:first-child{color:#777;font-size:11px;font-family:monospace}" + CSS + "</style>",
             "</head><body>", f"<h1>cpugrpo report: {e(str(p.get('machine_id')))}</h1>"]
    parts += [f"<p class='warn'><b>{e(w)}</b></p>" for w in report_warnings(data)]
    if p.get("emulated"):
        parts.append(f"<p class='warn'><b>Emulated machine</b>: {e(json.dumps(p['emulated']))}</p>")
    parts.append("<h2>Hardware</h2>" + html_table(_hardware_rows(p, data["probes"]), ("fact", "value")))
    parts.append("<h2>What to use here and why</h2>" + _recommendation_html(data["tune"]))
    if data["baselines"]:
        parts.append(f"<h2>{e(BASELINE_TITLE)}</h2><p>{inline(BASELINE_TEXT)}</p>"
                     + html_table(baseline_rows(data["baselines"]), BASELINE_HEADER))
    parts.append(large.section_html(data))  # empty without trials of a large model
    parts.append(ranks.section_html(data.get("ranks") or ranks.memory_lines([])))
    parts.append(quality.section_html(data.get("quality")))
    parts.append(predicted.section_html(data.get("prediction")))
    eff = data["effective"]
    if eff:
        parts.append(f"<h2>Effective settings (recommended trial)</h2><p>{inline(_recommended_trial_line(data))}</p>"
                     + html_table(list(eff.items()), ("setting", "value")))
    if data["missing"] or data["problems"]:
        parts.append("<h2>Missing data</h2><ul>" + "".join(f"<li>{inline(m)}</li>" for m in data["missing"] +
                                                          data["problems"]) + "</ul>")
    for name, png in pngs.items():
        b64 = base64.b64encode(png).decode()
        parts.append(f"<h2>{e(name.replace('_', ' ').capitalize())}</h2><img alt='{e(name)}' "
                     f"src='data:image/png;base64,{b64}'><p class='cap'>{inline(CAPTIONS[name])}</p>")
    t = trials_table(data["trials"])
    parts.append("<h2>Configurations</h2><p class='cap'>Median over their trials, min..max over every measured step; "
                 "failures last." + (f" Every row: {e(t.attrs['fixed'])}." if t.attrs.get("fixed") else "") + "</p>")
    parts.append(f"<div class='scroll trials'>{html_table(_df_rows(t), list(t.columns))}</div>" if not t.empty
                 else "<p>No trials.</p>")
    if _random_weights(data):
        parts.append("<p class='warn'>Models with random weights (small, qwen2-0.5b): accuracy not meaningful.</p>")
    parts.append("</body></html>")
    return "\n".join(parts)


class ReportPath(str):
    """The path of a written ``index.html`` (a plain str to every caller), carrying ``warnings``: the report's
    warning lines (``report_warnings``), for the caller to print."""

    warnings: list[str]

    def __new__(cls, path, warnings=()):
        obj = super().__new__(cls, path)
        obj.warnings = list(warnings)
        obj.roofline = []  # the roofline rows (roofline.py), for `cpugrpo report --json`
        return obj


def write_report(machine_id: str, profiles_dir="profiles", results_dir="results", asv_dir=".asv/results",
                 out_root="reports") -> ReportPath:
    """Write reports/<id>/{index.html, report.md, *.png}; returns index.html's path with the report's warnings."""
    from ..core.store import atomic_write_text

    data = gather(machine_id, profiles_dir, results_dir, asv_dir)
    out = Path(out_root) / machine_id
    out.mkdir(parents=True, exist_ok=True)
    pngs = {name: figure_png(fig) for name, fig in render_figures(data).items()}
    for name, png in pngs.items():
        tmp = out / f".{name}.png.tmp"
        tmp.write_bytes(png)
        os.replace(tmp, out / f"{name}.png")
    atomic_write_text(out / "report.md", render_markdown(data, {n: f"{n}.png" for n in pngs}))
    atomic_write_text(out / "index.html", render_html(data, pngs))
    path = ReportPath(out / "index.html", report_warnings(data))
    path.roofline = [{k: r[k] for k in ("label", *FIELDS, "bound_note")} for r in data["roofline"]]
    return path
