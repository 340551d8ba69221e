"""cpugrpo: a benchmarking and hardware-profiling suite around a real CPU GRPO trainer."""

__version__ = "0.1.0"
