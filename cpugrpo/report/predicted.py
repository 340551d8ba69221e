"""The report's "Predicted against measured" figure and error table (the performance model, runs/predict.py), and
the predicted cells `cpugrpo compare --predicted` adds. Reads the committed ``profiles/*/predict-fit.json`` (every
trial's prediction with the fit that covers its machine, and the fits' shared validation); runs nothing.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from .render import inline, md_table

TITLE = "Predicted against measured"
CAPTION = ("Step time predicted from the machine's probes and the model's config (runs/predict.py, with the mean "
           "decode steps and prompt width each trial recorded as known inputs) against the measured median. Left: "
           "this machine's trials; right: every committed trial of every machine. Filled: trials no fit used "
           "(held out); hollow: trials a fit was fitted on. Grey band: within 20%.")
# the worst held-out cases, as read from their rows (docs/LOG.md, 2026-11-22, the performance model)
WHY = {
    "a73ff42ef995-1795317881": "torchao's 8-bit AdamW with bf16-sr weights: the fit saw one 8-bit configuration with "
                               "fp32 weights (27.7 s of update), whose optimizer cost does not carry over to bf16 "
                               "stochastic-rounding blocks (15.5 s measured)",
    "55c4339076e8-1795272533": "an early small trial (before the shared prefix, int8 rollout) whose step time varied "
                               "31-53% between its repeats on this VM; the fit follows the other repeats",
    "fd394fc798b8-1795268986": "int8 rollout under the emulated AVX2 cap: the int8 GEMM probe (torch._int_mm, 244 "
                               "GFLOP/s) understates fbgemm's AVX2 dynamic-quantization path, so generation is "
                               "predicted 2.8x too slow; the machine has no fit of its own (the 6635ca fit is used)",
}

WHY_RSS = {
    "ff38d1f667d0-1795309793": "the AMX fit's baseline (795 MiB, fitted mostly on 494M processes) is more than a whole "
                               "tiny process at batch 32 (739 MiB)",
    "0f32356622ff-1795309704": "the same baseline against a tiny process at batch 64 (939 MiB)",
    "89048d1ffdcb-1795270471": "TRL's defaults (gradient checkpointing under autocast): memory.py scales checkpointed "
                               "activations by reasoning, not by a fit (its docstring says so)",
}


def gather(machine_id: str, profiles_dir="profiles") -> dict | None:
    """Every committed trial's prediction (``trials``: ``machine`` says whose), the validation, and which fit
    predicts ``machine_id``; None without any predict-fit.json."""
    fits = sorted(Path(profiles_dir).glob("*/predict-fit.json"))
    if not fits:
        return None
    trials, validation = [], None
    for p in fits:
        d = json.loads(p.read_text())
        validation = validation or d.get("validation")
        trials += [{**t, "fit_machine": p.parent.name} for t in d.get("trials", [])]
    from ..runs.prediction import load_fit

    _, source, why = load_fit(machine_id, profiles_dir)
    return {"machine_id": machine_id, "trials": trials, "validation": validation, "fit_machine": source,
            "fit_note": why}


def figure(data: dict | None):
    from . import plots

    if not data or not data["trials"]:
        return plots.missing(TITLE, "no predict-fit.json under profiles/: run `cpugrpo predict --fit`")
    fig, (a1, a2) = plots._fig(TITLE, size=(11, 4.8), ncols=2)
    models = sorted({t["model"] for t in data["trials"]})
    colors = {m: f"C{i}" for i, m in enumerate(models)}
    for ax, rows, title in ((a1, [t for t in data["trials"] if t["machine"] == data["machine_id"]], "this machine"),
                            (a2, data["trials"], "every machine")):
        pts = [t for t in rows if t["measured_step_s"] and t["predicted_step_s"]]
        if not pts:
            ax.text(0.5, 0.5, "no trials of this machine", ha="center", va="center", transform=ax.transAxes)
            continue
        lo = min(min(t["measured_step_s"], t["predicted_step_s"]) for t in pts) / 1.5
        hi = max(max(t["measured_step_s"], t["predicted_step_s"]) for t in pts) * 1.5
        ax.fill_between([lo, hi], [lo * 0.8, hi * 0.8], [lo * 1.2, hi * 1.2], color="#ddd", label="within 20%")
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, label="predicted = measured")
        for m in models:
            for held, face in ((True, colors[m]), (False, "none")):
                sel = [t for t in pts if t["model"] == m and bool(t["held_out"]) == held]
                if sel:
                    ax.scatter([t["measured_step_s"] for t in sel], [t["predicted_step_s"] for t in sel], s=16,
                               facecolors=face, edgecolors=colors[m],
                               label=f"{m} ({'held out' if held else 'fitted'}, {len(sel)})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_xlabel("measured step time, s (median over measured steps)")
        ax.set_ylabel("predicted step time, s")
        ax.set_title(f"{title}: {len(pts)} trials", fontsize=9)
        ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    return fig


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"


def error_rows(v: dict) -> list[tuple]:
    """(group, held-out trials, step time, step at max length, peak RSS, fitted trials, step (fitted))."""
    h, f = v["held_out"], v["fitted"]
    rows = [("all", h["n"], _pct(h["step"]), _pct(h["step_max_length"]), _pct(h["peak_rss"]), f["n"],
             _pct(f["step"]))]
    for group in ("by_model", "by_machine", "by_mode"):
        for k, x in h[group].items():
            y = f[group].get(k, {})
            rows.append((k, x["n"], _pct(x["step"]), _pct(x["step_max_length"]), _pct(x["peak_rss"]),
                         y.get("n", 0), _pct(y.get("step"))))
    for ph, x in h["by_phase"].items():
        rows.append((f"phase: {ph}", x["n"], _pct(x["median_abs"]), "", "", f["by_phase"][ph]["n"],
                     _pct(f["by_phase"][ph]["median_abs"])))
    return rows


HEADER = ("group", "held-out trials", "step time", "step time, completions at max length", "peak RSS",
          "fitted trials", "step time (fitted)")


def lines(data: dict | None) -> list[str]:
    if not data or not data.get("validation"):
        return ["No performance-model fit is committed: run `cpugrpo predict --fit`."]
    v = data["validation"]
    fits = ", ".join(f"`{m}` ({x['fitted']} trials)" for m, x in v["fits"].items())
    out = [f"Median absolute error of the predicted step time and peak RSS over the trials no fit used (a trial's "
           f"prompt width and decode steps as recorded are known inputs; the 'max length' column predicts every "
           f"completion at max_completion_length instead). Fits: {fits}; {v['rule']}. This machine is predicted "
           f"with the fit of `{data['fit_machine'] or 'none'}` ({data['fit_note']}).",
           "Worst held-out step times: " + "; ".join(
               f"{e['trial_id']} ({e['label']}, {e['step_err']:+.0%}): {WHY.get(e['trial_id'], 'not yet explained')}"
               for e in v["worst_held_out"]) + ".",
           "Worst held-out peak RSS: " + "; ".join(
               f"{e['trial_id']} ({e['label']}, {e['rss_err']:+.0%}): {WHY_RSS.get(e['trial_id'], 'not yet explained')}"
               for e in v.get("worst_held_out_rss", [])) + "."]
    lomo = v.get("leave_one_model_out") or {}
    if lomo:
        out.append("Leave one model out (refitted without it, then predicted): " + "; ".join(
            f"{k.split('/')[-1]} on {k.split('/')[0]} {_pct(x['step'])} (n={x['n']})" for k, x in lomo.items()) + ".")
    tr = v.get("transfer") or {}
    if tr:
        out.append("One machine's fit on another machine's trials (its probes, the other's efficiencies): " + "; ".join(
            f"{k} {_pct(x['step'])} step, {_pct(x['peak_rss'])} RSS (n={x['n']})" for k, x in tr.items()) + ".")
    return out


def section_markdown(data: dict | None) -> list[str]:
    out = ["## Performance model: predicted against measured", ""] + [x + "\n" for x in lines(data)]
    if data and data.get("validation"):
        out += [md_table(error_rows(data["validation"]), HEADER), ""]
    return out


def section_html(data: dict | None) -> str:
    from .render import html_table

    body = "".join(f"<p>{inline(x)}</p>" for x in lines(data))
    if data and data.get("validation"):
        body += html_table(error_rows(data["validation"]), HEADER)
    return f"<h2>{html.escape('Performance model: predicted against measured')}</h2>{body}"


def fill(t, config_cols: list[str], ids: list[str], profiles_dir="profiles"):
    """`compare --predicted`: a ``<id> predicted`` column per machine, holding the predicted samples/s of every row
    that machine did not measure (runs/predict.py with its probes and fit); NaN where it measured (or where the
    configuration cannot run there, e.g. more threads than it has)."""
    from ..core.config import TrainConfig, from_columns, from_mapping
    from ..runs.prediction import prediction

    for mid in ids:
        vals = []
        for _, r in t.iterrows():
            if mid in t and r[mid] == r[mid]:  # measured there
                vals.append(float("nan"))
                continue
            point = {c: _plain(r[c]) for c in config_cols if r[c] == r[c] and r[c] is not None}
            try:
                cfg = from_mapping(from_columns(point), TrainConfig())
                vals.append(prediction(cfg.model, cfg, mid, profiles_dir)["samples_per_s"])
            except Exception:  # noqa: BLE001 - a configuration this machine cannot run: left as a gap
                vals.append(float("nan"))
        t[f"{mid} predicted"] = vals
    return t


def _plain(v):
    """A pandas cell as the Python value TrainConfig checks for (numpy scalars, whole floats as ints)."""
    v = v.item() if hasattr(v, "item") else v
    return int(v) if isinstance(v, float) and v.is_integer() else v
