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
    from torch.utils.flop_counter import FlopCounterMode

    from cpugrpo.train.prefix import shared_prefix_logps

    model = _model(name)
    ids, mask, keep = _batch(model.config.vocab_size)
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
    counted = counter.get_total_flops()
    analytic = executed_flops(Dims.of(model.config), work)["total"]
    assert abs(analytic - counted) / counted < 0.02, (analytic, counted)
