"""TRL's own ``GRPOTrainer``, run inside a trial process: the peers ``cpugrpo baseline`` measures against.

Two peers, each a plain ``trl.GRPOTrainer`` given the shared work (model, prompts, rewards, completions per step,
group size, max completion length, steps, seed; the threads come from the trial's environment) and ``use_cpu=True``:

- ``trl-defaults``: nothing else set. TRL 1.16 keeps its GPU-minded defaults on CPU: bf16 mixed precision (autocast,
  generation included), gradient checkpointing, lr 1e-6.
- ``trl-cpu``: what an informed CPU user sets on top: ``bf16=False``, ``gradient_checkpointing=False``.

What ran is read back from the built ``GRPOConfig`` and the trainer (``read_back``), never assumed, and mapped onto
the ``TrainConfig`` fields that exist (``as_train_config``). Only wall time per step is timed (TRL has no phase
hooks we did not add ourselves).
"""

from __future__ import annotations

import math
import time

from .measure import RSSSampler, StepMeasurement

# peer -> what it sets besides the shared work and use_cpu=True
PEERS = {"trl-defaults": {}, "trl-cpu": {"bf16": False, "gradient_checkpointing": False}}
LABELS = {"trl-defaults": "TRL defaults", "trl-cpu": "TRL, CPU settings"}  # in tables and the report


def grpo_args(cfg, peer: str, output_dir):
    """The ``GRPOConfig`` of ``peer``: the shared work from ``cfg``, ``use_cpu=True``, the peer's own settings."""
    from trl import GRPOConfig

    # use_cpu=True is the one change TRL needs to run here at all: without it, its default bf16=True refuses to start
    # ("Your setup doesn't support bf16/gpu").
    return GRPOConfig(output_dir=str(output_dir), use_cpu=True, per_device_train_batch_size=cfg.batch_size,
                      num_generations=cfg.num_generations, max_completion_length=cfg.max_completion_length,
                      max_steps=cfg.steps, seed=cfg.seed, reward_weights=[1.0, cfg.format_reward_weight],
                      temperature=cfg.temperature, num_iterations=cfg.num_iterations,
                      scale_rewards=cfg.scale_rewards, logging_steps=1, report_to="none", save_strategy="no",
                      disable_tqdm=True, **PEERS[peer])


def read_back(args, trainer=None) -> dict:
    """What the built ``GRPOConfig`` (and, given, the trainer) will run with: read from the objects themselves."""
    import torch

    out = {"bf16": bool(args.bf16), "fp16": bool(args.fp16),
           "gradient_checkpointing": bool(args.gradient_checkpointing),
           "learning_rate": float(args.learning_rate), "optim": str(getattr(args.optim, "value", args.optim)),
           "per_device_train_batch_size": int(args.per_device_train_batch_size),
           "gradient_accumulation_steps": int(args.gradient_accumulation_steps),
           "num_generations": int(args.num_generations), "max_completion_length": int(args.max_completion_length),
           "max_steps": int(args.max_steps), "beta": float(args.beta), "temperature": float(args.temperature),
           "seed": int(args.seed), "reward_weights": list(args.reward_weights or []),
           "scale_rewards": str(args.scale_rewards), "torch_threads": torch.get_num_threads()}
    if trainer is not None:
        out["mixed_precision"] = str(trainer.accelerator.mixed_precision)
        out["model_gradient_checkpointing"] = bool(getattr(trainer.model, "is_gradient_checkpointing", False))
    return out


def as_train_config(trl_args: dict, cfg) -> dict:
    """``TrainConfig`` fields for what ran (``cfg``: the shared work it was given; the data come from it). A setting
    TRL has no counterpart for keeps ``cfg``'s value only where it does not change the work (evaluation, memory
    budget); the rest is in ``trl_args``. Rollout: TRL generates with the training model itself, so its precision is
    the dtype its linear layers computed in during generation (``rollout_dtype``, observed), else the update's."""
    if trl_args["fp16"]:
        raise ValueError("fp16 has no cpugrpo update precision: not a peer this module runs")
    bf16 = trl_args["bf16"]
    rollout = trl_args.get("rollout_dtype") or ("bfloat16" if bf16 else "float32")
    return {**cfg.to_dict(), "threads": trl_args["torch_threads"],
            "batch_size": trl_args["per_device_train_batch_size"] * trl_args["gradient_accumulation_steps"],
            "num_generations": trl_args["num_generations"], "max_completion_length": trl_args["max_completion_length"],
            "learning_rate": trl_args["learning_rate"], "optimizer": trl_args["optim"], "seed": trl_args["seed"],
            "steps": trl_args["max_steps"], "beta": trl_args["beta"], "temperature": trl_args["temperature"],
            "update_precision": "bf16-autocast" if bf16 else "fp32",
            "rollout_precision": "bf16" if rollout == "bfloat16" else "fp32",
            "gradient_checkpointing": trl_args["gradient_checkpointing"], "shared_prefix": False,
            "scale_rewards": trl_args.get("scale_rewards", "group"),
            "adapter": "none", "int8_lm_head": False, "release_memory": False,
            "micro_batch": trl_args["per_device_train_batch_size"] if trl_args["gradient_accumulation_steps"] > 1
            else None}


def _watch_generation_dtype(model, seen: dict):
    """A forward hook on the model's first linear layer: the dtype it computes in without gradients (generation)."""
    import torch

    first = next((m for m in model.modules() if isinstance(m, torch.nn.Linear)), None)
    if first is None:
        return None

    def hook(module, inputs, output):
        if not torch.is_grad_enabled() and "rollout_dtype" not in seen:
            seen["rollout_dtype"] = str(output.dtype).removeprefix("torch.")

    return first.register_forward_hook(hook)


def run_trl(cfg, peer: str, model, tokenizer, output_dir, on_step=None) -> tuple[list[StepMeasurement], dict]:
    """One peer, inside a trial process: plain ``trl.GRPOTrainer`` with ``grpo_args``. Returns the per-step
    measurements and ``trl_args`` (``read_back`` plus the observed rollout dtype)."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback
    from trl import GRPOTrainer

    from .rewards import correctness_reward, format_reward
    from .trainer import build_dataset

    args = grpo_args(cfg, peer, output_dir)
    records: list[StepMeasurement] = []
    seen: dict = {}
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
            if records and logs:
                records[-1].metrics.update({k: v for k, v in logs.items()
                                            if isinstance(v, (int, float)) and math.isfinite(v)})
                if "completions/mean_length" in logs:  # tokens up to and including EOS, per completion
                    records[-1].completion_tokens = int(round(logs["completions/mean_length"] * cfg.batch_size))

    with RSSSampler() as sampler:
        trainer = GRPOTrainer(model=model, reward_funcs=[correctness_reward, format_reward], args=args,
                              train_dataset=build_dataset(cfg, tokenizer), processing_class=tokenizer)
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(Timer())
        hook = _watch_generation_dtype(trainer.model, seen)
        trainer.train()
        if hook is not None:
            hook.remove()
    return records, {**read_back(trainer.args, trainer), **seen}  # after train(): it enables checkpointing
