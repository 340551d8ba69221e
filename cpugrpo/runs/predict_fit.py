"""Fit ``predict.py``'s efficiencies on measured trials and validate them on trials left out of the fit.

Every ok trial row under ``results/`` is a sample: its model and config (a missing knob at its ``before`` value),
its machine's probes, and, as known inputs, the prompt width and decode steps it recorded (older rows recorded
only the mean completion length: the longest is taken as LONGEST_OVER_MEAN x that). The fit minimizes the squared
log ratio of predicted to measured seconds per phase (generate, refresh, scoring, update; the TRL peers time only
the whole step), under the bounds in ``predict.PARAMS`` (efficiencies <= 1, overheads >= 0).

Validation, reported both ways:
- **held out**: a configuration (machine + trial key) is left out when the SHA-1 of ``<machine>/<key>`` falls in
  the last HOLDOUT of its range; all repeats of a configuration fall on the same side, so no held-out trial has a
  fitted twin;
- **leave one model out**: the model refitted without any row of one model, then that model predicted.
Peak RSS is train/memory.py's estimate with its activations over the tokens the update holds, its baseline and
activation scale fitted (predict.peak_rss_mb); memory.py's own error is reported beside it. Trials that evaluated
held-out problems (the quality gate's) keep their step times but not their peak RSS, which includes the evaluation.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import time
from pathlib import Path

from ..core.config import FIELD_NAMES, fill_before, from_mapping
from . import analysis
from .predict import (
    DEFAULT_FIT,
    FIT_FILE,
    PARAMS,
    RSS_PARAMS,
    Workload,
    load_machine,
    model_shape,
    peak_rss_mb,
    peer_config,
    predict,
)

HOLDOUT = 0.3
MIN_FITTED = 20      # a machine with fewer fitted trials borrows a fit (predict.load_fit) instead of its own
PRIOR_WEIGHT = 0.05  # per parameter, in log units: against one phase's log error, a weak pull
PHASES = ("generate", "refresh", "scoring", "update")
MIN_PHASE_S = 1e-3  # a phase measured below this (a cast-free refresh, ...) carries no timing information


def is_held_out(machine_id: str, key: str) -> bool:
    h = int(hashlib.sha1(f"{machine_id}/{key}".encode()).hexdigest()[:8], 16)
    return h / 2**32 >= 1 - HOLDOUT


def row_config(row: dict):
    c = fill_before({k: v for k, v in row.get("config", {}).items() if k in FIELD_NAMES})
    return from_mapping(c, origin=f"trial {row.get('trial_id')}")


def samples(results_dir: str | Path = "results", profiles_dir: str | Path = "profiles") -> list[dict]:
    """One dict per ok trial of every machine with probes: inputs and measured seconds."""
    from ..train.memory import estimate_peak_mb, shape_of

    out = []
    for path in sorted(Path(results_dir).glob("*/trials.jsonl")):
        mid = path.parent.name
        try:
            mach = load_machine(mid, profiles_dir)
        except Exception:  # no probes for that machine: nothing to predict it from
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            s = r.get("summary") or {}
            if r.get("status") != "ok" or "wall_s" not in s:
                continue
            cfg = row_config(r)
            if cfg.beta > 0:  # a reference-model forward per step, which the model of a step does not have
                continue
            if not cfg.threads:  # left to the default: every usable CPU, split over the ranks (runs/launch.py)
                cfg = cfg.replace(threads=max(1, mach.usable // cfg.processes))
            mode = r.get("spec", {}).get("mode", "cpugrpo")
            steps = (r.get("steps") or [])[len(s.get("warmup_steps", [])):]
            known = [x for x in steps if x.get("decode_steps")]
            width = statistics.mean(x["prompt_width"] for x in known) if known else None
            dsteps = statistics.mean(x["decode_steps"] for x in known) if known else None
            mean_c = (statistics.mean(x["completion_tokens"] for x in steps) / cfg.batch_size
                      if steps and any(x["completion_tokens"] for x in steps) else None)
            med = {k: (s.get(f"{k}_s") or {}).get("median") for k in ("rollout", "rollout_refresh", "scoring",
                                                                     "update")}
            measured = {"step": s["wall_s"]["median"]}
            if mode == "cpugrpo" and med["rollout"] is not None and not math.isnan(med["rollout"]):
                measured.update(generate=med["rollout"] - (med["rollout_refresh"] or 0.0),
                                refresh=med["rollout_refresh"] or 0.0, scoring=med["scoring"], update=med["update"])
            rss = analysis.peak_rss_mb(r)  # several ranks: their kernel peaks summed, as the model predicts
            if r.get("spec", {}).get("evaluate") or r.get("spec", {}).get("evaluate_before"):
                rss = None  # the process's peak includes evaluating held-out problems: not a training step's
            out.append({"trial_id": r["trial_id"], "key": r["key"], "machine": mid, "machine_obj": mach,
                        "model": r.get("model") or cfg.model, "mode": mode, "tag": r.get("tag", ""), "cfg": cfg,
                        "shape": model_shape(r.get("model") or cfg.model),
                        "work": Workload.of(cfg, width, dsteps, mean_c), "mean_completion": mean_c,
                        "measured": measured, "peak_rss_mb": rss,
                        "memory_py_mb": estimate_peak_mb(shape_of(cfg.model), peer_config(cfg, mode))["total"],
                        "held_out": is_held_out(mid, r["key"])})
    return out


def _predict(s: dict, fit: dict, max_length: bool = False) -> dict:
    work = Workload.of(s["cfg"]) if max_length else s["work"]
    work = Workload(s["work"].prompt_width, work.decode_steps, work.source)
    return predict(s["shape"], s["cfg"], s["machine_obj"], fit, work, s["mode"])


def residuals(fit: dict, rows: list[dict]) -> list[float]:
    out = []
    for s in rows:
        p = _predict(s, fit)
        m = s["measured"]
        if "update" not in m:
            out.append(math.log(p["step_s"] / m["step"]))
            continue
        for ph in PHASES:
            if m[ph] is not None and m[ph] >= MIN_PHASE_S:
                out.append(math.log(max(p["phases"][ph], 1e-9) / m[ph]))
    return out


def rss_residuals(fit: dict, rows: list[dict]) -> list[float]:
    return [math.log(peak_rss_mb(peer_config(s["cfg"], s["mode"]), s["work"], fit)["total"] / s["peak_rss_mb"])
            for s in rows if s["peak_rss_mb"]]


def _least_squares(params: dict, fun, start: dict | None) -> dict:
    """Least squares in log space within ``params``' bounds (log-parametrized, so an efficiency stays in (0, 1]
    and an overhead >= 0); a robust loss, so one noisy trial does not pull the fit."""
    import numpy as np
    from scipy.optimize import least_squares

    names = list(params)
    floor = 1e-9
    lo = np.array([math.log(max(params[n][1], floor)) for n in names])
    hi = np.array([math.log(params[n][2]) for n in names])
    x0 = np.clip([math.log(max((start or DEFAULT_FIT)[n], floor)) for n in names], lo + 1e-9, hi - 1e-9)
    prior = np.array([math.log(max(DEFAULT_FIT[n], floor)) for n in names])

    def penalized(x):  # a weak pull to the starting values: a parameter no row informs stays there
        return list(fun(dict(zip(names, np.exp(x))))) + list(PRIOR_WEIGHT * (x - prior))

    res = least_squares(penalized, x0, bounds=(lo, hi), loss="soft_l1", f_scale=0.3, max_nfev=400)
    return {n: float(v) for n, v in zip(names, np.exp(res.x))}


def fit_params(rows: list[dict], start: dict | None = None) -> dict:
    """The step-time parameters (PARAMS) on every phase of ``rows``, then peak RSS's two (RSS_PARAMS)."""
    fit = _least_squares(PARAMS, lambda f: residuals(f, rows), start)
    fit.update(_least_squares(RSS_PARAMS, lambda f: rss_residuals({**fit, **f}, rows), start))
    return fit


