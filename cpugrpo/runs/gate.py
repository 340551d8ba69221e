"""The quality gate: does a configuration's arithmetic (update and rollout precision, optimizer, adapter) cost
accuracy? The tiny preset is trained the gate's budget once at the reference (fp32 update and rollout, fused AdamW,
full-parameter), which also evaluates the untrained start, and once per candidate gate key; each candidate's gain is
judged against the reference's on the same held-out items (``analysis.quality_gate``: non-inferiority with power).
Used by the tuner (``tune.gate``) and by `cpugrpo gate` for one configuration (``gate_one``)."""

from __future__ import annotations

from ..core.config import TINY_RECIPE, TrainConfig
from . import analysis

REFERENCE = analysis.GATE_REFERENCE  # (update precision, rollout precision) every candidate is gated against


def gate_config(opts, pair: tuple, threads: int | None) -> TrainConfig:
    """The gate's training run for ``pair`` (a gate key: the precision pair, then the optimizer when it is not the
    default): the tiny preset, the gate's budget, tiny's training recipe (``TINY_RECIPE``: the reward settings and KL
    anchor chosen on dev, under which tiny learns), everything else at its default."""
    extra = {"optimizer": pair[2]} if len(pair) > 2 else {}
    if len(pair) > 3:
        extra["adapter"] = pair[3]
    return TrainConfig(model="tiny", threads=threads, update_precision=pair[0], rollout_precision=pair[1],
                       eval_n=opts.eval_n, eval_split="dev", max_completion_length=opts.max_completion_length,
                       learning_rate=opts.gate_learning_rate, batch_size=opts.gate_batch_size,
                       num_generations=opts.num_generations, steps=opts.quality_steps, **TINY_RECIPE, **extra)


def gate_trial(opts, pair: tuple[str, str], threads: int | None, store, machine_id, budget_mb,
               before: bool = False, learning_rate: float | None = None) -> dict:
    """Train the tiny preset the gate's budget at ``pair``'s precisions and evaluate it on the gate's held-out items
    (``before``: also before training, the start every pair shares). Tagged "tune-gate": not a speed trial."""
    from .trial import TrialSpec, run_trial

    cfg = gate_config(opts, pair, threads)
    if learning_rate:
        cfg = cfg.replace(learning_rate=learning_rate)
    spec = TrialSpec(config=cfg.to_dict(), measured_steps=opts.quality_steps - 1, evaluate=True,
                     evaluate_before=before, tag="tune-gate", memory_limit_mb=budget_mb, timeout_s=1800)
    row = run_trial(spec, machine_id)
    store.append(row)
    return row


def _pair(row: dict) -> tuple:
    return analysis.gate_key(row["point"])


def baseline_gain(base: dict) -> dict:
    """Did the fp32 gate trial measurably learn? ``analysis.gain`` on its before/after records, with a line of
    text; ``learned`` False (and why) when the trial failed or has no record from before training."""
    if base.get("status") != "ok":
        return {"learned": False, "text": f"the fp32 gate trial failed ({base.get('reason')})"}
    if not (base.get("accuracy_before") or {}).get("per_item") or not base.get("accuracy", {}).get("per_item"):
        return {"learned": False, "text": "the fp32 gate trial has no per-item record before and after training"}
    g = analysis.gain(base["accuracy_before"]["per_item"], base["accuracy"]["per_item"])
    steps = len(base.get("steps", []))
    g["text"] = (f"fp32 {g['before']:.1%} -> {g['after']:.1%} on the same {g['n']} held-out items after {steps} GRPO "
                 f"steps, gain {g['difference']:+.1%} [{g['ci95'][0]:+.1%}, {g['ci95'][1]:+.1%}] (paired 95%)"
                 + ("" if g["learned"] else ": fp32 did not measurably learn in the gate's budget"))
    return g


def gate(candidates: list[dict], run_gate, max_gates: int, over_time=lambda: False, log=print):
    """The quality gate over ``candidates`` (speed rows, the preferred first): the first whose precision pair
    passes is chosen; fp32/fp32 needs no gate (it is the reference) and ends the walk. ``run_gate(pair, before)``
    runs one gate trial; the fp32 one (``before`` True) runs first. When fp32 did not measurably learn, no candidate
    is trained: each is inconclusive, none counts as passed, and the walk falls back to the first fp32/fp32
    candidate. Returns (chosen row or None, verdicts per pair, gate rows per pair, the fp32 gain)."""
    gates = {REFERENCE: run_gate(REFERENCE, True)}
    base = baseline_gain(gates[REFERENCE])
    log(f"  gate fp32 update / fp32 rollout: {base['text']}")
    verdicts: dict = {}
    for cand in candidates:
        pair = _pair(cand)
        if pair == REFERENCE:
            fallback = [p for p, v in verdicts.items() if v["verdict"] == "inconclusive"]
            text = ("fp32 update / fp32 rollout is the reference: " + base["text"] if base["learned"] else
                    f"fp32 update / fp32 rollout as the fallback: the gate was inconclusive ({base['text']}), so "
                    f"{'no reduced-precision pair counts as passed' if fallback else 'it is the only safe pair'}")
            verdicts[pair] = {"passed": True, "verdict": "reference" if base["learned"] else "fallback",
                              "text": text, "trial_id": gates[REFERENCE]["trial_id"], "baseline_gain": base}
            return cand, verdicts, gates, base
        if pair in verdicts:
            continue
        if not base["learned"]:
            verdicts[pair] = {"passed": False, "verdict": "inconclusive",
                              "text": f"inconclusive, not gated: {base['text']}"}
        elif pair in gates or (len(gates) - 1 < max_gates and not over_time()):
            if pair not in gates:
                gates[pair] = run_gate(pair, False)
            verdicts[pair] = _verdict(gates[pair], gates[REFERENCE])
        else:
            continue
        log(f"  gate {analysis.gate_text(pair)}: {verdicts[pair]['text']}")
        if verdicts[pair]["passed"]:
            return cand, verdicts, gates, base
    return None, verdicts, gates, base


