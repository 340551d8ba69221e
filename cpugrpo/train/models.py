"""Model presets and loading, all without downloads.

- ``tiny`` (default): a 5.9M-parameter Qwen2 with a BPE tokenizer trained here on the synthetic corpus, warm-started
  by a short supervised pass on copy drills, worked solutions and equation drills. Digit runs are split off before
  byte-level BPE (``SPLIT_DIGITS = False``), and BPE merges every number of the corpus (0..99) into one token, so a
  number is the same single token wherever it stands and copying an operand is a copy of one token (docs/LOG.md,
  the warm-start entry: "a number must be one token wherever it stands").
  Built once, deterministically from a seed, and cached under the user's cache directory; results record it as
  ``tiny`` plus its cache key (``Loaded.cache_key``), never by the cache's path.
- ``small`` (36.5M), ``qwen2-0.5b`` (the Qwen2-0.5B-Instruct shape, 494.0M parameters) and ``qwen2-1.5b`` (the
  Qwen2-1.5B-Instruct shape, 1.54B): random weights, built directly in the dtype asked for, for throughput and memory
  only. Their accuracy is meaningless; ``Preset.random_weights`` says so to every caller.
- any local Hugging Face model directory (or a hub id where the hub is reachable); ``trust_remote_code`` is off.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import CpugrpoError
from ..core.paths import portable

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "{% if message['role'] == 'assistant' %}<|end|>{% endif %}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
TOKENIZER_VOCAB = 1024
SPLIT_DIGITS = False
BUILD_VERSION = 1  # bump when the tiny recipe changes: the cache key includes it


@dataclass(frozen=True)
class Preset:
    name: str
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    vocab_size: int | None  # None: the local tokenizer's size
    tie_word_embeddings: bool
    random_weights: bool
    max_position_embeddings: int = 2048
    rope_theta: float = 10000.0

    def qwen2_config(self, vocab_size: int, **overrides):
        from transformers import Qwen2Config

        return Qwen2Config(
            vocab_size=self.vocab_size or vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            max_position_embeddings=self.max_position_embeddings,
            rope_theta=self.rope_theta,
            tie_word_embeddings=self.tie_word_embeddings,
            **overrides,
        )

    def n_params(self, vocab_size: int = TOKENIZER_VOCAB) -> int:
        """Parameter count from the shape alone (used for memory estimates before anything is built)."""
        h, i, L = self.hidden_size, self.intermediate_size, self.num_hidden_layers
        v = self.vocab_size or vocab_size
        kv = h // self.num_attention_heads * self.num_key_value_heads
        per_layer = (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * i + 2 * h
        return v * h * (1 if self.tie_word_embeddings else 2) + L * per_layer + h


PRESETS = {
    # Shallow and wide: small transformers leave the copy (induction) plateau sooner with fewer layers.
    "tiny": Preset("tiny", 512, 2, 8, 2, 1408, None, True, False),
    "small": Preset("small", 512, 12, 8, 2, 1536, None, True, True),
    # Qwen2-0.5B-Instruct's config.json, with its vocabulary; our tokenizer uses only the first ids.
    "qwen2-0.5b": Preset("qwen2-0.5b", 896, 24, 14, 2, 4864, 151936, True, True, 32768, 1000000.0),
    # Qwen2-1.5B-Instruct's config.json (1.54B parameters): speed and memory only.
    "qwen2-1.5b": Preset("qwen2-1.5b", 1536, 28, 12, 2, 8960, 151936, True, True, 32768, 1000000.0),
}


class ModelError(CpugrpoError, ValueError):
    """A model that cannot be found or built; the message says what to do."""


def cache_dir() -> Path:
    root = os.environ.get("CPUGRPO_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cpugrpo")
    return Path(root)


# ---------------------------------------------------------------------------------------------------- tokenizer
def build_tokenizer(corpus: list[str], vocab_size: int = TOKENIZER_VOCAB, split_digits: bool = SPLIT_DIGITS):
    """A byte-level BPE tokenizer trained on ``corpus``, with a chat template. ``split_digits`` makes every digit its
    own token; otherwise BPE merges frequent numbers (all of 0..99 in our corpus) into single tokens."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    if split_digits:
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    else:
        # Digit runs are isolated first, so a number is the same token wherever it stands (" 22" in a question,
        # "22" at the start of a worked line): copying an operand is then a plain copy of one token.
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(r"\d+"), behavior="isolated"),
             pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<|pad|>", eos_token="<|end|>", padding_side="left",
        chat_template=CHAT_TEMPLATE, model_max_length=2048)


