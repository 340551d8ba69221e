"""Hardware profile: pure parsers over text, one ``detect()`` that reads the machine, and the machine id.

Parsers take the text of ``/proc/cpuinfo``, ``lscpu``, ``/proc/meminfo``, cgroup files and sysfs lists and never
raise on bad input: what cannot be told is "unknown" (or None / 0). ``detect()`` is the only function that reads
the machine (``/proc``, ``/sys``, the ``lscpu`` command); it tolerates their absence (containers, macOS) and falls
back to py-cpuinfo and psutil.

Emulated machines: ``apply_caps`` describes a profile as seen under capability caps (an ISA ceiling, a CPU-affinity
set). ``detect()`` applies them itself when this process runs under them: an ISA cap in ONEDNN_MAX_CPU_ISA (as
``--isa-cap`` sets it) or an affinity set smaller than the machine (``taskset``). The profile says so in
``emulated`` and in its id.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .cpu_tables import _AMD, _ARM_FEATURES, _INTEL_FAM6, _X86_FEATURES, ISA_CAPS
from .parsers import (  # noqa: F401
    UNKNOWN,
    _int,
    parse_cgroup_cpu_max,
    parse_cgroup_memory_max,
    parse_cpuinfo,
    parse_cpulist,
    parse_lscpu,
    parse_meminfo,
    parse_size_kb,
    parse_torch_config,
)


@dataclass(frozen=True)
class HardwareProfile:
    arch: str = UNKNOWN
    vendor: str = UNKNOWN
    model_name: str = UNKNOWN
    family: int | None = None
    model: int | None = None
    stepping: int | None = None
    microarch: str = UNKNOWN
    features: tuple[str, ...] = ()
    logical_cpus: int = 0
    physical_cores: int = 0
    threads_per_core: int = 0
    sockets: int = 0
    numa_nodes: dict[str, list[int]] = field(default_factory=dict)
    l1d_kb: float | None = None
    l2_kb: float | None = None
    l3_kb: float | None = None
    ram_total_gb: float | None = None
    ram_available_gb: float | None = None
    usable_cpus: tuple[int, ...] = ()
    cgroup_cpu_quota: float | None = None      # CPUs' worth of quota, None = unlimited
    cgroup_memory_limit_gb: float | None = None
    hypervisor: str | None = None
    governor: str | None = None
    torch: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    emulated: dict = field(default_factory=dict)  # {} on real hardware; else the caps applied

    @property
    def isa_class(self) -> str:
        f = set(self.features)
        if {"amx_bf16", "amx_tile"} <= f:
            return "amx"
        if "avx512_bf16" in f:
            return "avx512bf16"
        if "avx512f" in f:
            return "avx512"
        if "avx2" in f:
            return "avx2"
        if "sve" in f:
            return "sve2" if "sve2" in f else "sve"
        if "neon" in f:
            return "neon"
        return "baseline" if self.arch != UNKNOWN else UNKNOWN

    @property
    def n_usable(self) -> int:
        return count_usable(len(self.usable_cpus) or self.logical_cpus, self.cgroup_cpu_quota)

    @property
    def machine_id(self) -> str:
        return machine_id(self)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = list(self.features)
        d["usable_cpus"] = list(self.usable_cpus)
        d["isa_class"] = self.isa_class
        d["n_usable"] = self.n_usable
        d["machine_id"] = self.machine_id
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "HardwareProfile":
        names = {f for f in cls.__dataclass_fields__}
        d = {k: v for k, v in d.items() if k in names}
        d["features"] = tuple(d.get("features", ()))
        d["usable_cpus"] = tuple(d.get("usable_cpus", ()))
        return cls(**d)


# --------------------------------------------------------------------------------------------------- parsers
def microarch(vendor: str, family: int | None, model: int | None, stepping: int | None = None) -> str:
    """Microarchitecture from the CPUID signature, "unknown" when the table does not know it.

    >>> microarch("intel", 6, 0x8F), microarch("amd", 0x19, 0x11), microarch("intel", 6, 0x55, 7)
    ('sapphirerapids', 'zen4', 'cascadelake')
    """
    if family is None or model is None:
        return UNKNOWN
    if vendor == "intel" and family == 6:
        name = _INTEL_FAM6.get(model, UNKNOWN)
        if name == "skylake-sp" and stepping is not None and stepping >= 5:
            return "cooperlake" if stepping >= 10 else "cascadelake"
        return name
    if vendor == "amd":
        for fam, lo, hi, name in _AMD:
            if fam == family and lo <= model <= hi:
                return name
    return UNKNOWN


def build_profile(cpuinfo: str = "", lscpu: str = "", meminfo: str = "", **extra) -> HardwareProfile:
    """Combine parser outputs (lscpu wins over cpuinfo where both speak) into a profile. Pure."""
    facts = parse_cpuinfo(cpuinfo)
    facts.pop("l3_kb_hint", None)
    ls = parse_lscpu(lscpu)
    if facts.get("features") and ls.get("features"):
        ls.pop("features")
    facts.update(ls)
    facts.update(parse_meminfo(meminfo))
    facts.update({k: v for k, v in extra.items() if v is not None})
    if facts.get("microarch", UNKNOWN) == UNKNOWN:
        facts["microarch"] = microarch(facts.get("vendor", UNKNOWN), facts.get("family"), facts.get("model"),
                                       facts.get("stepping"))
    lc, pc = facts.get("logical_cpus", 0), facts.get("physical_cores", 0)
    if lc and pc and not facts.get("threads_per_core"):
        facts["threads_per_core"] = max(1, lc // pc)
    if lc and not pc:
        facts["physical_cores"] = lc // (facts.get("threads_per_core") or 1)
    if not facts.get("numa_nodes") and lc:
        facts["numa_nodes"] = {"0": list(range(lc))}
    facts["features"] = tuple(sorted(set(facts.get("features", ()))))
    facts["usable_cpus"] = tuple(facts.get("usable_cpus", ()))
    names = HardwareProfile.__dataclass_fields__
    return HardwareProfile(**{k: v for k, v in facts.items() if k in names})


def apply_caps(profile: HardwareProfile, isa: str | None = None, cpus: list[int] | None = None) -> HardwareProfile:
    """The profile as an emulated lesser machine: features above the ISA cap removed, usable CPUs restricted."""
    emulated = dict(profile.emulated)
    features = set(profile.features)
    if isa:
        if isa not in ISA_CAPS:
            raise ValueError(f"unknown ISA cap {isa!r}: use one of {', '.join(ISA_CAPS)}")
        features -= set(ISA_CAPS[isa]["drop"])
        emulated["isa"] = isa
    usable = profile.usable_cpus
    if cpus is not None:
        usable = tuple(sorted(set(cpus)))
        emulated["cpus"] = list(usable)
    return replace(profile, features=tuple(sorted(features)), usable_cpus=usable, emulated=emulated)


def machine_id(p: HardwareProfile) -> str:
    """Stable, readable: vendor-microarch-isa-<usable>c-<ram>g-<hash>, plus '-emu' for emulated profiles.

    The hash covers the identifying facts (model name, signature, features, usable cores, RAM) so two machines
    that print alike still differ; volatile facts (available RAM, env vars, torch build) are left out.
    """
    ram = round(p.ram_total_gb) if p.ram_total_gb else 0
    key = json.dumps([p.arch, p.vendor, p.model_name, p.family, p.model, sorted(p.features), p.n_usable, ram,
                      p.emulated], sort_keys=True)
    h = hashlib.sha256(key.encode()).hexdigest()[:6]
    arch = p.microarch if p.microarch != UNKNOWN else (p.arch or UNKNOWN)
    parts = [p.vendor, arch, p.isa_class, f"{p.n_usable}c", f"{ram}g", h]
    base = "-".join(re.sub(r"[^a-z0-9]+", "", str(x).lower()) or UNKNOWN for x in parts)
    return base + ("-emu" if p.emulated else "")


# ---------------------------------------------------------------------------------------------- the one reader
def count_usable(n_affinity: int, quota: float | None) -> int:
    """Usable CPUs: the affinity set, capped by the cgroup quota (whole CPUs, at least 1). The one rule everywhere.

    >>> count_usable(8, None), count_usable(8, 1.5), count_usable(2, 4.0), count_usable(4, 0.5)
    (8, 1, 2, 1)
    """
    n = max(1, n_affinity)
    return min(n, max(1, int(quota))) if quota else n


def cgroup_cpu_quota(sys: str = "/sys") -> float | None:
    """This process's cgroup v2 CPU quota in CPUs, None when unlimited or unknown."""
    return parse_cgroup_cpu_max(_read(f"{sys}/fs/cgroup/cpu.max"))


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _sys_caches(root: str) -> dict:
    out = {}
    base = Path(root) / "devices/system/cpu/cpu0/cache"
    if not base.is_dir():
        return out
    for d in sorted(base.glob("index*")):
        level, kind, size = _read(str(d / "level")).strip(), _read(str(d / "type")).strip(), _read(str(d / "size"))
        kb = parse_size_kb(size)
        if kb is None:
            continue
        if level == "1" and kind == "Data":
            out["l1d_kb"] = kb
        elif level == "2":
            out["l2_kb"] = kb
        elif level == "3":
            out["l3_kb"] = kb
    return out


