"""Checks shared by the commands' options dataclasses; every failure is a ``ConfigError`` naming the flag and the fix.

Each command has one frozen options dataclass next to the library function that consumes it (``TuneOptions`` in
runs/tune.py, ``SweepOptions`` in runs/sweep.py, ``EvalOptions`` in train/evaluate.py, ...). It validates itself in
``__post_init__`` with these helpers, so a bad value is refused the same way from the command line and from Python:

    "--pairs must be at least 1, got 0: use --pairs 1 or more"
"""

from __future__ import annotations

import math

from .errors import ConfigError


def at_least(flag: str, value, low: int) -> None:
    """``value`` is an integer >= ``low`` (None is left to the caller: "not given")."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{flag} must be an integer, got {value!r}: use {flag} {low} or more")
    if value < low:
        raise ConfigError(f"{flag} must be at least {low}, got {value}: use {flag} {low} or more")


def positive(flag: str, value, unit: str, example) -> None:
    """``value`` is a finite number > 0 (e.g. a budget in GB or minutes)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        unit = f" {unit}" if unit else ""
        raise ConfigError(f"{flag} must be > 0{unit}, got {value}: use e.g. {flag} {example}")


def one_of(flag: str, value, choices, what: str) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {what} {value!r}: use {flag} {', '.join(map(str, choices))}")


def is_bool(flag: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{flag} must be true or false, got {value!r}: pass a boolean")


def plain_name(flag: str, value: str | None, what: str, fix: str) -> None:
    """A name used as one folder (a machine id, an output name): no path separators, not empty, not . or .."""
    if value is None:
        return
    if not isinstance(value, str) or not value.strip() or value in (".", "..") or "/" in value or "\\" in value:
        raise ConfigError(f"{flag} must be {what} (one folder name), got {value!r}: {fix}")


def csv_items(flag: str, value, example: str) -> tuple[str, ...]:
    """``"a,b"`` (or an already split sequence) as a tuple of non-empty stripped items."""
    items = tuple(x.strip() for x in value.split(",")) if isinstance(value, str) else tuple(value)
    if not items or any(x == "" for x in items):
        raise ConfigError(f"{flag} must be a comma-separated list like {example}, got {value!r}: use {flag} {example}")
    return items


def csv_ints(flag: str, value, example: str) -> tuple[int, ...]:
    items = csv_items(flag, value, example)
    try:
        return tuple(int(x) for x in items)
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} must be comma-separated integers like {example}, got {value!r}: "
                          f"use {flag} {example}") from None


def normalize(obj, name: str, value) -> None:
    """Set a field of a frozen dataclass from its own ``__post_init__`` (a parsed or defaulted value)."""
    object.__setattr__(obj, name, value)
