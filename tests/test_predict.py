"""The performance model (runs/predict.py): a hand-worked roofline case, the physical bound, `cpugrpo predict`'s
output and errors, which fit a machine uses, data-parallel communication, and the tuner's prediction-guided
pruning (runs/prune.py) with a fake measure."""

import json
import random
import time
from pathlib import Path

import pytest

from cpugrpo.cli.main import main
from cpugrpo.core.config import TrainConfig, with_context_defaults
from cpugrpo.runs.predict import (
    DEFAULT_FIT,
    PARAMS,
    Machine,
    ModelShape,
    Workload,
    load_machine,
    machine_ids,
    model_shape,
    predict,
)
from cpugrpo.runs.prediction import load_fit
from cpugrpo.runs.prune import Pruner, saving, tune_trial_seconds
from cpugrpo.runs.tune import Searcher, TuneOptions, coordinate_descent
from cpugrpo.train.flops import Dims

PROFILES = str(Path(__file__).resolve().parents[1] / "profiles")
AMX = "intel-x8664-amx-2c-24g-eae952"
AVX2 = "intel-emeraldrapids-avx2-2c-24g-ea1686-emu"
# every efficiency 1, every overhead and traffic factor 0: the prediction is the bare roofline
IDEAL = {k: (1.0 if k.startswith("e_") else 0.0) for k in PARAMS}


def toy():
    """1 layer, hidden 4, 2 heads of 2 (1 KV head), MLP 8, vocabulary 10, tied head: 144 matmul weights + 40."""
    return ModelShape("toy", Dims(layers=1, hidden=4, heads=2, kv_heads=1, head_dim=2, intermediate=8, vocab=10), True)


def test_hand_worked_roofline_step():
    """A 10 GFLOP/s, 1 GB/s machine with no cache; batch 2 (one prompt of width 3), 2 decode steps, fp32, AdamW.

    generate: prefill 2 rows x 3 tokens: linear 2*3*288 = 1728, attention 4*1*2 rows*2 heads*3*3*2 = 288, head
      (last position) 2*2*4*10 = 160 -> 2176 FLOP = 0.2176 us; one decode step at mean context 3 + 2/2 = 4: 864 FLOP
      (0.0864 us) against 736 weight bytes + 2 rows*4 positions*16 KV bytes = 864 B (0.864 us): 0.864 us.
    update (TRL's path, no shared prefix): forward over 2 x 5 positions 2880 + 800 + head 2*8*4*10 = 640 -> 4320,
      backward 2*2880 + 2*800 + 3*640 = 9280: 13600 FLOP = 1.36 us; AdamW 28 B x 184 parameters = 5152 B = 5.152 us.
    step = 0.2176 + 0.864 + 1.36 + 5.152 = 7.5936 us."""
    mach = Machine("toy", {"fp32": {1: 10.0}}, {1: 1.0}, None, 1)
    cfg = TrainConfig(threads=1, batch_size=2, num_generations=2, shared_prefix=False)
    p = predict(toy(), cfg, mach, IDEAL, Workload(3, 2, "given"))
    assert p["phases"]["generate"] == pytest.approx(1.0816e-6)
    assert p["phases"]["update"] == pytest.approx(6.512e-6)
    assert p["phases"]["refresh"] == 0 and p["phases"]["scoring"] == 0 and p["phases"]["communication"] == 0
    assert p["step_s"] == pytest.approx(7.5936e-6) and p["bound_step_s"] == pytest.approx(p["step_s"])
    assert p["work"]["update_flops"] == 13600 and p["work"]["optimizer_bytes"] == 5152
    assert p["samples_per_s"] == pytest.approx(2 / 7.5936e-6)


def test_no_prediction_is_faster_than_its_physical_bound():
    """Committed fits and random parameters within the fit's bounds, every model, several configurations."""
    fits = [load_fit(m, PROFILES)[0] for m in machine_ids(PROFILES)] + [IDEAL, DEFAULT_FIT]
    rng = random.Random(0)
    fits += [{k: rng.uniform(lo, hi) for k, (_, lo, hi) in PARAMS.items()} for _ in range(5)]
    configs = [TrainConfig(), TrainConfig(rollout_precision="int8", update_precision="bf16-sr", optimizer="adafactor"),
               TrainConfig(update_precision="bf16-autocast", gradient_checkpointing=True, micro_batch=8),
               TrainConfig(adapter="lora", rollout_precision="bf16", release_memory=True)]
    for mid in machine_ids(PROFILES):
        mach = load_machine(mid, PROFILES)
        for model in ("tiny", "small", "qwen2-0.5b", "qwen2-1.5b"):
            for cfg in configs:
                cfg = cfg.replace(model=model, threads=mach.usable)
                for fit in fits:
                    for mode in ("cpugrpo", "trl-defaults", "trl-cpu"):
                        p = predict(model_shape(model), cfg, mach, fit, mode=mode)
                        assert p["step_s"] >= p["bound_step_s"] * (1 - 1e-12)
                        for ph, t in p["phases"].items():
                            assert t >= p["bound"][ph] * (1 - 1e-12), (mid, model, ph)


