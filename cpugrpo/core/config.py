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

UPDATE_PRECISIONS = ("fp32", "bf16-autocast", "bf16")
ROLLOUT_PRECISIONS = ("fp32", "bf16", "int8")
REF_PRECISIONS = ("fp32", "bf16")


DIFFICULTIES = ("basic", "intermediate", "advanced")


def _nearest_multiples(n: int, k: int) -> str:
    lo, hi = (n // k) * k, (n // k + 1) * k
    return f"{lo} or {hi}" if lo > 0 else f"{hi}"


@dataclass(frozen=True)
class TrainConfig:
    model: str = "tiny"
    steps: int = 600                    # +10.2 points [+6.9, +13.4] on tiny (docs/LOG.md); 300 gave +2.8
    threads: int | None = None          # None: every usable CPU
    batch_size: int = 64                # completions per step = prompts per step x num_generations
    num_generations: int = 8
    max_completion_length: int = 48
    learning_rate: float = 3e-5
    temperature: float = 1.0
    seed: int = 0
    update_precision: str = "fp32"
    rollout_precision: str = "fp32"
    gradient_checkpointing: bool = False
    shared_prefix: bool = True          # each distinct prompt's forward once per update (prefix.py)
    beta: float = 0.0                   # KL weight; > 0 loads a reference model
    ref_precision: str = "fp32"
    format_reward_weight: float = 0.25
    memory_budget_gb: float | None = None  # None: 80% of available RAM
    adaptive_batch: bool = False        # choose batch_size from the memory budget
    eval_n: int = 600
    eval_precision: str = "fp32"
    data: str | None = None             # GSM8K-format jsonl; None: synthetic problems
    difficulties: tuple[str, ...] = ("basic", "intermediate", "advanced")

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
        need(self.num_generations >= 2,
             f"num_generations must be at least 2 (GRPO compares completions within a group), got "
             f"{self.num_generations}")
        need(self.batch_size >= self.num_generations,
             f"per-step batch {self.batch_size} is smaller than num_generations {self.num_generations}: use "
             f"--batch-size {self.num_generations} or more")
        need(self.batch_size % self.num_generations == 0,
             f"per-step batch {self.batch_size} is not divisible by num_generations {self.num_generations}: use "
             f"{_nearest_multiples(self.batch_size, self.num_generations)}")
        need(self.max_completion_length >= 1, "max_completion_length must be at least 1")
        need(0 < self.learning_rate < 1, f"learning_rate must be in (0, 1), got {self.learning_rate}")
        need(self.temperature > 0, f"temperature must be > 0, got {self.temperature}")
        need(self.update_precision in UPDATE_PRECISIONS,
             f"unknown update precision {self.update_precision!r}: use one of {', '.join(UPDATE_PRECISIONS)}")
        need(self.rollout_precision in ROLLOUT_PRECISIONS,
             f"unknown rollout precision {self.rollout_precision!r}: use one of {', '.join(ROLLOUT_PRECISIONS)}")
        need(self.eval_precision in ROLLOUT_PRECISIONS,
             f"unknown eval precision {self.eval_precision!r}: use one of {', '.join(ROLLOUT_PRECISIONS)}")
        need(self.ref_precision in REF_PRECISIONS,
             f"unknown reference precision {self.ref_precision!r}: use one of {', '.join(REF_PRECISIONS)}")
        need(self.beta >= 0, f"beta must be >= 0 (0 disables the reference model), got {self.beta}")
        need(self.format_reward_weight >= 0, "format_reward_weight must be >= 0")
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
        if k in ("learning_rate", "temperature", "beta", "format_reward_weight", "memory_budget_gb") and \
                isinstance(v, int) and not isinstance(v, bool):
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


def resolve_config(file: str | Path | None, flags: dict) -> tuple[TrainConfig, dict[str, str]]:
    """defaults < file < flags. Returns the config and, per key that is not a default, where it came from."""
    cfg, origin = TrainConfig(), {}
    if file:
        values = load_toml(file)
        cfg = from_mapping(values, cfg, f"config file {file}")
        origin.update({k: f"file {file}" for k in values})
    flags = {k: v for k, v in flags.items() if v is not None}
    cfg = from_mapping(flags, cfg, "command-line flags")
    origin.update({k: "flag" for k in flags})
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
