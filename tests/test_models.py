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


def test_the_readme_states_every_preset_s_counted_size():
    """The Models section of the README states each preset's layers x width and parameters (to 0.1M) and the exact
    counts; each matches ``Preset.n_params`` at the local tokenizer's size, which matches the built model's own
    count (built on the meta device: no weights)."""
    import re
    from pathlib import Path

    import torch
    from transformers import Qwen2ForCausalLM

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Models", 1)[1].split("\n## ", 1)[0].replace("\n  ", " ")
    vocab = len(models.local_tokenizer(0))
    assert f"having {vocab} entries" in section
    for name, preset in models.PRESETS.items():
        with torch.device("meta"):
            built = sum(p.numel() for p in Qwen2ForCausalLM(preset.qwen2_config(vocab)).parameters())
        n = preset.n_params(vocab)
        assert built == n, name
        stated = re.search(rf"`{re.escape(name)}` \(.*?(\d+) layers × (\d+), ([\d.]+)M parameters", section)
        assert stated, f"the README's Models section states no size for {name}"
        assert (int(stated[1]), int(stated[2])) == (preset.num_hidden_layers, preset.hidden_size), name
        assert stated[3] == f"{n / 1e6:.1f}", f"{name}: README says {stated[3]}M, counted {n / 1e6:.1f}M"
        assert f"{name} {n:,}" in section, f"{name}: the exact count {n:,} is not stated"
    doc = models.__doc__.replace("\n  ", " ")
    for name in ("tiny", "small"):
        assert f"{models.PRESETS[name].n_params(vocab) / 1e6:.1f}M" in doc.split(f"``{name}``", 1)[1][:40], name
