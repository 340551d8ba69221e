import pytest

from cpugrpo.core.config import ConfigError, TrainConfig, dump_toml, from_mapping, load_toml, resolve_config


def test_defaults_are_valid():
    cfg = TrainConfig()
    assert cfg.prompts_per_step * cfg.num_generations == cfg.batch_size


@pytest.mark.parametrize("kwargs,needle", [
    ({"batch_size": 5, "num_generations": 2}, "per-step batch 5 is not divisible by num_generations 2: use 4 or 6"),
    ({"batch_size": 4, "num_generations": 8}, "smaller than num_generations"),
    ({"num_generations": 1, "batch_size": 4}, "at least 2"),
    ({"threads": 0}, "threads must be at least 1"),
    ({"steps": 0}, "steps must be at least 1"),
    ({"update_precision": "fp16"}, "unknown update precision 'fp16': use one of fp32, bf16-autocast, bf16"),
    ({"rollout_precision": "int4"}, "unknown rollout precision"),
    ({"beta": -1.0}, "beta must be >= 0"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"temperature": 0.0}, "temperature"),
    ({"steps": "3"}, "steps must be an integer"),
    ({"gradient_checkpointing": 1}, "must be true or false"),
    ({"difficulties": ("basic", "expert")}, "unknown difficulty 'expert'"),
    ({"memory_budget_gb": 0.0}, "memory_budget_gb must be > 0"),
])
def test_validation_messages(kwargs, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        TrainConfig(**kwargs)


def test_unknown_key_and_precedence(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'stepz'"):
        from_mapping({"stepz": 3})
    f = tmp_path / "c.toml"
    f.write_text('[train]\nsteps = 7\nlearning_rate = 0.001\nrollout_precision = "int8"\n')
    cfg, origin = resolve_config(f, {"steps": 9, "threads": None})
    assert cfg.steps == 9 and origin["steps"] == "flag"
    assert cfg.rollout_precision == "int8" and origin["rollout_precision"].startswith("file")


def test_file_values_are_validated(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[train]\nlearning_rate = 2\n')
    with pytest.raises(ConfigError, match="learning_rate"):
        resolve_config(f, {})


def test_malformed_and_missing_toml(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("[train\nsteps = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(f)
    with pytest.raises(ConfigError, match="does not exist"):
        load_toml(tmp_path / "missing.toml")


def test_toml_round_trip(tmp_path):
    cfg = TrainConfig(steps=5, rollout_precision="bf16", gradient_checkpointing=True, memory_budget_gb=3.5,
                      difficulties=("basic",))
    f = tmp_path / "r.toml"
    f.write_text(dump_toml({"train": cfg.to_dict(), "reasons": {"threads": "2 beat 1"}}))
    back, _ = resolve_config(f, {})
    assert back == cfg

