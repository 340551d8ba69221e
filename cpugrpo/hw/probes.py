"""Roofline microbenchmarks: fp32 / bf16 / int8 GEMM throughput and memory bandwidth, per thread count.

Each measurement is repeated (median, min, max, relative spread reported). GEMMs are square n x n x n (2n^3 flops);
int8 uses ``torch._int_mm`` (int8 x int8 -> int32) where this torch build supports it on CPU, and is reported as
"unsupported" otherwise. Bandwidth is a tensor copy of ``bw_mb`` MiB (read + write = 2 x size bytes moved).

Thread counts are changed with ``torch.set_num_threads`` inside one process; the CLI runs the probe in its own
process, with OMP_NUM_THREADS set to the largest count before torch starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..core.options import at_least, csv_ints, normalize
from ..core.stats import median_and_spread


@dataclass(frozen=True)
class ProbeOptions:
    """What `cpugrpo probe` measures. Validated on construction: a bad value is a ConfigError naming the flag and
    the fix. ``threads`` may be given as "1,2"; None means 1..usable CPUs."""
    threads: tuple[int, ...] | None = None   # --threads: thread counts, each within 1..usable CPUs
    n: int = 1024                            # --n: GEMM size (n x n x n)
    repeats: int = 5                         # --repeats: samples per measurement
    bw_mb: int = 256                         # --bw-mb: MiB copied by the bandwidth probe
    isa_cap: str | None = None               # --isa-cap: emulate a lesser ISA
    profiles_dir: str = "profiles"           # --profiles-dir: probes.json goes under <id>/

    def __post_init__(self):
        from .runtime import isa_cap_env, resolve_threads, usable_cpus

        if self.threads is None:
            normalize(self, "threads", tuple(range(1, usable_cpus() + 1)))
        else:
            normalize(self, "threads", tuple(sorted(set(csv_ints("--threads", self.threads, "1,2")))))
        for t in self.threads:
            resolve_threads(t)
        at_least("--n", self.n, 16)
        at_least("--repeats", self.repeats, 1)
        at_least("--bw-mb", self.bw_mb, 1)
        isa_cap_env(self.isa_cap)


def probe(opts: ProbeOptions, progress: bool = True) -> dict:
    """Run the probes at every thread count of ``opts`` and save them as profiles/<id>/probes.json. The caller has
    put the largest thread count and the ISA cap into the environment (``runtime.prepare_process``) before torch
    was imported."""
    import os

    from ..core.store import atomic_write_json
    from . import hardware

    profile = hardware.detect()
    out = {"machine_id": profile.machine_id, **run_probes(list(opts.threads), opts.n, opts.repeats, opts.bw_mb,
                                                         progress=progress)}
    path = os.path.join(opts.profiles_dir, profile.machine_id, "probes.json")
    atomic_write_json(path, out)
    out["saved"] = path
    return out


def _time(fn, repeats: int, min_s: float = 0.05) -> list[float]:
    fn()  # warm-up: kernel selection, allocator, oneDNN JIT
    out = []
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while True:  # several calls per sample so that each sample lasts at least min_s
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_s:
                break
        out.append(dt / n)
    return out


def gemm(dtype: str, n: int = 1024, repeats: int = 5) -> dict:
    import torch

    if dtype == "int8":
        a = torch.randint(-64, 64, (n, n), dtype=torch.int8)
        b = torch.randint(-64, 64, (n, n), dtype=torch.int8)
        try:
            torch._int_mm(a, b)
        except (RuntimeError, AttributeError) as e:
            return {"dtype": dtype, "n": n, "unsupported": str(e).splitlines()[0][:200]}
        fn = lambda: torch._int_mm(a, b)  # noqa: E731
    else:
        dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
        a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
        fn = lambda: torch.mm(a, b)  # noqa: E731
    times = _time(fn, repeats)
    s = median_and_spread([2 * n**3 / t / 1e9 for t in times])
    return {"dtype": dtype, "n": n, "gflops": s, "unit": "GFLOP/s"}


def bandwidth(mb: int = 256, repeats: int = 5) -> dict:
    import torch

    src = torch.ones(mb * 2**20 // 4, dtype=torch.float32)
    dst = torch.empty_like(src)
    times = _time(lambda: dst.copy_(src), repeats)
    s = median_and_spread([2 * src.numel() * 4 / t / 1e9 for t in times])
    return {"mb": mb, "gbps": s, "unit": "GB/s (read + write)"}


def run_probes(thread_counts: list[int], n: int = 1024, repeats: int = 5, bw_mb: int = 256,
               progress: bool = True) -> dict:
    import torch
    from tqdm.auto import tqdm

    from .effective import effective_settings

    results = []
    work = [(t, kind) for t in thread_counts for kind in ("fp32", "bf16", "int8", "bandwidth")]
    bar = tqdm(work, desc="probes", disable=not progress, leave=False)
    for threads, kind in bar:
        torch.set_num_threads(threads)
        bar.set_postfix(threads=threads, probe=kind)
        row = bandwidth(bw_mb, repeats) if kind == "bandwidth" else gemm(kind, n, repeats)
        row.update({"threads": torch.get_num_threads(), "probe": kind})
        results.append(row)
    return {"results": results, "effective": effective_settings(), "n": n, "repeats": repeats}


def peak(probes: dict, kind: str, threads: int | None = None, stat: str = "median") -> float | None:
    """GFLOP/s (or GB/s for 'bandwidth') at ``threads`` (default: the most threads measured): the median over the
    probe's samples, or ``stat="max"``, the best sample (the ceiling a utilisation is measured against)."""
    rows = [r for r in probes.get("results", []) if r["probe"] == kind and "unsupported" not in r]
    if threads is not None:
        rows = [r for r in rows if r["threads"] == threads]
    if not rows:
        return None
    r = max(rows, key=lambda r: r["threads"])
    return (r.get("gflops") or r.get("gbps"))[stat]
