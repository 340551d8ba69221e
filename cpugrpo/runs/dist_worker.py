"""One rank of a data-parallel job: ``python -m cpugrpo.runs.dist_worker JOB``, started by torch's launcher
(runs/launch.py), which sets RANK, LOCAL_RANK, WORLD_SIZE, GROUP_RANK and the rendezvous variables.

Before torch is imported it ties itself to the launcher (``die_with_parent``), pins itself to its CPUs (the job's
plan for its local rank) and sends its output to ``rank-<r>.log`` in the job directory; the thread variables are
already in its environment. It then joins the gloo group and trains:

- rank 0 runs what one process would (``train_and_evaluate`` for ``cpugrpo train``: evaluation before and after,
  the saved model and metrics.json; ``trial._child`` for a trial), the other ranks only load the same model and run
  the same ``run_grpo`` (collectives keep them in step: while rank 0 evaluates, the others wait for it);
- every rank's record is gathered to every rank at the end of training (``train.dist.finish``); rank 0 replaces its
  own step figures with the job's (``merge_steps``: slowest rank's wall time, summed completions) and adds the
  per-rank records; local rank 0 of every node writes ``node-<k>.json`` for its launcher's parent.

A failure writes ``rank-<r>.error`` (the time and a one-line reason) for the parent to report.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    rank, local = int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0))
    from ..hw.runtime import die_with_parent

    die_with_parent(int(os.environ.get("CPUGRPO_AGENT_PID") or os.getppid()))
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, job["cpus"][local])
    job_dir = Path(job["dir"])
    log = os.open(job_dir / f"rank-{rank}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for fd in (1, 2):
        os.dup2(log, fd)
    import warnings

    warnings.filterwarnings("ignore")
    from ..train import dist

    code = 0
    try:
        result = _run(job, rank, local)
        if local == 0:
            from ..core.store import atomic_write_json

            atomic_write_json(job_dir / f"node-{os.environ.get('GROUP_RANK', 0)}.json", result)
    except BaseException as e:  # noqa: BLE001 - every failure is a reason for the parent, then a non-zero exit
        reason = "out of memory (MemoryError)" if isinstance(e, MemoryError) else \
            f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:300]}"
        (job_dir / f"rank-{rank}.error").write_text(json.dumps({"rank": rank, "time": time.time(), "reason": reason}))
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            dist.shutdown()
        except Exception:  # noqa: BLE001 - a dead peer: nothing left to close cleanly
            pass
    return code


def _run(job: dict, rank: int, local: int) -> dict:
    from ..core.config import from_mapping
    from ..hw.runtime import apply_threads
    from ..train import dist

    cfg = from_mapping(job["config"], origin="data-parallel job")
    apply_threads(cfg.threads)
    dist.init(job["pg_timeout_s"])
    batch = cfg.batch_size
    stamp = open(job["fifo"], "w", buffering=1) if local == 0 else None  # noqa: SIM115 - open for the whole run

    def on_step(m):
        if stamp is not None:
            stamp.write(f"step {m.step} {batch}\n")  # every step of the job processes the global batch

    if rank == 0 and job["mode"] == "train":
        from ..train.trainer import train_and_evaluate

        out = train_and_evaluate(cfg, job["run_dir"], progress=False, fitted=True, on_step=on_step)
    elif rank == 0:  # a trial: its child's own code, stamping through the FIFO as through its pipe
        from .trial import TrialSpec, _child

        os.environ["CPUGRPO_STEP_FD"] = str(os.dup(stamp.fileno()))
        spec = TrialSpec(**job["spec"])
        out = _child(spec)
        out["status"] = "ok"
    else:
        _follow(cfg, job, on_step)
        out = {}
    return _job_result(out, job, cfg, warmup=job.get("spec", {}).get("warmup_steps", 1))


def _follow(cfg, job: dict, on_step) -> None:
    """Ranks other than 0: the same model, the same training, nothing else."""
    import tempfile

    from ..hw.runtime import release_freed_memory
    from ..train import models
    from ..train.trainer import run_grpo, weights_dtype

    release_freed_memory(cfg.release_memory)
    loaded = models.load(cfg.model, seed=cfg.preset_seed, progress=False, dtype=weights_dtype(cfg))
    with tempfile.TemporaryDirectory(prefix="cpugrpo-rank-") as out_dir:
        run_grpo(cfg, loaded.model, loaded.tokenizer, out_dir, progress=False, on_step=on_step)


def _job_result(out: dict, job: dict, cfg, warmup: int) -> dict:
    """Rank 0's output with the job's figures (or, on other ranks, the job's figures alone)."""
    from ..train import dist
    from ..train.measure import summarize

    ranks = dist.JOB
    digests = {r["weights_digest"] for r in ranks}
    if "effective" in out:  # what took effect on every rank, beside rank 0's own check
        out["effective"]["flags"] = [*out["effective"].get("flags", []), *_rank_flags(ranks, cfg.threads)]
    if len(digests) != 1:
        raise RuntimeError(f"the ranks ended with different weights ({len(digests)} digests): a bug in the "
                           f"data-parallel update")
    merged = dist.merge_steps(ranks)
    summary = summarize(merged, warmup)
    summary["peak_rss_mb_os"] = sum(r["peak_rss_mb"] for r in ranks)  # every rank's kernel peak, summed
    world = len(ranks)
    out.update({
        "summary": summary, "steps": [s.to_dict() for s in merged],
        "world_size": world, "processes": job["processes"], "threads_per_process": cfg.threads,
        "nnodes": job["nnodes"], "backend": dist.GLOO, "launcher": "torch.distributed.run",
        "ranks": [{"rank": r["rank"], "node_rank": r["node_rank"], "local_rank": r["local_rank"], "host": r["host"],
                   "cpus": r["cpus"], "threads": r["threads"], "phases": dist.rank_phases(r, warmup),
                   "peak_rss_mb": r["peak_rss_mb"],
                   "steps": [{k: s[k] for k in ("step", *dist.PHASES, "completions")} for s in r["steps"]]}
                  for r in ranks],
        "peak_rss_mb_sum": sum(r["peak_rss_mb"] for r in ranks),
        "weights_agree": True, "weights_digest": digests.pop(),
        "distributed_notes": [
            "batch_size is the global batch: each rank generated, scored and differentiated batch_size / world_size "
            "completions; summary and steps are the job's (a step's wall time is its slowest rank's, completions "
            "are summed, phase seconds are the ranks' means, peak RSS is summed)",
            "communication = the gradient all-reduce (blocking gloo, in fp32) + TRL's gathers of rewards and "
            "metrics; it is taken out of update (and of scoring for the reward gather), not added to it",
            "evaluation (when the run evaluates) ran on rank 0 alone, while the other ranks waited; every rank "
            "ended with the same weights (weights_digest)",
        ],
    })
    return out


def _rank_flags(ranks: list, threads: int) -> list[str]:
    """Each rank's threads and CPUs against the request; ranks of one host that share a CPU."""
    flags = [f"rank {r['rank']}: torch ran {r['threads']} threads, {threads} requested" for r in ranks
             if r["threads"] != threads]
    flags += [f"rank {r['rank']}: pinned to {len(r['cpus'])} CPUs for {threads} threads" for r in ranks
              if len(r["cpus"]) != threads]
    for i, a in enumerate(ranks):
        for b in ranks[i + 1:]:
            if a["host"] == b["host"] and set(a["cpus"]) & set(b["cpus"]):
                flags.append(f"ranks {a['rank']} and {b['rank']} share CPUs on {a['host']} (two launches on one "
                             f"machine: pin each with taskset)")
    return flags


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
