"""LoRA adapters through TRL's peft_config (trainer.run_grpo with adapter="lora"): only the adapters train, the
reference is the base with its adapters disabled (no copy), and the adapters are merged into the base afterwards."""

import math

import pytest
import torch

from cpugrpo.core.config import TrainConfig
from cpugrpo.train import models, trainer


def length_reward(completions, **kwargs):
    """A reward with variance inside every group, so a random model still gets non-zero advantages."""
    return [len(c) / 10.0 for c in completions]


def _cfg(tiny_dir, **kw):
    base = dict(model=str(tiny_dir), steps=2, batch_size=16, num_generations=8, max_completion_length=16,
                eval_n=6, learning_rate=1e-3, adapter="lora", lora_rank=4, lora_alpha=8)
    base.update(kw)
    return TrainConfig(**base)


def _spy_trainer(monkeypatch):
    """Keep every CPUGRPOTrainer run_grpo builds, to look at it after training."""
    built = []
    make = trainer.make_trainer_class

    def spying():
        cls = make()

        class Spy(cls):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                built.append(self)

        return Spy

    monkeypatch.setattr(trainer, "make_trainer_class", spying)
    return built


def _lora_modules(model):
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [n for n, m in model.named_modules() if isinstance(m, BaseTunerLayer) or "lora_" in n]


def test_lora_trains_only_adapters_and_merges_them_into_the_base(tiny_dir, tmp_path, monkeypatch):
    built = _spy_trainer(monkeypatch)
    loaded = models.load(str(tiny_dir))
    model = loaded.model
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    trainable = []

    def on_step(record):  # while training: the model peft wrapped in place holds base + adapters
        trainable.append({n for n, p in model.named_parameters() if p.requires_grad})

    steps = trainer.run_grpo(_cfg(tiny_dir), model, loaded.tokenizer, tmp_path, progress=False,
                             reward_funcs=[length_reward], on_step=on_step)
    assert len(steps) == 2 and all(math.isfinite(s.metrics["loss"]) for s in steps)
    assert all(s.completions == 16 for s in steps)
    # during training only LoRA's A and B matrices had gradients: 2 per adapted Linear (7 a layer, 2 layers)
    assert len(trainable) == 2 and trainable[0] == trainable[1]
    assert trainable[0] and all("lora_A" in n or "lora_B" in n for n in trainable[0])
    assert len(trainable[0]) == 2 * 7 * 2
    # the snapshot generated from the peft model, and the base was held in bf16 (base_precision's default)
    assert built[0].rollout_model.policy is built[0].model
    assert model.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16

    # after: one plain model again (adapters merged, no peft layers), the same parameter names as before
    assert not _lora_modules(model)
    assert set(dict(model.named_parameters())) == set(before)
    after = {n: p.detach().float() for n, p in model.named_parameters()}
    adapted = [n for n in before if n.endswith("proj.weight")]
    changed = [n for n in adapted if not torch.equal(before[n].to(torch.bfloat16).float(), after[n])]
    assert len(adapted) == 14 and changed == adapted  # lr 1e-3: every merged delta survives bf16 rounding
    # what LoRA does not adapt stays as it was (at the base precision): the embedding (tied head) and the norms
    frozen = [n for n in before if not n.endswith("proj.weight") and not n.endswith("proj.bias")]
    assert "model.embed_tokens.weight" in frozen
    for n in frozen:
        assert torch.equal(before[n].to(torch.bfloat16).float(), after[n]), n
    # and the merged model still generates
    ids = loaded.tokenizer("1 + 1 =", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == ids.shape[1] + 3


def test_lora_with_a_kl_term_uses_the_base_as_reference_without_a_copy(tiny_dir, tmp_path, monkeypatch):
    built = _spy_trainer(monkeypatch)
    attached = []
    monkeypatch.setattr(trainer, "_attach_reference", lambda *a: attached.append(a))
    copies = []
    real_deepcopy = trainer.copy.deepcopy

    class CountingCopy:
        @staticmethod
        def deepcopy(x, *a):
            copies.append(type(x).__name__)
            return real_deepcopy(x, *a)

    monkeypatch.setattr(trainer, "copy", CountingCopy)
    loaded = models.load(str(tiny_dir))
    steps = trainer.run_grpo(_cfg(tiny_dir, beta=0.1, steps=1), loaded.model, loaded.tokenizer, tmp_path,
                             progress=False, reward_funcs=[length_reward])
    assert len(steps) == 1
    t = built[0]
    assert t.beta == pytest.approx(0.1) and t.ref_model is None  # TRL disables the adapters for the reference
    assert not attached and not copies  # no copy of the policy was made for a reference
    assert "kl" in steps[0].metrics and math.isfinite(steps[0].metrics["kl"])
    # at the first step the adapters are zero (lora_B starts at 0): the policy is its reference, KL exactly 0
    assert steps[0].metrics["kl"] == pytest.approx(0.0, abs=1e-6)
    assert not _lora_modules(loaded.model)


def test_lora_config_reads_the_knobs():
    cfg = trainer.lora_config(TrainConfig(adapter="lora", lora_rank=8, lora_alpha=4, lora_targets="q_proj, v_proj"))
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout) == (8, 4, 0.0)
    assert set(cfg.target_modules) == {"q_proj", "v_proj"}
    assert trainer.lora_config(TrainConfig(adapter="lora")).target_modules == "all-linear"


