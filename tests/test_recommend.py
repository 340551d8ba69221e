"""The recommended config: its TOML renders, escapes, and is what `cpugrpo train --config` accepts."""

import tomllib

from cpugrpo.core.config import load_toml, resolve_config
from cpugrpo.runs import recommend


def test_recommendation_renders_toml_that_train_accepts(tmp_path):
    rec = {"train": {"model": "tiny", "threads": 2, "batch_size": 64, "num_generations": 8,
                     "max_completion_length": 48, "update_precision": "fp32", "rollout_precision": "int8",
                     "gradient_checkpointing": False},
           "reasons": {"rollout_precision": 'samples/s fp32: 50.1, int8: 61.0 "quoted"'},
           "evidence": {"machine_id": "m", "mode": "quick", "tuned_at": "now", "samples_per_s": 61.0,
                        "samples_per_s_range": [60.0, 62.0], "peak_rss_mb": 1400.0, "trial_id": "t-1",
                        "pareto_front": ["a", "b"], "commit": None}}
    path = tmp_path / "recommended.toml"
    recommend.write(rec, path)
    doc = tomllib.loads(path.read_text())
    assert doc["reasons"]["rollout_precision"].endswith('"quoted"') and "commit" not in doc["evidence"]
    assert load_toml(path) == rec["train"]
    cfg, origin = resolve_config(path, {"steps": 5})
    assert cfg.rollout_precision == "int8" and cfg.steps == 5 and origin["steps"] == "flag"


def test_build_shows_ties_the_finalists_and_which_gate_the_precision_rests_on():
    """Reasons say where a tie was broken by memory, and that a random-weight model's precision pair rests on the
    tiny preset's gate; the TOML keeps nested evidence out (tune.json has it)."""
    from types import SimpleNamespace

    from cpugrpo.runs.tune import TuneOptions

    cfg = {"model": "small", "threads": 2, "batch_size": 64, "num_generations": 8, "max_completion_length": 48,
           "update_precision": "fp32", "rollout_precision": "int8", "gradient_checkpointing": False,
           "shared_prefix": True, "beta": 0.0, "optimizer": "adamw_torch_fused"}
    s = {"median": 9.0, "min": 8.0, "max": 10.0}
    chosen = {"config": cfg, "trial_id": "c", "random_weights": True, "status": "ok", "summary": {"samples_per_s": s,
                                                                                 "tokens_per_s": s},
              "outside": {"os_peak_rss_mb": 3000.0}}
    record = [{"axis": "rollout_precision", "chosen": "int8",
               "tried": [{"value": "fp32", "samples_per_s": 9.1, "range": [8, 10], "status": "ok", "trial_id": "a"},
                         {"value": "int8", "samples_per_s": 9.0, "range": [8, 10], "status": "ok", "trial_id": "c"}],
               "decision": {"tie": True, "text": "tie: fp32 and int8 not separated (p=0.69 >= 0.05); lower peak RSS "
                                                 "decides: fp32 3400 MiB, int8 3000 MiB -> int8"}}]
    verdicts = {("fp32", "int8"): {"passed": True, "verdict": "passed", "text": "passed: 47.9% vs fp32 48.1%",
                                   "candidate": 0.479, "baseline": 0.481, "difference": -0.002, "ci95": [-0.01, 0.01]}}
    final = {"trials": ["c", "d"], "text": "tie: ... -> rollout_precision int8", "tie": True}
    rec = recommend.build(TuneOptions(model="small", quick=True), SimpleNamespace(machine_id="m", isa_class="x",
                          n_usable=2), chosen, record, verdicts, {("fp32", "fp32"): {"trial_id": "g0"},
                          ("fp32", "int8"): {"trial_id": "g1"}}, [chosen], [0], [], 10.0, 20.0, "t.jsonl", 8000,
                          final=final, gate_budget={"steps": 120})
    assert "lower peak RSS decides" in rec["reasons"]["rollout_precision"]
    assert rec["reasons"]["finalists"].startswith("re-measured with twice the steps (trials c, d): tie")
    gate = rec["reasons"]["quality_gate"]
    assert gate.startswith("precision pair gated on the tiny preset: passed") and "small has random weights" in gate
    assert rec["evidence"]["gate"]["model"] == "tiny" and rec["evidence"]["gate"]["for_model"] == "small"
    doc = tomllib.loads(recommend.render(rec))
    assert "gate" not in doc["evidence"] and doc["evidence"]["gate_verdict"] == "passed"
