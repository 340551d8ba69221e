"""TRL's own ``GRPOTrainer`` with its defaults, run inside a trial process: the peer ``cpugrpo baseline`` measures.

Only ``use_cpu=True`` and what must match the cpugrpo side (model, prompts, rewards, completions per step, group size,
max completion length, steps, seed) are set; everything else is TRL's default. Only wall time per step is timed (TRL
has no phase hooks we did not add ourselves).
"""

from __future__ import annotations

import time

from .measure import RSSSampler, StepMeasurement


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
