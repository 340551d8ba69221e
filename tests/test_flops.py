"""Executed-FLOP counting (train/flops.py): a hand-worked case, and the analytic count against torch's own
FlopCounterMode on the update's real forward + backward (TRL's path and the shared-prompt path) for tiny and small."""

import pytest
import torch

from cpugrpo.train.flops import Dims, executed_flops, forward_flops, linear_flops_per_token, mfu


def test_hand_worked_case():
    # 1 layer, hidden 4, 2 query heads and 1 kv head of dim 2, MLP 8, vocab 10.
    d = Dims(layers=1, hidden=4, heads=2, kv_heads=1, head_dim=2, intermediate=8, vocab=10)
    # per token: q 4x4 + k,v 2 x 4x2 + o 4x4 + gate/up/down 3 x 4x8 = 16 + 16 + 16 + 96 = 144 MACs = 288 FLOPs
    assert linear_flops_per_token(d) == 288
    f = forward_flops(d, rows=2, q_len=3, kv_len=5, head=4)
    assert f["linear"] == 2 * 3 * 288
    # (QK^T and AV) x 2 FLOPs/MAC x rows x heads x q x kv x head_dim
    assert f["attention"] == 2 * 2 * 2 * 2 * 3 * 5 * 2 == 480
    assert f["head"] == 2 * 4 * 4 * 10
    total = executed_flops(d, [dict(rows=2, q_len=3, kv_len=5, head=4, grad=True)])
    assert f["total"] == 1728 + 480 + 320 == 2528
    # backward: 2x the backbone (input and weight gradients), 3x the head (tiles recomputed, then two GEMMs)
    assert total["total"] == 2528 + 2 * (1728 + 480) + 3 * 320 == 7904
    assert executed_flops(d, [dict(rows=2, q_len=3, kv_len=5, head=4, grad=True)], checkpointing=True)["total"] \
        == 7904 + 1728 + 480  # the backbone's forward again; the head is not checkpointed
    # 7,904 FLOPs in 1 microsecond is 7.904 GFLOP/s: 0.7904 of a 10 GFLOP/s peak
    assert mfu(total["total"], 1e-6, 10.0) == pytest.approx(0.7904)
    assert mfu(0, 1.0, 10.0) is None



def test_hand_worked_frozen_base_with_a_shared_prefix():
    # 2 layers, hidden 4, 2 query heads and 1 kv head of dim 2, MLP 8, vocab 10 (per layer: 144 MACs a token)
    d = Dims(layers=2, hidden=4, heads=2, kv_heads=1, head_dim=2, intermediate=8, vocab=10)
    prefix = dict(rows=2, q_len=3, kv_len=3, head=0, grad=True, used="kv")  # 2 distinct prompts of 3 tokens
    rest = dict(rows=4, q_len=2, kv_len=5, head=8, grad=True)  # 4 rows x 2 new positions, all scored
    no_grad = dict(rows=4, q_len=5, kv_len=5, head=16)  # a forward without gradients: no backward

    # prefix forward: projections 2 layers x 6 tokens x 288; attention (QK^T, AV) 2 x 2 x layers x rows x heads
    # x q x kv x head_dim; no head
    p_linear, p_attn = 2 * 6 * 288, 2 * 2 * 2 * 2 * 2 * 3 * 3 * 2
    assert (p_linear, p_attn) == (3456, 576)
    # frozen backward, used="kv": layer 0 in full at 1x its projections (input gradients only) and 2x its
    # attention, the last layer only its k and v projections' input gradients: 6 tokens x 2 x (4 x 2) MACs
    p_back = (p_linear // 2) * 1 + (p_attn // 2) * 2 + 6 * 2 * 2 * (4 * 2)
    assert p_back == 1728 + 576 + 192
    # the completions' pass: 8 tokens through both layers, attention over 5 positions, the head on 8 positions
    r_linear, r_attn, r_head = 8 * 2 * 288, 2 * 2 * 2 * 4 * 2 * 2 * 5 * 2, 2 * 8 * 4 * 10
    assert (r_linear, r_attn, r_head) == (4608, 1280, 640)
    # frozen backward: 1x projections, 2x attention, 2x head (recomputed tile logits + the input-gradient GEMM)
    r_back = r_linear + 2 * r_attn + 2 * r_head
    n_fwd = 5 * 4 * 2 * 288 + 2 * 2 * 2 * 4 * 2 * 5 * 5 * 2 + 2 * 16 * 4 * 10
    forward = p_linear + p_attn + r_linear + r_attn + r_head + n_fwd

    out = executed_flops(d, [prefix, rest, no_grad], frozen=True)
    assert out["forward"] == forward == 4032 + 6528 + 16000
    assert out["backward"] == p_back + r_back == 2496 + 8448
    assert out["recompute"] == 0 and out["total"] == forward + p_back + r_back == 37504
    # checkpointing recomputes the backbone forward of every pass with gradients (never the head)
    assert executed_flops(d, [prefix, rest, no_grad], checkpointing=True, frozen=True)["recompute"] \
        == p_linear + p_attn + r_linear + r_attn
    # a trainable base: 2x the projections (input and weight gradients), 3x the head, last layer's k/v at 2x
    full = executed_flops(d, [prefix, rest, no_grad])["backward"]
    assert full == (2 * 1728 + 2 * 288 + 2 * 192) + (2 * r_linear + 2 * r_attn + 3 * r_head)

def _batch(tokenizer_vocab: int, distinct=4, group=4, prompt=30, completion=12, seed=0):
    """Left-padded prompts (each repeated ``group`` times) + right-padded completions, as TRL builds them."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(distinct):
        p_len = int(torch.randint(prompt // 2, prompt + 1, (1,), generator=g))
        p = torch.randint(3, tokenizer_vocab, (p_len,), generator=g)
        for _ in range(group):
            c_len = int(torch.randint(1, completion + 1, (1,), generator=g))
            rows.append((p, torch.randint(3, tokenizer_vocab, (c_len,), generator=g)))
    width_p, width_c = max(len(p) for p, _ in rows), max(len(c) for _, c in rows)
    ids = torch.zeros(len(rows), width_p + width_c, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (p, c) in enumerate(rows):
        ids[i, width_p - len(p):width_p], mask[i, width_p - len(p):width_p] = p, 1
        ids[i, width_p:width_p + len(c)], mask[i, width_p:width_p + len(c)] = c, 1
    return ids, mask, width_c


def _model(name):
    """A preset, or "wide-vocab": a 2-layer Qwen2 with a 32k vocabulary, where the LM head is most of the work."""
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from cpugrpo.train import models

    if name == "wide-vocab":
        torch.manual_seed(0)
        m = Qwen2ForCausalLM(Qwen2Config(vocab_size=32000, hidden_size=128, intermediate_size=352, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True))
    else:
        m = models.load(name, progress=False).model
    m.config._attn_implementation = "eager"  # explicit matmuls, so FlopCounterMode sees attention too
    m.train()
    add_fused_lm_head(m)
    return m


def _addmm_(self_shape, a_shape, b_shape, *args, **kwargs):
    """In-place addmm (the fused head's gradient GEMMs), which torch's flop registry does not count."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tiny", "small", "wide-vocab"])