def _sys_numa(root: str) -> dict[str, list[int]]:
    nodes = {}
    for d in sorted(Path(root, "devices/system/node").glob("node[0-9]*")):
        nodes[d.name[4:]] = parse_cpulist(_read(str(d / "cpulist")))
    return nodes


def torch_build() -> dict:
    try:
        import torch
    except ImportError:
        return {}
    info = {"version": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkldnn_enabled": torch.backends.mkldnn.is_available(), "mkl_available": torch.backends.mkl.is_available()}
    info.update(parse_torch_config(torch.__config__.show()))
    par = torch.__config__.parallel_info()
    m = re.search(r"ATen parallel backend: (\w+)", par)
    info["parallel_backend"] = m.group(1) if m else None
    return info


ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "KMP_AFFINITY", "KMP_BLOCKTIME", "KMP_HW_SUBSET",
            "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "LD_PRELOAD",
            "MALLOC_CONF", "OMP_PROC_BIND", "OMP_PLACES")


# Facts the machine id is built from (see ``machine_id``; ``microarch`` follows from vendor/family/model). detect()
# takes them from /proc/cpuinfo (or py-cpuinfo) and never from lscpu, so that having lscpu installed or not, or an
# lscpu that spells the model name differently (on Arm it names the core where /proc/cpuinfo has no model name),
# cannot move the id that committed results are filed under.
ID_FACTS = ("arch", "vendor", "model_name", "family", "model", "stepping", "microarch", "features")


