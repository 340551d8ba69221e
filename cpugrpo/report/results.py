"""Load trial rows and asv results into one tidy pandas DataFrame.

One row per (source, machine, commit, benchmark, parameter combination):
``source, machine, commit, date, benchmark, <one column per parameter>, value, ci_low, ci_high, unit, status``
plus, for trials, ``trial_id`` and ``tag``. ``status`` is ok / failed / skipped: asv writes ``null`` for a
benchmark that failed and ``NaN`` for one that raised NotImplementedError (skipped); a failed trial keeps its
reason in ``reason``. Missing or corrupt files raise ``ResultsError`` with a one-line message naming the file.

asv results format version 2: ``result_columns`` names the positions of each entry in ``results[name]`` (trailing
empty columns are dropped); a parametrized benchmark's values are flat over the product of its params, the last
parameter varying fastest; ``benchmarks.json`` holds param names, units and types.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.config import BEFORE_THE_KNOB, IDENTITY_KEYS
from ..core.errors import CpugrpoError

if TYPE_CHECKING:
    import pandas as pd

TRIAL_PARAMS = IDENTITY_KEYS  # one column per knob of a trial's identity (core/config.py)
TRIAL_METRICS = {  # benchmark name -> (path into the row's summary, unit)
    "trial.samples_per_s": ("samples_per_s", "samples/s"),
    "trial.tokens_per_s": ("tokens_per_s", "tokens/s"),
    "trial.step_s": ("wall_s", "s"),
    "trial.rollout_s": ("rollout_s", "s"),
    "trial.scoring_s": ("scoring_s", "s"),
    "trial.update_s": ("update_s", "s"),
    "trial.cpu_util": ("cpu_util", "fraction"),
    "trial.update_flops": ("update_flops", "FLOP"),                    # executed work (train/flops.py)
    "trial.update_flops_per_s": ("update_flops_per_s", "FLOP/s"),
    "trial.decode_tokens_per_s": ("decode_tokens_per_s", "tokens/s"),
    "trial.decode_tokens_per_byte_s": ("decode_tokens_per_byte_s", "tokens per byte/s"),
}


class ResultsError(CpugrpoError, ValueError):
    """A results file is missing or unreadable; the message names it."""


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"results file {path} does not exist: run `asv run` (or the sweep) first, or check the "
                           f"path") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsError(f"results file {path} is not valid JSON ({e}): delete or re-create it") from None


def _status(v) -> str:
    if v is None:
        return "failed"
    if isinstance(v, float) and math.isnan(v):
        return "skipped"
    return "ok"


def _num(v):
    return float(v) if _status(v) == "ok" else float("nan")


def _parse_param(text):
    """asv stores parameter values as their repr: "'fp32'" -> 'fp32', "2" -> 2, "True" -> True."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def load_asv(results_dir: str | Path) -> "pd.DataFrame":
    """Every ``<machine>/<commit>-<env>.json`` under an asv results dir, with ``benchmarks.json`` for names/units."""
    import pandas as pd

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ResultsError(f"asv results directory {results_dir} does not exist: run `asv run` first")
    meta = _read_json(results_dir / "benchmarks.json")
    rows = []
    for path in sorted(results_dir.glob("*/*.json")):
        if path.name == "machine.json":
            continue
        doc = _read_json(path)
        try:
            columns = doc["result_columns"]
            machine = doc["params"]["machine"]
            results = doc["results"]
            if doc.get("version") != 2:
                raise KeyError("version")
        except (KeyError, TypeError) as e:
            raise ResultsError(f"results file {path} is not asv format version 2 (missing {e}): re-run asv "
                               f"0.6 or newer") from None
        for name, entry in results.items():
            rec = dict(zip(columns, entry))
            bench = meta.get(name, {})
            names = bench.get("param_names", [])
            params = rec.get("params") or bench.get("params") or []
            combos = list(itertools.product(*params)) if params else [()]
            values = rec.get("result")
            values = values if isinstance(values, list) else [values] * len(combos)
            lo = rec.get("stats_ci_99_a") or [None] * len(combos)
            hi = rec.get("stats_ci_99_b") or [None] * len(combos)
            for i, combo in enumerate(combos):
                v = values[i] if i < len(values) else None
                row = {"source": "asv", "machine": machine, "commit": doc.get("commit_hash"),
                       "date": pd.to_datetime(doc.get("date"), unit="ms"), "benchmark": name,
                       "value": _num(v), "ci_low": _num(lo[i]) if i < len(lo) else float("nan"),
                       "ci_high": _num(hi[i]) if i < len(hi) else float("nan"),
                       "unit": bench.get("unit"), "status": _status(v), "env": doc.get("env_name")}
                row.update({n: _parse_param(c) for n, c in zip(names, combo)})
                rows.append(row)
    return pd.DataFrame(rows)


