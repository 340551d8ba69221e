"""Data-parallel jobs: ``processes`` ranks per node with ``threads`` threads each, started through torch's launcher
(``python -m torch.distributed.run``) over gloo, and watched from outside like a trial.

The process tree of one node::

    parent (cpugrpo train, or a trial's child)       checks the request, plans CPUs, stamps steps, polls RSS
      `- python -m cpugrpo.runs.launch ...            torch's launcher (elastic agent); dies with the parent
           `- python -m cpugrpo.runs.dist_worker JOB  one per local rank; pins itself to its CPUs, sets its
                                                      threads (both before torch is imported), dies with the agent

- Checks, before anything starts (each a one-line ``LaunchError``, exit code 2 from the CLI): processes x threads
  within the usable CPUs; the global batch (and any micro-batch) divisible over the world's ranks; no
  ``--adaptive-batch``; every rank's estimated memory within the budget; the master address resolvable, one of this
  machine's on node 0 (which hosts the rendezvous) and its port free there, and answering within
  ``--rdzv-timeout`` seconds on the other nodes (a TCP connect, retried until the deadline: a stated wait, never a
  hang).
- CPUs: the usable CPUs split into contiguous blocks of ``threads``, one per local rank; where the hardware profile
  shows several NUMA nodes, ranks go round-robin over the nodes, each block inside one node (``plan_cpus``).
- Rendezvous: one node with no address given runs torch's standalone rendezvous (a free port picked by the
  launcher); otherwise the static rendezvous at ``--master-addr:--master-port`` with ``timeout=--rdzv-timeout``.
- Outside measurement: local rank 0 writes ``step <n> <completions of the whole job>`` to a FIFO after each step; the
  parent stamps each line on its own clock (``outside.samples_per_s`` over the measured steps, warm-up excluded) and
  polls the RSS of every process of the job (``outside.polled_peak_rss_mb_total``: the summed peak).
- Failure: the launcher stops every rank when one fails; each rank writes its reason (``rank-<r>.error``) and log
  (``rank-<r>.log``) in the job directory, and the earliest reason becomes the job's one-line error.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.config import TrainConfig
from ..core.errors import CpugrpoError
from ..core.options import at_least, positive
from ..hw.runtime import PARENT_PID_VAR, affinity, child_env, usable_cpus

AGENT_PID_VAR = "CPUGRPO_AGENT_PID"   # the launcher's pid, which the ranks must not outlive
DEFAULT_PORT = 29500                  # torch's launcher's default master port
PG_TIMEOUT_S = 1800.0                 # a collective waits this long for a peer (rank 0 evaluates while others wait)


class LaunchError(CpugrpoError):
    """A data-parallel job that cannot start (bad request, unreachable master) or whose rank failed."""


@dataclass(frozen=True)
class LaunchOptions:
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str | None = None     # default: 127.0.0.1 (a rendezvous on this machine)
    master_port: int | None = None     # default: a free port (one node), 29500 (several)
    rdzv_timeout_s: float = 60.0       # how long a node waits for the master and for the other nodes
    timeout_s: float | None = None     # the whole job (None: no limit)

    def __post_init__(self):
        at_least("--nnodes", self.nnodes, 1)
        at_least("--node-rank", self.node_rank, 0)
        if self.node_rank >= self.nnodes:
            raise LaunchError(f"--node-rank {self.node_rank} is not below --nnodes {self.nnodes}: number the nodes "
                              f"0..{self.nnodes - 1}")
        if self.master_port is not None and not 1 <= self.master_port <= 65535:
            raise LaunchError(f"--master-port {self.master_port} is not a TCP port: use 1024..65535, the same on "
                              f"every node")
        positive("--rdzv-timeout", self.rdzv_timeout_s, "seconds", 60)

    @property
    def distributed(self) -> bool:
        return self.nnodes > 1

    def port(self) -> int | None:
        """The rendezvous port; None: the launcher's standalone rendezvous picks a free one."""
        if self.master_port is None and self.master_addr is None and self.nnodes == 1:
            return None
        return self.master_port or DEFAULT_PORT