def errors(rows: list[dict], fit: dict) -> list[dict]:
    """Per trial: predicted and measured step and phases, relative errors, peak RSS against the estimate."""
    out = []
    for s in rows:
        p = _predict(s, fit)
        pm = _predict(s, fit, max_length=True)
        m = s["measured"]
        e = {"trial_id": s["trial_id"], "machine": s["machine"], "model": s["model"], "mode": s["mode"],
             "held_out": s["held_out"], "predicted_step_s": p["step_s"], "measured_step_s": m["step"],
             "step_err": p["step_s"] / m["step"] - 1, "step_err_max_length": pm["step_s"] / m["step"] - 1,
             "workload_from": s["work"].source,
             "phases": {ph: {"predicted": p["phases"][ph], "measured": m.get(ph)} for ph in PHASES},
             "peak_rss_mb": s["peak_rss_mb"], "predicted_rss_mb": p["peak_rss_mb"],
             "rss_err": (p["peak_rss_mb"] / s["peak_rss_mb"] - 1) if s["peak_rss_mb"] else None,
             "memory_py_err": (s["memory_py_mb"] / s["peak_rss_mb"] - 1) if s["peak_rss_mb"] else None,
             "label": label(s)}
        out.append(e)
    return out


def label(s: dict) -> str:
    c = peer_config(s["cfg"], s["mode"])
    layout = f"{c.processes}x{c.threads}" if c.processes > 1 else f"{c.threads}t"
    return (f"{s['model']} {s['mode']} {layout} batch {c.batch_size} update {c.update_precision} rollout "
            f"{c.rollout_precision} {c.optimizer} prefix {'on' if c.shared_prefix else 'off'} ckpt "
            f"{'on' if c.gradient_checkpointing else 'off'} micro {c.micro_batch or 'whole'} release "
            f"{'on' if c.release_memory else 'off'}" + (f" {c.adapter}" if c.adapter != "none" else ""))


