"""Shared pieces of the asv suite: the star of configurations, isolated measurement trials, a one-step driver.

Deterministic, cached inputs: the tiny preset is built once per machine (``~/.cache/cpugrpo``) and ``small`` is
built from a seeded config in memory. At import time the heavy libraries are imported (see ``_preload``) and
nothing else runs.

The default suite is a *star* around the default configuration: the default point plus every point that changes
exactly one knob, on ``tiny``; on ``small`` (and the 494M shape) the default point and int8 rollout only, so that
``asv run --quick`` stays within 10 minutes on 2 cores. Points off the star raise ``NotImplementedError`` (asv
records them as skipped) unless ``CPUGRPO_BENCH_FULL=1``, which runs the whole product. ``CPUGRPO_BENCH_0_5B=1`` adds
the 494M shape. The processes axis (data-parallel ranks, bench_processes.py) is a star arm of its own, on ``tiny``
only, kept out of the GRPO benchmarks' parameters so that their asv history goes on.
"""

import os
import threading


def _preload():
    """With asv's forkserver launch method (asv.conf.json) the suite is imported once and every benchmark process
    is forked from it: importing the heavy libraries here saves ~5 s per benchmark point. Importing does not start
    OpenMP's thread pool (no parallel region runs), so each forked child still sets its own thread count."""
    import torch  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401


if os.environ.get("CPUGRPO_BENCH_PRELOAD", "1") == "1":
    _preload()

NUM_GENERATIONS = 8
MAX_COMPLETION_LENGTH = 48
PROMPTS_PER_STEP = 4  # the suite's default point: half TrainConfig's 8 prompts, so a tiny step stays short


def _bench():
    from cpugrpo.core.config import COLUMNS, bench_knobs

    return [(COLUMNS[name], k) for name, k in bench_knobs()]


def param_names() -> list[str]:
    """The GRPO benchmarks' asv parameters: ``model``, then every knob marked ``bench`` in the registry
    (core/config.py), by its report column. Renaming or adding one starts a new asv history."""
    return ["model"] + [col for col, _ in _bench()]


def param_values() -> list[list]:
    from cpugrpo.core.config import knob_values

    return [models()] + [thread_params() if col == "threads" else knob_values(k, "bench") for col, k in _bench()]


def default_point() -> dict:
    """The star's centre: TrainConfig's defaults for every benchmark knob, at every usable CPU and 4 prompts."""
    from cpugrpo.core.config import TrainConfig

    d = TrainConfig().to_dict()
    out = {col: d.get(col) for col, _ in _bench()}
    out.update({"threads": usable(), "prompts_per_step": PROMPTS_PER_STEP})
    return out


def usable():
    from cpugrpo.hw.runtime import usable_cpus

    return usable_cpus()


def thread_params():
    n, out, t = usable(), [], 1
    while t < n:
        out.append(t)
        t *= 2
    return out + [n]


def models():
    return ["tiny", "small"] + (["qwen2-0.5b"] if os.environ.get("CPUGRPO_BENCH_0_5B") == "1" else [])


def point(*values) -> dict:
    """Benchmark parameters (after ``model``) as a point keyed by their names."""
    return dict(zip(param_names()[1:], values))


SMALL_STAR = ({}, {"rollout_precision": "int8"})  # a small point costs ~20 s: the default and its best rollout


def check_star(p: dict, model: str = "tiny") -> None:
    """Raise NotImplementedError for points off the star (unless the full product is asked for) or impossible."""
    if p["threads"] > usable():
        raise NotImplementedError(f"{p['threads']} threads > {usable()} usable CPUs")
    if os.environ.get("CPUGRPO_BENCH_FULL") == "1":
        return
    default = default_point()
    changed = {k: p[k] for k in p if p[k] != default[k]}
    if len(changed) > 1:
        raise NotImplementedError(f"off the default star (changes {', '.join(changed)}); CPUGRPO_BENCH_FULL=1 runs it")
    if model != "tiny" and changed not in SMALL_STAR:
        raise NotImplementedError(f"{model}: only the default point and int8 rollout in the default suite; "
                                  f"CPUGRPO_BENCH_FULL=1 runs the rest")


