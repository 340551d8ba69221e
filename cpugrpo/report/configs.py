"""Naming configurations in the report: one readable header per knob, from the knob registry (core/config.py), and
for the rows a table or a figure shows, the knobs whose values differ between them (each row is labelled with those)
and the knobs held fixed (said once, in a title line). Two rows that differ in any knob never look alike.

>>> import pandas as pd
>>> rows = pd.DataFrame([{**{k: 1 for k in KNOBS}, "shared_prefix": True},
...                      {**{k: 1 for k in KNOBS}, "shared_prefix": False}])
>>> labels, fixed = row_labels(rows)
>>> labels
['shared prefix on', 'shared prefix off']
>>> fixed.split(", ")[:3]
['model 1', 'threads 1', 'processes 1']
"""

from __future__ import annotations

import math
import textwrap

from ..core.config import COLUMNS, IDENTITY_KEYS
from ..core.config import KNOBS as REGISTRY

KNOBS = tuple(COLUMNS[k] for k in IDENTITY_KEYS)  # a configuration: one report column per knob of its identity
_FIELD = {COLUMNS[k]: k for k in IDENTITY_KEYS}   # report column -> TrainConfig field


def header(col: str) -> str:
    """The words for a knob's report column: its registry label, else the column name with spaces.

    >>> header("gradient_checkpointing"), header("prompts_per_step"), header("shared_prefix")
    ('checkpointing', 'prompts per step', 'shared prefix')
    """
    k = REGISTRY.get(_FIELD.get(col, col))
    return (k.label if k is not None and k.label else "") or col.replace("_", " ")


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def value(col: str, v) -> str:
    """A knob's value as a reader sees it: on/off for switches, whole numbers without ".0", ``all`` for threads
    left to the default (every usable CPU), ``-`` for a value the row does not hold.

    >>> value("shared_prefix", True), value("threads", 2.0), value("threads", None), value("beta", 0.0)
    ('on', '2', 'all', '0')
    """
    if _missing(v):
        return "all" if col == "threads" else "-"
    if type(v).__name__ in ("bool", "bool_"):  # numpy's booleans too
        return "on" if v else "off"
    if isinstance(v, float) or type(v).__name__.startswith("float"):
        return f"{float(v):g}"
    return str(v)


def item(col: str, v) -> str:
    """``header value``: "threads 2", "shared prefix on"."""
    return f"{header(col)} {value(col, v)}"


def describe(row, cols=KNOBS) -> str:
    """Every knob of ``cols`` for one row (a mapping or a pandas row): the whole configuration in words."""
    return ", ".join(item(c, _get(row, c)) for c in cols)


def _get(row, col):
    try:
        return row[col]
    except (KeyError, IndexError):
        return None


def split(rows, cols=KNOBS, skip=()) -> tuple[list[str], dict]:
    """(the columns of ``cols`` whose values differ between ``rows``, {column: value} of the ones held fixed);
    columns in ``skip`` (already on an axis) are in neither. ``rows``: a DataFrame or a list of mappings."""
    recs = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    vary, fixed = [], {}
    for c in cols:
        if c in skip:
            continue
        seen = {value(c, _get(r, c)) for r in recs}
        if len(seen) > 1:
            vary.append(c)
        elif recs:
            fixed[c] = _get(recs[0], c)
    return vary, fixed


def row_labels(rows, cols=KNOBS, skip=(), sep=", ") -> tuple[list[str], str]:
    """One label per row naming every knob (outside ``skip``) whose value differs between the rows, and the knobs
    held fixed as one line of text."""
    vary, fixed = split(rows, cols, skip)
    recs = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    labels = [sep.join(item(c, _get(r, c)) for c in vary) for r in recs]
    return labels, fixed_text(fixed)


def fixed_text(fixed: dict) -> str:
    return ", ".join(item(c, v) for c, v in fixed.items())


def wrap(text: str, width_in: float, fontsize: float = 8) -> str:
    """``text`` broken into lines that fit ``width_in`` inches of a figure at ``fontsize`` points."""
    return textwrap.fill(text, max(30, int(width_in * 72 / (fontsize * 0.56))))
