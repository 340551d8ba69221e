"""One configuration, measured in its own process: the unit every sweep, the tuner and the baseline are made of.

The parent (``run_trial``) starts ``python -m cpugrpo.runs.trial SPEC OUT`` with the thread variables (and any ISA cap)
already in the child's environment, so OpenMP's pool is created at the requested size before torch does any
parallel work. It then watches the child from outside:

- each step's end is stamped on the parent's clock (the child writes one line per step to a pipe), which gives an
  outside samples/s to check the child's own figure against;
- the child's peak RSS comes from the kernel (``os.wait4`` rusage), besides the child's own sampling thread;
- a timeout, a memory limit (RSS polled every 50 ms), a crash, a signal (SIGKILL from the OOM killer) or a Python
  ``MemoryError`` ends the trial as a failed row with its reason; the caller goes on.
- the child runs in its own session and process group and dies with the parent (``die_with_parent``: Linux's
  parent-death signal, and a guard that kills the child's whole group), so a SIGKILLed sweep leaves no trial running.

The child trains ``warmup_steps + measured_steps`` GRPO steps (the first is warm-up, reported apart), and with
``evaluate`` set, evaluates the trained policy on the fixed held-out set (the tuner's quality gate); with
``evaluate_before`` also the untrained one, on the same items (the gate's common start).
``mode="trl-defaults"`` / ``"trl-cpu"`` run plain ``trl.GRPOTrainer`` instead, as that peer of ``cpugrpo baseline``
(train/trl_peers.py); the row then carries ``trl_args`` (the settings read back from the built ``GRPOConfig``) and a
``config`` mapped from them, so it never claims a cpugrpo setting that did not run.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core.config import WORKLOAD_KEYS, TrainConfig, fill_before, from_mapping, key_dict
from ..core.paths import portable
from ..hw.runtime import PARENT_PID_VAR, apply_threads, child_env, die_with_parent, resolve_threads
from ..train.trl_peers import PEERS

MODES = ("cpugrpo", *PEERS)


@dataclass(frozen=True)
class TrialSpec:
    config: dict                    # TrainConfig fields; ``steps`` is ignored (warmup + measured steps are run)
    measured_steps: int = 3
    warmup_steps: int = 1
    evaluate: bool = False          # evaluate the trained policy (quality gate) at the config's eval_precision
    evaluate_before: bool = False   # ... and the policy before training, on the same items (accuracy_before)
    eval_precisions: tuple = ()     # ... and also at each of these (accuracy_by_precision)
    mode: str = "cpugrpo"
    timeout_s: float = 900.0
    memory_limit_mb: float | None = None
    env: dict = field(default_factory=dict)   # extra environment, e.g. ONEDNN_MAX_CPU_ISA
    tag: str = ""                   # free label (sweep name, "remeasure", "baseline-A", ...); not part of the id

    def __post_init__(self):
        from ..core.config import ConfigError

        if self.measured_steps < 1 or self.warmup_steps < 0:
            raise ConfigError("a trial needs at least 1 measured step and >= 0 warm-up steps")
        object.__setattr__(self, "eval_precisions", tuple(self.eval_precisions))  # JSON gives a list
        if self.mode not in MODES:
            raise ConfigError(f"unknown trial mode {self.mode!r}: use one of {', '.join(MODES)}")
        self.train_config()  # validates

    def train_config(self) -> TrainConfig:
        """The config that runs; a knob missing from a stored spec takes the value rows ran with before it existed."""
        c = fill_before({k: v for k, v in self.config.items() if k != "steps"})
        return from_mapping(c, origin="trial config").replace(steps=self.warmup_steps + self.measured_steps)

    @property
    def key(self) -> str:
        """What makes two trials the same measurement (resume skips a key already stored)."""
        d = {"config": key_dict(self.train_config(), self.config), "measured": self.measured_steps,
             "warmup": self.warmup_steps, "evaluate": self.evaluate, "mode": self.mode,
             "env": dict(sorted(self.env.items()))}
        if self.eval_precisions:  # only when set, so keys of rows stored before this field existed still match
            d["eval_precisions"] = list(self.eval_precisions)
        if self.evaluate_before:  # likewise
            d["evaluate_before"] = True
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        return asdict(self)

    def row_config(self) -> dict:
        """The row's ``config`` until the child reports: the whole config for cpugrpo; for a TRL peer only what it
        was given (the shared work, steps, the data), since the rest is TRL's and read back by the child."""
        c = self.train_config().to_dict()
        if self.mode == "cpugrpo":
            return c
        return {k: v for k, v in c.items() if k in WORKLOAD_KEYS or k in ("steps", "data", "difficulties")}


def trial_env(spec: TrialSpec) -> dict:
    """The child's environment: threads (and ISA cap variables in ``spec.env``) set before torch starts."""
    return child_env(resolve_threads(spec.train_config().threads), extra=spec.env)


