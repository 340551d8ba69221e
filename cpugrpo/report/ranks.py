"""The machine report's "Memory of data-parallel ranks": what running P processes costs in memory, from the rows.

Each rank is a whole training process: it holds its own copy of the weights, the optimizer state and the rollout
snapshot; only the batch, and with it the activations, is split between the ranks. So the peak RSS summed over the
ranks grows by about (P - 1) x one rank's weights, optimizer state and snapshot against one process running the same
batch. Measured figures come from trial rows with ``processes`` > 1: ``ranks[i].peak_rss_mb``, each rank's kernel
peak RSS in MiB as runs/dist_worker.py records it (their sum is the job's memory), beside the newest one-process
trial of the same configuration, when there is one. Pure: rows in, lines out.
"""

from __future__ import annotations

import html

from ..core.config import BEFORE_THE_KNOB, IDENTITY_KEYS
from .render import inline

TITLE = "Memory of data-parallel ranks"
TEXT = ("Each data-parallel rank (`--processes` P > 1) is a whole training process with its own copy of the weights, "
        "the optimizer state and the rollout snapshot; only the batch, and with it the activations, is split "
        "between the ranks. The peak RSS summed over the ranks therefore grows by about (P - 1) x one rank's "
        "weights, optimizer state and snapshot against one process running the same batch.")
_LAYOUT = ("processes", "threads")


def _cfg(row: dict) -> dict:
    return row.get("config") or {}


def _processes(row: dict) -> int:
    return int(_cfg(row).get("processes") or BEFORE_THE_KNOB.get("processes", 1))


def _identity(row: dict) -> tuple:
    """The configuration apart from how its CPUs are laid out (rows from before a knob: its ``before`` value)."""
    c = _cfg(row)
    return tuple((k, str(c.get(k, BEFORE_THE_KNOB.get(k)))) for k in IDENTITY_KEYS if k not in _LAYOUT)


def _rss(row: dict) -> float | None:
    out = row.get("outside") or {}
    return out.get("os_peak_rss_mb") or (row.get("summary") or {}).get("peak_rss_mb_os")


def memory_lines(rows: list[dict]) -> list[str]:
    """One line per multi-process configuration measured (its newest ok trial): each rank's peak RSS, their sum, and
    one process of the same configuration for comparison; or one line saying none was measured.

    >>> memory_lines([{"status": "ok", "config": {"model": "tiny", "threads": 2}}])[0][:45]
    'None measured here: every trial on this machi'
    """
    ok = sorted((r for r in rows if r.get("status") == "ok"), key=lambda r: r.get("started_at") or 0)
    multi = {(_identity(r), _processes(r), _cfg(r).get("threads")): r for r in ok if _processes(r) > 1}
    if not multi:
        return ["None measured here: every trial on this machine ran one process."]
    single = {_identity(r): r for r in ok if _processes(r) == 1}
    out = []
    for (ident, p, t), r in multi.items():
        ranks = [x["peak_rss_mb"] for x in r.get("ranks") or [] if x.get("peak_rss_mb")]
        c = _cfg(r)
        head = f"{c.get('model')}, {p} processes x {t} threads, batch {c.get('batch_size')} (trial {r['trial_id']}): "
        if ranks:
            head += (f"each rank {min(ranks):.0f}-{max(ranks):.0f} MiB, summed over the {len(ranks)} ranks "
                     f"{sum(ranks):.0f} MiB")
        else:
            head += f"per-rank peaks not recorded; the trial's peak RSS {_rss(r) or 0:.0f} MiB"
        one = single.get(ident)
        if one is not None and _rss(one):
            head += f"; one process, same configuration: {_rss(one):.0f} MiB (trial {one['trial_id']})"
            if ranks:
                head += f", so the ranks together hold {sum(ranks) - _rss(one):+.0f} MiB"
        out.append(head + ".")
    return out


def section_markdown(lines: list[str]) -> list[str]:
    return [f"## {TITLE}", "", TEXT, ""] + [f"- {x}" for x in lines] + [""]


def section_html(lines: list[str]) -> str:
    return (f"<h2>{html.escape(TITLE)}</h2><p>{inline(TEXT)}</p><ul>"
            + "".join(f"<li>{inline(x)}</li>" for x in lines) + "</ul>")
