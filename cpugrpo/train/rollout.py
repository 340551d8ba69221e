"""Rollout snapshots: the policy at the precision completions are generated with, refreshed every step.

Why a snapshot rather than TRL's own generation: TRL generates with the training model, which under
``bf16=True`` runs every decode step through accelerate's autocast wrapper. On CPU that re-casts the weights at
every decode step: a pass over all the weights per generated token, on top of the matmuls it was meant to speed up.
A snapshot holds weights already in the rollout precision, so the cast happens once per step, in ``refresh()``, and
is timed as part of the rollout. (Even so, bf16 decoding is slower than fp32 on a CPU without AMX: 0.79-0.89x at
batch 1 / 8 / 32 in docs/LOG.md's no-AMX entry, which is why the tuner measures the precisions rather than assuming.)

- ``fp32``: the snapshot's parameters alias the policy's fp32 tensors (no copy, always current). If the policy holds
  bf16 weights, they are up-cast into a separate fp32 copy.
- ``bf16``: a bf16 copy, refreshed in place by a casting copy.
- ``int8``: ``torch.ao.quantization.quantize_dynamic`` over every ``nn.Linear`` except a tied ``lm_head`` (quantizing
  it would also quantize the input embedding it shares weights with). Rebuilt each refresh. The API is deprecated in
  torch 2.13 but works; torchao int8 is only fast under torch.compile (30-60 s compile), so it is not used here.

Departure from on-policy GRPO: with bf16 or int8 rollouts, completions come from a slightly different policy than the
one the loss differentiates. TRL then treats the fp32 log-probs as the "old" policy, as in its own non-vLLM path.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass

from ..core.errors import ConfigError
from ..core.options import at_least, csv_items, normalize

PRECISIONS = ("fp32", "bf16", "int8")


@dataclass(frozen=True)
class RolloutBenchOptions:
    """What `cpugrpo rollout-bench` times. Validated on construction: a bad value is a ConfigError (or, for the
    model, a ModelError) naming the flag and the fix. ``precisions`` may be given as "fp32,int8"."""
    model: str = "small"                         # --model: preset or model directory
    precisions: tuple[str, ...] = PRECISIONS     # --precisions, interleaved in this order
    batch_size: int = 8                          # --batch-size: sequences decoded together
    new_tokens: int = 64                         # --new-tokens per sequence (forced)
    repeats: int = 3                             # --repeats: interleaved repeats per precision
    threads: int | None = None                   # --threads; None: every usable CPU

    def __post_init__(self):
        from ..hw.runtime import resolve_threads
        from .models import resolve

        normalize(self, "precisions", csv_items("--precisions", self.precisions, "fp32,int8"))
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad:
            raise ConfigError(f"unknown precision {bad[0]!r}: use some of {','.join(PRECISIONS)} in --precisions")
        resolve_threads(self.threads)
        at_least("--batch-size", self.batch_size, 1)
        at_least("--new-tokens", self.new_tokens, 1)
        at_least("--repeats", self.repeats, 1)
        resolve(self.model)


def rollout_bench(opts: RolloutBenchOptions, progress: bool = True) -> dict:
    """Load ``opts.model`` and time its decode at each precision; the caller has put the thread count into the
    environment (``runtime.prepare_process``) before torch was imported."""
    from ..hw.runtime import apply_threads, resolve_threads
    from . import models

    effective = apply_threads(resolve_threads(opts.threads))
    loaded = models.load(opts.model, progress=progress)
    r = bench_decode(loaded.model, loaded.tokenizer, opts.precisions, opts.batch_size, opts.new_tokens, opts.repeats,
                     progress=progress)
    return {"model": loaded.source, "threads": effective, **r}


class RolloutModel:
    """Generation-only view of ``policy`` at ``precision``. Call ``refresh()`` after every optimizer step."""

    def __init__(self, policy, precision: str = "fp32"):
        import torch

        if precision not in PRECISIONS:
            raise ConfigError(f"unknown rollout precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        self.policy = policy
        self.precision = precision
        self.refresh_seconds = 0.0
        self._model = None
        policy_dtype = next(policy.parameters()).dtype
        # fp32 and int8 read the policy's own fp32 Parameters; otherwise the snapshot owns a cast copy.
        self._alias = precision in ("fp32", "int8") and policy_dtype == torch.float32
        target = torch.bfloat16 if precision == "bf16" else torch.float32
        self._float = _structural_copy(policy, None if self._alias else target)
        self._float.eval()
        if getattr(self._float, "is_gradient_checkpointing", False):
            self._float.gradient_checkpointing_disable()

    def refresh(self) -> None:
        """Bring the snapshot up to date with the policy's current weights."""
        import torch

        t0 = time.perf_counter()
        with torch.no_grad():
            if not self._alias:
                for s, p in zip(self._float.parameters(), self.policy.parameters(), strict=True):
                    s.copy_(p)
            self._model = quantize_int8(self._float) if self.precision == "int8" else self._float
        self.refresh_seconds = time.perf_counter() - t0

    @property
    def module(self):
        """The module that generates (after the first refresh): its weights are what a decode step reads."""
        return self._model

    def generate(self, **kwargs):
        import torch

        if self._model is None:
            self.refresh()
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            return self._model.generate(**kwargs)

    @property
    def model(self):
        if self._model is None:
            self.refresh()
        return self._model


