"""One frozen dataclass for a training run, its validation (errors say how to fix), and TOML in/out.

Precedence is explicit: defaults < config file (``[train]`` table or top-level keys) < CLI flags.
``resolve_config`` returns the final config and where each value came from, so the CLI can print it.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

from .errors import ConfigError
from .knobs import _UNSET, Knob, field_type, knob, registry

UPDATE_PRECISIONS = ("fp32", "bf16-autocast", "bf16", "bf16-sr")
ROLLOUT_PRECISIONS = ("fp32", "bf16", "int8")
REF_PRECISIONS = ("fp32", "bf16")
# transformers' names: torch's fused and foreach AdamW, transformers' Adafactor, torchao's and bitsandbytes' 8-bit AdamW
OPTIMIZERS = ("adamw_torch_fused", "adamw_torch", "adafactor", "adamw_torch_8bit", "adamw_bnb_8bit")
ADAPTERS = ("none", "lora")
BASE_PRECISIONS = ("bf16", "fp32")
LARGE_PRESETS = ("qwen2-0.5b", "qwen2-1.5b")  # the measured workload there is one prompt x 8 completions


DIFFICULTIES = ("basic", "intermediate", "advanced")
EVAL_SPLITS = ("dev", "test", "heldout")  # train/data.py: the held-out halves, and both together
SCALE_REWARDS = ("group", "batch", "none")  # TRL's values
# The training recipe `cpugrpo train` (and every command that resolves a config) uses on the tiny preset, chosen on
# the dev split (docs/LOG.md, 2026-12-04): correctness alone, unscaled advantages, a KL anchor. The dataclass
# defaults stay TRL's, so trials, sweeps and the asv suite measure the same work as before; other models keep them.
TINY_RECIPE = {"format_reward_weight": 0.0, "scale_rewards": "none", "beta": 0.04}


def _one_prompt(cfg) -> int:
    """The Qwen2 shapes' default batch: one prompt's completions."""
    return cfg.num_generations


def _micro_of_four(cfg) -> int:
    """A lean micro-batch: the largest divisor of the step's batch up to 4 completions."""
    return max(d for d in range(1, 5) if cfg.batch_size % d == 0)


def _lora_micro(cfg) -> int | None:
    """LoRA's default micro-batch: lean on the Qwen2 shapes (activations dominate a LoRA step's memory there), the
    whole batch elsewhere."""
    return _micro_of_four(cfg) if cfg.model in LARGE_PRESETS else None


