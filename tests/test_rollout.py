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


def _dynamic_reference(model):
    """torch.ao's own quantize_dynamic over the same Linears (the rule the in-place refresh must reproduce)."""
    import copy

    names = {n for n, m in model.named_modules() if type(m) is torch.nn.Linear and n != "lm_head"}
    ref = copy.deepcopy(model)
    return torch.ao.quantization.quantize_dynamic(
        ref, {n: torch.ao.quantization.default_dynamic_qconfig for n in names}, dtype=torch.qint8)


def test_int8_refresh_in_place_matches_quantize_dynamic_and_follows_the_policy(tiny_dir):
    model = models.load(str(tiny_dir)).model
    snap = rollout.RolloutModel(model, "int8")
    snap.refresh()
    first = snap.module
    ids = torch.tensor([[5, 17, 42, 9, 3]])
    with torch.no_grad():
        assert torch.equal(snap.module(ids).logits, _dynamic_reference(model)(ids).logits)
        model.model.layers[1].self_attn.o_proj.weight.mul_(1.5)
        snap.refresh()
        assert snap.module is first  # requantized in place: the same modules, new weights
        assert torch.equal(snap.module(ids).logits, _dynamic_reference(model)(ids).logits)


def test_int8_lm_head_quantizes_an_untied_copy_and_leaves_the_embedding(tiny_dir):
    model = models.load(str(tiny_dir)).model
    embedding = model.model.embed_tokens.weight.detach().clone()
    snap = rollout.RolloutModel(model, "int8", int8_lm_head=True)
    snap.refresh()
    assert isinstance(snap.module.lm_head, torch.ao.nn.quantized.dynamic.Linear)
    assert torch.equal(snap.module.model.embed_tokens.weight, embedding)
    assert torch.equal(model.model.embed_tokens.weight, embedding) and type(model.lm_head) is torch.nn.Linear
    with torch.no_grad():
        out = snap.module(torch.tensor([[5, 17, 42]])).logits
        ref = model(torch.tensor([[5, 17, 42]])).logits
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() > 0.6  # close to the float model, not equal


def test_a_bf16_policy_is_generated_from_without_a_copy(tiny_dir):
    model = models.load(str(tiny_dir)).model.to(torch.bfloat16)
    snap = rollout.RolloutModel(model, "bf16")
    snap.refresh()
    assert snap.module.model.embed_tokens.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    int8 = rollout.RolloutModel(model, "int8")  # int8 from bf16 weights: the unquantized parts as fp32 copies
    int8.refresh()
    assert int8.module.model.embed_tokens.weight.dtype == torch.float32
    with torch.no_grad():
        assert int8.module(torch.tensor([[5, 17, 42]])).logits.isfinite().all()


def test_int8_rollout_of_a_lora_model_quantizes_the_merged_weights(tiny_dir):
    from peft import LoraConfig, get_peft_model

    model = models.load(str(tiny_dir)).model
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0))
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)  # a trained-looking adapter: B is zero at init
    snap = rollout.RolloutModel(peft_model, "int8")
    snap.refresh()
    ids = torch.tensor([[5, 17, 42, 9, 3]])
    import copy

    merged = copy.deepcopy(peft_model).merge_and_unload()
    names = {n for n, m in merged.named_modules() if type(m) is torch.nn.Linear and n != "lm_head"}
    ref = torch.ao.quantization.quantize_dynamic(
        merged, {n: torch.ao.quantization.default_dynamic_qconfig for n in names}, dtype=torch.qint8)
    with torch.no_grad():
        assert torch.allclose(snap.module(ids).logits, ref(ids).logits, atol=1e-4)
