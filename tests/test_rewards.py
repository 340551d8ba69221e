from fractions import Fraction

import pytest

from cpugrpo.train.rewards import correctness_reward, extract_answer, format_reward


@pytest.mark.parametrize("text,expected", [
    ("4 + 3 = 7\n#### 7", 7),
    ("#### 1,234", 1234),
    ("#### -5", -5),
    ("#### 2.5", Fraction(5, 2)),
    ("The answer is 42.", 42),
    ("the answer is: -3", -3),
    ("we get 12 then 15", 15),           # falls back to the last number
    ("#### 9\nthen 11", 9),              # #### wins over later numbers
    ("#### 3\n#### 4", 4),               # the last #### wins
    ("1,000,000 people", 1000000),
    ("nothing here", None),
    ("", None),
])
def test_extract_answer(text, expected):
    got = extract_answer(text)
    assert got == (None if expected is None else Fraction(expected))


def test_correctness_reward_table():
    completions = ["2 + 2 = 4\n#### 4", "#### 5", "the answer is 4", "4.0", "-4", [{"role": "assistant",
                                                                                     "content": "#### 4"}]]
    assert correctness_reward(completions, answer=[4] * 6) == [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]


def test_correctness_reward_extra_kwargs_ignored():
    assert correctness_reward(["#### 3"], answer=[3], difficulty=["basic"], prompts=["p"]) == [1.0]


@pytest.mark.parametrize("text,score", [
    ("4 + 3 = 7\n#### 7", 1.0),
    ("4 + 3 = 7\n7 - 2 = 5\n#### 5", 1.0),
    ("#### 7", 0.5),
    ("4 + 3 = 7", 0.5),
    ("4 + 3 = 7\n#### 7\nmore text", 0.5),
    ("#### 7\n#### 7", 0.0),
    ("hello", 0.0),
])
def test_format_reward(text, score):
    assert format_reward([text]) == [score]
