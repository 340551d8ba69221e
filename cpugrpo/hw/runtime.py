"""The process's runtime: usable CPUs, the thread and ISA-cap environment, applying threads, the environment snapshot.

One definition of each, used by the CLI, the trial runner, the trainer and the asv suite:

- ``usable_cpus()``: the CPUs this process may run on: its affinity set, capped by the cgroup CPU quota (a container
  limited to 1.5 CPUs of quota on 8 visible cores gets 1). ``hardware.count_usable`` is the rule, shared with the
  hardware profile.
- ``resolve_threads(requested)``: the thread count a run uses (the request, or every usable CPU), refused with a
  fix-it ``ConfigError`` outside 1..usable.
- ``child_env(threads, isa_cap)``: the environment a measuring process must start with. OpenMP sizes its pool and
  oneDNN / MKL / ATen read their ISA caps when torch is imported, so these go into the environment *before* torch
  starts: ``prepare_process`` for this process (the CLI, before its first torch import), ``child_env`` for a child.
- ``apply_threads(threads)``: ``torch.set_num_threads`` once, returning what torch reports back.
- ``environment_snapshot()``: package versions, the thread facts that took effect, the variables above and the git
  commit: recorded in every result row.
- ``die_with_parent(parent_pid)``: a measuring child (and whatever it spawns) is killed when its parent dies, so a
  killed sweep leaves nothing running that competes for the CPUs with the next one.
"""

from __future__ import annotations

import os

from ..core.errors import ConfigError
from .hardware import ISA_CAPS, cgroup_cpu_quota, count_usable

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
ISA_VARS = ("ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "ATEN_CPU_CAPABILITY")
QUIET_ENV = {"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
             "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1"}


def affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))


def usable_cpus() -> int:
    """CPUs this process may use: affinity, capped by the cgroup quota. A thread count must not exceed it."""
    return count_usable(len(affinity()), cgroup_cpu_quota())


def resolve_threads(requested: int | None, flag: str = "--threads") -> int:
    """The thread count to run with: ``requested``, or every usable CPU when None; outside 1..usable is refused."""
    n = usable_cpus()
    threads = n if requested is None else requested
    if not 1 <= threads <= n:
        raise ConfigError(f"threads {threads} is outside 1..{n} (the usable CPUs of this process): use {flag} 1..{n}")
    return threads


def isa_cap_env(cap: str | None) -> dict[str, str]:
    """The variables that cap oneDNN, MKL and ATen at a lesser ISA (read when torch is imported)."""
    if not cap:
        return {}
    if cap not in ISA_CAPS:
        raise ConfigError(f"unknown ISA cap {cap!r}: use --isa-cap with one of {', '.join(ISA_CAPS)}")
    c = ISA_CAPS[cap]
    return {"ONEDNN_MAX_CPU_ISA": c["onednn"], "MKL_ENABLE_INSTRUCTIONS": c["mkl"], "ATEN_CPU_CAPABILITY": c["aten"]}


def child_env(threads: int, isa_cap: str | None = None, extra: dict | None = None, base: dict | None = None) -> dict:
    """The environment of a measuring child process: ``base`` (default: this process's) with the thread count, any
    ISA cap, quiet offline libraries, and ``extra`` on top."""
    env = dict(os.environ if base is None else base)
    env.update({var: str(threads) for var in THREAD_VARS})
    env.update(isa_cap_env(isa_cap))
    env.update(QUIET_ENV)
    env["PYTHONWARNINGS"] = "ignore"
    env.update({k: str(v) for k, v in (extra or {}).items()})
    return env


def prepare_process(threads: int | None = None, isa_cap: str | None = None) -> None:
    """Put the thread count and ISA cap into this process's environment; call before torch is imported."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    if threads is not None:
        os.environ.update({var: str(threads) for var in THREAD_VARS})
    os.environ.update(isa_cap_env(isa_cap))
    git_commit()  # taken now, before any work: a row written at the end names the code that started, not later edits


def apply_threads(threads: int) -> int:
    """Set torch's intra-op thread count; returns what torch reports back. ``prepare_process`` / ``child_env`` have
    already put the count into OMP_NUM_THREADS, so OpenMP's pool is created at that size rather than resized."""
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
PARENT_PID_VAR = "CPUGRPO_PARENT_PID"  # set by the parent of a measuring child: the pid it must outlive


MMAP_THRESHOLD = 128 * 1024  # bytes: glibc's initial threshold, held fixed


def release_freed_memory(on: bool) -> bool:
    """With ``on``: glibc serves every allocation of 128 KiB or more by its own mmap and unmaps it on free, so a freed
    activation or optimizer temporary goes back to the OS at once (``mallopt(M_MMAP_THRESHOLD)``, which also turns off
    glibc's adaptive threshold: after freeing a large block glibc otherwise raises the threshold up to 32 MiB and
    keeps later blocks of that size in its heap, where the process's resident size only grows). Measured at the
    0.5B shape: peak RSS 3.1 GB instead of 4.2 GB for the same run (docs/LOG.md). Returns whether it took effect
    (False off glibc, or when ``on`` is False: the allocator is then left as it is)."""
    if not on:
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, MMAP_THRESHOLD))  # M_MMAP_THRESHOLD = -3 (malloc.h)
    except (OSError, AttributeError):
        return False


