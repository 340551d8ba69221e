"""`cpugrpo tune`, the main job: detect -> probe -> search -> quality gate -> Pareto -> recommended.toml -> report.

Search: coordinate descent over the knobs, each trial in its own process (trial.py), in the order threads -> rollout
precision -> update precision -> shared prefix -> gradient checkpointing -> prompts per step. Each axis is swept
with the others held at the best so far; the best samples/s wins. That is sum(|axis|) trials instead of
prod(|axis|). Arms the hardware rules out are pruned before anything runs (no bf16 arms without AVX512-BF16/AMX or
ARM BF16; no config whose estimated peak RSS exceeds the memory budget), and every trial runs under the memory
budget as a hard limit. The two fastest configurations are then measured again with twice the steps, and the
decision uses those.

Quality gate: a candidate counts only if the tiny preset, trained the same short number of steps with the
candidate's update and rollout precision, stays within 2 points of held-out accuracy of the same training at fp32
(paired interval shown). Threads, batch layout, the shared prefix (same log-probs and gradients, tests/test_prefix.py)
and checkpointing do not change the arithmetic of an update, so the gate is per precision pair. Gate trials run at
the default batch so every pair gets the same training budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..core.config import COLUMNS, TrainConfig, from_columns, from_mapping, knob_values, tuner_axes
from ..core.errors import CpugrpoError
from . import analysis

AXES_ORDER = tuple(COLUMNS[name] for name, _ in tuner_axes())  # threads, rollout, update, prefix, ckpt, prompts


@dataclass(frozen=True)
class TuneOptions:
    """What `cpugrpo tune` does. Validated on construction: a bad value is a ConfigError naming the flag and the
    fix. ``measured_steps`` and ``quality_steps`` default by ``quick`` (3 and 15 quick, 4 and 40 full)."""
    model: str = "tiny"                     # --model (the quality gate always uses tiny)
    quick: bool = False                     # --quick
    memory_budget_gb: float | None = None   # --memory-budget; None: 80% of available RAM
    time_budget_min: float | None = None    # --time-budget; None: no limit
    isa_cap: str | None = None              # --isa-cap: tune an emulated lesser ISA
    check_grid: bool = False        # also run the full grid of the same axes, to check the search against it
    profiles_dir: str = "profiles"          # --profiles-dir
    results_dir: str = "results"            # --results-dir
    measured_steps: int | None = None
    quality_steps: int | None = None
    eval_n: int = 600
    num_generations: int = 8
    max_completion_length: int = 48

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
        if self.measured_steps is None:
            normalize(self, "measured_steps", 3 if self.quick else 4)
        if self.quality_steps is None:
            normalize(self, "quality_steps", 15 if self.quick else 40)
        at_least("measured_steps", self.measured_steps, 1)
        at_least("quality_steps", self.quality_steps, 2)  # one warm-up step, then at least one measured
        at_least("eval_n", self.eval_n, 3)
        at_least("num_generations", self.num_generations, 2)
        at_least("max_completion_length", self.max_completion_length, 1)
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


def has_bf16(profile) -> bool:
    f = set(profile.features)
    return bool({"avx512_bf16", "amx_bf16", "bf16", "svebf16"} & f)


def search_space(profile, quick: bool) -> tuple[dict[str, list], list[str]]:
    """The axes the tuner may try on this machine, and why arms were left out. Pure (profile in, dict out).
    Axes, their values and their order come from the knob registry (core/config.py); threads are this machine's
    thread arms; values that need bf16 instructions are pruned on a CPU without them."""
    pruned = []
    have = {"bf16": has_bf16(profile)}
    axes = {}
    for name, k in tuner_axes():
        col = COLUMNS[name]
        values = thread_arms(profile.n_usable) if name == "threads" else knob_values(k)
        dropped = [v for v in values if k.needs.get(v) and not have.get(k.needs[v], True)]
        if dropped:
            pruned.append(f"{k.text(name)} {', '.join(map(str, dropped))}: no AVX512-BF16, AMX or ARM BF16 "
                          f"instructions on this CPU (bf16 would be emulated, slower than fp32)")
        values = [v for v in values if v not in dropped]
        if quick and name != "threads" and knob_values(k, "quick") != knob_values(k):
            kept = [v for v in values if v in knob_values(k, "quick")]
            pruned.append(f"{k.text(name)}: only {', '.join(map(str, kept))} in --quick (the full tune tries "
                          f"{', '.join(map(str, values))})")
            values = kept
        axes[col] = values
    return axes, pruned


def start_point(n_usable: int) -> dict:
    """Where the search starts: the defaults of every axis (TrainConfig's), at every usable CPU."""
    d = TrainConfig()
    start = {COLUMNS[name]: getattr(d, name) for name, _ in tuner_axes()}
    start.update({"threads": n_usable, "prompts_per_step": d.prompts_per_step})
    return start


class Searcher:
    """Runs (or reuses) speed trials; every row goes to the store; spends are counted from outside wall time."""

    def __init__(self, opts: TuneOptions, store, machine_id, budget_mb):
        self.opts, self.store, self.machine_id, self.budget_mb = opts, store, machine_id, budget_mb
        self.rows: dict[str, dict] = {}
        self.spent_s = 0.0
        self.t0 = time.perf_counter()

    def config(self, point: dict) -> TrainConfig:
        base = TrainConfig(model=self.opts.model, num_generations=self.opts.num_generations,
                           max_completion_length=self.opts.max_completion_length)
        return from_mapping(from_columns(point, base.to_dict()), base, origin="tuner point")

    def over_time(self) -> bool:
        b = self.opts.time_budget_min
        return b is not None and time.perf_counter() - self.t0 > b * 60

    def measure(self, point: dict, measured_steps: int | None = None, tag: str = "tune") -> dict:
        from ..train.memory import estimate_peak_mb, shape_of
        from .trial import TrialSpec, run_trial

        cfg = self.config(point)
        need = estimate_peak_mb(shape_of(cfg.model), cfg)["total"]
        spec = TrialSpec(config=cfg.to_dict(), measured_steps=measured_steps or self.opts.measured_steps,
                         memory_limit_mb=self.budget_mb, tag=tag, timeout_s=1800)
        if spec.key in self.rows:
            return self.rows[spec.key]
        if need > self.budget_mb:
            row = {"key": spec.key, "trial_id": f"{spec.key}-skipped", "status": "skipped", "config": cfg.to_dict(),
                   "reason": f"estimated peak {need:.0f} MiB is over the {self.budget_mb:.0f} MiB memory budget",
                   "tag": tag, "machine_id": self.machine_id}
        else:
            row = run_trial(spec, self.machine_id)
            self.spent_s += row["outside"]["wall_s"]
            self.store.append(row)
        row["point"] = dict(point)
        self.rows[spec.key] = row
        return row


def coordinate_descent(start: dict, axes: dict[str, list], measure, over_time=lambda: False, log=print):
    """Sweep one axis at a time from ``start``, keeping the best samples/s; returns (best point, per-axis record).
    ``measure(point) -> row``. Pure apart from ``measure`` and ``log``."""
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
        for value in axes[axis]:
            row = measure({**best, axis: value})
            tried.append((value, analysis.samples_per_s(row), row))
        ok = [(v, s, r) for v, s, r in tried if s is not None]
        if ok:
            v, s, r = max(ok, key=lambda t: t[1])
            best, best_row = {**best, axis: v}, r
        record.append({"axis": axis, "chosen": best[axis],
                       "tried": [{"value": v, "samples_per_s": s, "trial_id": r["trial_id"], "status": r["status"],
                                  "range": _range(r), "reason": r.get("reason")} for v, s, r in tried]})
        log(f"  {axis}: " + ", ".join(f"{v}={s:.1f}" if s else f"{v}=({r['status']})" for v, s, r in tried)
            + f" -> {best[axis]}")
    return best, best_row, record


def _range(row: dict) -> list | None:
    if row.get("status") != "ok":
        return None
    s = row["summary"]["samples_per_s"]
    return [s["min"], s["max"]]


def gate_trial(opts: TuneOptions, pair: tuple[str, str], threads: int, store, machine_id, budget_mb) -> dict:
    from .trial import TrialSpec, run_trial

    cfg = TrainConfig(model="tiny", threads=threads, update_precision=pair[0], rollout_precision=pair[1],
                      eval_n=opts.eval_n, max_completion_length=opts.max_completion_length)
    spec = TrialSpec(config=cfg.to_dict(), measured_steps=opts.quality_steps - 1, evaluate=True, tag="tune-gate",
                     memory_limit_mb=budget_mb, timeout_s=1800)
    row = run_trial(spec, machine_id)
    store.append(row)
    return row


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
    axes, pruned = search_space(profile, opts.quick)
    for p in pruned:
        log(f"pruned: {p}")
    store = TrialStore.for_machine(mid, opts.results_dir)
    s = Searcher(opts, store, mid, budget_mb)
    start = start_point(n)
    log(f"search: coordinate descent over {', '.join(a for a in AXES_ORDER if a in axes)} on {opts.model}")
    best, best_row, record = coordinate_descent(start, axes, s.measure, s.over_time, log)

    # Finalists: the two fastest points, measured again with twice the steps; the decision uses those numbers.
    finalists = _ranked(list(s.rows.values()))[:2]
    confirmed = [s.measure(r["point"], 2 * opts.measured_steps, tag="tune-confirm") for r in finalists]
    confirmed = _ranked(confirmed) + [r for r in _ranked(list(s.rows.values())) if r.get("tag") == "tune"
                                      and r["point"] not in [c["point"] for c in confirmed]]

    # Quality gate, per precision pair, fastest candidates first.
    gate_threads = best["threads"]
    log(f"quality gate: tiny preset, {opts.quality_steps} GRPO steps, {opts.eval_n} held-out problems per pair")
    gates = {("fp32", "fp32"): gate_trial(opts, ("fp32", "fp32"), gate_threads, store, mid, budget_mb)}
    base_acc = gates[("fp32", "fp32")].get("accuracy")
    max_gates = 2 if opts.quick else 4
    chosen, verdicts = None, {}
    for cand in confirmed:
        pair = (cand["point"]["update_precision"], cand["point"]["rollout_precision"])
        if pair not in gates:
            if len(gates) - 1 >= max_gates or s.over_time():
                continue
            gates[pair] = gate_trial(opts, pair, gate_threads, store, mid, budget_mb)
        verdicts[pair] = _verdict(gates[pair], base_acc, pair)
        log(f"  gate {pair[0]} update / {pair[1]} rollout: {verdicts[pair]['text']}")
        if verdicts[pair]["passed"]:
            chosen = cand
            break
    if chosen is None:
        raise TuneError("no configuration passed the quality gate and the fp32 baseline failed too: see the "
                           f"failed trials in {store.path}")
    speed_rows = [r for r in s.rows.values() if r.get("status") == "ok"]
    front = analysis.pareto_front([(analysis.samples_per_s(r), analysis.peak_rss_mb(r)) for r in speed_rows])
    rec = recommend.build(opts, profile, chosen, record, verdicts, gates, speed_rows, front, pruned, s.spent_s,
                          time.perf_counter() - t_start, store.path, budget_mb)
    if opts.check_grid:
        rec["grid_check"] = grid_check(opts, axes, chosen, s.spent_s, store, mid, budget_mb, progress, log)
        # its own file too: a later plain tune rewrites tune.json, and this evidence should outlive it
        atomic_write_json(os.path.join(prof_dir, "grid-check.json"),
                          {"recommendation": rec["train"], "evidence": rec["evidence"],
                           "grid_check": rec["grid_check"]})
    name = recommend.file_name(opts.model)
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
    points = [dict(zip(names, v)) for v in itertools.product(*(axes[a] for a in names))]
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


def _verdict(row: dict, base_acc: dict | None, pair) -> dict:
    if row.get("status") != "ok":
        return {"passed": False, "text": f"gate trial failed: {row.get('reason')}", "trial_id": row["trial_id"]}
    if pair == ("fp32", "fp32"):
        acc = row["accuracy"]["overall"]
        return {"passed": True, "trial_id": row["trial_id"], "candidate": acc["accuracy"], "baseline": acc["accuracy"],
                "difference": 0.0, "text": f"{acc['accuracy']:.1%} (this is the fp32 baseline)"}
    if base_acc is None:
        return {"passed": False, "text": "the fp32 baseline gate trial failed: nothing to compare with",
                "trial_id": row["trial_id"]}
    g = analysis.quality_gate(row["accuracy"], base_acc)
    ci = g.get("ci95")
    ci_text = f" [{ci[0]:+.1%}, {ci[1]:+.1%}]" if ci else ""
    g["text"] = (f"{g['candidate']:.1%} vs fp32 {g['baseline']:.1%}: {g['difference']:+.1%}{ci_text} -> "
                 f"{'passed' if g['passed'] else 'FAILED'} (limit -{g['tolerance']:.0%})")
    g["trial_id"] = row["trial_id"]
    return g
