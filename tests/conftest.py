import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A test-sized model (2 layers, width 64) with a locally trained tokenizer, saved like a real model dir."""
    import torch
    from transformers import Qwen2ForCausalLM

    from cpugrpo.train import data, models

    out = tmp_path_factory.mktemp("tiny-test-model")
    corpus = [f"<|user|>\n{p.question}\n<|assistant|>\n{p.solution}<|end|>" for p in data.mixed(600, "train")]
    tok = models.build_tokenizer(corpus, vocab_size=400)
    preset = models.Preset("test", 64, 2, 4, 2, 128, None, True, False)
    torch.manual_seed(0)
    cfg = preset.qwen2_config(len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                              bos_token_id=None)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
