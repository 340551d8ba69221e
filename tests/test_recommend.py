"""The recommended config: its TOML renders, escapes, and is what `cpugrpo train --config` accepts."""

import tomllib

from cpugrpo.core.config import load_toml, resolve_config
from cpugrpo.runs import recommend


def test_recommendation_renders_toml_that_train_accepts(tmp_path):
    rec = {"train": {"model": "tiny", "threads": 2, "batch_size": 64, "num_generations": 8,
                     "max_completion_length": 48, "update_precision": "fp32", "rollout_precision": "int8",
                     "gradient_checkpointing": False},
           "reasons": {"rollout_precision": 'samples/s fp32: 50.1, int8: 61.0 "quoted"'},
           "evidence": {"machine_id": "m", "mode": "quick", "tuned_at": "now", "samples_per_s": 61.0,
                        "samples_per_s_range": [60.0, 62.0], "peak_rss_mb": 1400.0, "trial_id": "t-1",
                        "pareto_front": ["a", "b"], "commit": None}}
    path = tmp_path / "recommended.toml"
    recommend.write(rec, path)
    doc = tomllib.loads(path.read_text())
    assert doc["reasons"]["rollout_precision"].endswith('"quoted"') and "commit" not in doc["evidence"]
    assert load_toml(path) == rec["train"]
    cfg, origin = resolve_config(path, {"steps": 5})
    assert cfg.rollout_precision == "int8" and cfg.steps == 5 and origin["steps"] == "flag"
