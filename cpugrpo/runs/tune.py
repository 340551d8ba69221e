"""`cpugrpo tune`, the main job: detect -> probe -> search -> quality gate -> Pareto -> recommended.toml -> report.

Search: coordinate descent over the knobs, each trial in its own process (trial.py), in the order threads ->
processes -> rollout precision -> update precision -> shared prefix -> gradient checkpointing -> prompts per step.
Each axis is swept with the others held at the best so far. That is sum(|axis|) trials instead of prod(|axis|).
Processes (data-parallel ranks) and threads per rank share the usable CPUs: no point with P x T over them is tried;
sweeping one of the two, the other gives way (``fit_cpus``: 2 processes after 2 threads on 2 CPUs run 1 thread
each). Arms the hardware rules out are pruned before anything runs (no bf16 arms without AVX512-BF16/AMX or ARM BF16;
no config whose estimated peak RSS, every rank's together, exceeds the memory budget), and every trial runs under the
memory budget as a hard limit. The two fastest
configurations are then measured again with twice the steps, and the decision uses those.

Noise: a trial whose step times spread more than 25% is measured again with twice the steps, as in a sweep
(``sweep.measure``). Every choice between configurations (an axis's value, the finalists) is a Mann-Whitney U test
on their per-step samples/s (``analysis.decide``, alpha 0.05): the fastest median leads, a configuration the test
cannot separate from it is a tie, and a tie goes to the lower peak RSS. The exact test cannot reach 0.05 with 3
steps against 3 (its smallest p is 0.1), so speed trials measure 5 steps (6 in a full tune).

Quality gate: a non-inferiority test on the gain from the same start (``analysis.gate_verdict``). The tiny preset is
trained the gate's budget (``GATE_*`` below) once at fp32 and once per candidate precision pair; the fp32 trial also
evaluates the untrained model on the same held-out items (the start is the same for every pair, so once). A
candidate passes when the lower bound of the 95% paired interval of (candidate after - fp32 after), which is the
difference of their gains, is above -2 points. If the fp32 training did not measurably learn (its gain's interval
includes 0) every verdict is inconclusive, and the tuner falls back to fp32/fp32 and says so. Threads, batch layout,
the shared prefix (same log-probs and gradients, tests/test_prefix.py) and checkpointing do not change the
arithmetic of an update, so the gate is per precision pair; it always trains the tiny preset, also when another model
is tuned (the random-weight presets have no meaningful accuracy of their own). Gate trials are kept out of the speed
statistics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..core.config import (
    COLUMNS,
    KNOBS,
    LARGE_PRESETS,
    TrainConfig,
    from_columns,
    from_mapping,
    knob_values,
    tuner_axes,
    with_context_defaults,
)
from ..core.errors import ConfigError, CpugrpoError
from ..core.knobs import _UNSET
from . import analysis
from .gate import REFERENCE, _verdict, baseline_gain, gate, gate_config, gate_trial  # noqa: F401 (re-exported)

AXES_ORDER = tuple(COLUMNS[name] for name, _ in tuner_axes())  # threads, processes, rollout, ..., prompts
CPU_AXES = ("processes", "threads")  # share the usable CPUs: P x T <= n; both try the machine's thread arms

# The gate's budget: the tiny preset trained GATE_STEPS GRPO steps (warm-up included) at GATE_LEARNING_RATE and
# GATE_BATCH_SIZE completions per step (8 prompts x 8), then GATE_EVAL_N held-out items evaluated greedily. Measured
# on this 2-core machine (docs/LOG.md, 2026-11-22): fp32 gained +3.3 [+2.2, +4.4] and +2.0 [+1.1, +3.0] points at
# step 200 of two runs with different data orders (the 15- and 40-step budgets before gained +0.3 and +1.5: not
# measurable); the two differed by +1.3 [+0.2, +2.4] on 9.1% discordant items, so an equal candidate's lower bound
# sits near -1 point. 3000 items is 3.5x the 9604 x discordance the power calculation asks for and takes ~21 s to
# evaluate. Batch 32 learned about as much per step in 60% of the time, but a second seed fell 5.2 points below the
# first at step 200 (and recovered by 300): a sound run could fail there. A gate trial: ~205 s of training plus
# ~21 s per evaluation. The hyperparameters were chosen on the very held-out items the gate evaluates; that is fine
# for a gate, which compares pairs trained alike from the same start, and says nothing about how well GRPO
# generalizes. The interval covers the choice of items, not training-to-training variation, which the LOG entry
# measures beside it. Those measurements used TRL's reward settings; the gate now trains with tiny's recipe
# (runs/gate.py), chosen on dev for tiny's training (docs/LOG.md, 2026-12-04).
GATE_STEPS = 200
GATE_LEARNING_RATE = 3e-5
GATE_BATCH_SIZE = 64
GATE_EVAL_N = 3000


@dataclass(frozen=True)
class TuneOptions:
    """What `cpugrpo tune` does. Validated on construction: a bad value is a ConfigError naming the flag and the
    fix. ``measured_steps`` defaults by ``quick`` (5 quick, 6 full); the gate's budget is the same in both modes (a
    shorter one does not show fp32 learning, docs/LOG.md 2026-11-22)."""
    model: str = "tiny"                     # --model (the quality gate always uses tiny)
    quick: bool = False                     # --quick
    memory_budget_gb: float | None = None   # --memory-budget; None: 80% of available RAM
    time_budget_min: float | None = None    # --time-budget; None: no limit
    isa_cap: str | None = None              # --isa-cap: tune an emulated lesser ISA
    check_grid: bool = False        # also run the full grid of the same axes, to check the search against it
    profiles_dir: str = "profiles"          # --profiles-dir
    results_dir: str = "results"            # --results-dir
    measured_steps: int | None = None       # per speed trial; 5 (--quick) or 6; 4 on the Qwen2 shapes (~20 s steps)
    quality_steps: int | None = None        # gate: GRPO steps per gate trial (GATE_STEPS)
    eval_n: int | None = None               # gate: held-out items (GATE_EVAL_N)
    gate_learning_rate: float | None = None  # gate: learning rate (GATE_LEARNING_RATE)
    gate_batch_size: int | None = None      # gate: completions per step (GATE_BATCH_SIZE)
    num_generations: int = 8
    max_completion_length: int = 48
    prune: bool = True                      # --prune/--no-prune: skip points predicted slow or over budget (prune.py)
    prune_fraction: float = 0.8             # --prune-fraction: skip below this x the best so far (predicted ratio)

    def __post_init__(self):
        from ..core.options import at_least, is_bool, normalize, positive
        from ..hw.runtime import isa_cap_env
        from ..train.models import resolve

        is_bool("--quick", self.quick)
        is_bool("--check-grid", self.check_grid)
        if self.memory_budget_gb is not None:
            positive("--memory-budget", self.memory_budget_gb, "GB", 8)
        if self.time_budget_min is not None:
            positive("--time-budget", self.time_budget_min, "minutes", 30)
        isa_cap_env(self.isa_cap)
        steps = 4 if self.model in LARGE_PRESETS else 5 if self.quick else 6
        for name, default in (("measured_steps", steps), ("quality_steps", GATE_STEPS),
                              ("eval_n", GATE_EVAL_N), ("gate_learning_rate", GATE_LEARNING_RATE),
                              ("gate_batch_size", GATE_BATCH_SIZE)):
            if getattr(self, name) is None:
                normalize(self, name, default)
        at_least("measured_steps", self.measured_steps, 4)  # 3 against 3 steps: the rank test can never separate
        at_least("quality_steps", self.quality_steps, 2)  # one warm-up step, then at least one measured
        at_least("eval_n", self.eval_n, 3)
        positive("gate_learning_rate", self.gate_learning_rate, "", GATE_LEARNING_RATE)
        at_least("gate_batch_size", self.gate_batch_size, self.num_generations)
        if self.gate_batch_size % self.num_generations:
            raise ConfigError(f"gate_batch_size {self.gate_batch_size} is not a multiple of num_generations "
                              f"{self.num_generations}: use {GATE_BATCH_SIZE}")
        at_least("num_generations", self.num_generations, 2)
        at_least("max_completion_length", self.max_completion_length, 1)
        is_bool("--prune", self.prune)
        if not 0 < self.prune_fraction <= 1:
            raise ConfigError(f"--prune-fraction {self.prune_fraction} is not in (0, 1]: use e.g. 0.8")
        resolve(self.model)  # an unknown preset or a missing directory: refused before anything runs

    @classmethod
    def make(cls, quick: bool = False, **kw) -> "TuneOptions":
        """The options with ``None`` values left to their defaults."""
        return cls(quick=quick, **{k: v for k, v in kw.items() if v is not None})


class TuneError(CpugrpoError, RuntimeError):
    """The tune could not recommend anything (every candidate failed); the message says where to look."""


def thread_arms(n: int) -> list[int]:
    """1, powers of two below n, and n.

    >>> thread_arms(2), thread_arms(6), thread_arms(16)
    ([1, 2], [1, 2, 4, 6], [1, 2, 4, 8, 16])
    """
    out, t = [], 1
    while t < n:
        out.append(t)
        t *= 2
    return out + [n]


def fit_cpus(point: dict, axis: str, n: int) -> dict | None:
    """``point`` with processes x threads within ``n`` usable CPUs: the swept ``axis`` keeps its value and the other
    of the two gives way (n // value); None when the value alone is over n.

    >>> fit_cpus({"processes": 2, "threads": 2}, "processes", 2), fit_cpus({"processes": 2, "threads": 2}, "threads", 3)
    ({'processes': 2, 'threads': 1}, {'processes': 1, 'threads': 2})
    """
    p, t = point.get("processes", 1), point.get("threads", 1)
    if p * t <= n or axis not in CPU_AXES:
        return point
    if point[axis] > n:
        return None
    other = CPU_AXES[CPU_AXES.index(axis) - 1]
    return {**point, other: n // point[axis]}


def has_bf16(profile) -> bool:
    f = set(profile.features)
    return bool({"avx512_bf16", "amx_bf16", "bf16", "svebf16"} & f)


def search_space(profile, quick: bool, model: str = "tiny") -> tuple[dict[str, list], list[str]]:
    """The axes the tuner may try on this machine, and why arms were left out. Pure (profile in, dict out).
    Axes, their values and their order come from the knob registry (core/config.py); threads and processes both
    try this machine's thread arms (the search keeps their product within the usable CPUs); values that need bf16
    instructions are pruned on a CPU without them. On the Qwen2 shapes the batch stays at one prompt (8
    completions): a step there already takes tens of seconds."""
    pruned = []
    have = {"bf16": has_bf16(profile)}
    axes = {}
    for name, k in tuner_axes():
        col = COLUMNS[name]
        values = thread_arms(profile.n_usable) if name in CPU_AXES else knob_values(k)
        dropped = [v for v in values if k.needs.get(v) and not have.get(k.needs[v], True)]
        if dropped:
            pruned.append(f"{k.text(name)} {', '.join(map(str, dropped))}: no AVX512-BF16, AMX or ARM BF16 "
                          f"instructions on this CPU (bf16 would be emulated, slower than fp32)")
        values = [v for v in values if v not in dropped]
        if quick and name not in CPU_AXES and knob_values(k, "quick") != knob_values(k):
            kept = [v for v in values if v in knob_values(k, "quick")]
            pruned.append(f"{k.text(name)}: only {', '.join(map(str, kept))} in --quick (the full tune tries "
                          f"{', '.join(map(str, values))})")
            values = kept
        if name == "batch_size" and model in LARGE_PRESETS:
            pruned.append(f"{k.text(name)}: one prompt per step on {model} (the measured workload there; more "
                          f"prompts multiply a step of tens of seconds)")
            values = [1]
        axes[col] = values
    return axes, pruned


def start_point(n_usable: int, model: str = "tiny", budget_mb: float | None = None, axes: dict | None = None,
                log=lambda msg: None) -> dict:
    """Where the search starts: the defaults of every axis (TrainConfig's, with the model's contextual defaults), at
    every usable CPU. When that is estimated over ``budget_mb``, every axis with a ``lean`` value (the knob
    registry's) that ``axes`` offers starts there instead (bf16 weights with stochastic rounding, Adafactor, bf16
    rollouts that read those weights), and so do the knobs with a lean value that are no axis (micro-batches of at
    most 4, freed memory released at once), so the search starts from something that fits."""
    from ..train.memory import estimate_peak_mb, shape_of

    d, _ = with_context_defaults(TrainConfig(model=model), {"model": "given"}, recipe=False)
    start = {COLUMNS[name]: getattr(d, name) for name, _ in tuner_axes()}
    start.update({"threads": n_usable, "prompts_per_step": d.prompts_per_step})
    if budget_mb is None:
        return start
    shape = shape_of(model)
    need = estimate_peak_mb(shape, from_mapping(from_columns(start, d.to_dict()), d))["total"]
    if need > budget_mb:
        lean = {COLUMNS[n]: k.lean for n, k in tuner_axes()
                if k.lean is not _UNSET and (axes is None or k.lean in axes.get(COLUMNS[n], []))}
        # knobs that are no axis but have a lean value (micro-batches, releasing freed memory) start lean too
        lean.update({n: k.lean(d) if callable(k.lean) else k.lean for n, k in KNOBS.items()
                     if k.axis is None and k.lean is not _UNSET})
        start.update(lean)
        after = estimate_peak_mb(shape, from_mapping(from_columns(start, d.to_dict()), d))["total"]
        log(f"start: the defaults need ~{need:.0f} MiB, over the {budget_mb:.0f} MiB budget; starting lean "
            f"({', '.join(f'{k} {v}' for k, v in lean.items())}: ~{after:.0f} MiB)")
    return start


class Searcher:
    """Runs (or reuses) speed trials; every row goes to the store; spends are counted from outside wall time."""

    def __init__(self, opts: TuneOptions, store, machine_id, budget_mb, run=None):
        self.opts, self.store, self.machine_id, self.budget_mb = opts, store, machine_id, budget_mb
        self.run = run  # runs one TrialSpec (default trial.run_trial); tests pass a fake
        self.pruner = None  # prune.Pruner: points predicted slow or over budget are skipped, with the prediction
        self.rows: dict[str, dict] = {}
        self.spent_s = 0.0
        self.t0 = time.perf_counter()

    def config(self, point: dict) -> TrainConfig:
        base, _ = with_context_defaults(TrainConfig(model=self.opts.model, num_generations=self.opts.num_generations,
                                                    max_completion_length=self.opts.max_completion_length),
                                        {"model": "given", "num_generations": "given",
                                         "max_completion_length": "given"}, recipe=False)
        return from_mapping(from_columns(point, base.to_dict()), base, origin="tuner point")

    def over_time(self) -> bool:
        b = self.opts.time_budget_min
        return b is not None and time.perf_counter() - self.t0 > b * 60

    def measure(self, point: dict, measured_steps: int | None = None, tag: str = "tune") -> dict:
        from ..train.memory import estimate_peak_mb, shape_of
        from .sweep import measure
        from .trial import TrialSpec

        cfg = self.config(point)
        ranks = cfg.processes  # each rank holds its own weights, optimizer state and snapshot
        need = ranks * estimate_peak_mb(shape_of(cfg.model), cfg, -(-cfg.batch_size // ranks))["total"]
        spec = TrialSpec(config=cfg.to_dict(), measured_steps=measured_steps or self.opts.measured_steps,
                         memory_limit_mb=self.budget_mb, tag=tag, timeout_s=1800)
        if spec.key in self.rows:
            return self.rows[spec.key]
        if need > self.budget_mb:
            row = {"key": spec.key, "trial_id": f"{spec.key}-skipped", "status": "skipped", "config": cfg.to_dict(),
                   "reason": f"estimated peak {need:.0f} MiB is over the {self.budget_mb:.0f} MiB memory budget",
                   "tag": tag, "machine_id": self.machine_id}
        elif self.pruner and tag == "tune" and (why := self.pruner.check_rows(cfg, self.rows.values(), self.config)):
            row = {"key": spec.key, "trial_id": f"{spec.key}-skipped", "status": "skipped", "config": cfg.to_dict(),
                   "tag": tag, "machine_id": self.machine_id, "skipped_by": "prediction", **why}
        else:  # a noisy trial is measured again with twice the steps, as in a sweep; the re-measure is used
            done = measure(spec, self.store, self.machine_id, run=self.run)
            self.spent_s += sum(r["outside"]["wall_s"] for r in done)
            row = done[-1]
        row["point"] = dict(point)
        self.rows[spec.key] = row
        return row


def coordinate_descent(start: dict, axes: dict[str, list], measure, over_time=lambda: False, log=print,
                       cpus: int | None = None, order=None):
    """Sweep one axis at a time from ``start``; each axis's value is chosen by ``analysis.decide`` (the fastest
    median unless the rank test calls it a tie, which the lower peak RSS breaks); returns (best point, its row,
    per-axis record). ``measure(point) -> row``. With ``cpus``, no point has processes x threads over it
    (``fit_cpus``), and the CPU axes' record names both. Pure apart from ``measure`` and ``log``."""
    best = dict(start)
    best_row = measure(best)
    record = []
    for axis in AXES_ORDER:
        if axis not in axes:
            continue
        if over_time():
            record.append({"axis": axis, "skipped": "time budget spent"})
            continue
        tried = []
        for value in (order(axis, axes[axis], best) if order else axes[axis]):  # order: prune.Pruner.axis_order
            point = {**best, axis: value} if cpus is None else fit_cpus({**best, axis: value}, axis, cpus)
            if point is not None:
                row = measure(point)
                tried.append((value, analysis.samples_per_s(row), row, point))
        ok = [(v, s, r, p) for v, s, r, p in tried if s is not None]
        decision = None
        if ok:
            decision = analysis.decide([r for _, _, r, _ in ok], [_shown(axis, v, p) for v, _, _, p in ok])
            _, _, best_row, best = ok[decision["chosen"]]
        record.append({"axis": axis, "chosen": best[axis],
                       "tried": [{"value": v, "samples_per_s": s, "trial_id": r["trial_id"], "status": r["status"],
                                  "range": _range(r), "reason": r.get("reason"),
                                  "peak_rss_mb": analysis.peak_rss_mb(r) if s is not None else None,
                                  **({"layout": [p.get(c, 1) for c in CPU_AXES]} if axis in CPU_AXES else {})}
                                 for v, s, r, p in tried],
                       **({"decision": _decision_record(decision)} if decision and len(ok) > 1 else {})})
        log(f"  {axis}: " + ", ".join(f"{_shown(axis, v, p)}={s:.1f}" if s else f"{_shown(axis, v, p)}=({r['status']})"
                                      for v, s, r, p in tried)
            + f" -> {_shown(axis, best[axis], best)}" + (" (tie: lower peak RSS)" if decision and decision["tie"]
                                                         else ""))
    return best, best_row, record