def _set_pdeathsig(sig: int) -> bool:
    """Linux: ask the kernel to send ``sig`` to this process when the thread that started it exits."""
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Make this process, and every process in its process group, die when its parent dies (Linux; a no-op returning
    False elsewhere). Call it first thing in a child started with ``start_new_session=True`` (its own group), before
    torch is imported and before any thread is started (it forks).

    - this process: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``. The kernel sends the signal when the parent *thread* that
      started us exits, so the parent must wait for the child on the thread that started it (``run_trial`` does).
      The parent may have died before the prctl: if ``os.getppid()`` is no longer ``parent_pid`` (default: the
      ``CPUGRPO_PARENT_PID`` variable, else the parent at the time of the call), exit at once.
    - the group: a parent-death signal is not inherited by our own children (a library's worker processes), so a
      small forked guard process waits, idle, for *our* death (its own parent-death signal, SIGTERM) and then
      SIGKILLs the whole process group, itself included. It also clears up any leftover when we exit normally.
      Only when this process leads its own group: a group shared with the caller is never killed.
    """
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return False
    if parent_pid is None:
        parent_pid = int(os.environ.get(PARENT_PID_VAR) or os.getppid())
    if not _set_pdeathsig(signal.SIGKILL):
        return False  # no prctl (an unusual libc): run unguarded
    if os.getppid() != parent_pid:  # the parent died before the prctl: nobody is waiting for us
        os._exit(1)
    me = os.getpid()
    if os.getpgrp() != me:  # not our own group (not started with start_new_session): never kill someone else's
        return True
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # pending until sigwait: no race with the prctl
    if os.fork() == 0:  # the group's guard
        try:
            os.closerange(3, 1 << 16)  # no pipe of ours (the step pipe) stays open in here
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            if _set_pdeathsig(signal.SIGTERM):
                if os.getppid() == me:  # else we are already orphaned
                    signal.sigwait({signal.SIGTERM})
                os.killpg(me, signal.SIGKILL)
        finally:
            os._exit(0)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    return True


_COMMIT_AT_START: dict = {}
DATA_DIRS = ("results", "profiles", "reports")  # measurements, not code: rows appended there do not make code dirty


def git_commit(cwd: str | None = None) -> str | None:
    """The code a measurement ran: ``<sha>`` for a clean tree, ``<sha>+diff.<12 hex>`` for a dirty one, where the
    suffix is the SHA-1 of ``git diff HEAD`` (staged and unstaged changes to tracked files, binary ones included), so
    the same edits always give the same id and a row can be tied to the code that produced it. Untracked files are
    ignored: a new file that is not yet ``git add``-ed does not show in the id, and so are changes under ``results/``,
    ``profiles/`` and ``reports/`` (rows, not code). ``<sha>+diff.unknown`` when the diff
    cannot be taken; None outside a git checkout. Without ``cwd``: this package's own checkout, as it was at the first
    call (``prepare_process`` makes one at the start of every command), so a row written at the end of a long run names
    the code it started with."""
    if cwd is None:  # this process's own code: the id taken at its first call (prepare_process, at start)
        if "id" not in _COMMIT_AT_START:
            _COMMIT_AT_START["id"] = git_commit(os.path.dirname(os.path.abspath(__file__)))
        return _COMMIT_AT_START["id"]
    import hashlib
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=cwd)
        sha = out.stdout.strip()
        if out.returncode != 0 or not sha:
            return None
        # plain diff bytes: no external diff tool, no textconv filter, no colour, whatever the user's git config says
        diff = subprocess.run(["git", "diff", "HEAD", "--binary", "--no-ext-diff", "--no-textconv", "--no-color",
                               "--", ":/", *(f":(exclude,top){d}" for d in DATA_DIRS)],
                              capture_output=True, timeout=30, cwd=cwd)
        if diff.returncode != 0:
            return f"{sha}+diff.unknown"
        return f"{sha}+diff.{hashlib.sha1(diff.stdout).hexdigest()[:12]}" if diff.stdout else sha
    except (OSError, subprocess.SubprocessError):
        return None


def environment_snapshot() -> dict:
    """Package versions, thread settings that took effect, and the commit: attached to every result."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    import torch

    versions = {}
    for pkg in ("cpugrpo", "torch", "transformers", "trl", "accelerate", "datasets", "tokenizers"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": platform.python_version(),
        "versions": versions,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "env": {k: os.environ.get(k) for k in THREAD_VARS + ISA_VARS if os.environ.get(k) is not None},
        "commit": git_commit(),
    }