@pytest.mark.parametrize("shared", [False, True])
def test_analytic_count_matches_flop_counter(name, shared):


    model = _model(name)
    ids, mask, keep = _batch(model.config.vocab_size)
    counted, work = _counted_update(model, ids, mask, keep, shared)
    analytic = executed_flops(Dims.of(model.config), work)["total"]
    assert abs(analytic - counted) / counted < 0.02, (analytic, counted)


def _counted_update(model, ids, mask, keep, shared):
    """One scoring forward and its backward under FlopCounterMode: (FLOPs counted, the work entries recorded)."""
    from torch.utils.flop_counter import FlopCounterMode

    from cpugrpo.train.prefix import shared_prefix_logps

    work = []
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: _addmm_}) as counter:
        if shared:
            logps, _ = shared_prefix_logps(model, ids, mask, keep, work=work)
        else:  # TRL's path: the whole row, only the completion scored
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-keep] = -100
            logps = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs
            work.append({"rows": ids.size(0), "q_len": ids.size(1), "kv_len": ids.size(1), "grad": True,
                         "head": ids.size(0) * (ids.size(1) - 1)})
        logps.sum().backward()
    return counter.get_total_flops(), work


@pytest.mark.parametrize("shared", [False, True])
def test_frozen_count_matches_flop_counter_under_lora(shared):
    """A frozen base with rank-1 LoRA adapters. Two small differences, opposite in sign, both within the 2%: the
    adapters' own matmuls are not counted, and layer 0's q, k and v projections need no input gradient (their input
    comes from the frozen embedding) though the count gives them one."""
    from peft import LoraConfig, get_peft_model
    model = _model("wide-vocab")
    get_peft_model(model, LoraConfig(r=1, lora_alpha=2, target_modules="all-linear", lora_dropout=0.0))
    ids, mask, keep = _batch(model.config.vocab_size)
    counted, work = _counted_update(model, ids, mask, keep, shared)
    assert not model.model.embed_tokens.weight.requires_grad
    frozen = executed_flops(Dims.of(model.config), work, frozen=True)["total"]
    assert abs(frozen - counted) / counted < 0.02, (frozen, counted)
    assert executed_flops(Dims.of(model.config), work)["total"] > 1.2 * counted  # the trainable count is not it


def test_decode_weight_bytes_counts_a_lora_base_weight_once():
    """peft's LoRA wrapper exposes its base layer's weight: the bytes a decode step reads are the base's (64x32 fp32
    and 16x64 bf16 = 8192 + 2048) plus the adapters' own, in fp32 (rank 4: 4x32 + 64x4, 4x64 + 16x4 = 1536 + 1280)."""
    from peft import LoraConfig, get_peft_model

    from cpugrpo.train.flops import decode_weight_bytes

    class Two(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.up = torch.nn.Linear(32, 64, bias=False)
            self.down = torch.nn.Linear(64, 16, bias=False).to(torch.bfloat16)

    base = Two()
    assert decode_weight_bytes(base) == 64 * 32 * 4 + 16 * 64 * 2
    wrapped = get_peft_model(Two(), LoraConfig(r=4, target_modules=["up", "down"]))
    assert decode_weight_bytes(wrapped) == 64 * 32 * 4 + 16 * 64 * 2 + (4 * 32 + 64 * 4) * 4 + (4 * 64 + 16 * 4) * 4