def _verdict(row: dict, base: dict) -> dict:
    """A candidate pair's gate trial judged against the fp32 one (which carries the shared start's record)."""
    tid = row["trial_id"]
    if row.get("status") != "ok":
        return {"passed": False, "verdict": "failed", "text": f"FAILED: gate trial failed: {row.get('reason')}",
                "trial_id": tid}
    if row.get("model_cache_key") != base.get("model_cache_key"):
        return {"passed": False, "verdict": "inconclusive", "trial_id": tid,
                "text": f"inconclusive: trained from another build of the tiny preset ({row.get('model_cache_key')} "
                        f"vs {base.get('model_cache_key')}), so not from the same start"}
    if len(row["accuracy"].get("per_item", "")) != len(base["accuracy_before"]["per_item"]):
        return {"passed": False, "verdict": "inconclusive", "trial_id": tid,
                "text": "inconclusive: evaluated on other held-out items than the fp32 gate trial"}
    g = analysis.quality_gate(row["accuracy"], base["accuracy"], base["accuracy_before"])
    word = {"passed": "passed", "failed": "FAILED", "inconclusive": "inconclusive"}[g["verdict"]]
    g["text"] = (f"{word}: {g['candidate']:.1%} vs fp32 {g['baseline']:.1%} after the same training from "
                 f"{g['before']:.1%} ({g['n']} held-out items); difference of gains {g['difference']:+.1%} "
                 f"[{g['ci95'][0]:+.1%}, {g['ci95'][1]:+.1%}] (paired 95%, {g['discordance']:.1%} of items differ): "
                 f"{g['why']}")
    g["trial_id"] = tid
    return g


def gate_one(opts, key: tuple, threads: int | None = None, log=print, learning_rate: float | None = None) -> dict:
    """`cpugrpo gate`: the quality gate for one gate key, outside a tune. The reference trial is reused from this
    machine's store when one with the same gate budget is there (same trial key), else run first; the candidate is
    always trained afresh. Returns the verdict with both trial ids. ``opts``: a ``tune.TuneOptions`` (its gate
    budget and directories). ``learning_rate``: the candidate's own (the reference keeps the gate's), e.g. for LoRA,
    whose adapters are commonly trained at about ten times a full fine-tune's rate."""
    from ..core.store import TrialStore
    from ..hw import hardware
    from ..train.memory import default_budget_mb
    from .trial import TrialSpec

    mid = hardware.detect(with_torch=False).machine_id
    store = TrialStore.for_machine(mid, opts.results_dir)
    budget = (opts.memory_budget_gb * 1024) if opts.memory_budget_gb else default_budget_mb()
    ref_key = TrialSpec(config=gate_config(opts, REFERENCE, threads).to_dict(), measured_steps=opts.quality_steps - 1,
                        evaluate=True, evaluate_before=True, tag="tune-gate", timeout_s=1800).key
    rows, _ = store.rows()
    ref = next((r for r in reversed(rows) if r.get("key") == ref_key and r.get("status") == "ok"
                and (r.get("accuracy_before") or {}).get("per_item")), None)
    if ref is None:
        log(f"gate: training the fp32 reference ({opts.quality_steps} steps on tiny)")
        ref = gate_trial(opts, REFERENCE, threads, store, mid, budget, before=True)
    else:
        log(f"gate: reusing the fp32 reference trial {ref['trial_id']}")
    base = baseline_gain(ref)
    log(f"gate: {base['text']}")
    if key == REFERENCE:
        return {"key": list(key), "verdict": "reference", "passed": True, "text": base["text"],
                "reference_trial": ref["trial_id"], "machine_id": mid}
    log(f"gate: training {analysis.gate_text(key)} ({opts.quality_steps} steps on tiny"
        + (f", learning rate {learning_rate:g})" if learning_rate else ")"))
    row = gate_trial(opts, key, threads, store, mid, budget, learning_rate=learning_rate)
    v = _verdict(row, ref) if base["learned"] else {
        "passed": False, "verdict": "inconclusive", "trial_id": row["trial_id"],
        "text": f"inconclusive, the reference did not measurably learn: {base['text']}"}
    return {"key": list(key), **v, "reference_trial": ref["trial_id"], "baseline_gain": base, "machine_id": mid}
