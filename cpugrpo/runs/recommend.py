"""Choose and explain: the recommended config per machine, with a reason per knob and the evidence behind it.

``build`` turns the tuner's trials into a plain dict; ``render`` makes the TOML text (pure); ``write`` saves it
atomically. The ``[train]`` table is what ``cpugrpo train --config`` reads; ``[reasons]`` and ``[evidence]`` are for
people and for the report.
"""

from __future__ import annotations

import time

from ..core.config import BEFORE_THE_KNOB, IDENTITY_KEYS, RECIPE_KEYS, dump_toml
from . import analysis

# every knob a trial's identity holds (core/config.py), except tiny's training recipe (beta): never tuned, so a
# recommendation leaves it to `cpugrpo train`'s own default rather than pinning the trials' value
TUNED_KEYS = tuple(k for k in IDENTITY_KEYS if k not in RECIPE_KEYS)


def file_name(model: str) -> str:
    """``recommended.toml`` for the default model (what `cpugrpo train --config` users want), else one file per
    model, so tuning ``small`` for throughput does not replace the tiny preset's recommendation.

    >>> file_name("tiny"), file_name("small"), file_name("/models/my run")
    ('recommended.toml', 'recommended-small.toml', 'recommended-models-my-run.toml')
    """
    import re

    if model == "tiny":
        return "recommended.toml"
    return f"recommended-{re.sub(r'[^A-Za-z0-9.]+', '-', model).strip('-')}.toml"


def _axis_reason(rec: dict, num_generations: int) -> str:
    """One line per knob: every value tried with its median samples/s and step-to-step range, the trial ids, and
    the rank test's decision (a tie says so, and which peak RSS broke it).

    >>> r = _axis_reason({"axis": "prompts_per_step", "tried": [
    ...   {"value": 4, "samples_per_s": 59.8, "range": [55, 61], "status": "ok", "trial_id": "t1"},
    ...   {"value": 8, "samples_per_s": None, "status": "failed", "trial_id": "t2"}]}, 8)
    >>> for part in r.split(", 8 "): print(part)
    samples/s (median, min-max over measured steps) 4 prompts x 8 = batch 32: 59.8 (55.0-61.0)
    prompts x 8 = batch 64: failed (trials t1, t2)
    >>> print(_axis_reason({"axis": "processes", "tried": [{"value": 1, "layout": [1, 2], "samples_per_s": 60.0,
    ...   "status": "ok", "trial_id": "t1"}, {"value": 2, "layout": [2, 1], "samples_per_s": 70.0, "status": "ok",
    ...   "trial_id": "t2"}]}, 8).replace("steps) ", "steps)\\n"))
    processes x threads per process: samples/s (median, min-max over measured steps)
    1 x 2: 60.0, 2 x 1: 70.0 (trials t1, t2)
    """
    if "skipped" in rec:
        return f"not searched: {rec['skipped']}; default kept"
    parts = []
    for t in rec["tried"]:
        v = t["value"]
        if t.get("layout"):  # processes and threads share the CPUs: the layout each trial ran
            v = " x ".join(map(str, t["layout"]))
        elif isinstance(v, bool):
            v = "on" if v else "off"
        elif rec["axis"] == "prompts_per_step":
            v = f"{v} prompts x {num_generations} = batch {v * num_generations}"
        rng = f" ({t['range'][0]:.1f}-{t['range'][1]:.1f})" if t.get("range") else ""
        parts.append(f"{v}: {t['samples_per_s']:.1f}{rng}" if t["samples_per_s"] else f"{v}: {t['status']}")
    decision = f"; {rec['decision']['text']}" if rec.get("decision") else ""
    head = "processes x threads per process: " if any(t.get("layout") for t in rec["tried"]) else ""
    return (head + "samples/s (median, min-max over measured steps) " + ", ".join(parts)
            + f" (trials {', '.join(t['trial_id'] for t in rec['tried'])}){decision}")


GATED_ON = "precision pair gated on the tiny preset: "


def gate_reason(model: str, random_weights: bool, verdict_text: str) -> str:
    """The quality gate's line in the reasons: always the tiny preset's gate, and for another model, that its
    precision choice rests on it.

    >>> for part in gate_reason("small", True, "passed: ...").split(" ("): print(part)
    precision pair gated on the tiny preset: passed: ...
    small has random weights, so its accuracy is not meaningful: its precision choice rests on the tiny preset's gate)
    """
    if model == "tiny":
        return GATED_ON + verdict_text
    why = "has random weights, so its accuracy is not meaningful" if random_weights else \
        "is not trained by the gate, which always trains the tiny preset"
    return f"{GATED_ON}{verdict_text} ({model} {why}: its precision choice rests on the tiny preset's gate)"


