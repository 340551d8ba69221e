"""The CLI's commands: each parses its arguments into a config, calls one library function and returns a dict.

Thread settings are applied here, before torch is imported, so OpenMP's pool starts at the requested size.
``UserError`` and the library's own errors are turned into one line on stderr by cli.main.
"""

from __future__ import annotations

import os
import sys
import time

from ..core.errors import CpugrpoError

class UserError(CpugrpoError):
    """A bad command-line value; the message names the fix."""


def _set_thread_env(threads: int) -> None:
    from ..hw.runtime import prepare_process

    prepare_process(threads)


def _threads(requested: int | None) -> int:
    from ..hw.runtime import resolve_threads

    return resolve_threads(requested)


def _quiet_libraries() -> None:
    from ..hw.runtime import prepare_process

    prepare_process()  # offline, quiet libraries; no "Loading weights" bars (ours stay)
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


from ..core.config import FLAG_KEYS as _TRAIN_KEYS  # noqa: E402  (the knob registry's flags)


def cmd_train(args) -> dict:
    from ..core.config import resolve_config

    cfg, origin = resolve_config(args.config, {k: getattr(args, k) for k in _TRAIN_KEYS})
    _threads(cfg.threads)
    if cfg.data:
        from ..train.data import load_gsm8k_jsonl

        load_gsm8k_jsonl(cfg.data)  # fail fast on a bad file, before any model is built
    from ..train.memory import fit_batch, shape_of

    cfg = fit_batch(cfg, shape_of(cfg.model))  # unknown model, or a batch that cannot fit: refused here, once
    _set_thread_env(_threads(cfg.threads))
    if not args.json:
        changed = ", ".join(f"{k}={getattr(cfg, k)!r} ({v})" for k, v in origin.items()) or "all defaults"
        print(f"config: {changed}", file=sys.stderr)
    from ..train.trainer import train_and_evaluate

    run_dir = args.run_dir or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S") + f"-{cfg.model.strip('/').split('/')[-1]}")
    return train_and_evaluate(cfg, run_dir, progress=not args.json, fitted=True)


# -------------------------------------------------------------------------------------------------------- eval
def cmd_eval(args) -> dict:
    from ..core.config import ROLLOUT_PRECISIONS

    if args.precision not in ROLLOUT_PRECISIONS:
        raise UserError(f"unknown precision {args.precision!r}: use one of {', '.join(ROLLOUT_PRECISIONS)}")
    if args.n < 3:
        raise UserError(f"--n must be at least 3, got {args.n}")
    threads = _threads(args.threads)
    from ..train.models import resolve

    resolve(args.model)
    _set_thread_env(threads)
    from ..train import evaluate, models
    from ..hw.runtime import apply_threads

    apply_threads(threads)
    loaded = models.load(args.model, seed=args.seed, progress=not args.json)
    r = evaluate.evaluate(loaded.model, loaded.tokenizer, n=args.n, seed=args.seed, precision=args.precision,
                          progress=not args.json, random_weights=loaded.random_weights,
                          max_new_tokens=args.max_new_tokens)
    return {"model": loaded.source, **r.to_dict()}


# -------------------------------------------------------------------------------------------------- curriculum
def _parse_stage_steps(text: str) -> dict[str, int]:
    from ..train.curriculum import STAGES, CurriculumError

    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise CurriculumError(f"--stage-steps entry {part!r} is not name=steps: use e.g. basic=20,advanced=20")
        if name.strip() not in STAGES:
            raise CurriculumError(f"unknown stage {name.strip()!r}: stages are {', '.join(STAGES)}")
        try:
            out[name.strip()] = int(value)
        except ValueError:
            raise CurriculumError(f"steps for stage {name.strip()!r} must be an integer, got {value!r}") from None
    return out


