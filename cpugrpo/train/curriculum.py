"""3-stage progressive GRPO (basic -> intermediate -> advanced) with Elastic Weight Consolidation in the loss.

EWC (Kirkpatrick et al., 2017) adds ``lam * sum_i F_i (theta_i - theta*_i)^2`` to the loss of later stages, where
``F`` is a diagonal Fisher estimate and ``theta*`` the parameters at the end of an earlier stage. Here the penalty is
added to TRL's GRPO loss inside ``compute_loss`` (trainer.py), so it reaches the gradient, and it is logged per step.

Choices and departures:
- Two Fisher estimates (``--fisher``). ``gold`` (the default): squared per-example gradients of the log-likelihood
  of the stage's **worked solutions** (the "empirical Fisher"). At the accuracies a tiny model has, most sampled
  completions are wrong, so a sample-based Fisher may protect the parameters that produce wrong answers; gold
  solutions weight what we want to keep, need no generation and are deterministic. ``sample``: the same squared
  gradients of completions the model itself samples at temperature 1 (seeded), one per problem: a Monte-Carlo
  estimate of the true Fisher. The study compares them.
- Across stages the Fisher is **summed** and the anchor is the parameters after the latest stage ("online EWC",
  Schwarz et al., 2018), so memory stays at one Fisher and one anchor whatever the number of stages.
- The paper's factor 1/2 is folded into ``lam``.
- Fisher and anchor can be stored at bf16 to halve their memory; the penalty is computed in fp32.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..core.errors import CpugrpoError

STAGES = ("basic", "intermediate", "advanced")


class CurriculumError(CpugrpoError, ValueError):
    """Bad curriculum settings; the message names the fix."""


def ewc_penalty(params: dict, fisher: dict, anchor: dict, lam: float):
    """lam * sum F * (theta - theta*)^2 over the named parameters present in ``fisher``.

    Tensor-in/tensor-out: params[name], fisher[name] and anchor[name] share a shape; returns a 0-d fp32 tensor.

    >>> import torch
    >>> p = {"w": torch.tensor([1.0, 2.0])}
    >>> float(ewc_penalty(p, {"w": torch.tensor([1.0, 0.5])}, {"w": torch.tensor([0.0, 0.0])}, 2.0))
    6.0
    """
    import torch

    total = torch.zeros((), dtype=torch.float32)
    for name, f in fisher.items():
        d = params[name].float() - anchor[name].float()
        total = total + (f.float() * d * d).sum()
    return lam * total


@dataclass
class EWC:
    lam: float
    fisher: dict
    anchor: dict
    dtype_name: str = "fp32"

    def __call__(self, model):
        """The penalty for ``model``'s current parameters (used as the trainer's extra_loss)."""
        named = dict(model.named_parameters())
        return ewc_penalty(named, self.fisher, self.anchor, self.lam)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in list(self.fisher.values()) + list(self.anchor.values()))


FISHER_MODES = ("gold", "sample")


def fisher_diagonal(model, tokenizer, problems, max_examples: int = 64, mode: str = "gold",
                    max_new_tokens: int = 48, seed: int = 0) -> dict:
    """Diagonal Fisher: the mean over examples of squared per-example gradients of log p(y | q).

    ``mode="gold"``: y is the reference solution (the *empirical* Fisher, cheap, needs solutions). ``mode="sample"``:
    y is drawn from the model itself (temperature 1, seeded), which is the Fisher's definition as an expectation
    under the model (Kirkpatrick et al. use this one); it needs no solutions and costs one generation per example.
    Parameters that get no gradient have Fisher exactly zero. Non-negative by construction.
    """
    import torch

    from .models import prompt_text

    if mode not in FISHER_MODES:
        raise CurriculumError(f"unknown Fisher mode {mode!r}: use one of {', '.join(FISHER_MODES)}")
    was_training = model.training
    model.eval()  # no dropout noise in the estimate
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    examples = problems[:max_examples]
    gen = torch.Generator().manual_seed(seed)
    for p in examples:
        prompt = tokenizer(prompt_text(tokenizer, p.question), add_special_tokens=False)["input_ids"]
        if mode == "gold":
            target = tokenizer(p.solution + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        else:
            target = _sample(model, prompt, max_new_tokens, gen, tokenizer.eos_token_id)
        ids = torch.tensor([prompt + target])
        labels = torch.tensor([[-100] * len(prompt) + target])
        model.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=labels).loss * len(target)  # summed log-likelihood
        loss.backward()
        for n, prm in params.items():
            if prm.grad is not None:
                fisher[n] += prm.grad.detach().float() ** 2
    model.zero_grad(set_to_none=True)
    for f in fisher.values():
        f /= max(1, len(examples))
    if was_training:
        model.train()
    return fisher


def _sample(model, prompt: list[int], max_new_tokens: int, gen, eos_id: int) -> list[int]:
    """One completion drawn from the model at temperature 1 (ancestral sampling with ``gen``), ending at EOS."""
    import torch

    ids = torch.tensor([prompt])
    out: list[int] = []
    past = None
    with torch.no_grad():
        for _ in range(max_new_tokens):
            o = model(input_ids=ids, past_key_values=past, use_cache=True)
            past = o.past_key_values
            probs = torch.softmax(o.logits[0, -1].float(), -1)
            tok = int(torch.multinomial(probs, 1, generator=gen))
            out.append(tok)
            if tok == eos_id:
                break
            ids = torch.tensor([[tok]])
    return out


def consolidate(ewc: EWC | None, model, fisher: dict, lam: float, dtype_name: str = "fp32") -> EWC:
    """Add this stage's Fisher to the running sum and move the anchor to the current parameters."""
    import torch

    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    anchor = {n: p.detach().to(dtype).clone() for n, p in model.named_parameters() if n in fisher}
    if ewc is not None:
        fisher = {n: f + ewc.fisher[n].float() for n, f in fisher.items()}
    return EWC(lam, {n: f.to(dtype) for n, f in fisher.items()}, anchor, dtype_name)


