"""Answer extraction and reward functions in TRL's shape: ``f(completions, **kwargs) -> list[float]``.

TRL passes every dataset column as a keyword argument, so the gold answer arrives as ``answer=[...]``. Completions
are plain strings here (we template prompts ourselves); chat-style lists of messages are accepted too.

Departures from a pure correctness reward: with correctness alone, a group whose completions are all wrong (the
usual case for a tiny model that rarely answers right) has zero reward variance, hence zero advantages, and teaches
nothing (docs/LOG.md, the GRPO entries: most groups had zero variance, so only about a third of a batch carried
signal). ``format_reward`` adds a small, separately logged signal for the GSM8K shape (worked equations, then one
``#### N`` line, then nothing), which also rewards terminating.
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUM = r"-?\d[\d,]*(?:\.\d+)?"
_FINAL_RE = re.compile(r"####\s*(" + _NUM + r")")
_ANSWER_IS_RE = re.compile(r"answer is\s*:?\s*\$?(" + _NUM + r")", re.I)
_ANY_NUM_RE = re.compile(_NUM)
_EQUATION_RE = re.compile(r"^\s*" + _NUM + r"\s*[-+*/x×÷]\s*" + _NUM + r"\s*=\s*" + _NUM + r"\s*$", re.M)


def _text(completion) -> str:
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def _to_number(token: str) -> Fraction | None:
    token = token.replace(",", "").rstrip(".")
    try:
        return Fraction(token)
    except (ValueError, ZeroDivisionError):
        return None


def extract_answer(text: str) -> Fraction | None:
    """The final numeric answer of a completion, or None.

    Order: the last ``#### N``; else the last "the answer is N"; else the last number in the text.

    >>> extract_answer("12 + 3 = 15\\n#### 15")
    Fraction(15, 1)
    >>> extract_answer("so the answer is 1,234.")
    Fraction(1234, 1)
    >>> extract_answer("it drops to -7 then 2.5") == Fraction(5, 2)
    True
    >>> extract_answer("no digits") is None
    True
    """
    for pattern in (_FINAL_RE, _ANSWER_IS_RE):
        hits = pattern.findall(text)
        if hits:
            return _to_number(hits[-1])
    hits = _ANY_NUM_RE.findall(text)
    return _to_number(hits[-1]) if hits else None


def correctness_reward(completions, answer, **kwargs) -> list[float]:
    """1.0 where the extracted answer equals the gold answer exactly, else 0.0.

    >>> correctness_reward(["4 + 3 = 7\\n#### 7", "#### 8", "nothing"], answer=[7, 7, 7])
    [1.0, 0.0, 0.0]
    """
    out = []
    for completion, gold in zip(completions, answer, strict=True):
        got = extract_answer(_text(completion))
        out.append(1.0 if got is not None and got == Fraction(str(gold)) else 0.0)
    return out


def format_reward(completions, **kwargs) -> list[float]:
    """GSM8K shape: 0.5 for at least one worked equation line, 0.5 for ending with a single ``#### N`` line.

    >>> format_reward(["4 + 3 = 7\\n#### 7", "#### 7", "4 + 3 = 7", "#### 7\\n#### 8 more"])
    [1.0, 0.5, 0.5, 0.0]
    """
    out = []
    for completion in completions:
        text = _text(completion).strip()
        score = 0.5 if _EQUATION_RE.search(text) else 0.0
        lines = text.splitlines()
        if lines and re.fullmatch(r"####\s*" + _NUM, lines[-1].strip()) and text.count("####") == 1:
            score += 0.5
        out.append(score)
    return out


REWARD_FUNCS = {"correctness": correctness_reward, "format": format_reward}