class _StepStamps(threading.Thread):
    """Reads the child's per-step lines from a pipe and stamps them with the parent's clock."""

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd, self.stamps = fd, []

    def run(self):
        with os.fdopen(self.fd, "r") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "step":
                    self.stamps.append((time.perf_counter(), int(parts[1]), int(parts[2])))


def _outside(stamps: list, warmup: int) -> dict:
    """samples/s over the measured steps, from the parent's own timestamps of step ends."""
    if len(stamps) < warmup + 1 or warmup < 1:
        return {}
    t0 = stamps[warmup - 1][0]
    done = stamps[warmup:]
    wall = done[-1][0] - t0
    return {"measured_wall_s": wall, "samples_per_s": sum(s[2] for s in done) / wall if wall > 0 else None}


def run_trial(spec: TrialSpec, machine_id: str | None = None, python: str = sys.executable) -> dict:
    """Run ``spec`` in a child process; always returns a row (status "ok" or "failed" with a reason)."""
    started = time.time()
    row = {"trial_id": f"{spec.key}-{int(started)}", "key": spec.key, "tag": spec.tag, "machine_id": machine_id,
           "spec": spec.to_dict(), "config": spec.row_config(), "started_at": started}
    with tempfile.TemporaryDirectory(prefix="cpugrpo-trial-") as tmp:
        spec_path, out_path, log_path = (os.path.join(tmp, n) for n in ("spec.json", "out.json", "log.txt"))
        Path(spec_path).write_text(json.dumps(spec.to_dict()))
        r, w = os.pipe()
        env = trial_env(spec)
        env["CPUGRPO_STEP_FD"] = str(w)
        env[PARENT_PID_VAR] = str(os.getpid())  # the child dies with us (die_with_parent), even on our SIGKILL
        t0 = time.perf_counter()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([python, "-m", "cpugrpo.runs.trial", spec_path, out_path], env=env, stdout=log,
                                    stderr=subprocess.STDOUT, pass_fds=(w,), start_new_session=True)
        os.close(w)
        stamps = _StepStamps(r)
        stamps.start()
        killed, status, rusage, rss_peak = None, None, None, 0
        import psutil

        try:
            ps = psutil.Process(proc.pid)
        except psutil.Error:
            ps = None
        while status is None:
            pid, st, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status, rusage = st, ru
                break
            try:  # several data-parallel ranks (runs/launch.py): the RSS of every process of the job, summed
                tree = [ps, *ps.children(recursive=True)] if ps and spec.train_config().processes > 1 else [ps]
                rss_peak = max(rss_peak, sum(p.memory_info().rss for p in tree) / 2**20) if ps else rss_peak
            except psutil.Error:
                pass
            elapsed = time.perf_counter() - t0
            if elapsed > spec.timeout_s:
                killed = f"timeout: still running after {spec.timeout_s:.0f} s (raise the trial timeout)"
            elif spec.memory_limit_mb and rss_peak > spec.memory_limit_mb:
                killed = (f"out of memory: RSS {rss_peak:.0f} MiB passed the {spec.memory_limit_mb:.0f} MiB limit "
                          f"(smaller batch, bf16 or gradient checkpointing)")
            if killed:
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, rusage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        stamps.join(timeout=5)
        log_tail = Path(log_path).read_text(errors="replace")[-2000:]
        child = json.loads(Path(out_path).read_text()) if os.path.exists(out_path) else None
    row["outside"] = {"wall_s": wall, "os_peak_rss_mb": rusage.ru_maxrss / 1024 if rusage else None,
                      "polled_peak_rss_mb": rss_peak or None,
                      **_outside(stamps.stamps, spec.warmup_steps)}
    code = os.waitstatus_to_exitcode(status) if status is not None else None
    row["exit_code"] = code
    if killed:
        row.update(status="failed", reason=killed)
    elif child is not None and child.get("status") == "ok" and code == 0:
        row.update(status="ok", **{k: v for k, v in child.items() if k != "status"})
    elif child is not None and child.get("reason"):
        row.update(status="failed", reason=child["reason"])
    elif code is not None and code < 0:
        name = signal.Signals(-code).name
        hint = " (the kernel's out-of-memory killer sends SIGKILL)" if -code == signal.SIGKILL else ""
        row.update(status="failed", reason=f"killed by {name}{hint}")
    else:
        last = [ln for ln in log_tail.splitlines() if ln.strip()][-1:] or ["no output"]
        row.update(status="failed", reason=f"crashed with exit code {code}: {last[0][:200]}")
    if row["status"] == "failed":  # a reason or a traceback may name files: no home or temp paths in a row
        row.update(reason=portable(row["reason"]), log_tail=portable(log_tail))
    return row


