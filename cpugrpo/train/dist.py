"""Data-parallel GRPO as seen from inside one rank: the process group, the gradient all-reduce, and the time spent
communicating.

A rank is one training process among ``world`` (torch.distributed over gloo, started by ``runs/launch.py`` through
torch's launcher). Nothing here starts a process: this module only lets one training process cooperate with its
peers. What data parallelism changes, and where:

- the batch: ``cfg.batch_size`` stays the global batch. Each rank generates, scores and differentiates
  ``batch_size / world`` completions (TRL's ``RepeatSampler`` hands rank r the r-th slice of every generation batch,
  and gathers the rewards, so a group split across ranks is still normalised as one group). ``grpo_args`` sets the
  per-device batch from ``world_size()``.
- the gradients: accelerate wraps the policy in ``DistributedDataParallel`` (MULTI_CPU, gloo). Its comm hook is
  replaced by ``timed_allreduce_hook``: the bucket is summed with a *blocking* gloo all-reduce (in fp32, also for
  bf16 weights, then cast back), divided by the world size, and the wall time is recorded. Blocking gives up DDP's
  overlap of communication with the rest of the backward, so the time is exactly what the rank waited (including
  for a slower peer), and it is subtracted from the update phase rather than hidden inside it.
- the gathers: TRL gathers rewards (inside scoring), token counts and logging metrics (inside the update) from
  every rank. ``GatherTiming`` wraps ``accelerator.gather`` and TRL's module-level ``gather``/``gather_object`` so
  their wall time counts as communication too: the part inside the reward call is subtracted from scoring, the
  rest from the update. So a step's ``communication_s`` is all-reduce + gathers, and
  rollout + scoring + update + communication = the step's wall time, as with one process (where it is 0).
- the shared-prefix update (prefix.py) runs its prompt pass on the wrapped model's backbone directly and its
  completion pass through the DDP wrapper, so DDP's reducer is armed by that second forward and all-reduces the
  gradients of both passes in the one backward (tests/test_dist.py checks the gradients against one process).
- stochastic rounding (``bf16-sr``) draws its noise from a generator seeded the same on every rank
  (``shared_generator``), so identical all-reduced gradients give identical weights everywhere; the end-of-run
  ``weights_digest`` check confirms that every rank holds the same model.
"""

from __future__ import annotations

import hashlib
import os
import time

GLOO = "gloo"


