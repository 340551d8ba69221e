"""The tuner's prediction-guided search (``cpugrpo tune --prune``) and the trial time of a tune, from files.

Before a speed trial runs, its configuration is predicted (predict.py, with the machine's own probes and fit).
A configuration is skipped, not run, when
- its predicted peak RSS is over the memory budget, or
- its predicted samples/s is below ``fraction`` x the best measured so far, the prediction calibrated on that best
  point (predicted(candidate) / predicted(best) x measured(best)): a systematic bias of the model on this machine
  cancels, only the predicted ratio between two configurations counts.
A skipped configuration becomes a ``skipped`` row with the predicted numbers and the reason, in the tune's record
and reasons like the memory-budget skips; it is never dropped silently. Each axis's values are tried in order of
predicted samples/s, fastest first, so the best so far rises early. The start point and the finalists' re-measures
are never pruned.

``tune_trial_seconds`` sums the outside wall time of a tune's speed trials (search, re-measures, finalists; not the
gate) from its tune.json and trials.jsonl, so a pruned and an unpruned tune can be compared from committed files;
``replay`` runs the coordinate descent over already measured rows (a grid check's) with and without pruning.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

FRACTION = 0.7  # skip below 70% of the best so far: the model's held-out median error is 13%, its worst ~60%
SPEED_TAGS = ("tune", "tune remeasure", "tune-confirm", "tune-confirm remeasure")


class Pruner:
    """Decides, before a trial, whether a tuner point runs. ``predict(cfg) -> {"samples_per_s", "peak_rss_mb"}``."""

    def __init__(self, predict, fraction: float = FRACTION, budget_mb: float | None = None, note: str = ""):
        self.predict, self.fraction, self.budget_mb, self.note = predict, fraction, budget_mb, note
        self.cache: dict[str, dict] = {}
        self.skipped: list[dict] = []

    def _p(self, cfg) -> dict:
        key = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
        if key not in self.cache:
            self.cache[key] = self.predict(cfg)
        return self.cache[key]

    def order(self, values: list, config_of) -> list:
        """``values`` of one axis, predicted fastest first (``config_of(value) -> TrainConfig``; a value whose
        config cannot be built or predicted goes last, in its place)."""
        def speed(v):
            try:
                return -self._p(config_of(v))["samples_per_s"]
            except Exception:  # an invalid combination: the tuner itself says why when it gets there
                return 0.0
        return sorted(values, key=speed)

    def summary(self) -> str:
        if not self.skipped:
            return f"no point predicted below {self.fraction:.0%} of the best so far or over the memory budget"
        return (f"{len(self.skipped)} point(s) not run: " + "; ".join(
            f"{_diff(s['config'])}: {s['reason']}" for s in self.skipped))

    def axis_order(self, config_of):
        """For tune.coordinate_descent: ``order(axis, values, best_point)``."""
        return lambda axis, values, best: self.order(values, lambda v: config_of({**best, axis: v}))

    def check_rows(self, cfg, rows, config_of) -> dict | None:
        """``check`` against the fastest speed row measured so far (``rows``: the tuner's, each with its point)."""
        from . import analysis

        ok = [r for r in rows if r.get("tag", "").startswith("tune") and r.get("tag") != "tune-gate"
              and analysis.samples_per_s(r) is not None and "point" in r]
        if not ok:
            return None
        best = max(ok, key=analysis.samples_per_s)
        why = self.check(cfg, config_of(best["point"]), analysis.samples_per_s(best))
        if why:
            self.skipped.append({"config": {k: v for k, v in cfg.to_dict().items() if k != "difficulties"},
                                 "against": best["trial_id"], **why})
        return why

    def check(self, cfg, best_cfg=None, best_measured: float | None = None) -> dict | None:
        """None to run the point, else why not (with the prediction)."""
        p = self._p(cfg)
        pred = {"samples_per_s": round(p["samples_per_s"], 4), "peak_rss_mb": round(p["peak_rss_mb"])}
        if self.budget_mb is not None and p["peak_rss_mb"] > self.budget_mb:
            return {"predicted": pred, "reason": f"predicted peak RSS {p['peak_rss_mb']:.0f} MiB is over the "
                                                 f"{self.budget_mb:.0f} MiB memory budget (not run)"}
        if best_cfg is None or not best_measured:
            return None
        ratio = p["samples_per_s"] / self._p(best_cfg)["samples_per_s"]
        if ratio < self.fraction:
            return {"predicted": {**pred, "calibrated_samples_per_s": round(ratio * best_measured, 4),
                                  "ratio_to_best": round(ratio, 3)},
                    "reason": f"predicted {ratio:.0%} of the best so far ({ratio * best_measured:.3g} vs "
                              f"{best_measured:.3g} samples/s measured), below the {self.fraction:.0%} pruning "
                              f"fraction (not run){self.note}"}
        return None


def _diff(cfg: dict) -> str:
    keys = ("processes", "threads", "rollout_precision", "update_precision", "optimizer", "shared_prefix",
            "gradient_checkpointing", "batch_size")
    return ", ".join(f"{k} {cfg[k]}" for k in keys if k in cfg)


def for_machine(machine_id: str, profiles_dir="profiles", fraction: float = FRACTION,
                budget_mb: float | None = None) -> Pruner | None:
    """A pruner on ``machine_id``'s probes and fit (its own, else one prediction.load_fit picks); None when there is
    no fit anywhere (an unfitted model prunes nothing)."""
    from .predict import Workload, load_machine, model_shape, predict
    from .prediction import load_fit

    mach = load_machine(machine_id, profiles_dir)
    fit, source, _ = load_fit(machine_id, profiles_dir)
    if not source:
        return None

    def run(cfg):
        return predict(model_shape(cfg.model), cfg, mach, fit, Workload.of(cfg))

    return Pruner(run, fraction, budget_mb, note=f"; fit of {source or 'no machine'}")


def tune_trial_seconds(tune_json: str | Path, trials: str | Path | None = None) -> dict:
    """Trial time of a tune's speed search from committed files: the outside wall time of every speed trial
    (tags SPEED_TAGS, the tune's model) that started inside the tune's window (``tuned_at`` - ``tune_seconds`` ..
    ``tuned_at``), and the trial_seconds the tune itself recorded, to check against."""
    rec = json.loads(Path(tune_json).read_text())
    ev = rec["evidence"]
    trials = Path(trials or ev["trials_file"])
    end = datetime.strptime(ev["tuned_at"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
    start = end - ev["tune_seconds"]
    model = rec["train"].get("model", "tiny")
    rows = [json.loads(line) for line in trials.read_text(encoding="utf-8").splitlines() if line.strip()]
    mine = [r for r in rows if r.get("tag") in SPEED_TAGS and start - 1 <= r.get("started_at", 0) <= end + 1
            and (r.get("config") or r["spec"]["config"]).get("model", "tiny") == model]
    seconds = sum((r.get("outside") or {}).get("wall_s", 0.0) for r in mine)
    return {"tune": str(tune_json), "model": model, "trials": len(mine), "trial_seconds": round(seconds, 1),
            "recorded_trial_seconds": ev.get("trial_seconds"), "pick": ev.get("trial_id"),
            "pick_samples_per_s": ev.get("samples_per_s"), "pruned": ev.get("pruned_by_prediction", [])}


def saving(unpruned: dict, pruned: dict) -> dict:
    """The pruned tune's trial time as a fraction of the unpruned one's, and its pick against the other's."""
    frac = pruned["trial_seconds"] / unpruned["trial_seconds"] if unpruned["trial_seconds"] else None
    pick = (pruned["pick_samples_per_s"] / unpruned["pick_samples_per_s"]
            if unpruned.get("pick_samples_per_s") else None)
    return {"time_fraction": frac, "pick_ratio": pick, "target": "time_fraction <= 0.5 and pick_ratio >= 0.95",
            "met": bool(frac is not None and frac <= 0.5 and pick is not None and pick >= 0.95)}


def replay(rows_by_point: dict, axes: dict, start: dict, config_of, axes_order, pruner: Pruner | None = None,
           confirm_factor: float = 2.0) -> dict:
    """The coordinate descent over already measured rows (``rows_by_point``: json-dumped point -> a row), with or
    without ``pruner``: which points it would run, their trial seconds (a finalist's re-measure counted as
    ``confirm_factor`` x its trial, as the tuner measures it with twice the steps) and the pick."""
    from . import analysis

    spent, ran = [0.0], {}
    best_box = {"cfg": None, "sps": None}

    def measure(point):
        k = json.dumps(point, sort_keys=True)
        if k in ran:
            return ran[k]
        row = dict(rows_by_point[k])
        why = pruner.check(config_of(point), best_box["cfg"], best_box["sps"]) if pruner and ran else None
        if why:
            row = {"status": "skipped", "trial_id": f"{row.get('key', 'x')}-skipped", **why}
        else:
            spent[0] += (row.get("outside") or {}).get("wall_s", 0.0)
            s = analysis.samples_per_s(row)
            if s and (best_box["sps"] is None or s > best_box["sps"]):
                best_box.update(cfg=config_of(point), sps=s)
        row["point"] = point
        ran[k] = row
        return row

    best = dict(start)
    measure(best)
    for axis in axes_order:
        if axis not in axes:
            continue
        values = axes[axis]
        if pruner:
            values = pruner.order(values, lambda v: config_of({**best, axis: v}))
        tried = [(v, measure({**best, axis: v})) for v in values]
        ok = [(v, r) for v, r in tried if analysis.samples_per_s(r) is not None]
        if ok:
            v, _ = ok[analysis.decide([r for _, r in ok], [str(v) for v, _ in ok])["chosen"]]
            best = {**best, axis: v}
    finalists = sorted([r for r in ran.values() if analysis.samples_per_s(r) is not None],
                       key=analysis.samples_per_s, reverse=True)[:2]
    spent[0] += sum(confirm_factor * (r.get("outside") or {}).get("wall_s", 0.0) for r in finalists)
    pick = finalists[0] if finalists else None
    return {"trial_seconds": spent[0], "ran": sum(r.get("status") == "ok" for r in ran.values()),
            "skipped": [r["point"] for r in ran.values() if r.get("status") == "skipped"],
            "pick": pick and pick["point"], "pick_samples_per_s": analysis.samples_per_s(pick) if pick else None}
