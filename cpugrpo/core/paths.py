"""Paths as results record them: nothing machine-specific in a committed row.

A row, a report or a metrics file says which model ran by preset name and cache key (``tiny``,
``tiny-v1-seed0-e138c849ed``), never by where the cache sits. Text that can still carry a path (a user's model
directory, a failed trial's log tail or reason) goes through ``portable`` first: the home directory becomes ``~`` and
the temp directory ``$TMPDIR``.
"""

from __future__ import annotations

import os
import re
import tempfile


def _prefixes() -> list[tuple[str, str]]:
    out = []
    for path, name in ((os.path.expanduser("~"), "~"), (tempfile.gettempdir(), "$TMPDIR")):
        path = os.path.normpath(path) if path else ""
        if path not in ("", os.sep, "~"):
            out.append((path, name))
    return sorted(out, key=lambda p: -len(p[0]))  # the longer first, should one hold the other


def portable(text: str | None) -> str | None:
    """``text`` with every path under the home or temp directory written from ``~`` / ``$TMPDIR``.

    >>> import os
    >>> portable(os.path.expanduser("~") + "/models/x") == "~/models/x"
    True
    >>> portable("runs/2026-11-21-tiny/model"), portable(None)
    ('runs/2026-11-21-tiny/model', None)
    >>> portable('File "' + os.path.expanduser("~") + '/x.py", line 3') == 'File "~/x.py", line 3'
    True
    """
    if not text:
        return text
    for path, name in _prefixes():
        # the whole directory only: not "/srv/root/x" for a home of "/root", nor "/rooted"
        text = re.sub(r"(?<![\w.~/-])" + re.escape(path) + r"(?![\w.~-])", lambda m: name, text)
    return text
