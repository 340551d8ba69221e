"""Sweeps: grid expansion (pure), and running a list of trials with resume.

Each trial's row is appended to the trial store, ``results/<machine-id>/trials.jsonl`` (``TrialStore`` in
core/store.py: one JSON object per line, appended whole or not at all; a torn last line is reported, not fatal).

Noise: a trial whose measured step times spread by more than ``NOISY_SPREAD`` ((max-min)/median) is flagged and
measured once more with twice the steps; both rows are kept, and analysis uses the newest ok row per key.
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import ALIASES, FIELD_NAMES, ConfigError, TrainConfig, from_columns, from_mapping, read_toml
from ..core.store import TrialStore

NOISY_SPREAD = 0.25


def parse_value(text: str):
    """An axis value from the command line: int, float, bool, or string.

    >>> [parse_value(x) for x in ("2", "3e-5", "true", "int8")]
    [2, 3e-05, True, 'int8']
    """
    low = text.strip().lower()
    if low in ("true", "on", "yes"):
        return True
    if low in ("false", "off", "no"):
        return False
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text.strip()


def check_axis_name(name: str) -> None:
    if name not in FIELD_NAMES and name not in ALIASES:
        raise ConfigError(f"unknown axis {name!r}: use a training key ({', '.join(FIELD_NAMES)}) or "
                          f"{' or '.join(ALIASES)}")


def parse_axes(items: list[str]) -> dict[str, list]:
    """``["threads=1,2", "rollout_precision=fp32,int8"]`` -> {"threads": [1, 2], ...}; names are checked."""
    axes = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise ConfigError(f"axis {item!r} is not name=v1,v2: use e.g. --axis threads=1,2")
        check_axis_name(name)
        axes[name] = [parse_value(v) for v in values.split(",")]
    return axes


@dataclass(frozen=True)
class SweepSpec:
    base: dict = field(default_factory=dict)     # fixed training keys for every point
    axes: dict = field(default_factory=dict)     # name -> list of values
    measured_steps: int = 3
    warmup_steps: int = 1
    evaluate: bool = False
    timeout_s: float = 900.0
    mode: str = "cpugrpo"                 # or a TRL peer (trl-defaults, trl-cpu): plain GRPOTrainer on the same work
    memory_limit_mb: float | None = None  # a trial passing it is killed and recorded as out of memory

    def __post_init__(self):
        from ..core.options import at_least, is_bool, positive
        from .trial import MODES

        if self.mode not in MODES:
            raise ConfigError(f"unknown mode {self.mode!r} in [sweep]: use one of {', '.join(MODES)}")
        if self.memory_limit_mb is not None:
            positive("memory_limit_mb", self.memory_limit_mb, "MiB", 8192)
        at_least("measured_steps", self.measured_steps, 1)
        at_least("warmup_steps", self.warmup_steps, 0)
        is_bool("evaluate", self.evaluate)
        positive("timeout_s", self.timeout_s, "seconds", 900)

    @classmethod
    def from_toml(cls, path: str | Path) -> "SweepSpec":
        """``[sweep]`` (measured_steps, warmup_steps, evaluate, timeout_s, mode, memory_limit_mb), ``[base]`` and
        ``[axes]`` tables."""
        doc = read_toml(path, "sweep spec")
        unknown = sorted(set(doc) - {"sweep", "base", "axes"})
        if unknown:
            raise ConfigError(f"sweep spec {path}: unknown table [{unknown[0]}]: use [sweep], [base] and [axes]")
        opts = doc.get("sweep", {})
        bad = sorted(set(opts) - {"measured_steps", "warmup_steps", "evaluate", "timeout_s", "mode",
                                  "memory_limit_mb"})
        if bad:
            raise ConfigError(f"sweep spec {path}: unknown key {bad[0]!r} in [sweep]")
        axes = doc.get("axes", {})
        for k, v in axes.items():
            if not isinstance(v, list) or not v:
                raise ConfigError(f"sweep spec {path}: axis {k!r} must be a non-empty list, e.g. {k} = [1, 2]")
        for k in axes:
            check_axis_name(k)
        from_mapping(doc.get("base", {}), origin=f"sweep spec {path} [base]")
        try:
            return cls(base=doc.get("base", {}), axes=axes, **opts)
        except ConfigError as e:
            raise ConfigError(f"sweep spec {path} [sweep]: {e}") from None


NO_AXES = "no axes to sweep: pass --spec FILE or --axis name=v1,v2 (e.g. --axis threads=1,2)"


@dataclass(frozen=True)
class SweepOptions:
    """What `cpugrpo sweep` runs. Validated on construction: a bad value is a ConfigError naming the flag and the
    fix. Flags override the spec file: ``axis`` over its [axes], ``model`` over [base], ``steps``/``timeout``/
    ``evaluate`` over [sweep]."""
    spec: str | None = None          # --spec: TOML with [sweep], [base] and [axes] tables
    axis: tuple[str, ...] = ()       # --axis name=v1,v2 (repeatable)
    model: str | None = None         # --model: the model of every point
    steps: int | None = None         # --steps: measured steps per trial
    evaluate: bool = False           # --evaluate: also evaluate each trained trial
    timeout: float | None = None     # --timeout: seconds before a trial is killed
    resume: bool = False             # --resume: skip trials already in the store
    isa_cap: str | None = None       # --isa-cap: every trial on an emulated lesser ISA
    results_dir: str = "results"     # --results-dir

    def __post_init__(self):
        from ..core.options import at_least, is_bool, normalize, positive
        from ..hw.runtime import isa_cap_env
        from ..train.models import resolve

        normalize(self, "axis", tuple(self.axis or ()))
        if self.steps is not None:
            at_least("--steps", self.steps, 1)
        if self.timeout is not None:
            positive("--timeout", self.timeout, "seconds", 900)
        is_bool("--evaluate", self.evaluate)
        is_bool("--resume", self.resume)
        isa_cap_env(self.isa_cap)
        parse_axes(list(self.axis))  # names and syntax, before anything runs
        if not self.spec and not self.axis:
            raise ConfigError(NO_AXES)
        if self.model is not None:
            resolve(self.model)


def sweep(opts: SweepOptions, progress: bool = True, log=None) -> dict:
    """Expand the grid of ``opts`` and run each point in its own trial process; returns the rows and what was
    skipped. The caller has put ``opts.isa_cap`` into the environment (the trials inherit it)."""
    import sys
    from dataclasses import replace

    from ..hw import hardware
    from ..hw.runtime import usable_cpus

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    spec = SweepSpec.from_toml(opts.spec) if opts.spec else SweepSpec()
    axes = {**spec.axes, **parse_axes(list(opts.axis))}
    if not axes:
        raise ConfigError(NO_AXES)
    base = {**spec.base, **({"model": opts.model} if opts.model else {})}
    over = {k: v for k, v in (("measured_steps", opts.steps), ("timeout_s", opts.timeout)) if v is not None}
    if opts.evaluate:
        over["evaluate"] = True
    spec = replace(spec, **over)
    configs, skipped = expand_grid(base, axes, max_threads=usable_cpus())
    if not configs:
        raise ConfigError(f"every grid point is invalid ({skipped[0][1]}): change the axes")
    mid = hardware.detect(with_torch=False).machine_id
    store = TrialStore.for_machine(mid, opts.results_dir)
    for point, reason in skipped:
        log(f"skipped {point}: {reason}")
    rows = run_trials(specs_for(configs, spec), store, mid, resume=opts.resume, progress=progress)
    return {"machine_id": mid, "store": str(store.path), "trials": rows,
            "skipped": [{"point": p, "reason": r} for p, r in skipped], "grid_points": len(configs)}


def expand_grid(base: dict, axes: dict[str, list], max_threads: int | None = None
                ) -> tuple[list[TrainConfig], list[tuple[dict, str]]]:
    """Every combination of ``axes`` over ``base``: (valid configs, [(point, reason skipped)]). Pure.

    >>> ok, skipped = expand_grid({"num_generations": 8}, {"batch_size": [16, 20], "threads": [1, 4]}, max_threads=2)
    >>> [(c.batch_size, c.threads) for c in ok]
    [(16, 1)]
    >>> for _, r in skipped: print(r.split(':')[0])
    threads 4 exceeds the 2 usable CPUs
    per-step batch 20 is not divisible by num_generations 8
    per-step batch 20 is not divisible by num_generations 8
    """
    names = list(axes)
    ok, skipped, seen = [], [], set()
    for values in itertools.product(*(axes[n] for n in names)):
        point = dict(zip(names, values))
        values_map = {**base, **from_columns(point, base)}
        try:
            cfg = from_mapping(values_map, origin="grid point")
        except ConfigError as e:
            skipped.append((point, str(e)))
            continue
        if max_threads is not None and cfg.threads is not None and cfg.threads > max_threads:
            skipped.append((point, f"threads {cfg.threads} exceeds the {max_threads} usable CPUs"))
            continue
        if max_threads is not None and cfg.threads is not None and cfg.processes * cfg.threads > max_threads:
            skipped.append((point, f"processes {cfg.processes} x threads {cfg.threads} exceeds the {max_threads} "
                                   f"usable CPUs"))
            continue
        key = json.dumps(cfg.to_dict(), sort_keys=True)
        if key in seen:
            skipped.append((point, "duplicate of an earlier point"))
            continue
        seen.add(key)
        ok.append(cfg)
    return ok, skipped


def run_trials(specs: list, store: TrialStore, machine_id: str, resume: bool = False, progress: bool = True,
               remeasure_noisy: bool = True, desc: str = "sweep") -> list[dict]:
    """Run each TrialSpec in its own process, append its row, re-measure noisy ones. Failed trials are rows too."""
    from tqdm.auto import tqdm

    stored, problems = store.rows() if resume else ([], [])
    done = {r["key"] for r in stored if "key" in r}
    todo = [s for s in specs if s.key not in done]
    rows = []
    bar = tqdm(total=len(todo), desc=desc, unit="trial", disable=not progress, leave=False)
    for problem in problems:  # a torn line (a run killed mid-write): its trial, if it was one, runs again
        bar.write(f"resume: {problem}", file=sys.stderr)
    if resume and len(todo) < len(specs):
        bar.write(f"resume: {len(specs) - len(todo)} of {len(specs)} trials already in {store.path}", file=sys.stderr)
    for spec in todo:
        rows += measure(spec, store, machine_id, remeasure_noisy)
        bar.update(1)
        bar.set_postfix(last=_short(rows[-1]))
    bar.close()
    return rows


def measure(spec, store: TrialStore, machine_id: str, remeasure_noisy: bool = True, run=None) -> list[dict]:
    """Run one TrialSpec and append its row; a noisy ok row (``is_noisy``) is kept, flagged, and measured once more
    with twice the steps (tag "... remeasure", ``remeasure_of`` its trial id). Returns the rows appended, the one to
    use last. Sweeps and the tuner both measure through here. ``run`` defaults to ``trial.run_trial``."""
    from dataclasses import replace

    if run is None:
        from .trial import run_trial as run
    row = run(spec, machine_id)
    rows = [row]
    if remeasure_noisy and row["status"] == "ok" and is_noisy(row):
        row["noisy"] = True
        store.append(row)
        again = run(replace(spec, measured_steps=2 * spec.measured_steps, tag=(spec.tag + " remeasure").strip()),
                    machine_id)
        again["remeasure_of"] = row["trial_id"]
        again["noisy"] = is_noisy(again) if again["status"] == "ok" else None
        rows.append(again)
    store.append(rows[-1])
    return rows


def is_noisy(row: dict) -> bool:
    """Measured step times spread by more than ``NOISY_SPREAD`` ((max - min) / median)."""
    return row["summary"]["wall_s"]["rel_spread"] > NOISY_SPREAD


def _short(row: dict) -> str:
    if row["status"] != "ok":
        return "failed: " + row["reason"][:40]
    return f"{row['summary']['samples_per_s']['median']:.1f} samples/s"


def specs_for(configs: list[TrainConfig], spec: SweepSpec, tag: str = "sweep") -> list:
    from .trial import TrialSpec

    return [TrialSpec(config=c.to_dict(), measured_steps=spec.measured_steps, warmup_steps=spec.warmup_steps,
                      evaluate=spec.evaluate, timeout_s=spec.timeout_s, tag=tag, mode=spec.mode,
                      memory_limit_mb=spec.memory_limit_mb) for c in configs]
