"""The Qwen2 shapes: one table row per configuration measured on a large model (``LARGE_PRESETS``), straight from
the raw trial rows (trials.jsonl), TRL's peers among them, and the failed trials of those models in a list of their
own (never dropped).

A row gathers the ok trials of one configuration (one trial ``key``): samples/s is the median and min..max over
every measured step of all its trials (the warm-up steps left out), on the trial's own clock; the phase times are
medians over the same steps; OS peak RSS is the kernel's high-water mark of the trial process (``outside``, else the
child's own ``peak_rss_mb_os``), the worst trial. Decode tokens/s and its bandwidth bound follow roofline.py:
completion tokens / (rollout - refresh) per step, against tokens / (decode steps x weight bytes / copy bandwidth),
no bound where the weights fit in the last-level cache.

A cpugrpo row is compared with each TRL peer measured on the same work (model, threads, completions per step, group
size, completion length): the ratio of the median samples/s, marked as coming from a baseline's interleaved pairs
when both sides' trials are ``cpugrpo baseline`` trials run pair by pair, else from separate runs.
``large_rows``/``large_failures`` are pure; ``large_table_markdown``/``large_table_html`` render them.
"""

from __future__ import annotations

import html
import math
import statistics

from ..core.config import BEFORE_THE_KNOB, IDENTITY_KEYS, LARGE_PRESETS
from ..runs.baseline import SHOWN as PEERS  # the TRL peers, the headline (CPU settings) first
from ..train.trl_peers import LABELS
from . import configs
from .render import html_table, inline, md_table, probe_peak

TITLE = "The Qwen2 shapes"
SHOWN = ("model", "adapter", "optimizer", "update_precision", "rollout_precision", "int8_lm_head", "micro_batch",
         "threads", "batch_size")
WORK = ("model", "threads", "batch_size", "num_generations", "max_completion_length")  # what a peer must share
OTHER = tuple(k for k in IDENTITY_KEYS if k not in SHOWN)  # knobs shown only when they differ between rows
HEADERS = {"model": "model", "adapter": "adapter", "optimizer": "optimizer", "update_precision": "update",
           "rollout_precision": "rollout", "int8_lm_head": "int8 LM head", "micro_batch": "micro-batch",
           "threads": "threads", "batch_size": "completions/step"}


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _median(values) -> float | None:
    vals = [v for v in values if not _missing(v)]
    return statistics.median(vals) if vals else None


def _knobs(row: dict) -> dict:
    """Every identity knob of a row: its config's value, else the value rows ran with before the knob existed."""
    cfg = row.get("config") or {}
    return {k: cfg.get(k, BEFORE_THE_KNOB.get(k)) for k in IDENTITY_KEYS}


def _mode(row: dict) -> str:
    return (row.get("spec") or {}).get("mode") or "cpugrpo"


def _is_large(row: dict) -> bool:
    return (row.get("config") or {}).get("model") in LARGE_PRESETS


def _gate(row: dict) -> bool:
    """Quality-gate trials train another budget for accuracy: not speed data (as plots.wide)."""
    return str(row.get("tag") or "").startswith("tune-gate")


def _measured(row: dict) -> list[dict]:
    return (row.get("steps") or [])[int((row.get("spec") or {}).get("warmup_steps", 1)):]


def _rss(row: dict) -> float | None:
    v = (row.get("outside") or {}).get("os_peak_rss_mb") or (row.get("summary") or {}).get("peak_rss_mb_os")
    return None if _missing(v) else float(v)


def _decode(trials: list[dict]) -> tuple[list[float], list[float], int | None]:
    """(tokens/s per step, tokens per byte/s per step, weight bytes) over the trials whose summary holds decode data
    (every measured step recorded its decode steps and weight bytes: measure.summarize)."""
    tps, per_byte, wb = [], [], None
    for r in trials:
        if not (r.get("summary") or {}).get("decode_tokens_per_s"):
            continue
        for s in _measured(r):
            t = s["rollout_s"] - s.get("rollout_refresh_s", 0.0)
            if t > 0:
                tps.append(s["completion_tokens"] / t)
            per_byte.append(s["completion_tokens"] / (s["decode_steps"] * s["decode_weight_bytes"]))
            wb = max(wb or 0, s["decode_weight_bytes"])
    return tps, per_byte, wb


