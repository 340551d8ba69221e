"""Rendering helpers shared by the per-machine report and the comparison: tables (Markdown, HTML), PNG figures,
JSON files that may be absent, and probe peaks. Pure apart from ``read_json``."""

from __future__ import annotations

import html
import io
import json
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
