"""Peak-memory estimate for a GRPO step, and the adaptive batch size built on it. Runs before anything is loaded.

An empirical model, not a derivation: the process baseline (python, torch, transformers, trl), weights, gradients,
optimizer state and the step's transient (per optimizer and weight dtype; gradient accumulation's extra gradient of
the largest tensor; autocast's bf16 weight cache), the rollout snapshot and reference model, and activations per
token of a micro-batch (TRL's fused head scores the vocabulary in 32768-entry chunks). Refitted on 2026-11-22 on the
494M shape's 20 configurations measured with the current defaults (micro-batches of 4, release_memory on: adapter x
optimizer x update x rollout precision, `specs/494m-*.toml`): every one within 5% of its OS peak RSS except LoRA
with bf16-sr adapters, 10% high (docs/LOG.md). Earlier rows (whole batch, glibc's default allocator, shared prefix)
come out 11-13% high at 494M and 20-70% high on tiny and small, whose activations the shared prefix halves and the
model ignores: on the safe side. Gradient checkpointing is scaled by reasoning (one layer of saved activations), not
fitted: treat those estimates as guesses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..core.config import ConfigError, TrainConfig

BASELINE_MB = 700.0   # python, torch, transformers, trl, the data (fitted)
ACT_PER_HIDDEN = 48     # saved fp32 activation bytes per layer per token, per unit of hidden size (fitted)
ACT_PER_INTER = 10      # ... per unit of MLP intermediate size (fitted)
LOGIT_COPIES = 4        # logits, log-softmax, its grad and a temporary, per token, per vocab entry of a head chunk
HEAD_CHUNK = 32768      # TRL's fused head scores the vocabulary in chunks of this many entries
PROMPT_TOKENS = 80      # prompt length of the synthetic problems (chat template included), in tokens
# Optimizer state bytes per parameter (per element of the stepped tensor's dtype where it follows the weights) and
# the transient of one step as bytes per element of the largest tensor (measured on a 151,936 x 896 bf16 embedding
# plus three layer matrices, docs/LOG.md: bitsandbytes' CPU path +3.4 GB, transformers' Adafactor +2.0 GB, torch's
# fused AdamW +0.4 GB; stochastic rounding steps 16 MiB row blocks, so its transient is negligible).
STATE_BYTES = {"adamw_torch_fused": 2.0, "adamw_torch": 2.0, "adafactor": 0.0, "adamw_torch_8bit": 2.0 / 4,
               "adamw_bnb_8bit": 2.0 / 4}  # x the state dtype's bytes (8-bit: 1 byte each, whatever the weights)
# (fp32 weights, bf16 weights): refitted on the 494M rows of 2026-11-22 (docs/LOG.md); with bf16 weights the
# optimizers also make fp32 copies of each gradient, hence the larger second figure.
TRANSIENT_BYTES = {"adamw_torch_fused": (3.0, 3.0), "adamw_torch": (4.0, 4.0), "adafactor": (4.0, 16.0),
                   "adamw_torch_8bit": (8.0, 8.0), "adamw_bnb_8bit": (10.0, 24.0)}
COMPILE_MB = 2400.0  # torchao's torch.compile'd step under stochastic rounding: one graph per block shape (measured)


@dataclass(frozen=True)
class Shape:
    n_params: int
    hidden: int
    layers: int
    vocab: int
    intermediate: int


def shape_of(model_spec: str) -> Shape:
    """The model's shape without loading weights: from a preset or a directory's config.json."""
    from .models import PRESETS, TOKENIZER_VOCAB, ModelError, resolve

    kind, path = resolve(model_spec)
    if kind == "preset":
        p = PRESETS[model_spec]
        return Shape(p.n_params(), p.hidden_size, p.num_hidden_layers, p.vocab_size or TOKENIZER_VOCAB,
                     p.intermediate_size)
    if kind == "hub":
        raise ModelError(f"cannot estimate memory for hub id {model_spec!r} without downloading: pass a local "
                         f"directory")
    c = json.loads((Path(path) / "config.json").read_text())
    c = c.get("text_config", c)
    h, L, v = c.get("hidden_size", 0), c.get("num_hidden_layers", 0), c.get("vocab_size", 0)
    i = c.get("intermediate_size", 4 * h)
    heads, kv = c.get("num_attention_heads", 1), c.get("num_key_value_heads", c.get("num_attention_heads", 1))
    kvd = h // max(1, heads) * kv
    tied = c.get("tie_word_embeddings", False)
    n = v * h * (1 if tied else 2) + L * (2 * h * h + 2 * h * kvd + 3 * h * i)
    return Shape(n, h, L, v, i)


def estimate_peak_mb(shape: Shape, cfg: TrainConfig, batch_size: int | None = None) -> dict:
    """Estimated peak RSS in MiB for one GRPO step, by component. ``batch_size``: the step's completions (the
    activations scale with the micro-batch, ``cfg.micro_batch``, when it is set and smaller)."""
    b = batch_size or cfg.batch_size
    micro = min(b, cfg.micro_batch or b)
    mb = 2**20
    lora = cfg.adapter != "none"
    bf16_weights = cfg.base_precision == "bf16" if lora else cfg.update_precision in ("bf16", "bf16-sr")
    wbytes = 2 if bf16_weights else 4
    n, emb = shape.n_params, shape.vocab * shape.hidden
    largest = emb if not lora else 0
    if lora:  # rank x (in + out) per adapted matrix (q, k, v, o at most h + h; gate, up, down h + i), fp32 (bf16
        # under bf16 updates)
        trainable = shape.layers * cfg.lora_rank * (8 * shape.hidden + 3 * (shape.hidden + shape.intermediate))
        tbytes = 2 if cfg.update_precision in ("bf16", "bf16-sr") else 4
    else:
        trainable, tbytes = n, wbytes
    sr = cfg.update_precision == "bf16-sr"
    state_dtype = 4 if (sr or tbytes == 4) else 2  # stochastic rounding steps fp32 proxies: fp32 state
    state = STATE_BYTES[cfg.optimizer] * (4 if "8bit" in cfg.optimizer else state_dtype)
    transient = 0.0 if sr else TRANSIENT_BYTES[cfg.optimizer][wbytes == 2] * largest / mb
    if sr and cfg.optimizer == "adamw_torch_8bit":
        transient = COMPILE_MB
    if micro < b:  # gradient accumulation: a micro-batch's gradient of the largest tensor, before it is added
        transient += largest * tbytes / mb
    if cfg.update_precision == "bf16-autocast":  # autocast's cache of bf16 weight copies, kept through a forward
        transient += n * 2 / mb
    weights = n * wbytes / mb
    grads = trainable * tbytes / mb
    optimizer = trainable * state / mb + transient
    linear = n - emb  # every matmul weight but a tied head
    rollout = {"fp32": 0.0 if wbytes == 4 else n * 4 / mb,
               "bf16": 0.0 if wbytes == 2 else n * 2 / mb,
               "int8": (linear + (emb if cfg.int8_lm_head else 0)) / mb + (emb * 4 / mb if wbytes == 2 else 0.0),
               }[cfg.rollout_precision]
    ref = 0.0 if cfg.beta == 0 or lora else n * (2 if cfg.ref_precision == "bf16" else 4) / mb
    tokens = PROMPT_TOKENS + cfg.max_completion_length
    scale = 0.5 if (cfg.update_precision != "fp32" or bf16_weights) else 1.0
    per_layer = (ACT_PER_HIDDEN * shape.hidden + ACT_PER_INTER * shape.intermediate) * scale
    if cfg.gradient_checkpointing:  # layer inputs kept, one layer recomputed at a time
        layer_bytes = shape.layers * shape.hidden * 4 * scale + per_layer
    else:
        layer_bytes = shape.layers * per_layer
    per_seq = tokens * (layer_bytes + min(shape.vocab, HEAD_CHUNK) * LOGIT_COPIES * 4)
    activations = micro * per_seq / mb
    parts = {"baseline": BASELINE_MB, "weights": weights, "grads": grads, "optimizer": optimizer,
             "rollout": rollout, "reference": ref, "activations": activations}
    parts["total"] = sum(parts.values())
    return parts


def default_budget_mb() -> float:
    import psutil

    return 0.8 * psutil.virtual_memory().available / 2**20


def fit_batch(cfg: TrainConfig, shape: Shape | None = None, budget_mb: float | None = None,
              max_prompts: int = 64) -> TrainConfig:
    """With ``adaptive_batch``: the largest batch (a multiple of num_generations) whose estimate fits the budget.
    Without it: check that the configured batch fits. Either way, a config that cannot fit is refused with a
    message that says what would fit."""
    shape = shape or shape_of(cfg.model)
    budget = budget_mb if budget_mb is not None else (cfg.memory_budget_gb * 1024 if cfg.memory_budget_gb
                                                      else default_budget_mb())
    g = cfg.num_generations
    smallest = estimate_peak_mb(shape, cfg, g)["total"]
    if smallest > budget:
        raise ConfigError(
            f"memory budget {budget / 1024:.1f} GB is too small for model {cfg.model!r}: even 1 prompt x {g} "
            f"generations needs about {smallest / 1024:.1f} GB; raise --memory-budget to {smallest / 1024 * 1.1:.1f} "
            f"or more, or use a smaller --model, --update-precision bf16 or --gradient-checkpointing")
    micro = cfg.micro_batch or 1  # a batch must split into whole micro-batches
    fits = [k * g for k in range(1, max_prompts + 1)
            if k * g % micro == 0 and estimate_peak_mb(shape, cfg, k * g)["total"] <= budget] or [cfg.batch_size]
    best = fits[-1]
    if cfg.adaptive_batch:
        return cfg.replace(batch_size=best)
    need = estimate_peak_mb(shape, cfg)["total"]
    if need > budget:
        raise ConfigError(
            f"batch {cfg.batch_size} needs about {need / 1024:.1f} GB, over the {budget / 1024:.1f} GB memory "
            f"budget: use --batch-size {best} (fits) or --adaptive-batch")
    return cfg
