"""Training runs as evidence: one row per `cpugrpo train` run in ``results/<machine-id>/training.jsonl``, and
``--seeds``: the same run once per seed, each in its own process, with a summary over seeds.

A row holds what a sceptic needs to re-derive the run's claim: the config, seed and evaluation split, accuracy before
and after per difficulty with Wilson intervals, the paired difference (overall and per level) with its interval, wall
times, the machine id, the effective settings, package versions and the commit. Random-weight presets are not
evaluated, so they write no row.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from ..core.errors import ConfigError
from ..core.paths import portable
from ..core.store import TrialStore, atomic_write_json

GROUP_ENV = "CPUGRPO_SEEDS_GROUP"  # set by --seeds for its children: the rows of one invocation share it
PROGRESS_ENV = "CPUGRPO_PROGRESS"  # "1": a child printing JSON still shows its progress bars on stderr
RESULTS_ENV = "CPUGRPO_RESULTS_DIR"  # where rows go (default: results/ of the working directory); tests set it


def results_root(given: str | None = None) -> str:
    return given or os.environ.get(RESULTS_ENV) or "results"


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; refuses anything else with the fix."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds {text!r}: give distinct non-negative integers separated by commas, e.g. "
                          f"--seeds 0,1,2")
    return seeds


def training_row(metrics: dict, machine_id: str, wall_s: float) -> dict:
    """The training.jsonl row of one evaluated `cpugrpo train` run (its metrics.json)."""
    cfg = metrics["config"]
    return {
        "run_id": f"train-{cfg['seed']}-{int(time.time())}",
        "kind": "train",
        "machine_id": machine_id,
        "model": metrics["model"],
        **({"model_cache_key": metrics["model_cache_key"]} if metrics.get("model_cache_key") else {}),
        **({"group_id": os.environ[GROUP_ENV]} if os.environ.get(GROUP_ENV) else {}),
        "config": portable_config(cfg),
        "seed": cfg["seed"],
        "split": cfg.get("eval_split", "test"),
        "eval_n": metrics["accuracy_after"]["overall"]["n"],
        "before": _strip(metrics["accuracy_before"]),
        "after": _strip(metrics["accuracy_after"]),
        "change": metrics["accuracy_change"],
        "change_by_difficulty": metrics.get("accuracy_change_by_difficulty", {}),
        "per_item_before": metrics.get("per_item_before"),
        "per_item_after": metrics.get("per_item_after"),
        "trl": metrics.get("trl_settings") or None,
        "signal": training_signal(metrics.get("steps") or []),
        "train_s": metrics["timing"]["train_s"],
        "wall_s": wall_s,
        "effective": metrics["effective"],
        "environment": metrics["environment"],
        "finished_at": time.time(),
    }


SIGNAL = {"correctness_reward": "rewards/correctness_reward/mean", "zero_std_groups": "frac_reward_zero_std",
          "entropy": "entropy", "kl": "kl"}


def training_signal(steps: list[dict]) -> dict:
    """What the run's own objective did: the mean of TRL's per-step logs over the first and the last tenth of the
    steps (correctness reward of the sampled completions, fraction of groups with zero reward variance, token
    entropy, KL to the reference when there is one).

    >>> s = [{"metrics": {"rewards/correctness_reward/mean": r, "frac_reward_zero_std": 0.5}} for r in range(10)]
    >>> training_signal(s)["correctness_reward"], training_signal(s)["zero_std_groups"]
    ([0.0, 9.0], [0.5, 0.5])
    """
    k = max(1, len(steps) // 10)
    out = {}
    for name, key in SIGNAL.items():
        ends = []
        for part in (steps[:k], steps[-k:]):
            vals = [s["metrics"][key] for s in part if (s.get("metrics") or {}).get(key) is not None]
            ends.append(sum(vals) / len(vals) if vals else None)
        if any(v is not None for v in ends):
            out[name] = ends
    return {**out, "steps_per_end": k} if out else {}


def portable_config(cfg: dict) -> dict:
    """A config for a committed row: a model or data path written without the home or temp directory."""
    return {k: (portable(v) if k in ("model", "data") and isinstance(v, str) else v) for k, v in cfg.items()}


def _strip(acc: dict) -> dict:
    return {k: v for k, v in acc.items() if k in ("overall", "by_difficulty", "precision")}


def record(metrics: dict, wall_s: float, results_dir: str | None = None) -> Path | None:
    """Append ``metrics``' row to ``results/<machine-id>/training.jsonl`` (nothing for a run that was not
    evaluated). Returns the file."""
    if not metrics.get("accuracy_change"):
        return None
    from ..hw.hardware import detect

    mid = detect().machine_id
    store = TrialStore(Path(results_root(results_dir)) / mid / "training.jsonl")
    store.append(training_row(metrics, mid, wall_s))
    return store.path


def run_seeds(argv: list[str], seeds: list[int], run_dir: str, json_out: bool) -> dict:
    """`cpugrpo train --seeds`: ``argv`` (the train command's own arguments, without --seeds) once per seed, each
    a child `cpugrpo train --seed S --json` in its own process (settings applied before torch starts; the child dies
    with this process). Each child records its own row; this returns the summary over seeds."""
    from ..hw.runtime import PARENT_PID_VAR

    runs, failures = [], []
    # in every row of this invocation (GROUP_ENV), so its seeds can be found; the pid tells apart two started at once
    group = f"seeds-{int(time.time())}-{os.getpid()}"
    for i, seed in enumerate(seeds):
        cmd = [sys.executable, "-m", "cpugrpo.cli.main", "train", *argv, "--seed", str(seed), "--json",
               "--run-dir", os.path.join(run_dir, f"seed-{seed}")]
        if not json_out:
            print(f"seed {seed} ({i + 1}/{len(seeds)}): cpugrpo {' '.join(cmd[3:])}", file=sys.stderr, flush=True)
        env = {**os.environ, PARENT_PID_VAR: str(os.getpid()), GROUP_ENV: group, PROGRESS_ENV: "0" if json_out else "1"}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=None if not json_out else subprocess.PIPE,
                              text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            failures.append({"seed": seed, "returncode": proc.returncode, "reason": tail[0], "wall_s": wall})
            continue
        try:
            m = json.loads(proc.stdout.strip().splitlines()[-1])
            change = m["accuracy_change"]
        except (IndexError, ValueError, KeyError):
            m, change = {}, None
        if not change:  # a random-weight preset is not evaluated: there is no gain to summarise
            failures.append({"seed": seed, "returncode": 0, "reason": "the run printed no held-out gain (a random-"
                             "weight preset is not evaluated: --seeds needs tiny or a local model)", "wall_s": wall})
            continue
        runs.append({"seed": seed, "wall_s": wall, "before": m["accuracy_before"]["overall"]["accuracy"],
                     "after": m["accuracy_after"]["overall"]["accuracy"], "change": change,
                     "change_by_difficulty": m.get("accuracy_change_by_difficulty", {}),
                     "split": m["config"].get("eval_split"), "run_dir": portable(m["run_dir"])})
    out = {"kind": "seeds", "seeds": seeds, "group_id": group, "runs": runs, "failures": failures,
           **summarize(runs), "exit_code": 1 if failures else 0}
    atomic_write_json(os.path.join(run_dir, "seeds.json"), out)
    return out


def summarize(runs: list[dict]) -> dict:
    """Mean gain over seeds, its spread, and whether every seed's own paired interval excludes 0."""
    if not runs:
        return {"mean_change": None}
    diffs = [r["change"]["difference"] for r in runs]
    return {"mean_change": statistics.fmean(diffs),
            "sd_change": statistics.stdev(diffs) if len(diffs) > 1 else None,
            "min_change": min(diffs), "max_change": max(diffs),
            "every_interval_above_zero": all(r["change"]["ci95"][0] > 0 for r in runs)}
