"""Predict before you run: a roofline model of one GRPO step from the model's config, a training config and a
machine's probes (GEMM GFLOP/s per dtype and thread count, copy bandwidth), with a few efficiencies fitted on
measured trials (``predict_fit.py``). No model is built and neither torch nor transformers is imported.

Per phase (the phases ``train/measure.py`` times; B completions, P the padded prompt width, T decode steps, the
longest completion of the step; L layers; N_lin the matmul weights of the layers, N_head the LM head's):

- **generate** (rollout minus refresh): a prefill over B x P tokens, then T - 1 decode steps over B rows.
  prefill = F_pre / (G_r e_pre) + L o_layer + o_token; decode step j = max(F_j / G_r, W_j / BW) / e_dec + L o_layer
  + o_token, where G_r is the GEMM peak of the rollout's dtype, W_j the weight bytes of the snapshot (plus the KV
  cache) a step reads, BW the copy bandwidth, and W_j / BW is dropped when the weights fit the last-level cache
  (no DRAM bound then; report/roofline.py does the same). o_layer and o_token are the framework's time per layer
  forward and per generated token step (kernel launches, sampling, cache growth): fitted, >= 0.
- **refresh** (the snapshot's cast or requantization, inside the rollout): bytes read and written / (BW e_ref).
- **scoring**: c_score x B (the reward functions; no roofline applies).
- **update**: F_u / (G_u e_u) + N_tr b_opt / (BW e_opt) + micro-batches x L o_micro + o_update + faults:
  F_u the matmul FLOPs the update executes (train/flops.executed_flops over the forwards the trainer will run:
  shared prefix per micro-batch, TRL's path otherwise, backward, recomputation under checkpointing), G_u the GEMM
  peak of the dtype its weights compute in, b_opt the optimizer's minimum bytes per trainable parameter (state read
  and written), and, with ``release_memory``, every large allocation page-faulted afresh (bytes / BW x k_fault).
- **communication** (processes > 1): 2 (P-1)/P x gradient bytes / BW (a ring all-reduce over gloo through shared
  memory: an assumption, not a measurement; zero for one process).

Every efficiency e is in (0, 1] and every overhead >= 0, so a prediction is never faster than its phase's physical
bound (``bound`` in the output). Peak RSS is train/memory.estimate_peak_mb's. Another machine is predicted from its
own probes with the efficiencies fitted on the machine whose fit is used (``predict-fit.json``, said in the output).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from ..core.config import TrainConfig
from ..core.errors import CpugrpoError
from ..train.flops import Dims, executed_flops, forward_flops, linear_flops_per_token

LOCAL_TOKENIZER_VOCAB = 581  # the local tokenizer's size (seed 0), which tiny and small use (README, Models)
PROMPT_WIDTH = {1: 46, 0: 58}  # padded prompt tokens: one prompt per step, several (committed rows' medians)
LONGEST_OVER_MEAN = 1.38      # longest completion of a step over the mean (tiny rows with both recorded)
FIT_FILE = "predict-fit.json"
# name: (start, low, high); efficiencies are capped at 1, overheads at 0 from below
PARAMS = {
    "e_prefill": (0.3, 1e-3, 1.0), "e_decode": (0.3, 1e-3, 1.0),
    "o_layer_s": (3e-4, 0.0, 0.1), "o_token_s": (3e-3, 0.0, 1.0),
    "e_refresh_cast": (0.3, 1e-3, 1.0), "e_refresh_int8": (0.1, 1e-3, 1.0),
    "c_score_s": (1e-5, 0.0, 0.1),
    "e_update_fp32": (0.5, 1e-3, 1.0), "e_update_bf16": (0.2, 1e-3, 1.0), "e_update_autocast": (0.2, 1e-3, 1.0),
    "e_opt_adamw": (0.5, 1e-3, 1.0), "e_opt_adafactor": (0.2, 1e-3, 1.0), "e_opt_8bit": (0.1, 1e-3, 1.0),
    "o_pass_layer_s": (1e-3, 0.0, 1.0), "k_act": (4.0, 0.0, 1e3), "k_micro": (10.0, 0.0, 1e4),
    "o_update_s": (0.05, 0.0, 10.0), "k_fault": (1.0, 0.0, 100.0),
}
RSS_PARAMS = {"rss_base_mb": (700.0, 100.0, 4000.0), "rss_k_act": (1.0, 0.05, 5.0),  # memory.py's 700 MiB, x1
              "rss_k_state": (1.0, 0.5, 2.0)}
DEFAULT_FIT = {k: v[0] for k, v in {**PARAMS, **RSS_PARAMS}.items()}
PEERS = {  # what a TRL peer runs, whatever config its row stored (train/trl_peers.py: TRL 1.16 on CPU)
    "trl-defaults": {"update_precision": "bf16-autocast", "gradient_checkpointing": True},
    "trl-cpu": {"update_precision": "fp32", "gradient_checkpointing": False}}


class PredictError(CpugrpoError, ValueError):
    """A machine, model or fit the prediction cannot use; the message says what to pass."""


# ------------------------------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class ModelShape:
    name: str
    dims: Dims
    tied: bool

    @property
    def n_linear(self) -> int:  # matmul weights of the layers (no embedding, no head)
        return linear_flops_per_token(self.dims) // 2

    @property
    def n_head(self) -> int:
        return self.dims.vocab * self.dims.hidden

    @property
    def n_params(self) -> int:  # norms and biases left out (under 0.1%)
        return self.n_linear + self.n_head * (1 if self.tied else 2)


def model_shape(spec: str) -> ModelShape:
    """A preset's shape or a local directory's config.json: nothing is built or downloaded."""
    from ..train.models import PRESETS, resolve

    kind, path = resolve(spec)
    if kind == "preset":
        p = PRESETS[spec]
        c = {"num_hidden_layers": p.num_hidden_layers, "hidden_size": p.hidden_size,
             "num_attention_heads": p.num_attention_heads, "num_key_value_heads": p.num_key_value_heads,
             "intermediate_size": p.intermediate_size, "vocab_size": p.vocab_size or LOCAL_TOKENIZER_VOCAB,
             "tie_word_embeddings": p.tie_word_embeddings}
    elif kind == "dir":
        c = json.loads((Path(path) / "config.json").read_text())
        c = c.get("text_config", c)
    else:
        raise PredictError(f"cannot predict hub id {spec!r} without downloading its config: pass a preset or a "
                           f"local directory with a config.json")
    try:
        class _C:  # Dims.of reads attributes
            pass
        obj = _C()
        obj.__dict__.update(c)
        dims = Dims.of(obj)
    except AttributeError as e:
        raise PredictError(f"model {spec!r}: its config lacks {e.name or 'a field'}: pass a decoder-only causal LM")
    return ModelShape(spec, dims, bool(c.get("tie_word_embeddings", False)))


@dataclass(frozen=True)
class Machine:
    machine_id: str
    gemm: dict        # dtype -> {threads: best GFLOP/s sample}
    bandwidth: dict   # threads -> best GB/s sample (read + write)
    llc_bytes: float | None
    usable: int

    def peak(self, kind: str, threads: int) -> float:
        """GFLOP/s (GB/s for "bandwidth") at ``threads``: the probe at that count, else the nearest probed count
        scaled linearly in threads (an assumption, stated by ``scaled``)."""
        table = self.bandwidth if kind == "bandwidth" else self.gemm.get(kind, {})
        if not table:
            raise PredictError(f"machine {self.machine_id} has no {kind} probe: run `cpugrpo probe` there")
        if threads in table:
            return table[threads]
        near = min(table, key=lambda t: abs(t - threads))
        return table[near] * threads / near

    def scaled(self, threads: int) -> bool:
        return any(threads not in t for t in (self.bandwidth, *self.gemm.values()) if t)


def machine_ids(profiles_dir: str | Path = "profiles") -> list[str]:
    root = Path(profiles_dir)
    return sorted(p.name for p in root.iterdir() if (p / "probes.json").exists()) if root.is_dir() else []


def load_machine(machine_id: str, profiles_dir: str | Path = "profiles") -> Machine:
    """The probes (and hardware facts) under ``profiles/<id>/``: all a prediction needs from a machine."""
    d = Path(profiles_dir) / machine_id
    if not (d / "probes.json").exists():
        known = machine_ids(profiles_dir)
        raise PredictError(f"no probes for machine {machine_id!r} under {profiles_dir}/: use one of "
                           f"{', '.join(known) or '(none: run `cpugrpo probe`)'}")
    probes = json.loads((d / "probes.json").read_text())
    gemm, bw = {}, {}
    for r in probes.get("results", []):
        if "unsupported" in r:
            continue
        if r["probe"] == "bandwidth":
            bw[r["threads"]] = max(bw.get(r["threads"], 0.0), r["gbps"]["max"])
        else:
            t = gemm.setdefault(r["probe"], {})
            t[r["threads"]] = max(t.get(r["threads"], 0.0), r["gflops"]["max"])
    hw = json.loads((d / "hardware.json").read_text()) if (d / "hardware.json").exists() else {}
    llc = hw.get("l3_kb") or hw.get("l2_kb")
    usable = len(hw.get("usable_cpus") or []) or max(bw or {1: 0})
    return Machine(machine_id, gemm, bw, float(llc) * 1024 if llc else None, usable)


@dataclass(frozen=True)
class Workload:
    """The step's shape: the padded prompt width and the decode steps (the longest completion)."""
    prompt_width: float
    decode_steps: float
    source: str

    @classmethod
    def of(cls, cfg: TrainConfig, prompt_width: float | None = None, decode_steps: float | None = None,
           mean_completion: float | None = None) -> "Workload":
        """Measured values when given; else the longest completion from a measured mean (x LONGEST_OVER_MEAN,
        at most the maximum), else the configured maximum length, and the committed rows' typical prompt width."""
        width = prompt_width or PROMPT_WIDTH[1 if cfg.prompts_per_step == 1 else 0]
        if decode_steps:
            return cls(width, decode_steps, "measured decode steps")
        if mean_completion:
            return cls(width, min(cfg.max_completion_length, mean_completion * LONGEST_OVER_MEAN),
                       "measured mean completion length")
        return cls(width, cfg.max_completion_length, "max_completion_length")


