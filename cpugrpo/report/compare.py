"""`cpugrpo compare ID ID ...`: the same configurations side by side across machines, ratios to a reference machine,
and the hardware differences that explain them. Writes ``reports/compare/<name>/{index.html, report.md, *.png}``.

A configuration (same model, threads, prompts per step, precisions and checkpointing) is listed where the reference
machine and at least one other measured it; a machine that did not (e.g. 2 threads on a 1-core machine) shows a gap.
Each machine's number is the median samples/s over all its trials of that configuration; the ratio is machine /
reference of exactly the numbers in the table.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError
from ..core.options import normalize, plain_name
from . import configs, plots
from .machine import ReportError
from .predicted import fill
from .render import CSS, figure_png, html_table, inline, md_table, probe_peak, read_json

CONFIG = list(plots.KNOBS)  # every knob: configurations differing in any one are different rows


@dataclass(frozen=True)
class CompareOptions:
    """What `cpugrpo compare` compares. Validated on construction: a bad value is a ConfigError naming the flag and
    the fix. ``reference`` defaults to the first id."""
    ids: tuple[str, ...]             # machine ids (folders under profiles/), at least two
    reference: str | None = None     # --reference: the machine the ratios are relative to
    name: str | None = None          # --name: output folder under <out_dir>/compare/
    profiles_dir: str = "profiles"   # --profiles-dir
    results_dir: str = "results"     # --results-dir
    out_dir: str = "reports"         # --out-dir: <out_dir>/compare/<name>/ is written here
    predicted: bool = False          # --predicted: predicted samples/s where a machine did not measure (predicted.py)

    def __post_init__(self):
        normalize(self, "ids", tuple([self.ids] if isinstance(self.ids, str) else self.ids))
        if len(self.ids) < 2:
            raise ConfigError(f"compare needs at least two machine ids, got {len(self.ids)}: use cpugrpo compare ID "
                              f"ID ... (ids are the folders under {self.profiles_dir}/)")
        for mid in self.ids:
            plain_name("each ID", mid, "a machine id", f"pass the folder names under {self.profiles_dir}/")
        twice = sorted({m for m in self.ids if self.ids.count(m) > 1})
        if twice:
            raise ConfigError(f"machine id {twice[0]!r} is listed twice: list each machine once")
        if self.reference is not None and self.reference not in self.ids:
            raise ConfigError(f"reference {self.reference!r} is not among the compared ids: pass one of them to "
                              f"--reference")
        plain_name("--name", self.name, "a folder name", "pass e.g. --name big-vs-small")


def compare(opts: CompareOptions) -> dict:
    """Write <out_dir>/compare/<name>/{index.html, report.md, comparison.png}; returns the table and the path."""
    return write_compare(list(opts.ids), opts.reference, opts.name, opts.profiles_dir, opts.results_dir,
                         str(Path(opts.out_dir) / "compare"), opts.predicted)


def gather(ids: list[str], profiles_dir="profiles", results_dir="results") -> dict:
    """Each machine's profile, probes and trials; ``missing``: why a machine has no trials, and its unreadable
    result lines (the report lists both)."""
    from .results import ResultsError, load_trials, unreadable_warning

    machines = {}
    for mid in ids:
        prof = read_json(Path(profiles_dir) / mid / "hardware.json")
        if prof is None:
            raise ReportError(f"no profile for {mid} under {profiles_dir}/: check the id (ls {profiles_dir})")
        missing = []
        try:
            df = load_trials(Path(results_dir) / mid)
            missing += [w for w in [unreadable_warning(df.attrs.get("problems") or [])] if w]
        except ResultsError as e:
            df, missing = None, [str(e)]
        machines[mid] = {"profile": prof, "probes": read_json(Path(profiles_dir) / mid / "probes.json"), "trials": df,
                         "missing": missing}
    return machines


def missing_lines(machines: dict) -> list[str]:
    return [f"{mid}: {m}" for mid, d in machines.items() for m in d.get("missing", [])]


def table(machines: dict, reference: str, predicted: bool = False, profiles_dir="profiles"):
    """One row per configuration the reference and at least one other machine measured (``predicted``: any machine
    measured); samples/s per machine (NaN where not measured), the ratio to the reference of measured numbers, and
    with ``predicted`` a ``<id> predicted`` column per machine for the rows it did not measure (predicted.fill)."""
    import pandas as pd

    frames = []
    for mid, m in machines.items():
        if m["trials"] is None or m["trials"].empty:
            continue
        w = plots.wide(m["trials"], "trial.samples_per_s")  # one row per configuration: median over its trials
        frames.append(w[CONFIG + ["value"]].rename(columns={"value": mid}).set_index(CONFIG))
    if len(frames) < 2 or reference not in [f.columns[0] for f in frames]:
        return pd.DataFrame()
    t = pd.concat(frames, axis=1, join="outer").reset_index()
    others = [m for m in machines if m != reference and m in t]
    if not predicted:
        t = t[t[reference].notna() & t[others].notna().any(axis=1)].reset_index(drop=True)
    for mid in others:
        t[f"{mid} / {reference}"] = t[mid] / t[reference]
    return fill(t, CONFIG, list(machines), profiles_dir) if predicted else t


def hardware_rows(machines: dict) -> list[tuple]:
    rows = []
    for mid, m in machines.items():
        p, pr = m["profile"], m["probes"]
        fmt = lambda v, u: f"{v:.1f} {u}" if v else "not measured"
        rows.append((mid, p.get("isa_class"), p.get("n_usable"), fmt(probe_peak(pr, "fp32", None), "GFLOP/s"),
                     fmt(probe_peak(pr, "bf16", None), "GFLOP/s"), fmt(probe_peak(pr, "bandwidth", None), "GB/s"),
                     ("emulated: " + json.dumps(p["emulated"])) if p.get("emulated") else "real hardware"))
    return rows


HW_HEADER = ("machine", "ISA class", "usable CPUs", "fp32 GEMM", "bf16 GEMM", "copy bandwidth", "kind")


def render_figure(t, machines: dict, reference: str):
    title = "Same configurations across machines"
    if t.empty:
        return plots.missing(title, "no configuration was measured on the reference and another machine")
    labels, fixed = configs.row_labels(t[CONFIG])  # every knob that differs between the rows; the rest in a line
    labels = [configs.wrap(lab, 2.4, 7) for lab in labels]
    fig, (a1, a2) = plots._fig(title, size=(11, 0.5 * len(t) + 3.4), ncols=2)
    if fixed:
        fig.text(0.5, 1 - 0.62 / (0.5 * len(t) + 3.4), configs.wrap("every row: " + fixed, 11, 8), ha="center",
                 va="top", fontsize=8)
    n = len(machines)
    h = 0.8 / n
    colors = {mid: f"C{i}" for i, mid in enumerate(machines)}
    for i, mid in enumerate(machines):
        if mid not in t:
            continue
        a1.barh([j + i * h for j in range(len(t))], t[mid].fillna(0), height=h, label=_short(mid, machines),
                color=colors[mid])
    a1.set_yticks([j + 0.4 - h / 2 for j in range(len(t))])
    a1.set_yticklabels(labels, fontsize=7)
    a1.set_xlabel("samples/s (median)")
    a1.legend(fontsize=7)
    others = [m for m in machines if m != reference and f"{m} / {reference}" in t]
    for i, mid in enumerate(others):
        a2.barh([j + i * 0.8 / max(1, len(others)) for j in range(len(t))], t[f"{mid} / {reference}"].fillna(0),
                height=0.8 / max(1, len(others)), label=_short(mid, machines), color=colors[mid])
    a2.axvline(1.0, color="grey", lw=0.8)
    a2.set_yticks([])
    a2.set_xlabel(f"ratio to {_short(reference, machines)} (no bar: not measured)")
    a2.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.7 / (0.5 * len(t) + 3.4)))
    return fig


def display(t):
    """The table as a reader sees it (pure): a column per knob that differs between the rows, headed by its label,
    values in words (on/off, whole numbers), numbers to 3 decimals, "not measured" for gaps; and the knobs every
    row shares, as one line of text."""
    import pandas as pd

    vary, fixed = configs.split(t[CONFIG])
    out = pd.DataFrame({configs.header(c): [configs.value(c, v) for v in t[c]] for c in vary})
    for c in t.columns:
        if c not in CONFIG:
            gap = "measured" if c.endswith(" predicted") else "not measured"
            out[c] = [gap if v != v else f"{v:.3f}" for v in t[c]]
    return out, configs.fixed_text(fixed)


def _short(mid: str, machines: dict) -> str:
    p = machines[mid]["profile"]
    tag = " (emulated)" if p.get("emulated") else ""
    return f"{p.get('isa_class')} {p.get('n_usable')}c{tag}"


PREDICTED_NOTE = ("Columns '<machine> predicted' are predictions, not measurements: samples/s from that machine's "
                  "probes and fitted efficiencies (runs/predict.py; its held-out error is in the machine report), "
                  "for the configurations it did not measure; ratios use measured numbers only.")


def render_markdown(machines, t, reference, png_name) -> str:
    out = ["# cpugrpo comparison", "", f"Reference machine: `{reference}`. Ratios are machine / reference of median "
           "samples/s, from the numbers in the table.", ""]
    out += [f"**{PREDICTED_NOTE}**", ""] if any(str(c).endswith(" predicted") for c in t.columns) else []
    out += ["## Hardware", "",
           md_table(hardware_rows(machines), HW_HEADER), ""]
    if missing_lines(machines):
        out += ["## Missing data", ""] + [f"- {m}" for m in missing_lines(machines)] + [""]
    out += [f"![comparison]({png_name})", "",
            "## Configurations measured on the reference and at least one other machine", ""]
    if t.empty:
        out.append("None: run the same sweep on each machine.")
    else:
        shown, fixed = display(t)
        out += [f"Every row: {fixed}.", ""] if fixed else []
        out.append(md_table(list(shown.itertuples(index=False)), list(shown.columns)))
    return "\n".join(out) + "\n"


def render_html(machines, t, reference, png: bytes) -> str:
    import base64

    e = html.escape
    shown, fixed = display(t) if not t.empty else (t, "")
    body = [f"<h1>cpugrpo comparison</h1><p>Reference machine: <code>{e(reference)}</code>. Ratios are machine / "
            "reference of median samples/s, from the numbers in the table.</p>",
            (f"<p><b>{e(PREDICTED_NOTE)}</b></p>" if any(str(c).endswith(" predicted") for c in t.columns) else ""),
            "<h2>Hardware</h2>" + html_table(hardware_rows(machines), HW_HEADER),
            ("<h2>Missing data</h2><ul>" + "".join(f"<li>{inline(m)}</li>" for m in missing_lines(machines))
             + "</ul>" if missing_lines(machines) else ""),
            "<img alt='comparison' style='max-width:100%' "
            f"src='data:image/png;base64,{base64.b64encode(png).decode()}'>",
            "<h2>Configurations measured on the reference and at least one other machine</h2>" +
            ((f"<p>{inline('Every row: ' + fixed + '.')}</p>" if fixed else "")
             + f"<div class='scroll'>{html_table(list(shown.itertuples(index=False)), list(shown.columns))}</div>"
             if not t.empty else "<p>None: run the same sweep on each machine.</p>")]
    return ("<!doctype html><html><head><meta charset='utf-8'><title>cpugrpo comparison</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 7px}" + CSS + "</style></head><body>" + "\n".join(body)
            + "</body></html>")


def write_compare(ids: list[str], reference: str | None = None, name: str | None = None, profiles_dir="profiles",
                  results_dir="results", out_root="reports/compare", predicted: bool = False) -> dict:
    from ..core.store import atomic_write_text

    opts = CompareOptions(tuple(ids), reference, name, str(profiles_dir), str(results_dir))  # refuses bad ids
    reference = opts.reference or ids[0]
    machines = gather(ids, profiles_dir, results_dir)
    t = table(machines, reference, predicted, profiles_dir)
    out = Path(out_root) / (name or "-vs-".join(i[:40] for i in ids)[:200])
    out.mkdir(parents=True, exist_ok=True)
    png = figure_png(render_figure(t, machines, reference))
    (out / "comparison.png").write_bytes(png)
    atomic_write_text(out / "report.md", render_markdown(machines, t, reference, "comparison.png"))
    atomic_write_text(out / "index.html", render_html(machines, t, reference, png))
    return {"report": str(out / "index.html"), "reference": reference, "configurations": len(t),
            "table": json.loads(t.to_json(orient="records")) if not t.empty else []}
