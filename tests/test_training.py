"""Training runs as evidence (runs/training.py), the dev/test splits and evaluation on a user's GSM8K file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cpugrpo.cli.commands import _without
from cpugrpo.core.errors import ConfigError
from cpugrpo.runs import training
from cpugrpo.train import data

FIXTURE = Path(__file__).parent / "fixtures" / "gsm8k_small.jsonl"


def test_splits_are_disjoint_and_heldout_is_their_union():
    dev = {p.question for p in data.mixed(300, "dev")}
    test = {p.question for p in data.mixed(300, "test")}
    train = {p.question for p in data.mixed(300, "train")}
    assert not (dev & test) and not (dev & train) and not (test & train)
    assert all(data.split_of(q) == "dev" for q in dev) and all(data.split_of(q) == "test" for q in test)
    assert all(data.in_split(q, "heldout") for q in dev | test)
    assert not any(data.in_split(q, "heldout") for q in train)


def test_user_file_splits_partition_the_file():
    problems = data.load_gsm8k_jsonl(FIXTURE)
    parts = {s: data.split_problems(problems, s) for s in ("train", "dev", "test")}
    assert sum(len(v) for v in parts.values()) == len(problems) == 24
    assert len(data.split_problems(problems, "heldout")) == len(parts["dev"]) + len(parts["test"])
    assert {p.difficulty for p in problems} == {"basic", "intermediate", "advanced"}
    with pytest.raises(data.DataError, match="unknown split"):
        data.split_problems(problems, "val")


@pytest.mark.parametrize("text,seeds", [("0,1,2", [0, 1, 2]), ("7", [7]), ("3, 4", [3, 4])])
def test_parse_seeds(text, seeds):
    assert training.parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a,b", "1,1", "-1", "0;1"])
def test_parse_seeds_refuses_with_the_fix(text):
    with pytest.raises(ConfigError, match="--seeds 0,1,2"):
        training.parse_seeds(text)


def test_without_drops_flags_and_their_values():
    argv = ["train", "--steps", "3", "--seeds", "0,1", "--json", "--run-dir=x", "--lr", "1e-5", "--seed", "4"]
    assert _without(argv, ("--seeds", "--seed", "--run-dir", "--json")) == ["--steps", "3", "--lr", "1e-5"]


def _metrics(diff, lo, hi):
    acc = {"overall": {"accuracy": 0.5, "n": 30, "ci95": [0.3, 0.7]}, "by_difficulty": {}, "precision": "fp32"}
    return {"config": {"seed": 2, "eval_split": "test", "data": None}, "model": "tiny",
            "accuracy_before": acc, "accuracy_after": acc,
            "accuracy_change": {"difference": diff, "ci95": [lo, hi]}, "timing": {"train_s": 1.0},
            "effective": {}, "environment": {}}


def test_training_row_and_summary():
    row = training.training_row(_metrics(0.1, 0.05, 0.15), "m", 12.0)
    assert row["seed"] == 2 and row["split"] == "test" and row["eval_n"] == 30 and row["wall_s"] == 12.0
    runs = [{"change": {"difference": d, "ci95": [lo, d + 0.05]}} for d, lo in ((0.1, 0.02), (0.2, 0.1), (0.3, -0.01))]
    s = training.summarize(runs)
    assert s["mean_change"] == pytest.approx(0.2) and s["min_change"] == 0.1 and s["max_change"] == 0.3
    assert s["sd_change"] == pytest.approx(0.1) and s["every_interval_above_zero"] is False
    assert training.summarize(runs[:2])["every_interval_above_zero"] is True


def test_record_appends_only_evaluated_runs(tmp_path, monkeypatch):
    monkeypatch.setattr("cpugrpo.hw.hardware.detect", lambda: type("H", (), {"machine_id": "m-1"})())
    assert training.record({"accuracy_change": None}, 1.0, str(tmp_path)) is None
    path = training.record(_metrics(0.1, 0.05, 0.15), 1.0, str(tmp_path))
    assert path == tmp_path / "m-1" / "training.jsonl"
    training.record(_metrics(0.2, 0.1, 0.3), 1.0, str(tmp_path))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["change"]["difference"] for r in rows] == [0.1, 0.2]


def _cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "cpugrpo.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_eval_on_a_users_gsm8k_file(tiny_dir):
    p = _cli("eval", "--model", str(tiny_dir), "--data", str(FIXTURE), "--json", "--max-new-tokens", "8")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["overall"]["n"] == 24 and out["evaluated_on"]["data"] == FIXTURE.name
    assert set(out["by_difficulty"]) == {"basic", "intermediate", "advanced"}
    assert all(v["n"] == 8 for v in out["by_difficulty"].values())
    p = _cli("eval", "--model", str(tiny_dir), "--data", str(FIXTURE), "--split", "heldout", "--json",
             "--max-new-tokens", "8")
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["overall"]["n"] == len(data.split_problems(data.load_gsm8k_jsonl(FIXTURE), "heldout"))


@pytest.mark.slow
def test_train_seeds_records_a_row_per_seed(tiny_dir, tmp_path):
    p = _cli("train", "--model", str(tiny_dir), "--steps", "1", "--batch-size", "4", "--num-generations", "2",
             "--max-completion-length", "8", "--eval-n", "6", "--seeds", "0,1", "--json", "--run-dir",
             str(tmp_path / "run"), "--results-dir", str(tmp_path / "res"))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert [r["seed"] for r in out["runs"]] == [0, 1] and not out["failures"]
    files = list((tmp_path / "res").glob("*/training.jsonl"))
    rows = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted(r["seed"] for r in rows) == [0, 1]
    assert all(r["split"] == "test" and r["eval_n"] == 6 and "ci95" in r["change"] for r in rows)
    # what TRL was built with, read back from the trainer (a local model directory keeps TRL's values), and what
    # the run's own objective did
    assert all(r["trl"]["scale_rewards"] == "group" and r["trl"]["beta"] == 0.0 and r["trl"]["reference"] == "none"
               and r["trl"]["reward_weights"] == [1.0, 0.25] for r in rows)
    assert all(len(r["signal"]["correctness_reward"]) == 2 for r in rows)


def test_num_iterations_reaches_trl_and_is_checked(tmp_path):
    from cpugrpo.core.config import TrainConfig
    from cpugrpo.train.trainer import grpo_args

    assert grpo_args(TrainConfig(num_iterations=2), str(tmp_path)).num_iterations == 2
    with pytest.raises(ConfigError, match="num_iterations must be at least 1"):
        TrainConfig(num_iterations=0)


def test_scale_rewards_and_format_weight_reach_trl_and_are_checked(tmp_path):
    from cpugrpo.core.config import TrainConfig
    from cpugrpo.train.trainer import grpo_args

    args = grpo_args(TrainConfig(scale_rewards="none", format_reward_weight=0.0), str(tmp_path))
    assert args.scale_rewards == "none" and list(args.reward_weights) == [1.0, 0.0]
    with pytest.raises(ConfigError, match="unknown scale rewards 'std'"):
        TrainConfig(scale_rewards="std")


def test_the_training_seed_does_not_choose_the_build(tmp_path, monkeypatch):
    """``--seed`` varies the training run on one warm start; ``--preset-seed`` chooses the tiny build."""
    from cpugrpo.core.config import TrainConfig
    from cpugrpo.train import models, trainer

    asked = []

    def fake_load(spec, seed=0, **kw):
        asked.append(seed)
        raise RuntimeError("stop after load")

    monkeypatch.setattr(models, "load", fake_load)
    for cfg in (TrainConfig(seed=3), TrainConfig(seed=3, preset_seed=2)):
        with pytest.raises(RuntimeError, match="stop after load"):
            trainer.train_and_evaluate(cfg, tmp_path / "run", progress=False, fitted=True)
    assert asked == [0, 2]


def test_a_failed_or_unevaluated_seed_fails_the_command(tmp_path, monkeypatch):
    """--seeds: a seed whose child fails, or prints no held-out gain (a random-weight preset), is a failure with its
    reason, the command's exit code is 1, and the summary (seeds.json) is written with the seeds that ran."""
    outputs = {"0": (1, "", "cpugrpo train: error: boom\n"), "1": (0, json.dumps({"accuracy_change": None}) + "\n", "")}

    def fake_run(cmd, **kw):
        code, out, err = outputs[cmd[cmd.index("--seed") + 1]]
        return subprocess.CompletedProcess(cmd, code, out, err)

    monkeypatch.setattr(training.subprocess, "run", fake_run)
    out = training.run_seeds(["--steps", "1"], [0, 1], str(tmp_path / "r"), json_out=True)
    assert out["exit_code"] == 1 and not out["runs"]
    assert [f["seed"] for f in out["failures"]] == [0, 1] and "boom" in out["failures"][0]["reason"]
    assert json.loads((tmp_path / "r" / "seeds.json").read_text())["failures"] == out["failures"]


