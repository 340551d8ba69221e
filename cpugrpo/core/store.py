"""Files that are either fully written or untouched.

- ``atomic_write_text`` / ``atomic_write_json``: write to a temp file, fsync, rename.
- ``TrialStore``: an append-only JSONL of rows (``results/<machine-id>/trials.jsonl``, ``baselines.jsonl``). A row is
  appended with a single ``write`` on an ``O_APPEND`` descriptor under an exclusive lock and fsynced, so a row is
  either fully there or absent; a reader skips (and reports) a torn last line left by a crash mid-write, and reads a
  repeated line once (results merged from two clones of one machine).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results and reports are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


class TrialStore:
    """Append-only JSONL of trial rows (see module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def for_machine(cls, machine_id: str, root: str | Path = "results") -> "TrialStore":
        return cls(Path(root) / machine_id / "trials.jsonl")

    def append(self, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(row, default=str, allow_nan=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            # a torn line from an earlier crash would swallow this row: start on a fresh line
            if os.fstat(fd).st_size and not self._ends_with_newline():
                line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def rows(self) -> tuple[list[dict], list[str]]:
        """(rows, problems): unreadable lines are reported by line number, not fatal. A line identical to an earlier
        one is the same row arriving twice (two clones of one machine's results appended together, README "A fleet
        of machines") and is read once."""
        if not self.path.exists():
            return [], []
        rows, problems, seen = [], [], set()
        for i, line in enumerate(self.path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip() or line in seen:
                continue
            seen.add(line)
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                problems.append(f"{self.path}:{i}: not a complete JSON row (torn write?), skipped")
        return rows, problems

    def done_keys(self) -> set[str]:
        return {r["key"] for r in self.rows()[0] if "key" in r}
