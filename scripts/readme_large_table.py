"""The README's compact table of the Qwen2 shapes, from the committed trial rows (report/large.py does the work;
the full table with every column is in reports/<machine-id>/report.md). Usage:
    python scripts/readme_large_table.py <machine-id> [qwen2-0.5b]"""

import json
import sys
from pathlib import Path

from cpugrpo.report.large import large_failures, large_rows
from cpugrpo.report.results import read_trials


def label(r: dict) -> str:
    """The knobs that vary between the 494M rows, in few words."""
    k = r["knobs"]
    if r["mode"] != "cpugrpo":
        return {"trl-defaults": "**TRL defaults**", "trl-cpu": "**TRL, CPU settings**"}[r["mode"]]
    optimizer = k["optimizer"].replace("adamw_torch_fused", "AdamW fused")
    rollout = f"rollout {k['rollout_precision']}" + (" + int8 head" if k["int8_lm_head"] else "")
    parts = ["LoRA r16" if k["adapter"] == "lora" else "full", optimizer, f"update {k['update_precision']}", rollout]
    if k.get("threads") != 2:
        parts.append(f"{k['threads']} thread(s)")
    if not k.get("shared_prefix", True):
        parts.append("no shared prefix")
    if k.get("gradient_checkpointing"):
        parts.append("checkpointing")
    if k["micro_batch"] in (None, 8) or not k["release_memory"]:
        parts.append(f"micro {k['micro_batch'] or 'whole'}, release {'on' if k['release_memory'] else 'off'}")
    return ", ".join(parts)


def main(mid: str, model: str = "qwen2-0.5b") -> None:
    rows, _ = read_trials(Path("results") / mid)
    probes_path = Path("profiles") / mid / "probes.json"
    probes = json.loads(probes_path.read_text()) if probes_path.exists() else None
    hw = json.loads((Path("profiles") / mid / "hardware.json").read_text())
    llc = (hw.get("caches") or {}).get("l3")
    out = [r for r in large_rows(rows, probes, llc) if r["model"] == model and r["batch_size"] == 8]
    print("| configuration | samples/s, median (min–max) | step s | rollout s (refresh) | update s | OS peak RSS "
          "MiB | decode, of bound | trials |")
    print("|---|---|---|---|---|---|---|---|")
    for r in out:
        s = r["samples_per_s"]
        roll = "–" if r["rollout_s"] is None or r["mode"] != "cpugrpo" else \
            f"{r['rollout_s']:.1f} ({r['refresh_s']:.2f})"
        upd = "–" if r["mode"] != "cpugrpo" or r["update_s"] is None else f"{r['update_s']:.1f}"
        dec = f"{r['decode_fraction']:.0%}" if r.get("decode_fraction") else "–"
        print(f"| {label(r)} | {s['median']:.3f} ({s['min']:.3f}–{s['max']:.3f}) | "
              f"{r['wall_s']:.1f} | {roll} | {upd} | {r['os_peak_rss_mb']:.0f} | {dec} | {r['n_trials']} |")
    for f in large_failures(rows):
        if f["knobs"].get("model") == model:
            print(f"\nFailed trial {f['trial_id']} ({f['knobs']}): {f['reason']}")


if __name__ == "__main__":
    main(*sys.argv[1:])
