import json
import math

import pytest
import torch

from cpugrpo.core.config import TrainConfig
from cpugrpo.train import models, trainer


def length_reward(completions, **kwargs):
    """A reward with variance inside every group, so a random model still gets non-zero advantages."""
    return [len(c) / 10.0 for c in completions]


def _cfg(tiny_dir, **kw):
    base = dict(model=str(tiny_dir), steps=2, batch_size=8, num_generations=4, max_completion_length=12,
                eval_n=6, learning_rate=1e-3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("kw", [{}, {"rollout_precision": "int8"}, {"rollout_precision": "bf16",
                                                                       "gradient_checkpointing": True},
                                {"optimizer": "adafactor"}])
def test_two_steps_change_every_parameter(tiny_dir, tmp_path, kw):
    loaded = models.load(str(tiny_dir))
    before = {n: p.detach().clone() for n, p in loaded.model.named_parameters()}
    steps = trainer.run_grpo(_cfg(tiny_dir, **kw), loaded.model, loaded.tokenizer, tmp_path, progress=False,
                             reward_funcs=[length_reward])
    assert len(steps) == 2
    for s in steps:
        assert math.isfinite(s.metrics["loss"])
        assert s.completions == 8 and s.completion_tokens > 0
        assert s.wall_s >= s.rollout_s + s.scoring_s > 0
        assert s.peak_rss_mb > 0
    unchanged = [n for n, p in loaded.model.named_parameters() if torch.equal(before[n], p.detach())]
    assert not unchanged
    # the shared-prompt update runs unless checkpointing is on (transformers drops the cache there): rows say which
    assert all(s.metrics["shared_prefix_ran"] == (not kw.get("gradient_checkpointing", False)) for s in steps)


@pytest.mark.parametrize("name,cls", [("adamw_torch_fused", "AdamW"), ("adamw_torch", "AdamW"),
                                      ("adafactor", "Adafactor")])
def test_optimizer_knob_reaches_the_trainer(tmp_path, name, cls):
    from transformers import Trainer

    args = trainer.grpo_args(TrainConfig(optimizer=name), str(tmp_path))
    opt_cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    assert opt_cls.__name__ == cls
    assert kwargs.get("fused", False) == (name == "adamw_torch_fused")


def test_reference_model_and_bf16_weights(tiny_dir, tmp_path):
    loaded = models.load(str(tiny_dir))
    steps = trainer.run_grpo(_cfg(tiny_dir, beta=0.1, ref_precision="bf16", update_precision="bf16"),
                             loaded.model, loaded.tokenizer, tmp_path, progress=False, reward_funcs=[length_reward])
    assert "kl" in steps[-1].metrics and math.isfinite(steps[-1].metrics["kl"])
    assert next(loaded.model.parameters()).dtype == torch.bfloat16


def test_train_and_evaluate_writes_a_reloadable_run(tiny_dir, tmp_path):
    from cpugrpo.train import evaluate

    m = trainer.train_and_evaluate(_cfg(tiny_dir, eval_n=9), tmp_path / "run", progress=False)
    assert m["summary"]["measured_steps"] == 1
    for k in ("samples_per_s", "tokens_per_s", "rollout_s", "scoring_s", "update_s", "peak_rss_mb"):
        assert m["summary"][k]["median"] > 0
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["accuracy_after"] == m["accuracy_after"]
    assert (tmp_path / "run" / "config.toml").exists()
    again = models.load(str(tmp_path / "run" / "model"))
    r = evaluate.evaluate(again.model, again.tokenizer, n=9, progress=False, max_new_tokens=12)
    assert r.overall.correct == m["accuracy_after"]["overall"]["correct"]


def test_micro_batches_reach_the_trainer_as_gradient_accumulation(tmp_path):
    args = trainer.grpo_args(TrainConfig(batch_size=16, num_generations=8, micro_batch=4), str(tmp_path))
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 4)
    args = trainer.grpo_args(TrainConfig(batch_size=16, num_generations=8), str(tmp_path))  # default: one pass
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (16, 1)


@pytest.mark.parametrize("micro", [3, 0, 32])
def test_a_micro_batch_that_does_not_divide_the_batch_is_refused(micro):
    from cpugrpo.core.errors import ConfigError

    with pytest.raises(ConfigError, match=f"micro_batch {micro} does not divide the batch 16: use a divisor of it, "
                                          f"e.g. 8"):
        TrainConfig(batch_size=16, num_generations=8, micro_batch=micro)


def test_one_step_in_two_micro_batches_is_one_measured_step(tiny_dir, tmp_path, monkeypatch):
    from .test_adapters import _spy_trainer

    built = _spy_trainer(monkeypatch)
    loaded = models.load(str(tiny_dir))
    steps = trainer.run_grpo(_cfg(tiny_dir, steps=1, batch_size=16, num_generations=8, micro_batch=8),
                             loaded.model, loaded.tokenizer, tmp_path, progress=False, reward_funcs=[length_reward])
    assert len(steps) == 1
    s = steps[0]
    assert s.completions == 16 and s.completion_tokens > 0 and math.isfinite(s.metrics["loss"])
    # the update ran as two micro-batches of 8 rows (each a shared-prefix pass, then the completions' pass)
    scored = [w["rows"] for w in built[0].phase["work"] if w.get("used") != "kv"]
    assert scored == [8, 8]
    assert s.update_flops > 0 and s.metrics["shared_prefix_ran"]


def test_check_installed_refuses_a_missing_optional_optimizer(monkeypatch):
    import importlib.util

    from cpugrpo.core.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("torchao", "bitsandbytes")
                        else real(name, *a))
    for name, lib in (("adamw_torch_8bit", "torchao"), ("adamw_bnb_8bit", "bitsandbytes")):
        with pytest.raises(ConfigError, match=f"optimizer {name} needs {lib}, which is not installed: pip install"):
            trainer.check_installed(TrainConfig(optimizer=name))
    for name in ("adamw_torch_fused", "adamw_torch", "adafactor"):  # no optional library: nothing to check
        trainer.check_installed(TrainConfig(optimizer=name))


def test_check_installed_passes_when_the_library_is_there(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    trainer.check_installed(TrainConfig(optimizer="adamw_torch_8bit"))