def world_size() -> int:
    """The number of ranks: torch.distributed's when a group is up, else the launcher's ``WORLD_SIZE``, else 1."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_world_size()
    except ImportError:
        pass
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank()
    except ImportError:
        pass
    return int(os.environ.get("RANK", "0") or 0)


def init(timeout_s: float = 600.0) -> tuple[int, int]:
    """Join the gloo process group the launcher set up (``env://``: MASTER_ADDR/PORT, RANK, WORLD_SIZE); a
    collective that waits longer than ``timeout_s`` for a peer raises instead of hanging. Returns (rank, world)."""
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend=GLOO, timeout=timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size()


def shutdown() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class CommClock:
    """Seconds a rank spent communicating since the last ``take()``."""

    def __init__(self):
        self.seconds = 0.0

    def take(self) -> float:
        s, self.seconds = self.seconds, 0.0
        return s


def timed_allreduce_hook(clock: CommClock):
    """A DDP comm hook: average the bucket over the ranks with a blocking gloo all-reduce, timed into ``clock``."""
    import torch
    import torch.distributed as dist

    def hook(state, bucket):
        t0 = time.perf_counter()
        buf = bucket.buffer()
        work = buf if buf.dtype == torch.float32 else buf.float()  # bf16 sums in fp32: one rounding, same everywhere
        dist.all_reduce(work)
        work.div_(dist.get_world_size())
        if work is not buf:
            buf.copy_(work)
        clock.seconds += time.perf_counter() - t0
        fut = torch.futures.Future()
        fut.set_result(buf)
        return fut

    return hook


def register_allreduce(model_wrapped, clock: CommClock) -> bool:
    """Put ``timed_allreduce_hook`` on the DDP wrapper (once, before the first backward); False when ``model_wrapped``
    is not DDP (one process)."""
    from torch.nn.parallel import DistributedDataParallel

    if not isinstance(model_wrapped, DistributedDataParallel) or getattr(model_wrapped, "_cpugrpo_hook", False):
        return False
    model_wrapped.register_comm_hook(state=None, hook=timed_allreduce_hook(clock))
    model_wrapped._cpugrpo_hook = True
    return True


class GatherTiming:
    """Times TRL's gathers into ``clock`` while installed: ``accelerator.gather`` (an instance attribute, this trainer
    only) and the ``gather``/``gather_object`` names TRL's grpo_trainer module calls (process-wide, restored by
    ``remove``)."""

    NAMES = ("gather", "gather_object")

    def __init__(self, trainer, clock: CommClock):
        from trl.trainer import grpo_trainer

        self.module, self.clock, self.saved = grpo_trainer, clock, {}
        for name in self.NAMES:
            if hasattr(grpo_trainer, name):
                self.saved[name] = getattr(grpo_trainer, name)
                setattr(grpo_trainer, name, self._timed(self.saved[name]))
        self.accelerator = trainer.accelerator
        self.accelerator.gather = self._timed(type(self.accelerator).gather.__get__(self.accelerator))

    def _timed(self, fn):
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.clock.seconds += time.perf_counter() - t0

        return timed

    def remove(self) -> None:
        for name, fn in self.saved.items():
            setattr(self.module, name, fn)
        self.saved = {}
        self.accelerator.__dict__.pop("gather", None)


def shared_generator(seed: int):
    """A CPU generator seeded alike on every rank (TRL seeds each rank's global generator differently)."""
    import torch

    return torch.Generator().manual_seed(seed)


def weights_digest(model) -> str:
    """SHA-1 of every parameter's bytes, in order: equal on two ranks exactly when they hold the same weights."""
    import torch

    h = hashlib.sha1()
    for name, p in model.named_parameters():
        h.update(name.encode())
        t = p.detach().contiguous().reshape(-1)
        h.update(memoryview(t.view(torch.uint8).numpy()) if t.numel() else b"")
    return h.hexdigest()[:16]


def gather_objects(obj) -> list:
    """``obj`` from every rank, in rank order, on every rank (a list of one without a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


JOB: list = []  # every rank's record after ``finish`` (the same list on every rank), for the process that launched


def rank_record(records: list, model) -> dict:
    """What one rank reports: where it ran (host, node, CPUs it was pinned to, threads torch used), its steps, its
    kernel peak RSS and a digest of its weights."""
    import socket

    import torch

    from ..hw.runtime import affinity
    from .measure import os_peak_rss_mb

    env = os.environ
    return {"rank": rank(), "local_rank": int(env.get("LOCAL_RANK", 0)), "node_rank": int(env.get("GROUP_RANK", 0)),
            "host": socket.gethostname(), "cpus": affinity(), "threads": torch.get_num_threads(),
            "peak_rss_mb": os_peak_rss_mb(), "weights_digest": weights_digest(model),
            "steps": [s.to_dict() for s in records]}


def finish(records: list, model) -> list:
    """After the last step, on every rank (a collective): every rank's ``rank_record``, kept in ``JOB``."""
    JOB[:] = gather_objects(rank_record(records, model))
    return JOB


PHASES = ("wall_s", "rollout_s", "scoring_s", "update_s", "communication_s")


def rank_phases(record: dict, warmup: int = 1) -> dict:
    """A rank's median phase seconds over its measured steps (all steps when there are no more than ``warmup``)."""
    import statistics

    steps = record["steps"][warmup:] or record["steps"]
    return {p: statistics.median(s[p] for s in steps) for p in PHASES} if steps else {}


def merge_steps(ranks: list) -> list:
    """The job's steps from every rank's: a step lasts as long as its slowest rank (the all-reduce makes them wait
    for each other), its completions, tokens, FLOPs, snapshot bytes and RSS are summed over the ranks, its phase
    seconds and CPU utilisation are the ranks' means."""
    from .measure import StepMeasurement

    out = []
    for steps in zip(*(r["steps"] for r in ranks), strict=True):
        n = len(steps)
        out.append(StepMeasurement(
            step=steps[0]["step"], wall_s=max(s["wall_s"] for s in steps),
            rollout_s=sum(s["rollout_s"] for s in steps) / n, scoring_s=sum(s["scoring_s"] for s in steps) / n,
            update_s=sum(s["update_s"] for s in steps) / n,
            communication_s=sum(s["communication_s"] for s in steps) / n,
            completions=sum(s["completions"] for s in steps),
            completion_tokens=sum(s["completion_tokens"] for s in steps),
            peak_rss_mb=sum(s["peak_rss_mb"] for s in steps), cpu_util=sum(s["cpu_util"] for s in steps) / n,
            rollout_refresh_s=sum(s["rollout_refresh_s"] for s in steps) / n, metrics=dict(steps[0]["metrics"]),
            update_flops=sum(s["update_flops"] for s in steps), prompt_width=max(s["prompt_width"] for s in steps),
            decode_steps=max(s["decode_steps"] for s in steps),
            decode_weight_bytes=sum(s["decode_weight_bytes"] for s in steps)))
        out[-1].metrics["shared_prefix_ran"] = all(s["metrics"].get("shared_prefix_ran") for s in steps)
    return out
