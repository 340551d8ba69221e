"""Exact-match accuracy on held-out problems, per difficulty and overall, with 95% Wilson intervals.

Greedy decoding, a fixed problem set (``data.mixed(n, split, seed)``: dev, test, or both, see data.py; or a user's
GSM8K file), and a selectable precision for the model
that answers (fp32, bf16 weights, or int8 dynamic quantization: the same snapshots the rollout uses). Comparing two
evaluations of the same problems uses a paired interval (Newcombe's method 10), since both see identical questions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..core.options import at_least, normalize, one_of
from ..core.stats import wilson


@dataclass(frozen=True)
class EvalOptions:
    """What `cpugrpo eval` measures. Validated on construction: a bad value is a ConfigError (or, for the model,
    a ModelError) naming the flag and the fix."""
    model: str = "tiny"          # --model: a preset, a model directory, or a run directory (its model/ is used)
    n: int = 600                 # --n: held-out problems, balanced over difficulties
    precision: str = "fp32"      # --precision of the answering model
    seed: int = 0                # --seed of the held-out problem set
    preset_seed: int = 0         # --preset-seed: the tiny preset's build (train's knob of the same name)
    threads: int | None = None   # --threads; None: every usable CPU
    max_new_tokens: int = 48     # --max-new-tokens per answer
    split: str | None = None     # --split: dev | test | heldout (None: test; with --data, the whole file)
    data: str | None = None      # --data: a GSM8K-format jsonl file to evaluate on instead of synthetic problems

    def __post_init__(self):
        from ..hw.runtime import resolve_threads
        from .data import EVAL_SPLITS, load_gsm8k_jsonl
        from .models import resolve
        from .rollout import PRECISIONS

        normalize(self, "model", run_model_dir(self.model))
        one_of("--precision", self.precision, PRECISIONS, "precision")
        if self.split is not None:
            one_of("--split", self.split, EVAL_SPLITS, "split")
        if self.data is not None:
            load_gsm8k_jsonl(self.data)  # a bad file is refused here, before any model is loaded
        at_least("--n", self.n, 3)
        at_least("--preset-seed", self.preset_seed, 0)
        at_least("--max-new-tokens", self.max_new_tokens, 1)
        resolve_threads(self.threads)
        resolve(self.model)


def run_model_dir(spec: str) -> str:
    """A run directory (from `cpugrpo train`) holds its model under model/: accept either."""
    import os

    if os.path.isdir(spec) and not os.path.exists(os.path.join(spec, "config.json")) and \
            os.path.exists(os.path.join(spec, "model", "config.json")):
        return os.path.join(spec, "model")
    return spec


def run_eval(opts: EvalOptions, progress: bool = True) -> dict:
    """Load ``opts.model`` and evaluate it; the caller has put the thread count into the environment
    (``runtime.prepare_process``) before torch was imported."""
    from ..hw.runtime import apply_threads, resolve_threads
    from . import data, models

    apply_threads(resolve_threads(opts.threads))
    problems, source = None, {"split": opts.split or "test", "seed": opts.seed}
    if opts.data:
        problems = data.load_gsm8k_jsonl(opts.data)
        if opts.split:
            problems = data.split_problems(problems, opts.split)
            if not problems:
                raise data.DataError(f"{opts.data} has no problems in the {opts.split} split: drop --split to "
                                     f"evaluate the whole file")
        problems = problems[:opts.n]
        source = {"data": os.path.basename(opts.data), "split": opts.split or "all", "problems": len(problems)}
    loaded = models.load(opts.model, seed=opts.preset_seed, progress=progress)
    r = evaluate(loaded.model, loaded.tokenizer, n=opts.n, seed=opts.seed, precision=opts.precision,
                 progress=progress, random_weights=loaded.random_weights, max_new_tokens=opts.max_new_tokens,
                 problems=problems, split=opts.split or "test")
    return {"model": loaded.source, "evaluated_on": source, **r.to_dict()}


@dataclass
class Accuracy:
    correct: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    def to_dict(self) -> dict:
        return {"accuracy": self.value, "correct": self.correct, "n": self.n, "ci95": [self.low, self.high]}


@dataclass
class EvalResult:
    overall: Accuracy
    by_difficulty: dict[str, Accuracy]
    precision: str
    seconds: float
    per_item: list[bool] = field(repr=False, default_factory=list)
    samples: list[dict] = field(repr=False, default_factory=list)
    random_weights: bool = False

    def to_dict(self) -> dict:
        out = {"overall": self.overall.to_dict(),
               "by_difficulty": {k: v.to_dict() for k, v in self.by_difficulty.items()},
               "precision": self.precision, "seconds": round(self.seconds, 2)}
        if self.random_weights:
            out["note"] = "random-weight preset: accuracy is not meaningful"
        return out


def held_out(cfg) -> list:
    """The problems a training run is evaluated on: ``cfg.eval_n`` problems of ``cfg.eval_split`` (balanced over
    difficulties), or, with ``cfg.data``, the part of the user's file that the hash rule puts in that split (the
    training run never sees it; at most ``eval_n`` of them)."""
    from . import data

    if cfg.data:
        problems = data.split_problems(data.load_gsm8k_jsonl(cfg.data), cfg.eval_split)
        if not problems:
            raise data.DataError(f"data file {cfg.data} has no problems in the {cfg.eval_split} split (the hash rule "
                                 f"holds out about 10% per split): give a larger file")
        return problems[:cfg.eval_n]
    return data.mixed(cfg.eval_n, cfg.eval_split, cfg.seed)


def _accuracy(flags: list[bool]) -> Accuracy:
    k, n = sum(flags), len(flags)
    return Accuracy(k, n, *wilson(k, n))


def evaluate(model, tokenizer, n: int = 600, seed: int = 0, precision: str = "fp32", batch_size: int = 64,
             max_new_tokens: int = 64, problems=None, progress: bool = True, random_weights: bool = False,
             keep_samples: int = 0, split: str = "test") -> EvalResult:
    """Greedy exact-match accuracy on ``problems``, or on ``n`` problems of the held-out ``split`` (balanced over
    difficulties)."""
    import time

    import torch
    from tqdm.auto import tqdm

    from . import data, rollout
    from .models import prompt_text
    from .rewards import correctness_reward

    problems = problems if problems is not None else data.mixed(n, split, seed)
    answerer = rollout.RolloutModel(model, precision)
    answerer.refresh()
    t0 = time.perf_counter()
    flags: list[bool] = []
    samples: list[dict] = []
    was_training = model.training
    model.eval()
    bar = tqdm(range(0, len(problems), batch_size), desc=f"eval ({precision})", disable=not progress, leave=False)
    for start in bar:
        chunk = problems[start:start + batch_size]
        enc = tokenizer([prompt_text(tokenizer, p.question) for p in chunk], return_tensors="pt", padding=True,
                        add_special_tokens=False, padding_side="left")
        with torch.no_grad():
            out = answerer.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                    do_sample=False, max_new_tokens=max_new_tokens,
                                    pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
        rewards = correctness_reward(texts, answer=[p.answer for p in chunk])
        flags += [r == 1.0 for r in rewards]
        if len(samples) < keep_samples:
            samples += [{"question": p.question, "completion": t, "gold": p.answer}
                        for p, t in zip(chunk, texts)][:keep_samples - len(samples)]
    if was_training:
        model.train()
    by = {}
    for level in data.DIFFICULTIES:
        level_flags = [f for f, p in zip(flags, problems) if p.difficulty == level]
        if level_flags:
            by[level] = _accuracy(level_flags)
    return EvalResult(_accuracy(flags), by, precision, time.perf_counter() - t0, flags, samples, random_weights)