def trial_rows_to_records(rows: list[dict]) -> list[dict]:
    """Trial rows (trials.jsonl) -> tidy records, one per metric. Failed trials give one record with status
    'failed' and their reason, so a report can say what is missing."""
    import pandas as pd

    out = []
    for r in rows:
        cfg = r.get("config", {})
        base = {"source": "trial", "machine": r.get("machine_id"),
                "commit": (r.get("environment") or {}).get("commit"),
                "date": pd.to_datetime(r.get("started_at"), unit="s") if r.get("started_at") else pd.NaT,
                "trial_id": r.get("trial_id"), "key": r.get("key"), "tag": r.get("tag"),
                "noisy": bool(r.get("noisy")), "random_weights": r.get("random_weights"),
                "mode": (r.get("spec") or {}).get("mode", "cpugrpo"),
                **{k: cfg.get(k, BEFORE_THE_KNOB.get(k)) for k in TRIAL_PARAMS}}
        if cfg.get("batch_size") and cfg.get("num_generations"):
            base["prompts_per_step"] = cfg["batch_size"] // cfg["num_generations"]
        if r.get("status") != "ok":
            out.append({**base, "benchmark": "trial", "value": float("nan"), "unit": None,
                        "status": r.get("status", "failed"), "reason": r.get("reason")})
            continue
        s = r["summary"]
        for name, (key, unit) in TRIAL_METRICS.items():
            m = s.get(key)
            if m:
                out.append({**base, "benchmark": name, "value": m["median"], "ci_low": m["min"], "ci_high": m["max"],
                            "unit": unit, "status": "ok"})
        for phase, share in s.get("phase_share", {}).items():
            out.append({**base, "benchmark": f"trial.share_{phase}", "value": share, "unit": "fraction",
                        "status": "ok"})
        if s.get("decode_weight_bytes"):
            out.append({**base, "benchmark": "trial.decode_weight_bytes", "value": s["decode_weight_bytes"],
                        "unit": "bytes", "status": "ok"})
        rss = (r.get("outside") or {}).get("os_peak_rss_mb") or s.get("peak_rss_mb_os")
        out.append({**base, "benchmark": "trial.peak_rss_mb", "value": rss, "unit": "MiB", "status": "ok"})
        for prec, acc in (r.get("accuracy_by_precision") or ({r["config"].get("eval_precision", "fp32"):
                                                                 r["accuracy"]} if r.get("accuracy") else {})).items():
            o = acc["overall"]
            out.append({**base, "benchmark": "trial.accuracy", "eval_precision": prec, "value": o["accuracy"],
                        "ci_low": o["ci95"][0], "ci_high": o["ci95"][1], "unit": "fraction", "status": "ok"})
    return out


def read_trials(path: str | Path) -> tuple[list[dict], list[str]]:
    """The raw rows of a ``trials.jsonl`` store (or a results/<machine-id>/ directory holding one) and the lines
    that could not be read."""
    from ..core.store import TrialStore

    path = Path(path)
    if path.is_dir():
        path = path / "trials.jsonl"
    if not path.exists():
        raise ResultsError(f"trial results {path} do not exist: run `cpugrpo sweep` or `cpugrpo tune` first")
    rows, problems = TrialStore(path).rows()
    if not rows and problems:
        raise ResultsError(f"trial results {path} hold no readable rows ({problems[0]})")
    return rows, problems


def unreadable_warning(problems: list[str]) -> str | None:
    """One line for a reader about the store lines that could not be read (``TrialStore.rows``' problems), naming
    the first few; None when there are none."""
    if not problems:
        return None
    n = len(problems)
    shown = "; ".join(problems[:3]) + (f"; and {n - 3} more" if n > 3 else "")
    return (f"Warning: {n} unreadable line{'s' if n > 1 else ''} in the results, skipped (a run killed mid-write "
            f"leaves a torn line); the rows on {'them' if n > 1 else 'it'} are missing from this report: {shown}")


def trials_frame(rows: list[dict], problems: list[str] = ()) -> "pd.DataFrame":
    import pandas as pd

    df = pd.DataFrame(trial_rows_to_records(rows))
    df.attrs["problems"] = list(problems)
    return df


def load_trials(path: str | Path) -> "pd.DataFrame":
    """A ``trials.jsonl`` store (or a results/<machine-id>/ directory holding one) as a tidy DataFrame."""
    return trials_frame(*read_trials(path))

