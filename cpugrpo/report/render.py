"""Rendering helpers shared by the per-machine report and the comparison: tables (Markdown, HTML), text lines as
HTML (code spans, trial ids), long reasons as lists, PNG figures, JSON files that may be absent, and probe peaks.
Pure apart from ``read_json``."""

from __future__ import annotations

import html
import io
import json
import re
from pathlib import Path

from .results import ResultsError


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path} is not valid JSON ({e}): re-create it") from None


def probe_peak(probes, kind, threads, stat: str = "median"):
    from ..hw.probes import peak

    return (peak(probes, kind, threads, stat) or peak(probes, kind, None, stat)) if probes else None


def figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def md_table(rows, header) -> str:
    esc = lambda s: str(s).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def html_table(rows, header) -> str:
    e = html.escape
    return ("<table><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr>" +
            "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows) + "</table>")


TRIAL_ID = re.compile(r"\b[0-9a-f]{12}-\d{10}\b")  # a trial id: key prefix and start time
CSS = ("code{background:#f3f3f3;padding:0 3px;border-radius:3px;font-size:90%}"
       ".id{color:#777;font-size:85%;font-family:monospace}"
       ".scroll{overflow-x:auto;max-width:100%}")


def inline(text) -> str:
    """A line of report text as HTML: escaped, Markdown's `code` spans as <code>, trial ids in a secondary style.

    >>> inline("Use: `cpugrpo train` <now> (trial 0123456789ab-1795278636)")
    'Use: <code>cpugrpo train</code> &lt;now&gt; (trial <span class="id">0123456789ab-1795278636</span>)'
    """
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(text), quote=False))
    return TRIAL_ID.sub(lambda m: f'<span class="id">{m.group(0)}</span>', out)


def _top_level_split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` where it stands outside parentheses."""
    out, depth, start, i = [], 0, 0, 0
    while i < len(text):
        c = text[i]
        depth += (c == "(") - (c == ")")
        if depth == 0 and text.startswith(sep, i):
            out.append(text[start:i])
            start = i = i + len(sep)
            continue
        i += 1
    return out + [text[start:]]


def reason_parts(text: str) -> tuple[str, list[str], list[str]]:
    """A recommendation reason as (lead, items, trial ids): the trial ids of its "(trials ...)" groups taken out, the
    values it lists ("1: 37.6 (37.1-40.4), 2: ...") and any further clauses ("; ...") as items.

    >>> reason_parts("samples/s (median) 1: 37.6 (37.1-40.4), 2: 67.1 (65.2-73.4) (trials a1, b2); tie: 1 and 2")
    ('samples/s (median)', ['1: 37.6 (37.1-40.4)', '2: 67.1 (65.2-73.4)', 'tie: 1 and 2'], ['a1', 'b2'])
    >>> reason_parts("46.5% vs fp32 47.0% -> passed")
    ('46.5% vs fp32 47.0% -> passed', [], [])
    """
    trials = []

    def take(m):
        trials.extend(t.strip() for t in m.group(1).split(",") if t.strip())
        return ""

    rest = re.sub(r"\s*\(trials? ([^()]*)\)", take, str(text))
    first, *clauses = [c.strip() for c in _top_level_split(rest, "; ") if c.strip()] or [""]
    lead, items = first, []
    m = re.match(r"^(.*?\))\s+(.*)$", first)  # "samples/s (how measured) v1: x, v2: y"
    if m and ":" in m.group(2):
        values = [v.strip() for v in _top_level_split(m.group(2), ", ")]
        if all(re.match(r"^[^:()]+: ", v) for v in values):
            lead, items = m.group(1), values
    return lead, items + clauses, trials