def _shown(axis: str, value, point: dict) -> str:
    """A tried value in words; on a CPU axis the layout it ran, processes x threads ("2x1")."""
    return f"{point.get('processes', 1)}x{point.get('threads')}" if axis in CPU_AXES else str(value)


def _decision_record(d: dict) -> dict:
    return {"tie": d["tie"], "p": d["p"], "alpha": d["alpha"], "text": d["text"]}


def finalists_order(confirmed: list[dict]) -> tuple[list[dict], dict | None]:
    """The re-measured finalists, the one ``analysis.decide`` picks first; and the decision (None for fewer than
    two ok rows). Labels name only the knobs in which the finalists differ."""
    ok = [r for r in confirmed if analysis.samples_per_s(r) is not None]
    if len(ok) < 2:
        return ok, None
    keys = [k for k in ok[0]["point"] if any(r["point"].get(k) != ok[0]["point"][k] for r in ok)]
    labels = [", ".join(f"{k} {r['point'][k]}" for k in keys) or r["trial_id"] for r in ok]
    d = analysis.decide(ok, labels)
    rec = {**_decision_record(d), "trials": [r["trial_id"] for r in ok], "chosen": ok[d["chosen"]]["trial_id"]}
    return [ok[d["chosen"]]] + [r for i, r in enumerate(ok) if i != d["chosen"]], rec


