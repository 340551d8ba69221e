"""Pure parsers of the machine's text: ``/proc/cpuinfo``, ``lscpu``, ``/proc/meminfo``, cgroup files, sysfs CPU
lists and torch's build configuration. Text in, plain values out; they never raise on bad input: what cannot be told
is "unknown" (or None / 0). hardware.py's ``detect()`` is the one function that reads the machine and feeds them.
"""

from __future__ import annotations

import re

from .cpu_tables import _ARM_FEATURES, _ARM_PARTS, _X86_FEATURES

UNKNOWN = "unknown"


def _int(text: str | None, base: int = 10) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip(), 0 if text.strip().lower().startswith("0x") else base)
    except (ValueError, AttributeError):
        return None


def parse_cpulist(text: str | None) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11]; anything malformed is skipped.

    >>> parse_cpulist("0-2,5")
    [0, 1, 2, 5]
    >>> parse_cpulist("garbage")
    []
    """
    out: list[int] = []
    for part in (text or "").strip().split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            out += range(lo, hi + 1) if hi - lo < 100_000 else []
    return out


def parse_size_kb(text: str | None) -> float | None:
    """'48K', '2 MiB', '1.25 MB (2 instances)', '32768 KB' -> KiB.

    >>> parse_size_kb("2 MiB (2 instances)"), parse_size_kb("48K"), parse_size_kb("nonsense")
    (2048.0, 48.0, None)
    """
    m = re.match(r"\s*([\d.]+)\s*([KMG]?)i?B?", text or "", re.I)
    if not m:
        return None
    try:
        value = float(m.group(1))
    except ValueError:
        return None
    return value * {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[m.group(2).upper()] if m.group(2) else value


def parse_cpuinfo(text: str) -> dict:
    """Facts from /proc/cpuinfo text (x86 or Arm). Missing keys are simply absent from the result."""
    blocks = [b for b in re.split(r"\n\s*\n", text or "") if b.strip()]
    procs = []
    for b in blocks:
        kv = {}
        for line in b.splitlines():
            if ":" in line:
                k, _, v = line.partition(":")
                kv[k.strip().lower()] = v.strip()
        if kv:
            procs.append(kv)
    out: dict = {}
    cpus = [p for p in procs if "processor" in p]
    if cpus:
        out["logical_cpus"] = len(cpus)
    first = cpus[0] if cpus else (procs[0] if procs else {})
    if "vendor_id" in first:
        out["vendor"] = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(first["vendor_id"],
                                                                         first["vendor_id"].lower())
        out["arch"] = "x86_64"
    if "model name" in first:
        out["model_name"] = re.sub(r"\s+", " ", first["model name"])
    for key, name in (("cpu family", "family"), ("model", "model"), ("stepping", "stepping")):
        if key in first and _int(first[key]) is not None:
            out[name] = _int(first[key])
    flags = (first.get("flags") or "").split()
    arm = (first.get("features") or "").split()
    if flags:
        out["features"] = sorted({_X86_FEATURES[f] for f in flags if f in _X86_FEATURES})
        if "hypervisor" in flags:
            out["hypervisor"] = "yes"
    if arm or "cpu implementer" in first:
        out["arch"] = "aarch64"
        out["features"] = sorted({_ARM_FEATURES[f] for f in arm if f in _ARM_FEATURES})
        imp, part = _int(first.get("cpu implementer")), _int(first.get("cpu part"))
        out["vendor"] = {0x41: "arm", 0x61: "apple", 0xC0: "ampere", 0x48: "hisilicon", 0x51: "qualcomm"}.get(
            imp, UNKNOWN) if imp is not None else UNKNOWN
        if imp is not None:
            out["family"], out["model"] = imp, part
            out["microarch"] = _ARM_PARTS.get((imp, part), UNKNOWN)
    physical = {(p.get("physical id"), p.get("core id")) for p in cpus if "core id" in p}
    if physical:
        out["physical_cores"] = len(physical)
        out["sockets"] = len({p.get("physical id") for p in cpus})
    if "cache size" in first:
        out["l3_kb_hint"] = parse_size_kb(first["cache size"])
    return out


def parse_lscpu(text: str) -> dict:
    """Facts from plain ``lscpu`` output ("Key: value" lines)."""
    kv = {}
    for line in (text or "").splitlines():
        if ":" in line:
            k, _, v = line.partition(":")
            kv[k.strip()] = v.strip()
    out: dict = {}
    if "Architecture" in kv:
        out["arch"] = kv["Architecture"]
    if "Model name" in kv:
        out["model_name"] = re.sub(r"\s+", " ", kv["Model name"])
    for key, name in (("CPU(s)", "logical_cpus"), ("Thread(s) per core", "threads_per_core"),
                      ("Socket(s)", "sockets")):
        if _int(kv.get(key)) is not None:
            out[name] = _int(kv[key])
    cps = _int(kv.get("Core(s) per socket"))
    if cps is not None and out.get("sockets"):
        out["physical_cores"] = cps * out["sockets"]
    for key, name in (("L1d cache", "l1d_kb"), ("L1d", "l1d_kb"), ("L2 cache", "l2_kb"), ("L2", "l2_kb"),
                      ("L3 cache", "l3_kb"), ("L3", "l3_kb")):
        if key in kv and parse_size_kb(kv[key]) is not None:
            out[name] = parse_size_kb(kv[key])
    nodes = {}
    for k, v in kv.items():
        m = re.fullmatch(r"NUMA node(\d+) CPU\(s\)", k)
        if m:
            nodes[m.group(1)] = parse_cpulist(v)
    if nodes:
        out["numa_nodes"] = nodes
    if "Hypervisor vendor" in kv:
        out["hypervisor"] = kv["Hypervisor vendor"]
    if "Flags" in kv:
        out["features"] = sorted({_X86_FEATURES[f] for f in kv["Flags"].split() if f in _X86_FEATURES} |
                                 {_ARM_FEATURES[f] for f in kv["Flags"].split() if f in _ARM_FEATURES})
    return out


def parse_meminfo(text: str) -> dict:
    """MemTotal / MemAvailable in GiB from /proc/meminfo text."""
    out = {}
    for key, name in (("MemTotal", "ram_total_gb"), ("MemAvailable", "ram_available_gb")):
        m = re.search(rf"^{key}:\s*(\d+)\s*kB", text or "", re.M)
        if m:
            out[name] = round(int(m.group(1)) / 2**20, 2)
    return out


def parse_cgroup_cpu_max(text: str | None) -> float | None:
    """cgroup v2 ``cpu.max`` ("max 100000" or "200000 100000") -> CPUs of quota, None when unlimited.

    >>> parse_cgroup_cpu_max("150000 100000"), parse_cgroup_cpu_max("max 100000"), parse_cgroup_cpu_max("")
    (1.5, None, None)
    """
    parts = (text or "").split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    quota, period = _int(parts[0]), _int(parts[1])
    return quota / period if quota and period and quota > 0 else None


def parse_cgroup_memory_max(text: str | None) -> float | None:
    """cgroup ``memory.max`` (bytes or "max") -> GiB, None when unlimited (or absurdly large, as in v1)."""
    value = _int((text or "").strip())
    if value is None or value <= 0 or value >= 2**60:
        return None
    return round(value / 2**30, 2)


def parse_torch_config(show: str) -> dict:
    """MKL, oneDNN and OpenMP facts from ``torch.__config__.show()`` text."""
    out = {}
    m = re.search(r"Intel\(R\) (?:oneAPI )?Math Kernel Library Version ([\d.]+)", show or "")
    out["mkl"] = m.group(1) if m else ("yes" if "USE_MKL=ON" in (show or "") else None)
    m = re.search(r"(?:oneDNN|MKL-DNN) v([\d.]+)", show or "")
    out["onednn"] = m.group(1) if m else None
    m = re.search(r"OpenMP (\d+)", show or "")
    out["openmp"] = f"OpenMP {m.group(1)}" if m else None
    return out