def test_trl_settings_read_the_trainer_not_the_config():
    from types import SimpleNamespace

    from cpugrpo.train.trainer import trl_settings

    def fake(beta, ref):
        return SimpleNamespace(beta=beta, ref_model=ref, scale_rewards="none", loss_type="dapo",
                               reward_weights=[1.0, 0.0], reward_funcs=[trl_settings], temperature=1.0,
                               num_generations=8, num_iterations=1, args=SimpleNamespace(learning_rate=3e-5))

    assert trl_settings(fake(0.04, object()))["reference"] == "model"
    assert trl_settings(fake(0.04, None))["reference"] == "base, adapters off"  # peft: TRL disables the adapters
    got = trl_settings(fake(0.0, None))
    assert got["reference"] == "none" and got["reward_funcs"] == ["trl_settings"]
    assert got["reward_weights"] == [1.0, 0.0]


def test_two_recipes_on_the_same_items_are_paired_in_the_report():
    from cpugrpo.report.quality import recipe_pairs

    def row(cfg, after, split="test", t=0):
        return {"model_cache_key": "b0", "seed": 0, "split": split, "per_item_before": "0000", "finished_at": t,
                "per_item_after": after, "config": {"model": "tiny", "steps": 600, "learning_rate": 3e-5, **cfg}}

    old, new = row({}, "1000", t=1), row({"beta": 0.04, "format_reward_weight": 0.0}, "1110", t=2)
    lines = recipe_pairs([new, old, row({}, "1111", split="dev")])
    assert len(lines) == 1  # the dev row has no partner of another recipe; same-recipe rows are not paired
    assert lines[0].startswith("Same 4 test items, build b0, seed 0: [tiny, 600 steps, lr 3e-05, correctness reward "
                               "alone, KL 0.04] - [tiny, 600 steps, lr 3e-05] +50.0 points [")
