"""What actually took effect inside this process: threads, parallel backend, the ISA oneDNN dispatched, allocator.

Requested settings are only claims. This check runs inside a trial process (after the settings were applied) and
records facts: torch's intra-op thread count, ``torch.__config__.parallel_info()``, the ATen CPU capability, and the
kernel oneDNN chose for a small bf16 and fp32 matmul, read from oneDNN's verbose log (captured at the file-descriptor
level, since oneDNN writes to C stdout). ``compare()`` flags every difference from what was requested.
"""

from __future__ import annotations

import os
import re
import tempfile

# oneDNN kernel-name fragments -> ISA class, most capable first.
_ISA_ORDER = [("amx", "amx"), ("avx512_core_fp16", "avx512"), ("avx512_core_bf16", "avx512bf16"),
              ("avx512_core_vnni", "avx512"), ("avx512", "avx512"), ("avx2_vnni", "avx2"), ("avx2", "avx2"),
              ("avx", "avx"), ("sse41", "sse4"), ("sve", "sve"), ("asimd", "neon"), ("ref", "reference"),
              ("gemm:jit", "jit")]


def isa_class_of_kernel(impl: str) -> str:
    """The ISA class of a oneDNN implementation name.

    >>> isa_class_of_kernel("brg_matmul:avx512_core_amx"), isa_class_of_kernel("brg_matmul:avx2")
    ('amx', 'avx2')
    """
    for frag, cls in _ISA_ORDER:
        if frag in impl:
            return cls
    return "unknown"


def parse_onednn_verbose(text: str) -> dict:
    """The max ISA line and the executed matmul kernels from ONEDNN_VERBOSE output."""
    out: dict = {"max_isa": None, "kernels": []}
    for line in text.splitlines():
        m = re.match(r"onednn_verbose,(?:v\d+,)?info,cpu,isa:(.*)", line)
        if m:
            out["max_isa"] = m.group(1).strip()
        if ",exec,cpu," in line and ("matmul" in line or "inner_product" in line):
            parts = line.split(",")
            i = parts.index("cpu")
            out["kernels"].append({"primitive": parts[i + 1], "impl": parts[i + 2],
                                   "isa_class": isa_class_of_kernel(parts[i + 2])})
    return out


def _capture_fd1(fn):
    """Run fn() with C-level stdout redirected to a temp file; return (result, captured text)."""
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            result = fn()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        tmp.seek(0)
        return result, tmp.read().decode(errors="replace")


def onednn_dispatch() -> dict:
    """Which kernels oneDNN picks for a small bf16 and fp32 linear layer, from its verbose log."""
    import torch

    def work():
        res = {}
        with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
            for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
                a, w = torch.randn(64, 256, dtype=dtype), torch.randn(256, 256, dtype=dtype)
                torch.nn.functional.linear(a, w)
                res[name] = None
        return res

    _, text = _capture_fd1(work)
    parsed = parse_onednn_verbose(text)
    kernels = parsed["kernels"]
    bf16 = next((k for k in kernels if "bf16" in k["impl"] or k["isa_class"] in ("amx", "avx512bf16")), None)
    if bf16 is None and kernels:
        bf16 = kernels[0]
    fp32 = next((k for k in kernels if k is not bf16), None)
    return {"max_isa": parsed["max_isa"], "bf16_matmul": bf16["impl"] if bf16 else None,
            "bf16_isa_class": bf16["isa_class"] if bf16 else "unknown",
            "fp32_matmul": fp32["impl"] if fp32 else "mkl/aten (not oneDNN)"}


def allocator() -> str:
    pre = os.environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if name in pre:
            return name
    try:
        with open("/proc/self/maps") as fh:
            maps = fh.read()
        for name in ("jemalloc", "tcmalloc", "mimalloc"):
            if name in maps:
                return name
    except OSError as e:  # no map to look in: say so rather than name the default allocator
        return f"unknown (/proc/self/maps unreadable: {e.strerror})"
    return "glibc malloc"


def effective_settings() -> dict:
    import torch

    par = torch.__config__.parallel_info()
    facts = {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "parallel_backend": (re.search(r"ATen parallel backend: (\w+)", par) or [None, None])[1],
        "omp_max_threads": int(m.group(1)) if (m := re.search(r"omp_get_max_threads\(\) : (\d+)", par)) else None,
        "mkl_max_threads": int(m.group(1)) if (m := re.search(r"mkl_get_max_threads\(\) : (\d+)", par)) else None,
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "allocator": allocator(),
        "env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
                if os.environ.get(k)},
    }
    facts.update(onednn_dispatch())
    if facts["bf16_matmul"] is None:  # oneDNN declined (e.g. capped below bf16 support): ATen's kernels ran
        facts["bf16_matmul"] = f"aten fallback ({facts['cpu_capability']}), oneDNN not used"
        facts["bf16_isa_class"] = str(facts["cpu_capability"]).lower()
    return facts


def requested_settings(threads: int) -> dict:
    """What this process asked for, in the terms ``compare`` checks: the thread count and any oneDNN ISA cap."""
    requested = {"threads": threads}
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        requested["isa_cap"] = os.environ["ONEDNN_MAX_CPU_ISA"].lower()
    return requested


def compare(requested: dict, effective: dict) -> list[str]:
    """Differences between requested settings and effective facts, as readable flags ([] = all took effect).

    >>> compare({"threads": 2}, {"torch_threads": 1, "affinity": [0]})
    ['requested 2 threads, torch runs 1', 'requested 2 threads but only 1 CPUs are usable']
    """
    flags = []
    t = requested.get("threads")
    if t is not None and effective.get("torch_threads") != t:
        flags.append(f"requested {t} threads, torch runs {effective.get('torch_threads')}")
    if t is not None and effective.get("affinity") is not None and len(effective["affinity"]) < t:
        flags.append(f"requested {t} threads but only {len(effective['affinity'])} CPUs are usable")
    isa = requested.get("isa_cap")
    if isa:
        got = effective.get("bf16_isa_class", "unknown")
        rank = ["reference", "sse4", "avx", "avx2", "avx512", "avx512bf16", "amx"]
        cap = {"avx2": "avx2", "avx512": "avx512", "avx512_core_bf16": "avx512bf16", "avx512_core_amx": "amx"}.get(
            isa, isa)
        if got in rank and cap in rank and rank.index(got) > rank.index(cap):
            flags.append(f"ISA cap {isa} requested but oneDNN ran {effective.get('bf16_matmul')}")
    return flags
