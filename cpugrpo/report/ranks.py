"""The machine report's "Processes x threads: speed and memory of data-parallel ranks": layouts a sweep measured side
by side, and what running P processes costs in memory, from the rows.

Each rank is a whole training process: it holds its own copy of the weights, the optimizer state and the rollout
snapshot; only the batch, and with it the activations, is split between the ranks. So the peak RSS summed over the
ranks grows by about (P - 1) x one rank's weights, optimizer state and snapshot against one process running the same
batch. Measured figures come from trial rows with ``processes`` > 1: ``ranks[i].peak_rss_mb``, each rank's kernel
peak RSS in MiB as runs/dist_worker.py records it (their sum is the job's memory), beside the newest one-process
trial of the same configuration, when there is one. Pure: rows in, lines out.
"""

from __future__ import annotations

import html
import statistics

from ..core.config import BEFORE_THE_KNOB, IDENTITY_KEYS
from ..runs.analysis import peak_rss_mb, samples_per_s, threads_per_process
from .render import inline

TITLE = "Processes x threads: speed and memory of data-parallel ranks"
TEXT = ("Layouts of the same configuration that one sweep measured side by side come first (samples/s: the median "
        "over trials of each trial's median step; peak RSS summed over a job's ranks). "
        "Each data-parallel rank (`--processes` P > 1) is a whole training process with its own copy of the weights, "
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


def _span(xs: list[float], fmt: str) -> str:
    med = statistics.median(xs)
    return f"{med:{fmt}}" + (f" ({min(xs):{fmt}}-{max(xs):{fmt}})" if len(xs) > 1 else "")


def layout_lines(rows: list[dict]) -> list[str]:
    """Processes x threads side by side: for each configuration a sweep measured in more than one layout, one of
    them with several processes, each layout's samples/s (median over its trials of each trial's median step, the
    range over trials; a sweep's re-measurements of noisy trials count as trials) and peak RSS (summed over the
    ranks), and the ratios of each layout to one process.

    >>> def r(i, p, t, sps, rss): return {"status": "ok", "tag": "sweep", "started_at": i, "config": {"model":
    ...     "tiny", "batch_size": 64, "processes": p, "threads": t}, "summary": {"samples_per_s": {"median": sps},
    ...     "peak_rss_mb_os": rss}, "world_size": p, "outside": {"os_peak_rss_mb": rss / p}}
    >>> lines = layout_lines([r(0, 1, 2, 80., 1000), r(1, 2, 1, 60., 1800), r(2, 1, 2, 90., 1100),
    ...                       r(3, 2, 1, 70., 1900)])
    >>> for part in lines[0].replace(", 0.76x", "; 0.76x").split("; "): print(part)
    tiny, batch 64: 1 x 2 85 (80-90) samples/s, 1050 (1000-1100) MiB over 2 trials
    2 x 1 65 (60-70) samples/s, 1850 (1800-1900) MiB over 2 trials
    0.76x the samples/s and 1.76x the memory of 1 x 2.
    """
    ok = [r for r in rows if r.get("status") == "ok" and (r.get("tag") or "").startswith("sweep") and samples_per_s(r)]
    groups: dict[tuple, dict[tuple, list[dict]]] = {}
    for r in ok:
        groups.setdefault(_identity(r), {}).setdefault((_processes(r), threads_per_process(r)), []).append(r)
    out = []
    for layouts in groups.values():
        if len(layouts) < 2 or all(p == 1 for p, _ in layouts):
            continue
        c = _cfg(next(iter(layouts.values()))[0])
        ref = next((k for k in sorted(layouts, key=lambda k: (k[0], k[1] or 0)) if k[0] == 1), None)
        parts, ref_sps, ref_rss = [], None, None
        for (p, t) in sorted(layouts, key=lambda k: (k[0], k[1] or 0)):
            rs = layouts[(p, t)]
            sps = [samples_per_s(r) for r in rs]
            rss = [x for x in (peak_rss_mb(r) for r in rs) if x]
            part = f"{p} x {t} {_span(sps, '.3g')} samples/s"
            part += f", {_span(rss, '.0f')} MiB" if rss else ""
            part += f" over {len(rs)} trial{'s' if len(rs) > 1 else ''}"
            if (p, t) == ref:
                ref_sps, ref_rss = statistics.median(sps), statistics.median(rss) if rss else None
            elif ref_sps:
                part += f", {statistics.median(sps) / ref_sps:.2f}x the samples/s"
                if ref_rss and rss:
                    part += f" and {statistics.median(rss) / ref_rss:.2f}x the memory"
                part += f" of {ref[0]} x {ref[1]}"
            parts.append(part)
        out.append(f"{c.get('model')}, batch {c.get('batch_size')}: " + "; ".join(parts) + ".")
    return out


def section_markdown(lines: list[str]) -> list[str]:
    return [f"## {TITLE}", "", TEXT, ""] + [f"- {x}" for x in lines] + [""]


def section_html(lines: list[str]) -> str:
    return (f"<h2>{html.escape(TITLE)}</h2><p>{inline(TEXT)}</p><ul>"
            + "".join(f"<li>{inline(x)}</li>" for x in lines) + "</ul>")
