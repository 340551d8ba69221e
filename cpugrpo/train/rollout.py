"""Rollout snapshots: the policy at the precision completions are generated with, refreshed every step.

Why a snapshot rather than TRL's own generation: TRL generates with the training model, which under
``bf16=True`` runs every decode step through accelerate's autocast wrapper. On CPU that re-casts the weights at
every decode step: a pass over all the weights per generated token, on top of the matmuls it was meant to speed up.
A snapshot holds weights already in the rollout precision, so the cast happens once per step, in ``refresh()``, and
is timed as part of the rollout. (Even so, bf16 decoding is slower than fp32 on a CPU without AMX: 0.79-0.89x at
batch 1 / 8 / 32 in docs/LOG.md's no-AMX entry, which is why the tuner measures the precisions rather than assuming.)

- ``fp32``: the snapshot's parameters alias the policy's fp32 tensors (no copy, always current). If the policy holds
  bf16 weights, they are up-cast into a separate fp32 copy.
- ``bf16``: a bf16 copy, refreshed in place by a casting copy; or, when the policy itself holds bf16 weights (bf16
  updates, a bf16 base under LoRA), the policy's own tensors (no copy).
- ``int8``: every ``nn.Linear`` becomes torch.ao's dynamically quantized Linear (per-tensor symmetric int8, the rule
  of ``quantize_dynamic``'s default qconfig, bit-identical to it: tests/test_rollout.py), built once; a refresh
  requantizes the policy's current weights into those modules in place (no module tree rebuilt per step). A tied
  ``lm_head`` stays float unless ``int8_lm_head``: then the snapshot gets its own int8 copy of it and the input
  embedding is left as it is. Parts not quantized alias fp32 policy weights, or are fp32 copies of bf16 ones. The
  API is deprecated in torch 2.13 but works; torchao int8 is only fast under torch.compile (30-60 s compile).

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
    """Generation-only view of ``policy`` at ``precision``. Call ``refresh()`` after every optimizer step.

    ``int8_lm_head``: with int8, quantize a tied LM head too, as an untied int8 copy (the embedding stays as it is)."""

    def __init__(self, policy, precision: str = "fp32", int8_lm_head: bool = False):
        import torch

        if precision not in PRECISIONS:
            raise ConfigError(f"unknown rollout precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        self.policy = policy
        self.precision = precision
        self.refresh_seconds = 0.0
        self._model = None
        self._int8: list = []  # (quantized module, policy weight, policy bias) refreshed in place
        policy_dtype = next(policy.parameters()).dtype
        target = torch.bfloat16 if precision == "bf16" else torch.float32
        # The snapshot reads the policy's own Parameters when they already are the precision it computes in (fp32
        # for fp32 and int8's unquantized parts, bf16 for bf16): no copy, always current. Otherwise it owns a cast
        # copy; int8 never copies the Linear weights it quantizes.
        self._alias = policy_dtype == target
        skip = _int8_targets(policy, int8_lm_head) if precision == "int8" else set()
        self._float = _structural_copy(policy, None if self._alias else target, skip=skip)
        self._float.eval()
        if getattr(self._float, "is_gradient_checkpointing", False):
            self._float.gradient_checkpointing_disable()
        if precision == "int8":
            self._int8 = _install_int8(self._float, policy, skip)
        head = self._float.get_output_embeddings() if hasattr(self._float, "get_output_embeddings") else None
        if head is not None:
            head.register_forward_pre_hook(_contiguous_input)
        # (snapshot tensor, policy tensor) pairs a refresh copies: matched by name, after the int8 swap
        source = dict(policy.named_parameters(remove_duplicate=False))
        self._copies = [] if self._alias else [(t, source[n]) for n, t in self._float.named_parameters()]

    def refresh(self) -> None:
        """Bring the snapshot up to date with the policy's current weights (int8: requantized in place)."""
        import torch

        t0 = time.perf_counter()
        with torch.no_grad():
            for s, p in self._copies:
                s.copy_(p)
            with warnings.catch_warnings():  # torch 2.13 deprecates the quantized tensor API it still runs on
                warnings.simplefilter("ignore")
                for q, w, b in self._int8:  # w: the policy's weight, or a function giving a LoRA layer's merged one
                    q.set_weight_bias(_quantize_weight(w() if callable(w) else w),
                                      None if b is None else b.detach().float())
            self._model = self._float
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


