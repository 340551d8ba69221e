"""Roofline probes: the four kinds measured, and `peak` reading their medians."""

from cpugrpo.hw import probes


def test_probes_small():
    r = probes.run_probes([1], n=64, repeats=2, bw_mb=4, progress=False)
    kinds = {row["probe"] for row in r["results"]}
    assert kinds == {"fp32", "bf16", "int8", "bandwidth"}
    assert probes.peak(r, "fp32") > 0 and probes.peak(r, "bandwidth") > 0
