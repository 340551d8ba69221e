"""Synthetic GSM8K-style maths problems at three difficulty levels, and a GSM8K jsonl loader.

Every problem carries a gold integer answer and a worked solution in GSM8K's shape: one equation per line
(``23 + 15 = 38``) and a final ``#### 38`` line. Generation is a pure function of (seed, split, difficulty,
index): the same arguments always give the same problems.

Difficulty levels
- ``basic``: one operation (+ or -) on small numbers.
- ``intermediate``: two or three +/- steps.
- ``advanced``: a multiplication or division step, one or two +/- steps, and a distractor sentence whose number
  must be ignored.

Numbers are deliberately small (every intermediate value stays within 0..30, each step adds or removes at
most 10). The tiny preset is a 5.9M-parameter model warm-started for a
few minutes on two cores; GSM8K-sized numbers would leave it at 0% and give GRPO nothing to work with.

Splits: a question is assigned to a split by a hash of its text, so no question text can occur in two splits,
whatever seeds are used. 80% is ``train``; the held-out 20% is cut in two halves by the same hash: ``dev`` (every
choice of hyperparameters, recipe or precision gate looks only at it) and ``test`` (the numbers reported; nothing
is ever chosen on it). ``heldout`` names dev and test together: it is what every evaluation drew from before the
held-out items were split, so rows measured then keep meaning what they meant.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from ..core.config import DIFFICULTIES, EVAL_SPLITS  # noqa: F401  (one definition each, re-exported here)
from ..core.errors import CpugrpoError

SPLITS = ("train", "dev", "test", "heldout")
HELDOUT_FRACTION = 0.2  # dev is the first half of the held-out hash range, test the second

_NAMES = ["Tom", "Anna", "Ben", "Mia", "Sam", "Lily", "Max", "Zoe", "Leo", "Ava", "Noah", "Emma", "Omar", "Nina",
          "Ravi", "Sara", "Ivan", "Lena", "Kofi", "Yuki"]
_ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "stamps", "coins", "shells", "cards",
          "flowers", "toys", "eggs", "candies", "balloons"]
_CONTAINERS = {"box": "boxes", "bag": "bags", "pack": "packs", "jar": "jars", "basket": "baskets", "crate": "crates"}
_DISTRACTORS = [
    "{name} is {d} years old.",
    "The shop opens at {d} o'clock.",
    "{name} walked {d} minutes to get there.",
    "There are {d} chairs in the room.",
    "{name}'s sister has {d} hats.",
]


class DataError(CpugrpoError, ValueError):
    """Unreadable or malformed data; the message names the file (and line) and the fix."""


@dataclass(frozen=True)
class Problem:
    question: str
    solution: str  # worked steps, each "a op b = c", then "#### N"
    answer: int
    difficulty: str
    steps: int

    def to_dict(self) -> dict:
        return asdict(self)


def _solution(lines: list[tuple[int, str, int, int]], answer: int) -> str:
    return "\n".join(f"{a} {op} {b} = {c}" for a, op, b, c in lines) + f"\n#### {answer}"


def _gain(rng: random.Random, name: str, item: str, total: int) -> tuple[str, int, str]:
    """One +/- event that keeps the running total in [0, 99]. Returns (sentence, amount, op)."""
    if total >= 25 or (total >= 5 and rng.random() < 0.5):
        b = rng.randint(1, min(total, 9))
        verb = rng.choice([f"gives {{b}} {item} to a friend", f"loses {{b}} {item}", f"uses {{b}} {item}"])
        return f"Then {name} {verb.format(b=b)}.", b, "-"
    b = rng.randint(1, min(9, 30 - total))
    verb = rng.choice([f"buys {{b}} more {item}", f"finds {{b}} more {item}", f"gets {{b}} more {item}"])
    return f"Then {name} {verb.format(b=b)}.", b, "+"


def _basic(rng: random.Random) -> Problem:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    a = rng.randint(3, 20)
    if rng.random() < 0.5:
        b = rng.randint(1, 10)
        q = f"{name} has {a} {item}. {name} buys {b} more. How many {item} does {name} have now?"
        c, op = a + b, "+"
    else:
        b = rng.randint(1, a)
        q = f"{name} has {a} {item}. {name} gives {b} to a friend. How many {item} does {name} have left?"
        c, op = a - b, "-"
    return Problem(q, _solution([(a, op, b, c)], c), c, "basic", 1)


def _intermediate(rng: random.Random) -> Problem:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    total = rng.randint(3, 20)
    parts, lines = [f"{name} has {total} {item}."], []
    for _ in range(rng.choice((2, 3))):
        sentence, b, op = _gain(rng, name, item, total)
        new = total + b if op == "+" else total - b
        parts.append(sentence)
        lines.append((total, op, b, new))
        total = new
    parts.append(f"How many {item} does {name} have at the end?")
    return Problem(" ".join(parts), _solution(lines, total), total, "intermediate", len(lines))


def _advanced(rng: random.Random) -> Problem:
    name, item, box = rng.choice(_NAMES), rng.choice(_ITEMS), rng.choice(sorted(_CONTAINERS))
    distractor = rng.choice(_DISTRACTORS).format(name=name, d=rng.randint(2, 12))
    if rng.random() < 0.5:
        per, count = rng.randint(2, 5), rng.randint(2, 5)
        total = per * count
        parts = [f"A {box} holds {per} {item}.", f"{name} buys {count} {_CONTAINERS[box]}."]
        lines = [(count, "*", per, total)]
    else:
        friends, each = rng.randint(2, 5), rng.randint(2, 5)
        total = friends * each
        parts = [f"{name} has {total} {item} and shares them equally among {friends} friends.",
                 "Now think about one friend."]
        lines = [(total, "/", friends, each)]
        total = each
    parts.insert(rng.randint(1, len(parts)), distractor)
    who = "the friend" if lines[0][1] == "/" else name
    for _ in range(rng.choice((1, 2))):
        sentence, b, op = _gain(rng, who, item, total)
        new = total + b if op == "+" else total - b
        parts.append(sentence)
        lines.append((total, op, b, new))
        total = new
    parts.append(f"How many {item} does {who} have at the end?")
    return Problem(" ".join(parts), _solution(lines, total), total, "advanced", len(lines))


_MAKERS = {"basic": _basic, "intermediate": _intermediate, "advanced": _advanced}


def split_of(question: str) -> str:
    """The split a question belongs to (train, dev or test), decided by a hash of its text alone (so splits are
    always disjoint)."""
    h = int.from_bytes(hashlib.blake2b(question.encode(), digest_size=8).digest(), "big") % 1000
    cut = HELDOUT_FRACTION * 1000
    return "train" if h >= cut else "dev" if h < cut / 2 else "test"


def in_split(question: str, split: str) -> bool:
    """Whether ``question`` belongs to ``split`` (``heldout``: dev or test)."""
    s = split_of(question)
    return s == split or (split == "heldout" and s != "train")


def split_problems(problems: list[Problem], split: str) -> list[Problem]:
    """The problems of a user's file that fall in ``split`` (``train``, ``dev``, ``test`` or ``heldout``), by the same
    hash rule as the synthetic problems: deterministic, and the same question always lands in the same split."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    return [p for p in problems if in_split(p.question, split)]


