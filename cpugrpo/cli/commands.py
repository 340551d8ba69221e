"""The CLI's commands: each builds its options from the arguments, prepares the process, calls one library function
and returns a dict.

Each command's options are a frozen dataclass next to the library function that consumes it (``EvalOptions`` in
train/evaluate.py, ``TuneOptions`` in runs/tune.py, ...); it validates itself, so a bad value is a ``ConfigError``
(a ``CpugrpoError``) that cli.main turns into one line on stderr and exit code 2. Thread counts and ISA caps go into
the environment here (``runtime.prepare_process``), before torch is imported, so OpenMP's pool starts at the
requested size and oneDNN / ATen read their caps.
"""

from __future__ import annotations

import os
import sys
import time

from ..core.config import FLAG_KEYS as _TRAIN_KEYS  # the knob registry's flags
from ..hw.runtime import prepare_process, resolve_threads


def options_from_args(cls, args, **extra):
    """``cls`` (an options dataclass) from argparse's namespace: each of its fields that ``args`` holds and is not
    None (a flag left out keeps the dataclass's default), then ``extra``."""
    from dataclasses import fields

    values = {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}
    return cls(**{**values, **extra})


def _quiet_libraries() -> None:
    prepare_process()  # offline, quiet libraries; no "Loading weights" bars (ours stay)
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)




def cmd_train(args) -> dict:
    from ..core.config import resolve_config

    cfg, origin = resolve_config(args.config, {k: getattr(args, k) for k in _TRAIN_KEYS})
    threads = resolve_threads(cfg.threads)
    if cfg.data:
        from ..train.data import load_gsm8k_jsonl

        load_gsm8k_jsonl(cfg.data)  # fail fast on a bad file, before any model is built
    from ..train.memory import fit_batch, shape_of

    cfg = fit_batch(cfg, shape_of(cfg.model))  # unknown model, or a batch that cannot fit: refused here, once
    prepare_process(threads)
    if not args.json:
        changed = ", ".join(f"{k}={getattr(cfg, k)!r} ({v})" for k, v in origin.items()) or "all defaults"
        print(f"config: {changed}", file=sys.stderr)
    name = cfg.model.strip("/").split("/")[-1]
    run_dir = args.run_dir or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S") + f"-{name}")
    if getattr(args, "seeds", None):  # one child `cpugrpo train --seed S` per seed; each records its own row
        from ..runs.training import parse_seeds, run_seeds

        seeds = parse_seeds(args.seeds)
        return run_seeds(_without(args.argv, ("--seeds", "--seed", "--run-dir", "--json")), seeds, run_dir,
                         args.json)
    from ..hw.runtime import PARENT_PID_VAR, die_with_parent

    if os.environ.get(PARENT_PID_VAR):
        die_with_parent()
    from ..runs.training import PROGRESS_ENV, record
    from ..train.trainer import train_and_evaluate

    t0 = time.perf_counter()
    if cfg.processes > 1 or args.nnodes > 1:  # data-parallel ranks through torch's launcher (runs/launch.py)
        from ..runs.launch import LaunchOptions, train_distributed

        metrics = train_distributed(cfg, run_dir, options_from_args(LaunchOptions, args))
    else:
        shown = not args.json or os.environ.get(PROGRESS_ENV) == "1"  # a --seeds child: JSON out, progress shown
        metrics = train_and_evaluate(cfg, run_dir, progress=shown, fitted=True)
    row_file = record(metrics, time.perf_counter() - t0, getattr(args, "results_dir", None))
    if row_file is not None:
        metrics["recorded_in"] = str(row_file)
    return metrics


