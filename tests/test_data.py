import json

import pytest

from cpugrpo.train import data


def test_generation_is_deterministic():
    assert data.mixed(60, "train", seed=3) == data.mixed(60, "train", seed=3)
    assert data.mixed(60, "train", seed=3) != data.mixed(60, "train", seed=4)


def test_splits_are_disjoint_and_stable():
    train = {p.question for p in data.mixed(3000, "train", seed=0)}
    test = {p.question for p in data.mixed(600, "test", seed=0)}
    assert not train & test
    # disjoint across seeds too: the split is a function of the question text
    other = {p.question for p in data.mixed(600, "test", seed=7)}
    assert not train & other


@pytest.mark.parametrize("level,steps", [("basic", {1}), ("intermediate", {2, 3}), ("advanced", {2, 3})])
def test_levels_and_worked_solutions(level, steps):
    for p in data.generate(200, level, "train", seed=1):
        assert p.difficulty == level and p.steps in steps
        lines = p.solution.splitlines()
        assert lines[-1] == f"#### {p.answer}"
        assert len(lines) - 1 == p.steps
        for line in lines[:-1]:  # every worked step is arithmetically right
            lhs, rhs = line.split(" = ")
            assert eval(lhs.replace("/", "//")) == int(rhs)  # noqa: S307 - our own generated text
        assert 0 <= p.answer <= 30


def test_advanced_has_multiplicative_step_and_distractor():
    for p in data.generate(100, "advanced", "train", seed=2):
        first = p.solution.splitlines()[0]
        assert "*" in first or "/" in first
        assert any(w in p.question for w in ("years old", "o'clock", "minutes", "chairs", "hats"))


def test_mixed_is_balanced():
    ps = data.mixed(90, "test")
    assert [p.difficulty for p in ps[:3]] == list(data.DIFFICULTIES)
    assert sum(p.difficulty == "advanced" for p in ps) == 30


def test_gsm8k_loader_assigns_difficulty(tmp_path):
    rows = [
        {"question": "q1", "answer": "3 + 4 = <<3+4=7>>7\n#### 7"},
        {"question": "q2", "answer": "a = 1\nb = 2\nc = 3\n#### 1,000"},
        {"question": "q3", "answer": "a=1\nb=2\nc=3\nd=4\n#### -2"},
    ]
    f = tmp_path / "g.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    ps = data.load_gsm8k_jsonl(f)
    assert [p.difficulty for p in ps] == ["basic", "intermediate", "advanced"]
    assert [p.answer for p in ps] == [7, 1000, -2]


@pytest.mark.parametrize("content,needle", [
    ('{"question": "q"}\n', ":1: not a GSM8K row"),
    ('{"question": "q", "answer": "no marker"}\n', ":1: not a GSM8K row"),
    ('{"question": "q", "answer": "#### 3"}\nnot json\n', ":2: not a GSM8K row"),
    ("", "holds no problems"),
])
def test_gsm8k_loader_rejects_malformed(tmp_path, content, needle):
    f = tmp_path / "bad.jsonl"
    f.write_text(content)
    with pytest.raises(data.DataError, match=needle):
        data.load_gsm8k_jsonl(f)


def test_gsm8k_loader_missing_and_binary(tmp_path):
    with pytest.raises(data.DataError, match="does not exist"):
        data.load_gsm8k_jsonl(tmp_path / "nope.jsonl")
    f = tmp_path / "bin.jsonl"
    f.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(data.DataError, match="cannot read"):
        data.load_gsm8k_jsonl(f)
