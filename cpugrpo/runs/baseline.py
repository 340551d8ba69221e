"""`cpugrpo baseline`: TRL's GRPOTrainer with its own defaults against a cpugrpo config, interleaved A B A B ...

Both sides train the same model on the same prompts with the same reward functions, the same completions per step
(prompts per step x num_generations), the same max completion length and the same number of steps, each in its own
process (trial.py), and side A needs ``use_cpu=True`` to start at all. Everything else on side A is TRL 1.16's
default: on CPU that means bf16 autocast (generation
included) and gradient checkpointing, generation by the training model, lr 1e-6. Only wall time per step is timed on
side A (TRL has no phase hooks we did not add ourselves); side B has the full phase breakdown. Pairs alternate so
drift (thermal, other load) hits both sides alike; the ratio is reported per pair and as a median with its range.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.config import WORKLOAD_KEYS
from ..core.stats import median_and_spread


def trl_defaults_config(cfg) -> dict:
    """What side A shares with side B; the rest is TRL's default (stated in the module docstring)."""
    shared = {k: v for k, v in cfg.to_dict().items() if k in WORKLOAD_KEYS}
    return {**shared, "shared_prefix": False}  # TRL has no such thing


@dataclass(frozen=True)
class BaselineOptions:
    """What `cpugrpo baseline` compares. Validated on construction: a bad value is a ConfigError naming the flag
    and the fix."""
    config: str | None = None        # --config; None: the machine's recommendation for the model (see config_path)
    model: str | None = None         # --model: over the config's model
    batch_size: int | None = None    # --batch-size: over the config's (same on both sides)
    pairs: int = 3                   # --pairs: A/B pairs, run alternately
    steps: int = 3                   # --steps: measured steps per trial
    profiles_dir: str = "profiles"   # --profiles-dir
    results_dir: str = "results"     # --results-dir

    def __post_init__(self):
        from ..core.options import at_least
        from ..train.models import resolve

        at_least("--pairs", self.pairs, 1)
        at_least("--steps", self.steps, 1)
        if self.batch_size is not None:
            at_least("--batch-size", self.batch_size, 1)
        if self.model is not None:
            resolve(self.model)

    def config_path(self, machine_id: str) -> str:
        """``--config``, else the model's own recommendation if it was tuned, else the machine's default one."""
        import os

        from .recommend import file_name

        if self.config is not None:
            return self.config
        own = os.path.join(self.profiles_dir, machine_id, file_name(self.model or "tiny"))
        return own if os.path.exists(own) else os.path.join(self.profiles_dir, machine_id, "recommended.toml")


def baseline(opts: BaselineOptions, progress: bool = True) -> dict:
    """Resolve the config to compare, check it fits, run the interleaved pairs and record the run."""
    import os

    from ..core.config import resolve_config
    from ..core.errors import ConfigError
    from ..core.store import TrialStore
    from ..hw import hardware
    from ..hw.runtime import resolve_threads
    from ..train.memory import fit_batch, shape_of

    mid = hardware.detect(with_torch=False).machine_id
    config = opts.config_path(mid)
    if not os.path.exists(config):
        raise ConfigError(f"no recommended config at {config}: run `cpugrpo tune --quick` first or pass --config FILE")
    cfg, _ = resolve_config(config, {"model": opts.model, "batch_size": opts.batch_size})
    resolve_threads(cfg.threads)
    fit_batch(cfg, shape_of(cfg.model))  # an unknown model, or a batch that cannot fit: refused before any trial
    store = TrialStore.for_machine(mid, opts.results_dir)
    out = run_baseline(cfg, pairs=opts.pairs, measured_steps=opts.steps, store=store, machine_id=mid,
                       progress=progress)
    out["config_file"] = config
    out["baselines_file"] = str(record(out, mid, config, opts.results_dir))
    return out


def run_baseline(cfg, pairs: int = 3, measured_steps: int = 3, store=None, machine_id=None, progress=True,
                 timeout_s: float = 1800) -> dict:
    """Alternate side A (TRL defaults) and side B (``cfg``) ``pairs`` times; ratios of samples/s per pair."""
    from tqdm.auto import tqdm

    from .trial import TrialSpec, run_trial

    a = TrialSpec(config=trl_defaults_config(cfg), measured_steps=measured_steps, mode="trl-defaults",
                  timeout_s=timeout_s, tag="baseline-trl-defaults")
    b = TrialSpec(config=cfg.to_dict(), measured_steps=measured_steps, timeout_s=timeout_s, tag="baseline-cpugrpo")
    rows = {"trl_defaults": [], "cpugrpo": []}
    bar = tqdm(total=2 * pairs, desc="baseline A/B", unit="trial", disable=not progress, leave=False)
    for _ in range(pairs):
        for side, spec in (("trl_defaults", a), ("cpugrpo", b)):
            row = run_trial(spec, machine_id)
            if store is not None:
                store.append(row)
            rows[side].append(row)
            bar.update(1)
            bar.set_postfix(last=f"{_sps(row) or 0:.1f} samples/s" if row["status"] == "ok" else "failed")
    bar.close()
    return summarize_baseline(rows, cfg)


def _sps(row) -> float | None:
    if row.get("status") != "ok":
        return None
    return row["summary"]["samples_per_s"]["median"]


def summarize_baseline(rows: dict, cfg) -> dict:
    """Pure: per-side medians and the per-pair ratio cpugrpo / TRL defaults (pairs with a failed side dropped,
    and counted)."""
    a = [_sps(r) for r in rows["trl_defaults"]]
    b = [_sps(r) for r in rows["cpugrpo"]]
    ratios = [y / x for x, y in zip(a, b) if x and y]
    out = {"config": cfg.to_dict(), "pairs": len(a), "failed_pairs": len(a) - len(ratios),
           "trl_defaults_samples_per_s": median_and_spread([x for x in a if x]),
           "cpugrpo_samples_per_s": median_and_spread([y for y in b if y]),
           "ratio": median_and_spread(ratios), "ratios": ratios,
           "trial_ids": {k: [r["trial_id"] for r in v] for k, v in rows.items()},
           "failures": [r.get("reason") for v in rows.values() for r in v if r.get("status") != "ok"]}
    for side, rs in rows.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        out[f"{side}_peak_rss_mb"] = max((r["outside"]["os_peak_rss_mb"] or 0) for r in ok) if ok else None
    ok = [r for r in rows["cpugrpo"] if r.get("status") == "ok"]
    out["commit"] = ok[0].get("environment", {}).get("commit") if ok else None
    out["started_at"] = min((r.get("started_at") or 0 for v in rows.values() for r in v), default=None)
    return out


def record(summary: dict, machine_id: str, config_file: str | None, root="results") -> Path:
    """Append one baseline run (its summary and trial ids) to ``results/<machine-id>/baselines.jsonl``, which the
    report reads; the trials themselves are in trials.jsonl."""

    from ..core.paths import portable
    from ..core.store import TrialStore

    store = TrialStore(Path(root) / machine_id / "baselines.jsonl")
    store.append({**summary, "machine_id": machine_id, "config_file": portable(config_file)})  # no home/temp path
    return store.path