def _lscpu(timeout: float = 5.0) -> str:
    """``lscpu``'s text (C locale, so the keys parse_lscpu knows), or "" where it is missing or fails."""
    exe = shutil.which("lscpu")
    if not exe:
        return ""
    try:
        out = subprocess.run([exe], capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "LC_ALL": "C", "LANG": "C"})
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout if out.returncode == 0 else ""


def detect(proc: str = "/proc", sys: str = "/sys", with_torch: bool = True) -> HardwareProfile:
    """Read this machine. Missing /proc or /sys entries degrade to "unknown" fields, never an error.

    Precedence: what /sys, psutil and the affinity call report wins over ``lscpu``, which wins over /proc/cpuinfo,
    except for ``ID_FACTS``, which lscpu never sets. lscpu adds sockets, threads per core, NUMA nodes and caches
    where /sys lacks them, and the hypervisor's vendor."""
    import psutil

    extra: dict = {}
    cpuinfo = _read(f"{proc}/cpuinfo")
    if not cpuinfo.strip():
        try:
            import cpuinfo as pycpuinfo  # py-cpuinfo: works where /proc does not exist

            info = pycpuinfo.get_cpu_info()
            flags = info.get("flags", [])
            extra["model_name"] = info.get("brand_raw") or UNKNOWN
            extra["vendor"] = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(info.get("vendor_id_raw", ""),
                                                                                   UNKNOWN)
            extra["features"] = sorted({_X86_FEATURES[f] for f in flags if f in _X86_FEATURES} |
                                       {_ARM_FEATURES[f] for f in flags if f in _ARM_FEATURES})
        except Exception as e:  # noqa: BLE001 - py-cpuinfo fails in platform-specific ways: said, facts left unknown
            warnings.warn(f"no {proc}/cpuinfo and py-cpuinfo failed ({type(e).__name__}: {e}): CPU model unknown")
    extra["arch"] = platform.machine() or UNKNOWN
    extra.update(_sys_caches(sys))
    numa = _sys_numa(sys)
    if numa:
        extra["numa_nodes"] = numa
    try:
        extra["usable_cpus"] = sorted(os.sched_getaffinity(0))
    except AttributeError:
        extra["usable_cpus"] = list(range(psutil.cpu_count() or 1))
    vm = psutil.virtual_memory()
    meminfo = _read(f"{proc}/meminfo")
    if not meminfo:
        extra["ram_total_gb"] = round(vm.total / 2**30, 2)
        extra["ram_available_gb"] = round(vm.available / 2**30, 2)
    extra["logical_cpus"] = psutil.cpu_count(logical=True)
    phys = psutil.cpu_count(logical=False)
    if phys:
        extra["physical_cores"] = phys
    extra["cgroup_cpu_quota"] = cgroup_cpu_quota(sys)
    extra["cgroup_memory_limit_gb"] = parse_cgroup_memory_max(_read(f"{sys}/fs/cgroup/memory.max"))
    gov = _read(f"{sys}/devices/system/cpu/cpu0/cpufreq/scaling_governor").strip()
    extra["governor"] = gov or None
    hyp = _read(f"{sys}/hypervisor/type").strip()
    if hyp:
        extra["hypervisor"] = hyp
    extra["env"] = {k: os.environ[k] for k in ENV_VARS if k in os.environ}
    if with_torch:
        extra["torch"] = torch_build()
    live = proc == "/proc" and sys == "/sys"  # lscpu reads the real machine: not mixed into a detect() of other trees
    lscpu = {k: v for k, v in parse_lscpu(_lscpu() if live else "").items() if k not in ID_FACTS}
    profile = build_profile(cpuinfo, "", meminfo, **{**lscpu, **{k: v for k, v in extra.items() if v is not None}})
    if profile.hypervisor == "yes":  # cpuinfo's flag only says "some hypervisor"
        profile = replace(profile, hypervisor="unknown hypervisor")
    caps = {}
    for var, key in (("ONEDNN_MAX_CPU_ISA", "isa"), ("ATEN_CPU_CAPABILITY", "aten")):
        if os.environ.get(var):
            caps[key] = os.environ[var]
    if caps.get("isa"):
        isa = next((k for k, v in ISA_CAPS.items() if v["onednn"] == caps["isa"].upper()), None)
        if isa:
            profile = apply_caps(profile, isa=isa)
    if profile.logical_cpus and len(profile.usable_cpus) < profile.logical_cpus:
        profile = replace(profile, emulated={**profile.emulated, "cpus": list(profile.usable_cpus)})
    return profile
