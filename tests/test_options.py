"""Each command's options dataclass refuses a bad value with a ConfigError whose one-line message names the flag and
the fix; the CLI shows it as one line on stderr with exit code 2 (and nothing is run)."""

import argparse
import dataclasses
import subprocess
import sys

import pytest

from cpugrpo.core.errors import ConfigError, CpugrpoError
from cpugrpo.hw.probes import ProbeOptions
from cpugrpo.hw.runtime import usable_cpus
from cpugrpo.report.compare import CompareOptions
from cpugrpo.report.machine import ReportOptions
from cpugrpo.runs.baseline import BaselineOptions
from cpugrpo.runs.sweep import SweepOptions, SweepSpec
from cpugrpo.runs.tune import TuneError, TuneOptions
from cpugrpo.train.evaluate import EvalOptions
from cpugrpo.train.rollout import RolloutBenchOptions

from .test_cli import assert_one_line_error, run

N = usable_cpus()
AXIS = {"axis": ["threads=1"]}

BAD = [
    # (options class, values, text the message must hold: the flag and the fix)
    (TuneOptions, {"memory_budget_gb": 0}, "--memory-budget must be > 0 GB, got 0: use e.g. --memory-budget 8"),
    (TuneOptions, {"memory_budget_gb": -2.5}, "--memory-budget must be > 0 GB, got -2.5: use"),
    (TuneOptions, {"memory_budget_gb": float("nan")}, "--memory-budget must be > 0 GB, got nan: use"),
    (TuneOptions, {"memory_budget_gb": "8"}, "--memory-budget must be > 0 GB, got 8: use"),
    (TuneOptions, {"time_budget_min": 0}, "--time-budget must be > 0 minutes, got 0: use e.g. --time-budget 30"),
    (TuneOptions, {"time_budget_min": float("inf")}, "--time-budget must be > 0 minutes, got inf: use"),
    (TuneOptions, {"isa_cap": "sse2"}, "unknown ISA cap 'sse2': use --isa-cap with one of avx512_core_amx"),
    (TuneOptions, {"quick": "yes"}, "--quick must be true or false, got 'yes'"),
    (TuneOptions, {"check_grid": 1}, "--check-grid must be true or false"),
    (TuneOptions, {"measured_steps": 0}, "measured_steps must be at least 4, got 0: use measured_steps 4 or more"),
    (TuneOptions, {"quality_steps": 1}, "quality_steps must be at least 2, got 1"),
    (TuneOptions, {"eval_n": 2}, "eval_n must be at least 3"),
    (SweepOptions, {}, "no axes to sweep: pass --spec FILE or --axis name=v1,v2"),
    (SweepOptions, {**AXIS, "steps": 0}, "--steps must be at least 1, got 0: use --steps 1 or more"),
    (SweepOptions, {**AXIS, "timeout": 0}, "--timeout must be > 0 seconds, got 0: use e.g. --timeout 900"),
    (SweepOptions, {"axis": ["threads"]}, "axis 'threads' is not name=v1,v2: use e.g. --axis threads=1,2"),
    (SweepOptions, {"axis": ["warp=1,2"]}, "unknown axis 'warp': use a training key"),
    (SweepOptions, {**AXIS, "isa_cap": "mmx"}, "use --isa-cap with one of"),
    (SweepSpec, {"measured_steps": 0}, "measured_steps must be at least 1"),
    (SweepSpec, {"timeout_s": -1.0}, "timeout_s must be > 0 seconds"),
    (SweepSpec, {"measured_steps": "3"}, "measured_steps must be an integer, got '3'"),
    (EvalOptions, {"n": 2}, "--n must be at least 3, got 2: use --n 3 or more"),
    (EvalOptions, {"precision": "fp4"}, "unknown precision 'fp4': use --precision fp32, bf16, int8"),
    (EvalOptions, {"max_new_tokens": 0}, "--max-new-tokens must be at least 1, got 0: use --max-new-tokens 1"),
    (EvalOptions, {"threads": 0}, f"use --threads 1..{N}"),
    (EvalOptions, {"threads": N + 1}, f"use --threads 1..{N}"),
    (ProbeOptions, {"threads": "0"}, f"threads 0 is outside 1..{N} (the usable CPUs of this process): use --threads"),
    (ProbeOptions, {"threads": f"1,{N + 1}"}, f"use --threads 1..{N}"),
    (ProbeOptions, {"threads": "a,b"}, "--threads must be comma-separated integers like 1,2, got 'a,b': use"),
    (ProbeOptions, {"threads": ""}, "--threads must be a comma-separated list like 1,2, got '': use --threads 1,2"),
    (ProbeOptions, {"n": 8}, "--n must be at least 16, got 8: use --n 16 or more"),
    (ProbeOptions, {"repeats": 0}, "--repeats must be at least 1, got 0: use --repeats 1 or more"),
    (ProbeOptions, {"bw_mb": 0}, "--bw-mb must be at least 1"),
    (ProbeOptions, {"isa_cap": "avx9"}, "use --isa-cap with one of"),
    (RolloutBenchOptions, {"precisions": "fp32,fp8"}, "unknown precision 'fp8': use some of fp32,bf16,int8 in "
                                                      "--precisions"),
    (RolloutBenchOptions, {"precisions": "fp32,"}, "--precisions must be a comma-separated list like fp32,int8"),
    (RolloutBenchOptions, {"batch_size": 0}, "--batch-size must be at least 1, got 0: use --batch-size 1 or more"),
    (RolloutBenchOptions, {"new_tokens": 0}, "--new-tokens must be at least 1"),
    (RolloutBenchOptions, {"repeats": -1}, "--repeats must be at least 1"),
    (RolloutBenchOptions, {"threads": 0}, "use --threads 1.."),
    (BaselineOptions, {"pairs": 0}, "--pairs must be at least 1, got 0: use --pairs 1 or more"),
    (BaselineOptions, {"steps": 0}, "--steps must be at least 1, got 0: use --steps 1 or more"),
    (BaselineOptions, {"batch_size": 0}, "--batch-size must be at least 1"),
    (ReportOptions, {"machine": "../x"}, "--machine must be a machine id (one folder name), got '../x': pass"),
    (ReportOptions, {"machine": ""}, "--machine must be a machine id"),
    (CompareOptions, {"ids": ["a"]}, "compare needs at least two machine ids, got 1: use cpugrpo compare ID ID"),
    (CompareOptions, {"ids": ["a", "b"], "reference": "c"}, "reference 'c' is not among the compared ids: pass one "
                                                            "of them to --reference"),
    (CompareOptions, {"ids": ["a", "b", "a"]}, "machine id 'a' is listed twice: list each machine once"),
    (CompareOptions, {"ids": ["a", "b"], "name": "x/y"}, "--name must be a folder name"),
    (CompareOptions, {"ids": ["a", "b/c"]}, "each ID must be a machine id (one folder name), got 'b/c': pass"),
]


