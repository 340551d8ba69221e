"""Sweeps: grid expansion (pure), the append-only trial store, and running a list of trials with resume.

Store format: ``results/<machine-id>/trials.jsonl``, one JSON object per line, one line per trial. A row is
appended with a single ``write`` on an ``O_APPEND`` descriptor under an exclusive lock and fsynced, so a trial is
either fully there or absent; a reader skips (and reports) a torn last line left by a crash mid-write.

Noise: a trial whose measured step times spread by more than ``NOISY_SPREAD`` ((max-min)/median) is flagged and
measured once more with twice the steps; both rows are kept, and analysis uses the newest ok row per key.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.store import TrialStore  # noqa: F401  (re-exported for callers)
from ..core.config import FIELD_NAMES, ConfigError, TrainConfig, from_mapping, read_toml

NOISY_SPREAD = 0.25
ALIASES = {"prompts_per_step": "batch_size"}   # prompts_per_step=k  ->  batch_size = k * num_generations


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
                          f"prompts_per_step")


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

    @classmethod
    def from_toml(cls, path: str | Path) -> "SweepSpec":
        """``[sweep]`` (measured_steps, warmup_steps, evaluate, timeout_s), ``[base]`` and ``[axes]`` tables."""
        doc = read_toml(path, "sweep spec")
        unknown = sorted(set(doc) - {"sweep", "base", "axes"})
        if unknown:
            raise ConfigError(f"sweep spec {path}: unknown table [{unknown[0]}]: use [sweep], [base] and [axes]")
        opts = doc.get("sweep", {})
        bad = sorted(set(opts) - {"measured_steps", "warmup_steps", "evaluate", "timeout_s"})
        if bad:
            raise ConfigError(f"sweep spec {path}: unknown key {bad[0]!r} in [sweep]")
        axes = doc.get("axes", {})
        for k, v in axes.items():
            if not isinstance(v, list) or not v:
                raise ConfigError(f"sweep spec {path}: axis {k!r} must be a non-empty list, e.g. {k} = [1, 2]")
        for k in axes:
            check_axis_name(k)
        from_mapping(doc.get("base", {}), origin=f"sweep spec {path} [base]")
        return cls(base=doc.get("base", {}), axes=axes, **opts)


def expand_grid(base: dict, axes: dict[str, list], max_threads: int | None = None
                ) -> tuple[list[TrainConfig], list[tuple[dict, str]]]:
    """Every combination of ``axes`` over ``base``: (valid configs, [(point, reason skipped)]). Pure.

    >>> ok, skipped = expand_grid({"num_generations": 8}, {"batch_size": [16, 20], "threads": [1, 4]}, max_threads=2)
    >>> [(c.batch_size, c.threads) for c in ok]
    [(16, 1)]
    >>> [r.split(':')[0] for _, r in skipped]
    ['threads 4 exceeds the 2 usable CPUs', 'per-step batch 20 is not divisible by num_generations 8', 'per-step batch 20 is not divisible by num_generations 8']
    """
    names = list(axes)
    ok, skipped, seen = [], [], set()
    for values in itertools.product(*(axes[n] for n in names)):
        point = dict(zip(names, values))
        values_map = dict(base)
        for k, v in point.items():
            if k in ALIASES:
                continue
            values_map[k] = v
        if "prompts_per_step" in point:
            g = values_map.get("num_generations", TrainConfig.num_generations)
            values_map["batch_size"] = point["prompts_per_step"] * g
        try:
            cfg = from_mapping(values_map, origin="grid point")
        except ConfigError as e:
            skipped.append((point, str(e)))
            continue
        if max_threads is not None and cfg.threads is not None and cfg.threads > max_threads:
            skipped.append((point, f"threads {cfg.threads} exceeds the {max_threads} usable CPUs"))
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
    from dataclasses import replace

    from tqdm.auto import tqdm

    from .trial import run_trial

    done = store.done_keys() if resume else set()
    todo = [s for s in specs if s.key not in done]
    rows = []
    bar = tqdm(total=len(todo), desc=desc, unit="trial", disable=not progress, leave=False)
    if resume and len(todo) < len(specs):
        bar.write(f"resume: {len(specs) - len(todo)} of {len(specs)} trials already in {store.path}")
    for spec in todo:
        row = run_trial(spec, machine_id)
        if remeasure_noisy and row["status"] == "ok" and is_noisy(row):
            row["noisy"] = True
            store.append(row)
            rows.append(row)
            spec = replace(spec, measured_steps=2 * spec.measured_steps, tag=(spec.tag + " remeasure").strip())
            row = run_trial(spec, machine_id)
            row["remeasure_of"] = rows[-1]["trial_id"]
            row["noisy"] = is_noisy(row) if row["status"] == "ok" else None
        store.append(row)
        rows.append(row)
        bar.update(1)
        bar.set_postfix(last=_short(row))
    bar.close()
    return rows


def is_noisy(row: dict) -> bool:
    return row["summary"]["wall_s"]["rel_spread"] > NOISY_SPREAD


def _short(row: dict) -> str:
    if row["status"] != "ok":
        return "failed: " + row["reason"][:40]
    return f"{row['summary']['samples_per_s']['median']:.1f} samples/s"


def specs_for(configs: list[TrainConfig], spec: SweepSpec, tag: str = "sweep") -> list:
    from .trial import TrialSpec

    return [TrialSpec(config=c.to_dict(), measured_steps=spec.measured_steps, warmup_steps=spec.warmup_steps,
                      evaluate=spec.evaluate, timeout_s=spec.timeout_s, tag=tag) for c in configs]