# ------------------------------------------------------------------------------------------------------- child
def _child(spec: TrialSpec) -> dict:

    from ..hw.effective import compare, effective_settings, requested_settings
    from ..hw.runtime import environment_snapshot
    from ..train import models
    from ..train.measure import summarize

    cfg = spec.train_config()
    threads = apply_threads(resolve_threads(cfg.threads))
    fd = int(os.environ.get("CPUGRPO_STEP_FD", "-1"))
    mark = os.fdopen(fd, "w", buffering=1) if fd >= 0 else None

    def on_step(m):
        if mark:
            mark.write(f"step {m.step} {m.completions}\n")

    t0 = time.perf_counter()
    from ..hw.runtime import release_freed_memory
    from ..train.trainer import weights_dtype

    peer = spec.mode in PEERS  # TRL as its users run it: fp32 weights from the loader, glibc's allocator untouched
    if not peer:
        release_freed_memory(cfg.release_memory)
    loaded = models.load(cfg.model, seed=cfg.preset_seed, progress=False, dtype=None if peer else weights_dtype(cfg))
    load_s = time.perf_counter() - t0
    before = None
    if spec.evaluate_before:  # the start, on the items evaluated after training (greedy: the same for every pair)
        from ..train import evaluate

        acc0 = evaluate.evaluate(loaded.model, loaded.tokenizer, problems=evaluate.held_out(cfg),
                                 precision=cfg.eval_precision, progress=False, random_weights=loaded.random_weights,
                                 max_new_tokens=cfg.max_completion_length)
        before = {**acc0.to_dict(), "per_item": "".join("1" if f else "0" for f in acc0.per_item)}
    with tempfile.TemporaryDirectory(prefix="cpugrpo-trl-") as out_dir:
        trl = {}
        if spec.mode in PEERS:
            from ..train.trl_peers import as_train_config, run_trl

            steps, trl_args = run_trl(cfg, spec.mode, loaded.model, loaded.tokenizer, out_dir, on_step)
            trl = {"trl_args": trl_args, "config": as_train_config(trl_args, cfg)}  # what ran, not what was asked
        else:
            from ..train.trainer import run_grpo

            steps = run_grpo(cfg, loaded.model, loaded.tokenizer, out_dir, progress=False, on_step=on_step)
    out = {"status": "ok", "model": loaded.source,  # a preset's name (with its build's cache key), never a path
           **({"model_cache_key": loaded.cache_key} if loaded.cache_key else {}),
           "random_weights": loaded.random_weights, "load_s": load_s,
           "summary": summarize(steps, spec.warmup_steps), "steps": [s.to_dict() for s in steps], **trl}
    if before is not None:
        out["accuracy_before"] = before
    if spec.evaluate:
        from ..train import evaluate

        acc = evaluate.evaluate(loaded.model, loaded.tokenizer, problems=evaluate.held_out(cfg),
                                precision=cfg.eval_precision, progress=False, random_weights=loaded.random_weights,
                                max_new_tokens=cfg.max_completion_length)
        out["accuracy"] = {**acc.to_dict(), "per_item": "".join("1" if f else "0" for f in acc.per_item)}
        out["accuracy_by_precision"] = {cfg.eval_precision: out["accuracy"]}
        for prec in spec.eval_precisions:
            if prec not in out["accuracy_by_precision"]:
                a = evaluate.evaluate(loaded.model, loaded.tokenizer, problems=evaluate.held_out(cfg), precision=prec,
                                      progress=False, random_weights=loaded.random_weights,
                                      max_new_tokens=cfg.max_completion_length)
                out["accuracy_by_precision"][prec] = a.to_dict()
    requested = requested_settings(threads)
    eff = effective_settings()
    ran = [s.metrics.get("shared_prefix_ran") for s in steps[spec.warmup_steps:]]
    flags = compare(requested, eff)
    if cfg.shared_prefix and not all(ran):  # e.g. with gradient checkpointing the prefix path falls back to TRL's
        flags.append(f"shared prefix requested, ran in {sum(map(bool, ran))} of {len(ran)} measured steps")
    out["effective"] = {"threads": threads, "batch_size": cfg.batch_size, "shared_prefix_ran": all(ran) and bool(ran),
                        **eff, "flags": flags}
    out["environment"] = environment_snapshot()
    return out


def main(argv: list[str]) -> int:
    if os.environ.get(PARENT_PID_VAR):  # started by run_trial: die with it (and take our own children along)
        die_with_parent(int(os.environ[PARENT_PID_VAR]))
    spec_path, out_path = argv
    from ..core.store import atomic_write_json

    d = json.loads(Path(spec_path).read_text())
    try:
        spec = TrialSpec(**d)
        if spec.train_config().processes > 1:  # data-parallel ranks through torch's launcher (runs/launch.py)
            from .launch import trial_job

            out = trial_job(spec)
        else:
            out = _child(spec)
        code = 0
    except MemoryError:
        out, code = {"status": "failed", "reason": "out of memory (MemoryError in the trial process)"}, 3
    except Exception as e:  # noqa: BLE001 - every failure becomes a recorded reason, never a lost trial
        msg = str(e).splitlines()[0][:300] if str(e) else ""
        out, code = {"status": "failed", "reason": f"{type(e).__name__}: {msg}"}, 1
    atomic_write_json(Path(out_path), out)
    return code


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    sys.exit(main(sys.argv[1:]))