def test_completion_length_moves_the_prediction():
    mach = load_machine(AMX, PROFILES)
    cfg = TrainConfig(threads=2)
    short = predict(model_shape("tiny"), cfg, mach, work=Workload.of(cfg, mean_completion=10))
    full = predict(model_shape("tiny"), cfg, mach, work=Workload.of(cfg))
    assert full["work"]["decode_steps"] == 48 and short["work"]["decode_steps"] == pytest.approx(13.8)
    assert short["step_s"] < full["step_s"]


def test_communication_only_with_several_processes():
    mach = load_machine(AMX, PROFILES)
    cfg = TrainConfig(threads=1, batch_size=16)
    one = predict(model_shape("small"), cfg, mach)
    two = predict(model_shape("small"), cfg.replace(processes=2), mach)
    assert one["phases"]["communication"] == 0
    grads = two["work"]["gradient_bytes"]
    assert two["phases"]["communication"] == pytest.approx(2 * 0.5 * grads / (mach.peak("bandwidth", 2) / 2 * 1e9))
    assert two["work"]["rank_batch"] == 8 and two["peak_rss_mb"] == pytest.approx(2 * two["rank_peak_rss_mb"])


def test_machine_without_a_fit_borrows_its_family_and_says_so():
    fit, source, why = load_fit(AVX2, PROFILES)
    assert source == "intel-emeraldrapids-avx512bf16-2c-24g-6635ca" and "same intel-emeraldrapids" in why
    assert load_fit(AMX, PROFILES)[1:] == (AMX, "its own trials")


def _cli(capsys, *argv):
    code = main([*argv, "--profiles-dir", PROFILES])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_json_has_step_phases_and_rss_fast(capsys):
    t0 = time.perf_counter()
    code, out, _ = _cli(capsys, "predict", "--model", "qwen2-0.5b", "--json", "--machine", AMX)
    assert code == 0 and time.perf_counter() - t0 < 10
    d = json.loads(out)
    assert d["step_s"] > 0 and d["peak_rss_mb"] > 0 and d["predicted"] is True
    assert set(d["phases_s"]) == {"generate", "refresh", "scoring", "update", "communication"}
    assert d["update_s"] == d["phases_s"]["update"] and d["fit_machine"] == AMX
    assert d["config_from"].startswith("the machine's recommendation")  # its own tune for qwen2-0.5b


def test_cli_other_machine_from_its_profile_with_defaults(capsys):
    code, out, _ = _cli(capsys, "predict", "--model", "qwen2-0.5b", "--machine", AVX2, "--json", "--explain")
    d = json.loads(out)
    ref, _ = with_context_defaults(TrainConfig(model="qwen2-0.5b"), {"model": "flag"})
    assert code == 0 and d["config"]["batch_size"] == ref.batch_size == 8
    assert d["config_from"].startswith("cpugrpo's defaults") and d["work"]["gemm_update_gflops"] < 200
    assert any(line.startswith("generate = ") for line in d["explain"])


def test_cli_unknown_machine_is_one_line_exit_2(capsys):
    code, out, err = _cli(capsys, "predict", "--machine", "no-such-machine")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "no-such-machine" in err and AMX in err


def test_cli_unknown_model_is_one_line_exit_2(capsys):
    code, _, err = _cli(capsys, "predict", "--model", "./nowhere", "--machine", AMX)
    assert code == 2 and len(err.strip().splitlines()) == 1


def _row(sps, trial_id, tag, key):
    return {"status": "ok", "trial_id": trial_id, "key": key, "tag": tag, "spec": {"warmup_steps": 1},
            "steps": [{"completions": 64, "wall_s": 1.0}] + [{"completions": 64, "wall_s": 64 / (sps * f)}
                                                           for f in (0.98, 0.99, 1.0, 1.01, 1.02, 1.0)],
            "outside": {"os_peak_rss_mb": 900, "wall_s": 10.0},
            "summary": {"samples_per_s": {"median": sps, "min": sps * 0.98, "max": sps * 1.02},
                        "wall_s": {"rel_spread": 0.05}}}


