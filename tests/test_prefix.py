"""The shared-prompt update forward (prefix.py) against TRL's own path: same log-probs, entropies and gradients."""

import torch

from cpugrpo.train.prefix import shared_prefix_logps


def _model(seed=0):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(cfg).train()
    add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    return model


def _batch(seed=0, prompts=3, generations=4, prompt_len=9, completion_len=6, pad=0):
    """Left-padded prompts of different lengths, each repeated ``generations`` times, rows shuffled (as TRL
    shuffles the generation batch); completions right-padded."""
    g = torch.Generator().manual_seed(seed)
    rows, masks = [], []
    for i in range(prompts):
        n = prompt_len - i  # different real lengths -> different left padding
        prompt = torch.randint(1, 97, (n,), generator=g)
        for _ in range(generations):
            comp_n = int(torch.randint(2, completion_len + 1, (1,), generator=g))
            comp = torch.randint(1, 97, (comp_n,), generator=g)
            left, right = prompt_len - n, completion_len - comp_n
            ids = torch.cat([torch.full((left,), pad), prompt, comp, torch.full((right,), pad)])
            mask = torch.cat([torch.zeros(left), torch.ones(n + comp_n), torch.zeros(right)])
            rows.append(ids)
            masks.append(mask.long())
    order = torch.randperm(len(rows), generator=g)
    return torch.stack(rows)[order], torch.stack(masks)[order], completion_len


def _trl_path(model, ids, mask, keep):
    """What TRL 1.16's _get_per_token_logps_and_entropies does for a text-only batch."""
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-keep] = -100
    out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    return out.log_probs[:, -keep:], out.entropy[:, -keep:]


def test_shared_prefix_matches_trls_forward_and_backward():
    ids, mask, keep = _batch()
    weights = torch.rand(ids.size(0), keep)  # a stand-in for advantages x completion mask

    ref_model, model = _model(), _model()
    lp_ref, ent_ref = _trl_path(ref_model, ids, mask, keep)
    lp, ent = shared_prefix_logps(model, ids, mask, keep, compute_entropy=True)
    cmask = mask[:, -keep:].bool()
    assert lp.shape == lp_ref.shape == (ids.size(0), keep)
    torch.testing.assert_close(lp[cmask], lp_ref[cmask], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ent[cmask], ent_ref[cmask], rtol=1e-4, atol=1e-5)
    assert torch.all(lp[~cmask] == 0)

    (lp_ref * weights).sum().backward()
    (lp * weights).sum().backward()
    for (name, a), b in zip(ref_model.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-6, msg=lambda m, n=name: f"{n}: {m}")


def test_shared_prefix_declines_when_nothing_is_shared():
    ids, mask, keep = _batch(generations=1)
    assert shared_prefix_logps(_model(), ids, mask, keep) is None
    ids, mask, keep = _batch()
    model = _model()
    model.gradient_checkpointing_enable()
    assert shared_prefix_logps(model, ids, mask, keep) is None


def test_shared_prefix_with_the_shortest_prompts():
    ids, mask, keep = _batch(prompts=1, prompt_len=1)
    assert shared_prefix_logps(_model(), ids, mask, keep) is None  # nothing before the last prompt token
    ids, mask, keep = _batch(prompts=1, prompt_len=2)
    lp_ref, _ = _trl_path(_model(), ids, mask, keep)
    lp, _ = shared_prefix_logps(_model(), ids, mask, keep)
    cmask = mask[:, -keep:].bool()
    torch.testing.assert_close(lp[cmask], lp_ref[cmask], rtol=1e-4, atol=1e-5)