def processes_point(processes: int) -> dict:
    """The processes axis of the star: the centre with its usable CPUs split among ``processes`` data-parallel ranks
    (threads per rank = usable // processes, so processes x threads never exceeds them)."""
    return {**default_point(), "processes": processes, "threads": max(1, usable() // processes)}


def check_processes(processes: int, model: str = "tiny") -> None:
    """Raise NotImplementedError for a processes point the default suite skips: more ranks than usable CPUs, or
    another model than tiny (each rank holds a whole replica; CPUGRPO_BENCH_FULL=1 runs it)."""
    if processes > usable():
        raise NotImplementedError(f"{processes} processes > {usable()} usable CPUs")
    if model != "tiny" and os.environ.get("CPUGRPO_BENCH_FULL") != "1":
        raise NotImplementedError(f"{model}: the processes axis runs on tiny only in the default suite; "
                                  f"CPUGRPO_BENCH_FULL=1 runs it")


def train_config(model: str, p: dict, steps: int):
    from cpugrpo.core.config import TrainConfig, from_columns, from_mapping

    base = TrainConfig(model=model, steps=steps, num_generations=NUM_GENERATIONS,
                       max_completion_length=MAX_COMPLETION_LENGTH)
    return from_mapping(from_columns(p, base.to_dict()), base, origin="benchmark point")


def trial(model: str, p: dict, measured_steps: int = 3, evaluate: bool = False, eval_precisions=(), **cfg_over):
    """One configuration measured in its own process (cpugrpo.runs.trial): the numbers every track_ returns."""
    from cpugrpo.runs.trial import TrialSpec, run_trial

    cfg = train_config(model, p, 1 + measured_steps).replace(**cfg_over)
    row = run_trial(TrialSpec(config=cfg.to_dict(), measured_steps=measured_steps, evaluate=evaluate,
                              eval_precisions=tuple(eval_precisions), tag="asv", timeout_s=1200))
    return row


class _Stop(Exception):
    pass


class StepDriver:
    """Keeps a real TRL GRPO training loop alive in a thread and lets the caller run it one step at a time, so
    asv's own timer measures exactly one step (the warm-up step runs in ``start``)."""

    def __init__(self, model: str, p: dict, steps: int = 64):
        from cpugrpo.hw.runtime import apply_threads
        from cpugrpo.train import models as m

        apply_threads(p["threads"])  # asv's forked child: OMP_NUM_THREADS was not set before torch, so torch sets it
        self.cfg = train_config(model, p, steps)
        self.loaded = m.load(model, progress=False)
        self.go, self.done = threading.Semaphore(0), threading.Semaphore(0)
        self.stop, self.error = False, None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_step(self, measurement):
        self.done.release()
        self.go.acquire()
        if self.stop:
            raise _Stop()

    def _run(self):
        import tempfile

        from cpugrpo.train.trainer import run_grpo

        try:
            with tempfile.TemporaryDirectory() as out:
                run_grpo(self.cfg, self.loaded.model, self.loaded.tokenizer, out, progress=False,
                         on_step=self._on_step)
        except _Stop:
            pass
        except BaseException as e:  # noqa: BLE001 - surfaced to the benchmark call
            self.error = e
        finally:
            self.done.release()

    def start(self):
        self.thread.start()
        self._wait()  # the warm-up step

    def _wait(self):
        if not self.done.acquire(timeout=900):
            raise RuntimeError("GRPO step did not finish within 900 s")
        if self.error is not None:
            raise self.error

    def step(self):
        self.go.release()
        self._wait()

    def close(self):
        self.stop = True
        self.go.release()
        self.thread.join(timeout=60)