def _nearest_multiples(n: int, k: int) -> str:
    lo, hi = (n // k) * k, (n // k + 1) * k
    return f"{lo} or {hi}" if lo > 0 else f"{hi}"


@dataclass(frozen=True)
class TrainConfig:
    """A training run. Every field is a knob (core/knobs.py): its flag, checks, tuner axis and report column come
    from the metadata declared here, and nowhere else."""

    model: str = knob("tiny", "preset (tiny, small, qwen2-0.5b, qwen2-1.5b) or a local model directory",
                      identity=True, workload=True)
    steps: int = knob(600, "GRPO steps")  # chosen 2026-11-21 on dev and test together (docs/LOG.md)
    threads: int | None = knob(None, "intra-op threads (default: every usable CPU)", axis=0, identity=True,
                               workload=True, bench=True)
    processes: int = knob(1, "data-parallel processes (torch.distributed ranks over gloo), each with --threads "
                          "threads pinned to its own cores; the batch stays the global batch, split across ranks",
                          identity=True, before=1, axis=0.5)  # tuned after threads, P x T <= usable CPUs
    batch_size: int = knob(64, "completions per step (prompts per step x num generations)", axis=5,
                           column="prompts_per_step", tune_values=(4, 8, 16), quick_values=(4, 8),
                           bench_values=(4, 8), identity=True, workload=True, bench=True,
                           default_if=tuple(("model", m, _one_prompt) for m in LARGE_PRESETS))
    micro_batch: int | None = knob(None, "completions per forward/backward: the step's batch is processed in micro-"
                                   "batches of this size with gradients accumulated (same update, less activation "
                                   "memory); default: the whole batch", identity=True, before=None,
                                   lean=_micro_of_four, default_if=(("adapter", "lora", _lora_micro),))
    num_generations: int = knob(8, "completions per prompt (the GRPO group size)", identity=True, workload=True)
    max_completion_length: int = knob(48, "max new tokens per completion", identity=True, workload=True)
    learning_rate: float = knob(3e-5, "learning rate")
    optimizer: str = knob("adamw_torch_fused", "optimizer: fused AdamW (transformers' default), foreach AdamW, "
                          "Adafactor (factored second moments, no first moment: least memory), or 8-bit AdamW from "
                          "torchao (torch.compile'd) or bitsandbytes", choices=OPTIMIZERS,
                          identity=True, before="adamw_torch_fused", axis=2.5, lean="adafactor",
                          tune_values=("adamw_torch_fused", "adafactor"))
    adapter: str = knob("none", "none: full-parameter update; lora: peft LoRA adapters on a frozen base",
                        choices=ADAPTERS, identity=True, before="none")
    lora_rank: int = knob(16, "LoRA rank r", before=16)
    lora_alpha: int = knob(32, "LoRA alpha (the adapter's scale is alpha / r)", before=32)
    lora_targets: str = knob("all-linear", "modules LoRA adapts: peft's 'all-linear' or comma-separated names "
                             "(q_proj,v_proj)", before="all-linear")
    base_precision: str = knob("bf16", "precision of the frozen base weights under an adapter (never updated)",
                               choices=BASE_PRECISIONS, needs={"bf16": "bf16"}, before="bf16")
    temperature: float = knob(1.0, "sampling temperature of the rollouts", workload=True)
    num_iterations: int = knob(1, "policy updates per batch of completions (TRL's num_iterations, GRPO's mu): above "
                               "1, each rollout is reused with the clipped importance ratio", before=1,
                               workload=True)
    seed: int = knob(0, "seed of the training problems and the sampling (a training seed: the model stays the same)",
                     workload=True)
    preset_seed: int = knob(0, "seed of the tiny preset's build (the warm start itself: each seed is its own model)",
                            before_from="seed", workload=True)
    update_precision: str = knob("fp32", "precision of the policy update (bf16: weights in bf16, updates rounded to "
                                 "nearest; bf16-sr: weights in bf16, updates stochastically rounded)",
                                 choices=UPDATE_PRECISIONS, axis=2, lean="bf16-sr",
                                 tune_values=("fp32", "bf16-autocast", "bf16", "bf16-sr"),
                                 bench_values=("fp32", "bf16-autocast", "bf16"),
                                 needs={"bf16-autocast": "bf16", "bf16": "bf16", "bf16-sr": "bf16"},
                                 identity=True, bench=True)
    rollout_precision: str = knob("fp32", "precision of the rollout snapshot (int8: dynamic quantization)",
                                  choices=ROLLOUT_PRECISIONS, axis=1, tune_values=("fp32", "int8", "bf16"),
                                  bench_values=ROLLOUT_PRECISIONS,
                                  needs={"bf16": "bf16"}, identity=True, bench=True, lean="bf16",
                                  default_if=(("adapter", "lora", "bf16"),))
    int8_lm_head: bool = knob(False, "int8 rollouts quantize the LM head too (an untied int8 copy of a tied head)",
                              identity=True, before=False)
    gradient_checkpointing: bool = knob(False, "recompute activations in backward (less memory, more time)",
                                        axis=4, quick_values=(False,), label="checkpointing", identity=True,
                                        bench=True)
    shared_prefix: bool = knob(True, "update forward runs each distinct prompt once, not once per completion",
                               axis=3, identity=True, before=False, keyed_at_before=True)  # prefix.py
    release_memory: bool = knob(False, "return freed blocks of 128 KiB or more to the OS at once (glibc mallopt "
                                "M_MMAP_THRESHOLD): lower peak RSS, slower (every large allocation page-faults afresh)",
                                identity=True, before=False, lean=True, default_if=(("adapter", "lora", True),))
    beta: float = knob(0.0, "KL weight; > 0 adds a reference model (tiny's default: 0.04, chosen on dev)",
                       identity=True, default_if=(("model", "tiny", TINY_RECIPE["beta"]),))
    ref_precision: str = knob("fp32", "reference model precision", choices=REF_PRECISIONS, label="reference precision")
    format_reward_weight: float = knob(0.25, "weight of the format reward (0: correctness alone; tiny's default)",
                                       workload=True,
                                       default_if=(("model", "tiny", TINY_RECIPE["format_reward_weight"]),))
    scale_rewards: str = knob("group", "advantage scaling (TRL's scale_rewards): group divides by each group's "
                              "reward std (GRPO), batch by the batch's, none leaves them unscaled (Dr. GRPO; tiny's "
                              "default)", choices=SCALE_REWARDS, before="group", workload=True,
                              default_if=(("model", "tiny", TINY_RECIPE["scale_rewards"]),))
    memory_budget_gb: float | None = knob(None, "GB the run may use (default: 80% of available RAM)",
                                          flag="--memory-budget")
    adaptive_batch: bool = knob(False, "choose the largest batch whose estimated peak memory fits the budget")
    eval_n: int = knob(600, "held-out problems evaluated before and after")
    eval_split: str = knob("test", "held-out half evaluated before and after: test (the reported numbers), dev (where "
                           "choices are made), heldout (both: what rows before the split evaluated)",
                           choices=EVAL_SPLITS, before="heldout")
    eval_precision: str = knob("fp32", "precision of the evaluating model", choices=ROLLOUT_PRECISIONS)
    data: str | None = knob(None, "GSM8K-format jsonl file to train on instead of synthetic problems", workload=True)
    difficulties: tuple[str, ...] = knob(DIFFICULTIES, "difficulty levels to train on", flag=None,
                                         choices=DIFFICULTIES, workload=True)

    def __post_init__(self):
        def need(cond, msg):
            if not cond:
                raise ConfigError(msg)

        for f in fields(self):
            v = getattr(self, f.name)
            if f.type in ("int", "int | None") and v is not None:
                need(isinstance(v, int) and not isinstance(v, bool), f"{f.name} must be an integer, got {v!r}")
            if f.type in ("float", "float | None") and v is not None:
                need(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
                     f"{f.name} must be a finite number, got {v!r}")
            if f.type == "bool":
                need(isinstance(v, bool), f"{f.name} must be true or false, got {v!r}")
        need(self.steps >= 1, f"steps must be at least 1, got {self.steps}: use --steps 1 or more")
        need(self.threads is None or self.threads >= 1, f"threads must be at least 1, got {self.threads}")
        need(self.num_iterations >= 1, f"num_iterations must be at least 1, got {self.num_iterations}")
        need(self.processes >= 1, f"processes must be at least 1, got {self.processes}: use --processes 1 or more")
        need(self.num_generations >= 2,
             f"num_generations must be at least 2 (GRPO compares completions within a group), got "
             f"{self.num_generations}")
        need(self.batch_size >= self.num_generations,
             f"per-step batch {self.batch_size} is smaller than num_generations {self.num_generations}: use "
             f"--batch-size {self.num_generations} or more")
        need(self.batch_size % self.num_generations == 0,
             f"per-step batch {self.batch_size} is not divisible by num_generations {self.num_generations}: use "
             f"{_nearest_multiples(self.batch_size, self.num_generations)}")
        need(self.micro_batch is None or (self.micro_batch >= 1 and self.batch_size % self.micro_batch == 0),
             f"micro_batch {self.micro_batch} does not divide the batch {self.batch_size}: use a divisor of it, e.g. "
             f"{self.num_generations}")
        need(self.batch_size % self.processes == 0,  # the global batch, split evenly over the ranks (runs/launch.py)
             f"per-step batch {self.batch_size} does not split over {self.processes} processes: use a batch divisible "
             f"by {self.processes}, or other --processes")
        need(self.micro_batch is None or (self.batch_size // self.processes) % self.micro_batch == 0,
             f"micro_batch {self.micro_batch} does not divide each process's {self.batch_size // self.processes} "
             f"completions: use a divisor of {self.batch_size // self.processes}")
        need(self.max_completion_length >= 1, "max_completion_length must be at least 1")
        need(0 < self.learning_rate < 1, f"learning_rate must be in (0, 1), got {self.learning_rate}")
        need(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        for name, k in KNOBS.items():
            v = getattr(self, name)
            if k.choices and not isinstance(v, tuple):
                need(v in k.choices, f"unknown {k.text(name)} {v!r}: use one of {', '.join(map(str, k.choices))}")
        need(self.lora_rank >= 1, f"lora_rank must be at least 1, got {self.lora_rank}")
        need(self.lora_alpha > 0, f"lora_alpha must be > 0, got {self.lora_alpha}")
        need(self.beta >= 0, f"beta must be >= 0 (0 disables the reference model), got {self.beta}")
        need(self.format_reward_weight >= 0, "format_reward_weight must be >= 0")
        need(self.preset_seed >= 0, f"preset_seed must be >= 0, got {self.preset_seed}")
        need(self.memory_budget_gb is None or self.memory_budget_gb > 0,
             f"memory_budget_gb must be > 0, got {self.memory_budget_gb}")
        need(self.eval_n >= 3, f"eval_n must be at least 3, got {self.eval_n}")
        bad = [d for d in self.difficulties if d not in DIFFICULTIES]
        need(not bad and len(self.difficulties) > 0,
             f"unknown difficulty {bad[0] if bad else '(none)'!r}: use some of {', '.join(DIFFICULTIES)}")

    @property
    def prompts_per_step(self) -> int:
        return self.batch_size // self.num_generations

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["difficulties"] = list(self.difficulties)
        return d

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


FIELD_NAMES = tuple(f.name for f in fields(TrainConfig))
KNOBS: dict[str, Knob] = registry(TrainConfig)
FLAG_KEYS = tuple(n for n, k in KNOBS.items() if k.flag is not None)       # the train/curriculum flags
IDENTITY_KEYS = tuple(n for n, k in KNOBS.items() if k.identity)           # what a trial measured
WORKLOAD_KEYS = tuple(n for n, k in KNOBS.items() if k.workload)           # the work every baseline side shares
COLUMNS = {n: (k.column or n) for n, k in KNOBS.items()}                   # report column of each knob
ALIASES = {k.column: n for n, k in KNOBS.items() if k.column}               # prompts_per_step -> batch_size
BEFORE_THE_KNOB = {n: k.before for n, k in KNOBS.items() if k.before is not _UNSET}
BEFORE_FROM = {n: k.before_from for n, k in KNOBS.items() if k.before_from}  # preset_seed -> seed
RECIPE_KEYS = tuple(TINY_RECIPE)


def fill_before(config: dict) -> dict:
    """A stored config with every knob added since it was written at the value it ran with.

    >>> fill_before({"seed": 2})["preset_seed"], fill_before({"seed": 2, "preset_seed": 0})["preset_seed"]
    (2, 0)
    """
    out = {**BEFORE_THE_KNOB, **config}
    for name, other in BEFORE_FROM.items():
        out.setdefault(name, out.get(other, getattr(TrainConfig, other)))
    return out


def from_columns(point: dict, base: dict | None = None) -> dict:
    """A point keyed by report columns (``prompts_per_step``) as TrainConfig keys (``batch_size`` = prompts per step
    x num_generations, the latter from the point, else ``base``, else the default).

    >>> from_columns({"prompts_per_step": 4, "threads": 2})
    {'threads': 2, 'batch_size': 32}
    """
    out = {k: v for k, v in point.items() if k not in ALIASES}
    if "prompts_per_step" in point:
        g = point.get("num_generations", (base or {}).get("num_generations", TrainConfig.num_generations))
        out["batch_size"] = point["prompts_per_step"] * g
    return out


def key_dict(cfg: TrainConfig, given=None) -> dict:
    """The config as a trial's key sees it: a knob at the value rows ran with before it existed is left out, so
    adding a knob changes no stored trial's key. ``keyed_at_before`` knobs (rows were keyed with them before this
    rule) are left out only when ``given`` (the keys the stored spec spelled out) lacks them."""
    given = set(cfg.to_dict() if given is None else given)
    d = cfg.to_dict()
    return {k: v for k, v in d.items()
            if not (k in BEFORE_THE_KNOB and v == BEFORE_THE_KNOB[k] and (not KNOBS[k].keyed_at_before
                                                                           or k not in given))
            and not (k in BEFORE_FROM and v == d[BEFORE_FROM[k]])}


def tuner_axes() -> list[tuple[str, Knob]]:
    """(name, knob) of every tuner axis, in coordinate-descent order."""
    return sorted(((n, k) for n, k in KNOBS.items() if k.axis is not None), key=lambda nk: nk[1].axis)


def bench_knobs() -> list[tuple[str, Knob]]:
    """(name, knob) of every asv parameter of the GRPO benchmarks, in declaration order."""
    return [(n, k) for n, k in KNOBS.items() if k.bench]


def knob_values(k: Knob, key: str = "tune") -> list:
    """The values a tuner (``key="tune"``/``"quick"``) or benchmark (``"bench"``) tries for a knob.

    >>> knob_values(KNOBS["gradient_checkpointing"]), knob_values(KNOBS["gradient_checkpointing"], "quick")
    ([False, True], [False])
    """
    own = {"tune": k.tune_values, "quick": k.quick_values or k.tune_values, "bench": k.bench_values}[key]
    return list(own or k.tune_values or k.choices or (False, True))


def from_mapping(values: dict, base: TrainConfig | None = None, origin: str = "config") -> TrainConfig:
    """Apply ``values`` over ``base``; unknown keys and wrong types are ConfigError."""
    unknown = sorted(set(values) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]!r} in {origin}: valid keys are {', '.join(FIELD_NAMES)}")
    values = dict(values)
    if "difficulties" in values:
        d = values["difficulties"]
        values["difficulties"] = tuple(d.split(",") if isinstance(d, str) else d)
    for k, v in values.items():  # TOML integers are fine where floats are expected
        if field_type(TrainConfig, k).startswith("float") and isinstance(v, int) and not isinstance(v, bool):
            values[k] = float(v)
    try:
        return dataclasses.replace(base or TrainConfig(), **values)
    except TypeError as e:
        raise ConfigError(f"{origin}: {e}") from None


def read_toml(path: str | Path, what: str = "config file") -> dict:
    """A TOML document; a missing or malformed file is a one-line ConfigError naming it."""
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist: check the path") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{what} {path} is not valid TOML ({e}): fix the file") from None


def load_toml(path: str | Path) -> dict:
    """The training keys of a TOML file: its ``[train]`` table if present, else its top-level scalars."""
    path = Path(path)
    doc = read_toml(path)
    table = doc.get("train", doc)
    if not isinstance(table, dict):
        raise ConfigError(f"config file {path}: [train] must be a table")
    return {k: v for k, v in table.items() if not isinstance(v, dict)}


def resolve_config(file: str | Path | None, flags: dict, recipe: bool = True) -> tuple[TrainConfig, dict[str, str]]:
    """defaults < file < flags. Returns the config and, per key that is not a default, where it came from.
    ``recipe=False``: without tiny's training recipe (``TINY_RECIPE``), for commands that measure the engine's work
    as trials do (baseline, predict) or study something the recipe's KL anchor would confound (curriculum)."""
    cfg, origin = TrainConfig(), {}
    if file:
        values = load_toml(file)
        cfg = from_mapping(values, cfg, f"config file {file}")
        origin.update({k: f"file {file}" for k in values})
    flags = {k: v for k, v in flags.items() if v is not None}
    cfg = from_mapping(flags, cfg, "command-line flags")
    origin.update({k: "flag" for k in flags})
    return with_context_defaults(cfg, origin, recipe)


def with_context_defaults(cfg: TrainConfig, origin: dict, recipe: bool = True) -> tuple[TrainConfig, dict]:
    """Apply every knob's ``default_if`` to the knobs ``origin`` does not name (neither a file nor a flag set them);
    ``origin`` gains "default for <knob>=<value>" for each. ``recipe=False`` leaves tiny's training recipe out (the
    tuner's trials measure TRL's reward settings, as every committed trial did). Returns the config and origins."""
    origin = dict(origin)
    for name, k in KNOBS.items():  # in declaration order, each seeing the ones before it
        if name not in origin and (recipe or name not in RECIPE_KEYS):
            hit = next(((o, v, d) for o, v, d in k.default_if if getattr(cfg, o) == v), None)
            if hit is None:
                continue
            value = hit[2](cfg) if callable(hit[2]) else hit[2]
            if getattr(cfg, name) != value:
                cfg = from_mapping({name: value}, cfg, "contextual defaults")
                origin[name] = f"default for {hit[0]}={hit[1]}"
    return cfg, origin


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump_toml(tables: dict[str, dict], header: str = "") -> str:
    """Minimal TOML writer for tables of scalars and lists (None values are omitted, TOML has no null)."""
    out = [f"# {line}" for line in header.splitlines()] + ([""] if header else [])
    for name, table in tables.items():
        out.append(f"[{name}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
        out.append("")
    return "\n".join(out)


def save_toml(cfg: TrainConfig, path: str | Path) -> None:
    from .store import atomic_write_text

    atomic_write_text(Path(path), dump_toml({"train": cfg.to_dict()}, "cpugrpo resolved training config"))
