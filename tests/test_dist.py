"""Data-parallel GRPO (train/dist.py, runs/launch.py, runs/dist_worker.py): two ranks compute one process's
gradients; two launcher invocations on this machine act as two nodes and end with the same weights; a trial under
the launcher is measured from outside (and a failed rank fails it with its reason); bad requests are one-line errors
with exit code 2 before anything starts. Every child runs in its own session, dies with its parent, and is killed on
a timeout; no process of a test outlives it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from cpugrpo.cli.main import main
from cpugrpo.hw.runtime import PARENT_PID_VAR, usable_cpus
from cpugrpo.runs import launch

ROOT = Path(__file__).resolve().parents[1]
ENV = {"HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list, cpu: int | None = None, **env) -> subprocess.Popen:
    """A child in its own session (killed as a group on a timeout), tied to this process (PARENT_PID_VAR)."""
    pin = (lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None
    return subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, preexec_fn=pin,
                            env={**os.environ, **ENV, PARENT_PID_VAR: str(os.getpid()),
                                 **{k: str(v) for k, v in env.items()}})


def finish(proc: subprocess.Popen, timeout: float) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher's ranks die with it (die_with_parent)
        proc.communicate()
        pytest.fail(f"{proc.args[:6]} still running after {timeout} s")
    return proc.returncode, out, err


def leftovers(marker: str) -> list:
    import psutil

    return [p.pid for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]


@pytest.mark.slow
def test_two_ranks_give_one_process_gradients(tiny_dir, tmp_path):
    """One step on fixed completions and rewards (tests/dist_case.py), shared prefix on and off, in micro-batches,
    with LoRA: the all-reduced gradient of 2 ranks with 6 completions each equals one process's on all 12 (relative
    error <= 1e-5)."""
    import torch

    one, two = tmp_path / "one" / "g.pt", tmp_path / "two" / "g.pt"
    one.parent.mkdir()
    two.parent.mkdir()
    procs = [start([sys.executable, "tests/dist_case.py", tiny_dir, one]),
             start([sys.executable, "-m", "cpugrpo.runs.launch", "--standalone", "--nproc-per-node", "2",
                    "tests/dist_case.py", tiny_dir, two])]
    for p in procs:
        code, out, err = finish(p, 240)
        assert code == 0, err[-3000:]
    a, b = torch.load(one), torch.load(two)
    assert (a["world"], b["world"]) == (1, 2)
    for mode in ("prefix", "plain", "micro", "lora"):
        ga, gb = a["grads"][mode], b["grads"][mode]
        assert ga.keys() == gb.keys() and len(ga) > 0
        norm = sum(float((g ** 2).sum()) for g in ga.values()) ** 0.5
        diff = sum(float(((ga[k] - gb[k]) ** 2).sum()) for k in ga) ** 0.5
        assert norm > 0 and diff / norm <= 1e-5, (mode, diff / norm)
        assert b["ran"][mode]["completions"] == 6 and a["ran"][mode]["completions"] == 12
        assert b["ran"][mode]["communication_s"] > 0 and a["ran"][mode]["communication_s"] == 0
    assert b["ran"]["prefix"]["shared_prefix_ran"] and not b["ran"]["plain"]["shared_prefix_ran"]
    assert b["ran"]["lora"]["shared_prefix_ran"] and b["ran"]["micro"]["shared_prefix_ran"]
    assert not leftovers(str(tmp_path))


@pytest.mark.slow
def test_two_nodes_on_this_machine_finish_a_step_with_the_same_weights(tiny_dir, tmp_path):
    """Two `cpugrpo train --nnodes 2` invocations on 127.0.0.1 (each pinned to a CPU of its own where there are two):
    both finish, every rank ends with the same weights, and node 0's saved model is those weights."""
    from transformers import AutoModelForCausalLM

    from cpugrpo.train.dist import weights_digest

    port, cpus = free_port(), sorted(os.sched_getaffinity(0))
    common = ["-m", "cpugrpo.cli.main", "train", "--model", tiny_dir, "--processes", "1", "--threads", "1",
              "--steps", "1", "--batch-size", "8", "--num-generations", "4", "--max-completion-length", "8",
              "--eval-n", "3", "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", port,
              "--rdzv-timeout", "120", "--json"]
    procs = [start([sys.executable, *common, "--node-rank", k, "--run-dir", tmp_path / f"node{k}"],
                   cpu=cpus[k] if len(cpus) > 1 else None, CPUGRPO_RESULTS_DIR=tmp_path / "results") for k in (0, 1)]
    outs = []
    for p in procs:
        code, out, err = finish(p, 300)
        assert code == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    for k, m in enumerate(outs):
        assert (m["world_size"], m["nnodes"], m["processes"], m["node_rank"]) == (2, 2, 1, k)
        assert sorted(r["node_rank"] for r in m["ranks"]) == [0, 1] and m["weights_agree"]
        assert len(m["steps"]) == 1 and m["steps"][0]["completions"] == 8
        assert all(len(r["steps"]) == 1 and r["steps"][0]["completions"] == 4 for r in m["ranks"])
    assert outs[0]["weights_digest"] == outs[1]["weights_digest"]
    if len(cpus) > 1:
        assert [r["cpus"] for r in sorted(outs[0]["ranks"], key=lambda r: r["rank"])] == [[cpus[0]], [cpus[1]]]
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "node0" / "model")
    assert weights_digest(saved) == outs[1]["weights_digest"]
    assert not leftovers(str(tmp_path))


