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

import time

from .measure import RSSSampler, StepMeasurement, median_and_spread


def run_trl_defaults(cfg, model, tokenizer, output_dir, on_step=None) -> list[StepMeasurement]:
    """Side A, inside a trial process: plain ``trl.GRPOTrainer``, TRL defaults except what must match side B."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOConfig, GRPOTrainer

    from .rewards import correctness_reward, format_reward
    from .trainer import build_dataset

    # use_cpu=True is the one change TRL needs to run here at all: without it, its default bf16=True refuses to start
    # ("Your setup doesn't support bf16/gpu").
    args = GRPOConfig(output_dir=str(output_dir), use_cpu=True, per_device_train_batch_size=cfg.batch_size,
                      num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                      max_steps=cfg.steps, seed=cfg.seed, reward_weights=[1.0, cfg.format_reward_weight],
                      logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True)
    records: list[StepMeasurement] = []
    nan = float("nan")

    class Timer(TrainerCallback):
        def on_step_begin(self, a, state, control, **kw):
            self.t0 = time.perf_counter()
            sampler.take_peak()

        def on_step_end(self, a, state, control, **kw):
            wall = time.perf_counter() - self.t0
            records.append(StepMeasurement(step=state.global_step, wall_s=wall, rollout_s=nan, scoring_s=nan,
                                           update_s=nan, completions=cfg.batch_size, completion_tokens=0,
                                           peak_rss_mb=sampler.take_peak(), cpu_util=nan))
            if on_step is not None:
                on_step(records[-1])

        def on_log(self, a, state, control, logs=None, **kw):
            if records and logs and "completions/mean_length" in logs:
                records[-1].completion_tokens = int(round(logs["completions/mean_length"] * cfg.batch_size))

    with RSSSampler() as sampler:
        trainer = GRPOTrainer(model=model, reward_funcs=[correctness_reward, format_reward], args=args,
                              train_dataset=build_dataset(cfg, tokenizer), processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(Timer())
        trainer.train()
    return records


def trl_defaults_config(cfg) -> dict:
    """What side A shares with side B; the rest is TRL's default (stated in the module docstring)."""
    keep = ("model", "batch_size", "num_generations", "max_completion_length", "seed", "threads",
            "format_reward_weight")
    return {**{k: v for k, v in cfg.to_dict().items() if k in keep}, "shared_prefix": False}  # TRL has no such thing


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
    from pathlib import Path

    from .sweep import TrialStore

    store = TrialStore(Path(root) / machine_id / "baselines.jsonl")
    store.append({**summary, "machine_id": machine_id, "config_file": config_file})
    return store.path