def _commit(c) -> str:
    """A commit as a reader needs it: 10 hex digits, "+diff" when the tree was dirty.

    >>> _commit("84d406e0e080fe3b953115151d39a317520976bf+diff.bcb4727fa019"), _commit(None)
    ('84d406e0e0+diff', '?')
    """
    c = str(c or "?")
    return c[:10] + ("+diff" if "+diff" in c else "")


def _row(trials: list[dict], probes, llc) -> dict:
    trials = sorted(trials, key=lambda r: r.get("started_at") or 0)
    first = trials[0]
    steps = [s for r in trials for s in _measured(r)]
    sps = [s["samples_per_s"] for s in steps if not _missing(s.get("samples_per_s"))]
    knobs = _knobs(first)
    rss = [v for v in map(_rss, trials) if v is not None]
    out = {**{k: knobs[k] for k in SHOWN}, "mode": _mode(first), "key": first.get("key"), "knobs": knobs,
           "n_trials": len(trials), "n_steps": len(sps),
           "warmup_steps": sorted({int((r.get("spec") or {}).get("warmup_steps", 1)) for r in trials}),
           "samples_per_s": {"median": _median(sps), "min": min(sps) if sps else None,
                             "max": max(sps) if sps else None},
           "outside_samples_per_s": _median((r.get("outside") or {}).get("samples_per_s") for r in trials),
           **{f"{p}_s": _median(s.get(f"{p}_s") for s in steps) for p in ("wall", "rollout", "update")},
           "refresh_s": _median(s.get("rollout_refresh_s") for s in steps),
           "os_peak_rss_mb": max(rss) if rss else None,
           "commits": sorted({_commit((r.get("environment") or {}).get("commit")) for r in trials}),
           "trial_ids": [r.get("trial_id") for r in trials],
           "trials": [{"trial_id": r.get("trial_id"), "started_at": r.get("started_at"), "tag": r.get("tag")}
                      for r in trials],
           "decode_tokens_per_s": None, "decode_bound_tokens_per_s": None, "decode_fraction": None,
           "bandwidth_gbps": None, "weight_bytes": None, "bound_note": None, "ratios": {}}
    if out["mode"] != "cpugrpo":  # TRL times whole steps only: no phase split (its rows hold NaN there)
        out["refresh_s"] = None
    tps, per_byte, wb = _decode(trials)
    if tps:
        bw = probe_peak(probes, "bandwidth", knobs["threads"])
        out.update(decode_tokens_per_s=_median(tps), bandwidth_gbps=bw, weight_bytes=wb)
        if llc and wb and wb <= llc:
            out["bound_note"] = (f"weights {wb / 2**20:.0f} MiB fit in the {llc / 2**20:.0f} MiB last-level cache: "
                                 f"DRAM bandwidth is no bound")
        elif bw and per_byte:
            out["decode_bound_tokens_per_s"] = _median(per_byte) * bw * 1e9
            out["decode_fraction"] = out["decode_tokens_per_s"] / out["decode_bound_tokens_per_s"]
        else:
            out["bound_note"] = "no bandwidth probe" if not bw else None
    return out


def interleaved(a: dict, b: dict) -> bool:
    """Whether two rows' trials came from a baseline's interleaved pairs: every trial a ``cpugrpo baseline`` trial
    (tag ``baseline-*``), as many on each side, and the i-th trials of both sides ran before the (i+1)-th of
    either."""
    ta, tb = a["trials"], b["trials"]
    if not ta or len(ta) != len(tb) or not all(str(t.get("tag") or "").startswith("baseline") for t in ta + tb):
        return False
    if any(t.get("started_at") is None for t in ta + tb):
        return False
    sa, sb = sorted(t["started_at"] for t in ta), sorted(t["started_at"] for t in tb)
    return all(max(sa[i], sb[i]) < min(sa[i + 1], sb[i + 1]) for i in range(len(sa) - 1))


