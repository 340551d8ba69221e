"""FLOPs a GRPO update actually executed, and the weight bytes a decode step reads: the inputs of MFU and of the
decode roofline.

Counted from the shapes the trainer recorded while it ran (``work`` entries, one per model forward in the update),
never from a formula that assumes a code path:

- a forward over ``rows`` sequences of ``q_len`` new positions attending to ``kv_len`` positions (a cached prefix plus
  the new ones) executes, per layer, the q/k/v/o projections and the gated MLP on ``rows * q_len`` tokens (2 FLOPs per
  multiply-add) and the attention products QK^T and AV over the full ``q_len x kv_len`` rectangle, since SDPA with a
  padding mask computes every entry of it;
- the LM head, at the model's real vocabulary: TRL's fused head (trl.trainer.utils.add_fused_lm_head, also used by
  the shared-prefix path) projects only the scored positions on Triton devices, but on CPU it projects *every*
  position it is given, padding included (TRL's path: rows x (width - 1); the shared prefix's completion pass: rows x
  its new positions), so ``head`` counts those positions x hidden x vocab;
- a forward run with gradients enabled is followed by its backward: 2x the forward's matmul FLOPs (input and weight
  gradients) for the backbone, 3x for the head (its chunked kernel recomputes each tile's logits, then runs the two
  gradient GEMMs); with gradient checkpointing the backbone's forward runs once more inside the backward (the head is
  not checkpointed). This is executed work, so MFU here is what some call hardware FLOPs utilisation;
- the shared-prompt update (prefix.py) records two forwards: each distinct prompt's prefix once, then every row's
  completion against the cached prefix; TRL's path records one forward over prompt + completion per row.

Not counted (small beside the matmuls, and never counted in MFU elsewhere either): embeddings, norms, activations,
softmax, RoPE, the optimizer step. So MFU = executed matmul FLOPs / update time / measured GEMM peak can only
undercount the arithmetic that ran; it is bounded by 1 as long as the probe's peak is the machine's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Dims:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int

    @classmethod
    def of(cls, config) -> "Dims":
        """From a transformers config (its text config for multimodal models)."""
        c = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = c.num_attention_heads
        return cls(layers=c.num_hidden_layers, hidden=c.hidden_size, heads=heads,
                   kv_heads=getattr(c, "num_key_value_heads", None) or heads,
                   head_dim=getattr(c, "head_dim", None) or c.hidden_size // heads,
                   intermediate=c.intermediate_size, vocab=c.vocab_size)

    def to_dict(self) -> dict:
        return asdict(self)


def linear_flops_per_token(d: Dims) -> int:
    """Forward FLOPs of one token through every layer's projections (q, k, v, o) and gated MLP (gate, up, down).

    >>> linear_flops_per_token(Dims(layers=1, hidden=4, heads=2, kv_heads=1, head_dim=2, intermediate=8, vocab=10))
    288
    """
    q, kv = d.heads * d.head_dim, d.kv_heads * d.head_dim
    per_layer = d.hidden * q + 2 * d.hidden * kv + q * d.hidden + 3 * d.hidden * d.intermediate
    return 2 * d.layers * per_layer


def forward_flops(d: Dims, rows: int, q_len: int, kv_len: int, head: int) -> dict:
    """Forward FLOPs of one model call, by part (``head``: positions the LM head projects).

    >>> f = forward_flops(Dims(1, 4, 2, 1, 2, 8, 10), rows=3, q_len=5, kv_len=7, head=6)
    >>> f["linear"], f["attention"], f["head"], f["total"]
    (4320, 1680, 480, 6480)
    """
    linear = rows * q_len * linear_flops_per_token(d)
    attention = 2 * 2 * d.layers * rows * d.heads * q_len * kv_len * d.head_dim  # QK^T and AV
    head_flops = 2 * head * d.hidden * d.vocab
    return {"linear": linear, "attention": attention, "head": head_flops, "total": linear + attention + head_flops}


def executed_flops(d: Dims, work: list[dict], checkpointing: bool = False, frozen: bool = False) -> dict:
    """FLOPs of the forwards in ``work`` plus the backward of those run with gradients (and the backbone's recomputed
    forward under gradient checkpointing). ``work`` entries: rows, q_len, kv_len, head, grad, and ``used="kv"`` for a
    forward whose only used outputs are its KV cache (the shared prefix): autograd then skips the last layer's
    backward except its k and v projections.

    >>> d = Dims(1, 4, 2, 1, 2, 8, 10)
    >>> w = [dict(rows=3, q_len=5, kv_len=7, head=6, grad=True), dict(rows=3, q_len=5, kv_len=7, head=6)]
    >>> executed_flops(d, w)["total"], executed_flops(d, w, checkpointing=True)["total"]
    (26400, 32400)

    ``frozen``: the matmul weights do not require gradients (a frozen base under LoRA): the backward computes input
    gradients only, 1x the projections' forward (attention, which has no weights, still 2x) and 2x the head's (its
    recomputed logits and the input gradient). The adapters' own small matmuls are not counted (an undercount).

    >>> executed_flops(d, w, frozen=True)["total"]  # 12960 forward + 4320 + 2 x 1680 + 2 x 480
    21600
    """
    out = {"forward": 0, "backward": 0, "recompute": 0}
    for w in work:
        f = forward_flops(d, w["rows"], w["q_len"], w["kv_len"], w["head"])
        out["forward"] += f["total"]
        if not w.get("grad"):
            continue
        body = f["linear"] + f["attention"]
        per_weight = 1 if frozen else 2  # backward FLOPs per forward FLOP of a projection
        back = per_weight * f["linear"] + 2 * f["attention"]
        if w.get("used") == "kv":  # layers 0..L-2 in full, the last layer's k and v projections only
            kv = 2 * w["rows"] * w["q_len"] * 2 * d.hidden * d.kv_heads * d.head_dim
            back = back * (d.layers - 1) / d.layers + per_weight * kv
        out["backward"] += back + (2 if frozen else 3) * f["head"]
        if checkpointing:
            out["recompute"] += body
    out["total"] = out["forward"] + out["backward"] + out["recompute"]
    return out


def mfu(flops: float, seconds: float, peak_gflops: float) -> float | None:
    """Executed FLOP/s over the measured GEMM peak.

    >>> mfu(6e9, 2.0, 10.0)
    0.3
    """
    if not flops or not seconds or not peak_gflops:
        return None
    return flops / seconds / (peak_gflops * 1e9)


def decode_weight_bytes(model) -> int:
    """Bytes of weights one decode step reads: every matmul weight at the precision it is stored in (int8 packed
    weights of dynamically quantized Linears at 1 byte per element), the LM head included at its own precision, and
    no embedding table (a decode step reads one row per sequence). Measured from the module that generates."""
    import torch

    total, seen = 0, set()
    for m in model.modules():
        if isinstance(m, torch.nn.Embedding):
            continue
        w = getattr(m, "weight", None)
        if callable(w):  # torch.ao dynamic quantized Linear: weight() unpacks the int8 tensor
            w = w()
        if isinstance(w, torch.Tensor) and w.dim() == 2:  # norms' 1-d weights are not matmul weights
            if w.data_ptr() in seen:  # peft's LoRA wrapper exposes its base layer's weight: one tensor, read once
                continue
            seen.add(w.data_ptr())
            total += w.numel() * w.element_size()  # a tied LM head is a Linear over the embedding's tensor: counted
    return total