def generate(n: int, difficulty: str, split: str = "train", seed: int = 0) -> list[Problem]:
    """``n`` distinct problems of one difficulty from one split, deterministic in (n, difficulty, split, seed)."""
    if difficulty not in _MAKERS:
        raise ValueError(f"unknown difficulty {difficulty!r}: use one of {', '.join(DIFFICULTIES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    rng = random.Random(f"{seed}:{difficulty}")
    out: list[Problem] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise DataError(f"cannot draw {n} distinct {difficulty} problems for split {split!r}: ask for fewer "
                            f"(--n / --eval-n)")
        p = _MAKERS[difficulty](rng)
        if p.question in seen or not in_split(p.question, split):
            continue
        seen.add(p.question)
        out.append(p)
    return out


def mixed(n: int, split: str = "train", seed: int = 0, difficulties: tuple[str, ...] = DIFFICULTIES) -> list[Problem]:
    """``n`` problems spread evenly over ``difficulties`` (interleaved, so any prefix is balanced)."""
    per = -(-n // len(difficulties))
    pools = [generate(per, d, split, seed) for d in difficulties]
    out = [pool[i] for i in range(per) for pool in pools]
    return out[:n]


_STEP_RE = re.compile(r"<<[^>]*>>|^.*=.*$", re.M)


def load_gsm8k_jsonl(path: str | Path) -> list[Problem]:
    """Read a GSM8K-format jsonl file (``question``, ``answer`` ending in ``#### N``).

    Difficulty comes from the number of solution steps (lines before ``####`` that contain an equation, or GSM8K's
    ``<<a*b=c>>`` annotations): 1 → basic, 2–3 → intermediate, 4+ → advanced. Raises ValueError naming the file and
    line for anything unreadable.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"data file {path} does not exist: check the path") from None
    except IsADirectoryError:
        raise DataError(f"data file {path} is a directory: pass a .jsonl file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read data file {path} ({e.__class__.__name__}): pass a UTF-8 jsonl file") from None
    problems = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question, answer_text = row["question"], row["answer"]
            if not isinstance(question, str) or not isinstance(answer_text, str) or "####" not in answer_text:
                raise KeyError
            body, _, final = answer_text.rpartition("####")
            answer = int(float(final.strip().replace(",", "")))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise DataError(
                f"{path}:{i}: not a GSM8K row: each line must be a JSON object with string 'question' and "
                f"'answer' ending in '#### <integer>'") from None
        steps = max(1, len(_STEP_RE.findall(body)))
        difficulty = "basic" if steps == 1 else "intermediate" if steps <= 3 else "advanced"
        problems.append(Problem(question, answer_text.strip(), answer, difficulty, steps))
    if not problems:
        raise DataError(f"data file {path} holds no problems: pass a non-empty GSM8K jsonl file")
    return problems