def _range(row: dict) -> list | None:
    if row.get("status") != "ok":
        return None
    s = row["summary"]["samples_per_s"]
    return [s["min"], s["max"]]


def _ranked(rows) -> list[dict]:
    ok = [r for r in rows if analysis.samples_per_s(r) is not None]
    return sorted(ok, key=analysis.samples_per_s, reverse=True)


def tune(opts: TuneOptions, progress=True, log=None) -> dict:
    """Run the whole tuning job; returns the recommendation with its evidence (and writes the files under
    ``opts.profiles_dir`` and ``opts.results_dir``). The caller has put ``opts.isa_cap`` into the environment
    (``runtime.prepare_process``) before torch was imported."""
    import os
    import sys

    from ..core.store import TrialStore, atomic_write_json
    from ..hw import hardware, probes
    from ..train.memory import default_budget_mb
    from . import recommend

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    t_start = time.perf_counter()
    profile = hardware.detect()
    mid = profile.machine_id
    prof_dir = os.path.join(opts.profiles_dir, mid)
    atomic_write_json(os.path.join(prof_dir, "hardware.json"), profile.to_dict())
    log(f"machine {mid}: {profile.model_name}, {profile.n_usable} usable CPUs, ISA class {profile.isa_class}")
    n = profile.n_usable
    probe = probes.run_probes([n] if opts.quick else thread_arms(n), n=512 if opts.quick else 1024,
                              repeats=3 if opts.quick else 5, bw_mb=128 if opts.quick else 256, progress=progress)
    atomic_write_json(os.path.join(prof_dir, "probes.json"), {"machine_id": mid, **probe})
    log(f"probes: fp32 {probes.peak(probe, 'fp32'):.0f} GFLOP/s, bf16 {probes.peak(probe, 'bf16') or 0:.0f} "
        f"GFLOP/s, copy {probes.peak(probe, 'bandwidth'):.1f} GB/s")
    budget_mb = (opts.memory_budget_gb * 1024) if opts.memory_budget_gb else default_budget_mb()
    axes, pruned = search_space(profile, opts.quick, opts.model)
    for p in pruned:
        log(f"pruned: {p}")
    store = TrialStore.for_machine(mid, opts.results_dir)
    s = Searcher(opts, store, mid, budget_mb)
    start = start_point(n, opts.model, budget_mb, axes, log)
    log(f"search: coordinate descent over {', '.join(a for a in AXES_ORDER if a in axes)} on {opts.model}")
    if opts.prune:
        from . import prune

        s.pruner = prune.for_machine(mid, opts.profiles_dir, opts.prune_fraction, budget_mb)
    best, best_row, record = coordinate_descent(start, axes, s.measure, s.over_time, log, cpus=n,
                                                order=s.pruner and s.pruner.axis_order(s.config))

    # Finalists: the two fastest points, measured again with twice the steps; the rank test on those decides.
    finalists = _ranked(list(s.rows.values()))[:2]
    confirmed = [s.measure(r["point"], 2 * opts.measured_steps, tag="tune-confirm") for r in finalists]
    ordered, final = finalists_order(confirmed)
    if final:
        log(f"finalists: {final['text']}")
    candidates = ordered + [r for r in _ranked(list(s.rows.values())) if r.get("tag") in ("tune", "tune remeasure")
                            and r["point"] not in [c["point"] for c in ordered]]

    # Quality gate, per precision pair, the preferred candidates first.
    gate_threads = best["threads"] * best.get("processes", 1)  # the gate trains in one process, on the pick's CPUs
    log(f"quality gate: tiny preset, {opts.quality_steps} GRPO steps at lr {opts.gate_learning_rate:g}, batch "
        f"{opts.gate_batch_size}, {opts.eval_n} held-out problems before (fp32, once) and after each pair")
    chosen, verdicts, gates, base_gain = gate(
        candidates, lambda pair, before: gate_trial(opts, pair, gate_threads, store, mid, budget_mb, before),
        max_gates=2 if opts.quick else 4, over_time=s.over_time, log=log)
    if chosen is None:
        raise TuneError("no configuration passed the quality gate and no fp32/fp32 speed trial succeeded to fall "
                        f"back on: see the failed trials in {store.path}")
    speed_rows = [r for r in s.rows.values() if r.get("status") == "ok" and not r.get("spec", {}).get("evaluate")]
    front = analysis.pareto_front([(analysis.samples_per_s(r), analysis.peak_rss_mb(r)) for r in speed_rows])
    rec = recommend.build(opts, profile, chosen, record, verdicts, gates, speed_rows, front, pruned, s.spent_s,
                          time.perf_counter() - t_start, store.path, budget_mb, final=final, gate_budget={
                              "model": "tiny", "steps": opts.quality_steps, "learning_rate": opts.gate_learning_rate,
                              "batch_size": opts.gate_batch_size, "eval_n": opts.eval_n,
                              "fp32_gain": {k: base_gain.get(k) for k in ("difference", "ci95", "learned", "text")}})
    if opts.check_grid:
        rec["grid_check"] = grid_check(opts, axes, chosen, s.spent_s, store, mid, budget_mb, progress, log)
        # its own file too: a later plain tune rewrites tune.json, and this evidence should outlive it
        atomic_write_json(os.path.join(prof_dir, "grid-check.json"),
                          {"recommendation": rec["train"], "evidence": rec["evidence"],
                           "grid_check": rec["grid_check"]})
    name = recommend.file_name(opts.model)
    if s.pruner:  # every point the prediction kept from running, with its prediction (prune.py)
        rec["evidence"]["pruned_by_prediction"] = {"fraction": opts.prune_fraction, "skipped": s.pruner.skipped}
        rec["reasons"]["pruned_by_prediction"] = s.pruner.summary()
    rec["paths"] = {"recommended": recommend.write(rec, os.path.join(prof_dir, name)),
                    "trials": str(store.path)}
    atomic_write_json(os.path.join(prof_dir, name.replace("recommended", "tune").replace(".toml", ".json")), rec)
    rec["seconds"] = time.perf_counter() - t_start
    return rec