def _median_abs(xs) -> float | None:
    xs = [abs(x) for x in xs if x is not None and not math.isnan(x)]
    return statistics.median(xs) if xs else None


def summarize(errs: list[dict]) -> dict:
    """Median absolute % errors: overall, per model, per phase, per machine; counts."""
    def by(key):
        groups = {}
        for e in errs:
            groups.setdefault(e[key], []).append(e)
        return {k: {"n": len(v), "step": _median_abs(e["step_err"] for e in v),
                    "step_max_length": _median_abs(e["step_err_max_length"] for e in v),
                    "peak_rss": _median_abs(e["rss_err"] for e in v),
                    "memory_py": _median_abs(e["memory_py_err"] for e in v)} for k, v in sorted(groups.items())}

    phase = {}
    for ph in PHASES:
        xs = [e["phases"][ph]["predicted"] / e["phases"][ph]["measured"] - 1 for e in errs
              if (e["phases"][ph]["measured"] or 0) >= MIN_PHASE_S]
        phase[ph] = {"n": len(xs), "median_abs": _median_abs(xs)}
    return {"n": len(errs), "step": _median_abs(e["step_err"] for e in errs),
            "step_max_length": _median_abs(e["step_err_max_length"] for e in errs),
            "peak_rss": _median_abs(e["rss_err"] for e in errs),
            "memory_py": _median_abs(e["memory_py_err"] for e in errs), "by_model": by("model"),
            "by_machine": by("machine"), "by_mode": by("mode"), "by_phase": phase}


