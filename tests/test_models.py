"""Model loading records what was loaded without machine-specific paths: a preset by name and cache key, a model
directory under the home directory from ``~``."""

import json
import shutil

from cpugrpo.train import models


def test_a_cached_preset_is_recorded_by_name_and_cache_key(tiny_dir, tmp_path, monkeypatch):
    cached = tmp_path / "cache" / "models" / "tiny-v1-seed0-0123456789"
    shutil.copytree(tiny_dir, cached)
    monkeypatch.setattr(models, "ensure_tiny", lambda seed=0, progress=True: cached)
    loaded = models.load("tiny")
    assert (loaded.source, loaded.cache_key, loaded.random_weights) == ("tiny", "tiny-v1-seed0-0123456789", False)
    assert str(tmp_path) not in json.dumps([loaded.source, loaded.cache_key])


def test_a_directory_under_home_is_recorded_from_tilde(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(tiny_dir, tmp_path / "models" / "mine")
    loaded = models.load(str(tmp_path / "models" / "mine"))
    assert loaded.source == "~/models/mine" and loaded.cache_key is None
    assert models.load("~/models/mine").source == "~/models/mine"


def test_random_weight_presets_have_no_cache_key():
    loaded = models.load("small")
    assert (loaded.source, loaded.cache_key, loaded.random_weights) == ("small", None, True)