def _contiguous_input(module, args):
    """The LM head's input made contiguous. Generation feeds it ``hidden[:, -1:, :]``, a strided view; for such a
    3-d input and a weight that does not require grad (a frozen base under LoRA) torch's matmul does not fold the
    batch into one GEMM but broadcasts the weight to every row: 8 copies of a 151,936 x 896 head, 2.1 GB at the
    0.5B shape, measured. Row-major strides (``is_contiguous()`` ignores size-1 dimensions, so a plain
    ``.contiguous()`` would keep the view) take the folded path: one GEMM, no copy of the weight."""
    x = args[0]
    return (x.clone(memory_format=torch_contiguous()),) + tuple(args[1:])


def torch_contiguous():
    import torch

    return torch.contiguous_format


def _structural_copy(model, dtype, skip: set = frozenset()):
    """A deep copy of ``model``'s modules. dtype None: share the very same Parameter objects (no weight memory);
    else: fresh, gradient-free parameters cast to ``dtype``. Never materialises a transient full fp32 copy.
    ``skip``: ids of parameters to share rather than copy (Linear weights about to be replaced by int8 ones)."""
    import torch

    memo = {}
    for p in model.parameters():
        if id(p) not in memo:
            memo[id(p)] = p if dtype is None or id(p) in skip else \
                torch.nn.Parameter(p.detach().to(dtype), requires_grad=False)
    out = copy.deepcopy(model, memo)
    for m in out.modules():
        # A forward patched onto the instance (TRL's fused LM head) is a closure over the *original* module: the
        # copy would run the policy, not itself. The snapshot only generates, so it runs its class's forward.
        m.__dict__.pop("forward", None)
    return out


def _int8_targets(model, int8_lm_head: bool) -> set:
    """ids of the Linear weights (and biases) int8 rollouts quantize: every nn.Linear, a tied LM head only when asked
    (it is then quantized as its own copy; the input embedding it shares a tensor with stays as it is)."""
    import torch

    tied = bool(getattr(getattr(model, "config", None), "tie_word_embeddings", False))
    out = set()
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and not (tied and name.endswith("lm_head") and not int8_lm_head):
            out.add(id(m.weight))
            if m.bias is not None:
                out.add(id(m.bias))
    return out


def _quantize_weight(w):
    """Per-tensor symmetric int8, the rule of torch.ao's default dynamic qconfig (MinMax observer, qint8)."""
    import torch

    w = w.detach().float()
    obs = torch.ao.quantization.default_weight_observer()
    obs(w)
    scale, zero_point = obs.calculate_qparams()
    return torch.quantize_per_tensor(w, float(scale), int(zero_point), torch.qint8)


def _install_int8(snapshot, policy, targets: set) -> list:
    """Replace every targeted nn.Linear of ``snapshot`` by a dynamically quantized Linear (torch.ao's, fbgemm or
    onednn kernels), keeping which policy tensors it is refreshed from. Refreshes then requantize in place: no module
    rebuilt, no Python deepcopy per step."""
    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    policy_modules = dict(policy.named_modules())
    sources = {name: m for name, m in policy_modules.items() if isinstance(m, torch.nn.Linear)}
    out, replaced = [], []

    def install(name, in_f, out_f, weight, bias):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = DynamicLinear(in_f, out_f, bias_=bias is not None, dtype=torch.qint8)
        parent_name, _, child = name.rpartition(".")
        setattr(snapshot.get_submodule(parent_name) if parent_name else snapshot, child, q)
        out.append((q, weight, bias))
        replaced.append(name + ".")

    for name, m in list(snapshot.named_modules()):
        if any(name.startswith(r) for r in replaced):
            continue  # inside a LoRA layer already replaced as a whole
        if hasattr(m, "get_delta_weight") and hasattr(m, "get_base_layer"):
            # a peft LoRA layer: one int8 Linear of the merged weight (base + B A scale), recomputed at each refresh
            src = policy_modules[name]
            base = src.get_base_layer()
            install(name, base.in_features, base.out_features,
                    lambda src=src: src.get_base_layer().weight.float() + src.get_delta_weight(src.active_adapters[0]),
                    base.bias)
        elif isinstance(m, torch.nn.Linear) and name in sources and id(sources[name].weight) in targets:
            install(name, m.in_features, m.out_features, sources[name].weight, sources[name].bias)
    return out


def quantize_int8(model, int8_lm_head: bool = False):
    """Dynamic int8 copy of ``model`` (its Linears; a tied lm_head only with ``int8_lm_head``); ``model`` untouched."""
    snap = RolloutModel(model, "int8", int8_lm_head=int8_lm_head)
    snap.refresh()
    return snap.module


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