def fit_all(results_dir="results", profiles_dir="profiles", write: bool = True, log=lambda m: None) -> dict:
    """Fit every machine with at least MIN_FITTED fitted trials on its own fitted configurations; predict every
    other trial with the fit that ``predict.load_fit`` would use for its machine; summarize the errors over every
    trial that no fit used (``held_out``), per model, phase, machine and peer; leave each model out of each fit in
    turn; predict each fitted machine's trials with the other fits too (``transfer``). Writes
    ``profiles/<id>/predict-fit.json`` per fitted machine, each with the same ``validation``."""
    from .prediction import family

    t0 = time.perf_counter()
    rows = samples(results_dir, profiles_dir)
    machines = sorted({s["machine"] for s in rows})
    fits = {}
    for mid in machines:
        fitted = [s for s in rows if s["machine"] == mid and not s["held_out"]]
        if len(fitted) >= MIN_FITTED:
            log(f"fitting {mid} on {len(fitted)} trials")
            fits[mid] = fit_params(fitted)
    if not fits:
        from .predict import PredictError

        raise PredictError(f"no machine under {results_dir}/ has {MIN_FITTED} fitted trials: run a tune or sweep")

    def fit_for(mid):
        if mid in fits:
            return mid
        same = [m for m in fits if family(m) == family(mid)]
        return same[0] if same else max(fits, key=lambda m: sum(s["machine"] == m for s in rows))

    used = {}
    for s in rows:
        s["fit_machine"] = fit_for(s["machine"])
        s["held_out"] = s["held_out"] or s["machine"] not in fits
        used.setdefault(s["fit_machine"], []).append(s)
    errs = [e for m, ss in used.items() for e in errors(ss, fits[m])]
    for e, s in zip(errs, [s for ss in used.values() for s in ss]):
        e["fit_machine"] = s["fit_machine"]
    held = [e for e in errs if e["held_out"]]
    lomo = {}
    for mid, fit in fits.items():
        for model in sorted({s["model"] for s in rows if s["machine"] == mid}):
            others = [s for s in rows if s["machine"] == mid and not s["held_out"] and s["model"] != model]
            if len(others) >= MIN_FITTED:
                f2 = fit_params(others, fit)
                lomo[f"{mid}/{model}"] = summarize(errors([s for s in used[mid] if s["model"] == model], f2))
    transfer = {f"{a} -> {b}": summarize(errors([s for s in rows if s["machine"] == b], fits[a]))
                for a in fits for b in fits if a != b}
    validation = {"rule": f"a configuration (machine/key) is held out when the SHA-1 of '<machine>/<key>' falls in "
                          f"the last {HOLDOUT:.0%} of its range; machines with fewer than {MIN_FITTED} fitted trials "
                          f"have no fit of their own and all their trials are held out",
                  "fits": {m: {"fitted": sum(1 for s in rows if s["machine"] == m and not s["held_out"]),
                               "predicts": sorted({s["machine"] for s in used[m]})} for m in fits},
                  "held_out": summarize(held), "fitted": summarize([e for e in errs if not e["held_out"]]),
                  "worst_held_out": sorted(held, key=lambda e: -abs(e["step_err"]))[:3],
                  "worst_held_out_rss": sorted([e for e in held if e["rss_err"] is not None],
                                               key=lambda e: -abs(e["rss_err"]))[:3],
                  "leave_one_model_out": lomo, "transfer": transfer,
                  "fit_seconds": round(time.perf_counter() - t0, 1)}
    out = {"validation": validation, "fits": fits, "trials": errs}
    if write:
        from ..core.store import atomic_write_json

        for mid, fit in fits.items():
            atomic_write_json(str(Path(profiles_dir) / mid / FIT_FILE), {
                "machine_id": mid, "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "params": fit,
                "split": {"fitted_trials": [s["trial_id"] for s in rows if s["machine"] == mid and not s["held_out"]],
                          "held_out_trials": [s["trial_id"] for s in rows if s["machine"] == mid and s["held_out"]]},
                "validation": validation,
                "trials": [_compact(e) for e in errs if e["fit_machine"] == mid]})
    return out


def _compact(e: dict) -> dict:
    r = lambda v: None if v is None else round(v, 4)  # noqa: E731
    return {"trial_id": e["trial_id"], "machine": e["machine"], "model": e["model"], "mode": e["mode"],
            "held_out": e["held_out"], "label": e["label"], "predicted_step_s": r(e["predicted_step_s"]),
            "measured_step_s": r(e["measured_step_s"]), "step_err": r(e["step_err"]),
            "step_err_max_length": r(e["step_err_max_length"]), "predicted_rss_mb": r(e["predicted_rss_mb"]),
            "peak_rss_mb": r(e["peak_rss_mb"]), "rss_err": r(e["rss_err"]),
            "phases": {k: {"predicted": r(v["predicted"]), "measured": r(v["measured"])}
                       for k, v in e["phases"].items()}}
