"""Measured work against the machine's measured ceilings: MFU of the update and decode speed against bandwidth.

Pure functions over the tidy trials frame (results.py) and probes.json:

- **MFU** = executed update FLOP/s / the best GEMM probe sample at the thread count, of the fastest dtype the update
  runs (fp32; and bf16 for bf16 updates, whose LM-head gradients still run in fp32). The FLOPs are
  the ones the update executed, counted by train/flops.py from the shapes the trainer recorded every step (shared
  prefix: each distinct prompt once; padding included, since it is computed; backward; recomputation under gradient
  checkpointing; the LM head at the model's real vocabulary over the scored tokens), never a formula that assumes a
  code path. Per trial it is the median over measured steps of (step FLOPs / step update time), so it can exceed 1
  only if the GEMM probe understates the machine; ``check`` reports any such row rather than hiding it.
- **Decode** tokens/s = completion tokens / (rollout time - snapshot refresh), per step (prefill included, so this
  is a lower bound on the decode rate). Its bound: a decode step must read the snapshot's weights once (the bytes
  flops.py counts on the module that generated, LM head included, at the precision it is stored in), so tokens/s
  <= tokens / (decode steps x weight bytes / copy bandwidth). When the weights fit in the last-level cache, DRAM
  bandwidth is no bound: the row says so instead of showing one.

Trials written before the trainer recorded executed work have no FLOP data and give no row: ``missing`` says how
many, so a report never silently mixes counted and assumed work.
"""

from __future__ import annotations

import math

from .plots import KNOBS, wide
from .render import probe_peak

FIELDS = ("mfu", "flops_per_step", "update_flops_per_s", "gemm_peak_gflops", "decode_tokens_per_s",
          "decode_bound_tokens_per_s", "bandwidth_gbps", "weight_bytes")


def label(row) -> str:
    """Every knob of the configuration, compactly: rows differing in any knob never look alike."""
    parts = []
    for k in KNOBS:
        v = row.get(k) if hasattr(row, "get") else getattr(row, k, None)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            v = "all" if k == "threads" else "-"
        if isinstance(v, bool):
            v = "on" if v else "off"
        parts.append(f"{k.replace('_', ' ')} {v}")
    return ", ".join(parts)


def _series(df, metric):
    w = wide(df, metric)
    return w.set_index("key").value if not w.empty else {}


def roofline_rows(df, probes, llc_bytes: float | None = None) -> tuple[list[dict], list[str]]:
    """(rows, notes): one row per configuration whose trials recorded executed work, and why others have none."""
    if df is None or df.empty:
        return [], ["no trials"]
    if not probes:
        return [], ["no probes.json: run `cpugrpo probe` (or `cpugrpo tune`)"]
    flops_s = wide(df, "trial.update_flops_per_s")
    samples = wide(df, "trial.samples_per_s")
    notes = []
    uncounted = len(samples) - len(flops_s)
    if uncounted > 0:
        notes.append(f"{uncounted} configuration(s) measured before the trainer recorded executed work: no MFU for "
                     f"them")
    if flops_s.empty:
        return [], notes
    per_step = _series(df, "trial.update_flops")
    decode = _series(df, "trial.decode_tokens_per_s")
    per_byte = _series(df, "trial.decode_tokens_per_byte_s")
    weight = _series(df, "trial.decode_weight_bytes")
    out = []
    for _, r in flops_s.iterrows():
        threads = None if (isinstance(r.threads, float) and math.isnan(r.threads)) else r.threads
        # the ceiling: the best probe sample of the fastest dtype the update runs (a bf16 update still runs the LM
        # head's gradient GEMMs in fp32, so its work is split between dtypes and the faster one bounds it)
        # (under an adapter the frozen base may be bf16: the bf16 peak then counts too)
        dtypes = ["fp32"] + (["bf16"] if "bf16" in str(r.update_precision) or r.get("adapter") == "lora" or
                             (r.get("beta", 0) and "bf16" in str(r.get("ref_precision", ""))) else [])
        peaks = [p for p in (probe_peak(probes, d, threads, "max") for d in dtypes) if p]
        peak = max(peaks) if peaks else None
        bw = probe_peak(probes, "bandwidth", threads)
        k = r.key
        row = {"label": label(r), **{c: r[c] for c in KNOBS}, "key": k, "n_trials": int(r.n_trials),
               "update_flops_per_s": float(r.value), "flops_per_step": _get(per_step, k),
               "gemm_peak_gflops": peak, "mfu": r.value / (peak * 1e9) if peak else None,
               "decode_tokens_per_s": _get(decode, k), "bandwidth_gbps": bw, "weight_bytes": _get(weight, k),
               "decode_bound_tokens_per_s": None, "bound_note": None}
        wb = row["weight_bytes"]
        if llc_bytes and wb and wb <= llc_bytes:
            row["bound_note"] = (f"weights {wb / 2**20:.0f} MiB fit in the {llc_bytes / 2**20:.0f} MiB last-level "
                                 f"cache: DRAM bandwidth is no bound")
        elif bw and _get(per_byte, k):
            row["decode_bound_tokens_per_s"] = _get(per_byte, k) * bw * 1e9
        out.append(row)
    out.sort(key=lambda r: -(r["mfu"] or 0))
    return out, notes


def _get(series, key):
    v = series.get(key) if hasattr(series, "get") else None
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def check(rows: list[dict]) -> list[str]:
    """Rows that break a physical bound (MFU above 1, decode above its bandwidth bound): each is a finding about the
    probe or the count, to be stated, never clipped."""
    bad = []
    for r in rows:
        if r["mfu"] is not None and r["mfu"] > 1:
            bad.append(f"MFU {r['mfu']:.2f} > 1 for {r['label']}: the GEMM probe understates this machine's peak")
        b = r["decode_bound_tokens_per_s"]
        if b and r["decode_tokens_per_s"] and r["decode_tokens_per_s"] > b:
            bad.append(f"decode {r['decode_tokens_per_s']:.0f} tokens/s above its bandwidth bound {b:.0f} for "
                       f"{r['label']}")
    return bad


def llc_bytes(profile: dict | None) -> float | None:
    """The last-level cache size from a hardware profile (``l3_kb``, else ``l2_kb``), in bytes.

    >>> llc_bytes({"l1d_kb": 48.0, "l2_kb": 2048.0, "l3_kb": 266240.0}) / 2**20
    260.0
    """
    p = profile or {}
    size = p.get("l3_kb") or p.get("l2_kb")
    return float(size) * 1024 if size else None
