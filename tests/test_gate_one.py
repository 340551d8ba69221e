"""`cpugrpo gate`: one configuration's quality gate, reusing this machine's reference trial when it is stored."""

import json

from cpugrpo.runs import analysis, gate
from cpugrpo.runs.tune import TuneOptions


def _row(key, tid, before, after):
    row = {"status": "ok", "trial_id": tid, "key": key, "model_cache_key": "c", "steps": [{}] * 199,
           "accuracy": {"per_item": after}}
    return {**row, "accuracy_before": {"per_item": before}} if before else row


def test_gate_one_reuses_a_stored_reference_and_trains_only_the_candidate(tmp_path, monkeypatch):
    from cpugrpo.hw import hardware
    from cpugrpo.runs.trial import TrialSpec

    mid = hardware.detect(with_torch=False).machine_id
    opts = TuneOptions.make(results_dir=str(tmp_path))
    n = 400
    before, ref_after = "0" * 200 + "1" * 200, "0" * 100 + "1" * 300   # the reference gains 25 points
    ref_key = TrialSpec(config=gate.gate_config(opts, gate.REFERENCE, 2).to_dict(), measured_steps=199,
                        evaluate=True, evaluate_before=True, tag="tune-gate", timeout_s=1800).key
    (tmp_path / mid).mkdir()
    (tmp_path / mid / "trials.jsonl").write_text(json.dumps(_row(ref_key, "ref-1", before, ref_after)) + "\n")
    trained = []

    def fake_trial(opts, key, threads, store, machine_id, budget, before=False, learning_rate=None):
        trained.append((key, before))
        return _row("cand", "cand-1", None, ref_after)  # the same gain as the reference

    monkeypatch.setattr(gate, "gate_trial", fake_trial)
    key = analysis.gate_key({"update_precision": "fp32", "rollout_precision": "fp32", "optimizer": "adafactor",
                             "adapter": "lora"})
    assert key == ("fp32", "fp32", "adafactor", "lora")
    out = gate.gate_one(opts, key, 2, log=lambda m: None)
    assert trained == [(key, False)]  # the stored reference was reused, only the candidate trained
    assert out["reference_trial"] == "ref-1" and out["trial_id"] == "cand-1" and out["passed"] is True
    assert len(before) == n and out["n"] == n


def test_gate_config_carries_the_optimizer_and_adapter():
    opts = TuneOptions.make()
    cfg = gate.gate_config(opts, ("bf16-sr", "bf16", "adafactor", "lora"), 2)
    assert (cfg.update_precision, cfg.rollout_precision, cfg.optimizer, cfg.adapter, cfg.model) == \
        ("bf16-sr", "bf16", "adafactor", "lora", "tiny")
    assert analysis.gate_key(cfg.to_dict()) == ("bf16-sr", "bf16", "adafactor", "lora")
