import pytest

from cpugrpo.core.config import ConfigError, TrainConfig
from cpugrpo.train import memory

SHAPE = memory.Shape(n_params=6_000_000, hidden=512, layers=2, vocab=1024, intermediate=1408)


def test_estimate_grows_with_batch_and_shrinks_with_checkpointing_and_bf16():
    cfg = TrainConfig()
    small, big = (memory.estimate_peak_mb(SHAPE, cfg, b)["total"] for b in (8, 64))
    assert big > small
    deep = memory.Shape(50_000_000, 512, 12, 1024, 1536)
    plain = memory.estimate_peak_mb(deep, cfg)["activations"]
    assert memory.estimate_peak_mb(deep, cfg.replace(gradient_checkpointing=True))["activations"] < plain
    assert memory.estimate_peak_mb(deep, cfg.replace(update_precision="bf16"))["weights"] == \
        pytest.approx(memory.estimate_peak_mb(deep, cfg)["weights"] / 2)


def test_adaptive_batch_picks_the_largest_fitting_multiple():
    cfg = TrainConfig(adaptive_batch=True, num_generations=8)
    budget = memory.estimate_peak_mb(SHAPE, cfg, 24)["total"] + 1  # 3 prompts fit, 4 do not
    out = memory.fit_batch(cfg, SHAPE, budget_mb=budget)
    assert out.batch_size == 24 and out.batch_size % 8 == 0


def test_refusals_name_what_fits():
    cfg = TrainConfig(batch_size=64, num_generations=8)
    budget = memory.estimate_peak_mb(SHAPE, cfg, 16)["total"] + 1
    with pytest.raises(ConfigError, match="use --batch-size 16"):
        memory.fit_batch(cfg, SHAPE, budget_mb=budget)
    with pytest.raises(ConfigError, match="too small for model"):
        memory.fit_batch(cfg, SHAPE, budget_mb=100)


def test_shape_of_presets_and_directories(tiny_dir):
    assert memory.shape_of("qwen2-0.5b").n_params == pytest.approx(494_032_768, rel=0.01)
    d = memory.shape_of(str(tiny_dir))
    assert d.layers == 2 and d.hidden == 64