def cmd_curriculum(args) -> dict:
    from ..core.config import resolve_config
    from ..train.curriculum import CurriculumError, check_stages

    stages = _parse_stage_steps(args.stage_steps)
    try:
        lams = [float(x) for x in args.compare_lambda.split(",")]
    except ValueError:
        raise CurriculumError(f"--compare-lambda must be numbers like 0,50, got {args.compare_lambda!r}") from None
    for lam in lams:
        check_stages(stages, lam)
    cfg, _ = resolve_config(args.config, {k: getattr(args, k, None) for k in _TRAIN_KEYS})
    _threads(cfg.threads)
    from ..train.memory import fit_batch, shape_of

    cfg = fit_batch(cfg, shape_of(cfg.model))
    _set_thread_env(_threads(cfg.threads))
    from ..train import models
    from ..train.curriculum import run_curriculum
    from ..hw.runtime import apply_threads

    apply_threads(_threads(cfg.threads))
    run_dir = args.run_dir or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S") + "-curriculum")
    studies = []
    t0 = time.perf_counter()
    for lam in lams:  # every arm starts from a fresh load of the same starting model
        loaded = models.load(cfg.model, seed=cfg.seed, progress=not args.json)
        studies.append(run_curriculum(cfg, stages, lam, os.path.join(run_dir, f"lambda-{lam:g}"),
                                      fisher_dtype=args.fisher_precision, progress=not args.json, loaded=loaded))
    out = {"stage_steps": stages, "studies": studies, "seconds": time.perf_counter() - t0, "run_dir": run_dir,
           "config": cfg.to_dict()}
    from ..core.store import atomic_write_json

    atomic_write_json(os.path.join(run_dir, "curriculum.json"), out)
    return out


# ------------------------------------------------------------------------------------------- detect and probe
def _apply_isa_cap(cap: str | None) -> None:
    """Capability caps must be in the environment before torch is imported (ATen reads its cap at import)."""
    from ..hw.runtime import prepare_process

    prepare_process(isa_cap=cap)


def cmd_detect(args) -> dict:
    _apply_isa_cap(args.isa_cap)
    from ..hw import hardware

    profile = hardware.detect()
    out = profile.to_dict()
    if args.save:
        from ..core.store import atomic_write_json

        path = os.path.join(args.profiles_dir, profile.machine_id, "hardware.json")
        atomic_write_json(path, out)
        out["saved"] = path
        out["asv_machine"] = register_asv_machine(profile)
    return out


def register_asv_machine(profile) -> str:
    """Record the machine for asv (~/.asv-machine.json) under the cpugrpo machine id, so `asv run` asks nothing.
    Uses asv's own MachineCollection, which, unlike `asv machine`, needs no asv.conf.json in the cwd."""
    import platform

    from asv.machine import MachineCollection

    info = {"machine": profile.machine_id, "os": f"{platform.system()} {platform.release()}", "arch": profile.arch,
            "cpu": profile.model_name, "num_cpu": str(profile.n_usable),
            "ram": str(int((profile.ram_total_gb or 0) * 2**20))}
    MachineCollection.save(profile.machine_id, info)
    return profile.machine_id


def cmd_probe(args) -> dict:
    from ..hw.runtime import usable_cpus

    _apply_isa_cap(args.isa_cap)
    n = usable_cpus()
    threads = sorted({int(x) for x in args.threads.split(",")}) if args.threads else list(range(1, n + 1))
    if not threads or threads[0] < 1 or threads[-1] > n:
        raise UserError(f"--threads must be within 1..{n} (the usable CPUs)")
    if args.repeats < 1 or args.n < 16:
        raise UserError("--repeats must be >= 1 and --n >= 16")
    _set_thread_env(threads[-1])
    from ..hw import hardware, probes
    from ..core.store import atomic_write_json

    profile = hardware.detect()
    out = {"machine_id": profile.machine_id, **probes.run_probes(threads, args.n, args.repeats, args.bw_mb,
                                                                 progress=not args.json)}
    path = os.path.join(args.profiles_dir, profile.machine_id, "probes.json")
    atomic_write_json(path, out)
    out["saved"] = path
    return out


# ----------------------------------------------------------------------------------------------- rollout-bench
def cmd_rollout_bench(args) -> dict:
    from ..train.rollout import PRECISIONS

    precisions = tuple(args.precisions.split(","))
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad:
        raise UserError(f"unknown precision {bad[0]!r}: use some of {','.join(PRECISIONS)}")
    threads = _threads(args.threads)
    if args.batch_size < 1 or args.new_tokens < 1 or args.repeats < 1:
        raise UserError("--batch-size, --new-tokens and --repeats must be at least 1")
    from ..train.models import resolve

    resolve(args.model)
    _set_thread_env(threads)
    from ..train import models
    from ..train.rollout import bench_decode
    from ..hw.runtime import apply_threads

    effective = apply_threads(threads)
    loaded = models.load(args.model, progress=not args.json)
    r = bench_decode(loaded.model, loaded.tokenizer, precisions, args.batch_size, args.new_tokens, args.repeats,
                     progress=not args.json)
    return {"model": loaded.source, "threads": effective, **r}



# ------------------------------------------------------------------------------------------- sweep, tune, baseline
def _machine_id() -> str:
    from ..hw import hardware

    return hardware.detect(with_torch=False).machine_id