def build(opts, profile, chosen: dict, record: list, verdicts: dict, gates: dict, speed_rows: list, front: list,
          pruned: list, spent_s: float, total_s: float, store_path, budget_mb: float, final: dict | None = None,
          gate_budget: dict | None = None) -> dict:
    """The recommendation: ``train`` (the knobs), ``reasons`` (a line per decision: each axis with its rank-test
    decision, the finalists, the quality gate and what it turned down) and ``evidence`` (trial ids and numbers)."""
    cfg = chosen["config"]
    train = {k: cfg.get(k, BEFORE_THE_KNOB.get(k)) for k in TUNED_KEYS if k in cfg or k in BEFORE_THE_KNOB}
    reasons = {}
    for r in record:
        key = "batch_size" if r["axis"] == "prompts_per_step" else r["axis"]
        reasons[key] = _axis_reason(r, cfg["num_generations"])
    if final:
        reasons["finalists"] = (f"re-measured with twice the steps (trials {', '.join(final['trials'])}): "
                                f"{final['text']}")
    pair = analysis.gate_key(cfg)
    reasons["quality_gate"] = gate_reason(opts.model, bool(chosen.get("random_weights")), verdicts[pair]["text"])
    rejected = [f"{analysis.gate_text(k)}: {v['text']}" for k, v in verdicts.items() if not v["passed"]]
    if rejected:
        reasons["rejected"] = "; ".join(rejected)
    if pruned:
        reasons["pruned"] = "; ".join(pruned)
    s = chosen["summary"]
    front_rows = [speed_rows[i] for i in front]
    evidence = {
        "machine_id": profile.machine_id, "isa_class": profile.isa_class, "usable_cpus": profile.n_usable,
        "tuned_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": chosen.get("environment", {}).get("commit"),
        "mode": "quick" if opts.quick else "full",
        "search": "coordinate descent, two finalists re-measured; choices by Mann-Whitney U on per-step samples/s "
                  "(alpha 0.05), ties to the lower peak RSS; noisy trials (step spread > 25%) re-measured",
        "trial_id": chosen["trial_id"], "samples_per_s": s["samples_per_s"]["median"],
        "samples_per_s_range": [s["samples_per_s"]["min"], s["samples_per_s"]["max"]],
        "tokens_per_s": s["tokens_per_s"]["median"], "peak_rss_mb": analysis.peak_rss_mb(chosen),
        "memory_budget_mb": round(budget_mb), "speed_trials": len(speed_rows), "trial_seconds": round(spent_s, 1),
        "tune_seconds": round(total_s, 1), "gate_trials": [g["trial_id"] for g in gates.values()],
        "gate_accuracy": verdicts[pair].get("candidate"), "gate_baseline_accuracy": verdicts[pair].get("baseline"),
        "gate_verdict": verdicts[pair].get("verdict"),
        "gate": {**(gate_budget or {}), "model": "tiny", "for_model": opts.model,
                 "verdict": verdicts[pair].get("verdict"), "text": reasons["quality_gate"],
                 **{k: verdicts[pair][k] for k in ("difference", "ci95", "discordance", "n") if k in verdicts[pair]}},
        "finalists": final,
        "pareto_front": [f"{analysis.samples_per_s(r):.1f} samples/s at {analysis.peak_rss_mb(r):.0f} MiB: "
                         f"{_label(r['config'])} ({r['trial_id']})" for r in
                         sorted(front_rows, key=analysis.samples_per_s, reverse=True)],
        "trials_file": str(store_path),
    }
    return {"train": train, "reasons": reasons, "evidence": evidence}


def _label(c: dict) -> str:
    ranks = f"{c['processes']} processes x " if c.get("processes", 1) > 1 else ""
    return (f"{ranks}{c['threads']}t, batch {c['batch_size']}, update {c['update_precision']}, rollout "
            f"{c['rollout_precision']}, shared prefix {'on' if c.get('shared_prefix') else 'off'}, checkpointing "
            f"{'on' if c['gradient_checkpointing'] else 'off'}")


def render(rec: dict) -> str:
    ev = rec["evidence"]
    header = (f"cpugrpo recommended config for {ev['machine_id']} ({ev['mode']} tune, {ev['tuned_at']}).\n"
              f"Use it: cpugrpo train --config <this file>. Only [train] is read; [reasons] and [evidence] say why.\n"
              f"Measured {ev['samples_per_s']:.1f} samples/s (range {ev['samples_per_s_range'][0]:.1f}-"
              f"{ev['samples_per_s_range'][1]:.1f}), peak RSS {ev['peak_rss_mb']:.0f} MiB, trial {ev['trial_id']}.")
    flat = {k: v for k, v in ev.items() if not isinstance(v, dict)}  # nested records (gate, finalists): tune.json
    return dump_toml({"train": rec["train"], "reasons": rec["reasons"], "evidence": flat}, header)


def write(rec: dict, path) -> str:
    from ..core.store import atomic_write_text

    atomic_write_text(path, render(rec))
    return str(path)
