"""Rollout snapshots: the policy at the precision completions are generated with, refreshed every step."""

import torch

from cpugrpo.train import models, rollout


def test_rollout_snapshots_follow_the_policy(tiny_dir):
    model = models.load(str(tiny_dir)).model
    fp32 = rollout.RolloutModel(model, "fp32")
    bf16 = rollout.RolloutModel(model, "bf16")
    int8 = rollout.RolloutModel(model, "int8")
    for r in (fp32, bf16, int8):
        r.refresh()
    # fp32 shares the policy's tensors (no copy); bf16 holds a cast copy; int8 quantizes every Linear but lm_head
    assert fp32.model.model.embed_tokens.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    linears = {n for n, m in model.named_modules() if type(m) is torch.nn.Linear}
    quantized = {n for n, m in int8.model.named_modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)}
    still_float = {n for n, m in int8.model.named_modules() if type(m) is torch.nn.Linear}
    assert len(linears) > 1 and quantized == linears - {"lm_head"}
    assert still_float == {"lm_head"}  # the tied head stays float (quantizing it would quantize the embedding too)
    assert type(int8.model.model.layers[0].mlp.up_proj).__module__.startswith("torch.ao.nn.quantized")
    assert type(model.model.layers[0].mlp.up_proj) is torch.nn.Linear  # the policy itself untouched
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight.add_(1.0)
    bf16.refresh()
    assert torch.allclose(bf16.model.model.layers[0].mlp.up_proj.weight.float(),
                          model.model.layers[0].mlp.up_proj.weight, atol=0.05, rtol=0.01)