# ------------------------------------------------------------------------------------------------- the model
def _bf16_weights(cfg) -> bool:
    if cfg.adapter != "none":
        return cfg.base_precision == "bf16"
    return cfg.update_precision in ("bf16", "bf16-sr")


def snapshot_bytes(m: ModelShape, cfg, mode: str = "cpugrpo") -> tuple[float, float]:
    """(bytes one decode step reads from the generating weights, bytes per element of its KV cache)."""
    n = m.n_linear + m.n_head
    if mode == "trl-defaults":  # autocast: every linear casts its fp32 weight to bf16 on each forward
        return n * (4 + 2 + 2), 2
    if mode == "trl-cpu":
        return n * 4, 4
    r = cfg.rollout_precision
    if r == "int8":
        return m.n_linear + m.n_head * (1 if cfg.int8_lm_head else 4), 4
    b = 4 if r == "fp32" else 2
    return n * b, b


def refresh_bytes(m: ModelShape, cfg, mode: str = "cpugrpo") -> tuple[float, str]:
    """(bytes read + written to refresh the snapshot, "cast" | "int8" | "none")."""
    if mode != "cpugrpo":
        return 0.0, "none"
    src = 2 if _bf16_weights(cfg) else 4
    if cfg.rollout_precision == "int8":
        n = m.n_linear + (m.n_head if cfg.int8_lm_head else 0)
        return n * (src + 1) + (m.n_head * (src + 4) if src == 2 else 0), "int8"
    dst = 4 if cfg.rollout_precision == "fp32" else 2
    if dst == src:
        return 0.0, "none"
    return (m.n_linear + m.n_head) * (src + dst), "cast"


