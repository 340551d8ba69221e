"""Contextual defaults (Knob.default_if, applied by resolve_config): a default that depends on another knob's value,
used only when neither a config file nor a flag set the knob, and named as such in the origins."""

import pytest

from cpugrpo.core.config import KNOBS, TrainConfig, resolve_config


@pytest.mark.parametrize("model", ["qwen2-0.5b", "qwen2-1.5b"])
def test_large_presets_default_to_one_prompt_in_micro_batches(model):
    cfg, origin = resolve_config(None, {"model": model})
    assert (cfg.batch_size, cfg.micro_batch, cfg.release_memory) == (8, None, False)  # full-parameter: the fast way
    assert origin == {"model": "flag", "batch_size": f"default for model={model}"}
    lora, origin = resolve_config(None, {"model": model, "adapter": "lora"})  # LoRA: the lean way
    assert (lora.batch_size, lora.micro_batch, lora.release_memory, lora.rollout_precision) == (8, 4, True, "bf16")
    assert origin["micro_batch"] == origin["release_memory"] == "default for adapter=lora"
    tiny, _ = resolve_config(None, {"adapter": "lora"})
    assert (tiny.batch_size, tiny.micro_batch) == (64, None)  # tiny's LoRA keeps the whole batch


def test_the_plain_defaults_elsewhere():
    cfg, origin = resolve_config(None, {"model": "small"})
    assert (cfg.batch_size, cfg.micro_batch, cfg.rollout_precision) == (64, None, "fp32")
    assert (cfg.beta, cfg.format_reward_weight, cfg.scale_rewards) == (0.0, 0.25, "group")  # TRL's
    assert origin == {"model": "flag"}
    assert TrainConfig(model="qwen2-0.5b").batch_size == 64  # only resolve_config applies them, not the dataclass


def test_an_explicit_flag_wins_over_a_contextual_default():
    cfg, origin = resolve_config(None, {"model": "qwen2-0.5b", "batch_size": 16, "adapter": "lora"})
    assert cfg.batch_size == 16 and origin["batch_size"] == "flag"
    assert cfg.micro_batch == 4 and origin["micro_batch"] == "default for adapter=lora"
    cfg, origin = resolve_config(None, {"model": "qwen2-0.5b", "micro_batch": 8, "threads": None})
    assert (cfg.batch_size, cfg.micro_batch) == (8, 8) and origin["micro_batch"] == "flag"


def test_lora_defaults_to_bf16_rollouts_unless_the_flag_says_otherwise():
    cfg, origin = resolve_config(None, {"adapter": "lora"})
    assert cfg.rollout_precision == "bf16" and origin["rollout_precision"] == "default for adapter=lora"
    cfg, origin = resolve_config(None, {"adapter": "lora", "rollout_precision": "int8"})
    assert cfg.rollout_precision == "int8" and origin["rollout_precision"] == "flag"
    cfg, origin = resolve_config(None, {"adapter": "lora", "rollout_precision": "fp32"})  # = the plain default
    assert cfg.rollout_precision == "fp32" and origin["rollout_precision"] == "flag"
    cfg, origin = resolve_config(None, {"adapter": "none"})
    assert cfg.rollout_precision == "fp32" and "rollout_precision" not in origin


def test_a_config_file_value_wins_over_a_contextual_default(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[train]\nmodel = "qwen2-0.5b"\nbatch_size = 16\nadapter = "lora"\nrollout_precision = "int8"\n')
    cfg, origin = resolve_config(f, {})
    assert cfg.batch_size == 16 and origin["batch_size"] == f"file {f}"
    assert cfg.rollout_precision == "int8" and origin["rollout_precision"] == f"file {f}"
    assert cfg.micro_batch == 4 and origin["micro_batch"] == "default for adapter=lora"  # the file left it out
    # the context may come from the file and the value from a flag, or the other way round
    g = tmp_path / "d.toml"
    g.write_text('[train]\nmicro_batch = 2\n')
    cfg, origin = resolve_config(g, {"model": "qwen2-1.5b"})
    assert (cfg.batch_size, cfg.micro_batch) == (8, 2)
    assert origin["batch_size"] == "default for model=qwen2-1.5b" and origin["micro_batch"] == f"file {g}"


def test_every_contextual_default_names_a_knob_and_a_valid_value():
    declared = [(name, o, v, d) for name, k in KNOBS.items() for o, v, d in k.default_if]
    assert {name for name, *_ in declared} >= {"batch_size", "micro_batch", "rollout_precision"}
    for name, other, value, default in declared:
        assert other in KNOBS and other != name
        base = TrainConfig(**{other: value})
        d = default(base) if callable(default) else default  # a default may be computed from the config
        TrainConfig(**{other: value, name: d})  # each pair on its own is a valid config


def test_tiny_trains_with_the_recipe_chosen_on_dev_unless_told_otherwise():
    from cpugrpo.core.config import TINY_RECIPE

    cfg, origin = resolve_config(None, {"model": "tiny"})
    assert {k: getattr(cfg, k) for k in TINY_RECIPE} == TINY_RECIPE == \
        {"format_reward_weight": 0.0, "scale_rewards": "none", "beta": 0.04}
    assert all(origin[k] == "default for model=tiny" for k in TINY_RECIPE)
    cfg, origin = resolve_config(None, {"beta": 0.0, "scale_rewards": "group"})
    assert (cfg.beta, cfg.scale_rewards, cfg.format_reward_weight) == (0.0, "group", 0.0)
    assert TrainConfig().beta == 0.0  # trials and the asv suite build TrainConfig directly: the work they measure
