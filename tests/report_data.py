"""Small trial rows and machine directories (profile, probes, trial store) for the report tests."""

import json
from pathlib import Path


def trial_row(i, threads=2, prompts=4, rollout="fp32", update="fp32", sps=50.0, rss=1000.0, status="ok",
              machine="m1", tag="sweep", accuracy=None, model="tiny", prefix=None, processes=None, rank_rss=None):
    cfg = {"model": model, "threads": threads, "batch_size": prompts * 8, "num_generations": 8,
           "max_completion_length": 48, "update_precision": update, "rollout_precision": rollout,
           "gradient_checkpointing": False, "beta": 0.0, "eval_precision": "fp32"}
    if prefix is not None:  # rows without it ran before the shared-prefix knob existed (off)
        cfg["shared_prefix"] = prefix
    if processes is not None:  # rows without it ran before the processes knob existed (one process)
        cfg["processes"] = processes
    row = {"trial_id": f"t{i}", "key": f"k{i}", "tag": tag, "machine_id": machine, "status": status,
           "started_at": 1795264252 + i, "config": cfg}
    if status != "ok":
        row["reason"] = "<script>alert(1)</script> timeout"
        return row
    m = lambda v: {"median": v, "min": v * 0.95, "max": v * 1.05}
    row.update(summary={"samples_per_s": m(sps), "tokens_per_s": m(sps * 20), "wall_s": m(32 / sps),
                        "rollout_s": m(0.3 * 32 / sps), "scoring_s": m(0.001), "update_s": m(0.7 * 32 / sps),
                        "cpu_util": m(0.98), "phase_share": {"rollout": 0.3, "scoring": 0.0, "update": 0.7}},
               outside={"os_peak_rss_mb": rss},
               environment={"commit": "abc"}, random_weights=model != "tiny",
               effective={"threads": threads, "flags": []})
    if rank_rss:  # several data-parallel ranks: each one's peak RSS (runs/dist_worker.py)
        row["ranks"] = [{"rank": i, "peak_rss_mb": v} for i, v in enumerate(rank_rss)]
    if accuracy is not None:
        row["accuracy"] = {"overall": {"accuracy": accuracy, "ci95": [accuracy - 0.04, accuracy + 0.04], "n": 600}}
    return row


def make_machine(root: Path, mid: str, rows, emulated=None, probes=True):
    prof = root / "profiles" / mid
    prof.mkdir(parents=True)
    (prof / "hardware.json").write_text(json.dumps({"machine_id": mid, "model_name": "Xeon <b>bold</b>",
                                                    "isa_class": "avx512bf16", "n_usable": 2,
                                                    "emulated": emulated or {}}))
    if probes:
        (prof / "probes.json").write_text(json.dumps({"results": [
            {"probe": "fp32", "threads": 2, "gflops": {"median": 300.0}},
            {"probe": "bandwidth", "threads": 2, "gbps": {"median": 25.0}}]}))
    res = root / "results" / mid
    res.mkdir(parents=True)
    (res / "trials.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