def test_pruning_skips_a_predicted_slow_point_and_keeps_the_pick():
    """Threads 1 is predicted (and measured) at half the speed of 2: it is skipped, recorded with its prediction;
    int8 is predicted close, so it runs, and is the pick with and without pruning."""
    speed = {"threads": {1: 30.0, 2: 60.0}, "rollout_precision": {"fp32": 1.0, "int8": 1.1}}

    def truth(cfg):
        return speed["threads"][cfg.threads] * speed["rollout_precision"][cfg.rollout_precision]

    class Store:
        path = "trials.jsonl"

        def append(self, row):
            pass

    def search(pruner):
        ran = []

        def run(spec, machine_id):
            cfg = TrainConfig(**{k: v for k, v in spec.config.items() if k != "difficulties"})
            ran.append((cfg.threads, cfg.rollout_precision))
            return {**_row(truth(cfg), f"t{len(ran)}", spec.tag, spec.key)}

        s = Searcher(TuneOptions(), Store(), "m", 10_000, run=run)
        s.pruner = pruner
        start = {"threads": 2, "rollout_precision": "fp32", "prompts_per_step": 8}
        best, row, record = coordinate_descent(start, {"threads": [1, 2], "rollout_precision": ["fp32", "int8"]},
                                               s.measure, log=lambda m: None,
                                               order=pruner and pruner.axis_order(s.config))
        return best, ran, record, s

    best0, ran0, _, _ = search(None)
    pruner = Pruner(lambda cfg: {"samples_per_s": truth(cfg) * 0.9, "peak_rss_mb": 900.0}, fraction=0.8)
    best1, ran1, record, s = search(pruner)
    assert best0 == best1 == {"threads": 2, "rollout_precision": "int8", "prompts_per_step": 8}
    assert (1, "fp32") in ran0 and (1, "fp32") not in ran1 and len(ran1) == len(ran0) - 1
    skipped = [t for r in record for t in r["tried"] if t["status"] == "skipped"]
    assert len(skipped) == 1 and "below the 80% pruning fraction" in skipped[0]["reason"]
    assert pruner.skipped[0]["predicted"]["ratio_to_best"] == pytest.approx(0.5)
    row = next(r for r in s.rows.values() if r["status"] == "skipped")
    assert row["skipped_by"] == "prediction" and row["predicted"]["samples_per_s"] == pytest.approx(27.0)


def test_pruning_skips_a_point_predicted_over_the_memory_budget():
    p = Pruner(lambda cfg: {"samples_per_s": 1.0, "peak_rss_mb": 5000.0}, budget_mb=4096)
    why = p.check(TrainConfig())
    assert why and "over the 4096 MiB memory budget" in why["reason"]


def test_tune_trial_seconds_match_the_committed_tune():
    root = Path(PROFILES).parent
    t = tune_trial_seconds(f"{PROFILES}/{AMX}/tune-qwen2-0.5b.json", root / "results" / AMX / "trials.jsonl")
    assert t["trials"] == 10 and t["trial_seconds"] == pytest.approx(t["recorded_trial_seconds"], abs=0.2)
    half = {**t, "trial_seconds": t["trial_seconds"] / 2.5}
    assert saving(t, half)["met"] and not saving(t, t)["met"]


def test_report_section_and_figure_from_the_committed_fits():
    from cpugrpo.report import predicted

    data = predicted.gather(AMX, PROFILES)
    assert data["fit_machine"] == AMX and any(t["machine"] == AMX for t in data["trials"])
    text = "\n".join(predicted.section_markdown(data))
    assert "| all |" in text and "Worst held-out step times" in text and "not yet explained" not in text
    assert predicted.figure(data).axes and predicted.lines(None)[0].startswith("No performance-model fit")


def test_compare_fills_only_unmeasured_cells_with_predictions():
    import pandas as pd

    from cpugrpo.report.predicted import fill

    t = pd.DataFrame({"model": ["tiny", "tiny"], "threads": [2, 2], "rollout_precision": ["fp32", "int8"],
                      AMX: [80.0, float("nan")]})
    out = fill(t, ["model", "threads", "rollout_precision"], [AMX], PROFILES)
    col = out[f"{AMX} predicted"]
    assert col.isna()[0] and col[1] > 0  # measured: no prediction; not measured: predicted