def rollout_dtype(cfg, mode: str = "cpugrpo") -> str:
    if mode == "trl-defaults":
        return "bf16"
    if mode == "trl-cpu":
        return "fp32"
    return cfg.rollout_precision


def update_work(cfg, prompts: int, width: float, steps: float, mode: str = "cpugrpo") -> list[dict]:
    """The update's forwards as the trainer records them (``work`` entries for flops.executed_flops)."""
    b = cfg.batch_size
    micro = min(b, cfg.micro_batch or b)
    n_micro = b // micro
    seq = width + steps
    g = cfg.num_generations
    # rows are shuffled before micro-batching: expected distinct prompts in a micro-batch of ``micro`` rows
    distinct = prompts * (1 - math.comb(b - g, micro) / math.comb(b, micro)) if micro < b else prompts
    shared = (mode == "cpugrpo" and cfg.shared_prefix and not cfg.gradient_checkpointing and distinct < micro)
    work = []
    for _ in range(n_micro):
        if shared:
            work.append({"rows": distinct, "q_len": width - 1, "kv_len": width - 1, "head": 0, "grad": True,
                         "used": "kv"})
            work.append({"rows": micro, "q_len": steps, "kv_len": seq - 1, "head": micro * steps, "grad": True})
        else:
            work.append({"rows": micro, "q_len": seq, "kv_len": seq, "head": micro * (seq - 1), "grad": True})
    return work