def grid_check(opts, axes, chosen, search_s, store, mid, budget_mb, progress, log) -> dict:
    """Every point of the tuner's search space, measured afresh: is the tuner's pick within 5% of the grid's best,
    and what fraction of the grid's trial time did the search spend?"""
    import itertools

    from tqdm.auto import tqdm

    grid = Searcher(opts, store, mid, budget_mb)
    names = [a for a in AXES_ORDER if a in axes]
    n = max(axes.get("threads") or [1])  # the thread arms end at the usable CPUs
    points = [p for v in itertools.product(*(axes[a] for a in names)) for p in [dict(zip(names, v))]
              if p.get("processes", 1) * p.get("threads", 1) <= n]
    log(f"grid check: {len(points)} points over {', '.join(names)}")
    for p in tqdm(points, desc="full grid", unit="trial", disable=not progress, leave=False):
        grid.measure(p, tag="grid-check")
    ranked = _ranked(list(grid.rows.values()))
    best = ranked[0]
    pick = next(r for r in grid.rows.values() if r["point"] == chosen["point"])
    out = {"grid_points": len(points), "grid_trial_seconds": grid.spent_s, "search_trial_seconds": search_s,
           "time_fraction": search_s / grid.spent_s, "grid_best": analysis.samples_per_s(best),
           "grid_best_point": best["point"], "grid_best_trial": best["trial_id"],
           "pick_in_grid": analysis.samples_per_s(pick), "pick_trial": pick["trial_id"],
           "pick_vs_best": analysis.samples_per_s(pick) / analysis.samples_per_s(best),
           "grid_top5": [{"point": r["point"], "samples_per_s": analysis.samples_per_s(r), "range": _range(r)}
                         for r in ranked[:5]]}
    log(f"grid check: pick {out['pick_in_grid']:.1f} samples/s vs grid best {out['grid_best']:.1f} "
        f"({out['pick_vs_best']:.1%}); search spent {search_s:.0f} s of trial time vs {grid.spent_s:.0f} s "
        f"({out['time_fraction']:.1%})")
    return out