@pytest.mark.parametrize("cls,values,needle", BAD, ids=[f"{c.__name__}-{'-'.join(map(str, v.values()))}"
                                                        for c, v, _ in BAD])
def test_bad_value_is_a_config_error_naming_the_fix(cls, values, needle):
    with pytest.raises(ConfigError) as e:
        cls(**values)
    msg = str(e.value)
    assert isinstance(e.value, CpugrpoError) and "\n" not in msg
    assert needle in msg, msg


@pytest.mark.parametrize("cls,values", [(TuneOptions, {"model": "no-such-preset"}),
                                        (SweepOptions, {**AXIS, "model": "./no/such/dir"}),
                                        (EvalOptions, {"model": "no-such-preset"}),
                                        (RolloutBenchOptions, {"model": "no-such-preset"}),
                                        (BaselineOptions, {"model": "no-such-preset"})])
def test_unknown_model_is_refused_on_construction(cls, values):
    with pytest.raises(CpugrpoError, match="neither a preset .* use --model tiny"):
        cls(**values)


def test_defaults_are_valid_and_frozen():
    for opts in (TuneOptions(), SweepOptions(**AXIS), EvalOptions(), ProbeOptions(), RolloutBenchOptions(),
                 BaselineOptions(), ReportOptions(), CompareOptions(("a", "b"))):
        with pytest.raises(dataclasses.FrozenInstanceError):
            opts.results_dir = "elsewhere"


