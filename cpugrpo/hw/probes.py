"""Roofline microbenchmarks: fp32 / bf16 / int8 GEMM throughput and memory bandwidth, per thread count.

Each measurement is repeated (median, min, max, relative spread reported). GEMMs are square n x n x n (2n^3 flops);
int8 uses ``torch._int_mm`` (int8 x int8 -> int32) where this torch build supports it on CPU, and is reported as
"unsupported" otherwise. Bandwidth is a tensor copy of ``bw_mb`` MiB (read + write = 2 x size bytes moved).

Thread counts are changed with ``torch.set_num_threads`` inside one process; the CLI runs the probe in its own
process, with OMP_NUM_THREADS set to the largest count before torch starts.
"""

from __future__ import annotations

import time

from ..core.stats import median_and_spread


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


def peak(probes: dict, kind: str, threads: int | None = None) -> float | None:
    """Median GFLOP/s (or GB/s for 'bandwidth') at ``threads`` (default: the most threads measured)."""
    rows = [r for r in probes.get("results", []) if r["probe"] == kind and "unsupported" not in r]
    if threads is not None:
        rows = [r for r in rows if r["threads"] == threads]
    if not rows:
        return None
    r = max(rows, key=lambda r: r["threads"])
    return (r.get("gflops") or r.get("gbps"))["median"]