@pytest.mark.slow
def test_a_trial_under_the_launcher_is_measured_from_outside_and_a_failed_rank_fails_it(tiny_dir, tmp_path):
    from cpugrpo.runs.trial import TrialSpec, run_trial

    cfg = {"model": str(tiny_dir), "batch_size": 8, "num_generations": 4, "max_completion_length": 8,
           "threads": 1, "processes": 2}
    row = run_trial(TrialSpec(config=cfg, measured_steps=1, timeout_s=240), "m")
    assert row["status"] == "ok", row.get("reason")
    assert row["world_size"] == 2 and [r["rank"] for r in row["ranks"]] == [0, 1]
    assert all("communication_s" in r["phases"] and r["peak_rss_mb"] > 0 for r in row["ranks"])
    assert row["summary"]["measured_steps"] == 1 and row["steps"][-1]["completions"] == 8
    assert row["outside"]["samples_per_s"] > 0 and row["outside"]["polled_peak_rss_mb"] > row["ranks"][0]["peak_rss_mb"]
    bad = run_trial(TrialSpec(config={**cfg, "data": str(tmp_path / "missing.jsonl")}, measured_steps=1,
                              timeout_s=240), "m")
    assert bad["status"] == "failed" and "rank" in bad["reason"] and "DataError" in bad["reason"], bad["reason"]
    assert not leftovers("cpugrpo.runs.dist_worker")


def _refused(capsys, tmp_path, *argv) -> str:
    run_dir = tmp_path / "run"
    code = main(["train", *map(str, argv), "--json", "--run-dir", str(run_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("cpugrpo train: error: "), err
    assert not run_dir.exists()  # refused before anything was written
    return err


def test_bad_requests_are_one_line_errors(capsys, tmp_path):
    n = usable_cpus()
    assert "processes must be at least 1" in _refused(capsys, tmp_path, "--processes", 0)
    err = _refused(capsys, tmp_path, "--processes", n + 1, "--threads", 1, "--batch-size", 8 * (n + 1))
    assert f"needs {n + 1} CPUs" in err and "--threads" in err
    assert "does not split over 3 processes" in _refused(capsys, tmp_path, "--processes", 3, "--batch-size", 64)
    assert "does not split over 3 ranks" in _refused(capsys, tmp_path, "--processes", 1, "--threads", 1,
                                                     "--nnodes", 3, "--batch-size", 8)
    assert "--adaptive-batch" in _refused(capsys, tmp_path, "--processes", 1, "--nnodes", 2, "--threads", 1,
                                          "--adaptive-batch")
    assert "not an address of this machine" in _refused(capsys, tmp_path, "--processes", 1, "--threads", 1,
                                                       "--nnodes", 2, "--master-addr", "192.0.2.1")
    assert "is not below --nnodes" in _refused(capsys, tmp_path, "--processes", 1, "--nnodes", 2, "--node-rank", 2)


def test_an_unreachable_master_is_a_stated_timeout(capsys, tmp_path):
    import time

    t0 = time.monotonic()
    err = _refused(capsys, tmp_path, "--processes", 1, "--threads", 1, "--nnodes", 2, "--node-rank", 1,
                   "--master-addr", "127.0.0.1", "--master-port", free_port(), "--rdzv-timeout", 1.5)
    assert "did not answer within 1.5 s" in err and "start node 0 first" in err
    assert time.monotonic() - t0 < 30


def test_curriculum_refuses_processes(capsys):
    assert main(["curriculum", "--processes", "2", "--json"]) == 2
    assert "runs in one process" in capsys.readouterr().err


def test_cpu_plan_spreads_ranks_over_numa_nodes():
    two = {"0": [0, 1, 2, 3], "1": [4, 5, 6, 7]}
    assert launch.plan_cpus(list(range(8)), two, 4, 2) == [[0, 1], [4, 5], [2, 3], [6, 7]]
    assert launch.plan_cpus(list(range(8)), two, 1, 4) == [[0, 1, 2, 3]]
    # a node whose usable CPUs cannot hold a block: the blocks go where there is room, else contiguous
    assert launch.plan_cpus([0, 1, 4, 5, 6, 7], two, 2, 2) == [[0, 1], [4, 5]]
    assert launch.plan_cpus([0, 4, 5, 6], two, 2, 2) == [[0, 4], [5, 6]]  # no room for 2 whole blocks: in order
    assert launch.plan_cpus([0, 1, 2], {}, 3, 1) == [[0], [1], [2]]


def test_job_steps_merge_the_ranks():
    from cpugrpo.train.dist import merge_steps, rank_phases
    from cpugrpo.train.measure import StepMeasurement

    def step(wall, comm, n):
        return StepMeasurement(step=1, wall_s=wall, rollout_s=1.0, scoring_s=0.1, update_s=wall - 1.1 - comm,
                               communication_s=comm, completions=n, completion_tokens=10 * n, peak_rss_mb=100.0,
                               cpu_util=0.5, metrics={"shared_prefix_ran": True}).to_dict()

    ranks = [{"steps": [step(2.0, 0.2, 4)]}, {"steps": [step(2.2, 0.4, 4)]}]
    (m,) = merge_steps(ranks)
    assert (m.wall_s, m.completions, m.completion_tokens, m.peak_rss_mb) == (2.2, 8, 80, 200.0)
    assert m.communication_s == pytest.approx(0.3) and m.metrics["shared_prefix_ran"]
    assert rank_phases(ranks[1], warmup=1)["communication_s"] == pytest.approx(0.4)  # one step: itself
