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


class _LargestAllocation:
    """A dispatch mode that records the largest storage any aten op returns during the block (forward and the
    autograd backward alike): an upper bound on every tensor allocated there, views counted at their base's size."""

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        outer = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in torch.utils._pytree.tree_leaves(out):
                    if isinstance(t, torch.Tensor):
                        outer.largest = max(outer.largest, t.untyped_storage().nbytes())
                        outer.ops.add(str(func))
                return out

        self.largest, self.ops, self.mode = 0, set(), Mode()

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def _wide_vocab_model(vocab):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=vocab, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    model = Qwen2ForCausalLM(cfg).train()
    add_fused_lm_head(model)
    return model


def _direct_logps(model, ids, mask):
    """log_softmax over the full logits, one row at a time: log p(ids[:, t + 1] | ids[:, :t + 1])."""
    with torch.no_grad():
        hidden = model.model(input_ids=ids, attention_mask=mask).last_hidden_state
        rows = [torch.log_softmax(h[:-1] @ model.lm_head.weight.t(), -1).gather(-1, i[1:, None])[:, 0]
                for h, i in zip(hidden, ids, strict=True)]
    return torch.stack(rows)


def test_the_fused_head_never_materialises_the_logits():
    from trl.kernels.chunked_logprob import TOKEN_CHUNK_SIZE
    from trl.trainer.utils import _CHUNKED_LOGPROB_CHUNK_SIZE as CHUNK

    vocab = 200_000  # 6 chunks of 32,768 entries and a partial one
    model = _wide_vocab_model(vocab)
    g = torch.Generator().manual_seed(3)
    rows, width, keep = 8, 40, 16
    prompt = torch.randint(0, vocab, (2, width - keep), generator=g).repeat_interleave(4, dim=0)  # 2 x 4 rows
    ids = torch.cat([prompt, torch.randint(0, vocab, (rows, keep), generator=g)], dim=1)
    mask = torch.ones_like(ids)
    mask[:4, :3] = 0  # left padding on the first prompt's rows
    mask[1, -5:] = 0  # and a completion that ended early
    positions = width - 1
    full_logits = rows * positions * vocab * 4  # bytes of the fp32 [rows x positions x vocab] logits: 250 MB

    # TRL's path: every row's prompt + completion through the fused head, the completion scored
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-keep] = -100
    with _LargestAllocation() as trl_path:
        lp_trl = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True).log_probs
        lp_trl.sum().backward()
    # the shared-prompt path: its second pass goes through the same fused head
    with _LargestAllocation() as shared:
        lp_shared, _ = shared_prefix_logps(model, ids, mask, keep)
        lp_shared.sum().backward()

    # a tile is [min(positions scored, TOKEN_CHUNK_SIZE) x CHUNK] fp32: TRL's path scores rows x (width - 1)
    # positions on CPU (all of them, padding too), the shared path's second pass rows x keep
    for rec, scored in ((trl_path, rows * positions), (shared, rows * keep)):
        tile = min(scored, TOKEN_CHUNK_SIZE) * CHUNK * 4
        assert "aten.addmm_.default" in rec.ops  # the backward's gradient GEMMs ran under the recorder
        assert rec.largest == tile, (rec.largest, tile)  # the tile buffer is the largest thing allocated...
        assert rec.largest < full_logits / 5  # ... a sixth of the full logits here, whatever the vocabulary

    # the recorder does see a full-logits allocation where one happens: the model's ordinary forward
    with torch.no_grad(), _LargestAllocation() as plain:
        model(input_ids=ids, attention_mask=mask)
    assert plain.largest >= rows * width * vocab * 4

    # and the fused log-probs are the log-softmax of the full logits
    ref = _direct_logps(model, ids, mask)
    cmask = mask[:, -keep:].bool()
    torch.testing.assert_close(lp_trl[:, -keep:][cmask], ref[:, -keep:][cmask], rtol=0, atol=1e-5)
    torch.testing.assert_close(lp_shared[cmask], ref[:, -keep:][cmask], rtol=0, atol=1e-5)
