"""`cpugrpo predict`: which fit a machine uses, the prediction with its formulas, for a preset or a local model.

The model itself is predict.py; the fits are written by predict_fit.py (``cpugrpo predict --fit``).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..core.config import TrainConfig
from .predict import DEFAULT_FIT, FIT_FILE, PredictError, Workload, load_machine, model_shape, predict


# ------------------------------------------------------------------------------------------------- fits
def family(machine_id: str) -> str:
    """vendor-microarch of a machine id (``intel-emeraldrapids``): machines that share the silicon.

    >>> family("intel-emeraldrapids-avx2-2c-24g-ea1686-emu")
    'intel-emeraldrapids'
    """
    return "-".join(machine_id.split("-")[:2])


def load_fit(machine_id: str, profiles_dir: str | Path = "profiles", fit_from: str | None = None) -> tuple[dict, str,
                                                                                                          str]:
    """(parameters, the machine they were fitted on, why that one): ``fit_from`` if given; else the machine's own
    fit; else a fit of a machine of the same family (the same silicon, another ISA cap or core count); else the
    fit with the most fitted trials. No fit at all: the unfitted starting values, said so."""
    root = Path(profiles_dir)
    fits = {p.parent.name: p for p in sorted(root.glob(f"*/{FIT_FILE}"))}
    if fit_from:
        if fit_from not in fits:
            raise PredictError(f"no {FIT_FILE} for machine {fit_from!r} under {profiles_dir}/: use one of "
                               f"{', '.join(fits) or '(none: run `cpugrpo predict --fit`)'}")
        pick, why = fit_from, "as asked (--fit-from)"
    elif machine_id in fits:
        pick, why = machine_id, "its own trials"
    elif [m for m in fits if family(m) == family(machine_id)]:
        pick = [m for m in fits if family(m) == family(machine_id)][0]
        why = f"no fit of its own: the fit of {pick}, the same {family(machine_id)} silicon"
    elif fits:
        sizes = {m: len(json.loads(p.read_text())["split"]["fitted_trials"]) for m, p in fits.items()}
        pick = max(sizes, key=sizes.get)
        why = f"no fit of its own or of its family: the fit of {pick} ({sizes[pick]} fitted trials)"
    else:
        return dict(DEFAULT_FIT), "", "no predict-fit.json anywhere: unfitted starting values (run `cpugrpo " \
                                      "predict --fit`)"
    return {**DEFAULT_FIT, **json.loads(fits[pick].read_text())["params"]}, pick, why


# ------------------------------------------------------------------------------------------------- explain
def explain(p: dict, fit: dict) -> list[str]:
    """The formulas of ``predict`` with this prediction's numbers in them, one line per term."""
    w, ph, f = p["work"], p["phases"], {**DEFAULT_FIT, **fit}
    g_r, g_u, bw = w["gemm_rollout_gflops"], w["gemm_update_gflops"], w["bandwidth_gbps"]
    return [
        f"inputs: {w['threads']} threads; GEMM {w['rollout_dtype']} {g_r:.0f} GFLOP/s (rollout), {w['update_dtype']} "
        f"{g_u:.0f} GFLOP/s (update), copy bandwidth {bw:.1f} GB/s (best probe samples"
        f"{', scaled linearly to the thread count' if w['probes_scaled'] else ''}); prompt width "
        f"{w['prompt_width']:.0f}, {w['decode_steps']:.0f} decode steps ({w['workload_from']})",
        f"generate = F_prefill / (G_r e_prefill) + max(F_decode / G_r, W_decode / BW) / e_decode + T (L o_layer + "
        f"o_token) = {w['prefill_flops']:.3g} / ({g_r:.0f}e9 x {f['e_prefill']:.2f}) + max({w['decode_flops']:.3g} / "
        f"{g_r:.0f}e9, {w['decode_bytes']:.3g} / {bw:.1f}e9) / {f['e_decode']:.2f} + overhead = {ph['generate']:.2f} s"
        + (" (the snapshot fits the last-level cache: no bandwidth term)" if w["weights_in_llc"] else ""),
        (f"refresh = bytes / (BW e_refresh_{w['refresh_kind']}) = {w['refresh_bytes']:.3g} / {bw:.1f}e9 / "
         f"{f['e_refresh_' + w['refresh_kind']]:.2f} = {ph['refresh']:.2f} s" if w["refresh_kind"] != "none" else
         "refresh = 0 (the snapshot reads the policy's own tensors)"),
        f"scoring = c_score x B = {ph['scoring']:.3f} s",
        f"update = F_update / (G_u e_u) + optimizer bytes / (BW e_opt) + activations + passes + accumulation + "
        f"faults = {w['update_flops']:.3g} / ({g_u:.0f}e9 x {f[w['update_efficiency']]:.2f}) + "
        f"{w['optimizer_bytes']:.3g} / ({bw:.1f}e9 x {f['e_opt_' + w['optimizer_family']]:.3f}) + the rest "
        f"(k_act {f['k_act']:.3g}, o_pass_layer {f['o_pass_layer_s']:.2g} s, k_micro {f['k_micro']:.3g}, k_fault "
        f"{f['k_fault']:.3g}) = {ph['update']:.2f} s",
        f"communication = 2 (P-1)/P x gradient bytes / BW = 2 x {w['processes'] - 1}/{w['processes']} x "
        f"{w['gradient_bytes']:.3g} / {bw:.1f}e9 = {ph['communication']:.2f} s (gloo all-reduce: assumed, not "
        f"measured)",
        f"step = {' + '.join(f'{v:.2f}' for v in ph.values())} = {p['step_s']:.2f} s; physical bound "
        f"{p['bound_step_s']:.2f} s (efficiency 1, no overhead)",
        f"peak RSS = memory.py's parts, activations over the tokens the update holds x {f['rss_k_act']:.2f}, "
        f"baseline {f['rss_base_mb']:.0f} MiB = {p['peak_rss_mb']:.0f} MiB",
    ]


def prediction(model: str, cfg: TrainConfig, machine_id: str, profiles_dir: str | Path = "profiles",
               fit_from: str | None = None, mean_completion: float | None = None) -> dict:
    """What `cpugrpo predict` prints: the step by phase, samples/s, peak RSS, which fit, the formulas."""
    mach = load_machine(machine_id, profiles_dir)
    fit, source, why = load_fit(machine_id, profiles_dir, fit_from)
    cfg = cfg.replace(model=model) if model else cfg
    if not cfg.threads:
        cfg = cfg.replace(threads=mach.usable)
    if cfg.threads > mach.usable:
        raise PredictError(f"{cfg.threads} threads on machine {machine_id} with {mach.usable} usable CPUs: use "
                           f"--threads {mach.usable} or fewer")
    p = predict(model_shape(cfg.model), cfg, mach, fit, Workload.of(cfg, mean_completion=mean_completion))
    return {"model": cfg.model, "machine_id": machine_id, "fit_machine": source, "fit_note": why,
            "step_s": p["step_s"], "samples_per_s": p["samples_per_s"], "peak_rss_mb": p["peak_rss_mb"],
            "phases_s": p["phases"], "rollout_s": p["rollout_s"], "bound_s": p["bound"],
            "bound_step_s": p["bound_step_s"], "work": p["work"], "rss_parts_mb": p["rss_parts_mb"],
            "config": cfg.to_dict(), "explain": explain(p, fit), "predicted": True}
