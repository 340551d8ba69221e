"""What a knob is: the metadata every ``TrainConfig`` field carries, from which the rest of the package derives.

A knob is declared once, as a field of ``TrainConfig`` (core/config.py) made with ``knob(default, ...)``. From its
metadata come: the ``train``/``curriculum`` command-line flag (name, type, help, choices in the help), the value check
against ``choices``, the sweep axis names, the tuner's axes and the values it tries, a trial's identity (the report's
configuration columns, the grouping of repeated trials, comparisons across machines), the keys a recommendation
writes, the work both sides of a TRL baseline share, and the asv suite's parameters. Adding a knob means adding the
field here and writing the code where the knob acts; nothing else lists knobs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

_UNSET = object()


@dataclass(frozen=True)
class Knob:
    help: str
    flag: str | None = ""          # command-line flag; "" derives --kebab-case from the name, None: no flag
    choices: tuple = ()            # allowed values (checked by TrainConfig, listed in the flag's help)
    axis: int | None = None        # position among the tuner's axes (coordinate descent order); None: not tuned
    tune_values: tuple = ()        # values the tuner tries (default: ``choices``, or both booleans)
    quick_values: tuple = ()       # the subset ``tune --quick`` tries (default: all of ``tune_values``)
    bench_values: tuple = ()       # the values of its asv parameter (default: as ``tune_values``)
    needs: dict = dataclasses.field(default_factory=dict)  # value -> CPU feature group it needs ("bf16")
    identity: bool = False         # part of what a trial measured: report columns, grouping, recommendations
    column: str = ""               # the report's column for it (default: the field name)
    label: str = ""                # words for it in tables and figure legends (default: the name with spaces)
    workload: bool = False         # defines the work itself: every side of a baseline shares it
    bench: bool = False            # an asv parameter of the GRPO benchmarks
    before: Any = _UNSET           # the value rows written before the knob existed ran with; a trial's key leaves
                                   # the knob out at this value, so stored rows keep their keys (resume still works)
    keyed_at_before: bool = False  # ... except knobs whose rows were keyed with it before this rule (shared_prefix)
    before_from: str = ""          # rows written before the knob existed ran with this other knob's value (the
                                   # preset seed was the seed): a key leaves the knob out while the two are equal
    lean: Any = _UNSET             # the value a tuner starts from when the defaults do not fit the memory budget
    default_if: tuple = ()         # ((other knob, its value, this knob's default then), ...): a default that depends
                                   # on another knob's value, applied by ``resolve_config`` when neither a config
                                   # file nor a flag set this knob (the first match wins)

    def flag_name(self, name: str) -> str | None:
        if self.flag is None:
            return None
        return self.flag or "--" + name.replace("_", "-")

    def text(self, name: str) -> str:
        return self.label or name.replace("_", " ")


def knob(default, help: str, **meta) -> dataclasses.Field:
    """A ``TrainConfig`` field with its knob metadata (see ``Knob``)."""
    return dataclasses.field(default=default, metadata={"knob": Knob(help=help, **meta)})


def registry(cls) -> dict[str, Knob]:
    """name -> Knob for every field of the dataclass ``cls``, in declaration order."""
    return {f.name: f.metadata["knob"] for f in dataclasses.fields(cls) if "knob" in f.metadata}


def field_type(cls, name: str) -> str:
    """The field's annotation as written (``from __future__ import annotations`` keeps it a string)."""
    return next(str(f.type) for f in dataclasses.fields(cls) if f.name == name)
