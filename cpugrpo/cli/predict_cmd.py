"""`cpugrpo predict`: a step's time by phase, samples/s and peak RSS for a model on a machine, from its probes, in
about a second (no model is built; runs/predict.py). ``--fit`` refits the efficiencies on the committed trials and
prints the held-out errors (runs/predict_fit.py)."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(sub, add_train_flags) -> None:
    p = sub.add_parser("predict", help="predicted step time by phase, samples/s and peak RSS, from a machine's probes "
                                       "(nothing is run)")
    add_train_flags(p)  # --config, --model and every training knob
    p.add_argument("--machine", help="machine id under profiles/ (default: this machine)")
    p.add_argument("--fit-from", help="use this machine's fitted efficiencies (default: the machine's own, else its "
                                      "family's, else the largest fit)")
    p.add_argument("--mean-completion", type=float,
                   help="measured mean completion tokens (default: every completion at max_completion_length)")
    p.add_argument("--explain", action="store_true", help="print the formulas with this prediction's numbers")
    p.add_argument("--fit", action="store_true", help="refit every machine with enough trials on its committed "
                                                      "trials, write profiles/<id>/predict-fit.json, print the "
                                                      "held-out errors")
    p.add_argument("--profiles-dir", default="profiles", help="where profiles live")
    p.add_argument("--results-dir", default="results", help="where trials live (for --fit)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=cmd_predict, show=show_predict)


def _config(args, machine_id: str):
    """Flags over --config over the machine's recommendation for the model (if it was tuned for it) over the
    defaults with the model's contextual defaults."""
    from ..core.config import FLAG_KEYS, resolve_config

    flags = {k: getattr(args, k, None) for k in FLAG_KEYS}
    model = flags.get("model") or "tiny"
    file, source = args.config, args.config and f"file {args.config}"
    if not file:
        prof = Path(args.profiles_dir) / machine_id
        own = prof / f"recommended-{model}.toml"
        if own.exists() or (model == "tiny" and (prof / "recommended.toml").exists()):
            file = own if own.exists() else prof / "recommended.toml"
            source = f"the machine's recommendation {file}"
    cfg, origin = resolve_config(file, flags, recipe=False)  # the work trials measured (no reference pass modelled)
    return cfg, source or "cpugrpo's defaults (with the model's contextual defaults)", origin


def cmd_predict(args) -> dict:
    from ..runs.predict import PredictError, machine_ids

    if args.fit:
        from ..runs.predict_fit import fit_all

        log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
        out = fit_all(args.results_dir, args.profiles_dir, log=log)
        return {"fit": True, "validation": out["validation"], "params": out["fits"]}
    mid = args.machine
    if not mid:
        from ..hw import hardware

        mid = hardware.detect(with_torch=False).machine_id
        if mid not in machine_ids(args.profiles_dir):
            raise PredictError(f"this machine ({mid}) has no probes under {args.profiles_dir}/: run `cpugrpo probe`, "
                               f"or pass --machine {' | '.join(machine_ids(args.profiles_dir)) or '<id>'}")
    if mid not in machine_ids(args.profiles_dir):
        known = machine_ids(args.profiles_dir)
        raise PredictError(f"unknown machine {mid!r}: use --machine with one of {', '.join(known) or '(none)'}")
    cfg, source, origin = _config(args, mid)
    from ..runs.prediction import prediction

    out = prediction(cfg.model, cfg, mid, args.profiles_dir, args.fit_from, args.mean_completion)
    out["config_from"] = source
    out.update({f"{k}_s": v for k, v in out["phases_s"].items()})
    if not args.explain:
        out.pop("explain")
    return out


def show_predict(r: dict) -> None:
    if r.get("fit"):
        v = r["validation"]
        h = v["held_out"]
        fits = ", ".join(f"{m} ({x['fitted']} trials)" for m, x in v["fits"].items())
        print(f"fitted: {fits}")
        print(f"held-out trials {h['n']}: step time median |error| {h['step']:.1%} (at max length "
              f"{h['step_max_length']:.1%}), peak RSS {h['peak_rss']:.1%}")
        for m, x in h["by_model"].items():
            print(f"  {m:12s} n={x['n']:3d}  step {x['step']:.1%}  peak RSS {x['peak_rss']:.1%}")
        for ph, x in h["by_phase"].items():
            if x["median_abs"] is not None:
                print(f"  {ph:12s} n={x['n']:3d}  {x['median_abs']:.1%}")
        return
    print(f"predicted (not measured): {r['model']} on {r['machine_id']}; fit: {r['fit_machine'] or 'none'} "
          f"({r['fit_note']}); config: {r['config_from']}")
    for ph, s in r["phases_s"].items():
        print(f"  {ph:14s} {s:9.3f} s   (bound {r['bound_s'][ph]:.3f} s)")
    print(f"  {'step':14s} {r['step_s']:9.3f} s   (bound {r['bound_step_s']:.3f} s)")
    print(f"  samples/s {r['samples_per_s']:.3g}   peak RSS {r['peak_rss_mb']:.0f} MiB")
    for line in r.get("explain", []):
        print(f"  | {line}")
