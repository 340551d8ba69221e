"""The performance model on a machine it was never fitted on: every committed ok trial of MACHINE predicted from its
own probes with another machine's fitted efficiencies (the one `cpugrpo predict` would use there, or --fit-from),
against what was measured. Usage:

    python scripts/unseen_machine.py MACHINE [--fit-from OTHER] [--json]

Prints the median absolute error of step time and peak RSS, per model, and each trial's errors.
"""

import argparse
import json

from cpugrpo.runs.predict_fit import errors, samples, summarize
from cpugrpo.runs.prediction import load_fit


def main(machine: str, fit_from: str | None = None) -> dict:
    fit, picked, why = load_fit(machine, fit_from=fit_from)
    if picked == machine:
        raise SystemExit(f"{machine} has a fit of its own: pass --fit-from another machine")
    rows = [s for s in samples() if s["machine"] == machine]
    errs = errors(rows, fit)
    return {"machine": machine, "fit_from": picked, "why": why, "summary": summarize(errs),
            "trials": [{k: e[k] for k in ("trial_id", "label", "measured_step_s", "predicted_step_s", "step_err",
                                          "peak_rss_mb", "predicted_rss_mb", "rss_err")} for e in errs]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("machine")
    ap.add_argument("--fit-from")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    out = main(a.machine, a.fit_from)
    if a.json:
        print(json.dumps(out, indent=1))
    else:
        s = out["summary"]
        pct = lambda x: "-" if x is None else f"{100 * x:.1f}%"  # noqa: E731
        print(f"{out['machine']}: {s['n']} trials predicted with the fit of {out['fit_from']} ({out['why']})")
        print(f"median |error|: step {pct(s['step'])}, peak RSS {pct(s['peak_rss'])}")
        for m, v in s["by_model"].items():
            print(f"  {m}: {v['n']} trials, step {pct(v['step'])}, peak RSS {pct(v['peak_rss'])}")
        for t in out["trials"]:
            print(f"  {t['trial_id']}: step {t['measured_step_s']:.2f} s measured, {t['predicted_step_s']:.2f} "
                  f"predicted ({100 * t['step_err']:+.0f}%); RSS {pct(t['rss_err'])}  {t['label']}")