def check_stages(steps_per_stage: dict[str, int], lam: float) -> None:
    for name in steps_per_stage:
        if name not in STAGES:
            raise CurriculumError(f"unknown stage {name!r}: stages are {', '.join(STAGES)}")
    if any(v < 0 for v in steps_per_stage.values()):
        raise CurriculumError("steps per stage must be >= 0")
    if sum(steps_per_stage.values()) == 0:
        raise CurriculumError("the curriculum has zero steps in every stage: give at least one stage steps, "
                              "e.g. --stage-steps basic=20,intermediate=20,advanced=20")
    if lam < 0:
        raise CurriculumError(f"EWC lambda must be >= 0 (0 disables it), got {lam}")


def run_curriculum(cfg, steps_per_stage: dict[str, int], lam: float, run_dir, fisher_examples: int = 64,
                   fisher_dtype: str = "fp32", eval_n: int | None = None, progress: bool = True,
                   loaded=None, fisher: str = "gold", eval_splits: tuple[str, ...] | None = None) -> dict:
    """Train stage by stage; evaluate every level after each stage; EWC from the second stage on (lam > 0).

    Each evaluation covers every split in ``eval_splits`` (default: ``cfg.eval_split``), e.g. dev (where lambda is
    chosen) and test (where the result is reported), on the same model at the same moment. A history entry holds the
    last split's accuracies at its top level (what the table shows) and every split under ``splits``, with per-item
    correctness so arms can be compared item by item."""
    from pathlib import Path

    from ..hw.runtime import release_freed_memory
    from . import data, evaluate, models
    from .trainer import build_dataset, check_installed, run_grpo, weights_dtype

    check_stages(steps_per_stage, lam)
    check_installed(cfg)
    release_freed_memory(cfg.release_memory)
    loaded = loaded or models.load(cfg.model, seed=cfg.preset_seed, progress=progress, dtype=weights_dtype(cfg))
    eval_n = eval_n or cfg.eval_n
    splits = tuple(eval_splits or (cfg.eval_split,))
    problem_sets = {s: evaluate.held_out(cfg.replace(eval_n=eval_n, eval_split=s)) for s in splits}
    eval_kw = dict(precision=cfg.eval_precision, progress=progress, max_new_tokens=cfg.max_completion_length,
                   random_weights=loaded.random_weights)

    def evaluate_all(stage: str) -> dict:
        by_split = {}
        for s, problems in problem_sets.items():
            r = evaluate.evaluate(loaded.model, loaded.tokenizer, problems=problems, **eval_kw)
            by_split[s] = {**r.to_dict(), "per_item": "".join("1" if f else "0" for f in r.per_item),
                           "levels": "".join(p.difficulty[0] for p in problems)}
        last = by_split[splits[-1]]
        return {"stage": stage, "split": splits[-1], "overall": last["overall"],
                "by_difficulty": last["by_difficulty"], "splits": by_split,
                **({"note": last["note"]} if "note" in last else {})}

    history = [evaluate_all("start")]
    ewc: EWC | None = None
    log = []
    for stage in (s for s in STAGES if steps_per_stage.get(s, 0) > 0):
        scfg = cfg.replace(steps=steps_per_stage[stage], difficulties=(stage,))
        extra = ewc if (ewc is not None and lam > 0) else None
        t0 = time.perf_counter()
        steps = run_grpo(scfg, loaded.model, loaded.tokenizer, Path(run_dir) / f"trl-{stage}", progress,
                         extra_loss=extra, dataset=build_dataset(scfg, loaded.tokenizer))
        train_s = time.perf_counter() - t0
        history.append(evaluate_all(stage))
        t1 = time.perf_counter()
        if lam > 0:
            problems = data.generate(fisher_examples, stage, "train", cfg.seed + 2000)
            fisher_d = fisher_diagonal(loaded.model, loaded.tokenizer, problems, fisher_examples, fisher,
                                       cfg.max_completion_length, cfg.seed)
            ewc = consolidate(ewc, loaded.model, fisher_d, lam, fisher_dtype)
        log.append({"stage": stage, "steps": len(steps), "train_s": train_s, "fisher_s": time.perf_counter() - t1,
                    "ewc_bytes": ewc.nbytes if ewc else 0,
                    "penalty": [s.metrics.get("extra_loss", 0.0) for s in steps],
                    "grpo_loss": [s.metrics.get("loss") for s in steps]})
    return {"lambda": lam, "fisher": fisher, "history": history, "stages": log, "fisher_dtype": fisher_dtype,
            "eval_splits": list(splits)}