OPT_BYTES = {  # minimum bytes per trainable parameter an optimizer step reads and writes: (fp32, bf16 weights)
    "adamw": (28, 14), "adafactor": (12, 6), "8bit": (16, 10)}


def optimizer_family(name: str) -> str:
    return "adafactor" if name == "adafactor" else "8bit" if "8bit" in name else "adamw"


def optimizer_bytes(m: ModelShape, cfg) -> float:
    """Trainable parameters x the optimizer's minimum bytes each; stochastic rounding adds its fp32 proxy's read
    and write and the rounded bf16 write (10 bytes)."""
    fam = optimizer_family(cfg.optimizer)
    if cfg.adapter != "none":
        d = m.dims
        trainable = d.layers * cfg.lora_rank * (8 * d.hidden + 3 * (d.hidden + d.intermediate))
        return trainable * OPT_BYTES[fam][0]
    bf16 = _bf16_weights(cfg)
    per = OPT_BYTES[fam][1 if bf16 else 0] + (10 if cfg.update_precision == "bf16-sr" else 0)
    return m.n_params * per


def update_dtype(cfg, mode: str = "cpugrpo") -> tuple[str, str]:
    """(GEMM dtype of the update, the efficiency that applies)."""
    if mode == "trl-defaults" or cfg.update_precision == "bf16-autocast":
        return "bf16", "e_update_autocast"
    if _bf16_weights(cfg):
        return "bf16", "e_update_bf16"
    return "fp32", "e_update_fp32"


def peer_config(cfg: TrainConfig, mode: str) -> TrainConfig:
    """The config a TRL peer runs (its own precision and checkpointing, no shared prefix or micro-batches)."""
    if mode not in PEERS:
        return cfg
    return cfg.replace(**PEERS[mode], shared_prefix=False, micro_batch=None, release_memory=False,
                       adapter="none", rollout_precision="fp32")


def peak_rss_mb(cfg: TrainConfig, work: Workload, fit: dict | None = None) -> dict:
    """train/memory.py's estimate with its activations taken over the tokens the update holds (memory.py assumes
    PROMPT_TOKENS + max length for every row and no shared prefix), and its baseline and activation scale as fitted
    (``rss_base_mb``, ``rss_k_act``; memory.py's own 700 MiB and x1 when unfitted), and the tensors held through the
    step (weights, gradients, optimizer state, snapshot, reference) scaled by ``rss_k_state`` (x1 unfitted)."""
    from ..train.memory import PROMPT_TOKENS, estimate_peak_mb, shape_of

    f = {**DEFAULT_FIT, **(fit or {})}
    parts = dict(estimate_peak_mb(shape_of(cfg.model), cfg))
    b = cfg.batch_size
    micro = min(b, cfg.micro_batch or b)
    shared = cfg.shared_prefix and not cfg.gradient_checkpointing and cfg.num_generations > 1
    per_prompt = min(micro, cfg.num_generations)  # rows sharing one prefix in a micro-batch (at least)
    tokens = work.decode_steps + (work.prompt_width / per_prompt if shared else work.prompt_width)
    parts["activations"] *= f["rss_k_act"] * tokens / (PROMPT_TOKENS + cfg.max_completion_length)
    parts["baseline"] = f["rss_base_mb"]
    for k in ("weights", "grads", "optimizer", "rollout", "reference"):  # tensors held through the step
        parts[k] *= f["rss_k_state"]
    parts["total"] = sum(v for k, v in parts.items() if k != "total")
    return parts