def _corpus(seed: int) -> list[str]:
    from . import data

    problems = data.mixed(6000, "train", seed)
    return [f"<|user|>\n{p.question}\n<|assistant|>\n{p.solution}<|end|>" for p in problems]


def prompt_text(tokenizer, question: str) -> str:
    """The model-facing prompt for a question: the tokenizer's chat template if it has one, else the bare question."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                             add_generation_prompt=True)
    return question + "\n"


# ---------------------------------------------------------------------------------------------------- presets
def _random_model(preset: Preset, tokenizer, seed: int, dtype=None):
    """A randomly initialised model of ``preset``'s shape, built directly in ``dtype`` (a 1.5B model built in fp32
    and then cast would hold both copies for a moment: 9 GB at its peak instead of 3)."""
    import torch
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = preset.qwen2_config(len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                 eos_token_id=tokenizer.eos_token_id, bos_token_id=None)
    model = Qwen2ForCausalLM._from_config(config, dtype=dtype or torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = None
    return model


def arithmetic_drills(problems) -> list[str]:
    """Every worked equation of ``problems`` as a bare line ("12 + 7 = 19"): a cheap way to teach the facts."""
    return sorted({line for p in problems for line in p.solution.splitlines()[:-1]})


def warm_start(model, tokenizer, problems, schedule: list[tuple[str, int]], batch_size: int = 32, lr: float = 2e-3,
               seed: int = 0, progress: bool = True, drill_batch: int = 64) -> list[float]:
    """Supervised pass on worked solutions (loss on the answer tokens only). Returns the loss per step.

    ``schedule`` is a list of phases (pattern, steps); within a phase the pattern cycles the kind of each step: ``w``
    a batch of word problems (one difficulty at a time), ``d`` a batch of bare equation lines ("12 + 7 = 19", loss on
    the result: ~5 tokens against ~50, so the arithmetic facts are learned far more cheaply), ``c`` a batch of copy
    drills ("Repeat: 17 4 22" -> "17 4 22"), which train the copy circuit that moving operands from question to
    worked line needs).

    Why a copy phase first: multi-token copying needs an induction circuit, and small transformers sit on a loss
    plateau until it forms (docs/LOG.md: a 6-layer model was still on it after 300 copy steps; a 2-layer one left
    it at ~250). Short copy sequences reach that transition far more cheaply than word problems do."""
    pattern = "".join(p for p, _ in schedule)
    steps = sum(n for _, n in schedule)
    kinds = "".join(p[i % len(p)] for p, n in schedule for i in range(n))
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = random.Random(seed)
    eos = tokenizer.eos_token
    # Batches are drawn from one difficulty at a time: the levels differ ~3x in length, so mixing them would spend
    # most of each step on padding.
    pools: dict[str, list] = {}
    for p in problems:
        prompt = tokenizer(prompt_text(tokenizer, p.question), add_special_tokens=False)["input_ids"]
        target = tokenizer(p.solution + eos, add_special_tokens=False)["input_ids"]
        pools.setdefault(p.difficulty, []).append((prompt, target))
    levels = sorted(pools)  # the word-problem levels (drill pools are added below)
    if "c" in pattern:  # "Repeat: 17 4 22" -> "17 4 22": trains the copy (induction) circuit on short sequences
        for _ in range(20000):
            nums = " ".join(str(rng.randint(0, 30)) for _ in range(rng.randint(2, 5)))
            pools.setdefault("copy", []).append((
                tokenizer(prompt_text(tokenizer, f"Repeat: {nums}"), add_special_tokens=False)["input_ids"],
                tokenizer(nums + eos, add_special_tokens=False)["input_ids"]))
    if "d" in pattern:
        for line in arithmetic_drills(problems):
            lhs, rhs = line.split("=")
            pools.setdefault("drill", []).append((tokenizer(lhs + "=", add_special_tokens=False)["input_ids"],
                                                  tokenizer(rhs + "\n", add_special_tokens=False)["input_ids"]))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    losses = []
    orders: dict[str, list[int]] = {k: [] for k in levels}
    bar = tqdm(range(steps), desc="warm start (supervised)", disable=not progress, leave=False)
    for step in bar:
        kind = kinds[step]
        if kind == "c":
            level, size = "copy", drill_batch
        elif kind == "d":
            level, size = "drill", drill_batch
        else:
            level, size = levels[kinds[:step].count("w") % len(levels)], batch_size
        examples, order = pools[level], orders.setdefault(level, [])
        while len(order) < size:
            order += rng.sample(range(len(examples)), len(examples))
        batch = [examples[order.pop()] for _ in range(size)]
        batch_size_now = size
        width = max(len(a) + len(b) for a, b in batch)
        ids = torch.full((batch_size_now, width), tokenizer.pad_token_id)
        labels = torch.full((batch_size_now, width), -100)
        mask = torch.zeros((batch_size_now, width), dtype=torch.long)
        for r, (a, b) in enumerate(batch):
            n = len(a) + len(b)
            ids[r, :n] = torch.tensor(a + b)
            labels[r, len(a):n] = torch.tensor(b)
            mask[r, :n] = 1
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses


TINY_WARM_SCHEDULE = [("c", 250), ("wdd", 1050)]
TINY_WARM_STEPS = sum(n for _, n in TINY_WARM_SCHEDULE)
TINY_WARM_BATCH = 16
TINY_WARM_LR = 1e-3
TINY_DRILL_BATCH = 128


def _tiny_key(seed: int) -> str:
    h = hashlib.sha256(json.dumps([BUILD_VERSION, PRESETS["tiny"].__dict__, TOKENIZER_VOCAB, TINY_WARM_SCHEDULE,
                                   TINY_WARM_BATCH, TINY_WARM_LR, TINY_DRILL_BATCH, seed]).encode()).hexdigest()[:10]
    return f"tiny-v{BUILD_VERSION}-seed{seed}-{h}"


def build_tiny(out_dir: Path, seed: int = 0, schedule=None, progress: bool = True,
               batch_size: int = TINY_WARM_BATCH, lr: float = TINY_WARM_LR) -> dict:
    """Train the tokenizer, build the tiny Qwen2 and warm-start it; save to ``out_dir``. Returns build facts."""
    from . import data

    t0 = time.perf_counter()
    tokenizer = local_tokenizer(seed)
    model = _random_model(PRESETS["tiny"], tokenizer, seed)
    problems = data.mixed(12000, "train", seed + 1)
    schedule = schedule or TINY_WARM_SCHEDULE
    losses = warm_start(model, tokenizer, problems, schedule, batch_size=batch_size, lr=lr, seed=seed,
                        progress=progress, drill_batch=TINY_DRILL_BATCH)
    steps = sum(n for _, n in schedule)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    facts = {"preset": "tiny", "seed": seed, "warm_start_steps": steps, "schedule": schedule,
             "final_loss": sum(losses[-20:]) / 20, "build_seconds": round(time.perf_counter() - t0, 1),
             "n_params": model.num_parameters()}
    (out_dir / "cpugrpo_build.json").write_text(json.dumps(facts, indent=2))
    return facts


@contextlib.contextmanager
def _lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _cached_build(final: Path, marker: str, build, message: str | None = None) -> Path:
    """``final`` once ``final/marker`` exists, running ``build(tmp_dir)`` first if needed: under a file lock (so
    concurrent processes build once) and atomically (into a temp dir, then renamed), so a killed build leaves
    nothing half-written behind."""
    if (final / marker).exists():
        return final
    with _lock(final.with_suffix(".lock")):
        if (final / marker).exists():
            return final
        if message:
            print(message, flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=final.parent))
        try:
            build(tmp)
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def ensure_tiny(seed: int = 0, progress: bool = True) -> Path:
    """Path of the cached warm-started tiny model, building it if it is missing."""
    final = cache_dir() / "models" / _tiny_key(seed)
    return _cached_build(final, "cpugrpo_build.json", lambda tmp: build_tiny(tmp, seed, progress=progress),
                         f"building the tiny preset once (cached in {final}) ..." if progress else None)


def _tokenizer_key(seed: int) -> str:
    h = hashlib.sha256(json.dumps([BUILD_VERSION, TOKENIZER_VOCAB, SPLIT_DIGITS, CHAT_TEMPLATE, seed]).encode())
    return f"tokenizer-v{BUILD_VERSION}-seed{seed}-{h.hexdigest()[:10]}"


def local_tokenizer(seed: int = 0):
    """The locally trained tokenizer (seconds to build, cached on its own): the tiny preset's, and the one the
    random-weight presets use."""
    from transformers import AutoTokenizer

    final = cache_dir() / "models" / _tokenizer_key(seed)
    _cached_build(final, "tokenizer.json", lambda tmp: build_tokenizer(_corpus(seed)).save_pretrained(tmp))
    return AutoTokenizer.from_pretrained(final)


@dataclass
class Loaded:
    model: object
    tokenizer: object
    source: str           # preset name, hub id, or the model directory as given (home written as ~): what rows record
    random_weights: bool  # accuracy of this model is meaningless
    cache_key: str | None = None  # a cached preset's build ("tiny-v1-seed0-<hash>"): which build, without its path


def resolve(spec: str) -> tuple[str, Path | None]:
    """Classify a --model value without loading: ("preset", None), ("dir", path) or ("hub", None)."""
    if spec in PRESETS:
        return "preset", None
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelError(f"model directory {path} has no config.json: pass a save_pretrained() directory")
        return "dir", path
    looks_like_path = spec.startswith((".", "/", "~")) or os.sep in spec and spec.count("/") != 1
    if looks_like_path or spec.count("/") != 1:
        raise ModelError(f"model {spec!r} is neither a preset ({', '.join(PRESETS)}) nor an existing directory: "
                         f"check the path or use --model tiny")
    return "hub", None


def load(spec: str = "tiny", seed: int = 0, dtype=None, progress: bool = True) -> Loaded:
    """Load a preset, a local directory, or (where reachable) a hub id. Never trusts remote code."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kind, path = resolve(spec)
    source, cache_key = portable(spec), None
    if kind == "preset":
        preset = PRESETS[spec]
        if spec == "tiny":
            path = ensure_tiny(seed, progress)
            cache_key = path.name
        else:
            tokenizer = local_tokenizer(seed)
            model = _random_model(preset, tokenizer, seed, dtype)
            return Loaded(model.eval(), tokenizer, spec, True)
    where = str(path) if path else spec
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, trust_remote_code=False, padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(where, trust_remote_code=False, dtype=dtype or torch.float32)
    except OSError as e:
        raise ModelError(f"cannot load model {where!r} ({str(e).splitlines()[0][:160]}): pass a local directory "
                         f"saved with save_pretrained, or a preset ({', '.join(PRESETS)})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    build = Path(where) / "cpugrpo_build.json"
    random_weights = bool(json.loads(build.read_text()).get("random_weights", False)) if build.exists() else False
    return Loaded(model.eval(), tokenizer, source, random_weights, cache_key)