def test_weights_dtype_follows_adapter_and_update_precision():
    assert trainer.weights_dtype(TrainConfig()) == torch.float32
    assert trainer.weights_dtype(TrainConfig(update_precision="bf16")) == torch.bfloat16
    assert trainer.weights_dtype(TrainConfig(update_precision="bf16-sr")) == torch.bfloat16
    assert trainer.weights_dtype(TrainConfig(update_precision="bf16-autocast")) == torch.float32
    # under an adapter the base's precision decides, whatever the update's
    assert trainer.weights_dtype(TrainConfig(adapter="lora")) == torch.bfloat16
    assert trainer.weights_dtype(TrainConfig(adapter="lora", base_precision="fp32",
                                             update_precision="bf16")) == torch.float32


def _peft_logps(shared: bool, ids, mask, keep):
    """Log-probs, entropies, reference (adapters disabled) log-probs, LM-head module calls and adapter gradients of a
    LoRA-wrapped test model, through the shared prefix or TRL's path."""
    from peft import LoraConfig, get_peft_model

    from cpugrpo.train.prefix import shared_prefix_logps

    from .test_prefix import _model, _trl_path

    base = _model()
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules="all-linear", lora_dropout=0.0))
    torch.manual_seed(5)
    for n, p in model.named_parameters():
        if "lora_B" in n:  # non-zero adapters, so they change the log-probs
            torch.nn.init.normal_(p, std=0.1)
    head_calls = []
    base.lm_head.register_forward_hook(lambda m, i, o: head_calls.append(tuple(o.shape)))
    run = (lambda: shared_prefix_logps(model, ids, mask, keep, compute_entropy=True)) if shared else \
        (lambda: _trl_path(model, ids, mask, keep))
    lp, ent = run()
    with model.disable_adapter():
        lp_ref, _ = run()
    (lp * mask[:, -keep:]).sum().backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return lp.detach(), ent.detach(), lp_ref.detach(), head_calls, grads


def test_shared_prefix_on_a_peft_model_runs_the_backbone_only_and_matches_trls_path():
    """A peft model's ``base_model`` is its tuner, i.e. the whole causal LM: the prefix pass must reach past it to
    the backbone, or it projects every prefix position through the LM head for nothing."""
    from .test_prefix import _batch

    ids, mask, keep = _batch()
    cmask = mask[:, -keep:].bool()
    lp_trl, ent_trl, ref_trl, calls_trl, grads_trl = _peft_logps(False, ids, mask, keep)
    lp, ent, ref, calls, grads = _peft_logps(True, ids, mask, keep)
    assert calls_trl == calls == []  # the fused head reads lm_head.weight; the module itself never runs
    assert not torch.allclose(lp[cmask], ref[cmask])  # the adapters change the log-probs ...
    torch.testing.assert_close(lp[cmask], lp_trl[cmask], rtol=1e-4, atol=1e-5)  # ... the same way on both paths
    torch.testing.assert_close(ent[cmask], ent_trl[cmask], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ref[cmask], ref_trl[cmask], rtol=1e-4, atol=1e-5)  # and so does disabling them
    assert grads.keys() == grads_trl.keys() and all("lora_" in n for n in grads)
    for n, g in grads_trl.items():
        torch.testing.assert_close(grads[n], g, rtol=1e-3, atol=1e-6, msg=lambda m, n=n: f"{n}: {m}")