def _without(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """``argv`` without the ``train`` command word and without ``flags`` (and their values)."""
    out, skip = [], False
    valueless = {"--json"}
    for a in (argv[1:] if argv and argv[0] == "train" else argv):
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in flags:
            skip = "=" not in a and name not in valueless
            continue
        out.append(a)
    return out


# -------------------------------------------------------------------------------------------------------- eval
def cmd_eval(args) -> dict:
    from ..train.evaluate import EvalOptions, run_eval

    opts = options_from_args(EvalOptions, args)
    prepare_process(resolve_threads(opts.threads))
    return run_eval(opts, progress=not args.json)


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
    from ..train.curriculum import FISHER_MODES
    from ..train.data import EVAL_SPLITS

    fishers = [f.strip() for f in args.fisher.split(",") if f.strip()]
    if not fishers or any(f not in FISHER_MODES for f in fishers):
        raise CurriculumError(f"--fisher {args.fisher!r}: use gold, sample or gold,sample")
    splits = [s.strip() for s in (args.eval_splits or "").split(",") if s.strip()] or None
    if splits and any(s not in EVAL_SPLITS for s in splits):
        raise CurriculumError(f"--eval-splits {args.eval_splits!r}: use splits of {', '.join(EVAL_SPLITS)}, e.g. "
                              f"dev,test")
    # without tiny's recipe: its KL anchor, refreshed at every stage, would itself hold the first stage's skill and
    # confound EWC; the study keeps TRL's reward settings unless flags say otherwise
    cfg, _ = resolve_config(args.config, {k: getattr(args, k, None) for k in _TRAIN_KEYS}, recipe=False)
    if cfg.processes > 1:
        raise CurriculumError(f"cpugrpo curriculum runs in one process (its stages and Fisher estimate are not "
                              f"data-parallel): drop --processes {cfg.processes}, or train with cpugrpo train")
    threads = resolve_threads(cfg.threads)
    from ..train.memory import fit_batch, shape_of

    cfg = fit_batch(cfg, shape_of(cfg.model))
    prepare_process(threads)
    from ..hw.runtime import apply_threads
    from ..train import models
    from ..train.curriculum import run_curriculum
    from ..train.trainer import weights_dtype

    apply_threads(threads)
    run_dir = args.run_dir or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S") + "-curriculum")
    studies = []
    t0 = time.perf_counter()
    arms = [(lam, f) for lam in lams for f in (fishers if lam > 0 else fishers[:1])]
    for i, (lam, fisher) in enumerate(arms):  # every arm starts from a fresh load of the same starting model
        if not args.json:
            print(f"arm {i + 1}/{len(arms)}: lambda {lam:g}" + (f", {fisher} Fisher" if lam > 0 else ""),
                  file=sys.stderr, flush=True)
        loaded = models.load(cfg.model, seed=cfg.preset_seed, progress=not args.json, dtype=weights_dtype(cfg))
        studies.append(run_curriculum(cfg, stages, lam, os.path.join(run_dir, f"lambda-{lam:g}-{fisher}"),
                                      fisher_dtype=args.fisher_precision, progress=not args.json, loaded=loaded,
                                      fisher=fisher, eval_splits=tuple(splits) if splits else None))
    from ..runs import study

    out = {"stage_steps": stages, "studies": studies, "seconds": time.perf_counter() - t0, "run_dir": run_dir,
           "config": cfg.to_dict(), "started_at": time.time() - (time.perf_counter() - t0),
           "model_cache_key": loaded.cache_key}
    from ..core.store import atomic_write_json

    atomic_write_json(os.path.join(run_dir, "curriculum.json"), out)  # the arms are kept whatever follows
    out["summary"] = study.summarize(studies)
    atomic_write_json(os.path.join(run_dir, "curriculum.json"), out)
    if "note" not in studies[0]["history"][0]:  # a random-weight preset's accuracies are not evidence
        from ..hw.hardware import detect
        from ..hw.runtime import environment_snapshot

        out["recorded_in"] = str(study.record(out, detect().machine_id, environment_snapshot(), args.results_dir))
    return out


# ------------------------------------------------------------------------------------------- detect and probe
def cmd_detect(args) -> dict:
    prepare_process(isa_cap=args.isa_cap)  # ATen reads its capability cap when torch is imported
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
    from ..hw.probes import ProbeOptions, probe
    opts = options_from_args(ProbeOptions, args)
    prepare_process(max(opts.threads), isa_cap=opts.isa_cap)  # OpenMP's pool at the largest count
    return probe(opts, progress=not args.json)


# ----------------------------------------------------------------------------------------------- rollout-bench
def cmd_rollout_bench(args) -> dict:
    from ..train.rollout import RolloutBenchOptions, rollout_bench

    opts = options_from_args(RolloutBenchOptions, args)
    prepare_process(resolve_threads(opts.threads))
    return rollout_bench(opts, progress=not args.json)


# ------------------------------------------------------------------------------------------- sweep, tune, baseline
def cmd_sweep(args) -> dict:
    from ..runs.sweep import SweepOptions, sweep

    opts = options_from_args(SweepOptions, args)
    prepare_process(isa_cap=opts.isa_cap)  # in the environment the trial processes inherit
    return sweep(opts, progress=not args.json)


def cmd_gate(args) -> dict:
    """`cpugrpo gate`: the tuner's quality gate for one configuration's arithmetic, on the tiny preset."""
    from ..core.config import TrainConfig
    from ..runs import analysis
    from ..runs.gate import gate_one
    from ..runs.tune import TuneOptions

    cfg = TrainConfig(**{k: getattr(args, k) for k in ("update_precision", "rollout_precision", "optimizer",
                                                       "adapter", "learning_rate") if getattr(args, k) is not None})
    threads = resolve_threads(args.threads)
    opts = TuneOptions.make(results_dir=args.results_dir, memory_budget_gb=args.memory_budget_gb)
    prepare_process(threads)
    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr, flush=True))
    return gate_one(opts, analysis.gate_key(cfg.to_dict()), threads, log=log, learning_rate=args.learning_rate)


def cmd_tune(args) -> dict:
    from ..runs.tune import TuneOptions, tune

    opts = options_from_args(TuneOptions, args)
    prepare_process(resolve_threads(None), isa_cap=opts.isa_cap)  # here and in every trial process
    rec = tune(opts, progress=not args.json)
    from ..report.machine import ReportOptions, report

    rec["paths"]["report"] = report(ReportOptions(machine=rec["evidence"]["machine_id"], profiles_dir=opts.profiles_dir,
                                                  results_dir=opts.results_dir))["report"]
    return rec


def cmd_baseline(args) -> dict:
    from ..runs.baseline import BaselineOptions, baseline

    return baseline(options_from_args(BaselineOptions, args), progress=not args.json)


def cmd_report(args) -> dict:
    from ..report.machine import ReportOptions, report

    return report(options_from_args(ReportOptions, args))


def cmd_compare(args) -> dict:
    from ..report.compare import CompareOptions, compare

    return compare(options_from_args(CompareOptions, args))
