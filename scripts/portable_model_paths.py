"""Rewrite stored trial rows that name a cached preset by its path (".../.cache/cpugrpo/models/tiny-v1-seed0-<hash>")
to the form rows are written in now: ``"model": "tiny", "model_cache_key": "tiny-v1-seed0-<hash>"``.

Deterministic and idempotent: every other byte of every row is kept (a row is rewritten only if json.dumps of its
parsed form reproduces the line exactly, so nothing else can change), one row per line, rows in their order.

    python scripts/portable_model_paths.py [results]    # prints what it changed
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

CACHED = re.compile(r"(?:.*[/\\])?models[/\\](?P<key>(?P<preset>[a-z0-9.]+(?:-[a-z0-9.]+)*?)-v\d+-seed\d+-[0-9a-f]+)")


def migrate_row(row: dict) -> dict | None:
    """The row with its cached-model path replaced, or None when it names no cached model by path."""
    m = CACHED.fullmatch(row.get("model") or "") if isinstance(row.get("model"), str) else None
    if not m:
        return None
    out = {}
    for k, v in row.items():
        if k == "model":
            out["model"], out["model_cache_key"] = m.group("preset"), m.group("key")
        elif k != "model_cache_key":
            out[k] = v
    return out


def migrate_file(path: Path) -> int:
    lines = path.read_text(encoding="utf-8").split("\n")
    changed = 0
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        row = json.loads(line)
        if json.dumps(row) != line:
            raise SystemExit(f"{path}:{i + 1}: the row does not round-trip through json.dumps; not touching it")
        new = migrate_row(row)
        if new is not None:
            lines[i] = json.dumps(new)
            changed += 1
    if changed:
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("\n".join(lines), encoding="utf-8")
        tmp.replace(path)
    return changed


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "results")
    for path in sorted(root.glob("*/*.jsonl")):
        n = migrate_file(path)
        if n:
            print(f"{path}: {n} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