def threads_per_process(cfg: TrainConfig, usable: int | None = None) -> int:
    """``--threads`` as given, else an equal share of the usable CPUs."""
    usable = usable_cpus() if usable is None else usable
    return cfg.threads if cfg.threads is not None else max(1, usable // cfg.processes)


def check(cfg: TrainConfig, opts: LaunchOptions) -> TrainConfig:
    """Refuse what a data-parallel run cannot do, before anything starts; returns ``cfg`` with its threads per
    process filled in."""
    p, usable = cfg.processes, usable_cpus()
    t = threads_per_process(cfg, usable)
    if p * t > usable:
        fits = max(1, usable // p)
        raise LaunchError(f"--processes {p} x --threads {t} needs {p * t} CPUs, but this machine lets the run use "
                          f"{usable}: use --processes {p} --threads {fits}" + (f", or --processes {usable // t} "
                                                                              f"--threads {t}" if usable >= t else ""))
    world = p * opts.nnodes
    if cfg.batch_size % world:
        lo, hi = cfg.batch_size // world * world, (cfg.batch_size // world + 1) * world
        use = " or ".join(str(b) for b in (lo, hi) if b >= cfg.num_generations and b % cfg.num_generations == 0)
        raise LaunchError(f"per-step batch {cfg.batch_size} does not split over {world} ranks (processes x nodes): "
                          f"use a batch divisible by {world}" + (f", e.g. --batch-size {use}" if use else ""))
    if cfg.micro_batch and (cfg.batch_size // world) % cfg.micro_batch:
        raise LaunchError(f"micro_batch {cfg.micro_batch} does not divide each rank's {cfg.batch_size // world} "
                          f"completions: use a divisor of {cfg.batch_size // world}")
    if cfg.adaptive_batch:
        raise LaunchError("--adaptive-batch sizes one process's batch: give --batch-size with --processes > 1")
    _check_memory(cfg, world, p)
    return cfg.replace(threads=t)


def _check_memory(cfg: TrainConfig, world: int, local: int) -> None:
    from ..train.memory import default_budget_mb, estimate_peak_mb, shape_of

    budget = cfg.memory_budget_gb * 1024 if cfg.memory_budget_gb else default_budget_mb()
    per = cfg.batch_size // world
    each = estimate_peak_mb(shape_of(cfg.model), cfg, per)["total"]  # one rank: a whole model, its share of the batch
    if each * local > budget:
        raise LaunchError(f"{local} ranks x about {each / 1024:.1f} GB each (a whole model per rank) is over the "
                          f"{budget / 1024:.1f} GB memory budget: use fewer --processes, a smaller --batch-size, or "
                          f"raise --memory-budget")


def check_master(opts: LaunchOptions) -> None:
    """The rendezvous address, checked from this node (only when an address or several nodes are given)."""
    port = opts.port()
    if port is None:
        return
    addr = opts.master_addr or "127.0.0.1"
    try:
        infos = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise LaunchError(f"--master-addr {addr} does not resolve: give node 0's IP address, or a name this "
                          f"machine resolves") from None
    if opts.node_rank == 0:
        if not any(_bindable(family, sa[0], 0) for family, _, _, _, sa in infos):
            raise LaunchError(f"--master-addr {addr} is not an address of this machine, and node 0 (--node-rank 0) "
                              f"hosts the rendezvous there: run node 0 on {addr}, or give this machine's address")
        if not _bindable(socket.AF_INET, "", port):
            raise LaunchError(f"--master-port {port} is in use on this machine: choose a free port and give the same "
                              f"--master-port to every node")
        return
    deadline = time.monotonic() + opts.rdzv_timeout_s
    while True:
        try:
            with socket.create_connection((addr, port), timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise LaunchError(f"master {addr}:{port} did not answer within {opts.rdzv_timeout_s:g} s: start node "
                                  f"0 first with the same --master-addr and --master-port, check the address and any "
                                  f"firewall, or wait longer with --rdzv-timeout") from None
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _bindable(family, host: str, port: int) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as torch's TCP store binds its port
            s.bind((host, port))
        return True
    except OSError:
        return False


def plan_cpus(cpus: list[int], numa: dict, processes: int, threads: int) -> list[list[int]]:
    """CPUs for each local rank: ``threads`` each. One NUMA node (or none known): contiguous blocks in order. Several:
    rank i on node i mod n, in contiguous blocks inside the node, so ranks spread over the nodes' memory; when the
    nodes' usable CPUs cannot hold whole blocks, contiguous blocks over all of them.

    >>> plan_cpus([0, 1, 2, 3], {}, 2, 2)
    [[0, 1], [2, 3]]
    >>> plan_cpus(list(range(8)), {"0": [0, 1, 2, 3], "1": [4, 5, 6, 7]}, 2, 2)
    [[0, 1], [4, 5]]
    """
    usable = set(cpus)
    nodes = [sorted(usable & set(c)) for _, c in sorted(numa.items(), key=lambda kv: int(kv[0]))] if numa else []
    nodes = [n for n in nodes if n]
    flat = [[c for c in sorted(cpus)][i * threads:(i + 1) * threads] for i in range(processes)]
    if len(nodes) < 2:
        return flat
    taken = [0] * len(nodes)
    out = []
    for i in range(processes):
        k = i % len(nodes)
        if taken[k] + threads > len(nodes[k]):
            k = max(range(len(nodes)), key=lambda j: len(nodes[j]) - taken[j])
            if taken[k] + threads > len(nodes[k]):
                return flat
        out.append(nodes[k][taken[k]:taken[k] + threads])
        taken[k] += threads
    return out


def torchrun_args(opts: LaunchOptions, processes: int) -> list[str]:
    args = ["--nnodes", str(opts.nnodes), "--nproc-per-node", str(processes), "--max-restarts", "0"]
    port = opts.port()
    if port is None:
        return args + ["--standalone"]
    return args + ["--rdzv-backend", "static", "--node-rank", str(opts.node_rank), "--master-addr",
                   opts.master_addr or "127.0.0.1", "--master-port", str(port), "--rdzv-conf",
                   f"timeout={max(1, round(opts.rdzv_timeout_s))}"]


class _Stamps(threading.Thread):
    """Reads local rank 0's ``step <n> <completions>`` lines from the FIFO and stamps them on this clock."""

    def __init__(self, fd: int, batch: int, on_step=None):
        super().__init__(daemon=True)
        self.fd, self.batch, self.on_step, self.stamps = fd, batch, on_step, []

    def run(self):
        with os.fdopen(self.fd, "r") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "step":
                    # every step of the job processes the global batch, whatever share the writing rank had
                    self.stamps.append((time.perf_counter(), int(parts[1]), self.batch))
                    if self.on_step is not None:
                        self.on_step(int(parts[1]), self.batch)


def outside_rate(stamps: list, warmup: int = 1) -> dict:
    """samples/s of the whole job over the measured steps, from the parent's stamps of step ends."""
    if len(stamps) < warmup + 1 or warmup < 1:
        return {}
    done = stamps[warmup:]
    wall = done[-1][0] - stamps[warmup - 1][0]
    return {"measured_wall_s": wall, "samples_per_s": sum(s[2] for s in done) / wall if wall > 0 else None}


def _job_pids(root: int) -> list:
    import psutil

    try:
        parent = psutil.Process(root)
        return [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return []


def _kill_tree(proc: subprocess.Popen, known: dict) -> None:
    """SIGKILL the launcher's group and every process of the job seen so far (the ranks run in sessions of their
    own, and would die with the launcher anyway)."""
    for kill in ([lambda: os.killpg(proc.pid, signal.SIGKILL)] +
                 [lambda pid=pid: os.kill(pid, signal.SIGKILL) for pid in known if pid != proc.pid]):
        try:
            kill()
        except (ProcessLookupError, PermissionError):
            pass


def run_job(cfg: TrainConfig, opts: LaunchOptions, job_dir: Path, mode: str, extra: dict | None = None,
            on_step=None, warmup: int = 1) -> dict:
    """Start this node's ranks of ``cfg`` (already ``check``-ed) through torch's launcher, watch them, and return
    what came back: the job's ``result`` (rank 0's output on node 0, the gathered rank records elsewhere) and the
    ``outside`` measurements. A failed rank, a timeout or a failed rendezvous raises ``LaunchError``."""
    import psutil

    job_dir.mkdir(parents=True, exist_ok=True)
    from ..hw.hardware import detect

    cpus = plan_cpus(affinity(), detect(with_torch=False).numa_nodes, cfg.processes, cfg.threads)
    fifo = job_dir / "steps.fifo"
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    job = {"mode": mode, "config": cfg.to_dict(), "dir": str(job_dir), "cpus": cpus, "fifo": str(fifo),
           "nnodes": opts.nnodes, "processes": cfg.processes, "pg_timeout_s": PG_TIMEOUT_S, **(extra or {})}
    (job_dir / "job.json").write_text(json.dumps(job))
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)   # no writer yet: a blocking open would wait
    keeper = os.open(fifo, os.O_WRONLY)                    # held until the end: no EOF between ranks' opens
    os.set_blocking(reader, True)
    stamps = _Stamps(reader, cfg.batch_size, on_step)
    stamps.start()
    env = child_env(cfg.threads, extra={PARENT_PID_VAR: os.getpid(), "PYTHONUNBUFFERED": "1", "LOGLEVEL": "WARNING"})
    cmd = [sys.executable, "-m", "cpugrpo.runs.launch", *torchrun_args(opts, cfg.processes), "-m",
           "cpugrpo.runs.dist_worker", str(job_dir / "job.json")]
    known, total_peak, killed = {}, 0.0, None
    t0 = time.perf_counter()
    with open(job_dir / "launcher.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            total = 0.0
            for p in _job_pids(proc.pid):
                try:
                    rss = p.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                known[p.pid] = max(known.get(p.pid, 0.0), rss)
                total += rss
            total_peak = max(total_peak, total)
            if opts.timeout_s is not None and time.perf_counter() - t0 > opts.timeout_s:
                killed = f"timeout: still running after {opts.timeout_s:.0f} s"
                _kill_tree(proc, known)
                os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
    except BaseException:  # Ctrl-C or an error here: nothing of the job outlives us
        _kill_tree(proc, known)
        proc.wait()
        raise
    finally:
        wall = time.perf_counter() - t0
        os.close(keeper)
        stamps.join(timeout=5)
        fifo.unlink(missing_ok=True)
    code = os.waitstatus_to_exitcode(status) if not killed else None
    if killed or code != 0:
        raise LaunchError(_failure(job_dir, killed, code, opts))
    result_path = job_dir / f"node-{opts.node_rank}.json"
    if not result_path.exists():
        raise LaunchError(f"the job ended without a result (see {job_dir}/launcher.log)")
    return {"result": json.loads(result_path.read_text()),
            "outside": {"wall_s": wall, "polled_peak_rss_mb_total": total_peak or None,
                        **outside_rate(stamps.stamps, warmup)}}


def _failure(job_dir: Path, killed: str | None, code, opts: LaunchOptions) -> str:
    """One line: the earliest rank's own reason, else what the launcher said last."""
    errors = []
    for f in job_dir.glob("rank-*.error"):
        try:
            errors.append(json.loads(f.read_text()))
        except (OSError, ValueError):
            continue
    if killed:
        return f"{killed} (rank logs in {job_dir})"
    if errors:
        first = min(errors, key=lambda e: e["time"])
        return f"rank {first['rank']} failed: {first['reason']} (rank logs in {job_dir})"
    text = (job_dir / "launcher.log").read_text(errors="replace") if (job_dir / "launcher.log").exists() else ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if any("failed to connect" in ln for ln in lines):  # the master's port answered the check, not the store
        return (f"master {opts.master_addr or '127.0.0.1'}:{opts.port()} did not answer torch's rendezvous within "
                f"{opts.rdzv_timeout_s:g} s: start node 0 first with the same --master-addr and --master-port, check "
                f"the address and any firewall, or wait longer with --rdzv-timeout")
    hint = next((ln for ln in reversed(lines) if "Timeout" in ln or "timed out" in ln.lower()), None)
    if hint:
        return (f"the rendezvous timed out: not every node joined (start each node with the same --nnodes, "
                f"--master-addr and --master-port, and a distinct --node-rank; --rdzv-timeout waits longer): "
                f"{hint[-160:]}")
    last = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else "no output")
    return f"the launcher exited with code {code}: {last[:200]} (log: {job_dir}/launcher.log)"


def train_distributed(cfg: TrainConfig, run_dir: str | Path, opts: LaunchOptions) -> dict:
    """``cpugrpo train --processes P`` (and ``--nnodes``): the run's metrics as rank 0 wrote them (node 0), or this
    node's ranks (other nodes), with the outside clock added; metrics.json is rewritten with it."""
    from ..core.store import atomic_write_json

    cfg = check(cfg, opts)
    check_master(opts)
    run_dir = Path(run_dir)
    got = run_job(cfg, opts, run_dir / "ranks", "train", {"run_dir": str(run_dir)})
    out = {**got["result"], "outside": got["outside"], "node_rank": opts.node_rank}
    if opts.node_rank:
        out["note"] = (f"node {opts.node_rank} of {opts.nnodes}: rank 0, on node 0, evaluates, saves the model and "
                       f"writes metrics.json; this node's ranks are listed here")
    atomic_write_json(run_dir / ("metrics.json" if opts.node_rank == 0 else f"node-{opts.node_rank}.json"), out)
    return out


def trial_job(spec) -> dict:
    """A trial's child under ``processes > 1``: launch the ranks, relay rank 0's step lines to the trial's parent
    (which stamps them), and return rank 0's trial output (``runs/trial.py`` writes it)."""
    cfg = check(spec.train_config(), LaunchOptions())
    fd = int(os.environ.get("CPUGRPO_STEP_FD", "-1"))
    relay = os.fdopen(fd, "w", buffering=1) if fd >= 0 else None

    def on_step(n, completions):
        if relay is not None:
            relay.write(f"step {n} {completions}\n")

    with tempfile.TemporaryDirectory(prefix="cpugrpo-ranks-") as tmp:
        got = run_job(cfg, LaunchOptions(), Path(tmp), "trial", {"spec": spec.to_dict()}, on_step,
                      warmup=spec.warmup_steps)
    return {**got["result"], "outside_ranks": got["outside"]}


def agent_main(argv: list[str]) -> None:
    """The launcher process: torch's own ``torch.distributed.run``, which dies with the process that started it."""
    from ..hw.runtime import die_with_parent

    die_with_parent()
    os.environ[AGENT_PID_VAR] = str(os.getpid())
    from torch.distributed.run import main

    main(argv)


if __name__ == "__main__":
    agent_main(sys.argv[1:])