def _structural_copy(model, dtype):
    """A deep copy of ``model``'s modules. dtype None: share the very same Parameter objects (no weight memory);
    else: fresh, gradient-free parameters cast to ``dtype``. Never materialises a transient full fp32 copy."""
    import torch

    memo = {}
    for p in model.parameters():
        if id(p) not in memo:
            memo[id(p)] = p if dtype is None else torch.nn.Parameter(p.detach().to(dtype), requires_grad=False)
    return copy.deepcopy(model, memo)


def quantize_int8(model):
    """Dynamic int8 copy of ``model``: every nn.Linear except a tied lm_head; the source is left untouched."""
    import torch

    tied = bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))
    names = {name for name, m in model.named_modules()
             if isinstance(m, torch.nn.Linear) and not (tied and name.endswith("lm_head"))}
    shell = _structural_copy(model, None)  # modules copied, weights shared: quantizing it leaves `model` intact
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(
            shell, {name: torch.ao.quantization.default_dynamic_qconfig for name in names}, dtype=torch.qint8,
            inplace=True)


def bench_decode(policy, tokenizer, precisions=PRECISIONS, batch_size: int = 8, new_tokens: int = 64,
                 repeats: int = 3, prompt: str = "Tom has 12 apples. Tom buys 5 more. How many apples?",
                 progress: bool = False) -> dict:
    """Decode throughput of each rollout precision, interleaved (A B C A B C ...) in one process so drifting
    machine conditions hit every arm alike. Every completion is forced to ``new_tokens`` tokens (min_new_tokens),
    so each arm does identical work whatever its weights. Returns per-precision timings and ratios to fp32."""
    import torch
    from tqdm.auto import tqdm

    from ..core.stats import median_and_spread
    from .models import prompt_text

    enc = tokenizer([prompt_text(tokenizer, prompt)] * batch_size, return_tensors="pt", padding=True,
                    add_special_tokens=False)
    kw = dict(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], do_sample=False,
              max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=tokenizer.pad_token_id)
    arms = {}
    for p in precisions:
        arms[p] = RolloutModel(policy, p)
        arms[p].refresh()
        arms[p].generate(**{**kw, "max_new_tokens": 4, "min_new_tokens": 4})  # warm-up: allocator, oneDNN kernels
    times: dict[str, list[float]] = {p: [] for p in precisions}
    refresh: dict[str, list[float]] = {p: [] for p in precisions}
    bar = tqdm(total=repeats * len(precisions), desc="decode bench", disable=not progress, leave=False)
    for _ in range(repeats):
        for p, arm in arms.items():
            arm.refresh()
            refresh[p].append(arm.refresh_seconds)
            t0 = time.perf_counter()
            with torch.no_grad():
                out = arm.generate(**kw)
            times[p].append(time.perf_counter() - t0)
            assert out.shape[1] - enc["input_ids"].shape[1] == new_tokens
            bar.update(1)
    bar.close()
    tokens = batch_size * new_tokens
    result = {"batch_size": batch_size, "new_tokens": new_tokens, "repeats": repeats, "arms": {}}
    for p in precisions:
        s = median_and_spread(times[p])
        result["arms"][p] = {"decode_s": s, "tokens_per_s": tokens / s["median"],
                             "refresh_s": median_and_spread(refresh[p])["median"]}
    if "fp32" in result["arms"]:
        base = result["arms"]["fp32"]["decode_s"]["median"]
        for p in precisions:
            result["arms"][p]["speedup_vs_fp32"] = base / result["arms"][p]["decode_s"]["median"]
    return result
