"""Per-step measurements: phase wall times, throughput, peak RSS, CPU utilisation, and summary statistics.

Phases of one GRPO step (TRL does them in this order inside ``training_step``):
- rollout: generating the completions, including the rollout snapshot's refresh (cast or quantization);
- scoring: the reward functions;
- update: everything else in the step: the policy's (and reference's) log-prob forward passes, loss, backward,
  optimizer step, and TRL's bookkeeping. It is measured as step wall time minus rollout minus scoring (minus
  communication).
- communication (several data-parallel ranks only, dist.py; 0 with one process): the gradient all-reduce and TRL's
  gathers of rewards and metrics, taken out of the update (and of scoring, for the reward gather).

Peak RSS has two sources: a sampling thread (``psutil``, every 20 ms) that gives a per-step peak, and the kernel's
high-water mark (``ru_maxrss``), which cannot miss a short spike but only ever grows.
"""

from __future__ import annotations

import resource
import threading
import time
from dataclasses import asdict, dataclass, field

from ..core.stats import median_and_spread


@dataclass
class StepMeasurement:
    step: int
    wall_s: float
    rollout_s: float
    scoring_s: float
    update_s: float
    completions: int
    completion_tokens: int
    peak_rss_mb: float
    cpu_util: float          # process CPU seconds / wall seconds / threads (1.0 = every thread busy)
    rollout_refresh_s: float = 0.0
    metrics: dict = field(default_factory=dict)  # TRL's logged metrics for the step (reward, clipped ratio, ...)
    update_flops: float = 0.0      # matmul FLOPs the update executed (flops.py), from the shapes that ran
    prompt_width: int = 0          # longest prompt of the step, in tokens (prompts are left-padded to it)
    decode_steps: int = 0          # longest completion: the number of decode steps the rollout ran
    decode_weight_bytes: int = 0   # weight bytes one decode step reads from the rollout snapshot (flops.py)
    communication_s: float = 0.0   # all-reduce and gathers between data-parallel ranks (dist.py); 0: one process

    @property
    def samples_per_s(self) -> float:
        return self.completions / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s if self.wall_s > 0 else float("nan")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["samples_per_s"] = self.samples_per_s
        d["tokens_per_s"] = self.tokens_per_s
        return d


def os_peak_rss_mb() -> float:
    """The kernel's high-water mark of this process's RSS (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class RSSSampler:
    """Background thread sampling this process's RSS; ``take_peak()`` returns and resets the peak since last call."""

    def __init__(self, interval_s: float = 0.02):
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpugrpo-rss")

    def _run(self):
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss
            with self._lock:
                self._peak = max(self._peak, rss)
            self._stop.wait(self._interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def take_peak(self) -> float:
        rss = self._proc.memory_info().rss
        with self._lock:
            peak, self._peak = max(self._peak, rss), rss
        return peak / 2**20


class CPUClock:
    """Process CPU time against wall time between ``lap()`` calls."""

    def __init__(self, threads: int):
        import psutil

        self._proc = psutil.Process()
        self.threads = max(1, threads)
        self._last = self._now()

    def _now(self):
        t = self._proc.cpu_times()
        return time.perf_counter(), t.user + t.system

    def lap(self) -> float:
        now = self._now()
        wall, cpu = now[0] - self._last[0], now[1] - self._last[1]
        self._last = now
        return cpu / wall / self.threads if wall > 0 else float("nan")


def summarize(steps: list[StepMeasurement], warmup: int = 1) -> dict:
    """Summary of a run: warm-up steps reported apart from the rest (medians over the measured steps)."""
    measured = steps[warmup:] if len(steps) > warmup else []
    out = {"warmup_steps": [s.to_dict() for s in steps[:warmup]], "measured_steps": len(measured)}
    if not measured:
        out["note"] = "no measured steps after warm-up: run more than one step"
        return out
    for key in ("wall_s", "rollout_s", "scoring_s", "update_s", "rollout_refresh_s", "samples_per_s",
                "tokens_per_s", "cpu_util", "peak_rss_mb"):
        out[key] = median_and_spread([getattr(s, key) for s in measured])
    wall = sum(s.wall_s for s in measured)
    phases = ("rollout", "scoring", "update") + (("communication",) if any(s.communication_s for s in steps) else ())
    if "communication" in phases:  # several ranks: the communication phase, apart from the update
        out["communication_s"] = median_and_spread([s.communication_s for s in measured])
    out["phase_share"] = {p: sum(getattr(s, f"{p}_s") for s in measured) / wall for p in phases}
    out["total_samples_per_s"] = sum(s.completions for s in measured) / wall
    out["total_tokens_per_s"] = sum(s.completion_tokens for s in measured) / wall
    if all(s.update_flops > 0 and s.update_s > 0 for s in measured):  # executed work was recorded (flops.py)
        out["update_flops"] = median_and_spread([s.update_flops for s in measured])
        out["update_flops_per_s"] = median_and_spread([s.update_flops / s.update_s for s in measured])
    if all(s.decode_weight_bytes > 0 and s.decode_steps > 0 for s in measured):
        decode = [(s, s.rollout_s - s.rollout_refresh_s) for s in measured]
        out["decode_tokens_per_s"] = median_and_spread([s.completion_tokens / t for s, t in decode if t > 0])
        # a decode step reads the snapshot's weights once for every row: tokens over (steps x bytes) per byte/s
        out["decode_tokens_per_byte_s"] = median_and_spread([s.completion_tokens / (s.decode_steps *
                                                                                      s.decode_weight_bytes)
                                                              for s in measured])
        out["decode_weight_bytes"] = measured[-1].decode_weight_bytes
    out["peak_rss_mb_sampled"] = max(s.peak_rss_mb for s in steps)
    out["peak_rss_mb_os"] = os_peak_rss_mb()
    return out