def large_rows(rows: list[dict], probes: dict | None = None, llc: float | None = None) -> list[dict]:
    """One row per configuration (trial key) measured on a large model, from its ok trials (quality-gate trials
    left out), fastest first; cpugrpo rows carry ``ratios``: peer mode -> [{ratio, peer_key, interleaved}], one per
    peer row on the same work. ``probes``: probes.json (the decode bound); ``llc``: last-level cache bytes."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("status") == "ok" and _is_large(r) and not _gate(r):
            groups.setdefault(r.get("key") or r.get("trial_id"), []).append(r)
    out = [_row(g, probes, llc) for g in groups.values()]
    out.sort(key=lambda r: -(r["samples_per_s"]["median"] or 0))
    for r in out:
        if r["mode"] != "cpugrpo" or r["samples_per_s"]["median"] is None:
            continue
        for p in out:
            peer = p["samples_per_s"]["median"]
            if p["mode"] in LABELS and peer and all(p["knobs"][k] == r["knobs"][k] for k in WORK):
                r["ratios"].setdefault(p["mode"], []).append({"ratio": r["samples_per_s"]["median"] / peer,
                                                              "peer_key": p["key"], "interleaved": interleaved(r, p)})
    return out


def large_failures(rows: list[dict]) -> list[dict]:
    """Every trial of a large model that did not end ok (failed, timed out, killed), oldest first."""
    out = []
    for r in sorted(rows, key=lambda r: r.get("started_at") or 0):
        if r.get("status") != "ok" and _is_large(r):
            out.append({"trial_id": r.get("trial_id"), "mode": _mode(r), "knobs": _knobs(r),
                        "status": r.get("status") or "failed", "reason": r.get("reason") or "no reason recorded",
                        "commit": _commit((r.get("environment") or {}).get("commit"))})
    return out


def describe(knobs: dict, mode: str) -> str:
    """A configuration in words, the run first (cpugrpo or the TRL peer)."""
    run = LABELS.get(mode, mode)
    return run + ", " + ", ".join(f"{HEADERS.get(k) or configs.header(k)} {_value(k, knobs.get(k))}"
                                  for k in (*SHOWN, *OTHER))


def _value(k, v) -> str:
    return "whole batch" if k == "micro_batch" and _missing(v) else configs.value(k, v)


def _f(v) -> str:
    """A measured number as a reader reads it: 3 decimals below 1, 2 below 10, 1 below 100, whole from 100 up.

    >>> _f(0.3245), _f(5.8e-05), _f(24.53), _f(10979.7), _f(None), _f(float("nan"))
    ('0.325', '0.000', '24.5', '10980', '-', '-')
    """
    if _missing(v):
        return "-"
    return f"{v:.{3 if abs(v) < 1 else 2 if abs(v) < 10 else 1 if abs(v) < 100 else 0}f}"


def _ratio_cell(r: dict, mode: str) -> str:
    if r["mode"] != "cpugrpo":
        return ""
    found = r["ratios"].get(mode)
    if not found:
        return "no peer run"
    return ", ".join(f"{x['ratio']:.2f}x ({'interleaved pairs' if x['interleaved'] else 'separate runs'})"
                     for x in found)


def _decode_cells(r: dict) -> tuple[str, str]:
    if r["decode_tokens_per_s"] is None:
        return "-", ("not recorded (TRL)" if r["mode"] != "cpugrpo" else "not recorded")
    if r["decode_fraction"] is not None:
        bound = _f(r["decode_bound_tokens_per_s"])
        return _f(r["decode_tokens_per_s"]), f"{r['decode_fraction']:.2f} of {bound} tokens/s"
    return _f(r["decode_tokens_per_s"]), r["bound_note"] or "-"


def table(rows: list[dict]) -> tuple[list[str], list[tuple], str]:
    """(header, cells, the knobs every row shares as text): one column per shown knob, one per other knob whose
    value differs between the rows."""
    vary, fixed = configs.split([r["knobs"] for r in rows], cols=OTHER)
    header = ["run", *(HEADERS[k] for k in SHOWN), *(configs.header(k) for k in vary), "trials",
              "samples/s (median)", "min..max", "samples/s, outside clock", "step s", "rollout s (refresh)",
              "update s", "OS peak RSS MiB", "decode tokens/s", "of bandwidth bound",
              *(f"vs {LABELS[p]}" for p in PEERS), "commit", "trial ids"]
    cells = []
    for r in rows:
        s = r["samples_per_s"]
        peer = r["mode"] in LABELS
        rollout = "-" if _missing(r["rollout_s"]) else f"{_f(r['rollout_s'])} ({_f(r['refresh_s'])})"
        cells.append((f"{LABELS[r['mode']]} (TRL peer)" if peer else r["mode"],
                      *(_value(k, r[k]) for k in SHOWN), *(_value(k, r["knobs"].get(k)) for k in vary),
                      str(r["n_trials"]), _f(s["median"]), f"{_f(s['min'])}..{_f(s['max'])}",
                      _f(r["outside_samples_per_s"]), _f(r["wall_s"]), rollout, _f(r["update_s"]),
                      _f(r["os_peak_rss_mb"]), *_decode_cells(r),
                      *(_ratio_cell(r, p) for p in PEERS), ", ".join(r["commits"]),
                      ", ".join(map(str, r["trial_ids"]))))
    return header, cells, configs.fixed_text(fixed)


def how_measured(rows: list[dict]) -> str:
    """The line above the table: how its numbers were measured."""
    warm = sorted({w for r in rows for w in r["warmup_steps"]}) or [1]
    w = f"{warm[0]} warm-up step" + ("s" if warm[0] != 1 else "") if len(warm) == 1 else \
        f"{warm[0]}-{warm[-1]} warm-up steps"
    return (f"Every trial ran in its own process; one trial per configuration unless the trials column says more. "
            f"samples/s: the median and min..max over every measured step of the configuration's trials, after "
            f"{w} per trial (left out), on the trial's own clock; the outside clock: the parent's stamps of the "
            f"steps' ends, median over the trials. Step, rollout (of it the snapshot's refresh) and update: median "
            f"seconds over the same steps. OS peak RSS: the kernel's high-water mark of the trial process, the "
            f"worst trial. Fastest first; TRL rows are the peers (plain `trl.GRPOTrainer`).")


NOTES = ("Decode tokens/s: completion tokens / (rollout - refresh), median over the measured steps (prefill "
         "included, so a lower bound), against tokens / (decode steps x weight bytes / copy bandwidth) from "
         "probes.json at the row's threads; TRL times whole steps only (no rollout, update or decode figures).",
         "vs TRL: this row's median samples/s over the TRL peer's on the same work (model, threads, completions "
         "per step, group size, completion length). \"interleaved pairs\": both sides' trials are "
         "`cpugrpo baseline` trials run pair by pair, as many on each side (the baseline section gives its per-pair "
         "outside-clock ratios); \"separate runs\": different runs, not interleaved, so drift between them is in the "
         "ratio.")


def _failure_lines(failures: list[dict]) -> list[str]:
    return [f"{describe(f['knobs'], f['mode'])}: {f['status']}: {str(f['reason'])[:300]} (trial {f['trial_id']}, "
            f"commit {f['commit']})" for f in failures]


def _parts(rows, failures):
    if not rows:
        return ["No configuration on these models completed a trial."], None, [], _failure_lines(failures)
    lead = [how_measured(rows)]
    header, cells, fixed = table(rows)
    lead += [f"Every row: {fixed}."] if fixed else []
    return lead, (header, cells), list(NOTES), _failure_lines(failures)


def large_table_markdown(rows: list[dict], failures: list[dict] = ()) -> str:
    """The section's body in Markdown: how measured, the table, its notes, then the failed trials."""
    lead, tab, notes, failed = _parts(rows, failures)
    out = []
    for line in lead:
        out += [line, ""]
    if tab:
        out += [md_table(tab[1], tab[0]), ""]
    for line in notes:
        out += [line, ""]
    if failed:
        out += ["Failed or timed out (not in the table):", ""] + [f"- {x}" for x in failed] + [""]
    return "\n".join(out).rstrip("\n")


