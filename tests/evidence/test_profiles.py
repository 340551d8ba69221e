"""The committed profiles (profiles/<machine-id>/): what `cpugrpo train --config` is pointed at."""

from pathlib import Path

from cpugrpo.core.config import resolve_config

ROOT = Path(__file__).resolve().parents[2]


def test_every_shipped_recommended_config_loads():
    """Every config file the repository ships must resolve to a valid TrainConfig."""
    files = sorted(ROOT.glob("profiles/*/recommended*.toml"))
    assert files, "no recommended.toml shipped"
    for f in files:
        cfg, origin = resolve_config(f, {})
        assert cfg.model and set(origin) >= {"threads", "batch_size", "rollout_precision"}, f


def test_a_shipped_tiny_recommendation_trains_with_tiny_s_whole_recipe():
    """The tuner measures TRL's reward settings and never tunes the recipe, so no shipped file may pin part of it
    (a file pinning beta = 0 alone would train an arm that was never chosen: docs/LOG.md 2026-12-04)."""
    from cpugrpo.core.config import TINY_RECIPE

    for f in sorted(ROOT.glob("profiles/*/recommended*.toml")):
        cfg, origin = resolve_config(f, {})
        if cfg.model == "tiny":
            assert {k: getattr(cfg, k) for k in TINY_RECIPE} == TINY_RECIPE, f
