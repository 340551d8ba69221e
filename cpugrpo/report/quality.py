"""The machine report's "Training quality": the committed evidence of what GRPO training does to accuracy here.

Two stores under ``results/<machine-id>/``: ``training.jsonl`` (one row per evaluated `cpugrpo train` run,
runs/training.py) and ``curriculum.jsonl`` (one row per arm of a curriculum study, runs/study.py). Every line quotes
the split it was measured on; rows on ``dev`` are where choices were made and are listed as such, never as results.
Pure: rows in, lines out.
"""

from __future__ import annotations

import html
import statistics
from pathlib import Path

from ..core.config import fill_before
from ..core.store import TrialStore
from ..runs.study import fisher_comparison
from .render import inline

TITLE = "Training quality"
TEXT = ("Accuracy before and after GRPO training, greedy exact match on held-out problems, with the paired 95% "
        "interval (Newcombe) of the change over the same items (so it covers which items were drawn, not run-to-run "
        "noise). `test` rows are the reported numbers and `dev` rows are where choices are made. Tiny's recipe "
        "(correctness reward alone, unscaled advantages, KL 0.04, lr 3e-5, 600 steps) was chosen on dev (docs/LOG.md, "
        "2026-12-04); the older 600 steps at lr 3e-5 with TRL's reward scaling were chosen before the split existed, "
        "on dev and test together. Each line is one recipe on one build (the warm start, named by its cache key): "
        "rows written before the preset seed existed trained each seed on its own build. Rows: "
        "`results/<id>/training.jsonl` (`cpugrpo train`, `--seeds`) and `results/<id>/curriculum.jsonl` "
        "(`cpugrpo curriculum`).")


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


RECIPE = ("model", "steps", "learning_rate", "batch_size", "num_iterations", "temperature", "data",
          "format_reward_weight", "scale_rewards", "beta")


def _recipe(row: dict) -> tuple:
    cfg = fill_before(row.get("config") or {})  # knobs added since: the value older rows ran with
    return tuple(str(cfg.get(k)) for k in RECIPE) + (str(row.get("model_cache_key")),)


def _head(c: dict, build: str | None) -> str:
    """The recipe in words: what differs from TRL's reward settings is spelled out."""
    head = f"{c.get('model')}, {c.get('steps')} steps, lr {c.get('learning_rate'):g}"
    if (c.get("num_iterations") or 1) > 1:
        head += f", {c['num_iterations']} updates per rollout"
    if c.get("format_reward_weight", 0.25) == 0:
        head += ", correctness reward alone"
    if c.get("scale_rewards", "group") != "group":
        head += f", advantages scaled: {c['scale_rewards']}"
    if c.get("beta"):
        head += f", KL {c['beta']:g}"
    return head + (f", build {build}" if build else "")


def training_lines(rows: list[dict]) -> list[str]:
    """Per recipe and split: every seed's change with its interval, then the mean over seeds.

    >>> row = lambda s, d, lo: {"config": {"model": "tiny", "steps": 600, "learning_rate": 3e-05}, "seed": s,
    ...     "split": "test", "eval_n": 600, "before": {"overall": {"accuracy": 0.4}},
    ...     "after": {"overall": {"accuracy": 0.4 + d}}, "change": {"difference": d, "ci95": [lo, d + 0.03]}}
    >>> line = training_lines([row(0, 0.10, 0.07), row(1, 0.12, 0.09)])[0]
    >>> line.split(": ")[0]
    'tiny, 600 steps, lr 3e-05, split test (600 problems)'
    >>> line.split("; ")[1]
    'seed 1 40.0% -> 52.0%, +12.0 points [+9.0, +15.0]'
    >>> line.split("; ")[2]
    'mean over 2 seeds +11.0 points, t-interval over the seeds [-1.7, +23.7] (every interval above 0).'
    """
    if not rows:
        return ["No training run recorded here: `cpugrpo train --seeds 0,1,2` writes one row per seed."]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((_recipe(r), r.get("split"), r.get("eval_n")), []).append(r)
    out = []
    for (_, split, n), rs in groups.items():
        head = _head(rs[0].get("config") or {}, rs[0].get("model_cache_key"))
        parts = []
        for r in sorted(rs, key=lambda r: (r.get("seed", 0), r.get("finished_at") or 0)):
            ch = r["change"]
            parts.append(f"seed {r.get('seed')} {100 * r['before']['overall']['accuracy']:.1f}% -> "
                         f"{100 * r['after']['overall']['accuracy']:.1f}%, {_pts(ch['difference'])} points "
                         f"[{_pts(ch['ci95'][0])}, {_pts(ch['ci95'][1])}]")
        diffs = [r["change"]["difference"] for r in rs]
        tail = ""
        if len(rs) > 1:
            above = all(r["change"]["ci95"][0] > 0 for r in rs)
            lo, hi = mean_interval(diffs)
            tail = (f"; mean over {len(rs)} seeds {_pts(statistics.fmean(diffs))} points, t-interval over the seeds "
                    f"[{_pts(lo)}, {_pts(hi)}] ("
                    + ("every interval above 0" if above else "not every interval above 0") + ")")
        role = "" if split == "test" else " (where choices are made: not a result)" if split == "dev" else ""
        out.append(f"{head}, split {split}{role} ({n} problems): " + "; ".join(parts) + tail + ".")
    return out


