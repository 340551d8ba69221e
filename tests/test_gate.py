"""The quality gate: a non-inferiority test on the gain from the same start.

(a) The verdict function on hand-made per-item records. (b) A real gate on the tiny preset (slow): fp32 must learn
measurably in the gate's budget, a candidate whose rollouts come from a wrecked snapshot (heavy noise on its weights)
must be rejected, and a sound candidate (int8 rollout) must pass.
"""

import pytest

from cpugrpo.runs.analysis import GATE_POINTS, gate_verdict


def record(n: int, right: set[int]) -> str:
    return "".join("1" if i in right else "0" for i in range(n))


N = 2000
START = set(range(900))                                    # 45.0% before training
FP32 = (START - set(range(40))) | set(range(900, 1060))    # 40 lost, 160 gained: +6.0 points


def test_non_inferior_candidate_passes():
    # the candidate gained as much, on partly other items: 60 items differ each way from fp32's record
    cand = (FP32 - set(range(100, 160))) | set(range(1100, 1160))
    v = gate_verdict(record(N, START), record(N, FP32), record(N, cand))
    assert v["verdict"] == "passed" and v["passed"]
    assert v["difference"] == 0 and v["ci95"][0] > -GATE_POINTS and round(v["discordance"], 3) == 0.06
    assert v["baseline_gain"]["learned"] and round(v["baseline_gain"]["difference"], 3) == 0.06


def test_inferior_candidates_fail():
    start, fp32 = record(N, START), record(N, FP32)
    # learned nothing: its record is the start's (-6 points against fp32)
    v = gate_verdict(start, fp32, start)
    assert v["verdict"] == "failed" and not v["passed"] and v["ci95"][1] < 0
    # 1.5 points behind: within 2 points on the point estimate (the old rule passed it), but a loss of 2 points is
    # not ruled out by the interval
    cand = FP32 - set(range(900, 930))
    v = gate_verdict(start, fp32, record(N, cand))
    assert round(v["difference"], 3) == -0.015 and v["ci95"][0] < -GATE_POINTS and v["verdict"] == "failed"


def test_inconclusive_when_fp32_did_not_learn():
    start = record(N, START)
    flat = record(N, (START - set(range(30))) | set(range(900, 935)))  # +0.25 points: no measurable gain
    for cand in (flat, start, record(N, FP32)):  # whatever the candidate did
        v = gate_verdict(start, flat, cand)
        assert v["verdict"] == "inconclusive" and not v["passed"]
        assert "did not measurably learn" in v["why"] and v["baseline_gain"]["ci95"][0] <= 0


def test_records_of_other_items_are_refused():
    with pytest.raises(ValueError, match="same held-out items"):
        gate_verdict("0101", "0111", "01")


def _noisy_refresh(refresh):
    """``RolloutModel.refresh`` that then swaps in a copy of the snapshot with gaussian noise of each tensor's own
    standard deviation added: completions come from a wrecked policy, while the policy itself (which the fp32
    snapshot shares weights with) stays clean."""
    import copy

    import torch

    def noisy(self):
        refresh(self)
        wrecked = copy.deepcopy(self._float)  # its own tensors
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in wrecked.parameters():
                if p.numel() > 1:
                    p.add_(torch.randn(p.shape, generator=gen) * p.float().std())
        self._model = wrecked

    return noisy


def _trained_in_process(cfg, monkeypatch) -> dict:
    """The gate's training (rollouts from a wrecked snapshot) and evaluation (clean) in this process, as far as the
    verdict reads a gate trial's row."""
    import tempfile

    from cpugrpo.train import evaluate, models, rollout
    from cpugrpo.train.trainer import run_grpo

    loaded = models.load(cfg.model, seed=cfg.seed, progress=False)
    monkeypatch.setattr(rollout.RolloutModel, "refresh", _noisy_refresh(rollout.RolloutModel.refresh))
    with tempfile.TemporaryDirectory() as out:
        run_grpo(cfg, loaded.model, loaded.tokenizer, out, progress=False)
    monkeypatch.undo()  # the evaluation's own snapshot is a clean one
    acc = evaluate.evaluate(loaded.model, loaded.tokenizer, n=cfg.eval_n, seed=cfg.seed, precision=cfg.eval_precision,
                            progress=False, max_new_tokens=cfg.max_completion_length)
    return {"status": "ok", "trial_id": "in-process", "model_cache_key": loaded.cache_key,
            "accuracy": {"per_item": "".join("1" if f else "0" for f in acc.per_item)}}


def test_noisy_snapshot_leaves_the_policy_clean(tiny_dir, monkeypatch):
    """The broken candidate's wrecking touches the rollout snapshot only (else the slow test below would break
    the policy itself, not its rollouts)."""
    import torch

    from cpugrpo.train import models, rollout

    loaded = models.load(str(tiny_dir), progress=False)
    before = [p.detach().clone() for p in loaded.model.parameters()]
    monkeypatch.setattr(rollout.RolloutModel, "refresh", _noisy_refresh(rollout.RolloutModel.refresh))
    snap = rollout.RolloutModel(loaded.model, "fp32")
    snap.refresh()
    assert all(torch.equal(a, p) for a, p in zip(before, loaded.model.parameters()))
    moved = [not torch.equal(a, s) for a, s in zip(loaded.model.parameters(), snap.model.parameters())]
    assert sum(moved) >= len(moved) // 2


@pytest.mark.slow
@pytest.mark.long
def test_gate_on_tiny_rejects_a_broken_candidate_and_passes_a_sound_one(tmp_path, monkeypatch):
    """The tuner's own gate trials at its budget (fp32 with the start evaluated, int8 rollout), each in its own
    process, and a broken candidate trained in this process at the same budget, its rollouts drawn from a wrecked
    snapshot: fp32 must learn measurably, int8 rollout must pass, the broken one must fail. Three trainings of
    GATE_STEPS steps and four evaluations: ~12 min on the 2-core machine of docs/LOG.md (2026-11-22), by its parts
    (~206 s per training, ~21 s per evaluation)."""
    from cpugrpo.core.store import TrialStore
    from cpugrpo.runs.tune import REFERENCE, TuneOptions, _verdict, baseline_gain, gate_config, gate_trial

    opts = TuneOptions()
    store = TrialStore(tmp_path / "trials.jsonl")
    ref = gate_trial(opts, REFERENCE, None, store, "test", None, before=True)
    assert ref["status"] == "ok", ref.get("reason")
    base = baseline_gain(ref)
    assert base["learned"], base["text"]
    sound = _verdict(gate_trial(opts, ("fp32", "int8"), None, store, "test", None), ref)
    assert sound["verdict"] == "passed", sound["text"]
    broken = _verdict(_trained_in_process(gate_config(opts, REFERENCE, None), monkeypatch), ref)
    assert broken["verdict"] == "failed", broken["text"]
    assert broken["difference"] < sound["difference"]