def large_table_html(rows: list[dict], failures: list[dict] = ()) -> str:
    """The section's body in HTML (strings escaped, as machine.py's)."""
    lead, tab, notes, failed = _parts(rows, failures)
    out = [f"<p class='cap'>{inline(x)}</p>" for x in lead]
    if tab:
        out.append(f"<div class='scroll trials'>{html_table(tab[1], tab[0])}</div>")
    out += [f"<p class='cap'>{inline(x)}</p>" for x in notes]
    if failed:
        out.append("<p>Failed or timed out (not in the table):</p><ul>" + "".join(f"<li>{inline(x)}</li>"
                                                                                  for x in failed) + "</ul>")
    return "".join(out)


def section_markdown(data: dict) -> list[str]:
    """The machine report's lines for the section; none when no trial ran on a large model."""
    g = data.get("large") or {}
    if not (g.get("rows") or g.get("failures")):
        return []
    return [f"## {TITLE}", "", large_table_markdown(g["rows"], g["failures"]), ""]


def section_html(data: dict) -> str:
    g = data.get("large") or {}
    if not (g.get("rows") or g.get("failures")):
        return ""
    return f"<h2>{html.escape(TITLE)}</h2>" + large_table_html(g["rows"], g["failures"])


def gather_large(rows: list[dict], probes: dict | None, llc: float | None) -> dict:
    """What the machine report keeps for the section (machine.gather)."""
    return {"rows": large_rows(rows, probes, llc), "failures": large_failures(rows)}