def mean_interval(values: list[float]) -> tuple[float, float]:
    """95% Student-t interval of the mean over seeds (run-to-run noise, which a paired item interval does not cover).
    Two seeds 0.10 and 0.12: mean 0.11, sd 0.0141, t(0.975, 1) = 12.71, half-width 0.127 (the training_lines example).

    >>> [round(x, 3) for x in mean_interval([0.045, 0.035, 0.0317])]
    [0.02, 0.054]
    """
    from scipy import stats

    m, n = statistics.fmean(values), len(values)
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(values) / n ** 0.5
    return float(m - half), float(m + half)


def recipe_pairs(rows: list[dict]) -> list[str]:
    """Two recipes evaluated on the very same test items from the very same start (same build, seed and
    before-string): their after-accuracies paired, later recipe minus earlier. Dev pairs are left out: they are the
    choices README and LOG already list."""
    from ..core.stats import paired_difference

    seen: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("split") == "test" and r.get("per_item_before") and r.get("per_item_after"):
            seen.setdefault((r.get("model_cache_key"), r.get("seed"), r["per_item_before"]), []).append(r)
    out = []
    for (build, seed, items), rs in seen.items():
        rs = sorted(rs, key=lambda r: r.get("finished_at") or 0)
        for a, b in zip(rs, rs[1:]):
            if _recipe(a) == _recipe(b):
                continue
            d, lo, hi = paired_difference([c == "1" for c in a["per_item_after"]],
                                          [c == "1" for c in b["per_item_after"]])
            out.append(f"Same {len(items)} test items, build {build}, seed {seed}: "
                       f"[{_head(b.get('config') or {}, None)}] - [{_head(a.get('config') or {}, None)}] "
                       f"{_pts(d)} points [{_pts(lo)}, {_pts(hi)}] after training, paired.")
    return out


def curriculum_lines(rows: list[dict]) -> list[str]:
    """Per study and split: each arm's forgetting of the first stage's level, and EWC - no EWC at the end."""
    studies: dict[str, list[dict]] = {}
    for r in rows:
        studies.setdefault(r.get("study_id", "?"), []).append(r)
    out = []
    for sid, arms in studies.items():
        summary = arms[0].get("summary") or {}
        first, steps = summary.get("first_stage", "?"), arms[0].get("stage_steps") or {}
        lr = (arms[0].get("config") or {}).get("learning_rate")
        plan = ", ".join(f"{k} {v}" for k, v in steps.items())
        for split, res in (summary.get("splits") or {}).items():
            bits = []
            for a in res:
                if not a.get("n"):
                    continue
                name = "no EWC" if a["lambda"] == 0 else f"lambda {a['lambda']:g} ({a['fisher']} Fisher)"
                s = (f"{name}: {first} {100 * a['after_first']:.1f}% after its stage -> {100 * a['final']:.1f}% at "
                     f"the end, forgetting {_pts(a['forgetting'])} [{_pts(a['forgetting_ci95'][0])}, "
                     f"{_pts(a['forgetting_ci95'][1])}]")
                if "vs_no_ewc" in a:
                    s += (f", vs no EWC {_pts(a['vs_no_ewc'])} [{_pts(a['vs_no_ewc_ci95'][0])}, "
                          f"{_pts(a['vs_no_ewc_ci95'][1])}]")
                bits.append(s)
            role = " (where lambda is chosen: not a result)" if split == "dev" else ""
            out.append(f"Study {sid} ({plan} steps, lr {lr:g}), split {split}{role}, {res[0].get('n')} {first} "
                       f"problems: " + "; ".join(bits) + ".")
    for c in fisher_comparison(rows):
        line = (f"Sample-based against gold-solution Fisher, each at the lambda its dev rule picks (gold "
                f"{c['lambda']['gold']:g}, sample {c['lambda']['sample']:g}), split {c['split']}, {c['n']} "
                f"{c['first_stage']} problems: {100 * c['final']['gold']:.1f}% against "
                f"{100 * c['final']['sample']:.1f}% at the end, sample - gold {_pts(c['difference'])} points "
                f"[{_pts(c['ci95'][0])}, {_pts(c['ci95'][1])}]")
        if "no_ewc_same_items" in c:
            line += (f"; the two studies' no-EWC arms agree on {100 * c['no_ewc_same_items']:.1f}% of the final "
                     f"{c['split']} items (all levels)")
        out.append(line + ".")
    return out


def gather(results_dir: str | Path, machine_id: str) -> dict:
    base = Path(results_dir) / machine_id
    training, _ = TrialStore(base / "training.jsonl").rows()
    curriculum, _ = TrialStore(base / "curriculum.jsonl").rows()
    return {"training": training_lines(training) + recipe_pairs(training), "curriculum": curriculum_lines(curriculum)}


def section_markdown(data: dict | None) -> list[str]:
    data = data or {"training": training_lines([]), "curriculum": []}
    return ([f"## {TITLE}", "", TEXT, ""] + [f"- {x}" for x in data["training"] + data["curriculum"]] + [""])


def section_html(data: dict | None) -> str:
    data = data or {"training": training_lines([]), "curriculum": []}
    return (f"<h2>{html.escape(TITLE)}</h2><p>{inline(TEXT)}</p><ul>"
            + "".join(f"<li>{inline(x)}</li>" for x in data["training"] + data["curriculum"]) + "</ul>")
