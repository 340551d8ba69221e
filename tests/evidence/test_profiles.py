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
