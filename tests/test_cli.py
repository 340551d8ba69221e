"""Bad input through the real command line: one line on stderr naming the fix, exit code 2, no traceback."""

import json
import subprocess
import sys

import pytest

from cpugrpo.hw.runtime import usable_cpus


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "cpugrpo.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


def assert_one_line_error(p, needle):
    assert p.returncode == 2, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert needle in lines[0], lines[0]


@pytest.mark.parametrize("args,needle", [
    (["--model", "nonexistent-preset"], "neither a preset"),
    (["--model", "./no/such/dir"], "neither a preset"),
    (["--batch-size", "5", "--num-generations", "2"], "not divisible by num_generations 2: use 4 or 6"),
    (["--threads", "0"], "threads must be at least 1"),
    (["--threads", str(usable_cpus() + 1)], "usable CPUs"),
    (["--memory-budget", "0.3"], "memory budget 0.3 GB is too small"),
    (["--update-precision", "fp8"], "unknown update precision"),
    (["--config", "missing.toml"], "does not exist"),
])
def test_train_bad_input(args, needle, tmp_path):
    assert_one_line_error(run("train", "--run-dir", str(tmp_path / "r"), *args), needle)
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_train_bad_data_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "answer": "4"}\n')
    assert_one_line_error(run("train", "--data", str(bad)), "bad.jsonl:1: not a GSM8K row")
    binary = tmp_path / "bin.jsonl"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    assert_one_line_error(run("train", "--data", str(binary)), "cannot read data file")
    assert_one_line_error(run("train", "--data", str(tmp_path)), "is a directory")


def test_malformed_config_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("[train]\nsteps = 'many'\n")
    assert_one_line_error(run("train", "--config", str(f)), "steps must be an integer")
    f.write_text("[train]\nwarp = 9\n")
    assert_one_line_error(run("train", "--config", str(f)), "unknown key 'warp'")


def test_eval_bad_input(tmp_path):
    assert_one_line_error(run("eval", "--model", str(tmp_path / "nope")), "neither a preset")
    assert_one_line_error(run("eval", "--model", str(tmp_path)), "no config.json")
    assert_one_line_error(run("eval", "--precision", "fp4"), "unknown precision")


def test_eval_json_on_a_saved_directory(tiny_dir):
    p = run("eval", "--model", str(tiny_dir), "--n", "6", "--json", "--max-new-tokens", "8")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["overall"]["n"] == 6 and set(out["by_difficulty"]) == {"basic", "intermediate", "advanced"}


@pytest.mark.parametrize("args,needle", [
    (["--stage-steps", "basic=0,intermediate=0,advanced=0"], "zero steps in every stage"),
    (["--compare-lambda", "0,-5"], "lambda must be >= 0"),
    (["--stage-steps", "expert=3"], "unknown stage 'expert'"),
    (["--stage-steps", "basic"], "is not name=steps"),
])
def test_curriculum_bad_input(args, needle):
    assert_one_line_error(run("curriculum", *args), needle)


def test_detect_json_and_taskset():
    import shutil

    p = run("detect", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["n_usable"] == usable_cpus() and d["machine_id"] and d["torch"]["version"]
    if shutil.which("taskset") and usable_cpus() > 1:
        one = subprocess.run(["taskset", "-c", "0", sys.executable, "-m", "cpugrpo.cli", "detect", "--json"],
                             capture_output=True, text=True, timeout=120)
        d1 = json.loads(one.stdout)
        assert d1["n_usable"] == 1 and d1["machine_id"] != d["machine_id"]


def test_tune_command_writes_the_report_of_the_machine_it_tuned(tmp_path, monkeypatch, capsys):
    """`cpugrpo tune` (make run) ends by writing the report: checked with the search itself replaced by its result."""
    import json

    from cpugrpo.cli.main import main
    from cpugrpo.runs import tune as tune_module

    from .report_data import make_machine, trial_row

    make_machine(tmp_path, "m1", [trial_row(0), trial_row(1, rollout="int8", sps=55.0)])
    monkeypatch.chdir(tmp_path)  # the report goes to ./reports/<id>/
    monkeypatch.setattr(tune_module, "tune", lambda opts, progress=True: {
        "train": {}, "reasons": {}, "evidence": {"machine_id": "m1"}, "paths": {}})
    code = main(["tune", "--quick", "--profiles-dir", str(tmp_path / "profiles"), "--results-dir",
                 str(tmp_path / "results"), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["paths"]["report"].endswith("m1/index.html")