def test_tune_steps_follow_quick():
    from cpugrpo.runs.tune import GATE_STEPS

    # 5 / 6 measured steps: a rank test needs at least 4 a side to reach p < 0.05; the gate's budget is one for both
    assert (TuneOptions(quick=True).measured_steps, TuneOptions(quick=True).quality_steps) == (5, GATE_STEPS)
    assert (TuneOptions().measured_steps, TuneOptions().quality_steps) == (6, GATE_STEPS) == (6, 200)
    assert TuneOptions(quick=True, measured_steps=5).measured_steps == 5
    assert TuneOptions.make(True, memory_budget_gb=None, model="tiny") == TuneOptions(quick=True)
    assert issubclass(TuneError, CpugrpoError)


def test_values_are_normalized():
    assert ProbeOptions(threads="1,1").threads == (1,)
    assert ProbeOptions().threads == tuple(range(1, N + 1))
    assert RolloutBenchOptions(precisions="int8, fp32").precisions == ("int8", "fp32")
    assert SweepOptions(axis=["threads=1"]).axis == ("threads=1",)
    assert CompareOptions(["a", "b"]).ids == ("a", "b")


def test_eval_accepts_a_run_directory(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    assert EvalOptions(model=str(tmp_path)).model == str(tmp_path / "model")


def test_options_from_args_keeps_defaults_for_flags_left_out():
    from cpugrpo.cli.commands import options_from_args

    ns = argparse.Namespace(pairs=5, steps=None, config=None, json=True, func=print)
    assert options_from_args(BaselineOptions, ns) == BaselineOptions(pairs=5)
    with pytest.raises(ConfigError, match="--pairs must be at least 1"):
        options_from_args(BaselineOptions, argparse.Namespace(pairs=0))


def test_options_do_not_import_torch():
    """The CLI builds the options before it puts the thread count into the environment, which must happen before
    torch is imported."""
    code = ("import sys\n"
            "from cpugrpo.cli import main\n"
            "from cpugrpo.hw.probes import ProbeOptions\nfrom cpugrpo.train.evaluate import EvalOptions\n"
            "from cpugrpo.train.rollout import RolloutBenchOptions\nfrom cpugrpo.runs.sweep import SweepOptions\n"
            "from cpugrpo.runs.tune import TuneOptions\nfrom cpugrpo.runs.baseline import BaselineOptions\n"
            "from cpugrpo.report.machine import ReportOptions\nfrom cpugrpo.report.compare import CompareOptions\n"
            "ProbeOptions(), EvalOptions(), RolloutBenchOptions(), SweepOptions(axis=['threads=1']), TuneOptions()\n"
            "BaselineOptions(), ReportOptions(), CompareOptions(('a', 'b'))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("args,needle", [
    (["tune", "--memory-budget", "0"], "--memory-budget must be > 0 GB, got 0.0: use e.g. --memory-budget 8"),
    (["tune", "--time-budget", "-1"], "--time-budget must be > 0 minutes"),
    (["tune", "--isa-cap", "sse2"], "use --isa-cap with one of"),
    (["sweep", "--axis", "threads=1", "--steps", "0"], "--steps must be at least 1"),
    (["probe", "--threads", "a"], "--threads must be comma-separated integers"),
    (["baseline", "--pairs", "0"], "--pairs must be at least 1, got 0: use --pairs 1 or more"),
    (["rollout-bench", "--precisions", "fp32,fp8"], "unknown precision 'fp8'"),
    (["compare", "a", "b", "--reference", "c"], "pass one of them to --reference"),
])
def test_cli_bad_option_is_one_line_exit_2(args, needle, tmp_path):
    p = run(*args, "--json", cwd=tmp_path)
    assert_one_line_error(p, needle)
    assert p.stderr.startswith(f"cpugrpo {args[0]}: error: ")
    assert not any(tmp_path.iterdir())  # refused before anything was written