def predict(m: ModelShape, cfg: TrainConfig, mach: Machine, fit: dict | None = None,
            work: Workload | None = None, mode: str = "cpugrpo") -> dict:
    """Seconds per phase of one step, the step, samples/s, peak RSS, and each phase's physical bound (efficiency
    1, no overhead; memory traffic only where the data exceed the last-level cache; matmuls at the faster of the
    phase's dtype and fp32). ``mode``: "cpugrpo" or a TRL peer ("trl-defaults", "trl-cpu": no snapshot, the
    training model generates, under autocast for trl-defaults)."""
    f = {**DEFAULT_FIT, **(fit or {})}
    cfg = peer_config(cfg, mode)
    work = work or Workload.of(cfg)
    procs = getattr(cfg, "processes", 1) or 1
    if procs > 1:
        return _data_parallel(m, cfg, mach, f, work, mode, procs)
    d = m.dims
    threads = cfg.threads or mach.usable
    bw = mach.peak("bandwidth", threads) * 1e9
    llc = mach.llc_bytes or 0.0
    B, P, T = cfg.batch_size, work.prompt_width, max(1.0, work.decode_steps)
    fp32 = mach.peak("fp32", threads) * 1e9

    # generate: a prefill, then T - 1 decode steps, each reading the snapshot (and the KV cache)
    r_dtype = rollout_dtype(cfg, mode)
    g_r = mach.peak(r_dtype, threads) * 1e9
    f_pre = forward_flops(d, B, P, P, B)["total"]
    w_bytes, kv_b = snapshot_bytes(m, cfg, mode)
    in_cache = w_bytes <= llc
    mean_ctx = P + T / 2  # decode step j attends to P + j positions
    f_dec = (T - 1) * forward_flops(d, B, 1, mean_ctx, B)["total"]
    b_dec = 0.0 if in_cache else (T - 1) * (w_bytes + B * mean_ctx * 2 * d.layers * d.kv_heads * d.head_dim * kv_b)
    roof_dec = max(f_dec / g_r, b_dec / bw)
    gen = f_pre / g_r / f["e_prefill"] + roof_dec / f["e_decode"] + T * (d.layers * f["o_layer_s"] + f["o_token_s"])

    # refresh: the snapshot cast or requantized from the policy's weights
    r_bytes, r_kind = refresh_bytes(m, cfg, mode)
    refresh = r_bytes / bw / f[f"e_refresh_{r_kind}"] if r_kind != "none" else 0.0
    scoring = f["c_score_s"] * B

    # update: the executed matmuls, the optimizer's state traffic, non-matmul activation traffic, framework
    # passes, autocast's weight casts, gradient accumulation and (release_memory) page faults
    frozen = cfg.adapter != "none"
    uwork = update_work(cfg, cfg.prompts_per_step, P, T, mode)
    flops = executed_flops(d, uwork, cfg.gradient_checkpointing, frozen)["total"]
    u_dtype, u_eff = update_dtype(cfg, mode)
    g_u = mach.peak(u_dtype, threads) * 1e9
    opt = optimizer_bytes(m, cfg)
    fam = optimizer_family(cfg.optimizer)
    n_micro = B // min(B, cfg.micro_batch or B)
    grad_bytes = opt / OPT_BYTES[fam][0] * 4 if frozen else m.n_params * (2 if _bf16_weights(cfg) else 4)
    tokens = sum(w["rows"] * w["q_len"] for w in uwork)
    act = f["k_act"] * tokens * d.layers * (d.hidden + d.intermediate) * 4 * 3 / bw
    casts = n_micro * m.n_params * 6 / bw if u_eff == "e_update_autocast" else 0.0  # fp32 -> bf16, per forward
    passes = n_micro * d.layers * (3 if cfg.gradient_checkpointing else 2)  # layer forwards and backwards
    update = (flops / g_u / f[u_eff] + opt / bw / f[f"e_opt_{fam}"] + act + casts + passes * f["o_pass_layer_s"]
              + (n_micro - 1) * m.n_params * f["k_micro"] / bw + f["o_update_s"]
              + (f["k_fault"] * n_micro * grad_bytes / bw if cfg.release_memory else 0.0))

    phases = {"generate": gen, "refresh": refresh, "scoring": scoring, "update": update, "communication": 0.0}
    step = sum(phases.values())
    big = lambda nbytes: nbytes / bw if nbytes > llc else 0.0  # noqa: E731
    bound = {"generate": (f_pre + f_dec) / max(g_r, fp32) if in_cache else
             f_pre / max(g_r, fp32) + max(f_dec / max(g_r, fp32), b_dec / bw),
             "refresh": big(r_bytes), "scoring": 0.0,
             "update": flops / max(g_u, fp32) + big(opt) + big(casts * bw), "communication": 0.0}
    rss = peak_rss_mb(cfg, work, f)
    return {"step_s": step, "phases": phases, "rollout_s": gen + refresh, "samples_per_s": B / step,
            "peak_rss_mb": rss["total"], "rss_parts_mb": rss, "bound": bound, "bound_step_s": sum(bound.values()),
            "work": {"update_flops": flops, "prefill_flops": f_pre, "decode_flops": f_dec, "decode_bytes": b_dec,
                     "snapshot_bytes": w_bytes, "weights_in_llc": in_cache, "refresh_bytes": r_bytes,
                     "refresh_kind": r_kind, "optimizer_bytes": opt, "gradient_bytes": grad_bytes,
                     "prompt_width": P, "decode_steps": T, "workload_from": work.source, "threads": threads,
                     "rollout_dtype": r_dtype, "gemm_rollout_gflops": g_r / 1e9, "update_dtype": u_dtype,
                     "gemm_update_gflops": g_u / 1e9, "bandwidth_gbps": bw / 1e9, "processes": 1,
                     "update_efficiency": u_eff, "optimizer_family": fam,
                     "probes_scaled": mach.scaled(threads)}}


