from pathlib import Path

import pytest

from cpugrpo.hw import hardware

FIX = Path(__file__).parent / "fixtures" / "cpu"


def profile(name, **extra):
    lscpu = FIX / f"{name}.lscpu"
    return hardware.build_profile((FIX / f"{name}.cpuinfo").read_text(),
                                  lscpu.read_text() if lscpu.exists() else "",
                                  (FIX / "big.meminfo").read_text(), **extra)


@pytest.mark.parametrize("name,expect", [
    ("intel_spr_amx", dict(vendor="intel", microarch="sapphirerapids", isa_class="amx", physical_cores=4,
                           logical_cpus=8, threads_per_core=2, sockets=1,
                           has={"amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512_vnni", "avx2"})),
    ("intel_coffeelake_avx2", dict(vendor="intel", microarch="coffeelake", isa_class="avx2", physical_cores=6,
                                   logical_cpus=12, threads_per_core=2, sockets=1, has={"avx2", "fma"},
                                   hasnt={"avx512f", "amx_bf16"})),
    ("amd_zen4", dict(vendor="amd", microarch="zen4", isa_class="avx512bf16", physical_cores=4, sockets=1,
                      has={"avx512_bf16", "avx512f", "avx512_vnni"}, hasnt={"amx_tile"})),
    ("arm_neoverse_v2_sve", dict(vendor="arm", arch="aarch64", microarch="neoverse-v2", isa_class="sve2",
                                 logical_cpus=4, physical_cores=4, has={"neon", "sve", "sve2", "i8mm", "bf16"})),
    ("intel_cascadelake_2s", dict(vendor="intel", microarch="cascadelake", isa_class="avx512", logical_cpus=16,
                                  physical_cores=8, sockets=2, threads_per_core=2, has={"avx512_vnni"})),
])
def test_parsers_on_five_cpu_kinds(name, expect):
    p = profile(name)
    has, hasnt = expect.pop("has", set()), expect.pop("hasnt", set())
    for k, v in expect.items():
        assert getattr(p, k) == v, (k, getattr(p, k))
    assert has <= set(p.features)
    assert not hasnt & set(p.features)
    assert p.ram_total_gb == pytest.approx(251.6, abs=0.1)


def test_numa_and_caches_from_lscpu():
    p = profile("intel_cascadelake_2s")
    assert p.numa_nodes == {"0": list(range(8)), "1": list(range(8, 16))}
    assert p.l1d_kb == 256 and p.l2_kb == 8192 and p.l3_kb == 55 * 1024


@pytest.mark.parametrize("text", ["", "garbage\x00\x01", "processor : x\nflags :\n", ":::\n\n\n:"])
def test_malformed_cpuinfo_gives_unknowns(text):
    p = hardware.build_profile(text, text, text)
    assert p.vendor == "unknown" and p.microarch == "unknown"
    assert isinstance(p.machine_id, str) and p.machine_id


def test_machine_id_is_stable_and_changes_with_cpus():
    a, b = profile("intel_spr_amx", usable_cpus=[0, 1]), profile("intel_spr_amx", usable_cpus=[0, 1])
    assert a.machine_id == b.machine_id and a.machine_id.startswith("intel-sapphirerapids-amx-2c-252g-")
    one = hardware.apply_caps(a, cpus=[0])
    assert one.n_usable == 1 and one.machine_id != a.machine_id and one.machine_id.endswith("-emu")


def test_isa_cap_drops_features():
    p = hardware.apply_caps(profile("intel_spr_amx"), isa="avx2")
    assert p.isa_class == "avx2" and "avx512f" not in p.features and p.emulated == {"isa": "avx2"}
    with pytest.raises(ValueError, match="unknown ISA cap"):
        hardware.apply_caps(p, isa="sse9")


def test_cgroup_quota_limits_usable():
    p = profile("intel_spr_amx", usable_cpus=list(range(8)), cgroup_cpu_quota=1.5)
    assert p.n_usable == 1


def test_detect_without_proc_or_sys(tmp_path):
    p = hardware.detect(proc=str(tmp_path / "noproc"), sys=str(tmp_path / "nosys"), with_torch=False)
    assert p.logical_cpus >= 1 and p.ram_total_gb and p.machine_id


def test_detect_on_this_machine():
    p = hardware.detect(with_torch=True)
    assert p.n_usable >= 1 and p.torch["version"]
    assert hardware.HardwareProfile.from_dict(p.to_dict()) == p


def test_detect_feeds_lscpu_to_the_parser_but_never_into_the_machine_id(monkeypatch):
    """lscpu adds what /proc/cpuinfo lacks (here: 2 sockets, 2 threads per core from a Cascade Lake's lscpu); the
    facts the id is built from stay this machine's, so installing lscpu cannot move the id."""
    monkeypatch.setattr(hardware, "_lscpu", lambda: "")
    without = hardware.detect(with_torch=False)
    monkeypatch.setattr(hardware, "_lscpu", lambda: (FIX / "intel_cascadelake_2s.lscpu").read_text())
    with_lscpu = hardware.detect(with_torch=False)
    assert with_lscpu.sockets == 2 and with_lscpu.threads_per_core == 2  # the fixture's, not this machine's
    assert with_lscpu.machine_id == without.machine_id
    facts = lambda p: {k: getattr(p, k) for k in hardware.ID_FACTS}
    assert facts(with_lscpu) == facts(without)


def test_detect_of_other_trees_does_not_run_lscpu(monkeypatch, tmp_path):
    def boom():
        raise AssertionError("lscpu describes this machine, not the trees passed to detect()")

    monkeypatch.setattr(hardware, "_lscpu", boom)
    hardware.detect(proc=str(tmp_path / "p"), sys=str(tmp_path / "s"), with_torch=False)


def test_lscpu_runs_or_gives_empty_text(monkeypatch):
    text = hardware._lscpu()
    assert text == "" or "CPU(s)" in text  # C locale: the keys parse_lscpu reads
    monkeypatch.setattr(hardware.shutil, "which", lambda name: None)
    assert hardware._lscpu() == ""


def test_a_failing_py_cpuinfo_is_said_not_swallowed(tmp_path, monkeypatch):
    """Without /proc/cpuinfo, detect() asks py-cpuinfo; when that fails, a warning says so and the CPU stays
    unknown."""
    import cpuinfo

    def broken():
        raise OSError("no cpuid here")

    monkeypatch.setattr(cpuinfo, "get_cpu_info", broken)
    with pytest.warns(UserWarning, match=r"py-cpuinfo failed \(OSError: no cpuid here\): CPU model unknown"):
        p = hardware.detect(proc=str(tmp_path / "noproc"), sys=str(tmp_path / "nosys"), with_torch=False)
    assert p.model_name == "unknown" and p.features == ()
