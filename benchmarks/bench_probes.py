"""Roofline probes as asv track_ benchmarks, so hardware drift shows next to the training numbers."""

from .common import thread_params
from .common import usable as _usable


class GEMM:
    params = (["fp32", "bf16", "int8"], thread_params())
    param_names = ["dtype", "threads"]
    timeout = 120

    def setup(self, dtype, threads):
        import torch

        if threads > _usable():
            raise NotImplementedError(f"{threads} threads > {_usable()} usable CPUs")
        torch.set_num_threads(threads)

    def track_gflops(self, dtype, threads):
        from cpugrpo.hw import probes

        r = probes.gemm(dtype, 512, 3)
        if "unsupported" in r:
            raise NotImplementedError(r["unsupported"])
        return r["gflops"]["median"]

    track_gflops.unit = "GFLOP/s"


class Bandwidth:
    params = thread_params()
    param_names = ["threads"]
    timeout = 120

    def setup(self, threads):
        import torch

        if threads > _usable():
            raise NotImplementedError(f"{threads} threads > {_usable()} usable CPUs")
        torch.set_num_threads(threads)

    def track_copy_gbps(self, threads):
        from cpugrpo.hw import probes

        return probes.bandwidth(128, 3)["gbps"]["median"]

    track_copy_gbps.unit = "GB/s"
