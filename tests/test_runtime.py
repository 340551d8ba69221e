"""hw/runtime.py: the thread count a run may use, and the commit id recorded with every measurement (it ties a
dirty tree to its exact diff)."""

import platform
import re
import subprocess
import sys

import pytest

from cpugrpo.core.errors import ConfigError
from cpugrpo.hw.runtime import git_commit, resolve_threads, usable_cpus


def _git(repo, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_git_commit_is_the_sha_when_clean_and_names_the_diff_when_dirty(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    _git(repo, "add", "a.py")
    _git(repo, "commit", "-q", "-m", "first")
    sha = _git(repo, "rev-parse", "HEAD")
    assert git_commit(str(repo)) == sha  # clean

    (repo / "new.txt").write_text("untracked\n")
    assert git_commit(str(repo)) == sha  # untracked files are ignored (documented)

    (repo / "a.py").write_text("x = 2\n")
    dirty = git_commit(str(repo))
    assert re.fullmatch(re.escape(sha) + r"\+diff\.[0-9a-f]{12}", dirty), dirty
    assert git_commit(str(repo)) == dirty  # the same diff, the same id
    (repo / "sub").mkdir()
    assert git_commit(str(repo / "sub")) == dirty  # from anywhere in the tree

    (repo / "a.py").write_text("x = 3\n")
    other = git_commit(str(repo))
    assert other.startswith(sha + "+diff.") and other != dirty  # another diff, another id
    _git(repo, "add", "a.py")
    assert git_commit(str(repo)) == other  # staged or not: the same change against HEAD

    (repo / "a.py").write_text("x = 2\n")
    assert git_commit(str(repo)) == dirty  # back to the first edit: its id again
    (repo / "a.py").write_text("x = 1\n")
    assert git_commit(str(repo)) == sha  # back to HEAD's content: clean again

    (repo / "results" / "m").mkdir(parents=True)
    (repo / "results" / "m" / "trials.jsonl").write_text("{}\n")
    _git(repo, "add", "results", "a.py")
    _git(repo, "commit", "-q", "-m", "rows")
    sha = _git(repo, "rev-parse", "HEAD")
    (repo / "results" / "m" / "trials.jsonl").write_text("{}\n{}\n")  # a row appended: data, not code
    assert git_commit(str(repo / "sub")) == sha


def test_git_commit_outside_a_checkout_is_none(tmp_path):
    assert git_commit(str(tmp_path)) is None


def test_threads_above_usable_cpus():
    with pytest.raises(ConfigError, match="usable CPUs"):
        resolve_threads(usable_cpus() + 1)
    assert resolve_threads(usable_cpus()) == usable_cpus() == resolve_threads(None)


_CHILD = """
import os, subprocess, sys, time
from cpugrpo.hw.runtime import die_with_parent
die_with_parent(int(sys.argv[2]))
grandchild = subprocess.Popen(["sleep", "60"])  # something the child spawns (a library's worker process)
open(sys.argv[1], "w").write(f"{os.getpid()} {grandchild.pid}")
time.sleep(60)
"""

_PARENT = """
import subprocess, sys, os, time
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(os.getpid())], start_new_session=True)
time.sleep(60)
"""


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_die_with_parent_takes_the_child_and_its_group_along(tmp_path):
    """SIGKILL the parent: the child (parent-death signal) and the child's own child (the group guard) go too."""
    import os
    import signal
    import sys
    import time

    pids_file = tmp_path / "pids"
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, _CHILD, str(pids_file)])
    pids = []
    try:
        deadline = time.monotonic() + 20
        while not (pids_file.exists() and pids_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        pids = [int(x) for x in pids_file.read_text().split()]
        assert all(_alive(p) for p in pids)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 2
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [p for p in pids if _alive(p)], "the child or its own child outlived the parent"
    finally:
        parent.kill()
        parent.wait()
        for p in pids:
            if _alive(p):
                os.kill(p, signal.SIGKILL)


def test_die_with_parent_leaves_a_shared_group_alone(tmp_path):
    """Not the leader of its own group (no start_new_session): no guard, the caller's group is never killed."""
    import sys

    code = ("import os; from cpugrpo.hw.runtime import die_with_parent; "
            "print(die_with_parent(os.getppid()), os.getpgrp() == os.getpid())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.split() == ["True", "False"], out.stderr


_MALLOC_PROBE = r"""
import ctypes, sys
from cpugrpo.hw.runtime import release_freed_memory

took = release_freed_memory(sys.argv[1] == "on")
libc = ctypes.CDLL("libc.so.6")
fields = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()
libc.mallinfo2.restype = type("MallInfo2", (ctypes.Structure,), {"_fields_": [(f, ctypes.c_size_t) for f in fields]})
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
size = 4 << 20
libc.free(libc.malloc(size))  # mmapped (over 128 KiB); freeing it raises glibc's adaptive threshold past 4 MiB
before = libc.mallinfo2().hblkhd
p = libc.malloc(size)
mmapped = libc.mallinfo2().hblkhd - before  # bytes of the second block that glibc mmapped (0: from its heap)
libc.free(p)
print(took, mmapped >= size)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt(M_MMAP_THRESHOLD) is glibc's")
def test_release_freed_memory_pins_glibcs_mmap_threshold():
    from cpugrpo.hw.runtime import release_freed_memory

    assert release_freed_memory(False) is False  # off: the allocator is left alone
    # in a child, so this test process keeps its allocator: on, a freed 4 MiB block does not raise the threshold
    # and the next 4 MiB block is mmapped again (unmapped on free); off, glibc serves it from its heap
    out = {arg: subprocess.run([sys.executable, "-c", _MALLOC_PROBE, arg], capture_output=True, text=True,
                               check=True).stdout.split() for arg in ("on", "off")}
    assert out == {"on": ["True", "True"], "off": ["False", "False"]}