def cmd_sweep(args) -> dict:
    from ..runs.sweep import SweepSpec, expand_grid, parse_axes, run_trials, specs_for
    from ..core.store import TrialStore

    _apply_isa_cap(args.isa_cap)  # in the environment the trial processes inherit
    spec = SweepSpec.from_toml(args.spec) if args.spec else SweepSpec()
    axes = {**spec.axes, **parse_axes(args.axis or [])}
    if not axes:
        raise UserError("no axes to sweep: pass --spec FILE or --axis name=v1,v2 (e.g. --axis threads=1,2)")
    base = dict(spec.base)
    if args.model:
        base["model"] = args.model
    opts = {k: v for k, v in (("measured_steps", args.steps), ("timeout_s", args.timeout)) if v is not None}
    if args.evaluate:
        opts["evaluate"] = True
    if opts:
        from dataclasses import replace

        spec = replace(spec, **opts)
    from ..hw.runtime import usable_cpus

    configs, skipped = expand_grid(base, axes, max_threads=usable_cpus())
    if not configs:
        raise UserError(f"every grid point is invalid ({skipped[0][1]}): change the axes")
    mid = _machine_id()
    store = TrialStore.for_machine(mid, args.results_dir)
    for point, reason in skipped:
        print(f"skipped {point}: {reason}", file=sys.stderr)
    rows = run_trials(specs_for(configs, spec), store, mid, resume=args.resume, progress=not args.json)
    return {"machine_id": mid, "store": str(store.path), "trials": rows, "skipped": [
        {"point": p, "reason": r} for p, r in skipped], "grid_points": len(configs)}


def cmd_tune(args) -> dict:
    from ..hw.runtime import usable_cpus
    from ..train.models import resolve
    from ..runs.tune import TuneOptions, tune

    if args.memory_budget is not None and args.memory_budget <= 0:
        raise UserError(f"--memory-budget must be > 0 GB, got {args.memory_budget}")
    if args.time_budget is not None and args.time_budget <= 0:
        raise UserError(f"--time-budget must be > 0 minutes, got {args.time_budget}")
    resolve(args.model)
    _apply_isa_cap(args.isa_cap)  # before torch is imported here and in every trial process
    opts = TuneOptions.make(args.quick, model=args.model, memory_budget_gb=args.memory_budget,
                            time_budget_min=args.time_budget, check_grid=args.check_grid)
    _set_thread_env(usable_cpus())
    rec = tune(opts, args.profiles_dir, args.results_dir, progress=not args.json)
    from ..report.machine import write_report

    rec["paths"]["report"] = write_report(rec["machine_id"], profiles_dir=args.profiles_dir,
                                          results_dir=args.results_dir)
    return rec


def cmd_baseline(args) -> dict:
    from ..runs.baseline import record, run_baseline
    from ..core.config import resolve_config
    from ..core.store import TrialStore

    mid = _machine_id()
    from ..runs.recommend import file_name

    config = args.config
    if config is None:  # the model's own recommendation if it was tuned, else the machine's default one
        own = os.path.join(args.profiles_dir, mid, file_name(args.model or "tiny"))
        config = own if os.path.exists(own) else os.path.join(args.profiles_dir, mid, "recommended.toml")
    if not os.path.exists(config):
        raise UserError(f"no recommended config at {config}: run `cpugrpo tune --quick` first or pass --config FILE")
    flags = {"model": args.model, "batch_size": args.batch_size}
    cfg, _ = resolve_config(config, flags)
    _threads(cfg.threads)
    if args.pairs < 1 or args.steps < 1:
        raise UserError("--pairs and --steps must be at least 1")
    from ..train.memory import fit_batch, shape_of

    fit_batch(cfg, shape_of(cfg.model))
    store = TrialStore.for_machine(mid, args.results_dir)
    out = run_baseline(cfg, pairs=args.pairs, measured_steps=args.steps, store=store, machine_id=mid,
                       progress=not args.json)
    out["config_file"] = config
    out["baselines_file"] = str(record(out, mid, config, args.results_dir))
    return out

def cmd_report(args) -> dict:
    from ..report.machine import write_report

    mid = args.machine or _machine_id()
    return {"machine_id": mid, "report": write_report(mid, args.profiles_dir, args.results_dir, args.asv_dir,
                                                      args.out_dir)}


def cmd_compare(args) -> dict:
    from ..report.compare import write_compare

    return write_compare(args.ids, args.reference, args.name, args.profiles_dir, args.results_dir,
                         os.path.join(args.out_dir, "compare"))