def _data_parallel(m, cfg, mach, f, work, mode, procs) -> dict:
    """P ranks: each predicted on its share of the batch at its own threads, with 1/P of the bandwidth measured at
    P x T threads and of the last-level cache, plus the gradients' all-reduce: 2 (P-1)/P x gradient bytes / BW
    (a ring over gloo through shared memory: an assumption, not a measurement). Peak RSS: P ranks."""
    t = cfg.threads or max(1, mach.usable // procs)
    rank_b = max(cfg.num_generations, cfg.batch_size // procs)
    micro = cfg.micro_batch if cfg.micro_batch and rank_b % cfg.micro_batch == 0 else None
    share = Machine(mach.machine_id, mach.gemm, {t: mach.peak("bandwidth", min(procs * t, max(
        mach.usable, t))) / procs}, (mach.llc_bytes or 0.0) / procs or None, mach.usable)
    one = predict(m, cfg.replace(processes=1, threads=t, batch_size=rank_b, micro_batch=micro), share, f, work, mode)
    bw = share.peak("bandwidth", t) * 1e9
    comm = 2 * (procs - 1) / procs * one["work"]["gradient_bytes"] / bw
    one["phases"]["communication"] = one["bound"]["communication"] = comm
    step = sum(one["phases"].values())
    one.update(step_s=step, samples_per_s=cfg.batch_size / step, bound_step_s=sum(one["bound"].values()),
               peak_rss_mb=procs * one["peak_rss_mb"], rank_peak_rss_mb=one["peak_rss_mb"])
    one["work"].update(processes=procs, rank_batch=rank_b)
    return one
