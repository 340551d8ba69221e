"""What took effect inside a process: oneDNN's verbose log parsed, requested settings compared with the facts."""

import os
import subprocess
import sys

import torch

from cpugrpo.hw import effective

VERBOSE = """onednn_verbose,v1,info,oneDNN v3.12.0 (commit x)
onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_amx,undef,src:bf16::blocked:ab::f0,,64x256:256x256,0.1
onednn_verbose,v1,primitive,exec,cpu,inner_product,brgemm:avx2,forward_training,src:f32,,mb64ic256oc256,0.2
"""


def test_parse_onednn_verbose():
    p = effective.parse_onednn_verbose(VERBOSE)
    assert p["max_isa"].startswith("Intel AVX-512")
    assert [k["isa_class"] for k in p["kernels"]] == ["amx", "avx2"]


def test_compare_flags_differences():
    assert effective.compare({"threads": 2}, {"torch_threads": 2, "affinity": [0, 1]}) == []
    flags = effective.compare({"isa_cap": "avx2"}, {"bf16_isa_class": "amx", "bf16_matmul": "brg:amx"})
    assert flags and "avx2" in flags[0]


def test_effective_settings_in_this_process(monkeypatch):
    """Set 1 thread in this process: the facts say 1 thread and nothing differs from the request."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        e = effective.effective_settings()
    finally:
        torch.set_num_threads(before)
    assert e["torch_threads"] == 1 and e["env"]["OMP_NUM_THREADS"] == "1"
    assert e["omp_max_threads"] == 1 or e["parallel_backend"] != "OpenMP"
    assert e["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert e["affinity"] == sorted(os.sched_getaffinity(0))
    assert effective.compare(effective.requested_settings(1), e) == []
    # the bf16 kernel's ISA class is the one its oneDNN name says (or ATen's, where oneDNN declined)
    if e["bf16_matmul"].startswith("aten fallback"):
        assert e["bf16_isa_class"] == str(e["cpu_capability"]).lower()
    else:
        assert e["bf16_isa_class"] == effective.isa_class_of_kernel(e["bf16_matmul"]) != "unknown"


def test_isa_cap_takes_effect_in_a_child_process():
    code = "from cpugrpo.hw import effective; e = effective.effective_settings(); print(e['bf16_isa_class'])"
    env = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "avx2"



def test_an_unreadable_memory_map_leaves_the_allocator_unknown(monkeypatch):
    """The allocator is read from the process's memory map; without one it is unknown, not glibc's by default."""
    import builtins

    from cpugrpo.hw import effective

    real_open = builtins.open

    def no_maps(path, *a, **k):
        if str(path) == "/proc/self/maps":
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(builtins, "open", no_maps)
    assert effective.allocator() == "unknown (/proc/self/maps unreadable: Permission denied)"
