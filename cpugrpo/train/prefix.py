"""Shared-prompt forward for the GRPO update: each distinct prompt runs through the model once per step, not once
per completion.

In a GRPO step every prompt appears ``num_generations`` times (8 by default), and TRL's loss runs the policy over
``prompt + completion`` for every row. A causal model's activations over the prompt do not depend on what follows,
so that part of the forward (and of its backward) is the same G times over. Here the prompt prefix of each distinct
prompt goes through the backbone once with a KV cache; the cache is expanded to every row by an index (a gather, so
the gradient of every row's attention over the prompt flows back and is summed into the one prefix computation); then
each row's ``[last prompt token, completion[:-1]]`` runs against that cache through TRL's own fused LM head
(``shift_labels``), which scores the completion tokens exactly as TRL's path does: same temperature, same positions
(TRL's forward uses plain indices 0..P+C-1, and so does a cached forward that starts at P-1), same attention mask.

Work saved on the update: rows x (prompt length - 1) token positions become distinct prompts x (prompt length - 1);
with 4 prompts x 8 completions, a ~50-token padded prompt and 48-token completions that is ~45% of the tokens.
``tests/test_prefix.py`` checks log-probs, entropies and gradients against TRL's path.

Not used (TRL's path runs instead) when: gradient checkpointing is on (transformers drops ``past_key_values`` in
checkpointed layers), inputs are multimodal, an MoE aux loss is requested, the prompt is one token, or no two rows
share a prompt.

Under data parallelism ``model`` is the ``DistributedDataParallel`` wrapper: the prompt pass runs on the wrapped
model's backbone directly and the completion pass goes through the wrapper, whose forward arms DDP's reducer for
the one backward that follows, so the gradients of both passes are all-reduced (tests/test_dist.py checks them
against one process on the same batch).
"""

from __future__ import annotations


def shared_prefix_logps(model, input_ids, attention_mask, logits_to_keep: int, compute_entropy: bool = False,
                        work: list | None = None):
    """Per-token log-probs (and entropies) of the last ``logits_to_keep`` tokens of each row, as TRL's
    ``_get_per_token_logps_and_entropies`` returns them, with each distinct prompt's forward done once.

    ``model`` is a causal LM patched with ``trl.trainer.utils.add_fused_lm_head``. Returns ``(logps, entropies)``,
    or None when sharing would save nothing (the caller then runs the ordinary forward). ``work``, if given, gets
    the shapes of the two forwards run (flops.py counts them)."""
    import torch
    from torch.nn.parallel import DistributedDataParallel
    from transformers import DynamicCache

    inner = model.module if isinstance(model, DistributedDataParallel) else model  # ``model`` still runs pass two
    if getattr(inner, "is_gradient_checkpointing", False):
        return None
    n_rows, width = input_ids.shape
    prefix = width - logits_to_keep - 1  # prompt tokens before the last one: these go into the shared cache
    if prefix < 1:
        return None
    key = torch.cat([input_ids[:, :prefix], attention_mask[:, :prefix]], dim=1)
    unique, inverse = torch.unique(key, dim=0, return_inverse=True)
    if unique.size(0) == n_rows:
        return None
    first = torch.full((unique.size(0),), n_rows, dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(n_rows), reduce="amin")

    cache = DynamicCache(config=inner.config)
    # the backbone without the LM head: a peft model's ``base_model`` is its tuner (the whole causal LM, head included)
    causal_lm = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    causal_lm.base_model(input_ids=input_ids[first, :prefix], attention_mask=attention_mask[first, :prefix],
                         past_key_values=cache, use_cache=True)
    cache.batch_select_indices(inverse)  # one prefix per row; an index, so gradients sum back into the prefix

    labels = input_ids[:, prefix + 1:].masked_fill(attention_mask[:, prefix + 1:] == 0, -100)
    out = model(input_ids=input_ids[:, prefix:-1], attention_mask=attention_mask[:, :-1], past_key_values=cache,
                shift_labels=labels, fused_lm_head=True)
    if work is not None:
        grad = torch.is_grad_enabled()
        work.append({"rows": unique.size(0), "q_len": prefix, "kv_len": prefix, "head": 0, "grad": grad,
                     "used": "kv"})
        work.append({"rows": n_rows, "q_len": width - prefix - 1, "kv_len": width - 1, "grad": grad,
                     "head": n_rows * (width - prefix - 1)})  # the fused head projects every position on CPU
    return out.log_probs, (out.entropy if compute_entropy else None)

